"""``vidgen-experiment``: does watching a video of its own image help the generator?

A study trains every *arm* (a variant of the kit's model) with every seed, on one
preset, for the same number of steps, on the same data, and compares them. The named
arms ask about the weight predictor:

    full            the kit's model: the 3D CNN watches each image's video, predicts its delta
    no-predictor    the plain VAE-WGAN-GP: no delta at all
    constant-delta  one learned delta for every image: the same extra weights, no video
    batch-mean      the predictor's deltas averaged over each batch: one delta per batch
    still-video     the predictor sees T copies of the image: no motion, no noise
    channel         per-channel deltas scaling theta (HyperStyle) instead of dense ones
    lora            low-rank deltas A B instead of dense ones

Any other arm is data: ``--arm wide:widths=64,128,256 --arm z16:latent_dim=16``, or a
spec file (``--spec study.json``, see ``study.load_spec``). Running a study lives in
``study.py``, reporting it in ``report.py``; this module is the command line.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from .checkpoint import RUNS, path_problem
from .commands import CommandError, Parser, run_command
from .config import PRESETS
from .device import PRECISIONS, pick_device
from .files import check_path
from .options import add_config_options, given_fields
from .arm_runs import StudyInterrupted
from .arms import ARMS, resolve_arms
from .report import markdown_table
from .study import Study

PROG = "vidgen-experiment"


def build_parser() -> Parser:
    p = Parser(prog=PROG,
               description="Train every arm with every seed and compare them: does the weight "
                           "predictor help, and which part of it? Named arms: "
                           + "; ".join(f"{k}: {a.question}" for k, a in ARMS.items())
                           + ". The config options below change every arm.",
               epilog="Example: vidgen-experiment --preset tiny --steps 20 --seeds 0,1 "
                      "--arm base: --arm z4:latent_dim=4 --out runs/try. Run it again to continue "
                      "a study that was stopped.")
    p.add_argument("--out", metavar="FOLDER", help="study folder (default: runs/study_<preset>)")
    p.add_argument("--spec", metavar="FILE",
                   help="a study spec (JSON: preset, steps, swd_every, seeds, set, arms); the "
                        "options given here change it")
    p.add_argument("--preset", choices=tuple(PRESETS), help="default: cpu")
    p.add_argument("--arms", help="named arms, comma-separated (default: all of them, unless "
                                  "--arm or --spec gives others)")
    p.add_argument("--arm", action="append", default=[], metavar="NAME:FIELD=VALUE,...",
                   help="an arm of your own: a name and the config fields it changes, e.g. "
                        "wide:widths=64,128,256 (repeat for more arms)")
    p.add_argument("--seeds", help="comma-separated integers (default: 0,1,2)")
    p.add_argument("--baseline", metavar="ARM", help="the arm every other is paired against in the "
                   "report (default: full if the study has it, else its first arm)")
    p.add_argument("--steps", type=int, help="generator steps of every run (default: the preset's)")
    p.add_argument("--swd-every", type=int,
                   help="steps between evaluations (every figure, the judge's included; default 400)")
    p.add_argument("--jobs", type=int, default=1, help="runs trained at once, in processes")
    p.add_argument("--data", metavar="FOLDER", help="ImageFolder tree (default: built-in shapes)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    p.add_argument("--precision", choices=PRECISIONS, help="as for vidgen-train (default: auto)")
    p.add_argument("--restore", metavar="RESULTS_JSON",
                   help="first write back the finished runs a study's results.json keeps (a study "
                        "recorded elsewhere, continued here with more seeds or arms)")
    p.add_argument("--measure-again", action="store_true",
                   help="before training, measure every finished run's checkpoint again with "
                        "today's evaluation: figures added since it ran join its result, the "
                        "ones it has must come out the same")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_options(p, leave_out=("steps", "seed"))
    return p


def parse_seeds(text: str | None) -> list[int] | None:
    """``"0,1,2"`` -> [0, 1, 2]; ``ValueError`` naming ``--seeds``."""
    try:
        return None if text is None else [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--seeds: {text!r}: expected comma-separated integers, e.g. 0,1,2") from None


def study_from_args(args) -> Study:
    """The study the command line describes (``ValueError`` naming what is wrong): the
    spec's, if one is given, changed by the options given beside it."""
    arms = [a.strip() for a in args.arms.split(",") if a.strip()] if args.arms else []
    arms += args.arm
    changes = dict(preset=args.preset, seeds=parse_seeds(args.seeds), steps=args.steps,
                   swd_every=args.swd_every, data=args.data, precision=args.precision,
                   arms=resolve_arms(arms) if arms else None, overrides=given_fields(args),
                   baseline=args.baseline)
    if args.spec:
        spec = Path(args.spec).resolve()  # docs/results/NAME/spec.json -> runs/NAME
        out = args.out or RUNS / (spec.parent.name if spec.stem == "spec" else spec.stem)
        return Study.from_spec(out, args.spec, **changes)
    changes["arms"] = changes["arms"] or tuple(ARMS)
    return Study(args.out or RUNS / f"study_{args.preset or 'cpu'}",
                 **{k: v for k, v in changes.items() if v is not None})


def main(argv: list[str] | None = None) -> int:
    """``vidgen-experiment``: run the study the command line describes, then report it."""
    return run_command(PROG, lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    """Read the command line, train every run not finished yet, write and print the summary."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        pick_device(args.device)
        if args.out is not None:
            out = check_path(args.out, "--out")
            if out.exists() and not out.is_dir():
                raise ValueError(f"--out: {out} is a file; a study writes a folder")
        study = study_from_args(args)
        if args.restore:
            restored = study.restore(args.restore)
            print(f"restored {len(restored)} finished runs from {args.restore}", file=sys.stderr)
        if args.measure_again:
            added = study.measure_again(device=args.device)
            print(f"measured again: added {', '.join(added) or 'nothing'}", file=sys.stderr)
        summary = study.run(jobs=args.jobs, device=args.device, progress=not args.quiet)
    except ValueError as exc:
        text = str(exc)
        option = next((o for o in ("arms", "arm", "steps", "swd_every", "jobs", "device", "data",
                                   "spec", "set", "baseline") if re.match(rf"{o}[ =:]", text)), None)
        parser.error((f"--{option.replace('_', '-')}: " if option else "") + text)
    except RuntimeError as exc:
        raise CommandError(str(exc), 1) from None
    except OSError as exc:
        raise CommandError(f"cannot write {exc.filename or args.out}: {path_problem(exc)}", 1) from None
    except StudyInterrupted as stop:
        raise CommandError(f"interrupted ({stop}); finished runs and the checkpoints of the runs in "
                           f"progress are kept in {study.out}. Continue with the same command.",
                           128 + stop.signum) from None
    print(markdown_table(summary))
    print(f"wrote {study.out / 'results.json'}, results.md, swd.png, samples.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
