"""The three networks: shapes for every preset, and the properties the design asks for."""

import pytest
import torch
from torch import nn

from vidgen_nb import VAE, Config, Discriminator, WeightDeltas, WeightPredictor3DCNN, count_parameters
from vidgen_nb.models import PixelNorm, minibatch_std
from vidgen_nb.video import synthetic_video

# The cpu preset's layers without its class input and mixture prior, with a 64-value
# code: then a noise vector z (B, 64) is the decoder's whole input.
UNCONDITIONAL = dict(num_classes=0, prior_components=0, latent_dim=64)


def build(name):
    cfg = Config.preset(name)
    vae = VAE(cfg.model)
    deltas = WeightDeltas(vae, cfg.model.delta_targets)
    return cfg, vae, Discriminator(cfg.model), deltas, WeightPredictor3DCNN.from_config(
        cfg.model, deltas.WEIGHT_UPDATE_SIZE)


@pytest.mark.parametrize("name", ["tiny", "cpu", "seed"])
@torch.no_grad()
def test_shapes_for_every_preset(name):
    torch.manual_seed(0)
    cfg, vae, critic, deltas, predictor = build(name)
    B, m = cfg.batch_size, cfg.model
    x = torch.rand(B, m.channels, m.image_size, m.image_size)
    y = torch.arange(B) % m.num_classes if m.num_classes else None  # the classes, if conditional
    x_hat, mu, logvar = vae(x, y)
    assert x_hat.shape == x.shape and mu.shape == logvar.shape == (B, m.latent_dim)
    z = vae.sample_z(B, y)
    image = vae.decode(z, y)
    assert image.shape == (B, m.channels, m.image_size, m.image_size)
    assert 0 <= image.min() and image.max() <= 1
    video = synthetic_video(image, m.num_frames, cfg.video, seed=0)
    assert video.shape == (B, m.num_frames, m.channels, m.image_size, m.image_size)
    delta = predictor(video)
    assert delta.shape == (B, deltas.WEIGHT_UPDATE_SIZE)
    assert deltas.decode(vae.condition(z, y), delta).shape == image.shape
    assert critic(image, y).shape == (B,)
    if name == "seed":
        assert image.shape == (16, 3, 128, 128) and video.shape == (16, m.num_frames, 3, 128, 128)


def test_vae_heads_have_no_activation_and_sampling_uses_z():
    torch.manual_seed(0)
    cfg = Config.preset("tiny")
    vae = VAE(cfg.model)
    mu, logvar = vae.encode(torch.rand(8, 3, 16, 16))
    assert (mu < 0).any() and (mu > 0).any() and (logvar < 0).any()  # not through a ReLU
    z1, z2 = vae.sample_z(4), vae.sample_z(4)
    assert not torch.equal(vae.decode(z1), vae.decode(z2))  # the noise vector matters


def test_he_init_keeps_the_signal_alive_through_the_decoder():
    torch.manual_seed(0)
    m = Config.preset("cpu", **UNCONDITIONAL).model
    vae = VAE(m)
    for layer in (vae.decoder.fc, vae.decoder.up[0], vae.encoder[0]):
        assert torch.equal(layer.bias, torch.zeros_like(layer.bias))
    # A transposed convolution of stride 2 and a 4x4 kernel: each output sees in * 4 inputs.
    std = vae.decoder.up[0].weight.std().item()
    assert std == pytest.approx((2 / (m.widths[-1] * 4)) ** 0.5, rel=0.05)
    h = torch.relu(vae.decoder.fc(torch.randn(256, m.latent_dim)))
    second = vae.decoder.up[1](vae.decoder.up[0](h.view(-1, *vae.decoder.shape)))
    # He's rule: E[x^2] of the pre-activations stays of the order of the input's.
    assert 0.3 < second.square().mean().item() / vae.decoder.fc(torch.randn(256, m.latent_dim)).square().mean().item() < 3
    images = vae.decode(torch.randn(64, m.latent_dim))
    assert images.std().item() > 0.1  # not the grey 0.5 of PyTorch's default start


def test_critic_is_an_unbounded_score_without_batch_norm():
    torch.manual_seed(0)
    critic = Discriminator(Config.preset("tiny").model)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in critic.modules())
    with torch.no_grad():
        critic.score.weight.mul_(1e3)
    scores = critic(torch.rand(16, 3, 16, 16))
    assert scores.abs().max() > 1  # no sigmoid squashing the score
    p = critic.probability(torch.rand(16, 3, 16, 16))
    assert ((0 <= p) & (p <= 1)).all()


@pytest.mark.parametrize("pool, share", [("max", 0.25), ("avg", 1.0)])
def test_critic_pool_decides_how_much_of_a_feature_map_gets_a_gradient(pool, share):
    torch.manual_seed(0)
    critic = Discriminator(Config.preset("tiny", critic_pool=pool).model)
    layers = [type(m) for m in critic.features]
    assert layers.count(nn.AvgPool2d if pool == "avg" else nn.MaxPool2d) == 2
    h = critic.features[:2](torch.rand(4, 3, 16, 16))  # the first block's activations
    h.retain_grad()
    critic.score(critic.features[2:](h).flatten(1)).sum().backward()
    # MaxPool2d passes a gradient to one value of each 2x2 window, AvgPool2d to all four.
    assert (h.grad != 0).float().mean().item() == pytest.approx(share)


def test_deeper_decoder_adds_same_size_layers_and_keeps_the_default_names():
    torch.manual_seed(0)
    plain, deep = (VAE(Config.preset("cpu", decoder_convs=k, **UNCONDITIONAL).model) for k in (1, 3))
    names = [n for n, _ in plain.decoder.named_parameters()]
    assert names == ["fc.weight", "fc.bias", "up.0.weight", "up.0.bias", "up.2.weight", "up.2.bias",
                     "out.weight", "out.bias"]  # what delta_targets and older checkpoints name
    kinds = [type(m) for m in deep.decoder.up]
    assert kinds.count(nn.ConvTranspose2d) == 2 + 2 * 3 and set(kinds) == {nn.ConvTranspose2d, nn.ReLU}
    z = torch.randn(64, 64)
    assert deep.decoder.features(z).shape == plain.decoder.features(z).shape == (64, 32, 16, 16)
    refine = deep.decoder.up[2]  # 3x3, stride 1: He's rule with fan_in = in * 9
    assert refine.stride == (1, 1) and refine.weight.std().item() == pytest.approx((2 / (128 * 9)) ** 0.5, rel=0.05)
    assert deep.decode(z).std().item() > 0.1  # the signal survives the extra layers


def test_resize_decoder_upsamples_without_strided_layers_and_draws_no_checkerboard():
    torch.manual_seed(0)
    resized, plain = (VAE(Config.preset("cpu", decoder_upsample=u, **UNCONDITIONAL).model) for u in ("resize", "transposed"))
    convs = [m for m in resized.decoder.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert len(convs) == 3 and all(m.stride == (1, 1) and m.kernel_size == (3, 3) for m in convs)
    z = torch.randn(4, 64)
    assert resized.decoder.features(z).shape == (4, 32, 32, 32)  # ``out`` works at the image's size
    assert resized.decode(z).shape == plain.decode(z).shape == (4, 3, 32, 32)
    # Flat features in, a flat image out (away from the border): nearest upsampling and a
    # 3x3 convolution have no phase. A stride-2 transposed convolution's four output
    # phases use four different sets of taps: a checkerboard from the same flat input.
    for vae, size in ((resized, 32), (plain, 16)):
        flat = torch.ones(1, 32, size, size)
        inner = vae.decoder(flat, from_features=True)[..., 2:-2, 2:-2]
        spread = (inner - inner.mean((2, 3), keepdim=True)).abs().max().item()
        assert (spread < 1e-6) if vae is resized else (spread > 1e-3)


def test_pixel_norm_gives_every_pixel_unit_rms_features():
    torch.manual_seed(0)
    x = torch.randn(3, 16, 5, 5) * torch.rand(3, 1, 5, 5) * 10  # every pixel its own scale
    y = PixelNorm()(x)
    assert torch.allclose(y.square().mean(1), torch.ones(3, 5, 5), atol=1e-5)
    assert torch.allclose(y * x.square().mean(1, keepdim=True).sqrt(), x, atol=1e-4)  # only rescaled
    vae = VAE(Config.preset("cpu", decoder_norm="pixel", **UNCONDITIONAL).model)
    norms = [i for i, m in enumerate(vae.decoder.up) if isinstance(m, PixelNorm)]
    assert norms[0] == 0  # first the Linear's output (after its ReLU), then after each ReLU:
    assert [type(vae.decoder.up[i - 1]) for i in norms[1:]] == [nn.ReLU, nn.ReLU]
    assert vae.decode(torch.randn(2, 64)).std().item() > 0.05


def test_critic_depth_and_minibatch_std():
    torch.manual_seed(0)
    m = Config.preset("tiny", critic_convs=2, critic_mbstd=True).model
    critic = Discriminator(m)
    assert [type(x) for x in critic.features].count(nn.Conv2d) == 4
    x = torch.rand(8, 3, 16, 16)
    scores = critic(x)
    # Groups of 4 consecutive images: changing the last four leaves the first four's
    # scores alone (real and fake, judged as one batch, never share a group) ...
    y = x.clone()
    y[4:] = torch.rand(4, 3, 16, 16)
    assert torch.equal(critic(y)[:4], scores[:4])
    # ... and an image's score depends on the others of its group.
    y[1:4] = x[0]
    assert not torch.allclose(critic(y)[0], scores[0])
    std = minibatch_std(y[:4])[:, -1]  # four identical images: no spread
    assert std.shape == (4, 16, 16) and std.max().item() < 1e-3
    assert minibatch_std(torch.rand(3, 2, 1, 1))[:, -1].flatten().unique().numel() == 1  # one group of 3
    assert critic(x[:1]).shape == (1,)  # a single image: its own group


def test_untrained_predictor_predicts_zero_for_any_video_size():
    torch.manual_seed(0)
    predictor = WeightPredictor3DCNN(10, num_filters=32)
    for shape in [(2, 8, 3, 32, 32), (3, 1, 3, 5, 7), (1, 5, 3, 64, 48)]:
        delta = predictor(torch.rand(shape))
        assert delta.shape == (shape[0], 10) and torch.equal(delta, torch.zeros_like(delta))
    with pytest.raises(ValueError, match=r"expected \(B, T, C, H, W\)"):
        predictor(torch.rand(2, 3, 32, 32))


def test_predictor_stays_small_whatever_the_video_size():
    small = Config.preset("seed")
    large = Config.preset("seed", image_size=512, num_frames=32)
    n = count_parameters(WeightPredictor3DCNN.from_config(small.model, 1539))
    assert n == count_parameters(WeightPredictor3DCNN.from_config(large.model, 1539))
    # The seed's flatten -> Linear head after the same two blocks would need, for a
    # (8, 3, 128, 128) video: 32 filters x (2 x 32 x 32) positions x 1539 outputs.
    assert n < 0.01 * (32 * 2 * 32 * 32 * 1539)
