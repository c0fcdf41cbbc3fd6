"""``vidgen-video`` / ``python -m vidgen_nb.render``: videos from a training checkpoint.

Modes: ``latent-walk``, ``delta-sweep`` and ``feedback`` (see ``vidgen_nb.generated_video``).
Writes a GIF (or an MP4, when the name ends in .mp4 and imageio can write one).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

from .checkpoint import run_checkpoint
from .commands import CommandError, Parser, run_command
from .device import check_fits, pick_device
from .files import check_path
from .generated_video import delta_sweep, feedback_video, latent_walk
from .generator import Generator
from .media import MAX_FPS, MIN_FPS, save_gif, save_mp4
from .shipped import SHIPPED

MODES = {"latent-walk": latent_walk, "delta-sweep": delta_sweep, "feedback": feedback_video}
PROG = "vidgen-video"


def build_parser() -> Parser:
    """The options of ``vidgen-video``."""
    parser = Parser(
        prog=PROG, description="Render videos from a trained vidgen_nb model: a walk "
        "through latent space, a sweep of the predicted delta, or a video the weight predictor drives.")
    parser.add_argument("--checkpoint", help="training checkpoint, or 'shipped' for the model the kit "
                        "ships (default: runs/main/checkpoint.pt, as make train writes, or the "
                        "shipped model when there is none)")
    parser.add_argument("--mode", choices=tuple(MODES), default="feedback")
    parser.add_argument("--frames", type=int, default=24, help="frames per video")
    parser.add_argument("--videos", type=int, default=4, help="videos, shown side by side")
    parser.add_argument("--fps", type=float, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=float, default=1.0, help="delta scale s (amplitude for delta-sweep)")
    parser.add_argument("--damping", type=float, default=0.0, help="feedback: smoothing of delta over time, [0, 1)")
    parser.add_argument("--out", help="GIF or MP4 to write (default: <mode>.gif beside the checkpoint)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto")
    parser.add_argument("--class", dest="label", type=int, metavar="K",
                        help="a class-conditional model draws class K (0-based, in the order of "
                             "the data's sorted sub-folders) in every video (default: each video "
                             "its own class, in turn)")
    parser.add_argument("--across-classes", action="store_true",
                        help="latent-walk of a class-conditional model: each keyframe of the "
                             "next class, one shape turning into the next")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``vidgen-video``: render generated videos from a training checkpoint."""
    return run_command(PROG, lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    """Read the command line, load the generator, render and write the video."""
    args = build_parser().parse_args(argv)
    out, fallback = _read_arguments(args)
    generator, upscale = _load(args, fallback)
    _render(generator, args, out, upscale)
    print(f"wrote {out} ({args.videos} videos x {args.frames} frames, {args.mode})")
    return 0


def _read_arguments(args: argparse.Namespace) -> tuple[Path, bool]:
    """The file to write, and whether the shipped model stands in for a missing
    ``runs/main`` (``args.checkpoint`` is set to the file to load); ``CommandError``
    naming the option of a value it cannot use."""
    for name in ("frames", "videos"):
        if getattr(args, name) < 1:
            raise CommandError(f"--{name} {getattr(args, name)}: expected a positive integer")
    if not MIN_FPS <= args.fps <= MAX_FPS:  # NaN fails too
        raise CommandError(f"--fps {args.fps}: expected frames per second in {MIN_FPS}..{MAX_FPS}")
    fallback = args.checkpoint is None and not run_checkpoint("main").is_file()
    if args.checkpoint is None:
        args.checkpoint = "shipped" if fallback else str(run_checkpoint("main"))
    shipped = args.checkpoint == "shipped"
    if shipped:
        args.checkpoint = str(SHIPPED)
    for name in ("checkpoint", "out"):
        if getattr(args, name) is not None:
            try:
                check_path(getattr(args, name), f"--{name}")
            except ValueError as exc:
                raise CommandError(str(exc)) from None
    if not math.isfinite(args.scale) or not math.isfinite(args.damping):
        raise CommandError(f"--scale {args.scale}, --damping {args.damping}: expected finite numbers")
    if args.mode == "feedback" and args.frames < 2:
        raise CommandError(f"--frames {args.frames}: a feedback video needs at least 2 frames")
    # Beside the checkpoint; the shipped model's into the current folder, not the kit's.
    out = Path(args.out or (Path() if shipped else Path(args.checkpoint).parent) / f"{args.mode}.gif")
    if out.suffix.lower() not in (".gif", ".mp4"):
        raise CommandError(f"--out {out}: expected a .gif or .mp4 file name")
    if out.is_dir() or any(p.exists() and not p.is_dir() for p in out.parents):
        raise CommandError(f"--out {out}: a folder is in the way, or a file where a folder should be")
    return out, fallback


def _load(args: argparse.Namespace, fallback: bool) -> tuple[Generator, int]:
    """The checkpoint's generator on ``--device``, and the GIF's upscaling factor;
    ``CommandError`` for a checkpoint, size or class it cannot render."""
    try:
        device = pick_device(args.device)
    except ValueError as exc:
        raise CommandError(f"--device: {exc}") from None
    if fallback:  # said once the arguments are known good, so that an error stays one line
        print(f"no {run_checkpoint('main')} (make train writes it): the shipped model", file=sys.stderr)
    try:
        generator = Generator.from_checkpoint(args.checkpoint, device)
    except FileNotFoundError:
        raise CommandError(f"--checkpoint: {args.checkpoint} does not exist (train one first: "
                           "make train)") from None
    except ValueError as exc:
        raise CommandError(f"--checkpoint: {exc}") from None
    m = generator.config.model
    upscale = max(1, 96 // m.image_size)
    try:  # the float frames, then the GIF's upscaled 8-bit copies (two of them at once)
        check_fits(args.videos * args.frames * m.channels * m.image_size**2 * (4 + 2 * upscale**2),
                   device, f"--frames {args.frames} x --videos {args.videos}")
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if args.label is not None and not m.num_classes:
        raise CommandError(f"--class {args.label}: this model is unconditional (trained without "
                           "--num-classes)")
    if args.label is not None and not 0 <= args.label < m.num_classes:
        raise CommandError(f"--class {args.label}: expected a class in 0..{m.num_classes - 1}")
    if args.across_classes and (args.mode != "latent-walk" or not m.num_classes or args.label is not None):
        raise CommandError("--across-classes: goes with --mode latent-walk, a class-conditional "
                           "model and no --class")
    return generator, upscale


def _render(generator: Generator, args: argparse.Namespace, out: Path, upscale: int) -> None:
    """Make the video ``--mode`` asks for and write it to ``out`` (nothing written if it fails)."""
    common = dict(num_videos=args.videos, num_frames=args.frames, seed=args.seed, label=args.label)
    try:
        if args.mode == "latent-walk":
            video = latent_walk(generator, use_delta=generator.predictor is not None, scale=args.scale,
                                across_classes=args.across_classes, **common)
        elif args.mode == "delta-sweep":
            video = delta_sweep(generator, amplitude=args.scale, **common)
        else:
            video, stats = feedback_video(generator, scale=args.scale, damping=args.damping, **common)
            ratio, change = stats["delta_ratio"][:, 1:], stats["change"][:, 1:]
            print(f"||s delta||/||theta||: first {ratio[:, 0].mean():.3f}, last {ratio[:, -1].mean():.3f}, "
                  f"max {ratio.max():.3f}; frame change: first {change[:, 0].mean():.4f}, "
                  f"last {change[:, -1].mean():.4f}")
        if not torch.isfinite(video).all():
            raise CommandError("the checkpoint's generator makes NaN or infinite pixels (a diverged "
                               f"run?); nothing was written to {out}")
        if out.suffix.lower() == ".mp4":
            save_mp4(video, out, fps=args.fps, scale=upscale)
        else:
            save_gif(video, out, fps=args.fps, scale=upscale)
    except (ValueError, RuntimeError) as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"--out {out}: cannot write it: {exc.strerror or exc}") from None


if __name__ == "__main__":
    sys.exit(main())
