"""Straightforward versions of the fast code, as oracles for the bench and the tests.

``reference_video`` builds the synthetic video one frame at a time; ``ReferenceGenerator``
decodes each sample on its own with ``functional_call(decoder, theta + s * delta_i)``;
``ReferenceTrainer`` trains with them. They compute the same math as ``synthetic_video``,
``Generator`` and ``Trainer`` (the same random draws in the same order), only slower:
``python -m vidgen_nb.bench`` times the difference, and the tests check the results agree.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch.func import functional_call

from .config import Config, VideoConfig
from .generator import Generator
from .trainer import Trainer


def reference_video(images: torch.Tensor, num_frames: int, video_cfg: VideoConfig | None = None, *,
                    seed: int | None = None) -> torch.Tensor:
    """``video.synthetic_video`` written plainly: one frame at a time in a Python loop.

    Draws the same random numbers in the same order, so for the same seed (or global
    RNG state) it returns the same video.
    """
    cfg = video_cfg or VideoConfig()
    images = images.detach() if cfg.detach else images
    B, C, H, W = images.shape
    device, dtype = images.device, images.dtype
    generator = torch.Generator(device).manual_seed(seed) if seed is not None else None

    def rand(*shape):
        return torch.rand(*shape, device=device, generator=generator).to(dtype) * 2 - 1

    angle, turn = rand(B) * math.pi, rand(B) * math.radians(cfg.rotation)
    zoom, bright = rand(B) * cfg.zoom, rand(B) * cfg.brightness
    field = torch.randn(B, 1, C, H, W, device=device, generator=generator).to(dtype) * cfg.noise
    times = torch.linspace(0, 1, num_frames, device=device, dtype=dtype)
    frames = []
    for k in range(num_frames):
        t = times[k]
        a, s = turn * t, 1 / (1 + zoom * t)
        dx = (cfg.shift * 2 / W) * torch.cos(angle) * t
        dy = (cfg.shift * 2 / H) * torch.sin(angle) * t
        theta = torch.stack([torch.stack([s * torch.cos(a), -s * torch.sin(a), -dx], -1),
                             torch.stack([s * torch.sin(a), s * torch.cos(a), -dy], -1)], -2)
        grid = F.affine_grid(theta, [B, C, H, W], align_corners=False)
        frame = F.grid_sample(images, grid, mode="bilinear", padding_mode="border",
                              align_corners=False)
        frame = frame * (1 + bright[:, None, None, None] * t) + field[:, 0] * t
        frames.append(frame.clamp(0, 1))
    return torch.stack(frames, 1)  # (B, T, C, H, W)


class ReferenceGenerator(Generator):
    """``Generator.generate`` written the straightforward way.

    The synthetic video is built frame by frame, and each sample is decoded on its own
    with ``functional_call(decoder, theta + s * delta_i)`` (delta_i the batch mean in
    ``batch_mean`` mode); no decoder features are shared between the two decodes.
    """

    def generate(self, z, y=None, *, scale=1.0, seed=None, return_delta=False):
        y = self.vae.labels(y, len(z), z.device)
        with torch.no_grad() if self.config.video.detach else contextlib.nullcontext():
            base = self.vae.decode(z, y)
        video = reference_video(base, self.num_frames, self.config.video, seed=seed)
        delta = self.predictor(video)
        parts = self.deltas.split(delta)
        if self.deltas.mode == "batch_mean":
            parts = {n: d.mean(0, keepdim=True).expand_as(d) for n, d in parts.items()}
        images = [functional_call(self.vae.decoder,
                                  self.deltas.patched({n: d[i] for n, d in parts.items()}, scale),
                                  (self.vae.condition(z[i:i + 1], y[i:i + 1]),))
                  for i in range(len(z))]
        x = torch.cat(images)
        return (x, delta) if return_delta else x


class ReferenceTrainer(Trainer):
    """The trainer with a ``ReferenceGenerator``; same networks, losses and data.

    The VAE, the critic and the real batches keep PyTorch's default (contiguous)
    layout; the predictor keeps the trainer's.
    """

    generator_class = ReferenceGenerator

    def __init__(self, config: Config, **kwargs):
        super().__init__(config, **kwargs)
        for net in (self.vae, self.critic):
            net.to(memory_format=torch.contiguous_format)
        self.channels_last = False  # real batches stay contiguous too
