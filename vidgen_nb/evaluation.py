"""What a trained generator is worth, in numbers: samples, the VAE, and the weight deltas.

Functions of a generator (the trainer's weight average), the data and the config, as
stylegan2-ada's loop hands ``G_ema`` to its metrics: ``evaluate`` gives every figure a
run ends with; ``samples`` and ``reconstructions`` the pictures.

Every figure compares against real images with the kit's own ``swd`` (lower is
better; its patches and directions always drawn with seed 0, so runs compare), next to the floor two sets of real images reach against each other:

* ``swd``: generated images against real ones; ``swd_floor``: real against real.
* The VAE: ``kl_per_dim`` (nats per latent dimension against N(0, I), also when the
  prior is learned, averaged over images),
  ``active_dims`` (dimensions whose KL exceeds 0.01 nats: the ones the encoder uses),
  ``recon_rms`` (root mean squared error per value) and ``recon_swd`` of the
  reconstructions of the posterior means.
* The shapes, when there is a judge for the data (the shape judge of ``judge.py``):
  ``shapes_named`` and ``shape_counts`` of the samples (and, for a conditional model,
  ``named_as_asked`` and the per-class shares), ``shapes_named_recon`` of the
  reconstructions (their inputs are real images, which it names nearly always:
  ``shapes_named_real`` says how often), ``shapes_named_unseen`` of the reconstructions
  of built-in images drawn with another seed, which the model never trained on (and
  ``unseen_as_class`` when conditional).
* The deltas: ``delta_spread`` = mean ||delta_i - mean|| / ||mean|| and
  ``delta_min_cos`` = the smallest cosine between an image's delta and the mean (a
  predictor that ignores its input has spread 0 and cosine 1); ``swd_mean_delta``
  and ``swd_base``: the same noise decoded with the batch-mean delta for every image,
  and with the base weights alone (``base_shapes_named``, ``base_named_as_asked``: the
  judge's shares of those base decodes, pass 1 judged as the samples, pass 2, are).
  ``swd_mean_delta - swd`` is what the per-image prediction buys over a constant.
* The critic, when given: ``critic_score``, its mean score of the samples (and
  ``critic_score_base`` of the base decodes: pass 1 against pass 2 in the critic's
  eyes); and a sampling-time control that needs no predictor, DDLS-style (Che et al.,
  2020): the same noise vectors moved ``WALK_STEPS`` times along the critic's gradient
  (``critic_walk``), then judged as the samples are (``swd_walk``, ``walk_shapes_named``,
  ``walk_named_as_asked``, ``critic_score_walk``); and the same walk without the
  critic, the noise's own density pulling it toward 0 alone (``swd_prior_walk``,
  ``prior_walk_shapes_named``, ...): what the critic's own gradient adds.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Callable, ContextManager

import torch
import torch.nn.functional as F

from .config import Config, check_positive
from .data import builtin_dataset, load_dataset
from .data.shapes import UNSEEN_PER_CLASS, UNSEEN_SEED
from .generator import Generator
from .judge import ShapeJudge, judge_shapes
from .losses import kl_divergence
from .metrics import swd

ACTIVE_KL = 0.01  # nats: a latent dimension with more KL than this carries information
CHUNK = 64  # noise vectors generated at once (bounds memory at 128 px)
# The critic walk: 10 steps of 0.05 RMS per value move a noise vector by up to 0.5 of
# its own N(0, I) scale: far enough to change an image, not so far as to leave the prior.
WALK_STEPS, WALK_STEP = 10, 0.05


def fixed_noise(config: Config) -> torch.Tensor:
    """The noise vectors (max(64, swd_images), latent_dim) of every sample grid and SWD,
    drawn from their own generator, so that looking at samples never changes the
    training's random stream."""
    g = torch.Generator().manual_seed(config.seed + 1)
    return torch.randn(max(64, config.train.swd_images), config.model.latent_dim, generator=g)


@torch.no_grad()
def generate_fixed(generator: Generator, z: torch.Tensor, *, seed: int = 0, scale: float = 1.0,
                   y: torch.Tensor | None = None):
    """``generate`` in chunks of 64 codes, chunk i with video seed ``seed + i``.

    ``y``: the classes asked for (default: each class in turn over all of z). Returns
    (images, delta), delta None without a predictor: the same images for the same z and
    seed, however they are later compared.
    """
    y = generator.vae.labels(y, len(z), z.device)
    parts = [generator.generate(zc, y=yc, scale=scale, seed=seed + i, return_delta=True)
             for i, (zc, yc) in enumerate(zip(z.split(CHUNK), y.split(CHUNK)))]
    images = torch.cat([x for x, _ in parts])
    return images, (None if parts[0][1] is None else torch.cat([d for _, d in parts]))


@torch.no_grad()
def samples(generator: Generator, noise: torch.Tensor, n: int = 64, *, seed: int = 0,
            scale: float = 1.0, y: torch.Tensor | int | None = None) -> torch.Tensor:
    """Images (n, C, H, W) the generator makes from the first n ``noise`` vectors (as
    codes of its prior), of the classes ``y`` (default: each in turn), on the CPU.
    ``ValueError`` unless 1 <= n <= len(noise)."""
    check_positive("n", n, len(noise))
    noise = noise[:n].to(generator.device)
    y = generator.vae.labels(y, n, noise.device)
    x, _ = generate_fixed(generator, generator.vae.from_noise(noise, y), seed=seed, scale=scale, y=y)
    return x.float().cpu()


def real_fixed(dataset, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n real images (n, C, H, W) in [0, 1] and their classes (n,), a fixed seeded
    choice from ``dataset`` (an ImageFolder or the in-memory set), on the CPU."""
    idx = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:n]
    images = getattr(dataset, "images", None)
    if images is not None:
        return images[idx].float() / 255, dataset.labels[idx]
    xs, ys = zip(*[dataset[i] for i in idx.tolist()])
    return torch.stack(xs), torch.as_tensor(ys)


@torch.no_grad()
def reconstruct(generator: Generator, images: torch.Tensor, labels: torch.Tensor, *,
                seed: int = 0) -> torch.Tensor:
    """Images and their labels -> their posterior means -> decoded again as training
    decodes reconstructions (``Generator.decode_codes``), in chunks of 64, chunk i with
    video seed ``seed + i``."""
    mu = generator.vae.encode(images, labels)[0]
    return torch.cat([generator.decode_codes(m, y, seed=seed + i)
                      for i, (m, y) in enumerate(zip(mu.split(CHUNK), labels.split(CHUNK)))])


def reconstructions(generator: Generator, dataset, n: int = 32, *, seed: int = 0):
    """n fixed real images (``real_fixed``) and the generator's reconstructions of
    them, both (n, C, H, W) on the CPU."""
    real, labels = real_fixed(dataset, n)
    return real, reconstruct(generator, real.to(generator.device), labels.to(generator.device),
                             seed=seed).float().cpu()


@torch.no_grad()
def vae_figures(generator: Generator, images: torch.Tensor, labels: torch.Tensor, *, seed: int = 0,
                name_shapes: Callable | None = None) -> dict[str, float]:
    """KL per dimension, active dimensions, and the reconstructions' RMS error and SWD.

    Reconstructions decode the posterior means (``reconstruct``).
    """
    mu, logvar = generator.vae.encode(images, labels)
    kl_dims = 0.5 * (mu.square() + logvar.exp() - 1 - logvar).float().mean(0)  # (latent_dim,)
    recon = reconstruct(generator, images, labels, seed=seed).float()
    images = images.float()
    figures = {
        "kl_per_dim": kl_divergence(mu.float(), logvar.float()).item() / mu.shape[1],
        "active_dims": int((kl_dims > ACTIVE_KL).sum()),
        "recon_rms": (recon - images).square().mean().sqrt().item(),
        "recon_swd": swd(recon.cpu(), images.cpu()),
    }
    if name_shapes is not None:
        figures["shapes_named_recon"] = name_shapes(recon, labels)["shapes_named"]
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
    if name_shapes is not None:
        figures.update(name_shapes(x, y))
    if delta is None:
        return figures
    delta = delta.float()
    with_mean = generator.deltas.decode(generator.vae.condition(z, y), delta, mode="batch_mean")  # the mean weight change
    # The spread of the weight changes themselves (for dense deltas, the predictions;
    # for channel and lora ones, what the predictions make of theta or of A and B).
    delta = torch.cat([d.flatten(1) for d in generator.deltas.split(delta).values()], 1)
    mean = delta.mean(0, keepdim=True)
    base = generator.vae.decode(z, y)
    if name_shapes is not None:  # pass 1 judged as pass 2 is: does the second pass help?
        figures.update({f"base_{k}": v for k, v in name_shapes(base.float(), y).items()
                        if k in ("shapes_named", "named_as_asked")})
    return {
        **figures,
        "delta_spread": ((delta - mean).norm(dim=1) / mean.norm().clamp_min(1e-12)).mean().item(),
        "delta_min_cos": F.cosine_similarity(delta, mean).min().item(),
        "swd_mean_delta": swd(with_mean.float().cpu(), real),
        "swd_base": swd(base.float().cpu(), real),
    }


def critic_walk(generator: Generator, critic: torch.nn.Module | None, noise: torch.Tensor,
                y: torch.Tensor, *, steps: int = WALK_STEPS, step_size: float = WALK_STEP,
                seed: int = 0) -> torch.Tensor:
    """Noise vectors u (B, latent_dim) moved ``steps`` times by ``step_size`` (RMS per
    value, per vector) along the gradient of D(G(u), y) - ||u||^2 / 2: the critic's score
    plus the log-density of the N(0, I) they were drawn from. DDLS's drift (Che et al.,
    2020) in the noise space, without its Langevin noise, so that it is a function of u;
    no weight changes. In chunks of ``CHUNK``, chunk i with video seed ``seed + i``, as
    ``generate_fixed`` makes the samples. ``steps`` = 0 returns u unchanged.

    ``critic`` None: the pull of the noise's own density alone, u moving toward 0 (a
    truncation in the noise space, as StyleGAN's truncation trick draws nearer the mode;
    under a learned mixture prior it also moves each code's choice of component, made by
    u's first value, toward the middle components): the control that says what the
    critic's own gradient adds to the walk."""
    moved = []
    for i, (u, yc) in enumerate(zip(noise.split(CHUNK), y.split(CHUNK))):
        for _ in range(steps):
            with torch.enable_grad():
                u = u.detach().requires_grad_(True)
                energy = -0.5 * u.float().square().sum()
                if critic is not None:
                    x = generator.generate(generator.vae.from_noise(u, yc), y=yc, seed=seed + i)
                    energy = energy + critic(x, yc).float().sum()
                (g,) = torch.autograd.grad(energy, u)
            u = u.detach() + step_size * g / g.square().mean(1, keepdim=True).sqrt().clamp_min(1e-12)
        moved.append(u.detach())
    return torch.cat(moved)


@torch.no_grad()
def critic_figures(generator: Generator, critic: torch.nn.Module, noise: torch.Tensor,
                   real: torch.Tensor, *, seed: int = 0, name_shapes: Callable | None = None) -> dict:
    """The critic's mean score of the samples (and of the base decodes, theta alone,
    when there is a predictor), and the samples after the critic walk (``critic_walk``)
    and after the prior's walk alone, judged as the samples are: does following the
    critic at sampling time help, and is it the critic that helps?"""
    y = generator.vae.labels(None, len(noise), noise.device)

    def score(images: torch.Tensor) -> float:
        return torch.cat([critic(x, yc).float() for x, yc in zip(images.split(CHUNK), y.split(CHUNK))]).mean().item()

    codes = generator.vae.from_noise(noise, y)
    figures = {"critic_score": score(generate_fixed(generator, codes, seed=seed, y=y)[0])}
    if generator.predictor is not None and generator.predicting:
        figures["critic_score_base"] = score(generator.vae.decode(codes, y))
    for name, guide in (("walk", critic), ("prior_walk", None)):
        walked = critic_walk(generator, guide, noise, y, seed=seed)
        x, _ = generate_fixed(generator, generator.vae.from_noise(walked, y), seed=seed, y=y)
        figures.update({f"swd_{name}": swd(x.float().cpu(), real), f"critic_score_{name}": score(x)})
        if name_shapes is not None:
            figures.update({f"{name}_{k}": v for k, v in name_shapes(x.float(), y).items()
                            if k in ("shapes_named", "named_as_asked")})
    return figures


@torch.no_grad()
def delta_parts(generator: Generator, z: torch.Tensor, y: torch.Tensor | None = None, *,
                seed: int = 0) -> dict[str, torch.Tensor]:
    """The same codes z (B, latent_dim) decoded four ways, each (B, C, H, W) on the CPU:
    with theta alone (the base decode), with theta + the batch's mean delta, with theta +
    each image's own delta (the samples), and |own - mean| (what the per-image part of
    the delta changes). ``y``: the classes (default: each in turn). ``ValueError``
    without a predictor."""
    if generator.predictor is None or not generator.predicting:
        raise ValueError("this generator has no weight predictor (trained with --no-predictor), "
                         "or its predictor waits for train.predictor_from: it has no delta to take apart")
    y = generator.vae.labels(y, len(z), z.device)
    own, delta = generate_fixed(generator, z, seed=seed, y=y)
    zc = generator.vae.condition(z, y)
    mean = generator.deltas.decode(zc, delta, mode="batch_mean")
    return {"theta alone": generator.vae.decode(z, y).float().cpu(),
            "theta + mean delta": mean.float().cpu(), "theta + own delta": own.float().cpu(),
            "|own - mean|": (own - mean).abs().float().cpu()}


def real_floor(images: torch.Tensor) -> float:
    """SWD between the two halves of a set of real images: the best a generator can expect."""
    half = len(images) // 2
    if half < 2:
        raise ValueError(f"{len(images)} images: need at least 4 to compare two halves")
    return swd(images[:half], images[half:2 * half])


@functools.lru_cache(maxsize=1)
def unseen_images(background: str, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Built-in images (and classes) drawn with another seed than any training set's:
    the model never trained on them. Drawn once, then kept."""
    folder = builtin_dataset(background=background, per_class=UNSEEN_PER_CLASS, seed=UNSEEN_SEED)
    unseen = load_dataset(folder, image_size=image_size, in_memory=True, num_workers=0)
    return unseen.images.float() / 255, unseen.labels


@torch.no_grad()
def unseen_figures(generator: Generator, background: str, *, seed: int, name_shapes: Callable) -> dict:
    """The shapes of the reconstructions of built-in images the model never trained on
    (``unseen_images``): what it learned, not what it remembers."""
    images, labels = unseen_images(background, generator.config.model.image_size)
    recon = reconstruct(generator, images.to(generator.device), labels.to(generator.device), seed=seed)
    judged = name_shapes(recon.float(), labels)
    figures = {"shapes_named_unseen": judged["shapes_named"]}
    if "named_as_asked" in judged:  # a conditional model: named as the class it was given
        figures["unseen_as_class"] = judged["named_as_asked"]
    return figures


def evaluate(generator: Generator, dataset, config: Config, noise: torch.Tensor, *,
             judge: ShapeJudge | None = None, background: str | None = None,
             critic: torch.nn.Module | None = None,
             autocast: Callable[[], ContextManager] = contextlib.nullcontext) -> dict:
    """Every quality figure of this module for ``generator`` (usually the weight average).

    The SWD figures compare ``swd_images`` generated images (the first ``noise``
    vectors) with as many real ones (``real_fixed``); ``swd_floor`` compares two disjoint
    halves of the data. With the shape ``judge`` of the built-in data drawn as
    ``background``, the shape figures too. ``autocast``: the precision the generator
    runs in (its figures are measured under it; the judge and the floor in float32).
    The caller puts the generator in eval mode, as ``Trainer.evaluate`` does.
    """
    n = min(config.train.swd_images, len(dataset))
    real, labels = real_fixed(dataset, len(dataset) if len(dataset) < 2 * n else 2 * n)
    name_shapes = None
    if judge is not None:  # judged against the class asked, when the model has classes
        conditional, classes = bool(config.model.num_classes), tuple(dataset.classes or ())
        name_shapes = functools.partial(_name_shapes, judge, conditional, classes)
    device = generator.device
    with autocast():
        codes = generator.vae.from_noise(noise[:n].to(device))
        figures = delta_figures(generator, codes, real[:n], seed=config.seed, name_shapes=name_shapes)
        figures.update(vae_figures(generator, real[:n].to(device), labels[:n].to(device),
                                   seed=config.seed, name_shapes=name_shapes))
        if critic is not None:
            figures.update(critic_figures(generator, critic, noise[:n].to(device), real[:n],
                                          seed=config.seed, name_shapes=name_shapes))
    if judge is not None:
        figures["shapes_named_real"] = judge_shapes(judge, real[:n])["shapes_named"]
        with autocast():
            figures.update(unseen_figures(generator, background, seed=config.seed, name_shapes=name_shapes))
    figures["swd_floor"] = real_floor(real)
    return figures


def _name_shapes(judge: ShapeJudge, conditional: bool, classes: tuple, images: torch.Tensor,
                 labels: torch.Tensor) -> dict:
    """The judge's figures for images of the classes ``labels``: also as asked when the
    model is conditional (an unconditional model's labels carry nothing)."""
    return judge_shapes(judge, images, labels if conditional else None, classes=classes)
