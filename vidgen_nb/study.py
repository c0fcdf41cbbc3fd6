"""Running a study: arms x seeds, each an ordinary run, continued where it stopped.

Every arm (``arms.py``: a name, what it asks, the config fields it changes) is
trained with every seed, on one preset, for the same steps, on the same data. A study folder holds ``study.json`` (its settings), one run
folder per arm and seed (``<arm>/seed_<s>``: checkpoint, metrics, ``samples.png``,
and ``result.json`` once finished), and the reports of ``report.py``. Every run is
evaluated with every figure of ``Trainer.evaluate`` (the shape judge's included) at
step 0 and every ``swd_every`` steps; a killed study continues where it stopped:
finished runs are read back, a run cut short resumes from its checkpoint.
"""

from __future__ import annotations

import concurrent.futures as futures
import contextlib
import json
import multiprocessing
import os
import queue
import shlex
import signal
import threading
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import __version__
from .checkpoint import CHECKPOINT
from .config import PRESETS, Config
from .data import builtin_dataset
from .device import PRECISIONS
from .files import atomic_write
from .arms import ARMS, Arm, arm_config, check_overrides, load_spec, resolve_arms  # noqa: F401
from .options import fields
from .report import machine, summarise

def _read_config(stored: dict) -> Config | None:
    """A config stored in a result, or None where it is not one this version reads."""
    try:
        return Config.from_dict(stored)
    except (TypeError, ValueError):
        return None


def _same_but_steps(a: Config, b: Config) -> bool:
    """The same run but for its total steps (a study may be given more)."""
    return a.replace(steps=b.train.steps) == b


def run_arm(folder: Path, config: Config, *, swd_every: int, data=None, device=None,
            precision: str = "auto", report=None, stop=None) -> dict:
    """Train one arm and seed in ``folder`` (continuing a checkpoint there) and return its result.

    Every figure of ``Trainer.evaluate`` (SWD, the shape judge's shares, the VAE's,
    the deltas') is measured at step 0 and every ``swd_every`` steps, each time after
    a checkpoint, and logged with the training seconds so far (time spent measuring is
    not counted). At the end, ``samples.png`` and ``result.json``: the last point's
    figures, ``curve`` [(step, seconds, swd), ...], ``points`` (every figure at every
    step measured) and the config. ``report(steps)`` is called with the number of
    steps done since the last call; ``stop()``, before each stretch of training,
    returns a signal number to stop (``StudyInterrupted``) or None. Signals during
    training stop the trainer itself.
    """
    from .trainer import Trainer  # the workers import torch's training stack themselves

    result_file = folder / "result.json"
    if result_file.exists():
        result = json.loads(result_file.read_text())
        if "config" in result and not _same_but_steps(_read_config(result["config"]), config):
            raise ValueError(f"{result_file} was made with another config than this study's "
                             f"arm {folder.parent.name}; move it away or use another study folder")
        if result["steps"] >= config.train.steps:
            return result
        # A study given more steps: the run goes on from its checkpoint, its curve with it.
    common = dict(data=data, out=folder, device=device, progress=False, precision=precision)
    if (folder / CHECKPOINT).exists():
        trainer = Trainer.from_checkpoint(folder / CHECKPOINT, **common)
        if not _same_but_steps(trainer.config, config):
            raise ValueError(f"{folder / CHECKPOINT} was made with another config than this "
                             "study's; move it away or use another study folder")
    else:
        trainer = Trainer(config, **common)
    points = [r for r in trainer.history if "train_seconds" in r]
    if trainer.train_seconds is None:  # a checkpoint that did not keep its time: the last point's
        trainer.train_seconds = points[-1]["train_seconds"] if points else 0.0
    seconds = trainer.train_seconds
    if report and trainer.step:
        report(trainer.step)
    if not points or points[-1]["step"] != trainer.step:
        points.append(trainer.evaluate(train_seconds=seconds))
    steps = config.train.steps
    while trainer.step < steps:
        signum = stop() if stop else None
        if signum:
            raise StudyInterrupted(signum)
        chunk = min(swd_every - trainer.step % swd_every, steps - trainer.step)
        trainer.train(chunk)  # ends with a checkpoint
        seconds = trainer.train_seconds  # its steps before an interruption included
        if report:
            report(chunk)
        points.append(trainer.evaluate(train_seconds=seconds))
    trainer.save_samples(folder / "samples.png")
    per_step = config.batch_size * (config.train.n_critic + 1)
    figures = {k: v for k, v in points[-1].items() if k not in ("step", "train_seconds")}
    result = {"arm": folder.parent.name, "seed": config.seed, "steps": steps, **figures,
              "train_seconds": seconds, "images_per_s": steps * per_step / max(seconds, 1e-9),
              "curve": [(p["step"], p["train_seconds"], p["swd"]) for p in points], "points": points,
              "device": str(trainer.device), "precision": trainer.precision,
              "machine": machine(trainer.device), "config": config.to_dict()}
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
    from .trainer import TrainingInterrupted

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
        arms: names of ``ARMS``, ``NAME:FIELD=VALUE,...`` texts (``parse_arm``), or a
            dict name -> ``Arm`` or {field: value}.
        seeds: one run per arm and seed (an ``Arm`` with seeds of its own runs those).
        steps: generator steps of every run (default: the preset's).
        swd_every: steps between evaluations during training.
        data: an ImageFolder tree (default: the built-in dataset).
        overrides: config fields every arm changes before its own.
    """

    def __init__(self, out, *, preset: str = "cpu", arms=tuple(ARMS), seeds=(0, 1, 2),
                 steps: int | None = None, swd_every: int = 400, data=None, precision: str = "auto",
                 overrides: dict | None = None):
        if preset not in PRESETS:
            raise ValueError(f"preset={preset!r}: expected one of {tuple(PRESETS)}")
        self.out, self.arms = Path(out), resolve_arms(arms)
        self.seeds = list(dict.fromkeys(seeds))
        if not self.seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in self.seeds):
            raise ValueError(f"seeds={list(seeds)!r}: expected one or more integers")
        steps = PRESETS[preset].train.steps if steps is None else steps
        for name, value in (("steps", steps), ("swd_every", swd_every)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r}: expected a positive integer")
        if precision not in PRECISIONS:
            raise ValueError(f"precision={precision!r}: expected one of {PRECISIONS}")
        overrides = check_overrides("set", dict(overrides or {}))
        self.settings = {"preset": preset, "steps": steps, "swd_every": swd_every,
                         "data": str(Path(data).resolve()) if data else None, "precision": precision,
                         "set": json.loads(json.dumps(overrides))}
        self.overrides, self.data = overrides, data
        self.spec: str | None = None  # the spec file the study was read from, if any
        self.how = {"jobs": 1, "device": "auto"}  # how the last run() ran (for the command line)
        for arm, seed in self.runs():
            self.config(arm, seed)  # every arm builds: a bad field fails now, naming the arm
        self._check_folder()

    @classmethod
    def from_spec(cls, out, path: str | os.PathLike, **changes) -> "Study":
        """The study a spec file describes (``load_spec``), with ``changes`` to its
        settings (None: the spec's); ``overrides`` add to the spec's ``set``."""
        spec = load_spec(path)
        spec["overrides"] = {**spec["overrides"], **(changes.pop("overrides", None) or {})}
        study = cls(out, **{**spec, **{k: v for k, v in changes.items() if v is not None}})
        study.spec = str(path)
        return study

    def _check_folder(self) -> None:
        """Refuse a study folder whose runs were made with other settings."""
        stored = self.out / "study.json"
        if not stored.exists():
            return
        try:
            theirs = json.loads(stored.read_text())
        except ValueError:
            raise ValueError(f"{stored} is not JSON; is {self.out} a study folder?") from None
        theirs.setdefault("set", {})
        # More steps than before continue its runs; anything else would mix two studies.
        differ = [f"{k}: folder {theirs.get(k)!r}, now {v!r}" for k, v in self.settings.items()
                  if theirs.get(k) != v and not (k == "steps" and isinstance(theirs.get(k), int)
                                                 and v > theirs[k])]
        if differ:
            raise ValueError(f"study folder {self.out} was made with other settings ("
                             + "; ".join(differ) + "); use another folder or the same settings")

    def restore(self, path: str | os.PathLike) -> list[tuple[str, int]]:
        """Write back the finished runs that a study's ``results.json`` keeps, for the
        runs of this study that this folder lacks, and return them as (arm, seed).

        How a study recorded on one machine (its ``results.json`` committed, its
        checkpoints left behind) goes on with more seeds or arms on another. A run made
        with other settings or another config, or with fewer steps than this study's
        (it has no checkpoint to continue from), is refused by name.
        """
        path = Path(path)
        try:
            recorded = json.loads(path.read_text())
            theirs, runs = recorded["settings"], recorded["runs"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"--restore {path}: expected a study's results.json ({exc})") from None
        differ = [k for k in ("preset", "swd_every", "data", "precision", "set")
                  if theirs.get(k, {} if k == "set" else None) != self.settings[k]]
        if differ:
            raise ValueError(f"--restore {path}: made with other settings ({', '.join(differ)}) "
                             f"than the study in {self.out}")
        restored = []
        for result in runs:
            arm, seed = result["arm"], result["seed"]
            if (arm, seed) not in self.runs() or (self.folder(arm, seed) / "result.json").exists():
                continue
            config = _read_config(result.get("config", {}))
            if result["steps"] != self.settings["steps"] or config is None or not _same_but_steps(
                    config, self.config(arm, seed)):
                raise ValueError(f"--restore {path}: its run {arm} seed {seed} was made with another "
                                 f"config or steps ({result['steps']}) than this study's")
            self.folder(arm, seed).mkdir(parents=True, exist_ok=True)
            with atomic_write(self.folder(arm, seed) / "result.json") as tmp:
                tmp.write_text(json.dumps(result, indent=1))
            restored.append((arm, seed))
        return restored

    def folder(self, arm: str, seed: int) -> Path:
        return self.out / arm / f"seed_{seed}"

    def config(self, arm: str, seed: int) -> Config:
        try:
            return arm_config(self.settings["preset"], self.arms[arm], seed, self.settings["steps"],
                              self.overrides, data=self.data)
        except ValueError as exc:
            raise ValueError(f"arm {arm}: {exc}") from None

    def runs(self) -> list[tuple[str, int]]:
        """Every (arm, seed), seed by seed, so that a study cut short has whole seeds."""
        seeds = list(dict.fromkeys([*self.seeds, *(s for a in self.arms.values() for s in a.seeds or ())]))
        return [(arm, seed) for seed in seeds for arm, a in self.arms.items()
                if seed in (a.seeds or self.seeds)]

    def _finished(self, arm: str, seed: int) -> bool:
        """Whether the run has its result, for as many steps as the study asks."""
        result = self.folder(arm, seed) / "result.json"
        return result.exists() and json.loads(result.read_text())["steps"] >= self.settings["steps"]

    def run(self, *, jobs: int = 1, device=None, progress: bool = True) -> dict:
        """Train every run not finished yet (``jobs`` at a time), then write the summary."""
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise ValueError(f"jobs={jobs!r}: expected a positive integer")
        self.how = {"jobs": jobs, "device": device or "auto"}
        self.out.mkdir(parents=True, exist_ok=True)
        with atomic_write(self.out / "study.json") as tmp:
            tmp.write_text(json.dumps({**self.settings, "version": __version__}, indent=1))
        todo = [(a, s) for a, s in self.runs() if not self._finished(a, s)]
        for arm, seed in set(self.runs()) - set(todo):  # finished: read back, its config checked
            run_arm(self.folder(arm, seed), self.config(arm, seed), swd_every=1)
        total = len(self.runs()) * self.settings["steps"]
        done = (len(self.runs()) - len(todo)) * self.settings["steps"]
        bar = tqdm(total=total, initial=done, desc=f"study {self.out.name}", disable=not progress,
                   dynamic_ncols=True, unit="step")
        kwargs = dict(swd_every=self.settings["swd_every"], data=self.data, device=device,
                      precision=self.settings["precision"])
        failed = []
        try:
            if jobs == 1 or len(todo) <= 1:
                from .trainer import TrainingInterrupted

                for arm, seed in todo:  # the trainer itself stops on a signal, after a checkpoint
                    bar.set_postfix_str(f"{arm} seed {seed}")
                    try:
                        run_arm(self.folder(arm, seed), self.config(arm, seed), **kwargs,
                                report=bar.update)
                    except TrainingInterrupted as stop:
                        raise StudyInterrupted(stop.signum) from None
            else:
                if self.data is None:  # written once here, not by several workers at once
                    for d in {self.config(arm, seed).data for arm, seed in todo}:
                        builtin_dataset(background=d.builtin, per_class=d.builtin_per_class)
                failed = self._run_parallel(todo, jobs, kwargs, bar)
        finally:
            bar.close()
        if failed:
            raise RuntimeError("runs failed: " + "; ".join(failed) + " (finished runs are kept; "
                               "run the same command again to retry the rest)")
        return summarise(self)

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


    def results(self) -> list[dict]:
        """The finished runs' results, in ``runs()`` order, each named by this study's arm
        (a run copied from another study's folder keeps the arm name it was made under)."""
        return [{**json.loads((self.folder(a, s) / "result.json").read_text()), "arm": a}
                for a, s in self.runs() if (self.folder(a, s) / "result.json").exists()]

    def summarise(self, *, commit: str | None = None) -> dict:
        """``report.summarise``: results.json, results.md, swd.png, samples.png."""
        return summarise(self, commit=commit)

    def command(self) -> str:
        """The command line that makes this study."""
        s = self.settings
        parts = ["vidgen-experiment", "--out", str(self.out)]
        if self.spec:
            parts += ["--spec", self.spec]
        else:
            named = [a for a in self.arms if a in ARMS and self.arms[a] == ARMS[a]]
            parts += ["--preset", s["preset"]]
            if named:
                parts += ["--arms", ",".join(named)]
            for name, arm in self.arms.items():
                if name not in named:
                    parts += ["--arm", shlex.quote(f"{name}:" + ",".join(
                        f"{k}={_text(k, v)}" for k, v in arm.overrides.items()))]
            for key, value in self.overrides.items():
                parts += ["--set", shlex.quote(f"{key}={_text(key, value)}")]
        parts += ["--seeds", ",".join(map(str, self.seeds)), "--steps", str(s["steps"]),
                  "--swd-every", str(s["swd_every"])]
        if s["data"]:
            parts += ["--data", s["data"]]
        if s["precision"] != "auto":
            parts += ["--precision", s["precision"]]
        if self.how["jobs"] > 1:
            parts += ["--jobs", str(self.how["jobs"])]
        if self.how["device"] != "auto":
            parts += ["--device", self.how["device"]]
        return " ".join(parts)


def _text(name: str, value) -> str:
    """Field ``name``'s value as the command line writes it (``parse_value`` reads it back)."""
    if isinstance(value, bool):
        words = fields()[name][1].metadata.get("words") or {"on": True, "off": False}
        return next(word for word, meaning in words.items() if meaning == value)
    return ",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)


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


