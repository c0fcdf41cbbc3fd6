"""Helpers the notebooks share, so that no notebook pastes the same block."""

from __future__ import annotations

import os
from pathlib import Path

from .checkpoint import find_run
from .config import Config, fast_mode
from .training import Trainer


def load_or_train(checkpoint: str | os.PathLike | None = "auto", *, steps: int = 200,
                  progress: bool = False) -> Trainer:
    """A trained model for the notebooks.

    ``checkpoint``: a checkpoint file; ``"auto"`` (the default) is the one ``make train``
    writes, ``runs/main/checkpoint.pt``, looked for in the current folder and the
    folders above it (so a notebook in ``notebooks/`` finds the repository's); None
    trains. Without a checkpoint, the ``tiny`` preset trained for ``steps`` steps
    (seconds on a CPU). In fast mode (``$VIDGEN_NB_FAST``) always the tiny one, so
    results do not depend on what is on disk.
    """
    path = None
    if checkpoint is not None and not fast_mode():
        path = find_run("main") if checkpoint == "auto" else Path(checkpoint)
    if path is not None and path.is_file():
        print(f"loaded {path}")
        return Trainer.from_checkpoint(path, progress=progress)
    trainer = Trainer(Config.preset("tiny"), progress=progress)
    trainer.train(steps)
    print(f"trained the tiny preset for {steps} steps")
    return trainer
