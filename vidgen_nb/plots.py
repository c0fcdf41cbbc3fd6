"""Figures from training records (matplotlib object API: no global pyplot state)."""

from __future__ import annotations

from matplotlib.figure import Figure
import torch

LOSS_PANELS = (
    ("critic", "critic loss (incl. 10 x GP)"),
    ("generator", "generator loss"),
    ("recon", "reconstruction (SSE per image)"),
    ("kl", "KL divergence"),
)


def plot_losses(history: list[dict], *, title: str | None = None) -> Figure:
    """Four panels (critic, generator, reconstruction, KL) against the step, plus SWD marks."""
    fig = Figure(figsize=(10, 6), layout="constrained")
    axes = fig.subplots(2, 2).ravel()
    steps = [r for r in history if "critic" in r]
    for ax, (key, label) in zip(axes, LOSS_PANELS):
        ax.plot([r["step"] for r in steps], [r[key] for r in steps], lw=1)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    swd = [r for r in history if "swd" in r]
    if swd:
        axes[1].text(0.98, 0.95, "SWD " + " -> ".join(f"{r['swd']:.3f}" for r in (swd[0], swd[-1])),
                     transform=axes[1].transAxes, ha="right", va="top", fontsize=9)
    if title:
        fig.suptitle(title)
    return fig


def image_grid_figure(images: torch.Tensor, *, nrow: int = 8, title: str | None = None) -> Figure:
    """Images (N, C, H, W) in [0, 1] as one grid figure."""
    from torchvision.utils import make_grid

    grid = make_grid(images.detach().float().cpu().clamp(0, 1), nrow=nrow, padding=2, pad_value=1)
    fig = Figure(figsize=(6, 6 * grid.shape[1] / grid.shape[2] + (0.3 if title else 0)),
                 layout="constrained")
    ax = fig.subplots()
    ax.imshow(grid.permute(1, 2, 0).numpy())
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return fig
