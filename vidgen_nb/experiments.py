"""``vidgen-experiment``: does watching a video of its own image help the generator?

A study trains every *arm* (a variant of the kit's model) with every seed, on one
preset, for the same number of steps, on the same data, and compares them:

    full            the kit's model: the 3D CNN watches each image's video, predicts its delta
    no-predictor    the plain VAE-WGAN-GP: no delta at all
    constant-delta  one learned delta for every image: the same extra weights, no video
    batch-mean      the predictor's deltas averaged over each batch: one delta per batch
    still-video     the predictor sees T copies of the image: no motion, no noise
    channel         per-channel deltas scaling theta (HyperStyle) instead of dense ones

A study folder holds ``study.json`` (its settings), one run folder per arm and seed
(``<arm>/seed_<s>``, an ordinary run: checkpoint, metrics, ``samples.png``, and
``result.json`` once finished), and, after every run is done, ``results.json``,
``results.md`` (the table), ``swd.png`` (SWD against step and training time) and
``samples.png`` (a grid per arm). A killed study continues where it stopped: finished
runs are read back, a run cut short resumes from its checkpoint.
"""

from __future__ import annotations

import concurrent.futures as futures
import contextlib
import json
import math
import multiprocessing
import os
import platform
import queue
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import __version__
from .checkpoint import CHECKPOINT, RUNS
from .config import PRESETS, Config
from .data import builtin_dataset
from .device import PRECISIONS, pick_device
from .files import atomic_write, escape_unprintable_output
from .train import Parser  # one line per error, as vidgen-train

STILL = {"noise": 0.0, "shift": 0.0, "zoom": 0.0, "rotation": 0.0, "brightness": 0.0}


@dataclass(frozen=True)
class Arm:
    """One variant of the model: what it tests, and the config fields it changes."""

    question: str
    overrides: dict


ARMS = {
    "full": Arm("the kit's model: the 3D CNN watches each image's video", {}),
    "no-predictor": Arm("the plain VAE-WGAN-GP: does any delta help?", {"use_predictor": False}),
    "constant-delta": Arm("one learned delta for all images: is it the per-image prediction, "
                          "or just extra weights?", {"delta_source": "constant"}),
    "batch-mean": Arm("one delta per batch, the mean of the predictions", {"delta_mode": "batch_mean"}),
    "still-video": Arm("the predictor sees T copies of the image: does the motion matter?", STILL),
    "channel": Arm("per-channel deltas scaling theta instead of dense ones", {"delta_param": "channel"}),
    "lora": Arm("low-rank deltas A B (rank 4) instead of dense ones", {"delta_param": "lora"}),
}
SETTINGS = ("preset", "steps", "swd_every", "data", "precision")  # what makes runs comparable


def check_arms(names) -> list[str]:
    """The arm names, each known; ``ValueError`` naming an unknown one."""
    names = list(dict.fromkeys(names))  # in order, once each
    unknown = [n for n in names if n not in ARMS]
    if unknown or not names:
        raise ValueError(f"arms {unknown or names}: expected names among {', '.join(ARMS)}")
    return names


def arm_config(preset: str, arm: str, seed: int, steps: int | None = None) -> Config:
    """The preset with the arm's changes, this seed and (if given) this many steps."""
    overrides = {**ARMS[arm].overrides, "seed": seed}
    if steps is not None:
        overrides["steps"] = steps
    return Config.preset(preset, **overrides)


# ---------------------------------------------------------------------- one run


def run_arm(folder: Path, config: Config, *, swd_every: int, data=None, device=None,
            precision: str = "auto", report=None, stop=None) -> dict:
    """Train one arm and seed in ``folder`` (continuing a checkpoint there) and return its result.

    SWD is measured every ``swd_every`` steps, each time after a checkpoint, and logged
    with the training seconds so far (time spent measuring is not counted). At the
    end, ``Trainer.evaluate``'s figures, ``samples.png`` and ``result.json``.
    ``report(steps)`` is called with the number of steps done since the last call;
    ``stop()``, before each stretch of training, returns a signal number to stop
    (``StudyInterrupted``) or None. Signals during training stop the trainer itself.
    """
    from .training import Trainer  # the workers import torch's training stack themselves

    result_file = folder / "result.json"
    if result_file.exists():
        return json.loads(result_file.read_text())
    common = dict(data=data, out=folder, device=device, progress=False, precision=precision)
    if (folder / CHECKPOINT).exists():
        trainer = Trainer.from_checkpoint(folder / CHECKPOINT, **common)
        if trainer.config != config:
            raise ValueError(f"{folder / CHECKPOINT} was made with another config than this "
                             "study's; move it away or use another study folder")
    else:
        trainer = Trainer(config, **common)
    curve = [(r["step"], r["train_seconds"], r["swd"]) for r in trainer.history if "train_seconds" in r]
    seconds = curve[-1][1] if curve else 0.0
    if report and trainer.step:
        report(trainer.step)

    def measure():
        record = {"step": trainer.step, "swd": trainer.swd(), "train_seconds": seconds}
        trainer.log(record)
        curve.append((record["step"], seconds, record["swd"]))

    if not curve or curve[-1][0] != trainer.step:
        measure()
    steps = config.train.steps
    while trainer.step < steps:
        signum = stop() if stop else None
        if signum:
            raise StudyInterrupted(signum)
        chunk = min(swd_every - trainer.step % swd_every, steps - trainer.step)
        tick = time.perf_counter()
        trainer.train(chunk)  # ends with a checkpoint
        seconds += time.perf_counter() - tick
        if report:
            report(chunk)
        measure()
    figures = trainer.evaluate()
    trainer.save_samples(folder / "samples.png")
    per_step = config.batch_size * (config.train.n_critic + 1)
    result = {"arm": folder.parent.name, "seed": config.seed, "steps": steps, **figures,
              "train_seconds": seconds, "images_per_s": steps * per_step / max(seconds, 1e-9),
              "curve": curve, "device": str(trainer.device), "precision": trainer.precision,
              "machine": _machine(trainer.device)}
    with atomic_write(result_file) as tmp:
        tmp.write_text(json.dumps(result, indent=1))
    return result


_progress = None  # the study's progress queue, in worker processes


def _start_worker(progress, threads: int) -> None:
    global _progress
    _progress = progress
    progress.put(("pid", os.getpid()))  # so that the study can stop its workers
    torch.set_num_threads(threads)
    # A Ctrl-C reaches every process of the terminal; the study answers it by sending
    # SIGTERM to its workers, so they (and processes they start) leave SIGINT alone.
    # While training, the trainer's own handler takes SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _request_stop)


_stop_requested: list[int] = []  # in a worker: the signal that asked it to stop


def _request_stop(signum, frame):
    _stop_requested.append(signum)


def _run_in_worker(folder, config, kwargs) -> dict | None:
    """``run_arm`` in a worker process; None when a signal stopped it (the last checkpoint kept)."""
    from .training import TrainingInterrupted

    try:
        return run_arm(folder, config, **kwargs, report=_progress.put,
                       stop=lambda: _stop_requested[0] if _stop_requested else None)
    except (TrainingInterrupted, StudyInterrupted):
        return None


class StudyInterrupted(Exception):
    """SIGINT or SIGTERM stopped the study; every run in progress kept a checkpoint."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


@contextlib.contextmanager
def _signals_ignored():
    """SIGINT and SIGTERM ignored while inside (processes started meanwhile inherit that)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handlers = {signum: signal.signal(signum, signal.SIG_IGN) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def _signals_to_flag():
    """While inside, SIGINT / SIGTERM only record themselves in the yielded list."""
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return
    handlers = {signum: signal.signal(signum, lambda signum, frame: caught.append(signum))
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield caught
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


# ---------------------------------------------------------------------- the study


class Study:
    """A study folder: its settings, and the arms x seeds trained in it.

    Args:
        out: the study folder; made if missing, else its ``study.json`` must agree.
        preset: the configuration every arm starts from.
        arms: arm names (``ARMS``); seeds: one run per arm and seed.
        steps: generator steps of every run (default: the preset's).
        swd_every: steps between SWD measurements during training.
        data: an ImageFolder tree (default: the built-in dataset).
    """

    def __init__(self, out, *, preset: str = "cpu", arms=tuple(ARMS), seeds=(0, 1, 2),
                 steps: int | None = None, swd_every: int = 400, data=None, precision: str = "auto"):
        if preset not in PRESETS:
            raise ValueError(f"preset={preset!r}: expected one of {tuple(PRESETS)}")
        self.out, self.arms = Path(out), check_arms(arms)
        self.seeds = list(dict.fromkeys(seeds))
        if not self.seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in self.seeds):
            raise ValueError(f"seeds={list(seeds)!r}: expected one or more integers")
        steps = PRESETS[preset].train.steps if steps is None else steps
        for name, value in (("steps", steps), ("swd_every", swd_every)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r}: expected a positive integer")
        if precision not in PRECISIONS:
            raise ValueError(f"precision={precision!r}: expected one of {PRECISIONS}")
        self.settings = {"preset": preset, "steps": steps, "swd_every": swd_every,
                         "data": str(Path(data).resolve()) if data else None, "precision": precision}
        self.data = data
        self.how = {"jobs": 1, "device": "auto"}  # how the last run() ran (for the command line)
        self._check_folder()

    def _check_folder(self) -> None:
        """Refuse a study folder whose runs were made with other settings."""
        stored = self.out / "study.json"
        if not stored.exists():
            return
        try:
            theirs = json.loads(stored.read_text())
        except ValueError:
            raise ValueError(f"{stored} is not JSON; is {self.out} a study folder?") from None
        differ = [f"{k}: folder {theirs.get(k)!r}, now {v!r}" for k, v in self.settings.items()
                  if theirs.get(k) != v]
        if differ:
            raise ValueError(f"study folder {self.out} was made with other settings ("
                             + "; ".join(differ) + "); use another folder or the same settings")

    def folder(self, arm: str, seed: int) -> Path:
        return self.out / arm / f"seed_{seed}"

    def config(self, arm: str, seed: int) -> Config:
        return arm_config(self.settings["preset"], arm, seed, self.settings["steps"])

    def runs(self) -> list[tuple[str, int]]:
        """Every (arm, seed), seed by seed, so that a study cut short has whole seeds."""
        return [(arm, seed) for seed in self.seeds for arm in self.arms]

    def run(self, *, jobs: int = 1, device=None, progress: bool = True) -> dict:
        """Train every run not finished yet (``jobs`` at a time), then write the summary."""
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise ValueError(f"jobs={jobs!r}: expected a positive integer")
        self.how = {"jobs": jobs, "device": device or "auto"}
        self.out.mkdir(parents=True, exist_ok=True)
        with atomic_write(self.out / "study.json") as tmp:
            tmp.write_text(json.dumps({**self.settings, "version": __version__}, indent=1))
        todo = [(a, s) for a, s in self.runs() if not (self.folder(a, s) / "result.json").exists()]
        total = len(self.runs()) * self.settings["steps"]
        done = (len(self.runs()) - len(todo)) * self.settings["steps"]
        bar = tqdm(total=total, initial=done, desc=f"study {self.out.name}", disable=not progress,
                   dynamic_ncols=True, unit="step")
        kwargs = dict(swd_every=self.settings["swd_every"], data=self.data, device=device,
                      precision=self.settings["precision"])
        failed = []
        try:
            if jobs == 1 or len(todo) <= 1:
                from .training import TrainingInterrupted

                for arm, seed in todo:  # the trainer itself stops on a signal, after a checkpoint
                    bar.set_postfix_str(f"{arm} seed {seed}")
                    try:
                        run_arm(self.folder(arm, seed), self.config(arm, seed), **kwargs,
                                report=bar.update)
                    except TrainingInterrupted as stop:
                        raise StudyInterrupted(stop.signum) from None
            else:
                if self.data is None:  # written once here, not by several workers at once
                    builtin_dataset()
                failed = self._run_parallel(todo, jobs, kwargs, bar)
        finally:
            bar.close()
        if failed:
            raise RuntimeError("runs failed: " + "; ".join(failed) + " (finished runs are kept; "
                               "run the same command again to retry the rest)")
        return self.summarise()

    def _run_parallel(self, todo, jobs: int, kwargs: dict, bar) -> list[str]:
        """Runs in ``jobs`` processes, the cores split between them; returns failures.

        SIGINT or SIGTERM sends SIGTERM to every worker: each saves a checkpoint after
        its current step and stops; runs not started are dropped (``StudyInterrupted``).
        """
        context = multiprocessing.get_context("spawn")  # no forked torch threads or CUDA state
        progress, workers = context.Queue(), set()
        threads = max(1, (os.cpu_count() or 1) // jobs)
        failed = []
        # The workers start with SIGINT and SIGTERM ignored (a Ctrl-C while they import
        # torch would leave tracebacks), then take them as requests to stop (_start_worker).
        with _signals_ignored():
            pool = futures.ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_worker,
                                               initargs=(progress, threads))
            pending = {pool.submit(_run_in_worker, self.folder(a, s), self.config(a, s), kwargs): (a, s)
                       for a, s in todo}
        with _signals_to_flag() as caught, pool:
            stopping = False
            while pending:
                finished, _ = futures.wait(pending, timeout=0.5, return_when=futures.FIRST_COMPLETED)
                _drain(progress, bar, workers)
                if caught and not stopping:
                    stopping = True
                    for future in pending:
                        future.cancel()
                    for pid in workers:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGTERM)
                for future in finished:
                    arm, seed = pending.pop(future)
                    if not future.cancelled() and future.exception() is not None and not stopping:
                        failed.append(f"{arm} seed {seed}: {future.exception()}")
            _drain(progress, bar, workers)
        if caught:
            raise StudyInterrupted(caught[0])
        return failed

    # ------------------------------------------------------------------ results

    def results(self) -> list[dict]:
        """The finished runs' results, in ``runs()`` order."""
        return [json.loads((self.folder(a, s) / "result.json").read_text())
                for a, s in self.runs() if (self.folder(a, s) / "result.json").exists()]

    def summarise(self, *, commit: str | None = None) -> dict:
        """Write ``results.json``, ``results.md``, ``swd.png`` and ``samples.png``; return the JSON.

        ``commit``: the kit's commit that trained the runs (default: the current one).
        """
        from .plots import plot_study_samples, plot_study_swd

        runs = self.results()
        summary = {"settings": {**self.settings, "arms": self.arms, "seeds": self.seeds},
                   "command": self.command(), "commit": commit or _commit(), "version": __version__,
                   "devices": sorted({f"{r['device']} {r['precision']}" for r in runs}),
                   "arms": {arm: {"question": ARMS[arm].question, **arm_table(runs, arm)}
                            for arm in self.arms},
                   "runs": runs}
        with atomic_write(self.out / "results.json") as tmp:
            tmp.write_text(json.dumps(summary, indent=1))
        with atomic_write(self.out / "results.md") as tmp:
            tmp.write_text(markdown_table(summary) + "\n")
        for name, figure in (("swd.png", plot_study_swd(runs, self.arms)),
                             ("samples.png", plot_study_samples(self.out, self.arms, self.seeds[0]))):
            with atomic_write(self.out / name) as tmp:
                figure.savefig(tmp, format="png", dpi=80)
        return summary

    def command(self) -> str:
        """The command line that makes this study."""
        s = self.settings
        parts = ["vidgen-experiment", "--out", str(self.out), "--preset", s["preset"],
                 "--arms", ",".join(self.arms), "--seeds", ",".join(map(str, self.seeds)),
                 "--steps", str(s["steps"]), "--swd-every", str(s["swd_every"])]
        if s["data"]:
            parts += ["--data", s["data"]]
        if s["precision"] != "auto":
            parts += ["--precision", s["precision"]]
        if self.how["jobs"] > 1:
            parts += ["--jobs", str(self.how["jobs"])]
        if self.how["device"] != "auto":
            parts += ["--device", self.how["device"]]
        return " ".join(parts)


def _machine(device: torch.device) -> str:
    """The accelerator's name, or the processor's, for the record."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def _drain(progress, bar, workers: set) -> None:
    """Take the workers' messages: steps done (numbers) and their process ids."""
    while True:
        try:
            message = progress.get_nowait()
        except queue.Empty:
            return
        if isinstance(message, tuple):
            workers.add(message[1])
        else:
            bar.update(message)


def _commit() -> str | None:
    """The git commit the kit runs from (``+`` when it has uncommitted changes), if any."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (head + ("+" if dirty else "")) or None


# ---------------------------------------------------------------------- statistics

FIGURES = ("swd", "shapes_named", "recon_rms", "kl_per_dim", "delta_spread", "train_seconds",
           "images_per_s")


def mean_sd(values) -> tuple[float, float]:
    """Mean and sample standard deviation (nan for fewer than two values)."""
    values = list(values)
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def arm_table(runs: list[dict], arm: str, baseline: str = "full") -> dict:
    """One arm's figures over seeds: mean, sd and per-seed values, and the paired
    difference in SWD against ``baseline`` over the seeds both have."""
    mine = {r["seed"]: r for r in runs if r["arm"] == arm}
    table = {"seeds": sorted(mine)}
    for key in FIGURES:
        values = [mine[s].get(key) for s in sorted(mine)]
        if values and all(v is not None for v in values):
            m, sd = mean_sd(values)
            table[key] = {"mean": m, "sd": sd, "per_seed": values}
    if "swd" in table and all("swd_mean_delta" in mine[s] for s in mine):
        m, sd = mean_sd(mine[s]["swd_mean_delta"] - mine[s]["swd"] for s in sorted(mine))
        table["mean_delta_cost"] = {"mean": m, "sd": sd}
    theirs = {r["seed"]: r for r in runs if r["arm"] == baseline}
    paired = [s for s in sorted(mine) if s in theirs]
    if arm != baseline and paired:
        diffs = [mine[s]["swd"] - theirs[s]["swd"] for s in paired]
        m, sd = mean_sd(diffs)
        table["swd_minus_" + baseline.replace("-", "_")] = {"mean": m, "sd": sd, "per_seed": diffs,
                                                          "seeds": paired}
    return table


def _pm(entry: dict | None, digits: int = 4) -> str:
    if not entry:
        return "—"
    sd = "" if math.isnan(entry["sd"]) else f" ± {entry['sd']:.{digits}f}"
    return f"{entry['mean']:.{digits}f}{sd}"


def markdown_table(summary: dict) -> str:
    """The study as a Markdown table: mean ± sd over seeds, per-seed SWD, paired difference."""
    rows = ["| arm | SWD (mean ± sd) | SWD per seed | SWD − full, paired | shapes named | recon RMS | "
            "delta spread | mean-delta cost | train s | images/s |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for arm, t in summary["arms"].items():
        per_seed = ", ".join(f"{v:.4f}" for v in t.get("swd", {}).get("per_seed", []))
        rows.append(f"| {arm} | {_pm(t.get('swd'))} | {per_seed} | {_pm(t.get('swd_minus_full'))} | "
                    f"{_pm(t.get('shapes_named'), 2)} | {_pm(t.get('recon_rms'), 3)} | "
                    f"{_pm(t.get('delta_spread'), 3)} | "
                    f"{_pm(t.get('mean_delta_cost'))} | {_pm(t.get('train_seconds'), 0)} | "
                    f"{_pm(t.get('images_per_s'), 0)} |")
    s = summary["settings"]
    return "\n".join([*rows, "", f"Preset {s['preset']}, {s['steps']} steps, seeds {s['seeds']}, "
                      f"on {', '.join(summary.get('devices', [])) or '?'}; "
                      f"SWD against real images (lower is better). Command: `{summary['command']}`"
                      + (f", commit {summary['commit']}" if summary.get("commit") else "") + "."])


# ---------------------------------------------------------------------- command line


def build_parser() -> Parser:
    p = Parser(prog="vidgen-experiment",
               description="Train every arm with every seed and compare them: does the weight "
                           "predictor help, and which part of it? Arms: "
                           + "; ".join(f"{k}: {a.question}" for k, a in ARMS.items()),
               epilog="Example: vidgen-experiment --preset tiny --steps 20 --seeds 0,1 --out runs/try. "
                      "Run it again to continue a study that was stopped.")
    p.add_argument("--out", metavar="FOLDER", help="study folder (default: runs/study_<preset>)")
    p.add_argument("--preset", default="cpu", choices=tuple(PRESETS), help="default: cpu")
    p.add_argument("--arms", default=",".join(ARMS), help="comma-separated (default: all)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated integers (default: 0,1,2)")
    p.add_argument("--steps", type=int, help="generator steps of every run (default: the preset's)")
    p.add_argument("--swd-every", type=int, default=400, help="steps between SWD measurements")
    p.add_argument("--jobs", type=int, default=1, help="runs trained at once, in processes")
    p.add_argument("--data", metavar="FOLDER", help="ImageFolder tree (default: built-in shapes)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    p.add_argument("--precision", default="auto", choices=PRECISIONS, help="as for vidgen-train")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    escape_unprintable_output()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds: {args.seeds!r}: expected comma-separated integers, e.g. 0,1,2")
    try:
        pick_device(args.device)
        study = Study(args.out or RUNS / f"study_{args.preset}", preset=args.preset,
                      arms=[a.strip() for a in args.arms.split(",") if a.strip()], seeds=seeds,
                      steps=args.steps, swd_every=args.swd_every, data=args.data,
                      precision=args.precision)
        summary = study.run(jobs=args.jobs, device=args.device, progress=not args.quiet)
    except ValueError as exc:
        text = str(exc)
        option = next((o for o in ("arms", "seeds", "steps", "swd_every", "jobs", "device", "data")
                       if text.startswith(o)), None)
        parser.error((f"--{option.replace('_', '-')}: " if option else "") + text)
    except RuntimeError as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 1
    except StudyInterrupted as stop:
        print(f"{parser.prog}: interrupted ({stop}); finished runs and the checkpoints of the "
              f"runs in progress are kept in {study.out}. Continue with the same command.",
              file=sys.stderr)
        return 128 + stop.signum
    print(markdown_table(summary))
    print(f"wrote {study.out / 'results.json'}, results.md, swd.png, samples.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
