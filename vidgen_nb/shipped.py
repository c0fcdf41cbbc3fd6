"""The model that ships with the kit, so that notebooks and widgets show a trained
model before anything is trained here.

It is ``make train``'s preset trained sixteen times longer, with a longer weight average
(``docs/results/shipped``: its spec, figures and samples). ``make train`` writes
``runs/main`` in minutes, and the notebooks prefer that when it exists.

The file is a checkpoint (``checkpoint.py``) without what training on needs (optimiser
and random states), with the run's records (``history``) and the command that made
it, so it stays small. A ``Trainer`` loaded from it draws, reconstructs, judges and
measures like any other, but does not train: continue the run itself instead.

    python -m vidgen_nb.shipped runs/shipped/long/seed_0   # writes SHIPPED from that run
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .checkpoint import check_state, checkpoint_file, load_checkpoint, read_metrics, save_atomic
from .commands import Parser, run_command
from .trainer import Trainer

SHIPPED = Path(__file__).parent / "data" / "model-cpu-long.pt"
COMMAND = ("vidgen-experiment --spec docs/results/shipped/spec.json --out runs/shipped; "
           "python -m vidgen_nb.shipped runs/shipped/long/seed_0")
LEFT_OUT = ("opt_g", "opt_d", "rng", "batches_seen")  # what only training on needs
HISTORY_EVERY = 100  # steps between the loss records kept (every evaluation is kept)


def export(run: str | os.PathLike, dest: str | os.PathLike | None = None) -> Path:
    """Write the model to ship from a finished run (its folder or checkpoint): the
    checkpoint less ``LEFT_OUT``, with its records thinned to every ``HISTORY_EVERY``
    steps and every evaluation."""
    path = checkpoint_file(run)
    state = load_checkpoint(path)
    check_state(state, path, training=True)
    records = read_metrics(path.parent / "metrics.jsonl")
    history = [r for r in records if r["step"] <= state["step"]
               and ("swd" in r or r["step"] % HISTORY_EVERY == 0)]
    shipped = {k: v for k, v in state.items() if k not in LEFT_OUT}
    shipped.update(history=history, command=COMMAND, lineage=[])
    return save_atomic(shipped, SHIPPED if dest is None else dest)


def load(path: str | os.PathLike | None = None, *, progress: bool = False):
    """A ``Trainer`` holding the shipped model (or another file ``export`` wrote), on
    the built-in data it was trained on; ``train()`` on it is refused."""
    path = Path(SHIPPED if path is None else path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the shipped model is not there (a checkout without "
                                "the kit's data files?); `make train` writes runs/main instead")
    state = load_checkpoint(path)
    config = check_state(state, path, training=False)
    if not isinstance(state.get("history"), list):
        raise ValueError(f"{path}: history is missing: not a file `python -m vidgen_nb.shipped` wrote")
    if "folder" in state["data"]:
        raise ValueError(f"{path}: trained on a folder of its own; a shipped model trains on the built-in data")
    trainer = Trainer(config, progress=progress)
    try:
        trainer.load_weights(state)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    trainer.history = state["history"]
    trainer.read_only = (f"this model was loaded from {path.name}, which keeps no optimiser states; "
                         "train a run of your own (make train, vidgen-train) or continue the run it "
                         f"came from ({COMMAND.split('; ')[0]})")
    return trainer


def main(argv: list[str] | None = None) -> int:
    """``python -m vidgen_nb.shipped RUN``: ``export``; a run it cannot read or a file it
    cannot write ends in one line and exit status 2."""
    parser = Parser(prog="python -m vidgen_nb.shipped", description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="the finished run's folder or checkpoint")
    parser.add_argument("--out", help=f"the file to write (default: {SHIPPED})")

    def body() -> int:
        args = parser.parse_args(argv)
        written = export(args.run, args.out)
        print(f"wrote {written} ({written.stat().st_size / 1e6:.1f} MB)")
        return 0

    return run_command(parser.prog, body, errors=(OSError, ValueError))


if __name__ == "__main__":
    sys.exit(main())
