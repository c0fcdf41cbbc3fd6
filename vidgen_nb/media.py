"""Videos out: GIF and MP4 files, and inline playback in a notebook.

Every function takes a video (T, C, H, W), or a batch (B, T, C, H, W) shown side by
side, with values in [0, 1].
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np
import torch
from matplotlib.animation import FuncAnimation
from matplotlib.figure import Figure
from PIL import Image
from torchvision.utils import make_grid

from .files import atomic_write


def _to_uint8_frames(video: torch.Tensor, nrow: int | None = None) -> list[Image.Image]:
    """(T, C, H, W) or (B, T, C, H, W) in [0, 1] -> T PIL images (a grid of B per frame)."""
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


# A GIF frame lasts a whole number of hundredths of a second, at most 655.35 s, and
# browsers show frames under 20 ms as 100 ms: frame rates outside these are refused.
MIN_FPS, MAX_FPS = 0.01, 50


def check_fps(fps) -> None:
    """``ValueError`` unless ``fps`` is a frame rate every player shows as asked."""
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not MIN_FPS <= fps <= MAX_FPS:
        raise ValueError(f"fps={fps!r}: expected frames per second in {MIN_FPS}..{MAX_FPS}")


def save_gif(video: torch.Tensor, path: str | os.PathLike, *, fps: float = 8, scale: int = 1,
             nrow: int | None = None) -> Path:
    """Save a video (T, C, H, W), or a batch of them side by side, as a looping GIF.

    ``scale`` enlarges each frame (nearest neighbour), handy for 16-32 px images.
    """
    data = gif_bytes(video, fps=fps, scale=scale, nrow=nrow)
    with atomic_write(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def gif_bytes(video: torch.Tensor, *, fps: float = 8, scale: int = 1, nrow: int | None = None) -> bytes:
    """``save_gif``'s file, in memory."""
    check_fps(fps)
    frames = _to_uint8_frames(video, nrow)
    if scale > 1:
        frames = [f.resize((f.width * scale, f.height * scale), Image.Resampling.NEAREST)
                  for f in frames]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], loop=0,
                   duration=round(1000 / fps), disposal=2)
    return out.getvalue()


def save_mp4(video: torch.Tensor, path: str | os.PathLike, *, fps: float = 8, scale: int = 1) -> Path:
    """Save as MP4 through imageio (with imageio-ffmpeg or PyAV installed)."""
    try:
        import imageio.v3 as iio
    except ImportError:
        raise RuntimeError("MP4 export needs imageio with imageio-ffmpeg or PyAV "
                           "(pip install imageio imageio-ffmpeg); GIF needs nothing more") from None
    frames = _to_uint8_frames(video)
    size = (frames[0].width * scale // 2 * 2, frames[0].height * scale // 2 * 2)  # even sizes
    arrays = [np.asarray(f.convert("RGB").resize(size, Image.Resampling.NEAREST)) for f in frames]
    with atomic_write(path) as tmp:
        iio.imwrite(tmp, np.stack(arrays), fps=fps, extension=".mp4")
    return Path(path)


def html_video(video: torch.Tensor, *, fps: float = 8, scale: int = 4):
    """Inline playback in a notebook: an HTML5 animation (frames as a JS player)."""
    from IPython.display import HTML

    frames = _to_uint8_frames(video)
    fig = Figure(figsize=(frames[0].width * scale / 72, frames[0].height * scale / 72), dpi=72)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    shown = ax.imshow(frames[0], interpolation="nearest")
    animation = FuncAnimation(fig, lambda k: shown.set_data(frames[k]), frames=len(frames),
                              interval=1000 / fps)
    return HTML(_offline(animation.to_jshtml(default_mode="loop")))


# matplotlib's player takes its button icons from Font Awesome on a CDN; offline they
# are blank (and the browser logs an error). Plain symbols need no network.
_ICONS = {"fast-backward": "⏮", "step-backward": "⏪", "backward": "◀", "stop": "⏹",
          "play": "▶", "step-forward": "⏩", "fast-forward": "⏭", "minus": "−", "plus": "+"}


def _offline(html: str) -> str:
    """The player's HTML without links to other sites: icons as text."""
    html = re.sub(r"<link[^>]*>", "", html)
    return re.sub(r'<i class="fa fa-([a-z-]+)"></i>', lambda m: _ICONS.get(m.group(1), m.group(1)), html)


def show_gif(video: torch.Tensor, *, fps: float = 8, scale: int = 2):
    """A video shown inline in a notebook as a looping GIF (no script, no network)."""
    from IPython.display import Image as IPythonImage

    return IPythonImage(data=gif_bytes(video, fps=fps, scale=scale), format="gif")
