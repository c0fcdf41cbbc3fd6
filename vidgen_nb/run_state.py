"""A trainer's run state: what a checkpoint holds of it, and how a run goes on from one.

``checkpoint.py`` knows files (their layout, safe reads, atomic writes); this module
knows runs: ``trainer_state`` is everything needed to continue exactly, ``load_weights``
and ``load_training_state`` put it back, and ``open_run`` / ``continue_run`` resume a run
in its own folder or fork it into another (its ``lineage`` then names where it came from).
The functions take the trainer (``trainer.py``) as their first argument.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from . import __version__, step
from .checkpoint import (CHECKPOINT, FORMAT, check_same_model, check_state, checkpoint_file, load_checkpoint,
                         load_part, read_metrics)
from .config import Config
from .data import describe_data, same_data
from .files import atomic_write, lock_folder, remove_stale_writes


def trainer_state(trainer) -> dict:
    """Everything needed to continue exactly (the layout is in ``checkpoint.py``)."""
    rng = {"torch": torch.get_rng_state()}
    if trainer.device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(trainer.device)
    averaged = trainer.generator_ema is not trainer.generator
    return {
        "format": FORMAT, "version": __version__, "config": trainer.config.to_dict(),
        "step": trainer.step, "batches_seen": trainer.batches_seen,
        "vae": trainer.vae.state_dict(), "critic": trainer.critic.state_dict(),
        "predictor": trainer.predictor.state_dict() if trainer.predictor else None,
        "generator_ema": trainer.generator_ema.state_dict() if averaged else None,
        "opt_g": trainer.opt_g.state_dict(), "opt_d": trainer.opt_d.state_dict(), "rng": rng,
        "data": trainer.data_record, "swd_start": trainer.swd_start, "lineage": trainer.lineage,
        "train_seconds": trainer.train_seconds,
    }


def load_weights(trainer, state: dict) -> None:
    """The networks' weights, step and records of ``state``, without what training on
    needs (optimiser states, random state): enough to look at a model, as the shipped
    one is looked at (``shipped.py``). ``ValueError`` naming a part that does not fit."""
    check_same_model(trainer.config, state)
    averaged = trainer.generator_ema is not trainer.generator
    if averaged and state.get("generator_ema") is None:
        raise ValueError("the checkpoint holds no averaged generator (it was trained "
                         "with ema_decay = 0), but this config averages one")
    parts = [("vae", trainer.vae), ("critic", trainer.critic), ("predictor", trainer.predictor),
             ("generator_ema", trainer.generator_ema if averaged else None)]
    for name, part in parts:
        if part is not None:
            load_part(part, state[name], name)
    trainer.step, trainer.train_seconds = state["step"], state.get("train_seconds")
    if trainer.config.train.predictor_from:  # the predictor waiting, or the VAE frozen, as the last step left it
        step.set_predicting(trainer.parts, trainer.step > trainer.config.train.predictor_from)
    trainer.swd_start, trainer.lineage = state["swd_start"], list(state["lineage"])


def load_training_state(trainer, state: dict) -> None:
    """``load_weights``, then the optimisers, the data position and the random state:
    the run continues exactly. ``ValueError`` naming the part that does not fit."""
    load_weights(trainer, state)
    load_part(trainer.opt_g, state["opt_g"], "opt_g")
    load_part(trainer.opt_d, state["opt_d"], "opt_d")
    trainer.batches_seen, trainer._batches = state["batches_seen"], None
    try:
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and trainer.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], trainer.device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"its random state (rng) cannot be restored: {str(exc)[:200]}") from None
    if trainer.rank:  # the saved stream is rank 0's; the others draw their own
        torch.manual_seed(trainer.config.seed + 7919 * trainer.rank + trainer.step)


def open_run(path: str | os.PathLike, data, out) -> tuple[Path, dict, Config, object, bool]:
    """Read the checkpoint of a run to go on with: (its file, its state, its config, the
    data to train on, whether ``out`` makes a fork of it).

    ``data`` None continues on the data the run recorded (its folder, which must still be
    there); an ``out`` other than the run's own folder is a fork, refused if it already
    holds another run.
    """
    path = checkpoint_file(path)
    state = load_checkpoint(path)
    config = check_state(state, path, training=True)
    recorded = state["data"]
    if data is None and "folder" in recorded:
        data = recorded["folder"]
        if not Path(data).is_dir():
            raise ValueError(f"checkpoint {path} was trained on the folder {data}, which is not "
                             "there any more; give its data again (data=..., --data), or other "
                             "data explicitly (other_data=True, --other-data)")
    held = Path(out) / CHECKPOINT if out is not None else None
    fork = held is not None and not (held.exists() and os.path.samefile(held, path))
    if fork and held.exists():
        raise ValueError(f"out={out}: already holds another run ({held}); continuing {path} "
                         "there would replace it; choose another folder")
    return path, state, config, data, fork


def continue_run(trainer, path: Path, state: dict, *, fork: bool, other_data: bool) -> None:
    """Put ``state`` (read from ``path`` by ``open_run``) into a freshly built trainer and
    open its run folder: the run's metric records up to the checkpoint (a fork starts from
    those of the run it came from, and names it in its ``lineage``)."""
    try:
        load_training_state(trainer, state)
    except ValueError as exc:
        raise ValueError(f"checkpoint {path}: {exc}") from None
    if not same_data(state["data"], trainer.data_record):
        if not other_data:
            raise ValueError(f"checkpoint {path} was trained on {describe_data(state['data'])}; the data "
                             f"given is {describe_data(trainer.data_record)}. A resumed run keeps "
                             "its data: leave it out, or go on with this data explicitly "
                             "(other_data=True, --other-data)")
        trainer.swd_start = None  # measured on other images: the summary starts afresh
    if fork:
        trainer.lineage.append({"checkpoint": str(path.resolve()), "step": trainer.step})
    if trainer.out:
        lock_folder(trainer.out)
        open_folder(trainer, resuming=True)
        # Later records belong to lost steps.
        source = path.parent if fork else trainer.out
        trainer.history = [r for r in read_metrics(source / "metrics.jsonl") if r["step"] <= trainer.step]
        with atomic_write(trainer.out / "metrics.jsonl") as tmp:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in trainer.history))


def claim_folder(out: Path, *, overwrite: bool) -> None:
    """Lock ``out`` for a new run; a folder holding a run is refused unless ``overwrite``."""
    if (out / CHECKPOINT).exists() and not overwrite:
        raise ValueError(
            f"out={out}: already holds a run ({out / CHECKPOINT}); continue it "
            "with Trainer.from_checkpoint (vidgen-train --resume auto), choose another "
            "folder, or pass overwrite=True to replace it")
    lock_folder(out)


def open_folder(trainer, *, resuming: bool) -> None:
    """The run folder with this run's ``config.json``; a new run drops old metrics."""
    trainer.out.mkdir(parents=True, exist_ok=True)
    if not resuming:  # a new run: metrics of an earlier start that never checkpointed go
        (trainer.out / "metrics.jsonl").unlink(missing_ok=True)
    write_config(trainer)
    remove_stale_writes(trainer.out)


def write_config(trainer) -> None:
    """The run's ``config.json`` (its total steps change as it is trained on)."""
    with atomic_write(trainer.out / "config.json") as tmp:
        tmp.write_text(json.dumps(trainer.config.to_dict(), indent=1))
