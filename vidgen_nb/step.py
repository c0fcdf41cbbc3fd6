"""One training iteration, top to bottom: the math, and none of the plumbing.

    repeat n_critic times:  critic_step     the critic learns to tell real from generated
    once:                   generator_step  the VAE and the predictor learn together
    then:                   update_ema      the averaged generator follows the trained one

(with ``predictor_from`` > 0, ``set_phase`` first: the plain VAE-WGAN-GP until that step,
then the VAE frozen and the predictor alone learning in ``generator_step``).

Every generated image is made by ``Generator.generate``: z -> base decode -> synthetic
video -> predictor -> delta -> decode again with theta + delta. ``parts.py`` builds
the ``Parts`` an iteration touches; the trainer (``trainer.py``) owns what surrounds an
iteration (the loop, data, signals, checkpoints and logging) and calls ``train_step``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, ContextManager

import torch
from torch import nn

from .augment import diff_augment
from .config import Config, TrainConfig
from .generator import Generator
from .losses import critic_loss, generator_adversarial_loss, kl_divergence, vae_loss


@dataclass
class Parts:
    """What one iteration reads and updates.

    ``generator_pass`` and ``critic_net`` are what backward passes run through: the
    ``GeneratorPass`` and the critic themselves, or under torchrun their
    DistributedDataParallel wrappers (which average gradients across processes).
    """

    generator: Generator
    critic: nn.Module
    generator_ema: Generator  # the weight average; ``generator`` itself when ema_decay is 0
    opt_g: torch.optim.Optimizer  # the VAE's base weights and the predictor
    opt_d: torch.optim.Optimizer  # the critic
    generator_pass: nn.Module
    critic_net: nn.Module
    autocast: Callable[[], ContextManager]  # bf16 autocast, or nothing for fp32
    check_finite: Callable[[str, torch.Tensor], None]  # raises before a NaN loss reaches the weights


class GeneratorPass(nn.Module):
    """The generator step's forward pass as one module, so that DDP can wrap it.

    z (B, latent_dim), real (B, C, H, W), y (B,) -> fake, delta, x_hat, kl.
    """

    def __init__(self, generator: Generator):
        super().__init__()
        self.generator = generator  # registered: DDP syncs the VAE and the predictor

    def forward(self, z: torch.Tensor, real: torch.Tensor, y: torch.Tensor):
        """Samples and reconstructions: codes z (B, latent_dim) from the prior, real (B, C, H, W)
        and their labels y (B,) -> fake (of the classes y), delta, x_hat, and the KL term of
        the real images' codes (``kl_term``)."""
        fake, delta = self.generator.generate(z, y=y, return_delta=True)
        x_hat, mu, logvar, z_post = self.generator.reconstruct(real, y)
        return fake, delta, x_hat, kl_term(self.generator.vae, mu.float(), logvar.float(), z_post.float(), y)


def kl_term(vae, mu: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """KL(q(z | x) || prior), averaged over the batch: in closed form for N(0, I)
    (``losses.kl_divergence``), else estimated at the posterior sample z (``MixturePrior.kl``)."""
    if vae.prior is None:
        return kl_divergence(mu, logvar)
    return vae.prior.kl(mu, logvar, z, vae.labels(y, len(z), z.device))


def critic_step(parts: Parts, real: torch.Tensor, y: torch.Tensor, t: TrainConfig) -> dict[str, float]:
    """One WGAN-GP update of the critic D on real images and freshly generated ones.

    L_D = E[D(fake)] - E[D(real)] + gp_weight * E[(||grad D(x_mix)|| - 1)^2],
    x_mix = e * real + (1 - e) * fake, e ~ U(0, 1) per image (``losses.critic_loss``).
    With ``adversarial_recon`` half the fakes are reconstructions of real images (VAE-GAN).
    Both kinds pass through DiffAugment (``augment``), if any. The critic judges
    D(x, y) (a conditional one uses y): the fakes are made of the real batch's classes
    y, so that every mix x_mix has one class.
    """
    generator, n = parts.generator, len(real)
    with torch.no_grad(), parts.autocast():
        if t.adversarial_recon:  # half samples, half reconstructions
            first, rest = y[:n - n // 2], y[n - n // 2:]
            fake = torch.cat([generator.generate(generator.vae.sample_z(len(first), first), y=first),
                              generator.reconstruct(real[len(first):], rest)[0]])
        else:
            fake = generator.generate(generator.vae.sample_z(n, y), y=y)
    with parts.autocast():
        real, fake = diff_augment(real, t.augment), diff_augment(fake, t.augment)
        both = torch.cat([y, y])  # real and fake judged as one batch
        loss, stats = critic_loss(functools.partial(parts.critic_net, y=both), real, fake,
                                  gp_critic=functools.partial(parts.critic, y=y), gp_weight=t.gp_weight)
    parts.check_finite("critic", loss)
    parts.opt_d.zero_grad(set_to_none=True)
    loss.backward()
    parts.opt_d.step()
    return stats


def generator_step(parts: Parts, real: torch.Tensor, y: torch.Tensor, t: TrainConfig) -> dict[str, float]:
    """One update of the VAE's base weights theta and the predictor, by one backward.

    L_G = -E[D(fake)] + vae_weight * (-log p(real | x_hat) + beta * KL(q(z|real) || p(z)))
    [+ delta_penalty * E ||delta||^2 / ||theta||^2] per value, fake = decode(z; theta + delta(video(decode(z; theta)))) with z from the
    prior p(z) (N(0, I), or the learned ``MixturePrior``), x_hat the real
    batch's reconstructions (``losses.vae_loss``); a conditional model generates the real
    batch's classes y. The critic only judges here: its weights get no gradient.
    """
    parts.critic.requires_grad_(False)
    try:
        with parts.autocast():
            z = parts.generator.vae.sample_z(len(real), y)
            fake, delta, x_hat, kl = parts.generator_pass(z, real, y)
            judged, labels = (torch.cat([fake, x_hat]), torch.cat([y, y])) if t.adversarial_recon else (fake, y)
            adv = generator_adversarial_loss(functools.partial(parts.critic, y=labels),
                                             diff_augment(judged, t.augment))
            vae_term, stats = vae_loss(x_hat.float(), real.float(), kl, beta=t.beta, sigma=t.recon_sigma)
            loss = adv.float() + t.vae_weight * vae_term
            if t.delta_penalty and delta is not None:  # + lambda * E ||delta||^2 / ||theta||^2
                size = parts.generator.deltas.squared_size(delta).mean()
                loss = loss + t.delta_penalty * size
                stats["delta_size"] = size.item()
        parts.check_finite("generator", loss)
        parts.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        parts.opt_g.step()
    finally:
        parts.critic.requires_grad_(True)
    stats.update(generator=loss.item(), adversarial=adv.item())
    if delta is not None:
        stats["delta_rms"] = delta.float().square().mean().sqrt().item()
    return stats


@torch.no_grad()
def update_ema(parts: Parts, t: TrainConfig, step: int) -> None:
    """theta_ema <- decay * theta_ema + (1 - decay) * theta, after generator step ``step + 1``.

    The decay ramps up as (1 + step) / (10 + step) until it reaches ``ema_decay``, so
    that early on the average is not dominated by the random starting weights.
    """
    if parts.generator_ema is parts.generator:
        return
    decay = min(t.ema_decay, (1 + step) / (10 + step))
    averaged, trained = list(parts.generator_ema.parameters()), list(parts.generator.parameters())
    torch._foreach_lerp_(averaged, trained, 1 - decay)


def learning_rate(t: TrainConfig, step: int) -> float:
    """The learning rate of generator step ``step + 1`` and the critic steps before it.

    Constant ``lr``, or with ``lr_decay`` > 0 falling linearly over the run's last
    ``lr_decay * steps`` steps, to ``lr / span`` at the last one (not to 0, which would be
    a step that changes nothing); a run trained on past ``steps`` keeps that last rate.
    A function of the step alone, so that a resumed run follows the same schedule.
    """
    if not t.lr_decay:
        return t.lr
    span = max(1, round(t.lr_decay * t.steps))
    return t.lr * min(1.0, max(t.steps - step, 1) / span)


def train_step(parts: Parts, next_real: Callable[[], tuple], t: TrainConfig,
               step: int) -> dict[str, float]:
    """``n_critic`` critic steps, one generator step, the average; returns the last losses.

    ``next_real()`` gives the next real batch (B, C, H, W) and its labels (B,) (all 0
    when the model is unconditional); ``step`` is the number of generator steps
    done before this one, which sets both learning rates (``learning_rate``).
    """
    if t.predictor_from:
        set_phase(parts, t, step)
    lr = learning_rate(t, step)
    for group in (*parts.opt_d.param_groups, *parts.opt_g.param_groups):
        group["lr"] = lr
    for _ in range(t.n_critic):
        real, y = next_real()
        stats = critic_step(parts, real, y, t)
    real, y = next_real()
    stats.update(generator_step(parts, real, y, t))
    update_ema(parts, t, step)
    return stats


def set_phase(parts: Parts, t: TrainConfig, step: int) -> None:
    """``predictor_from`` > 0 (HyperStyle's regime): before generator step ``predictor_from``
    the plain VAE-WGAN-GP trains and the predictor waits; at it the trained VAE takes the
    weights of its average (the generator samples come from), and from it on the VAE stays
    frozen while the predictor (its head starting at zero) and the critic train.
    ``step``: the generator steps done; a function of it alone, so a resumed run agrees."""
    with torch.no_grad():
        if step == t.predictor_from and parts.generator_ema is not parts.generator:
            for mine, averaged in zip(parts.generator.vae.state_dict().values(),
                                      parts.generator_ema.vae.state_dict().values()):
                mine.copy_(averaged)
    set_predicting(parts, step >= t.predictor_from)


def set_predicting(parts: Parts, on: bool) -> None:
    """The predictor used (and the VAE frozen), or waiting (and the VAE training). A run
    loaded after ``steps`` steps is as its last step left it: ``on = steps > predictor_from``."""
    for g in (parts.generator, parts.generator_ema):
        g.predicting = on
    parts.generator.vae.requires_grad_(not on)


def step_bytes(config: Config) -> int:
    """A rough upper estimate of the memory one training step's activations take: the
    synthetic videos, the predictor's first block and the decoder's widest layers, each
    with its gradient and the copies ReLU and pooling keep (float32)."""
    m, batch = config.model, config.batch_size
    pixels = m.image_size**2
    video = batch * m.num_frames * m.channels * pixels
    predictor = batch * m.predictor_filters * m.num_frames * pixels // m.predictor_stride**2
    decoder = batch * max(m.widths) * pixels
    return 4 * (2 * video + 4 * predictor + 8 * decoder)


def code_path() -> str:
    """The functions one iteration calls, in order, each with its docstring's first sentence."""
    from .losses import gradient_penalty

    def line(fn, indent: str) -> str:
        summary = " ".join((fn.__doc__ or "").split("\n\n")[0].split())
        return f"{indent}{fn.__module__}.{fn.__qualname__}: {summary.split('. ')[0].rstrip('.')}."

    order = [(critic_step, "x n_critic", (Generator.generate, critic_loss, gradient_penalty)),
             (generator_step, "once", (GeneratorPass.forward, Generator.reconstruct, kl_term,
                                       generator_adversarial_loss, vae_loss)),
             (update_ema, "once", ())]
    lines = []
    for fn, times, calls in order:
        lines.append(f"{line(fn, '')} ({times})")
        lines += [line(call, "    ") for call in calls]
    return "\n".join(lines)
