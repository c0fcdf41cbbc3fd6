"""Running a study: arms x seeds, each an ordinary run, continued where it stopped.

Every arm (``arms.py``: a name, what it asks, the config fields it changes) is
trained with every seed, on one preset, for the same steps, on the same data. A study folder holds ``study.json`` (its settings), one run
folder per arm and seed (``<arm>/seed_<s>``: checkpoint, metrics, ``samples.png``,
and ``result.json`` once finished), and the reports of ``report.py``. Every run is
evaluated with every figure of ``Trainer.evaluate`` (the shape judge's included) at
step 0 and every ``swd_every`` steps; a killed study continues where it stopped:
finished runs are read back, a run cut short resumes from its checkpoint. Training
the runs themselves, here or in worker processes, lives in ``arm_runs.py``.
"""

from __future__ import annotations

import json
import math
import os
import shlex
from pathlib import Path

from tqdm.auto import tqdm

from . import __version__
from .checkpoint import CHECKPOINT
from .config import PRESETS, Config, check_one_of, check_positive
from .data import builtin_dataset
from .device import PRECISIONS
from .files import atomic_write
from .arm_runs import StudyInterrupted, read_config, run_arm, run_parallel, same_but_steps
from .arms import ARMS, arm_config, check_overrides, load_spec, resolve_arms
from .options import fields
from .report import summarise


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
        baseline: the arm the report pairs every other against (default: ``full`` if the
            study has it, else its first arm).
    """

    def __init__(self, out, *, preset: str = "cpu", arms=tuple(ARMS), seeds=(0, 1, 2),
                 steps: int | None = None, swd_every: int = 400, data=None, precision: str = "auto",
                 overrides: dict | None = None, baseline: str | None = None):
        if preset not in PRESETS:
            raise ValueError(f"preset={preset!r}: expected one of {tuple(PRESETS)}")
        self.out, self.arms = Path(out), resolve_arms(arms)
        self.seeds = list(dict.fromkeys(seeds))
        if not self.seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in self.seeds):
            raise ValueError(f"seeds={list(seeds)!r}: expected one or more integers")
        steps = PRESETS[preset].train.steps if steps is None else steps
        check_positive("steps", steps)
        check_positive("swd_every", swd_every)
        check_one_of("precision", precision, PRECISIONS)
        overrides = check_overrides("set", dict(overrides or {}))
        self.settings = {"preset": preset, "steps": steps, "swd_every": swd_every,
                         "data": str(Path(data).resolve()) if data else None, "precision": precision,
                         "set": json.loads(json.dumps(overrides))}
        self.overrides, self.data = overrides, data
        if baseline is not None and baseline not in self.arms:
            raise ValueError(f"baseline={baseline!r}: expected one of the study's arms, "
                             f"{', '.join(self.arms)}")
        self.given_baseline = baseline
        # What every arm is paired against in the report: the one named, else full, else the first.
        self.baseline = baseline or ("full" if "full" in self.arms else next(iter(self.arms)))
        self.spec: str | None = None  # the spec file the study was read from, if any
        self.spec_read: dict = {}  # what that file said (``load_spec``), before the changes
        self.how = {"jobs": 1, "device": "auto"}  # how the last run() ran (for the command line)
        for arm, seed in self.runs():
            self.config(arm, seed)  # every arm builds: a bad field fails now, naming the arm
        self._check_folder()

    @classmethod
    def from_spec(cls, out, path: str | os.PathLike, **changes) -> "Study":
        """The study a spec file describes (``load_spec``), with ``changes`` to its
        settings (None: the spec's); ``overrides`` add to the spec's ``set``."""
        spec = load_spec(path)
        overrides = {**spec["overrides"], **(changes.pop("overrides", None) or {})}
        study = cls(out, **{**spec, "overrides": overrides,
                            **{k: v for k, v in changes.items() if v is not None}})
        study.spec, study.spec_read = str(path), spec
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
            config = read_config(result.get("config", {}))
            if result["steps"] != self.settings["steps"] or config is None or not same_but_steps(
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
                from .stopping import TrainingInterrupted

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
                failed = run_parallel([(a, s, self.folder(a, s), self.config(a, s)) for a, s in todo],
                                      jobs, kwargs, bar)
        finally:
            bar.close()
        if failed:
            raise RuntimeError("runs failed: " + "; ".join(failed) + " (finished runs are kept; "
                               "run the same command again to retry the rest)")
        return summarise(self)

    def measure_again(self, *, device=None) -> list[str]:
        """Measure every finished run's checkpoint again with today's ``Trainer.evaluate``,
        for figures the evaluation gained after the run was made: those its result lacks
        are added (to the result and to its last point); those it has must come out the
        same, else ``ValueError`` naming the run and the figure (a measurement that does
        not repeat is not added to). Each in the precision it was made in; nothing trains.
        Returns the figures added."""
        from .trainer import Trainer

        added: set[str] = set()
        for arm, seed in self.runs():
            folder = self.folder(arm, seed)
            if not self._finished(arm, seed) or not (folder / CHECKPOINT).exists():
                continue
            result = json.loads((folder / "result.json").read_text())
            if not same_but_steps(read_config(result["config"]), self.config(arm, seed)):
                raise ValueError(f"{folder / 'result.json'} was made with another config than this "
                                 f"study's arm {arm}; not measuring it again")
            trainer = Trainer.from_checkpoint(folder / CHECKPOINT, data=self.data, progress=False,
                                              device=device or result["device"], precision=result["precision"])
            if trainer.step != result["steps"]:
                raise ValueError(f"{folder}: its checkpoint is at step {trainer.step}, its result "
                                 f"at step {result['steps']}")
            figures = {k: v for k, v in trainer.evaluate().items() if k != "step"}
            differ = [k for k, v in figures.items() if k in result and not _same_figure(result[k], v)]
            if differ:
                raise ValueError(f"{folder}: measured again, {differ[0]} is {figures[differ[0]]!r} "
                                 f"against {result[differ[0]]!r} in its result; not adding to it")
            new = {k: v for k, v in figures.items() if k not in result}
            result.update(new)
            result["points"][-1].update(new)
            with atomic_write(folder / "result.json") as tmp:
                tmp.write_text(json.dumps(result, indent=1))
            added |= set(new)
        return sorted(added)

    def results(self) -> list[dict]:
        """The finished runs' results, in ``runs()`` order, each named by this study's arm
        (a run copied from another study's folder keeps the arm name it was made under)."""
        return [{**json.loads((self.folder(a, s) / "result.json").read_text()), "arm": a}
                for a, s in self.runs() if (self.folder(a, s) / "result.json").exists()]

    def summarise(self, *, commit: str | None = None) -> dict:
        """``report.summarise``: results.json, results.md, swd.png, samples.png."""
        return summarise(self, commit=commit)

    def command(self) -> str:
        """The command line that makes this study: with a spec, the options that change it."""
        s = self.settings
        parts = ["vidgen-experiment", "--out", str(self.out)]
        spec = self.spec_read
        if self.spec:
            parts += ["--spec", self.spec]
        if not self.spec or s["preset"] != spec.get("preset", "cpu"):
            parts += ["--preset", s["preset"]]
        if not self.spec or self.arms != resolve_arms(spec["arms"]):
            named = [a for a in self.arms if a in ARMS and self.arms[a] == ARMS[a]]
            if named:
                parts += ["--arms", ",".join(named)]
            for name, arm in self.arms.items():
                if name not in named:
                    parts += ["--arm", shlex.quote(f"{name}:" + ",".join(
                        f"{k}={_text(k, v)}" for k, v in arm.overrides.items()))]
        for key, value in self.overrides.items():
            if spec.get("overrides", {}).get(key, object()) != value:
                parts += ["--set", shlex.quote(f"{key}={_text(key, value)}")]
        if self.given_baseline and self.given_baseline != spec.get("baseline"):
            parts += ["--baseline", self.given_baseline]
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


def _same_figure(a, b) -> bool:
    """Whether two measurements of one figure agree (numbers to 1e-6, relative)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_figure(a[k], b[k]) for k in a)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
    return a == b


def _text(name: str, value) -> str:
    """Field ``name``'s value as the command line writes it (``parse_value`` reads it back)."""
    if isinstance(value, bool):
        words = fields()[name][1].metadata.get("words") or {"on": True, "off": False}
        return next(word for word, meaning in words.items() if meaning == value)
    return ",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)
