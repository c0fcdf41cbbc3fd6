"""Helpers the notebooks share, so that no notebook pastes the same block."""

from __future__ import annotations

import os
from pathlib import Path

from . import shipped
from .checkpoint import CHECKPOINT, RUNS, checkpoint_file, find_run, read_metrics
from .config import FAST_ENV, Config, fast_mode
from .trainer import Trainer


FALLBACK_STEPS = 60  # the tiny preset's steps when no trained model is found: seconds


def load_or_train(checkpoint: str | os.PathLike | None = "auto", *, steps: int = FALLBACK_STEPS,
                  progress: bool | None = None) -> Trainer:
    """A trained model for the notebooks.

    ``checkpoint``: a checkpoint file; ``"auto"`` (the default) is the one ``make train``
    writes, ``runs/main/checkpoint.pt``, looked for in the current folder and the
    folders above it (so a notebook in ``notebooks/`` finds the repository's), else
    the model the kit ships (``shipped.py``; ``"shipped"`` asks for it); None trains:
    the ``tiny`` preset for ``steps`` steps (seconds on a CPU), with a progress bar. In
    fast mode (``$VIDGEN_NB_FAST``) always the tiny one, so results do not depend on
    what is on disk. Prints what it loaded or trained. A checkpoint named but not
    there raises ``FileNotFoundError``; a loaded run uses the data it recorded.
    """
    path = None
    if checkpoint is not None and not fast_mode():
        if checkpoint == "auto":
            path = find_run("main")
            if path is None:
                print(f"no {RUNS / 'main' / CHECKPOINT} (`make train` writes one in about 5 minutes on "
                      "2 CPU cores): the model the kit ships")
                checkpoint = "shipped"
        if checkpoint == "shipped":
            trainer = shipped.load(progress=bool(progress))
            print(f"loaded the shipped model ({shipped.SHIPPED.name}): {describe(trainer)}")
            return trainer
        if path is None:
            path = checkpoint_file(checkpoint)  # a wrong path raises
        trainer = Trainer.from_checkpoint(path, progress=bool(progress))
        # The run's records (read only: the notebook never writes into the run folder).
        trainer.history = [r for r in read_metrics(path.parent / "metrics.jsonl") if r["step"] <= trainer.step]
        print(f"loaded {os.path.relpath(path)}: {describe(trainer)}")
        return trainer
    trainer = Trainer(Config.preset("tiny"), progress=not fast_mode() if progress is None else progress)
    trainer.train(steps)
    print(f"trained the tiny preset for {steps} steps: {describe(trainer)}")
    return trainer


def describe(trainer: Trainer) -> str:
    """One line: preset size, steps, seed, and the SWD measured at the end of the run."""
    c = trainer.config
    figures = last_evaluation(trainer)
    swd = f", SWD {figures['swd']:.3f} (real-vs-real floor {figures['swd_floor']:.3f})" if figures else ""
    return (f"{c.model.image_size} px, step {trainer.step}, seed {c.seed}, "
            f"{'with' if trainer.predictor is not None else 'without'} weight predictor{swd}")


def last_evaluation(trainer: Trainer) -> dict | None:
    """The run's last ``Trainer.evaluate`` record (SWD, VAE and delta figures), if any."""
    done = [r for r in trainer.history if "swd_floor" in r]
    return done[-1] if done else None


def quality_figures(trainer: Trainer) -> dict:
    """``last_evaluation``, or ``Trainer.evaluate()`` now when the run has none."""
    return last_evaluation(trainer) or trainer.evaluate()


def execute_notebooks(paths, *, timeout: int = 1800) -> None:
    """Run each notebook top to bottom against ``runs/main`` (fast mode off) and store
    its outputs in place, without widget state (a reader of the file cannot use it).

    ``make notebooks`` calls this after ``make train``: the committed notebooks then show
    the model ``make train`` makes, while CI reruns them in fast mode under nbval.
    """
    import nbformat
    from nbclient import NotebookClient

    if find_run("main") is None:
        raise FileNotFoundError(f"{RUNS / 'main' / CHECKPOINT} not found: run `make train` first, "
                                "so that the stored outputs show the trained model")
    os.environ.pop(FAST_ENV, None)  # the kernels inherit the environment: full mode
    for path in map(Path, paths):
        print(f"running {path}", flush=True)
        nb = nbformat.read(path, as_version=4)
        NotebookClient(nb, timeout=timeout, kernel_name="python3", store_widget_state=False,
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        nb.metadata.pop("widgets", None)
        nbformat.write(nb, path)


if __name__ == "__main__":
    import sys

    execute_notebooks(sys.argv[1:] or sorted(Path("notebooks").glob("*.ipynb")))
