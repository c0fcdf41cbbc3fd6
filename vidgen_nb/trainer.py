"""One trainer for notebook cells and the ``vidgen-train`` command: the loop.

The math of one iteration (critic steps, the generator step, the weight average)
lives in ``step.py``; what a model is worth in ``evaluation.py`` (functions of the
averaged generator, the data and the config); what a checkpoint holds of a run, and how
a run goes on from one, in ``run_state.py``; the networks and optimisers are built in
``parts.py``, and ``stopping.py`` says how a run stops early. The ``Trainer`` owns the
rest: the real-image stream, the loop with its progress bar and metric log, signals and
several processes (DDP).

Checkpoints (``checkpoint.py``) are plain dicts written atomically; resuming continues
exactly: real batches are a function of (seed, batch number), and the random state
is saved.
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import os
import signal
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torchvision.utils import save_image
from tqdm.auto import tqdm

from . import evaluation, run_state, step
from .checkpoint import CHECKPOINT, save_atomic
from .config import Config
from .data import ResumableBatchSampler, builtin_background, endless_batches, open_training_data
from .device import any_process, autocast, check_fits, init_distributed, replicas_agree
from .files import atomic_write
from .generator import Generator
from .judge import load_judge
from .metrics import swd
from .models import VAE
from .parts import build_parts
from .precision import choose_precision
from .step import step_bytes
from .stopping import NonFiniteLossError, TrainingInterrupted, stop_requests


class Trainer:
    """Builds the generator, critic, optimisers and data for a ``Config`` and trains them.

    Args:
        config: the configuration (``Config.preset(...)``).
        data: an ImageFolder tree; ``None`` uses the built-in dataset.
        out: run folder for checkpoints, metrics and pictures; ``None`` writes nothing.
        device: 'cpu', 'cuda', 'mps' or None for the best available.
        skip_bad: leave out unusable image files instead of failing.
        progress: show a tqdm progress bar.
        precision: ``fp32``, ``bf16`` (autocast: matrix products and convolutions in
            bfloat16, on CUDA or on a CPU with bf16 instructions), or ``auto`` (bf16 on
            CUDA, fp32 elsewhere). Not stored in checkpoints: it belongs to the machine.
        try_bf16: with ``auto`` on a CPU with bf16 instructions, bf16 if a start check on
            these networks passes (``precision.choose_precision``, as the commands do).
            ``precision`` and ``precision_why`` say which was chosen and why.
        callback: called as ``callback(trainer, metrics)`` every ``log_every`` steps.
            (``data``, what it trains on, is recorded in its checkpoints: ``data_record``.)
        overwrite: replace the run ``out`` already holds; without it such a folder is
            refused (continue a run with ``Trainer.from_checkpoint``). While a trainer
            writes to ``out``, no other process may (a lock file, ``.lock``).

    Attributes:
        generator: the ``Generator`` (VAE, predictor, weight deltas) being trained.
        generator_ema: its weight average (``ema_decay``), which samples, SWD, videos
            and widgets use; the same object as ``generator`` when ``ema_decay`` is 0.
        critic: the WGAN-GP critic.
        step: generator steps done; history: the metric records logged so far.
        data_record: what it trains on (``data/record.py``), stored in checkpoints.
        swd_start: ``{"step", "swd"}``, the SWD the run's summary starts from (measured by
            ``measure_swd`` at step 0, or when a resumed run went on with other data).
        lineage: ``[{"checkpoint", "step"}, ...]``, the runs it was forked from.
    """

    generator_class = Generator  # what ``generator`` is built as (the bench swaps in its reference)

    def __init__(self, config: Config, *, data=None, out=None, device=None, skip_bad=False,
                 progress: bool = True, callback: Callable | None = None, verbose: bool = False,
                 precision: str = "auto", try_bf16: bool = False, overwrite: bool = False,
                 _resuming: bool = False):
        if not isinstance(config, Config):
            raise TypeError(f"config={config!r}: expected a Config, e.g. Config.preset('tiny')")
        if data is not None and not str(data).strip():
            raise ValueError("data='': expected a dataset folder, or None for the built-in shapes")
        self.config = config
        self.rank, self.world_size, self.device = init_distributed(device)
        m = config.model  # a size no machine holds is refused before anything is allocated
        check_fits(step_bytes(config), self.device, f"batch_size={config.batch_size}, num_frames="
                   f"{m.num_frames}, image_size={m.image_size} (one training step)")
        self.precision, self.precision_why = choose_precision(precision, config, self.device,
                                                              try_bf16=try_bf16)
        self.is_main = self.rank == 0  # only rank 0 writes files and shows progress
        self.out = Path(out) if out is not None and self.is_main else None
        if self.out and not _resuming:  # from_checkpoint opens the folder once it has checked the run
            run_state.claim_folder(self.out, overwrite=overwrite)
        self.progress, self.callback = progress and self.is_main, callback
        self.step, self.batches_seen, self.history = 0, 0, []
        # Seconds spent in train(), kept in checkpoints: a resumed run's time includes the
        # steps before its interruption (None: a checkpoint from before it was kept).
        self.train_seconds: float | None = 0.0
        self.swd_start, self.lineage = None, []
        self.read_only = None  # why train() is refused (a model loaded without optimisers)
        self._build_networks()
        self._open_data(data, skip_bad=skip_bad, verbose=verbose)
        if self.out and not _resuming:
            run_state.open_folder(self, resuming=False)

    def _build_networks(self) -> None:
        """The networks, their average and optimisers (``parts.build_parts``)."""
        self.parts = p = build_parts(self.config, self.device, precision=self.precision, rank=self.rank,
                                     world_size=self.world_size, generator_class=self.generator_class,
                                     autocast=self.autocast, check_finite=self._check_finite)
        self.generator, self.critic, self.generator_ema = p.generator, p.critic, p.generator_ema
        self.opt_g, self.opt_d = p.opt_g, p.opt_d
        self.channels_last = self.device.type in ("cuda", "cpu")  # real batches in the same layout

    def _open_data(self, data, *, skip_bad: bool, verbose: bool) -> None:
        """The dataset, the shape judge for it, and the fixed noise vectors of samples and SWD."""
        data, self.dataset, self.data_record = open_training_data(
            self.config, data, world_size=self.world_size, skip_bad=skip_bad, verbose=verbose)
        # The shape judge knows the built-in classes only: runs on other data go unjudged.
        self._background = builtin_background(data)
        self.judge = None if self._background is None else load_judge(self.config.model.image_size,
                                                                      self._background)
        self._batches = None  # the real-image stream, opened at the current position
        self.fixed_z = evaluation.fixed_noise(self.config).to(self.device)

    @property
    def vae(self) -> VAE:
        """The generator's VAE."""
        return self.generator.vae

    @property
    def predictor(self):
        """The generator's weight predictor (None for the plain VAE-WGAN-GP)."""
        return self.generator.predictor

    def autocast(self):
        """bf16 autocast when ``precision`` is bf16; nothing for fp32."""
        return autocast(self.device, self.precision)

    @contextlib.contextmanager
    def _evaluating(self, autocast: bool = True):
        """Eval mode (and the trainer's autocast) for a measurement; the mode is restored after."""
        was_training = self.generator.training
        self._train_mode(False)
        try:
            with self.autocast() if autocast else contextlib.nullcontext():
                yield
        finally:
            self._train_mode(was_training)

    def _train_mode(self, mode: bool) -> None:
        self.generator.train(mode)
        self.critic.train(mode)

    # ------------------------------------------------------------------ steps

    def _real_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next real batch (B, C, H, W) on the device, and its classes (B,)."""
        if self._batches is None:
            sampler = ResumableBatchSampler(len(self.dataset), self.config.batch_size,
                                            seed=self.config.seed, start=self.batches_seen,
                                            rank=self.rank, world_size=self.world_size)
            self._batches = endless_batches(self.dataset, sampler,
                                            num_workers=self.config.train.num_workers)
        self.batches_seen += 1
        x, y = next(self._batches)
        x = x.to(self.device, non_blocking=True)
        return (x.contiguous(memory_format=torch.channels_last) if self.channels_last else x), y.to(self.device)

    def train_step(self) -> dict[str, float]:
        """``n_critic`` critic steps, then one generator step; returns the last losses."""
        stats = step.train_step(self.parts, self._real_batch, self.config.train, self.step)
        self.step += 1
        return stats

    def _check_finite(self, name: str, loss: torch.Tensor) -> None:
        """Stop before a NaN or infinite loss can reach the weights."""
        value = loss.item()
        if any_process(not math.isfinite(value), self.device):
            kept = self.out / CHECKPOINT if self.out and (self.out / CHECKPOINT).exists() else None
            raise NonFiniteLossError(
                f"{name} loss is {value} at step {self.step + 1}; training stopped. "
                + (f"The last good checkpoint is kept: {kept}" if kept else "No checkpoint was written."))

    # ------------------------------------------------------------------ the loop

    def train(self, steps: int) -> list[dict]:
        """Train ``steps`` more steps; returns the metric records logged meanwhile."""
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
            raise ValueError(f"steps={steps!r}: expected an integer >= 0")
        if self.read_only:
            raise ValueError(self.read_only)
        end, logged = self.step + int(steps), []
        if end > self.config.train.steps:  # the run's total is what it has been trained to
            self.config = self.config.replace(steps=end)
            if self.out:
                run_state.write_config(self)
        t = self.config.train
        self._train_mode(True)
        bar = _progress_bar(end, self.step, enabled=self.progress)
        tick, images = time.perf_counter(), 0
        started, before = tick, self.train_seconds or 0.0

        def clock() -> None:
            self.train_seconds = before + time.perf_counter() - started

        try:
            with stop_requests(lambda: self.step) as stop:
                while self.step < end:
                    stats = self.train_step()
                    images += self.config.batch_size * (t.n_critic + 1)
                    bar.update(1)
                    if self.step % t.log_every == 0 or self.step == end:
                        now = time.perf_counter()
                        logged.append(self._log_step(stats, images / (now - tick), bar))
                        tick, images = now, 0
                    if self.out and self.step % t.sample_every == 0:
                        self.save_samples(self.out / "samples" / f"step_{self.step:06d}.png")
                    clock()
                    if self.out and (self.step % t.checkpoint_every == 0 or self.step == end):
                        self.save_checkpoint(self.out / CHECKPOINT)
                    if any_process(bool(stop), self.device):
                        path = self.save_checkpoint(self.out / CHECKPOINT) if self.out else None
                        raise TrainingInterrupted(stop[0] if stop else signal.SIGTERM, self.step, path)
        finally:
            clock()
            bar.close()
        return logged

    def _log_step(self, stats: dict, images_per_s: float, bar) -> dict:
        """A step's metric record: logged, shown on the bar, given to the callback."""
        record = {"step": self.step, **stats, "images_per_s": images_per_s}
        self.log(record)
        bar.set_postfix({k: f"{stats[k]:.3g}" for k in ("critic", "generator", "recon")})
        if self.callback:
            self.callback(self, record)
        return record

    def replicas_agree(self) -> bool:
        """Whether every process holds the same weights (always true in one process)."""
        return replicas_agree([self.generator, self.critic])

    def log(self, record: dict) -> None:
        """Keep a metric record in ``history`` and append it to the run's ``metrics.jsonl``."""
        self.history.append(record)
        if self.out:
            with open(self.out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

    # ------------------------------------------------------------------ quality and pictures

    @property
    def class_names(self) -> list[str] | None:
        """The classes the model is conditioned on (the data's sub-folders, in order), for
        the widgets' class menus; None when it is unconditional."""
        return list(self.dataset.classes) if self.config.model.num_classes else None

    def real_images(self, n: int, *, labels: bool = False):
        """n real images (n, C, H, W), a fixed seeded choice, on the CPU; with ``labels``,
        (images, their classes in the data (n,)) (``evaluation.real_fixed``)."""
        x, y = evaluation.real_fixed(self.dataset, n)
        return (x, y) if labels else x

    def samples(self, n: int = 64, *, scale: float = 1.0, y: torch.Tensor | int | None = None) -> torch.Tensor:
        """Images the averaged generator makes from the fixed noise vectors (n, C, H, W),
        on the CPU; a conditional model draws the classes ``y`` (n,) (default: each in turn)."""
        with self._evaluating():
            return evaluation.samples(self.generator_ema, self.fixed_z, n, seed=self.config.seed,
                                      scale=scale, y=y)

    def reconstructions(self, n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
        """n fixed real images and the averaged generator's reconstructions of them
        (``evaluation.reconstructions``)."""
        with self._evaluating():
            return evaluation.reconstructions(self.generator_ema, self.dataset, n, seed=self.config.seed)

    def measure_swd(self) -> float:
        """SWD between fixed generated images and fixed real ones (lower is better),
        logged as a metric record (the first one is the run's ``swd_start``)."""
        n = min(self.config.train.swd_images, len(self.dataset))
        value = swd(self.samples(n), self.real_images(n), seed=0)
        self.log({"step": self.step, "swd": value})
        if self.swd_start is None:
            self.swd_start = {"step": self.step, "swd": value}
        return value

    def evaluate(self, **extra) -> dict:
        """Every quality figure of ``evaluation.evaluate`` for the averaged generator,
        logged (with ``extra``, more entries of the record, e.g. ``train_seconds``)."""
        with self._evaluating(autocast=False):  # evaluate applies it where the generator runs
            figures = evaluation.evaluate(self.generator_ema, self.dataset, self.config, self.fixed_z,
                                          judge=self.judge, background=self._background,
                                          critic=self.critic, autocast=self.autocast)
        record = {"step": self.step, **figures, **extra}
        self.log(record)
        return record

    def save_samples(self, path: str | os.PathLike, n: int = 64) -> Path:
        """A grid of images generated from the fixed noise vectors, as a PNG."""
        with atomic_write(path) as tmp:
            save_image(self.samples(n), tmp, format="png", nrow=8, padding=2, pad_value=1.0)
        return Path(path)

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict:
        """Everything needed to continue exactly (``run_state.trainer_state``)."""
        return run_state.trainer_state(self)

    def save_checkpoint(self, path: str | os.PathLike) -> Path:
        return save_atomic(self.state_dict(), path)

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state``; a checkpoint made with other sizes is refused by name."""
        run_state.load_training_state(self, state)

    def load_weights(self, state: dict) -> None:
        """The networks' weights, step and records of ``state``, without optimiser or
        random states (``run_state.load_weights``)."""
        run_state.load_weights(self, state)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, *, data=None, other_data: bool = False,
                        **kwargs) -> "Trainer":
        """Rebuild a trainer from a checkpoint (or a run folder) and continue where it stopped.

        ``data``: None continues on the data the run recorded (its folder, or its
        built-in set); a folder holding other images is refused, naming both, unless
        ``other_data`` is True: the run then goes on with them and its summary starts
        afresh from the SWD measured on them. ``kwargs`` go to ``Trainer`` (out,
        device, ...); the config is the saved one. An ``out`` other than the run's own
        folder makes a fork: the new run starts from this one's records and lists it in
        its ``lineage``.
        """
        path, state, config, data, fork = run_state.open_run(path, data, kwargs.get("out"))
        trainer = cls(config, data=data, overwrite=True, _resuming=True, **kwargs)
        run_state.continue_run(trainer, path, state, fork=fork, other_data=other_data)
        return trainer


def _progress_bar(total: int, initial: int, *, enabled: bool) -> tqdm:
    """A live bar in notebooks and terminals; into a log file, a line every 30 s."""
    interactive = sys.stderr.isatty() or "ipykernel" in sys.modules
    return tqdm(total=total, initial=initial, disable=not enabled, desc="training",
                dynamic_ncols=True, mininterval=0.1 if interactive else 30)
