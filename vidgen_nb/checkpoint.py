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

and read with ``weights_only=True``, so that loading one never runs code from it.

Runs live in ``runs/<name>`` under the current folder (``vidgen-train`` writes
``runs/<preset>``, ``make train`` writes ``runs/main``); ``find_run`` also looks in
the folders above, so a notebook in ``notebooks/`` finds the repository's ``runs/main``.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import zipfile
from pathlib import Path

import torch

from .config import Config
from .files import atomic_write

CHECKPOINT = "checkpoint.pt"  # the file name inside a run folder
# The checkpoint layout's version. 2: every config field stored (format 1, before it was
# counted, left out fields that did not exist yet, and readers guessed what they meant);
# 3: the built-in data's section (which backgrounds, how many images) in the config.
FORMAT = 3
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
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist"
                                + (" (it is a folder)" if path.is_dir() else ""))
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
    """The records of a run's ``metrics.jsonl``; a line cut short (a crash or a full disk
    mid-write) is dropped, a missing file gives none."""
    records = []
    if not Path(path).is_file():
        return records
    for line in Path(path).read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            records.append(record)
    return records
