"""Losses against hand-computed values."""

import math

import pytest
import torch
from torch import nn

from vidgen_nb.losses import (critic_loss, generator_adversarial_loss, gradient_penalty,
                              gaussian_nll, kl_divergence, reconstruction_loss, vae_loss)


class LinearCritic(nn.Module):
    """D(x) = w . x: its gradient is w everywhere, so GP = (||w|| - 1)^2 exactly."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x):
        return (x.flatten(1) * self.w).sum(1)


@pytest.mark.parametrize("norm", [0.3, 1.0, 2.5])
def test_gradient_penalty_of_a_linear_critic(norm):
    torch.manual_seed(0)
    w = torch.randn(3 * 4 * 4, dtype=torch.float64)
    critic = LinearCritic(w / w.norm() * norm)
    real, fake = torch.rand(5, 3, 4, 4, dtype=torch.float64), torch.rand(5, 3, 4, 4, dtype=torch.float64)
    gp = gradient_penalty(critic, real, fake)
    assert gp.item() == pytest.approx((norm - 1) ** 2, abs=1e-10)
    gp.backward()  # create_graph=True: the penalty trains the critic's weights
    expected = 2 * (norm - 1) * critic.w.detach() / norm  # d/dw (||w|| - 1)^2
    assert torch.allclose(critic.w.grad, expected, atol=1e-8)


def test_gradient_penalty_is_finite_where_the_gradient_is_zero():
    critic = LinearCritic(torch.zeros(12))
    gp = gradient_penalty(critic, torch.rand(4, 3, 2, 2), torch.rand(4, 3, 2, 2))
    gp.backward()
    assert gp.item() == pytest.approx(1.0, abs=1e-5) and torch.isfinite(critic.w.grad).all()


def test_mix_weights_are_uniform_per_sample(monkeypatch):
    seen = []

    class Spy(nn.Module):
        def forward(self, x):
            seen.append(x.detach())
            return x.flatten(1).sum(1)

    real, fake = torch.ones(4000, 1, 1, 1), torch.zeros(4000, 1, 1, 1)
    gradient_penalty(Spy(), real, fake, generator=torch.Generator().manual_seed(0))
    e = seen[0].flatten()  # x_mix = e * 1 + (1 - e) * 0 = e
    assert 0 <= e.min() and e.max() <= 1 and len(e.unique()) > 3990  # one per sample
    assert e.mean().item() == pytest.approx(0.5, abs=0.02) and e.var().item() == pytest.approx(1 / 12, abs=0.005)


def test_critic_and_generator_losses():
    critic = LinearCritic(torch.tensor([2.0]))  # D(x) = 2x, ||grad|| = 2, GP = 1
    real, fake = torch.full((3, 1, 1, 1), 1.0), torch.full((3, 1, 1, 1), 0.25)
    loss, stats = critic_loss(critic, real, fake, gp_weight=10)
    assert loss.item() == pytest.approx(0.5 - 2.0 + 10 * 1.0)
    assert stats["wasserstein"] == pytest.approx(1.5) and stats["gp"] == pytest.approx(1.0)
    assert generator_adversarial_loss(critic, fake).item() == pytest.approx(-0.5)


def test_kl_divergence_closed_form():
    assert kl_divergence(torch.zeros(4, 6), torch.zeros(4, 6)).item() == 0  # N(0, 1) vs N(0, 1)
    mu, logvar = torch.tensor([[1.0, -2.0]]), torch.tensor([[math.log(4.0), 0.0]])
    # per dim 0.5 * (mu^2 + sigma^2 - 1 - log sigma^2): (1 + 4 - 1 - ln 4)/2 + (4 + 1 - 1 - 0)/2
    expected = 0.5 * (4 - math.log(4)) + 0.5 * 4
    assert kl_divergence(mu, logvar).item() == pytest.approx(expected)
    assert kl_divergence(mu.repeat(3, 1), logvar.repeat(3, 1)).item() == pytest.approx(expected)


def test_reconstruction_and_vae_loss():
    x = torch.zeros(2, 3, 2, 2)
    x_hat = torch.full_like(x, 0.5)
    assert reconstruction_loss(x_hat, x).item() == pytest.approx(12 * 0.25)  # per image sum
    loss, parts = vae_loss(x_hat, x, kl_divergence(torch.zeros(2, 5), torch.zeros(2, 5)), beta=4.0)
    nll = 3.0 + 12 * math.log(0.5**0.5)  # the default scale: squares + D log sigma
    assert loss.item() == pytest.approx(nll / 12)
    assert parts == pytest.approx({"recon": 3.0, "nll": nll, "kl": 0.0})


def test_gaussian_likelihood_scales_and_calibrates():
    torch.manual_seed(0)
    x, x_hat = torch.rand(3, 3, 4, 4), torch.rand(3, 3, 4, 4)
    squares = reconstruction_loss(x_hat, x)
    D = 3 * 4 * 4
    assert gaussian_nll(x_hat, x, 0.1).item() == pytest.approx(squares.item() / 0.02 + D * math.log(0.1))
    # The default scale is the plain sum of squared errors, up to a constant.
    default = vae_loss(x_hat, x, kl_divergence(torch.zeros(3, 2), torch.zeros(3, 2)))[0] * D
    assert default.item() == pytest.approx(squares.item() + D * math.log(0.5**0.5), rel=1e-5)
    # Calibrated: the scale that maximises the likelihood, so no fixed scale does better.
    best = gaussian_nll(x_hat, x, 0).item()
    sigma = (squares.item() / D) ** 0.5
    assert best == pytest.approx(gaussian_nll(x_hat, x, sigma).item(), rel=1e-5)
    assert all(best < gaussian_nll(x_hat, x, s * sigma).item() for s in (0.5, 0.9, 1.1, 2.0))


def test_a_small_likelihood_scale_weighs_reconstruction_over_kl():
    x = torch.rand(2, 3, 4, 4, requires_grad=False)
    x_hat = (x + 0.1).requires_grad_(True)
    grads = {}
    for sigma in (0.5**0.5, 0.1):
        loss, _ = vae_loss(x_hat, x, kl_divergence(torch.zeros(2, 2), torch.zeros(2, 2)), sigma=sigma)
        grads[sigma] = torch.autograd.grad(loss, x_hat)[0]
    assert torch.allclose(grads[0.1], grads[0.5**0.5] * 50)  # 1 / (2 sigma^2): 1 -> 50
