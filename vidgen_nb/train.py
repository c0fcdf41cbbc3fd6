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

from .checkpoint import CHECKPOINT, RUNS, checkpoint_file, path_problem
from .commands import CommandError, Parser, fail, run_command
from .files import atomic_write, check_path
from .config import PRESETS, Config
from .data import CLASSES, DatasetError, describe_data
from .data.loading import classes_for
from .device import PRECISIONS, pick_device
from .media import save_gif
from .options import RUN_FIELDS, add_config_options, flag, flat, given_fields, option_error
from .plots import plot_losses
from .stopping import NonFiniteLossError, StepAbandoned, TrainingInterrupted
from .trainer import Trainer
from .video import synthetic_video

PROG = "vidgen-train"


def build_parser() -> Parser:
    p = Parser(
        prog=PROG,
        description="Train the VAE generator, its WGAN-GP critic and the 3D-CNN weight "
                    "predictor. Without options: the 'cpu' preset on the built-in dataset.",
        epilog="Example: vidgen-train --preset tiny --steps 100 --out runs/try "
               "(then --resume auto continues it).")
    p.add_argument("--data", metavar="FOLDER",
                   help="ImageFolder tree, one sub-folder per class (default: built-in shapes)")
    p.add_argument("--out", metavar="FOLDER", help="run folder (default: runs/<preset>)")
    p.add_argument("--preset", choices=tuple(PRESETS),
                   help="sizes and settings to start from (default: cpu)")
    p.add_argument("--resume", metavar="PATH|auto",
                   help="continue from a checkpoint; 'auto': the one in --out, if any. Options "
                        f"{', '.join(flag(n) for n in RUN_FIELDS)}, --device, --precision and "
                        "--quiet apply to the resumed run; any other must match the checkpoint")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, mps")
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="bf16 autocast or fp32; auto: bf16 on CUDA, and on a CPU with bf16 "
                        "instructions if a start check passes (a few steps finite and resuming "
                        "exactly); fp32 elsewhere (docs/speed.md)")
    p.add_argument("--other-data", action="store_true",
                   help="with --resume: go on with the --data given although the run was trained on "
                        "other images (its summary then starts from the SWD on the new data)")
    p.add_argument("--skip-bad", action="store_true", help="leave out unreadable images, listing them")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_options(p)
    return p


def config_for(args: argparse.Namespace) -> Config:
    """The config of a new run from the command line: the preset (default cpu) with the
    config fields given and, for a conditional model on a ``--data`` folder, its class
    count (``classes_for``). ``ValueError`` naming the field of a value it refuses."""
    given = given_fields(args)
    return classes_for(Config.preset(args.preset or "cpu", **given), args.data or None, given)


def check_resume_options(args, given: dict, stored: Config, checkpoint) -> dict:
    """The fields a resumed run applies; ``ValueError`` naming the first option given
    on the command line that differs from the checkpoint's config.

    ``RUN_FIELDS`` may change within a run and are applied; every other field given
    (one by one, or as part of ``--preset``) must equal the stored value.
    """
    theirs = flat(stored)
    asked = {**(flat(Config.preset(args.preset)) if args.preset else theirs), **given}
    for name in theirs:
        if name not in RUN_FIELDS and asked[name] != theirs[name]:
            option = flag(name) if name in given else f"--preset {args.preset}"
            raise ValueError(f"{option}: the checkpoint {checkpoint} was made with {name}="
                             f"{theirs[name]!r}, this command line asks for {name}={asked[name]!r}; "
                             "a resumed run keeps its settings (leave the option out, or start a "
                             "new run with another --out)")
    return {k: v for k, v in given.items() if k in RUN_FIELDS}


def main(argv: list[str] | None = None) -> int:
    """``vidgen-train``; a Ctrl-C or SIGTERM outside the training loop (which stops after
    a step and a checkpoint by itself) ends in one line saying what was kept, and the
    run folder's lock is released."""
    where: dict = {"stage": "setup"}
    return run_command(PROG, lambda: _main(argv, where),
                       interrupted=lambda name: _stopped_outside_the_loop(name, where))


def _stopped_outside_the_loop(name: str, where: dict) -> str:
    """What a Ctrl-C or SIGTERM (``name``) before or after the training loop leaves."""
    if where["stage"] == "setup":
        return f"{name} before the first step; nothing was trained. Run the same command again to start"
    return (f"{name} while measuring and drawing the finished run; its checkpoint is complete. "
            f"Redraw with: vidgen-train --out {where['out']} --resume auto")


def _main(argv: list[str] | None, where: dict) -> int:
    """Read the command line, start the run, train it, then measure and draw it."""
    parser = build_parser()
    args = parser.parse_args(argv)
    cfg, out, resume = _read_arguments(parser, args)
    trainer = _start(parser, args, cfg, out, resume)
    say = print if trainer.is_main else (lambda *a, **k: None)  # rank 0 speaks for all
    _announce(trainer, args, out, resume, say)
    if trainer.swd_start is None:  # a new run, or one going on with other data
        trainer.measure_swd()
        if trainer.out and trainer.step == 0:
            trainer.save_samples(trainer.out / "samples" / "step_000000.png")
    start, tick = trainer.step, time.perf_counter()
    stopped = _train(trainer, args, out)
    if stopped is not None:
        return stopped
    seconds = time.perf_counter() - tick
    where.update(stage="finishing", out=out)
    try:
        return _finish(trainer, start, seconds, say)
    except OSError as exc:
        raise CommandError(f"cannot write {exc.filename or out}: {_os_reason(exc)}; the run's "
                           "checkpoint is complete. Free the space or fix the folder, then redraw "
                           f"with: vidgen-train --out {out} --resume auto", 1) from None


def _read_arguments(parser: Parser, args: argparse.Namespace) -> tuple[Config, Path, Path | None]:
    """The config, the run folder and the checkpoint to resume (None: a new run) that the
    command line asks for; ``parser.error`` naming the option of a value it cannot use."""
    try:
        cfg = config_for(args)
        pick_device(args.device)
        out = check_path(args.out, "--out") if args.out is not None else RUNS / (args.preset or "cpu")
        if args.data is not None:
            check_path(args.data, "--data")
        resume = out / CHECKPOINT if args.resume == "auto" else args.resume
        if resume and args.resume != "auto":
            resume = checkpoint_file(check_path(resume, "--resume"))
    except FileNotFoundError:
        parser.error(f"--resume: checkpoint {args.resume} does not exist")
    except ValueError as exc:
        parser.error(option_error(exc).replace("checkpoint ", "--resume: ", 1)
                     if str(exc).startswith("checkpoint ") else option_error(exc))
    if resume and not Path(resume).is_file():  # --resume auto and no run yet
        resume = None
    if not resume and (out / CHECKPOINT).exists():
        parser.error(f"--out: {out} already holds a run; continue it with --resume auto, "
                     "or choose another --out")
    if args.other_data and not (resume and args.data):
        parser.error("--other-data: goes with --resume and --data (to go on with other images)")
    return cfg, out, resume


def _start(parser: Parser, args: argparse.Namespace, cfg: Config, out: Path,
           resume: Path | None) -> Trainer:
    """The trainer of a new run, or of the resumed one with the options given applied;
    one line and exit status 2 for a run that cannot start."""
    common = dict(data=args.data, out=out, device=args.device, skip_bad=args.skip_bad,
                  progress=not args.quiet, verbose=args.skip_bad, precision=args.precision, try_bf16=True)

    def refuse(message: str):
        """One line from rank 0 alone when several processes fail alike; exit status 2."""
        if dist.is_initialized() and dist.get_rank() != 0:
            sys.exit(2)
        parser.error(message)

    try:
        trainer = (Trainer.from_checkpoint(resume, other_data=args.other_data, **common) if resume
                   else Trainer(cfg, **common))
    except DatasetError as exc:
        refuse(("--data: " if args.data else "") + str(exc))
    except OSError as exc:
        refuse(_blame(exc, out, args.data))
    except ValueError as exc:  # a refused or unfitting checkpoint, a bad target, ...
        refuse(("--resume: " if resume else "") + option_error(exc))
    if resume:
        try:
            trainer.config = trainer.config.replace(
                **check_resume_options(args, given_fields(args), trainer.config, resume))
        except ValueError as exc:
            refuse(str(exc))
    steps = trainer.config.train.steps
    if steps < trainer.step:
        refuse(f"--steps {steps}: the run {resume} is already at step {trainer.step}; ask for more "
               "steps, or leave --steps out to redraw its pictures")
    return trainer


def _announce(trainer: Trainer, args: argparse.Namespace, out: Path, resume: Path | None, say) -> None:
    """Say what is about to be trained (a resumed run or a fork first, with what it goes on from)."""
    steps = trainer.config.train.steps
    if resume:
        fork = not (out / CHECKPOINT).exists()  # from_checkpoint refuses an out holding another run
        say(f"forking {resume} at step {trainer.step} into {out}, to step {steps}" if fork
            else f"resuming {resume} at step {trainer.step} of {steps}")
        if fork and trainer.is_main:  # the fork holds a run from its start, even with nothing to train
            trainer.save_checkpoint(out / CHECKPOINT)
        if trainer.swd_start is None and trainer.step:
            say(f"going on with other data: {describe_data(trainer.data_record)}; the summary "
                f"starts from the SWD on it at step {trainer.step}")
    processes = f" x {trainer.world_size} processes" if trainer.world_size > 1 else ""
    say(f"training on {trainer.device}{processes} in {trainer.precision} ({trainer.precision_why}), "
        f"{len(trainer.dataset)} images, "
        + ("" if resume else f"preset {args.preset or 'cpu'}, ") +
        f"WEIGHT_UPDATE_SIZE {trainer.generator.deltas.weight_update_size}"
        + ("" if trainer.predictor else " (predictor off)"))


def _train(trainer: Trainer, args: argparse.Namespace, out: Path) -> int | None:
    """Train to the steps asked for; None when done, else the exit status of a run that
    stopped (its one line said by rank 0 alone, as every rank stops alike)."""
    steps = trainer.config.train.steps

    def stop(message: str, code: int) -> int:
        return fail(PROG, message, code) if trainer.is_main else code

    try:
        trainer.train(max(0, steps - trainer.step))
    except NonFiniteLossError as exc:
        return stop(str(exc), 1)
    except OSError as exc:
        return stop(f"cannot write {exc.filename or out}: {_os_reason(exc)}; the last checkpoint "
                    "written is kept. Free the space or fix the folder, then resume with "
                    f"--out {out} --resume auto", 1)
    except (TrainingInterrupted, StepAbandoned) as stopped:
        return stop(_interrupted(stopped, args, out, steps), 128 + stopped.signum)  # 130, 143
    return None


def _interrupted(stop: TrainingInterrupted | StepAbandoned, args: argparse.Namespace, out: Path,
                 steps: int) -> str:
    """What a signal during training kept, and the command that resumes the run."""
    again = " ".join(["vidgen-train", "--out", str(out), "--resume", "auto", "--steps", str(steps),
                      *(["--precision", args.precision] if args.precision != "auto" else [])])
    name = signal.Signals(stop.signum).name
    if isinstance(stop, StepAbandoned):
        kept = out / CHECKPOINT if (out / CHECKPOINT).exists() else None
        return (f"{name} twice: step {stop.step + 1} was left unfinished; "
                + (f"the last checkpoint, {kept}, holds the run. Resume with:\n  {again}" if kept
                   else "no checkpoint was written yet"))
    return (f"interrupted ({name}) after step {stop.step}; "
            f"checkpoint {stop.checkpoint}. Resume with:\n  {again}")


def _finish(trainer: Trainer, start: int, seconds: float, say) -> int:
    """Measure the finished run, draw its pictures, print its summary."""
    figures = trainer.evaluate()
    if trainer.world_size > 1:
        agree = trainer.replicas_agree()
        say(f"{trainer.world_size} processes: weights identical on every rank: {agree}")
        if not agree:
            return 1
    if not trainer.is_main:
        return 0
    paths = finish_run(trainer)

    images = (trainer.step - start) * trainer.config.batch_size * (trainer.config.train.n_critic + 1)
    print(f"done: step {trainer.step}, {seconds:.0f} s, {images / max(seconds, 1e-9):.0f} images/s "
          f"in {trainer.precision}, "
          + swd_change(trainer.swd_start, figures["swd"]))
    for fork in trainer.lineage:
        print(f"  a fork of {fork['checkpoint']} at step {fork['step']}")
    print(summary(figures, trainer.class_names))
    for path in paths:
        print(f"  wrote {path}")
    return 0


def swd_change(start: dict | None, end: float) -> str:
    """'SWD 0.8766 -> 0.1210 (ratio 0.14)' from the run's stored start."""
    if start is None:
        return f"SWD {end:.4f} (no starting SWD was measured)"
    since = f" at step {start['step']}" if start["step"] else ""
    ratio = f"ratio {end / start['swd']:.2f}" if start["swd"] > 0 else "the start was 0"
    return f"SWD{since} {start['swd']:.4f} -> {end:.4f} ({ratio})"


def _blame(exc: OSError, out: Path, data: str | None) -> str:
    """An OSError while setting up, put on the option whose path it is about."""
    name = Path(exc.filename) if exc.filename else None
    if data and name and (name == Path(data) or Path(data) in name.parents):
        return f"--data: cannot read {data}: {_os_reason(exc)}"
    if name is None or name == out or out in name.parents:
        return f"--out: cannot write the run folder {out}: {_os_reason(exc)}"
    return f"cannot use {name}: {_os_reason(exc)}"


def _os_reason(exc: OSError) -> str:
    """An operating-system error in a few words ("the disk is full", "read-only ...")."""
    if exc.errno == errno.ENOSPC:
        return "the disk is full"
    return path_problem(exc)


def summary(f: dict, classes=None) -> str:
    """The quality figures of ``Trainer.evaluate`` as a few readable lines; ``classes``,
    a conditional model's class names (``Trainer.class_names``), name its per-class
    figures (else they go by number, in the data's order)."""
    times = (f"x{f['swd'] / f['swd_floor']:.1f}" if f["swd_floor"] > 0
             else "the data's images are all alike")
    lines = [f"  samples: SWD {f['swd']:.4f} against a real-vs-real floor of {f['swd_floor']:.4f} ({times})"]
    if "shapes_named" in f:
        counts = ", ".join(f"{name} {count}" for name, count in zip(CLASSES, f["shape_counts"]))
        recon = (f" and in {f['shapes_named_recon']:.0%} of their reconstructions"
                 if "shapes_named_recon" in f else "")  # runs from before it was measured lack it
        if "shapes_named_unseen" in f:
            as_class = (f" ({f['unseen_as_class']:.0%} as their class)" if "unseen_as_class" in f else "")
            recon += (f"; of images it never trained on, {f['shapes_named_unseen']:.0%} of the "
                      f"reconstructions{as_class}")
        lines.append(f"  shapes: the judge names a shape in {f['shapes_named']:.0%} of the samples "
                     f"({counts}), in {f['shapes_named_real']:.0%} of real images{recon}")
        if "named_as_asked" in f:  # a class-conditional model
            names = classes or range(len(f["named_per_class"]))
            per_class = ", ".join(f"{name} {n:.0%}/{a:.0%}" for name, n, a in zip(
                names, f["named_per_class"], f["as_asked_per_class"]))
            lines.append(f"  classes: named as the class asked in {f['named_as_asked']:.0%} of the "
                         f"samples ({f['as_asked_of_named']:.0%} of the named ones); per class "
                         f"asked, named/as asked: {per_class}")
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
