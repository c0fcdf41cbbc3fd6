"""``vidgen-train`` / ``python -m vidgen_nb.train``: train from the command line.

Writes into the run folder (``--out``): ``checkpoint.pt``, ``config.json``,
``metrics.jsonl``, ``samples/step_*.png`` and, at the end, ``samples.png``,
``reconstructions.png``, ``losses.png`` and ``videos.gif`` (the synthetic videos of
generated images). The last line of ``metrics.jsonl`` holds every quality figure of
``evaluation.py``, which the command also prints.
"""

from __future__ import annotations

import argparse
import errno
import signal
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torchvision.utils import save_image

from .checkpoint import CHECKPOINT, RUNS
from .files import atomic_write, escape_unprintable_output
from .config import (DECODER_NORMS, DECODER_UPSAMPLES, DELTA_MODES, DELTA_PARAMS, DELTA_SOURCES,
                     PRESETS, Config)
from .data import CLASSES, DatasetError
from .device import PRECISIONS, pick_device
from .media import save_gif
from .plots import plot_losses
from .training import NonFiniteLossError, Trainer, TrainingInterrupted
from .video import synthetic_video

# Config field -> the option that sets it, to name options in error messages.
OPTIONS = {
    "batch_size": "--batch-size", "image_size": "--image-size", "num_frames": "--frames",
    "delta_targets": "--targets", "delta_mode": "--delta-mode", "n_critic": "--n-critic",
    "use_predictor": "--no-predictor", "steps": "--steps", "seed": "--seed", "lr": "--lr",
    "device": "--device", "checkpoint_every": "--checkpoint-every", "delta_param": "--delta-param",
    "delta_source": "--delta-source", "delta_rank": "--delta-rank",
    "ema_decay": "--ema-decay", "augment": "--augment", "recon_sigma": "--recon-sigma",
    "adversarial_recon": "--adversarial-recon", "recon_through_generator": "--recon-through",
    "decoder_convs": "--decoder-convs", "critic_convs": "--critic-convs",
    "decoder_upsample": "--decoder-upsample", "decoder_norm": "--decoder-norm",
}


class Parser(argparse.ArgumentParser):
    def error(self, message: str):
        """One line, exit status 2, no usage dump."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> Parser:
    p = Parser(
        prog="vidgen-train",
        description="Train the VAE generator, its WGAN-GP critic and the 3D-CNN weight "
                    "predictor. Without options: the 'cpu' preset on the built-in dataset.",
        epilog="Example: vidgen-train --preset tiny --steps 100 --out runs/try "
               "(then --resume auto continues it).")
    p.add_argument("--data", metavar="FOLDER",
                   help="ImageFolder tree, one sub-folder per class (default: built-in shapes)")
    p.add_argument("--out", metavar="FOLDER", help="run folder (default: runs/<preset>)")
    p.add_argument("--preset", choices=tuple(PRESETS),
                   help="sizes and settings to start from (default: cpu)")
    p.add_argument("--steps", type=int, help="total generator steps of the run (default: the preset's)")
    p.add_argument("--batch-size", type=int, help="images per step")
    p.add_argument("--image-size", type=int, help="height = width of the images")
    p.add_argument("--frames", type=int, help="frames T of the synthetic video")
    p.add_argument("--targets", nargs="+", metavar="PATTERN",
                   help="VAE parameters the predictor adjusts (names or globs, e.g. 'decoder.out.*')")
    p.add_argument("--delta-mode", choices=DELTA_MODES,
                   help="a delta per image (default) or the batch mean")
    p.add_argument("--delta-param", choices=DELTA_PARAMS,
                   help="a number per weight, added (dense); per channel pair, scaling theta "
                        "(channel); or a low-rank product A B per weight matrix (lora)")
    p.add_argument("--delta-rank", type=int, metavar="R", help="rank of the lora deltas (default 4)")
    p.add_argument("--delta-source", choices=DELTA_SOURCES,
                   help="the predictor watching each image's video (default), or one learned "
                        "delta for every image (an ablation)")
    p.add_argument("--ema-decay", type=float,
                   help="weight averaging of the generator (G_ema) per step; 0: off")
    p.add_argument("--augment", metavar="POLICY",
                   help="DiffAugment for the critic, e.g. color,translation,cutout; '' for none")
    p.add_argument("--recon-sigma", type=float,
                   help="scale of the VAE's Gaussian likelihood per value; 0: calibrated")
    p.add_argument("--adversarial-recon", choices=("on", "off"),
                   help="the critic also judges reconstructions (half its fakes), as in a VAE-GAN")
    p.add_argument("--recon-through", choices=("generator", "base"),
                   help="decode reconstructions with theta + the delta of their own video "
                        "(generator), or with the base weights theta alone (base)")
    p.add_argument("--decoder-convs", type=int, metavar="K",
                   help="transposed convolutions per decoder resolution (default 1; extra ones 3x3)")
    p.add_argument("--decoder-upsample", choices=DECODER_UPSAMPLES,
                   help="how the decoder doubles H and W: ConvTranspose2d(4x4, stride 2) "
                        "(transposed), or nearest 2x then ConvTranspose2d(3x3) (resize)")
    p.add_argument("--decoder-norm", choices=DECODER_NORMS,
                   help="pixel: ProGAN's pixelwise normalisation after every decoder ReLU")
    p.add_argument("--critic-convs", type=int, metavar="K", help="convolutions per critic block (default 1)")
    p.add_argument("--critic-mbstd", action="store_true",
                   help="the critic also sees the minibatch standard deviation (ProGAN)")
    p.add_argument("--no-predictor", action="store_true",
                   help="train the plain VAE-WGAN-GP, without the weight predictor")
    p.add_argument("--n-critic", type=int, help="critic steps per generator step")
    p.add_argument("--lr", type=float, help="Adam learning rate")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, mps")
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="bf16 autocast or fp32; auto: bf16 on CUDA, fp32 elsewhere (bf16 "
                        "on a CPU only when asked for: README, Speed)")
    p.add_argument("--seed", type=int, help="random seed (weights, noise, data order)")
    p.add_argument("--resume", metavar="PATH|auto",
                   help="continue from a checkpoint; 'auto': the one in --out, if any")
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints")
    p.add_argument("--skip-bad", action="store_true", help="leave out unreadable images, listing them")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def config_from_args(args) -> Config:
    """The preset with the options given on the command line."""
    overrides = {
        "batch_size": args.batch_size, "image_size": args.image_size, "num_frames": args.frames,
        "delta_targets": tuple(args.targets) if args.targets else None,
        "delta_mode": args.delta_mode, "n_critic": args.n_critic, "steps": args.steps,
        "seed": args.seed, "lr": args.lr, "use_predictor": False if args.no_predictor else None,
        "checkpoint_every": args.checkpoint_every, "delta_param": args.delta_param,
        "delta_source": args.delta_source, "delta_rank": args.delta_rank,
        "ema_decay": args.ema_decay, "augment": args.augment, "recon_sigma": args.recon_sigma,
        "adversarial_recon": None if args.adversarial_recon is None else args.adversarial_recon == "on",
        "recon_through_generator": None if args.recon_through is None else args.recon_through == "generator",
        "decoder_convs": args.decoder_convs, "critic_convs": args.critic_convs,
        "critic_mbstd": True if args.critic_mbstd else None,
        "decoder_upsample": args.decoder_upsample, "decoder_norm": args.decoder_norm,
    }
    return Config.preset(args.preset or "cpu", **{k: v for k, v in overrides.items() if v is not None})


def _option_error(exc: ValueError) -> str:
    """'image_size=100: ...' -> '--image-size: image_size=100: ...'."""
    text = str(exc)
    field = text.split("=")[0].split("[")[0]
    return f"{OPTIONS[field]}: {text}" if field in OPTIONS else text


def main(argv: list[str] | None = None) -> int:
    """``vidgen-train``; a Ctrl-C outside the training loop (which stops after a step
    and a checkpoint by itself) ends in one line saying what was kept."""
    where: dict = {"stage": "setup"}
    try:
        return _main(argv, where)
    except KeyboardInterrupt:
        if where["stage"] == "setup":
            print("vidgen-train: interrupted before the first step; nothing was trained. Run the "
                  "same command again to start", file=sys.stderr)
        else:
            print(f"vidgen-train: interrupted while measuring and drawing the finished run; its "
                  f"checkpoint is complete. Redraw with: vidgen-train --out {where['out']} "
                  "--resume auto", file=sys.stderr)
        return 130


def _main(argv: list[str] | None, where: dict) -> int:
    escape_unprintable_output()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
        pick_device(args.device)
    except ValueError as exc:
        parser.error(_option_error(exc))
    out = Path(args.out) if args.out else RUNS / (args.preset or "cpu")
    resume = out / CHECKPOINT if args.resume == "auto" else args.resume
    if resume and not Path(resume).is_file():
        if args.resume != "auto":
            parser.error(f"--resume: checkpoint {resume} does not exist")
        resume = None
    fixed = [OPTIONS[k] for k in ("batch_size", "image_size", "num_frames", "delta_targets",
                                  "delta_mode", "n_critic", "lr", "seed", "delta_param", "delta_source",
                                  "ema_decay", "augment", "recon_sigma", "adversarial_recon",
                                  "recon_through_generator")
             if getattr(args, {"num_frames": "frames", "delta_targets": "targets",
                               "recon_through_generator": "recon_through"}.get(k, k)) is not None]
    if resume and (fixed or args.no_predictor):
        parser.error(f"{', '.join(fixed or ['--no-predictor'])}: a resumed run keeps the "
                     f"settings stored in its checkpoint {resume}")
    if not resume and (out / CHECKPOINT).exists():
        parser.error(f"--out: {out} already holds a run; continue it with --resume auto, "
                     "or choose another --out")

    common = dict(data=args.data, out=out, device=args.device, skip_bad=args.skip_bad,
                  progress=not args.quiet, verbose=args.skip_bad, precision=args.precision)

    def refuse(message: str):
        """One line from rank 0 alone when several processes fail alike; exit status 2."""
        if dist.is_initialized() and dist.get_rank() != 0:
            sys.exit(2)
        parser.error(message)

    try:
        trainer = Trainer.from_checkpoint(resume, **common) if resume else Trainer(cfg, **common)
    except DatasetError as exc:
        refuse(("--data: " if args.data else "") + str(exc))
    except OSError as exc:
        refuse(f"--out: cannot write the run folder {out}: {_os_reason(exc)}")
    except ValueError as exc:  # a refused or unfitting checkpoint, a bad target, ...
        refuse(("--resume: " if resume else "") + _option_error(exc))
    if resume and args.preset and Config.preset(args.preset).model != trainer.config.model:
        refuse(f"--preset {args.preset}: the checkpoint {resume} was made with other sizes; "
               "a resumed run keeps the settings stored in it")
    if resume and args.checkpoint_every is not None:  # not a model setting: this run's choice
        trainer.config = trainer.config.replace(checkpoint_every=args.checkpoint_every)
    steps = args.steps if args.steps is not None else trainer.config.train.steps
    say = print if trainer.is_main else (lambda *a, **k: None)  # rank 0 speaks for all
    if resume:
        say(f"resuming {resume} at step {trainer.step} of {steps}")
    processes = f" x {trainer.world_size} processes" if trainer.world_size > 1 else ""
    say(f"training on {trainer.device}{processes} ({trainer.precision}), {len(trainer.dataset)} images, "
        + ("" if resume else f"preset {args.preset or 'cpu'}, ") +
        f"WEIGHT_UPDATE_SIZE {trainer.generator.deltas.weight_update_size}"
        + ("" if trainer.predictor else " (predictor off)"))

    if trainer.step == 0:
        trainer.measure_swd()
        if trainer.out:
            trainer.save_samples(trainer.out / "samples" / "step_000000.png")
    start, tick = trainer.step, time.perf_counter()
    try:
        trainer.train(max(0, steps - trainer.step))
    except NonFiniteLossError as exc:
        say(f"{parser.prog}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        say(f"{parser.prog}: cannot write {exc.filename or out}: {_os_reason(exc)}; the last "
            f"checkpoint written is kept. Free the space or fix the folder, then resume with "
            f"--out {out} --resume auto", file=sys.stderr)
        return 1
    except TrainingInterrupted as stop:
        again = " ".join(["vidgen-train", *(["--data", args.data] if args.data else []),
                          "--out", str(out), "--resume", "auto", "--steps", str(steps),
                          *(["--precision", args.precision] if args.precision != "auto" else [])])
        say(f"{parser.prog}: interrupted ({signal.Signals(stop.signum).name}) after step {stop.step}; "
            f"checkpoint {stop.checkpoint}. Resume with:\n  {again}", file=sys.stderr)
        return 128 + stop.signum  # 130 for SIGINT, 143 for SIGTERM
    seconds = time.perf_counter() - tick
    where.update(stage="finishing", out=out)
    figures = trainer.evaluate()
    if trainer.world_size > 1:
        agree = trainer.replicas_agree()
        say(f"{trainer.world_size} processes: weights identical on every rank: {agree}")
        if not agree:
            return 1
    if not trainer.is_main:
        return 0
    paths = finish_run(trainer)

    swd_start = next(r["swd"] for r in trainer.history if "swd" in r)
    images = (trainer.step - start) * trainer.config.batch_size * (trainer.config.train.n_critic + 1)
    print(f"done: step {trainer.step}, {seconds:.0f} s, {images / max(seconds, 1e-9):.0f} images/s, "
          f"SWD {swd_start:.4f} -> {figures['swd']:.4f} (ratio {figures['swd'] / swd_start:.2f})")
    print(summary(figures))
    for path in paths:
        print(f"  wrote {path}")
    return 0


def _os_reason(exc: OSError) -> str:
    """An operating-system error in a few words ("the disk is full", "read-only ...")."""
    if exc.errno == errno.ENOSPC:
        return "the disk is full"
    return exc.strerror or str(exc)


def summary(f: dict) -> str:
    """The quality figures of ``Trainer.evaluate`` as a few readable lines."""
    lines = [f"  samples: SWD {f['swd']:.4f} against a real-vs-real floor of {f['swd_floor']:.4f} "
             f"(x{f['swd'] / f['swd_floor']:.1f})"]
    if "shapes_named" in f:
        counts = ", ".join(f"{name} {count}" for name, count in zip(CLASSES, f["shape_counts"]))
        recon = (f" and in {f['shapes_named_recon']:.0%} of their reconstructions"
                 if "shapes_named_recon" in f else "")  # runs from before it was measured lack it
        lines.append(f"  shapes: the judge names a shape in {f['shapes_named']:.0%} of the samples "
                     f"({counts}), in {f['shapes_named_real']:.0%} of real images{recon}")
    lines.append(f"  VAE: reconstructions RMS {f['recon_rms']:.3f} per value, SWD {f['recon_swd']:.4f}; "
                 f"KL {f['kl_per_dim']:.3f} nats per dimension, {f['active_dims']} dimensions active")
    if "delta_spread" in f:
        lines.append(
            f"  deltas: spread {f['delta_spread']:.3f} (mean ||delta_i - mean|| / ||mean||), "
            f"min cosine to the mean {f['delta_min_cos']:.4f}; SWD with the mean delta for every "
            f"image {f['swd_mean_delta']:.4f} ({f['swd_mean_delta'] - f['swd']:+.4f}), "
            f"base weights alone {f['swd_base']:.4f}")
    return "\n".join(lines)


def finish_run(trainer: Trainer) -> list[Path]:
    """Write the end-of-run pictures into the run folder; returns their paths."""
    out = trainer.out
    samples = trainer.save_samples(out / "samples.png")
    real, recon = trainer.reconstructions(32)
    reconstructions = out / "reconstructions.png"
    rows = torch.cat([torch.stack([real[i:i + 8], recon[i:i + 8]]).flatten(0, 1) for i in range(0, 32, 8)])
    with atomic_write(reconstructions) as tmp:  # rows of 8 real images, each above its reconstruction
        save_image(rows, tmp, format="png", nrow=8, padding=2, pad_value=1.0)
    losses = out / "losses.png"
    figure = plot_losses(trainer.history, title=f"training, step {trainer.step}")
    with atomic_write(losses) as tmp:
        figure.savefig(tmp, format="png", dpi=80)
    generated = trainer.samples(8)
    video = synthetic_video(generated, trainer.config.model.num_frames, trainer.config.video, seed=0)
    gif = save_gif(video, out / "videos.gif", fps=6, scale=max(1, 64 // trainer.config.model.image_size))
    return [out / CHECKPOINT, out / "metrics.jsonl", samples, reconstructions, losses, gif]


def run(argv: list[str] | None = None) -> int:
    """``main`` and, under torchrun, leave the process group cleanly."""
    try:
        return main(argv)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(run())
