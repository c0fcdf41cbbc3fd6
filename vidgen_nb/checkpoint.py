"""Checkpoints and run folders: where runs live, writing safely, reading safely.

A checkpoint is a plain dict (``torch.save``), laid out as

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

import os
from pathlib import Path

import torch

from .config import Config
from .files import atomic_write

CHECKPOINT = "checkpoint.pt"  # the file name inside a run folder
RUNS = Path("runs")  # run folders, relative to the current folder
REQUIRED = ("config", "step", "vae", "critic")  # keys without which a file is no checkpoint


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
    """torch.save ``obj`` to ``path`` through ``atomic_write``."""
    with atomic_write(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint without running any code from it.

    ``torch.load(weights_only=True)`` unpickles tensors, numbers, strings and
    containers only; a file that asks for anything else (e.g. a pickle crafted to run
    code) is refused with ``ValueError`` before any of it runs.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
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


def stored_config(state: dict, path: str | os.PathLike) -> Config:
    """The ``Config`` a loaded checkpoint was made with; ``ValueError`` naming ``path``
    when the stored config is not one."""
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
