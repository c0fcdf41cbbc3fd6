"""Training a study's runs: one arm and seed in its run folder (``run_arm``), or
several at once in worker processes (``run_parallel``).

A run folder (``<study>/<arm>/seed_<s>``) holds an ordinary run (checkpoint, metrics)
and, once finished, ``samples.png`` and ``result.json``; a run cut short goes on from
its checkpoint, a finished one is read back. ``study.py`` decides which runs a study
has and where; this module trains them and stops them cleanly on a signal.
"""

from __future__ import annotations

import concurrent.futures as futures
import contextlib
import json
import multiprocessing
import os
import queue
import signal
import threading
from pathlib import Path
from typing import Iterator

import torch

from .checkpoint import CHECKPOINT
from .config import Config
from .files import atomic_write
from .report import machine


class StudyInterrupted(Exception):
    """SIGINT or SIGTERM stopped the study; every run in progress kept a checkpoint."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


def read_config(stored: dict) -> Config | None:
    """A config stored in a result, or None where it is not one this version reads."""
    try:
        return Config.from_dict(stored)
    except (TypeError, ValueError):
        return None


def same_but_steps(a: Config, b: Config) -> bool:
    """The same run but for its total steps (a study may be given more)."""
    return a.replace(steps=b.train.steps) == b


# ---------------------------------------------------------------------- one run


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
    result_file = folder / "result.json"
    finished = _finished_result(result_file, folder, config)
    if finished is not None:
        return finished
    trainer = _open_run(folder, config, dict(data=data, out=folder, device=device, progress=False,
                                             precision=precision, try_bf16=True))
    points, seconds = _points_so_far(trainer, report)
    seconds = _train_measuring(trainer, points, seconds, steps=config.train.steps,
                               swd_every=swd_every, report=report, stop=stop)
    trainer.save_samples(folder / "samples.png")
    result = _result(folder, config, trainer, points, seconds)
    with atomic_write(result_file) as tmp:
        tmp.write_text(json.dumps(result, indent=1))
    return result


def _finished_result(result_file: Path, folder: Path, config: Config) -> dict | None:
    """The run's result when it has one for as many steps as ``config`` asks, else None;
    ``ValueError`` for a result made with another config."""
    if not result_file.exists():
        return None
    result = json.loads(result_file.read_text())
    if "config" in result and not same_but_steps(read_config(result["config"]), config):
        raise ValueError(f"{result_file} was made with another config than this study's "
                         f"arm {folder.parent.name}; move it away or use another study folder")
    # A study given more steps: the run goes on from its checkpoint, its curve with it.
    return result if result["steps"] >= config.train.steps else None


def _open_run(folder: Path, config: Config, common: dict):
    """The trainer of the run: from the folder's checkpoint (which must have been made
    with ``config``, but for its steps), else a new one."""
    from .trainer import Trainer  # the workers import torch's training stack themselves

    if not (folder / CHECKPOINT).exists():
        return Trainer(config, **common)
    trainer = Trainer.from_checkpoint(folder / CHECKPOINT, **common)
    if not same_but_steps(trainer.config, config):
        raise ValueError(f"{folder / CHECKPOINT} was made with another config than this "
                         "study's; move it away or use another study folder")
    return trainer


def _points_so_far(trainer, report) -> tuple[list[dict], float]:
    """The evaluations the run holds (one at its current step included, measured now
    if missing) and its training seconds so far."""
    points = [r for r in trainer.history if "train_seconds" in r]
    if trainer.train_seconds is None:  # a checkpoint that did not keep its time: the last point's
        trainer.train_seconds = points[-1]["train_seconds"] if points else 0.0
    seconds = trainer.train_seconds
    if report and trainer.step:
        report(trainer.step)
    if not points or points[-1]["step"] != trainer.step:
        points.append(trainer.evaluate(train_seconds=seconds))
    return points, seconds


def _train_measuring(trainer, points: list[dict], seconds: float, *, steps: int, swd_every: int,
                     report, stop) -> float:
    """Train to ``steps``, evaluating every ``swd_every`` steps into ``points``; returns
    the training seconds at the end."""
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
    return seconds


def _result(folder: Path, config: Config, trainer, points: list[dict], seconds: float) -> dict:
    """What ``result.json`` keeps of a finished run."""
    steps = config.train.steps
    per_step = config.batch_size * (config.train.n_critic + 1)
    figures = {k: v for k, v in points[-1].items() if k not in ("step", "train_seconds")}
    return {"arm": folder.parent.name, "seed": config.seed, "steps": steps, **figures,
            "train_seconds": seconds, "images_per_s": steps * per_step / max(seconds, 1e-9),
            "curve": [(p["step"], p["train_seconds"], p["swd"]) for p in points], "points": points,
            "device": str(trainer.device), "precision": trainer.precision,
            "machine": machine(trainer.device), "config": config.to_dict()}


# ---------------------------------------------------------------------- worker processes


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
    from .stopping import TrainingInterrupted

    try:
        return run_arm(folder, config, **kwargs, report=_progress.put,
                       stop=lambda: _stop_requested[0] if _stop_requested else None)
    except (TrainingInterrupted, StudyInterrupted):
        return None


def run_parallel(todo: list[tuple[str, int, Path, Config]], jobs: int, kwargs: dict,
                 bar) -> list[str]:
    """The runs ``todo`` (arm, seed, folder, config) in ``jobs`` processes, the cores split
    between them; returns the failures, one line each. ``kwargs`` go to ``run_arm``;
    ``bar`` (tqdm) counts the steps done.

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
        pending = {pool.submit(_run_in_worker, folder, config, kwargs): (arm, seed)
                   for arm, seed, folder, config in todo}
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


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
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
def _signals_to_flag() -> Iterator[list[int]]:
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
