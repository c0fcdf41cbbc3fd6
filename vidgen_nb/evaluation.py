"""What a trained generator is worth, in numbers: samples, the VAE, and the weight deltas.

Every figure compares against real images with the kit's own ``swd`` (lower is
better; its patches and directions always drawn with seed 0, so runs compare), next to the floor two sets of real images reach against each other:

* ``swd``: generated images against real ones; ``swd_floor``: real against real.
* The VAE: ``kl_per_dim`` (nats per latent dimension against N(0, I), also when the
  prior is learned, averaged over images),
  ``active_dims`` (dimensions whose KL exceeds 0.01 nats: the ones the encoder uses),
  ``recon_rms`` (root mean squared error per value) and ``recon_swd`` of the
  reconstructions of the posterior means.
* The shapes, when ``name_shapes`` is given (the shape judge of ``judge.py``, as
  ``partial(judge_shapes, judge)``): ``shapes_named`` and ``shape_counts`` of the
  samples, ``shapes_named_recon`` of the reconstructions (their inputs are real
  images, which it names nearly always: ``shapes_named_real`` says how often).
* The deltas: ``delta_spread`` = mean ||delta_i - mean|| / ||mean|| and
  ``delta_min_cos`` = the smallest cosine between an image's delta and the mean (a
  predictor that ignores its input has spread 0 and cosine 1); ``swd_mean_delta``
  and ``swd_base``: the same noise decoded with the batch-mean delta for every image,
  and with the base weights alone. ``swd_mean_delta - swd`` is what the per-image
  prediction buys over a constant.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .generator import Generator
from .losses import kl_divergence
from .metrics import swd

ACTIVE_KL = 0.01  # nats: a latent dimension with more KL than this carries information
CHUNK = 64  # noise vectors generated at once (bounds memory at 128 px)


@torch.no_grad()
def generate_fixed(generator: Generator, z: torch.Tensor, *, seed: int = 0, scale: float = 1.0,
                   y: torch.Tensor | None = None):
    """``generate`` in chunks of 64 noise vectors, chunk i with video seed ``seed + i``.

    ``y``: the classes asked for, when the model is conditional (default: each class in
    turn over all of z). Returns (images, delta), delta None without a predictor: the
    same images for the same z and seed, however they are later compared.
    """
    y = generator.vae.labels(y, len(z), z.device)
    labels = [None] * len(z.split(CHUNK)) if y is None else y.split(CHUNK)
    parts = [generator.generate(zc, y=yc, scale=scale, seed=seed + i, return_delta=True)
             for i, (zc, yc) in enumerate(zip(z.split(CHUNK), labels))]
    images = torch.cat([x for x, _ in parts])
    return images, (None if parts[0][1] is None else torch.cat([d for _, d in parts]))


def _decode_means(generator: Generator, mu: torch.Tensor, through_generator: bool, seed: int,
                  labels: torch.Tensor | None = None):
    """Posterior means -> images: by the whole generator, or by the base decoder alone."""
    if through_generator:
        return generate_fixed(generator, mu, seed=seed, y=labels)[0]
    return generator.vae.decode(mu, labels)


@torch.no_grad()
def reconstruct(generator: Generator, images: torch.Tensor, *, through_generator: bool = True,
                seed: int = 0, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Images (and their labels, when conditional) -> their posterior means -> decoded
    again (as ``vae_figures`` measures them)."""
    mu = generator.vae.encode(images, labels)[0]
    return _decode_means(generator, mu, through_generator, seed, labels)


@torch.no_grad()
def vae_figures(generator: Generator, images: torch.Tensor, *, through_generator: bool = True,
                seed: int = 0, name_shapes: Callable | None = None,
                labels: torch.Tensor | None = None) -> dict[str, float]:
    """KL per dimension, active dimensions, and the reconstructions' RMS error and SWD.

    Reconstructions decode the posterior means: with ``through_generator`` by
    ``generator.generate`` (theta + the image's own delta), else by the base decoder.
    """
    mu, logvar = generator.vae.encode(images, labels)
    kl_dims = 0.5 * (mu.square() + logvar.exp() - 1 - logvar).float().mean(0)  # (latent_dim,)
    recon = _decode_means(generator, mu, through_generator, seed, labels).float()
    images = images.float()
    figures = {
        "kl_per_dim": kl_divergence(mu.float(), logvar.float()).item() / mu.shape[1],
        "active_dims": int((kl_dims > ACTIVE_KL).sum()),
        "recon_rms": (recon - images).square().mean().sqrt().item(),
        "recon_swd": swd(recon.cpu(), images.cpu()),
    }
    if name_shapes is not None:
        figures["shapes_named_recon"] = name_shapes(recon)["shapes_named"]
    return figures


@torch.no_grad()
def delta_figures(generator: Generator, z: torch.Tensor, real: torch.Tensor, *,
                  seed: int = 0, name_shapes: Callable | None = None) -> dict:
    """The samples' SWD (and, with ``name_shapes``, their shapes); how much each image's
    delta differs from the others', and what that buys in SWD. A conditional model
    draws each class in turn."""
    y = generator.vae.labels(None, len(z), z.device)
    x, delta = generate_fixed(generator, z, seed=seed, y=y)
    figures = {"swd": swd(x.float().cpu(), real)}
    if name_shapes is not None:  # a conditional model's samples judged against the class asked
        figures.update(name_shapes(x) if y is None else name_shapes(x, y))
    if delta is None:
        return figures
    delta = delta.float()
    with_mean = generator.deltas.decode(generator.vae.condition(z, y), delta, mode="batch_mean")  # the mean weight change
    # The spread of the weight changes themselves (for dense deltas, the predictions;
    # for channel and lora ones, what the predictions make of theta or of A and B).
    delta = torch.cat([d.flatten(1) for d in generator.deltas.split(delta).values()], 1)
    mean = delta.mean(0, keepdim=True)
    base = generator.vae.decode(z, y)
    return {
        **figures,
        "delta_spread": ((delta - mean).norm(dim=1) / mean.norm().clamp_min(1e-12)).mean().item(),
        "delta_min_cos": F.cosine_similarity(delta, mean).min().item(),
        "swd_mean_delta": swd(with_mean.float().cpu(), real),
        "swd_base": swd(base.float().cpu(), real),
    }


def real_floor(images: torch.Tensor) -> float:
    """SWD between the two halves of a set of real images: the best a generator can expect."""
    half = len(images) // 2
    if half < 2:
        raise ValueError(f"{len(images)} images: need at least 4 to compare two halves")
    return swd(images[:half], images[half:2 * half])
