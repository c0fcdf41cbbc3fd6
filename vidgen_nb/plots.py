"""Figures: training curves, image grids, filmstrips of videos, the pipeline, critic scores.

Every function returns a matplotlib ``Figure`` (object API: no global pyplot state);
a notebook shows it by making it a cell's last expression.
"""

from __future__ import annotations

import torch
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from torchvision.utils import make_grid

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
        ax.plot([r["step"] for r in steps], [r.get(key, float("nan")) for r in steps], lw=1)
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
    grid = make_grid(images.detach().float().cpu().clamp(0, 1), nrow=nrow, padding=2, pad_value=1)
    fig = Figure(figsize=(6, 6 * grid.shape[1] / grid.shape[2] + (0.3 if title else 0)),
                 layout="constrained")
    ax = fig.subplots()
    ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")  # true pixels; a smaller PNG
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return fig


def plot_delta_parts(parts: dict[str, torch.Tensor], *, gain: float = 4.0,
                     title: str | None = None) -> Figure:
    """``evaluation.delta_parts`` as rows of images: theta alone, the mean delta, each
    image's own, and |own - mean| times ``gain`` (so that a small per-image part shows)."""
    rows = list(parts)
    n = len(parts[rows[0]])
    fig = Figure(figsize=(1.1 * n + 1.8, 1.2 * len(rows) + (0.4 if title else 0)))
    axes = fig.subplots(len(rows), 1, squeeze=False)[:, 0]
    for ax, name in zip(axes, rows):
        images = parts[name] * (gain if name.startswith("|") else 1.0)
        ax.imshow(make_grid(images.clamp(0, 1), nrow=n, padding=2, pad_value=1.0).permute(1, 2, 0).numpy(),
                  interpolation="nearest")
        ax.set_ylabel(f"{name} x {gain:g}" if name.startswith("|") else name, rotation=0, ha="right",
                      va="center", fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_pipeline() -> Figure:
    """The kit's idea as a diagram: generation, synthetic video, predicted delta, critic."""
    fig = Figure(figsize=(11, 3.6), layout="constrained")
    ax = fig.subplots()
    ax.set_xlim(0, 11)
    ax.set_ylim(0, 3.6)
    ax.set_axis_off()
    boxes = {  # name: (x, y, label, colour)
        "z": (0.1, 2.3, "noise z\n(B, latent_dim)", "#eeeeee"),
        "dec": (2.0, 2.3, "VAE decoder\nweights theta", "#cfe2f3"),
        "video": (4.0, 2.3, "synthetic video\n(B, T, C, H, W)", "#fff2cc"),
        "pred": (6.1, 2.3, "WeightPredictor3DCNN\n-> delta (B, WEIGHT_UPDATE_SIZE)", "#d9ead3"),
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
def plot_scores(critic, real: torch.Tensor, fake: torch.Tensor, *, y_real=None, y_fake=None,
                title: str = "critic scores: real against generated") -> Figure:
    """Histograms of the critic's scores on real and on generated images (a conditional
    critic judges each with its class: ``y_real``, ``y_fake``)."""
    fig = Figure(figsize=(6, 3), layout="constrained")
    ax = fig.subplots()
    s_real, s_fake = critic(real, y_real).float().cpu(), critic(fake, y_fake).float().cpu()
    bins = torch.linspace(min(s_real.min(), s_fake.min()), max(s_real.max(), s_fake.max()), 30).numpy()
    ax.hist(s_real.numpy(), bins=bins, alpha=0.6, label=f"real (mean {s_real.mean():.2f})")
    ax.hist(s_fake.numpy(), bins=bins, alpha=0.6, label=f"generated (mean {s_fake.mean():.2f})")
    ax.set_xlabel("critic score D(x)")
    ax.set_ylabel("images")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return fig


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
            ax.imshow(video[b, k].permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=1,
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if b == 0:
                ax.set_title(f"t={k}", fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def plot_feedback(stats: dict) -> Figure:
    """Per-frame ||s delta|| / ||theta|| and frame-to-frame change of feedback videos."""
    fig = Figure(figsize=(8, 2.6), layout="constrained")
    for ax, key, label in zip(fig.subplots(1, 2), ("delta_ratio", "change"),
                              ("||s delta_t|| / ||theta||", "mean |frame t - frame t-1|")):
        for b, row in enumerate(stats[key].numpy()):
            ax.plot(row, lw=1, label=f"video {b}")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("frame")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return fig


def _series(run: dict, key: str) -> list[tuple]:
    """(step, training seconds, value) of one figure through a run: from its ``points``
    (every figure), or for SWD from its ``curve`` (what older results keep)."""
    if run.get("points") and key in run["points"][-1]:
        return [(p["step"], p["train_seconds"], p[key]) for p in run["points"]]
    return [tuple(p) for p in run["curve"]] if key == "swd" else []


def plot_study_swd(runs: list[dict], arms: list[str]) -> Figure:
    """A study's SWD, and the judge's share of samples named where the runs have it,
    during training: against the step and against training seconds.

    One colour per arm: a thin line per seed and, against the step, a thick line for
    the mean over seeds (``runs``: the ``result.json`` of each run). Dashed: the same
    figure for real images (SWD of one half against the other; the share named).
    """
    rows = [("swd", "SWD to real images (log; lower is better)", "log", "swd_floor")]
    if runs and all(_series(r, "shapes_named") for r in runs):
        rows.append(("shapes_named", "share of samples the judge names", "linear", "shapes_named_real"))
    fig = Figure(figsize=(11, 4 * len(rows)), layout="constrained")
    colours = {arm: f"C{i}" for i, arm in enumerate(arms)}
    for (by_step, by_time), (key, label, scale, real) in zip(fig.subplots(len(rows), 2, squeeze=False), rows):
        for arm in arms:
            curves = [_series(r, key) for r in runs if r["arm"] == arm]
            for curve in curves:
                steps, seconds, values = zip(*curve)
                by_step.plot(steps, values, color=colours[arm], lw=0.7, alpha=0.5)
                by_time.plot(seconds, values, color=colours[arm], lw=1, alpha=0.8,
                             label=arm if curve is curves[0] else None)
            common = min((len(c) for c in curves), default=0)
            if common:
                mean = [sum(c[i][2] for c in curves) / len(curves) for i in range(common)]
                by_step.plot([p[0] for p in curves[0][:common]], mean, color=colours[arm], lw=2.2, label=arm)
        by_step.set(xlabel="step", ylabel=label, yscale=scale)
        by_time.set(xlabel="training seconds", yscale=scale)
        reference = [r[real] for r in runs if real in r]
        for ax in (by_step, by_time):
            ax.grid(alpha=0.3, which="both")
            if reference:
                ax.axhline(sum(reference) / len(reference), color="k", ls="--", lw=1,
                           label="real images" if ax is by_step else None)
        by_step.sharey(by_time)
    top_step, top_time = fig.axes[:2]
    top_step.set_title("equal steps (thick: mean over seeds)")
    top_time.set_title("equal time (one line per seed)")
    top_step.legend(fontsize=8)
    return fig


def plot_study_samples(folder, arms: list[str], seed: int, n: int = 16) -> Figure:
    """The first ``n`` images of each arm's ``samples.png`` (one seed), side by side."""
    from pathlib import Path

    import numpy as np
    from PIL import Image

    fig = Figure(figsize=(2.6 * len(arms), 2.9), layout="constrained")
    axes = fig.subplots(1, len(arms), squeeze=False)[0]
    side = int(n**0.5)
    for ax, arm in zip(axes, arms):
        ax.set_axis_off()
        ax.set_title(arm, fontsize=10)
        path = Path(folder) / arm / f"seed_{seed}" / "samples.png"
        if not path.exists():
            continue
        with Image.open(path) as image:  # 8 x 8 images with 2-px padding: keep side x side of them
            grid = np.asarray(image.convert("RGB"))
        size = (grid.shape[1] - 2) // 8
        ax.imshow(grid[: side * size + 2, : side * size + 2])
    return fig
