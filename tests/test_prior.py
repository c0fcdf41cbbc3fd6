"""The learned mixture prior: its density, its sampler from noise, its KL, and a run with it."""

import pytest
import torch
from torch import distributions as D

from vidgen_nb import Config
from vidgen_nb.models import VAE
from vidgen_nb.prior import MixturePrior
from vidgen_nb.trainer import Trainer


@pytest.fixture
def prior():
    torch.manual_seed(0)
    p = MixturePrior(latent_dim=3, classes=2, components=4)
    with torch.no_grad():
        p.means.mul_(3)  # components far apart
        p.log_var.uniform_(-2, 0)
    return p


def reference(p: MixturePrior, c: int) -> D.MixtureSameFamily:
    """torch.distributions' mixture of class c's components, equal weights."""
    normal = D.Independent(D.Normal(p.means[c], (0.5 * p.log_var[c]).exp()), 1)
    return D.MixtureSameFamily(D.Categorical(torch.ones(p.components)), normal)


def test_log_prob_is_the_mixture_density(prior):
    z, y = torch.randn(10, 3) * 3, torch.tensor([0, 1] * 5)
    expected = torch.stack([reference(prior, int(c)).log_prob(zi) for zi, c in zip(z, y)])
    assert torch.allclose(prior.log_prob(z, y), expected, atol=1e-5)


def test_noise_maps_to_samples_of_the_mixture(prior):
    """The codes of N(0, I) noise have the mixture's mean and variance, each component
    drawn equally often, and the same noise always gives the same code."""
    eps, y = torch.randn(200_000, 3, generator=torch.Generator().manual_seed(1)), torch.ones(200_000, dtype=torch.long)
    z = prior.from_noise(eps, y).detach()
    expected = reference(prior, 1)
    assert torch.allclose(z.mean(0), expected.mean, atol=0.03)
    assert torch.allclose(z.var(0), expected.variance, rtol=0.03)
    nearest = (z[:, None] - prior.means[1]).square().sum(-1).argmin(1)
    assert torch.bincount(nearest, minlength=4).min() > 0.23 * len(z)  # about a quarter each
    assert torch.equal(prior.from_noise(eps[:5], y[:5]), prior.from_noise(eps[:5], y[:5]))


def test_the_kl_estimate_averages_to_the_closed_form_for_a_standard_normal():
    p = MixturePrior(latent_dim=4, classes=0, components=1)
    with torch.no_grad():
        p.means.zero_()  # one component N(0, I): the seed's prior
    mu, logvar = torch.randn(1, 4).expand(100_000, 4), torch.full((100_000, 4), -1.0)
    z = mu + (0.5 * logvar).exp() * torch.randn(100_000, 4, generator=torch.Generator().manual_seed(2))
    closed = 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(1).mean()
    one_class = torch.zeros(100_000, dtype=torch.long)
    assert abs(p.kl(mu, logvar, z, one_class).item() - closed.item()) < 0.02 * closed.item()


def test_a_vae_without_it_is_unchanged_and_with_it_samples_its_codes():
    torch.manual_seed(0)
    plain = VAE(Config.preset("tiny").model)
    torch.manual_seed(0)
    learned = VAE(Config.preset("tiny", prior_components=3).model)
    shared = {k: v for k, v in learned.state_dict().items() if not k.startswith("prior.")}
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in shared.items())  # drawn last
    eps = torch.randn(6, learned.latent_dim)
    assert torch.equal(plain.from_noise(eps), eps)
    assert torch.equal(learned.from_noise(eps), learned.prior.from_noise(eps, torch.zeros(6, dtype=torch.long)))
    with pytest.raises(ValueError, match=r"prior_components=-1: expected an integer in 0\.\.1024"):
        Config.preset("tiny", prior_components=-1)


def test_a_run_with_a_learned_prior_trains_the_prior_and_resumes_exactly(tmp_path):
    config = Config.preset("tiny", prior_components=2, num_classes=4)
    straight = Trainer(config, progress=False)
    start = straight.vae.prior.means.detach().clone()
    straight.train(14)
    assert not torch.equal(straight.vae.prior.means, start)  # the KL and the critic move it
    Trainer(config, out=tmp_path / "run", progress=False).train(10)
    resumed = Trainer.from_checkpoint(tmp_path / "run" / "checkpoint.pt", progress=False)
    resumed.train(4)
    for (name, a), b in zip(straight.generator.state_dict().items(), resumed.generator.state_dict().values()):
        assert torch.equal(a, b), name
    with torch.no_grad():
        codes = straight.generator_ema.vae.from_noise(straight.fixed_z[:8])
        expected = straight.generator_ema.vae.prior.from_noise(straight.fixed_z[:8], torch.arange(8) % 4)
    assert torch.equal(codes, expected)  # samples are drawn from the averaged prior, class by class
    assert 0 <= straight.evaluate()["shapes_named"] <= 1


def test_videos_of_a_learned_prior_start_at_the_codes_of_their_noise():
    from vidgen_nb.generated_video import latent_walk
    from vidgen_nb.generator import Generator

    torch.manual_seed(0)
    config = Config.preset("tiny", prior_components=3, num_classes=4)
    generator = Generator(config, VAE(config.model), None).eval()
    video = latent_walk(generator, num_videos=2, num_frames=4, keyframes=2, use_delta=False, seed=5, label=1)
    keys = generator.sample_noise(4, seed=5)[[0, 2]]  # each video's first keyframe
    with torch.no_grad():
        first = generator.vae.decode(generator.vae.from_noise(keys, 1), 1)
    assert torch.allclose(video[:, 0], first, atol=1e-6)
