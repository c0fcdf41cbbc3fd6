"""Videos a trained generator makes (``vidgen-video`` renders them).

``latent_walk``: a smooth loop through latent space; ``delta_sweep``: one image, the
delta scale swept 0 -> 1 -> 0 -> -1; ``feedback_video``: each frame decoded with the
delta the predictor infers from the frames before it. Each takes a ``Generator`` and
returns videos (N, T, C, H, W) in [0, 1].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .config import check_positive
from .generator import Generator


def _need_predictor(generator: Generator, mode: str) -> None:
    if generator.predictor is None:
        raise ValueError(f"mode {mode!r} needs the weight predictor, and this model was "
                         "trained without one (--no-predictor)")
    if generator.config.model.delta_source == "code":
        raise ValueError(f"mode {mode!r} needs a predictor that watches videos, and this model's "
                         "deltas come from its codes (delta_source code)")


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between noise vectors (..., D) at fractions t (...)."""
    cos = (F.normalize(z0, dim=-1) * F.normalize(z1, dim=-1)).sum(-1).clamp(-1 + 1e-7, 1 - 1e-7)
    omega = torch.acos(cos)[..., None]
    t = t[..., None]
    return (torch.sin((1 - t) * omega) * z0 + torch.sin(t * omega) * z1) / torch.sin(omega)


def _check_sizes(num_videos, num_frames) -> None:
    check_positive("num_videos", num_videos)
    check_positive("num_frames", num_frames)


def _labels(generator: Generator, label: int | None, n: int, repeat: int = 1):
    """The labels (n * repeat,) of n videos of ``repeat`` images each: ``label`` for every
    video, else the classes in turn (all 0 when unconditional). ``ValueError`` naming a bad class,
    or a class asked of an unconditional model."""
    if label is not None and not generator.vae.num_classes:
        raise ValueError(f"label={label!r}: this model is unconditional; leave label out")
    return generator.vae.labels(label, n, generator.device).repeat_interleave(repeat)


@torch.no_grad()
def _decoder_input(generator: Generator, z: torch.Tensor, label: int | None, repeat: int = 1,
                   noise: bool = True):
    """Noise vectors (N * repeat, D), video by video -> the decoder's input: their codes
    from the prior (``VAE.from_noise``; codes already, unless ``noise``), with each
    video's one-hot class when the model is class-conditional (``_labels``)."""
    y = _labels(generator, label, len(z) // repeat, repeat)
    return generator.vae.condition(generator.vae.from_noise(z, y) if noise else z, y)


@torch.no_grad()
def latent_walk(generator: Generator, num_videos: int = 4, num_frames: int = 24, *,
                keyframes: int = 3, loop: bool = True, use_delta: bool = True, scale: float = 1.0,
                seed: int = 0, label: int | None = None, across_classes: bool = False) -> torch.Tensor:
    """Frames decoded along a smooth path through latent space -> (N, T, C, H, W).

    The path visits ``keyframes`` random noise vectors by spherical interpolation (and,
    with ``loop``, returns to the first, so the video loops seamlessly); with a learned
    prior, their codes, in straight lines. With
    ``use_delta`` every frame is decoded with its own predicted delta, times ``scale``.
    All N x T frames are decoded as one batch. A class-conditional model walks within
    one class (``label``) or each video within its own (the classes in turn); with
    ``across_classes``, keyframe k of video n is of class (n + k) mod C, and between two
    keyframes the decoder's one-hot class is blended as the code is: one shape turns
    into the next.
    """
    _check_sizes(num_videos, num_frames)
    check_positive("keyframes", keyframes)
    classes = generator.vae.num_classes
    if across_classes and (not classes or label is not None):
        raise ValueError("across_classes: needs a class-conditional model, and no label"
                         + ("" if classes else " (this model is unconditional)"))
    if use_delta:
        _need_predictor(generator, "latent-walk with deltas")
    keys = generator.sample_noise(num_videos * keyframes, seed=seed)
    key_labels = _labels(generator, label, num_videos, keyframes)
    if across_classes:  # (N * K,): video n's keyframe k is of class n + k
        key_labels = (torch.arange(num_videos, device=keys.device)[:, None]
                      + torch.arange(keyframes, device=keys.device)).flatten() % classes
    if generator.vae.prior is not None:  # the codes of the keyframes, each of its class
        keys = generator.vae.from_noise(keys, key_labels)
    # The keyframes' one-hot classes beside their codes: (N * K, D) -> (N, K, D + classes)
    keys = generator.vae.condition(keys, key_labels).view(num_videos, keyframes, -1)
    if loop:
        keys = torch.cat([keys, keys[:, :1]], 1)
    segments = keys.shape[1] - 1
    pos = (torch.arange(num_frames) / num_frames * segments if loop
           else torch.linspace(0, segments, num_frames)).to(keys.device)
    idx = pos.floor().long().clamp(max=segments - 1)
    t = (pos - idx).expand(num_videos, -1)
    d = generator.vae.latent_dim  # the code's part of a key; the rest is its one-hot class
    z = slerp(keys[:, idx, :d], keys[:, idx + 1, :d], t) if generator.vae.prior is None \
        else torch.lerp(keys[:, idx, :d], keys[:, idx + 1, :d], t[..., None])  # (N, T, D)
    onehot = torch.lerp(keys[:, idx, d:], keys[:, idx + 1, d:], t[..., None])  # (N, T, C), or empty
    z = torch.cat([z, onehot], 2).reshape(num_videos * num_frames, -1)  # the decoder's input
    x = generator.vae.decoder(z)
    if use_delta:
        x = generator.deltas.decode(z, generator.predict_delta(x, seed=seed), scale=scale)
    return x.view(num_videos, num_frames, *x.shape[1:])


@torch.no_grad()
def delta_sweep(generator: Generator, num_videos: int = 4, num_frames: int = 24, *,
                amplitude: float = 1.0, seed: int = 0, label: int | None = None) -> torch.Tensor:
    """One noise vector per video, the delta scale swept 0 -> a -> 0 -> -a -> (N, T, C, H, W).

    Each video's delta is predicted once from its base image; frame t is decoded with
    theta + s_t * delta, s_t = amplitude * sin(2 pi t / T). Frame 0 (s = 0) is exactly
    the base decode.
    """
    _check_sizes(num_videos, num_frames)
    _need_predictor(generator, "delta-sweep")
    z = _decoder_input(generator, generator.sample_noise(num_videos, seed=seed), label)  # (N, D [+ classes])
    delta = generator.predict_delta(generator.vae.decoder(z), seed=seed)  # (N, WEIGHT_UPDATE_SIZE)
    s = amplitude * torch.sin(2 * math.pi * torch.arange(num_frames, device=z.device) / num_frames)
    deltas = (delta[:, None] * s[None, :, None]).reshape(num_videos * num_frames, -1)
    x = generator.deltas.decode(z.repeat_interleave(num_frames, 0), deltas)
    return x.view(num_videos, num_frames, *x.shape[1:])


@torch.no_grad()
def feedback_video(generator: Generator, num_videos: int = 4, num_frames: int = 24, *,
                   scale: float = 1.0, damping: float = 0.0, seed: int = 0,
                   label: int | None = None) -> tuple[torch.Tensor, dict]:
    """A video the weight predictor drives: frame t+1 is decoded with theta + s * delta_t.

    delta_t is what the predictor infers from the last T frames generated so far (its
    own number of frames; at the start the first frame fills the window). Every frame
    decodes the same noise vector, so only the weights change. ``damping`` in [0, 1)
    smooths delta over time: d_t <- damping * d_(t-1) + (1 - damping) * d_t.

    Returns:
        video (N, T, C, H, W), and per frame (N, T) figures: ``delta_ratio``
        (||s * delta_t|| / ||theta|| over the adjusted weights) and ``change`` (mean
        absolute difference from the previous frame).
    """
    _check_sizes(num_videos, num_frames)
    if num_frames < 2:
        raise ValueError(f"num_frames={num_frames!r}: a feedback video needs at least 2 frames")
    _need_predictor(generator, "feedback")
    if not 0 <= damping < 1:
        raise ValueError(f"damping={damping!r}: expected a number in [0, 1)")
    window = generator.num_frames
    params = dict(generator.vae.named_parameters())
    theta = torch.sqrt(sum(params[n].square().sum() for n in generator.deltas.names))
    z = _decoder_input(generator, generator.sample_noise(num_videos, seed=seed), label)
    frames = [generator.vae.decoder(z)]  # frame 0: the base weights
    ratios = [torch.zeros(num_videos, device=z.device)]
    delta = None
    for _ in range(1, num_frames):
        recent = frames[-window:]
        recent = [recent[0]] * (window - len(recent)) + recent  # pad at the start
        new = generator.predictor(torch.stack(recent, 1))  # (N, window, C, H, W) -> (N, WEIGHT_UPDATE_SIZE)
        delta = new if delta is None else damping * delta + (1 - damping) * new
        frames.append(generator.deltas.decode(z, delta, scale=scale))
        ratios.append(abs(scale) * delta.norm(dim=1) / theta)
    video = torch.stack(frames, 1)
    change = torch.cat([torch.zeros(num_videos, 1, device=z.device),
                        (video[:, 1:] - video[:, :-1]).abs().mean(dim=(2, 3, 4))], 1)
    return video, {"delta_ratio": torch.stack(ratios, 1).cpu(), "change": change.cpu()}
