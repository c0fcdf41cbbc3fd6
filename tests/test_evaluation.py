"""Quality figures: the floor, the VAE's, and the deltas', on cases whose answer is known."""

import pytest
import torch

from vidgen_nb import Config
from vidgen_nb.evaluation import delta_figures, generate_fixed, real_floor, vae_figures
from vidgen_nb.generator import Generator


@pytest.fixture
def generator():
    torch.manual_seed(0)
    return Generator.build(Config.preset("tiny")).eval()


def test_a_predictor_that_ignores_its_input_has_no_spread_and_costs_nothing(generator):
    head = generator.predictor.head[-1]
    with torch.no_grad():  # a constant output: weights zero, bias not
        head.bias.normal_(0, 0.1)
    z, real = generator.sample_noise(32, seed=1), torch.rand(32, 3, 16, 16)
    figures = delta_figures(generator, z, real)
    assert figures["delta_spread"] == pytest.approx(0, abs=1e-5)
    assert figures["delta_min_cos"] == pytest.approx(1, abs=1e-5)
    assert figures["swd_mean_delta"] == pytest.approx(figures["swd"], abs=1e-5)
    assert figures["swd_base"] != pytest.approx(figures["swd"], abs=1e-3)  # the delta does act


def test_the_base_decode_is_judged_as_the_samples_are(generator):
    z, real = generator.sample_noise(8, seed=1), torch.rand(8, 3, 16, 16)
    brightness = lambda images, labels: {"shapes_named": images.mean().item(), "other": 1}  # noqa: E731
    figures = delta_figures(generator, z, real, name_shapes=brightness)
    y = generator.vae.labels(None, 8, z.device)
    assert figures["base_shapes_named"] == pytest.approx(generator.vae.decode(z, y).mean().item())
    assert figures["shapes_named"] == pytest.approx(generator.generate(z, y=y, seed=0).mean().item(), abs=1e-3)
    assert "base_other" not in figures


class PixelsAsDelta(torch.nn.Module):
    """A 'predictor' whose delta is the first frame's first pixels: it reacts to every image."""

    def __init__(self, size):
        super().__init__()
        self.size = size

    def forward(self, video):
        return 0.2 * (video[:, 0].flatten(1)[:, :self.size] - 0.5)


def test_a_predictor_that_reacts_has_spread_and_its_mean_decodes_otherwise(generator):
    generator.predictor = PixelsAsDelta(generator.deltas.weight_update_size)
    with torch.no_grad():  # a decoder whose images differ from each other
        generator.vae.decoder.fc.weight.normal_(0, 1)
    z, real = generator.sample_noise(32, seed=1), torch.rand(32, 3, 16, 16)
    figures = delta_figures(generator, z, real)
    assert figures["delta_spread"] > 0.05 and figures["delta_min_cos"] < 0.999
    assert figures["swd_mean_delta"] != pytest.approx(figures["swd"], abs=1e-4)
    images, delta = generate_fixed(generator, z, seed=0)
    assert torch.equal(images, generate_fixed(generator, z, seed=0)[0])  # seeded: repeatable
    assert delta.shape == (32, generator.deltas.weight_update_size)


def test_plain_generator_has_only_swd():
    torch.manual_seed(0)
    plain = Generator.build(Config.preset("tiny", use_predictor=False))
    figures = delta_figures(plain, plain.sample_noise(8, seed=0), torch.rand(8, 3, 16, 16))
    assert set(figures) == {"swd"}


def test_vae_figures_count_the_dimensions_the_encoder_uses(generator):
    images = torch.rand(16, 3, 16, 16)
    enc = generator.vae.fc_mu
    with torch.no_grad():  # posterior = prior except the mean of dimension 0: one active dim
        generator.vae.fc_logvar.weight.zero_(), generator.vae.fc_logvar.bias.zero_()
        enc.weight.zero_(), enc.bias.zero_()
        enc.bias[0] = 1.0  # KL of that dimension: 0.5 * 1^2
    figures = vae_figures(generator, images, torch.zeros(16, dtype=torch.long))
    assert figures["active_dims"] == 1
    assert figures["kl_per_dim"] == pytest.approx(0.5 / generator.vae.latent_dim)
    recon = generate_fixed(generator, generator.vae.encode(images)[0], seed=0)[0]
    assert figures["recon_rms"] == pytest.approx((recon - images).square().mean().sqrt().item(), rel=1e-5)


def test_floor_is_small_for_two_draws_of_the_same_images_and_needs_four():
    torch.manual_seed(0)
    same = torch.rand(8, 3, 16, 16).repeat(2, 1, 1, 1)
    assert real_floor(same) == pytest.approx(0, abs=1e-6)
    assert real_floor(torch.rand(16, 3, 16, 16)) > 0
    with pytest.raises(ValueError, match="3 images: need at least 4"):
        real_floor(torch.rand(3, 3, 16, 16))
