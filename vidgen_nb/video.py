"""The synthetic video: what the weight predictor watches of each generated image.

T frames made from one image by small, smooth, seeded changes. Frame 0 is the image
itself; by the last frame it has drifted by ``shift`` pixels, zoomed by ``zoom``,
turned by ``rotation`` degrees, changed brightness by ``brightness`` and gained a
noise field of std ``noise``. Every change grows linearly with time, so consecutive
frames differ a little and evenly. All B x T frames are made at once (one
``grid_sample``), on the images' device.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .config import VideoConfig, check_positive


def synthetic_video(
    images: torch.Tensor,
    num_frames: int,
    video_cfg: VideoConfig | None = None,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Images (B, C, H, W) in [0, 1] -> videos (B, T, C, H, W) in [0, 1].

    Args:
        images: the frames' source, e.g. freshly generated images.
        num_frames: T.
        video_cfg: amounts of each change at the last frame, and whether to detach the images
            (default ``VideoConfig()``).
        seed: makes the random directions and noise repeatable (a generator on the
            images' device is seeded with it); otherwise ``generator``, else the global RNG.
    """
    cfg = video_cfg or VideoConfig()
    if images.dim() != 4:
        raise ValueError(f"images of shape {tuple(images.shape)}: expected (B, C, H, W)")
    check_positive("num_frames", num_frames)
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

    grid = _sampling_grid(turn, zoom, angle, cfg.shift, t, H, W)  # (B, T, H, W, 2)
    # All T frames of a video sample the same image: stack them along the height, so
    # the image is read in place instead of being copied T times.
    video = F.grid_sample(images, grid.view(B, num_frames * H, W, 2), mode="bilinear",
                          padding_mode="border", align_corners=False)  # (B, C, T*H, W)
    video = video.view(B, C, num_frames, H, W)
    # In place, one pass each: brightness, noise, clamp.
    video.mul_(1 + _per_frame(bright, t).view(B, 1, num_frames, 1, 1))
    video.addcmul_(field.view(B, C, 1, H, W), t.view(num_frames, 1, 1))
    return video.clamp_(0, 1).transpose(1, 2)  # (B, T, C, H, W), a view


def critic_direction(critic: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor
                     ) -> torch.Tensor:
    """The direction in which the critic's score D(x, y) rises fastest, per image:
    grad_x D (B, C, H, W), scaled so that each image's RMS per value is 1. An input for
    the predictor only: no graph is kept, so no second-order terms reach the critic."""
    with torch.enable_grad():
        x = images.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(critic(x, y=labels).sum(), x)
    rms = grad.float().square().mean((1, 2, 3), keepdim=True).sqrt().clamp_min(1e-12)
    return (grad.float() / rms).to(images.dtype)


def guided_video(video: torch.Tensor, direction: torch.Tensor, step: float) -> torch.Tensor:
    """Videos (B, T, C, H, W) with frame k moved k * ``step`` along ``direction`` (B, C, H, W),
    clamped to [0, 1]: frame 0 stays the image, and each later frame shows a little more of
    what the critic would change."""
    k = torch.arange(video.shape[1], device=video.device, dtype=video.dtype) * step
    return (video + k.view(1, -1, 1, 1, 1) * direction[:, None]).clamp_(0, 1)


def _per_frame(v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(B,) amounts -> (B, T, 1, 1), growing linearly over the frames' times t (T,)."""
    return v.view(len(v), 1, 1, 1) * t.view(len(t), 1, 1)


def _sampling_grid(turn: torch.Tensor, zoom: torch.Tensor, angle: torch.Tensor, shift: float,
                   t: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """One affine map per (video, frame) in grid_sample's [-1, 1] coordinates -> (B, T, H, W, 2):
    the sampling position of output pixel (x, y) is  s*R(a) @ (x, y) - (dx, dy)."""
    device, dtype = t.device, t.dtype
    a = _per_frame(turn, t)
    s = 1 / (1 + _per_frame(zoom, t))  # sampling scale < 1 zooms in
    dx = (shift * 2 / W) * _per_frame(torch.cos(angle), t)
    dy = (shift * 2 / H) * _per_frame(torch.sin(angle), t)
    cos, sin = s * torch.cos(a), s * torch.sin(a)
    x = torch.arange(W, device=device, dtype=dtype) * (2 / W) + (1 / W - 1)  # pixel centres
    y = (torch.arange(H, device=device, dtype=dtype) * (2 / H) + (1 / H - 1))[:, None]
    return torch.stack([cos * x - sin * y - dx, sin * x + cos * y - dy], -1)
