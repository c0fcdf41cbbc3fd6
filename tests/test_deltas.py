"""Weight deltas: sizes, patched decoding against reference loops, gradients, errors."""

import math

import pytest
import torch
from torch.autograd import gradcheck

from vidgen_nb import VAE, Config, WeightDeltas, WeightPredictor3DCNN
from vidgen_nb.video import synthetic_video


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    cfg = Config.preset("tiny")
    vae = VAE(cfg.model)
    return cfg, vae, WeightDeltas(vae, cfg.model.delta_targets)


def reference_decode(vae, deltas, z, delta, scale=1.0):
    """One sample at a time: copy the VAE, add the delta in place, decode."""
    import copy

    out = []
    for i in range(len(z)):
        patched = copy.deepcopy(vae)
        params = dict(patched.named_parameters())
        with torch.no_grad():
            for name, d in deltas.split(delta[i : i + 1]).items():
                params[name].add_(scale * d[0])
        out.append(patched.decode(z[i : i + 1]))
    return torch.cat(out)


@pytest.mark.parametrize("targets", [
    ("decoder.out.*",),
    ("decoder.out.weight",),
    ("decoder.up.*", "decoder.out.bias"),
    ("decoder.*",),
])
def test_weight_update_size_is_the_sum_of_selected_sizes(tiny, targets):
    _, vae, _ = tiny
    deltas = WeightDeltas(vae, targets)
    import fnmatch
    expected = [n for n, _ in vae.named_parameters() if any(fnmatch.fnmatch(n, t) for t in targets)]
    assert deltas.names == expected
    params = dict(vae.named_parameters())
    assert deltas.WEIGHT_UPDATE_SIZE == sum(params[n].numel() for n in expected)
    assert sum(s.stop - s.start for s in deltas.slices.values()) == deltas.WEIGHT_UPDATE_SIZE


def test_default_selection_is_the_decoders_last_layer(tiny):
    _, vae, deltas = tiny
    assert deltas.names == ["decoder.out.weight", "decoder.out.bias"]
    assert deltas.WEIGHT_UPDATE_SIZE == vae.decoder.out.weight.numel() + 3
    assert "WEIGHT_UPDATE_SIZE = 387" in deltas.describe()


def test_zero_delta_gives_exactly_the_base_images(tiny):
    cfg, vae, deltas = tiny
    z = vae.sample_z(5)
    zero = torch.zeros(5, deltas.WEIGHT_UPDATE_SIZE)
    for mode in ("per_sample", "batch_mean"):
        assert torch.equal(deltas.decode(z, zero, mode=mode), vae.decode(z))


@pytest.mark.parametrize("targets", [("decoder.out.*",), ("decoder.*",)])
def test_per_sample_equals_a_loop_over_samples(tiny, targets):
    _, vae, _ = tiny
    deltas = WeightDeltas(vae, targets)
    z = vae.sample_z(6)
    base = vae.decode(z)
    delta = 0.05 * torch.randn(6, deltas.WEIGHT_UPDATE_SIZE)
    for scale in (1.0, -1.5):
        got = deltas.decode(z, delta, scale=scale)
        assert torch.allclose(got, reference_decode(vae, deltas, z, delta, scale), atol=1e-5)
    assert not torch.allclose(got, base, atol=1e-3)  # the delta did change them
    assert torch.equal(vae.decode(z), base)  # and left nothing behind in the VAE


def test_batch_mean_equals_decoding_with_the_mean_delta(tiny):
    _, vae, _ = tiny
    deltas = WeightDeltas(vae, ("decoder.up.*", "decoder.out.*"), mode="batch_mean")
    z = vae.sample_z(4)
    delta = 0.05 * torch.randn(4, deltas.WEIGHT_UPDATE_SIZE)
    mean = delta.mean(0, keepdim=True).expand(4, -1)
    expected = reference_decode(vae, deltas, z, mean)
    assert torch.allclose(deltas.decode(z, delta), expected, atol=1e-5)


def test_gradients_reach_predictor_and_base_weights_which_stay_untouched(tiny):
    cfg, vae, deltas = tiny
    predictor = WeightPredictor3DCNN.from_config(cfg.model, deltas.WEIGHT_UPDATE_SIZE)
    before = {n: p.detach().clone() for n, p in vae.named_parameters()}

    def patched_loss():
        z = vae.sample_z(4)
        video = synthetic_video(vae.decode(z), cfg.model.num_frames, cfg.video, seed=0)
        return deltas.decode(z, predictor(video)).square().mean()

    # At initialisation the head's last layer is zero, so the gradient stops there:
    # only that layer can (and does) receive one on the very first backward.
    patched_loss().backward()
    head = predictor.head[-1]
    assert head.weight.grad.abs().sum() > 0 and head.bias.grad.abs().sum() > 0
    assert all(p.grad.abs().sum() == 0 for p in predictor.features.parameters())
    torch.optim.SGD(predictor.parameters(), lr=0.1).step()

    vae.zero_grad()
    predictor.zero_grad()
    patched_loss().backward()
    for name, p in predictor.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    for name, p in vae.decoder.named_parameters():  # every base parameter on the path
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    for name, p in vae.named_parameters():
        assert torch.equal(p, before[name]), f"{name} changed by a patched forward"


def test_gradcheck_of_patched_decode_with_respect_to_delta():
    torch.manual_seed(0)
    cfg = Config.preset("tiny", image_size=8, widths=(2, 2), latent_dim=3)
    vae = VAE(cfg.model).double()
    deltas = WeightDeltas(vae, ("decoder.up.0.*", "decoder.out.*"))
    z = torch.randn(2, 3, dtype=torch.float64)
    delta = (0.1 * torch.randn(2, deltas.WEIGHT_UPDATE_SIZE, dtype=torch.float64)).requires_grad_()
    assert gradcheck(lambda d: deltas.decode(z, d), (delta,), eps=1e-6, atol=1e-5)
    assert gradcheck(lambda d: deltas.decode(z, d, mode="batch_mean", scale=0.5), (delta,),
                     eps=1e-6, atol=1e-5)


def test_unknown_and_empty_selections_list_the_available_names(tiny):
    _, vae, _ = tiny
    with pytest.raises(ValueError) as err:
        WeightDeltas(vae, ("decoder.nope.*", "decoder.out.bias"))
    msg = str(err.value)
    assert "['decoder.nope.*']" in msg and "decoder.out.weight" in msg and "encoder.0.weight" in msg
    with pytest.raises(ValueError, match="match no VAE parameter; available: encoder.0.weight"):
        WeightDeltas(vae, ())
    with pytest.raises(ValueError, match="must be decoder parameters.*fc_mu.weight"):
        WeightDeltas(vae, ("fc_mu.*",))
    with pytest.raises(ValueError, match="delta_mode='mean'"):
        WeightDeltas(vae, mode="mean")


def test_wrong_width_names_expected_size_and_its_parts(tiny):
    _, vae, deltas = tiny
    z = vae.sample_z(2)
    with pytest.raises(ValueError) as err:
        deltas.decode(z, torch.zeros(2, 100))
    msg = str(err.value)
    assert "(2, 100)" in msg and "(B, 387)" in msg
    assert "decoder.out.weight 8x3x4x4 + decoder.out.bias 3" in msg
    assert 8 * 3 * 4 * 4 + 3 == 387 == math.prod((8, 3, 4, 4)) + 3
    with pytest.raises(ValueError, match="delta has 3 rows but z has 2"):
        deltas.decode(z, torch.zeros(3, 387))


@pytest.mark.parametrize("mode", ["per_sample", "batch_mean"])
def test_decoding_from_shared_features_is_the_same(tiny, mode):
    cfg, vae, deltas = tiny
    assert deltas.output_layer_only
    z = vae.sample_z(5)
    delta = torch.randn(5, deltas.WEIGHT_UPDATE_SIZE) * 0.1
    h = vae.decoder.features(z)
    from_z = deltas.decode(z, delta, mode=mode)
    assert torch.allclose(deltas.decode(None, delta, mode=mode, features=h), from_z, atol=1e-6)
    assert torch.equal(vae.decoder(h, from_features=True), vae.decode(z))


@pytest.mark.parametrize("upsample, norm", [("resize", "none"), ("transposed", "pixel"), ("resize", "pixel")])
def test_other_decoder_kinds_keep_the_delta_invariants(upsample, norm):
    torch.manual_seed(0)
    vae = VAE(Config.preset("tiny", decoder_upsample=upsample, decoder_norm=norm).model)
    z = vae.sample_z(5)
    for targets in (("decoder.out.*",), ("decoder.*",)):
        deltas = WeightDeltas(vae, targets)
        assert torch.equal(deltas.decode(z, torch.zeros(5, deltas.WEIGHT_UPDATE_SIZE)), vae.decode(z))
        delta = 0.05 * torch.randn(5, deltas.WEIGHT_UPDATE_SIZE)
        got = deltas.decode(z, delta)
        assert torch.allclose(got, reference_decode(vae, deltas, z, delta), atol=1e-5)
        assert not torch.allclose(got, vae.decode(z), atol=1e-3)
    deltas = WeightDeltas(vae, ("decoder.out.*",))
    delta = 0.05 * torch.randn(5, deltas.WEIGHT_UPDATE_SIZE)
    h = vae.decoder.features(z)
    assert torch.allclose(deltas.decode(None, delta, features=h), deltas.decode(z, delta), atol=1e-6)


def test_shared_features_refused_when_earlier_layers_are_patched(tiny):
    cfg, vae, _ = tiny
    deltas = WeightDeltas(vae, ("decoder.up.*", "decoder.out.*"))
    assert not deltas.output_layer_only
    z = vae.sample_z(2)
    with pytest.raises(ValueError, match="reach beyond decoder.out"):
        deltas.decode(z, torch.zeros(2, deltas.WEIGHT_UPDATE_SIZE), features=vae.decoder.features(z))


@pytest.fixture
def channelwise(tiny):
    _, vae, _ = tiny
    return vae, WeightDeltas(vae, ("decoder.up.*", "decoder.out.*"), param="channel")


def test_channel_deltas_are_one_number_per_channel_pair_scaling_theta(channelwise):
    vae, deltas = channelwise
    params = dict(vae.named_parameters())
    w = params["decoder.out.weight"]  # ConvTranspose2d: (in, out, k, k)
    assert deltas.shapes["decoder.out.weight"] == tuple(w.shape[:2])
    assert deltas.shapes["decoder.out.bias"] == tuple(params["decoder.out.bias"].shape)
    assert deltas.WEIGHT_UPDATE_SIZE == sum(
        math.prod(params[n].shape[:2]) if n.endswith("weight") else params[n].numel() for n in deltas.names)
    assert "(x theta)" in deltas.describe()
    flat = torch.randn(2, deltas.WEIGHT_UPDATE_SIZE)
    parts = deltas.split(flat)
    pred = flat[:, deltas.slices["decoder.out.weight"]].view(2, *w.shape[:2], 1, 1)
    assert torch.allclose(parts["decoder.out.weight"], w * pred)  # theta * (1 + p) once added
    assert torch.equal(parts["decoder.out.bias"], flat[:, deltas.slices["decoder.out.bias"]])


def test_channel_deltas_decode_like_a_loop_and_zero_is_the_base(channelwise):
    vae, deltas = channelwise
    z = vae.sample_z(5)
    assert torch.equal(deltas.decode(z, torch.zeros(5, deltas.WEIGHT_UPDATE_SIZE)), vae.decode(z))
    delta = 0.3 * torch.randn(5, deltas.WEIGHT_UPDATE_SIZE)
    for scale in (1.0, -0.5):
        assert torch.allclose(deltas.decode(z, delta, scale=scale),
                              reference_decode(vae, deltas, z, delta, scale), atol=1e-5)
    mean = delta.mean(0, keepdim=True).expand(5, -1)
    assert torch.allclose(deltas.decode(z, delta, mode="batch_mean"),
                          reference_decode(vae, deltas, z, mean), atol=1e-5)


def test_channel_deltas_send_gradients_to_the_prediction_and_theta(channelwise):
    vae, deltas = channelwise
    delta = (0.1 * torch.randn(3, deltas.WEIGHT_UPDATE_SIZE)).requires_grad_(True)
    deltas.decode(vae.sample_z(3), delta).square().mean().backward()
    assert delta.grad.abs().sum() > 0
    for name in deltas.names:
        assert dict(vae.named_parameters())[name].grad.abs().sum() > 0, name


@pytest.fixture
def low_rank(tiny):
    _, vae, _ = tiny
    return vae, WeightDeltas(vae, ("decoder.up.*", "decoder.out.*"), param="lora", rank=2)


def test_lora_deltas_are_a_product_of_two_predicted_factors(low_rank):
    vae, deltas = low_rank
    params = dict(vae.named_parameters())
    w = params["decoder.out.weight"]  # ConvTranspose2d (in, out, k, k): a matrix in x (out*k*k)
    rows, cols = w.shape[0], math.prod(w.shape[1:])
    assert deltas.shapes["decoder.out.weight"] == (2, rows + cols)
    assert deltas.shapes["decoder.out.bias"] == tuple(params["decoder.out.bias"].shape)
    assert "(A B, rank 2)" in deltas.describe()
    flat = torch.randn(3, deltas.WEIGHT_UPDATE_SIZE)
    part = deltas.split(flat)["decoder.out.weight"]
    factors = flat[:, deltas.slices["decoder.out.weight"]].view(3, 2, rows + cols)
    a, b = factors[:, :, :rows].transpose(1, 2), factors[:, :, rows:]
    expected = a @ (deltas.lora_b0["decoder.out.weight"] + b)
    assert torch.allclose(part, expected.view(3, *w.shape), atol=1e-6)
    assert all(torch.linalg.matrix_rank(part[i].reshape(rows, cols)) == 2 for i in range(3))
    again = WeightDeltas(vae, ("decoder.up.*", "decoder.out.*"), param="lora", rank=2)
    assert torch.equal(again.lora_b0["decoder.out.weight"], deltas.lora_b0["decoder.out.weight"])


def test_lora_deltas_decode_like_a_loop_and_zero_is_the_base(low_rank):
    vae, deltas = low_rank
    z = vae.sample_z(4)
    assert torch.equal(deltas.decode(z, torch.zeros(4, deltas.WEIGHT_UPDATE_SIZE)), vae.decode(z))
    delta = 0.3 * torch.randn(4, deltas.WEIGHT_UPDATE_SIZE)
    assert torch.allclose(deltas.decode(z, delta), reference_decode(vae, deltas, z, delta), atol=1e-5)
    # One delta for the batch: the mean of the weight changes (not of the factors).
    parts = deltas.split(delta)
    params = dict(vae.named_parameters())
    with torch.no_grad():
        for name, d in parts.items():
            params[name].add_(d.mean(0))
        expected = vae.decode(z)
        for name, d in parts.items():
            params[name].sub_(d.mean(0))
    assert torch.allclose(deltas.decode(z, delta, mode="batch_mean"), expected, atol=1e-5)


def test_lora_deltas_leave_zero_by_their_gradient(low_rank):
    vae, deltas = low_rank
    # The predictor starts at zero: with A B alone that is a saddle, no gradient to either.
    delta = torch.zeros(3, deltas.WEIGHT_UPDATE_SIZE, requires_grad=True)
    deltas.decode(vae.sample_z(3), delta).square().mean().backward()
    grad = delta.grad[:, deltas.slices["decoder.out.weight"]]
    assert grad.abs().sum() > 0
    for name in deltas.names:
        assert dict(vae.named_parameters())[name].grad.abs().sum() > 0, name


def test_lora_rank_beyond_the_matrix_is_refused(tiny):
    _, vae, _ = tiny
    with pytest.raises(ValueError, match=r"delta_rank=1000: decoder.out.weight is a 8x48 matrix, "
                                         r"so its rank is at most 8"):
        WeightDeltas(vae, param="lora", rank=1000)


def test_unknown_parametrisation_is_refused(tiny):
    _, vae, _ = tiny
    with pytest.raises(ValueError, match=r"delta_param='svd': expected one of \('dense', 'channel', 'lora'\)"):
        WeightDeltas(vae, param="svd")
