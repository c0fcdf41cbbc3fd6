"""Synthetic video: T frames made from one image by small, smooth, seeded changes.

Frame 0 is the image itself; by the last frame it has drifted by ``shift`` pixels,
zoomed by ``zoom``, turned by ``rotation`` degrees, changed brightness by
``brightness`` and gained a noise field of std ``noise``. Every change grows linearly
with time, so consecutive frames differ a little and evenly. All B x T frames are
made at once (one ``grid_sample``), on the images' device.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from PIL import Image

from .config import VideoConfig


def synthetic_video(
    images: torch.Tensor,
    num_frames: int,
    cfg: VideoConfig | None = None,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Images (B, C, H, W) in [0, 1] -> videos (B, T, C, H, W) in [0, 1].

    Args:
        images: the frames' source, e.g. freshly generated images.
        num_frames: T.
        cfg: amounts of each change at the last frame, and whether to detach the images
            (default ``VideoConfig()``).
        seed: makes the random directions and noise repeatable (a generator on the
            images' device is seeded with it); otherwise ``generator``, else the global RNG.
    """
    cfg = cfg or VideoConfig()
    if images.dim() != 4:
        raise ValueError(f"images of shape {tuple(images.shape)}: expected (B, C, H, W)")
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"num_frames={num_frames!r}: expected a positive integer")
    if cfg.detach:
        images = images.detach()
    B, C, H, W = images.shape
    device, dtype = images.device, images.dtype
    if seed is not None:
        generator = torch.Generator(device).manual_seed(seed)

    def rand(*shape):  # uniform in [-1, 1]
        return torch.rand(*shape, device=device, generator=generator).to(dtype) * 2 - 1

    # Per video: a random direction for each change, reached in full at the last frame.
    angle = rand(B) * math.pi  # direction of the drift
    turn = rand(B) * math.radians(cfg.rotation)
    zoom = rand(B) * cfg.zoom
    bright = rand(B) * cfg.brightness
    field = torch.randn(B, 1, C, H, W, device=device, generator=generator).to(dtype) * cfg.noise
    t = torch.linspace(0, 1, num_frames, device=device, dtype=dtype)  # (T,), 0 at frame 0

    # Affine maps in grid_sample's [-1, 1] coordinates, one per (video, frame): (B, T, 2, 3).
    a = turn[:, None] * t  # (B, T)
    s = 1 / (1 + zoom[:, None] * t)  # sampling scale < 1 zooms in
    dx = (cfg.shift * 2 / W) * torch.cos(angle)[:, None] * t
    dy = (cfg.shift * 2 / H) * torch.sin(angle)[:, None] * t
    theta = torch.stack([
        torch.stack([s * torch.cos(a), -s * torch.sin(a), -dx], -1),
        torch.stack([s * torch.sin(a), s * torch.cos(a), -dy], -1),
    ], -2)
    grid = F.affine_grid(theta.view(B * num_frames, 2, 3), [B * num_frames, C, H, W],
                         align_corners=False)
    frames = images[:, None].expand(B, num_frames, C, H, W).reshape(B * num_frames, C, H, W)
    video = F.grid_sample(frames, grid, mode="bilinear", padding_mode="border",
                          align_corners=False).view(B, num_frames, C, H, W)
    video = video * (1 + bright[:, None, None, None, None] * t[None, :, None, None, None])
    video = video + field * t[None, :, None, None, None]
    return video.clamp(0, 1)


def _to_uint8_frames(video: torch.Tensor, nrow: int | None = None) -> list[Image.Image]:
    """(T, C, H, W) or (B, T, C, H, W) in [0, 1] -> T PIL images (a grid of B per frame)."""
    from torchvision.utils import make_grid

    if video.dim() == 4:
        video = video[None]
    if video.dim() != 5:
        raise ValueError(f"video of shape {tuple(video.shape)}: expected (T, C, H, W) or (B, T, C, H, W)")
    video = video.detach().float().cpu().clamp(0, 1)
    B, T = video.shape[:2]
    frames = []
    for k in range(T):
        grid = make_grid(video[:, k], nrow=nrow or B, padding=2 if B > 1 else 0, pad_value=1)
        array = (grid * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()  # (H, W, C)
        frames.append(Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array))
    return frames


def save_gif(video: torch.Tensor, path: str | os.PathLike, *, fps: float = 8, scale: int = 1,
             nrow: int | None = None) -> Path:
    """Save a video (T, C, H, W), or a batch of them side by side, as a looping GIF.

    ``scale`` enlarges each frame (nearest neighbour), handy for 16-32 px images.
    """
    frames = _to_uint8_frames(video, nrow)
    if scale > 1:
        frames = [f.resize((f.width * scale, f.height * scale), Image.Resampling.NEAREST)
                  for f in frames]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, save_all=True, append_images=frames[1:], loop=0,
                   duration=round(1000 / fps), disposal=2)
    return path


def plot_filmstrip(video: torch.Tensor, *, max_videos: int = 4, title: str | None = None) -> Figure:
    """A figure with one row per video and one column per frame.

    Args:
        video: (T, C, H, W) or (B, T, C, H, W) in [0, 1]; at most ``max_videos`` rows.
    """
    if video.dim() == 4:
        video = video[None]
    video = video[:max_videos].detach().float().cpu().clamp(0, 1)
    B, T = video.shape[:2]
    fig = Figure(figsize=(1.1 * T, 1.1 * B + (0.4 if title else 0)), dpi=72, layout="constrained")
    axes = fig.subplots(B, T, squeeze=False)
    for b in range(B):
        for k in range(T):
            ax = axes[b, k]
            ax.imshow(video[b, k].permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if b == 0:
                ax.set_title(f"t={k}", fontsize=8)
    if title:
        fig.suptitle(title)
    return fig
