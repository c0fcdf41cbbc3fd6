"""Losses: WGAN-GP critic and generator terms, and the VAE's reconstruction and KL.

Shapes: real, fake (B, C, H, W); critic(x) -> (B,) unbounded scores.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _mix(real: torch.Tensor, fake: torch.Tensor, generator=None) -> torch.Tensor:
    """x_mix = e*real + (1-e)*fake, e ~ U(0, 1) per sample, ready for input gradients."""
    e = torch.rand(real.shape[0], 1, 1, 1, device=real.device, generator=generator, dtype=real.dtype)
    return (e * real.detach() + (1 - e) * fake.detach()).requires_grad_(True)


def _penalty(scores_mix: torch.Tensor, x_mix: torch.Tensor) -> torch.Tensor:
    """E[(||grad_x D(x_mix)|| - 1)^2] from the critic's scores at x_mix."""
    (grad,) = torch.autograd.grad(scores_mix.sum(), x_mix, create_graph=True)
    # The tiny constant keeps the norm's derivative finite where the gradient is zero
    # (d sqrt(u)/du is infinite at u = 0); it is far below float32 resolution near 1.
    norm = torch.sqrt(grad.flatten(1).square().sum(1) + 1e-12)
    return (norm - 1).square().mean()


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, *,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """E[(||grad_x D(x_mix)|| - 1)^2] at per-sample mixes x_mix = e*real + (1-e)*fake.

    e ~ U(0, 1), one per sample (Gulrajani et al., 2017). ``create_graph=True`` lets
    the penalty itself be differentiated with respect to the critic's weights.
    """
    x_mix = _mix(real, fake, generator)
    return _penalty(critic(x_mix), x_mix)


def critic_loss(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, *,
                gp_weight: float = 10.0, gp_critic: nn.Module | None = None,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """E[D(fake)] - E[D(real)] + gp_weight * GP, and its parts for logging.

    Real and generated images go through ``critic`` as one batch: one forward per
    backward, as DistributedDataParallel requires. The penalty's forward at the mixes
    runs through ``gp_critic`` (default: ``critic``); under DDP pass the wrapped module
    itself: its gradients join the same backward, so DDP still averages them once.
    The Wasserstein estimate reported is E[D(real)] - E[D(fake)].
    """
    B = real.shape[0]
    scores = critic(torch.cat([real, fake.detach()])).float()  # (2B,)
    d_real, d_fake = scores[:B].mean(), scores[B:].mean()
    gp = gradient_penalty(gp_critic or critic, real, fake, generator=generator)
    loss = d_fake - d_real + gp_weight * gp
    return loss, {"critic": loss.item(), "wasserstein": (d_real - d_fake).item(), "gp": gp.item()}


def generator_adversarial_loss(critic: nn.Module, fake: torch.Tensor) -> torch.Tensor:
    """-E[D(fake)]: the generator wants the critic to score its images high."""
    return -critic(fake).mean()


def reconstruction_loss(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Squared error summed over each image's pixels, averaged over the batch."""
    return F.mse_loss(x_hat, x, reduction="sum") / x.shape[0]


def gaussian_nll(x_hat: torch.Tensor, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """-log N(x; x_hat, sigma^2 I) per image, averaged over the batch (without D/2 log 2pi).

    ``sigma`` is the likelihood's scale per value: images in [0, 1] want a small one
    (0.1 says "a pixel is right to about 0.1"); the sum of squared errors alone is the
    case sigma^2 = 1/2, so wide that the KL term wins and the VAE ignores its input.
    ``sigma = 0`` calibrates it: sigma^2 = the batch's mean squared error, the value
    that maximises the likelihood (the sigma-VAE of Rybkin et al., 2021), which gives
    D/2 * (log mse + 1) per image.
    """
    D = x[0].numel()
    squares = reconstruction_loss(x_hat, x)  # per image
    if sigma > 0:
        return squares / (2 * sigma**2) + D * math.log(sigma)
    mse = squares / D
    return D / 2 * (torch.log(mse + 1e-12) + 1)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)), summed over latent dims, averaged over the batch.

    Closed form per dimension: 0.5 * (mu^2 + exp(logvar) - 1 - logvar).
    """
    return 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(1).mean()


def vae_loss(x_hat: torch.Tensor, x: torch.Tensor, kl: torch.Tensor, *,
             beta: float = 1.0, sigma: float = 0.5**0.5) -> tuple[torch.Tensor, dict[str, float]]:
    """(negative log-likelihood + beta * KL) per value, and its parts for logging.

    ``kl``: KL(q(z | x) || p(z)) per image, averaged over the batch (``step.kl_term``: for the
    N(0, I) prior ``kl_divergence(mu, logvar)``).

    The likelihood is Gaussian with scale ``sigma`` (``gaussian_nll``; the default
    1/sqrt(2) makes it the plain sum of squared errors). Dividing by the number of
    values per image (C*H*W) keeps the term's size the same across image sizes, so
    its weight against the adversarial loss carries over. Logged: ``recon``, the sum
    of squared errors per image, ``nll`` and ``kl`` in nats per image.
    """
    nll = gaussian_nll(x_hat, x, sigma)
    loss = (nll + beta * kl) / x[0].numel()
    recon = reconstruction_loss(x_hat.detach(), x)
    return loss, {"recon": recon.item(), "nll": nll.item(), "kl": kl.item()}
