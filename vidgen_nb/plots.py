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


def plot_pipeline() -> Figure:
    """The kit's idea as a diagram: generation, synthetic video, predicted delta, critic."""
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    fig = Figure(figsize=(11, 3.6), layout="constrained")
    ax = fig.subplots()
    ax.set_xlim(0, 11)
    ax.set_ylim(0, 3.6)
    ax.set_axis_off()
    boxes = {  # name: (x, y, label, colour)
        "z": (0.1, 2.3, "noise z\n(B, latent_dim)", "#eeeeee"),
        "dec": (2.0, 2.3, "VAE decoder\nweights theta", "#cfe2f3"),
        "video": (4.0, 2.3, "synthetic video\n(B, T, C, H, W)", "#fff2cc"),
        "pred": (6.1, 2.3, "WeightPredictor3DCNN\n-> delta (B, W_SIZE)", "#d9ead3"),
        "patched": (4.0, 0.4, "VAE decoder\ntheta + s * delta", "#cfe2f3"),
        "critic": (6.6, 0.4, "critic D\nWGAN-GP score", "#f4cccc"),
        "real": (9.0, 0.4, "real images\n(ImageFolder)", "#eeeeee"),
    }
    centre = {}
    for name, (x, y, label, colour) in boxes.items():
        w, h = (2.6 if name == "pred" else 1.7), 0.95
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.05", fc=colour, ec="#555555"))
        ax.text(x + w / 2, y + h / 2, label, ha="center", va="center", fontsize=9)
        centre[name] = (x, y, w, h)

    def arrow(a, b, text="", side="right"):
        xa, ya, wa, ha = centre[a]
        xb, yb, wb, hb = centre[b]
        start = (xa + wa, ya + ha / 2) if side == "right" else (xa + wa / 2, ya)
        end = (xb, yb + hb / 2) if side == "right" else (xb + wb / 2, yb + hb)
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14, color="#333333"))
        if text:
            ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.12, text, ha="center", fontsize=8)

    arrow("z", "dec", "decode")
    arrow("dec", "video", "image")
    arrow("video", "pred")
    arrow("patched", "critic", "generated")
    ax.add_patch(FancyArrowPatch((9.0, 0.875), (8.3, 0.875), arrowstyle="-|>", mutation_scale=14))
    ax.add_patch(FancyArrowPatch((7.4, 2.3), (5.75, 1.4), arrowstyle="-|>", mutation_scale=14,
                                 color="#38761d", connectionstyle="arc3,rad=-0.2"))
    ax.text(7.0, 1.75, "delta", color="#38761d", fontsize=9)
    ax.add_patch(FancyArrowPatch((1.0, 2.3), (4.0, 0.875), arrowstyle="-|>", mutation_scale=14,
                                 color="#777777", connectionstyle="arc3,rad=0.25"))
    ax.text(1.6, 1.0, "same z", color="#777777", fontsize=8)
    ax.text(5.5, 3.45, "generator loss -E[D(patched)] + VAE terms: one backward updates theta and "
            "the predictor", ha="center", fontsize=9, style="italic")
    return fig


@torch.no_grad()
def plot_scores(critic, real: torch.Tensor, fake: torch.Tensor) -> Figure:
    """Histograms of the critic's scores on real and on generated images."""
    fig = Figure(figsize=(6, 3), layout="constrained")
    ax = fig.subplots()
    s_real, s_fake = critic(real).float().cpu(), critic(fake).float().cpu()
    bins = torch.linspace(min(s_real.min(), s_fake.min()), max(s_real.max(), s_fake.max()), 30).numpy()
    ax.hist(s_real.numpy(), bins=bins, alpha=0.6, label=f"real (mean {s_real.mean():.2f})")
    ax.hist(s_fake.numpy(), bins=bins, alpha=0.6, label=f"generated (mean {s_fake.mean():.2f})")
    ax.set_xlabel("critic score D(x)")
    ax.legend(fontsize=8)
    return fig
