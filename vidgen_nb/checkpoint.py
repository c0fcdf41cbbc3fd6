"""Checkpoints and run folders: where runs live, writing safely, reading safely.

A checkpoint is a plain dict (``torch.save``), laid out as

    format         FORMAT, the layout's version: another is refused in one line
    version        the vidgen_nb version that wrote it
    config         ``Config.to_dict()``: every size and setting of the run
    step           generator steps done; batches_seen: real batches drawn so far
    vae, critic    state dicts; predictor: a state dict, or None (--no-predictor)
    generator_ema  the averaged generator's state dict (``Generator``: vae.*, predictor.*),
                   or None when the run keeps no average (ema_decay = 0)
    opt_g, opt_d   optimiser states; rng: {"torch": ..., "cuda": ...} random states
    data           what it trains on (``data/record.py``): the built-in set's variant, or
                   a folder's path and the fingerprint of its files
    swd_start      {"step", "swd"}: the SWD its summary starts from, measured at step 0 (or
                   when it went on with other data), or None when never measured
    lineage        [{"checkpoint", "step"}, ...]: the runs it was forked from, oldest first
    train_seconds  seconds spent training so far (absent from checkpoints made before it)

and read with ``weights_only=True``, so that loading one never runs code from it.

Runs live in ``runs/<name>`` under the current folder (``vidgen-train`` writes
``runs/<preset>``, ``make train`` writes ``runs/main``); ``find_run`` also looks in
the folders above, so a notebook in ``notebooks/`` finds the repository's ``runs/main``.
"""

from __future__ import annotations

import errno
import json
import math
import numbers
import os
import shutil
import stat
import sys
import zipfile
from pathlib import Path

import torch

from .config import Config
from .data import check_record
from .files import atomic_write

CHECKPOINT = "checkpoint.pt"  # the file name inside a run folder
# The checkpoint layout's version. 2: every config field stored (format 1, before it was
# counted, left out fields that did not exist yet, and readers guessed what they meant);
# 3: the built-in data's section (which backgrounds, how many images) in the config;
# 4: the data it trains on, its starting SWD and the runs it was forked from.
FORMAT = 4
RUNS = Path("runs")  # run folders, relative to the current folder
REQUIRED = ("config", "step", "vae", "critic")  # keys without which a file is no checkpoint
# torch.save stores a checkpoint's records uncompressed, so they add up to about the
# file's size; a file whose records would unpack to far more is refused before reading.
MAX_INFLATION = 4


def run_checkpoint(name: str = "main") -> Path:
    """``runs/<name>/checkpoint.pt``, relative to the current folder."""
    return RUNS / name / CHECKPOINT


def find_run(name: str = "main", start: str | os.PathLike | None = None) -> Path | None:
    """The first ``runs/<name>/checkpoint.pt`` in ``start`` (default: the current folder)
    or a folder above it, or None when there is none."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / run_checkpoint(name)).is_file():
            return folder / run_checkpoint(name)
    return None


def save_atomic(obj, path: str | os.PathLike) -> Path:
    """torch.save ``obj`` to ``path`` through ``atomic_write``.

    Raises ``OSError`` (ENOSPC when the disk is full, which torch.save itself reports
    only as "unexpected pos ..."); ``path`` is then left as it was.
    """
    with atomic_write(path) as tmp:
        try:
            torch.save(obj, tmp)
        except RuntimeError as exc:
            full = shutil.disk_usage(tmp.parent).free < 64 * 2**20
            raise OSError(errno.ENOSPC if full else errno.EIO,
                          "the disk is full" if full else str(exc).splitlines()[0], str(path)) from None
    return Path(path)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint without running any code from it.

    ``torch.load(weights_only=True)`` unpickles tensors, numbers, strings and
    containers only; a file that asks for anything else (e.g. a pickle crafted to run
    code) is refused with ``ValueError`` before any of it runs.
    """
    path = checkpoint_file(path)
    _check_unpacked_size(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for forbidden globals, RuntimeError for junk
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"checkpoint {path} was refused: it is not a plain vidgen_nb "
                         f"checkpoint ({first})") from None
    missing = set(REQUIRED) - set(state) if isinstance(state, dict) else {"a dict"}
    if missing:
        raise ValueError(f"checkpoint {path} lacks {sorted(missing)}: not a vidgen_nb checkpoint")
    return state


def checkpoint_file(path: str | os.PathLike) -> Path:
    """``path``, or the checkpoint in it when it is a run folder, once it is known to be a
    regular file: ``FileNotFoundError`` when nothing is there, ``ValueError`` naming what
    is there instead (a folder without a checkpoint, a FIFO that would block a reader, a
    path longer than the system allows)."""
    path = Path(path)
    try:
        if path.is_dir() and (path / CHECKPOINT).is_file():
            return path / CHECKPOINT
        if path.is_file():
            return path
        if path.is_dir():
            raise ValueError(f"checkpoint {path} is a folder holding no {CHECKPOINT}")
        if path.exists():
            raise ValueError(f"checkpoint {path} is not a regular file ({file_kind(path)})")
    except OSError as exc:
        raise ValueError(f"checkpoint {path}: {path_problem(exc)}") from None
    raise FileNotFoundError(f"checkpoint {path} does not exist")


def file_kind(path: Path) -> str:
    """What a path that is neither a file nor a folder is, in a word or two."""
    mode = path.stat().st_mode
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a file"


def path_problem(exc: OSError) -> str:
    """An operating-system error about a path, in words ("longer than the system allows")."""
    if exc.errno == errno.ENAMETOOLONG:
        return "the path is longer than the system allows (a name over 255 bytes, or the whole over 4096)"
    return exc.strerror or str(exc)


def _check_unpacked_size(path: Path) -> None:
    """Refuse a zip archive whose records unpack to far more than its size on disk."""
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(record.file_size for record in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # not a zip archive: torch.load says what it is
    on_disk = path.stat().st_size
    if unpacked > MAX_INFLATION * on_disk + 2**20:
        raise ValueError(f"checkpoint {path} was refused: its records would unpack to "
                         f"{unpacked / 2**20:,.0f} MiB from {on_disk / 2**20:,.1f} MiB on disk "
                         "(vidgen_nb checkpoints are stored uncompressed)")


def check_state(state: dict, path: str | os.PathLike, *, training: bool) -> Config:
    """The config of a loaded checkpoint, once every entry has the type it should.

    One check for both commands and the API: ``training`` also requires what
    continuing a run needs (optimiser states, random state, batches drawn). Raises
    ``ValueError`` naming ``path`` and the entry.
    """
    config = stored_config(state, path)

    def refuse(key: str, expected: str):
        value = state.get(key, "missing")
        shown = value if isinstance(value, (int, float, str, type(None))) else type(value).__name__
        raise ValueError(f"checkpoint {path}: {key} is {shown!r}, expected {expected}")

    for key in ("step", "batches_seen") if training else ("step",):
        value = state.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            refuse(key, "an integer >= 0")
    weights = "a dict of tensors (a state dict)"
    for key in ("vae", "critic"):
        if not _is_state_dict(state.get(key)):
            refuse(key, weights)
    if config.train.use_predictor and not _is_state_dict(state.get("predictor")):
        refuse("predictor", weights + ", as its config uses a predictor")
    if not config.train.use_predictor and state.get("predictor") is not None:
        refuse("predictor", "None, as its config trains without a predictor")
    if state.get("generator_ema") is not None and not _is_state_dict(state["generator_ema"]):
        refuse("generator_ema", weights + " or None")
    for key in ("vae", "critic", "predictor", "generator_ema"):
        tensors = (state.get(key) or {}).values()
        if any(t.is_floating_point() and not torch.isfinite(t).all() for t in tensors):
            raise ValueError(f"checkpoint {path}: its {key} weights hold NaN or infinite values "
                             "(training never saves those: the file was damaged or edited)")
    check_record(state.get("data"), path)
    start = state.get("swd_start")
    if start is not None and not (isinstance(start, dict) and isinstance(start.get("step"), int)
                                  and isinstance(start.get("swd"), float) and math.isfinite(start["swd"])):
        refuse("swd_start", "None or {'step': an integer, 'swd': a finite number}")
    seconds = state.get("train_seconds")
    if seconds is not None and not (isinstance(seconds, float) and 0 <= seconds < math.inf):
        refuse("train_seconds", "None or a finite number of seconds >= 0")
    lineage = state.get("lineage")
    if not isinstance(lineage, list) or not all(
            isinstance(f, dict) and isinstance(f.get("checkpoint"), str) and isinstance(f.get("step"), int)
            for f in lineage):
        refuse("lineage", "a list of {'checkpoint': a path, 'step': an integer}")
    if training:
        for key in ("opt_g", "opt_d"):
            value = state.get(key)
            if not isinstance(value, dict) or not {"state", "param_groups"} <= set(value):
                refuse(key, "an optimiser state dict")
        rng = state.get("rng")
        if not isinstance(rng, dict) or not isinstance(rng.get("torch"), torch.Tensor) \
                or rng["torch"].dtype != torch.uint8:
            refuse("rng", "a dict holding torch's random state (a uint8 tensor)")
    return config


def load_part(part, state, what: str) -> None:
    """``part.load_state_dict(state)`` (a module or an optimiser); ``ValueError`` naming
    ``what`` when the stored state does not fit it (extra, missing or wrong-shaped)."""
    try:
        part.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
        last = (str(exc).strip().splitlines() or [type(exc).__name__])[-1].strip()
        raise ValueError(f"its {what} does not fit: {last[:300]}") from None


def _is_state_dict(value) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())


def stored_config(state: dict, path: str | os.PathLike) -> Config:
    """The ``Config`` a loaded checkpoint was made with; ``ValueError`` naming ``path``
    when it is of another format or its stored config is not one."""
    if state.get("format", 1) != FORMAT:
        raise ValueError(f"checkpoint {path} is of format {state.get('format', 1)!r} (written by "
                         f"vidgen_nb {state.get('version', 'of an earlier version')}); this version "
                         f"reads format {FORMAT}: move it away and train again, or read it with the "
                         "version that wrote it")
    try:
        return Config.from_dict(state["config"])
    except Exception as exc:  # missing sections, unknown fields, bad values
        raise ValueError(f"{path} is not a vidgen_nb checkpoint ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:200]})") from None


def check_same_model(config: Config, state: dict) -> None:
    """Refuse a checkpoint whose model sizes differ from ``config``'s, naming each one."""
    ours, theirs = config.to_dict()["model"], state["config"]["model"]
    differ = [f"{k}: checkpoint {theirs.get(k)!r}, this run {v!r}" for k, v in ours.items()
              if _plain(theirs.get(k)) != _plain(v)]
    if differ:
        raise ValueError("checkpoint was made with a different model config; sizes that "
                         "differ: " + "; ".join(differ))


def _plain(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The records of a run's ``metrics.jsonl``; a missing file gives none.

    A record is a JSON object with an integer ``step`` >= 0 and, in every other entry, a
    number, a list of numbers or null. A last line cut short (a crash or a full
    disk mid-write) is dropped quietly; any other line that is no record (a hand edit, a
    damaged file) is left out with one line on stderr naming the file and its line
    numbers, so that no figure of the run is ever read from it. A path that cannot be
    read raises ``ValueError`` naming it.
    """
    path = Path(path)
    try:
        if not path.exists():
            return []
        lines = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        raise ValueError(f"metrics {path}: {path_problem(exc)}") from None
    records, bad = [], []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except ValueError:
            record = None
            if number == len(lines):
                continue  # cut short while written
        if _record_problem(record):
            bad.append(number)
        else:
            records.append(record)
    if bad:
        print(f"metrics {path}: left out line{'s' if len(bad) > 1 else ''} "
              f"{', '.join(map(str, bad[:10]))}{' ...' if len(bad) > 10 else ''}: not metric records "
              "(an integer step and numbers)", file=sys.stderr)
    return records


def _record_problem(record) -> str | None:
    """What makes ``record`` no metric record, or None."""
    if not isinstance(record, dict):
        return f"{type(record).__name__}, not a record"
    step = record.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        return f"step is {step!r}, expected an integer >= 0"
    for key, value in record.items():
        values = value if isinstance(value, list) else [value]
        if not all(v is None or (isinstance(v, numbers.Real) and not isinstance(v, bool))
                   for v in values):
            return f"{key} is {value!r}, expected a number"
    return None
