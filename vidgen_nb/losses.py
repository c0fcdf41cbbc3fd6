"""Losses: WGAN-GP critic and generator terms, and the VAE's reconstruction and KL.

Shapes: real, fake (B, C, H, W); critic(x) -> (B,) unbounded scores.
"""

from __future__ import annotations

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


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)), summed over latent dims, averaged over the batch.

    Closed form per dimension: 0.5 * (mu^2 + exp(logvar) - 1 - logvar).
    """
    return 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(1).mean()


def vae_loss(x_hat: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, *,
             beta: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """(reconstruction + beta * KL) per pixel, and its parts for logging.

    Dividing by the number of values per image (C*H*W) keeps the term's size the same
    across image sizes, so its weight against the adversarial loss carries over.
    """
    recon, kl = reconstruction_loss(x_hat, x), kl_divergence(mu, logvar)
    loss = (recon + beta * kl) / x[0].numel()
    return loss, {"recon": recon.item(), "kl": kl.item()}
