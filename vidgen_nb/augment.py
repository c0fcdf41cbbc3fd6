"""Differentiable augmentation of the critic's inputs (DiffAugment, Zhao et al., 2020).

With a few hundred training images the critic soon memorises them, and its verdict
stops teaching the generator anything. DiffAugment shows the critic real and
generated images through the same random, differentiable transformations, on every
critic and generator step, so it must judge the content, not the exact pixels, and
gradients still flow back through the transformation into the generator.

A policy names the transformations, applied in order: ``"color,translation,cutout"``.
Images are (B, C, H, W) in [0, 1]; each image draws its own random amounts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import AUGMENTATIONS, check_augment


def _rand(x: torch.Tensor, *shape: int) -> torch.Tensor:
    """U(0, 1) per image, shaped to broadcast over x."""
    return torch.rand(x.shape[0], *shape, dtype=x.dtype, device=x.device)


def color(x: torch.Tensor) -> torch.Tensor:
    """Random brightness (+-0.5), saturation (x0 to x2) and contrast (x0.5 to x1.5)."""
    x = x + (_rand(x, 1, 1, 1) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_rand(x, 1, 1, 1) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_rand(x, 1, 1, 1) + 0.5) + mean


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to ``ratio`` of its size, filling with zeros."""
    B, _, H, W = x.shape
    sh, sw = int(H * ratio + 0.5), int(W * ratio + 0.5)
    ty = torch.randint(-sh, sh + 1, (B, 1, 1), device=x.device)
    tx = torch.randint(-sw, sw + 1, (B, 1, 1), device=x.device)
    b, y, xx = torch.meshgrid(torch.arange(B, device=x.device), torch.arange(H, device=x.device),
                              torch.arange(W, device=x.device), indexing="ij")
    y = (y + ty + 1).clamp(0, H + 1)  # +1: index into the image padded by one zero pixel
    xx = (xx + tx + 1).clamp(0, W + 1)
    padded = F.pad(x, (1, 1, 1, 1)).permute(0, 2, 3, 1)  # (B, H+2, W+2, C)
    return padded[b, y, xx].permute(0, 3, 1, 2)  # -> (B, C, H, W)


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero a square of ``ratio`` times the image size at a random place in each image."""
    B, _, H, W = x.shape
    ch, cw = int(H * ratio + 0.5), int(W * ratio + 0.5)
    oy = torch.randint(0, H + (1 - ch % 2), (B, 1, 1), device=x.device)
    ox = torch.randint(0, W + (1 - cw % 2), (B, 1, 1), device=x.device)
    b, y, xx = torch.meshgrid(torch.arange(B, device=x.device), torch.arange(ch, device=x.device),
                              torch.arange(cw, device=x.device), indexing="ij")
    y = (y + oy - ch // 2).clamp(0, H - 1)
    xx = (xx + ox - cw // 2).clamp(0, W - 1)
    mask = torch.ones(B, H, W, dtype=x.dtype, device=x.device)
    mask[b, y, xx] = 0
    return x * mask.unsqueeze(1)


TRANSFORMS = {"color": color, "translation": translation, "cutout": cutout}
assert tuple(TRANSFORMS) == AUGMENTATIONS


def diff_augment(x: torch.Tensor, policy: str) -> torch.Tensor:
    """Apply the policy's transformations to images (B, C, H, W); '' returns x itself."""
    for name in check_augment(policy):
        x = TRANSFORMS[name](x)
    return x
