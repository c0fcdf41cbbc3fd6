"""One trainer for notebook cells and the ``vidgen-train`` command: the plumbing.

The math of one iteration (critic steps, the generator step, the weight average)
lives in ``step.py``; the ``Trainer`` owns what surrounds it: building the networks
and optimisers for a ``Config``, the real-image stream, the loop with its progress
bar and metric log, signals, several processes (DDP), checkpoints and pictures.

Checkpoints (``checkpoint.py``) are plain dicts written atomically; resuming continues
exactly: real batches are a function of (seed, batch number), and the random state
is saved.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import math
import numbers
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torchvision.utils import save_image
from tqdm.auto import tqdm

from . import __version__, step
from .checkpoint import (CHECKPOINT, FORMAT, check_same_model, check_state, checkpoint_file, load_checkpoint,
                         load_part, read_metrics, save_atomic)
from .config import Config
from .data import (ResumableBatchSampler, builtin_background, builtin_dataset, check_batch_size,
                   data_record, describe_data, endless_batches, load_dataset, same_data)
from .device import any_process, autocast, check_fits, init_distributed, replicas_agree, resolve_precision
from .data.shapes import UNSEEN_PER_CLASS, UNSEEN_SEED
from .files import atomic_write, lock_folder, remove_stale_writes
from .evaluation import delta_figures, generate_fixed, real_floor, reconstruct, vae_figures
from .judge import judge_shapes, load_judge
from .generator import Generator
from .metrics import swd
from .models import VAE, Discriminator
from .step import GeneratorPass, Parts, reconstruct_sampled, step_bytes


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite; training stopped before saving anything from it."""


class StepAbandoned(Exception):
    """A second SIGINT or SIGTERM arrived during a step: it was left unfinished; the last
    checkpoint written (if any) holds the run."""

    def __init__(self, signum: int, step: int):
        self.signum, self.step = signum, step
        super().__init__(f"{signal.Signals(signum).name} twice during step {step + 1}")


class TrainingInterrupted(Exception):
    """SIGINT or SIGTERM arrived: the step in progress finished and a checkpoint was written."""

    def __init__(self, signum: int, step: int, checkpoint: Path | None):
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        super().__init__(f"{signal.Signals(signum).name} at step {step}")


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
            CUDA, fp32 elsewhere: see ``device.resolve_precision``). Not stored in
            checkpoints: it belongs to the machine.
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
                 precision: str = "auto", overwrite: bool = False, _resuming: bool = False):
        if not isinstance(config, Config):
            raise TypeError(f"config={config!r}: expected a Config, e.g. Config.preset('tiny')")
        if data is not None and not str(data).strip():
            raise ValueError("data='': expected a dataset folder, or None for the built-in shapes")
        self.config = config
        self.rank, self.world_size, self.device = init_distributed(device)
        self.precision = resolve_precision(precision, self.device)
        m = config.model
        check_fits(step_bytes(config), self.device, f"batch_size={config.batch_size}, num_frames="
                   f"{m.num_frames}, image_size={m.image_size} (one training step)")
        self.is_main = self.rank == 0  # only rank 0 writes files and shows progress
        self.out = Path(out) if out is not None and self.is_main else None
        if self.out and not _resuming:  # from_checkpoint opens the folder once it has checked the run
            if (self.out / CHECKPOINT).exists() and not overwrite:
                raise ValueError(
                    f"out={self.out}: already holds a run ({self.out / CHECKPOINT}); continue it "
                    "with Trainer.from_checkpoint (vidgen-train --resume auto), choose another "
                    "folder, or pass overwrite=True to replace it")
            lock_folder(self.out)
        self.progress, self.callback = progress and self.is_main, callback
        self.step, self.batches_seen, self.history = 0, 0, []
        # Seconds spent in train(), kept in checkpoints: a resumed run's time includes the
        # steps before its interruption (None: a checkpoint from before it was kept).
        self.train_seconds: float | None = 0.0
        self.swd_start, self.lineage = None, []
        self._stop_signal = None  # set by SIGINT / SIGTERM during train()
        self.read_only = None  # why train() is refused (a model loaded without optimisers)
        self._build_networks()
        self._open_data(data, skip_bad=skip_bad, verbose=verbose)
        if self.out and not _resuming:
            self._open_folder(resuming=False)

    def _build_networks(self) -> None:
        """The generator (VAE + predictor), its average, the critic, their optimisers,
        and the ``Parts`` an iteration of ``step.py`` touches."""
        config, m, t = self.config, self.config.model, self.config.train
        # Drawn in this order from the seed: VAE, critic, predictor (fixes every run's start).
        torch.manual_seed(config.seed)
        vae = VAE(m).to(self.device)
        self.critic = Discriminator(m).to(self.device)
        predictor = Generator.new_predictor(config, vae).to(self.device) if t.use_predictor else None
        self.generator = self.generator_class(config, vae, predictor)
        # NHWC: faster convolutions on tensor cores, and on CPUs (oneDNN) faster max
        # pooling and no layout conversion around every convolution (python -m vidgen_nb.bench).
        self.channels_last = self.device.type in ("cuda", "cpu")
        if self.channels_last:
            vae.to(memory_format=torch.channels_last)
            self.critic.to(memory_format=torch.channels_last)
            # (B, C, T, H, W) stored as (B, T, H, W, C); not in bf16 on a CPU, where
            # oneDNN's channels-last Conv3d backward returned NaN weight gradients.
            if predictor is not None and not (self.device.type == "cpu" and self.precision == "bf16"):
                predictor.to(memory_format=torch.channels_last_3d)
        self.generator_ema = self.generator
        if t.ema_decay > 0:  # a copy that follows the trained weights slowly, never trained itself
            self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False).eval()
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=t.lr, betas=t.betas)
        self.opt_d = torch.optim.Adam(self.critic.parameters(), lr=t.lr, betas=t.betas)
        if self.rank:  # each process draws its own noise; rank 0 keeps the single-process stream
            torch.manual_seed(config.seed + 7919 * self.rank)
        generator_pass: nn.Module = GeneratorPass(self.generator, t.recon_through_generator)
        critic_net: nn.Module = self.critic
        if self.world_size > 1:  # PyTorch's DDP averages the gradients across processes
            ids = [self.device.index] if self.device.type == "cuda" else None
            generator_pass, critic_net = DDP(generator_pass, device_ids=ids), DDP(self.critic, device_ids=ids)
        self._parts = Parts(self.generator, self.critic, self.generator_ema, self.opt_g, self.opt_d,
                            generator_pass, critic_net, self.autocast, self._check_finite)

    def _open_data(self, data, *, skip_bad: bool, verbose: bool) -> None:
        """The dataset, the shape judge for it, and the fixed noise vectors of samples and SWD."""
        m, t = self.config.model, self.config.train
        builtin = self.config.data if data is None else None
        if data is None:
            data = builtin_dataset(background=builtin.builtin, per_class=builtin.builtin_per_class)
        # The shape judge knows the built-in classes only: runs on other data go unjudged.
        background = builtin_background(data)
        self.judge = None if background is None else load_judge(m.image_size, background)
        self._background, self._unseen = background, None  # unseen images, drawn at first use
        self.dataset = load_dataset(data, image_size=m.image_size, in_memory=t.in_memory,
                                    num_workers=t.num_workers, skip_bad=skip_bad, verbose=verbose)
        check_batch_size(self.dataset, self.config.batch_size, self.world_size)
        self.data_record = data_record(self.dataset, builtin)
        classes = getattr(self.dataset, "classes", None) or []
        if m.num_classes and m.num_classes != len(classes):
            raise ValueError(f"num_classes={m.num_classes}: the data has {len(classes)} classes "
                             f"({', '.join(classes)}); a conditional model needs as many")
        self._batches = None  # the real-image stream, opened at the current position
        # Fixed noise vectors for sample grids and SWD, from their own generator so
        # that looking at samples never changes the training's random stream.
        g = torch.Generator().manual_seed(self.config.seed + 1)
        self.fixed_z = torch.randn(max(64, t.swd_images), m.latent_dim, generator=g).to(self.device)

    def _open_folder(self, *, resuming: bool) -> None:
        """The run folder with this run's ``config.json``; a new run drops old metrics."""
        self.out.mkdir(parents=True, exist_ok=True)
        if not resuming:  # a new run: metrics of an earlier start that never checkpointed go
            (self.out / "metrics.jsonl").unlink(missing_ok=True)
        self._write_config()
        remove_stale_writes(self.out)

    def _write_config(self) -> None:
        with atomic_write(self.out / "config.json") as tmp:
            tmp.write_text(json.dumps(self.config.to_dict(), indent=1))

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

    @torch.no_grad()
    def samples(self, n: int = 64, *, scale: float = 1.0, y: torch.Tensor | None = None) -> torch.Tensor:
        """Images ``generator_ema`` makes from the fixed noise vectors (n, C, H, W), on the
        CPU; a conditional model draws the classes ``y`` (n,) (default: each in turn)."""
        with self._evaluating():
            y = self.generator_ema.vae.labels(y, n, self.device)
            x, _ = generate_fixed(self.generator_ema, self.fixed_codes(n, y), seed=self.config.seed,
                                  scale=scale, y=y)
        return x.float().cpu()

    def fixed_codes(self, n: int, y: torch.Tensor | None = None) -> torch.Tensor:
        """The first n fixed noise vectors as codes of the averaged generator's prior
        (themselves for N(0, I)), of the classes ``y`` (default: in turn) when conditional."""
        return self.generator_ema.vae.from_noise(self.fixed_z[:n], y)

    @contextlib.contextmanager
    def _evaluating(self):
        """Eval mode and the trainer's autocast for a measurement; the mode is restored after."""
        was_training = self.generator.training
        self._train_mode(False)
        try:
            with self.autocast():
                yield
        finally:
            self._train_mode(was_training)

    def _train_mode(self, mode: bool) -> None:
        self.generator.train(mode)
        self.critic.train(mode)

    # ------------------------------------------------------------------ steps

    def _real_batch(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The next real batch (B, C, H, W) on the device, and its labels (B,) when the
        model is class-conditional (else None)."""
        if self._batches is None:
            sampler = ResumableBatchSampler(len(self.dataset), self.config.batch_size,
                                            seed=self.config.seed, start=self.batches_seen,
                                            rank=self.rank, world_size=self.world_size)
            self._batches = endless_batches(self.dataset, sampler,
                                            num_workers=self.config.train.num_workers)
        self.batches_seen += 1
        x, y = next(self._batches)
        x = x.to(self.device, non_blocking=True)
        y = y.to(self.device) if self.config.model.num_classes else None
        return (x.contiguous(memory_format=torch.channels_last) if self.channels_last else x), y

    def _real(self) -> torch.Tensor:
        """The next real batch's images (B, C, H, W) on the device."""
        return self._real_batch()[0]

    def critic_step(self, real: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, float]:
        """One WGAN-GP update of the critic on real vs freshly generated images (``step.py``)."""
        return step.critic_step(self._parts, real, self.config.train, y)

    def generator_step(self, real: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, float]:
        """One update of the VAE's base weights and the predictor, then the average (``step.py``)."""
        stats = step.generator_step(self._parts, real, self.config.train, y)
        step.update_ema(self._parts, self.config.train, self.step)
        return stats

    def train_step(self) -> dict[str, float]:
        """``n_critic`` critic steps, then one generator step; returns the last losses."""
        stats = step.train_step(self._parts, self._real_batch, self.config.train, self.step)
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
                self._write_config()
        t = self.config.train
        self._train_mode(True)
        # A live bar in notebooks and terminals; into a log file, a line every 30 s.
        interactive = sys.stderr.isatty() or "ipykernel" in sys.modules
        bar = tqdm(total=end, initial=self.step, disable=not self.progress, desc="training",
                   dynamic_ncols=True, mininterval=0.1 if interactive else 30)
        tick, images = time.perf_counter(), 0
        started, before = tick, self.train_seconds or 0.0

        def clock() -> None:
            self.train_seconds = before + time.perf_counter() - started

        handlers = self._catch_signals()
        try:
            while self.step < end:
                stats = self.train_step()
                images += self.config.batch_size * (t.n_critic + 1)
                bar.update(1)
                if self.step % t.log_every == 0 or self.step == end:
                    now = time.perf_counter()
                    record = {"step": self.step, **stats, "images_per_s": images / (now - tick)}
                    tick, images = now, 0
                    self.log(record)
                    logged.append(record)
                    bar.set_postfix({k: f"{stats[k]:.3g}" for k in ("critic", "generator", "recon")})
                    if self.callback:
                        self.callback(self, record)
                if self.out and self.step % t.sample_every == 0:
                    self.save_samples(self.out / "samples" / f"step_{self.step:06d}.png")
                clock()
                if self.out and (self.step % t.checkpoint_every == 0 or self.step == end):
                    self.save_checkpoint(self.out / CHECKPOINT)
                if any_process(self._stop_signal is not None, self.device):
                    path = self.save_checkpoint(self.out / CHECKPOINT) if self.out else None
                    raise TrainingInterrupted(self._stop_signal or signal.SIGTERM, self.step, path)
        finally:
            clock()
            bar.close()
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
        return logged

    def _catch_signals(self) -> dict:
        """Turn SIGINT / SIGTERM into a request to stop after the current step."""
        if threading.current_thread() is not threading.main_thread():
            return {}
        self._stop_signal = None

        def request_stop(signum, frame):
            if self._stop_signal is not None:  # asked twice: stop now, mid-step
                raise StepAbandoned(signum, self.step)
            self._stop_signal = signum

        return {signum: signal.signal(signum, request_stop) for signum in (signal.SIGINT, signal.SIGTERM)}

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
        (images, their classes (n,)), the classes None when the model is unconditional."""
        x, y = self._real_fixed(n)
        return (x, None if y is None else y.cpu()) if labels else x

    def _real_fixed(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``real_images(n)`` and, for a conditional model, their labels (n,) (else None)."""
        idx = torch.randperm(len(self.dataset), generator=torch.Generator().manual_seed(0))[:n]
        images = getattr(self.dataset, "images", None)
        if images is not None:
            x, y = images[idx].float() / 255, self.dataset.labels[idx]
        else:
            xs, ys = zip(*[self.dataset[i] for i in idx.tolist()])
            x, y = torch.stack(xs), torch.as_tensor(ys)
        return x, (y.to(self.device) if self.config.model.num_classes else None)

    def swd(self) -> float:
        """SWD between fixed generated images and fixed real ones (lower is better)."""
        n = min(self.config.train.swd_images, len(self.dataset))
        return swd(self.samples(n), self.real_images(n), seed=0)

    def measure_swd(self) -> float:
        """``swd()``, logged as a metric record."""
        value = self.swd()
        self.log({"step": self.step, "swd": value})
        if self.swd_start is None:
            self.swd_start = {"step": self.step, "swd": value}
        return value

    def evaluate(self, **extra) -> dict:
        """Every quality figure of ``evaluation.py`` for the averaged generator, logged
        (with ``extra``, more entries of the record, e.g. ``train_seconds``).

        The SWD figures compare ``swd_images`` generated images (the fixed noise vectors)
        with as many real ones; ``swd_floor`` compares two disjoint halves of the data.
        On the built-in data (``data=None`` or a folder ``builtin_dataset`` wrote),
        with a judge for the image size (``judge.py``), the shape
        figures too: ``shapes_named`` and ``shape_counts`` of the same generated images,
        ``shapes_named_recon`` of the reconstructions, ``shapes_named_real`` of the real
        images themselves, and ``shapes_named_unseen`` of the reconstructions of 256
        built-in images drawn with another seed, which the model never trained on (and,
        when conditional, ``unseen_as_class``: named as their own class). A model that
        remembers its training images reconstructs them well and unseen ones badly.
        """
        n = min(self.config.train.swd_images, len(self.dataset))
        real, labels = self._real_fixed(len(self.dataset) if len(self.dataset) < 2 * n else 2 * n)
        name_shapes = None if self.judge is None else functools.partial(
            judge_shapes, self.judge, classes=tuple(self.dataset.classes or ()))
        with self._evaluating():
            figures = delta_figures(self.generator_ema, self.fixed_codes(n), real[:n],
                                    seed=self.config.seed, name_shapes=name_shapes)
            figures.update(vae_figures(self.generator_ema, real[:n].to(self.device),
                                       through_generator=self.config.train.recon_through_generator,
                                       seed=self.config.seed, name_shapes=name_shapes,
                                       labels=None if labels is None else labels[:n]))
        if self.judge is not None:
            figures["shapes_named_real"] = judge_shapes(self.judge, real[:n])["shapes_named"]
            figures.update(self._unseen_figures(name_shapes))
        figures["swd_floor"] = real_floor(real)
        record = {"step": self.step, **figures, **extra}
        self.log(record)
        return record

    @torch.no_grad()
    def _unseen_figures(self, name_shapes) -> dict:
        """The shapes of the reconstructions of built-in images the model never trained
        on (another seed's drawing): what it learned, not what it remembers."""
        if self._unseen is None:
            folder = builtin_dataset(background=self._background, per_class=UNSEEN_PER_CLASS,
                                     seed=UNSEEN_SEED)
            unseen = load_dataset(folder, image_size=self.config.model.image_size, in_memory=True,
                                  num_workers=0)
            self._unseen = unseen.images.float() / 255, unseen.labels
        images, labels = self._unseen
        labels = labels.to(self.device) if self.config.model.num_classes else None
        recon = self._reconstruct(images, labels)
        judged = name_shapes(recon.float()) if labels is None else name_shapes(recon.float(), labels)
        figures = {"shapes_named_unseen": judged["shapes_named"]}
        if labels is not None:
            figures["unseen_as_class"] = judged["named_as_asked"]
        return figures

    @torch.no_grad()
    def reconstructions(self, n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
        """n fixed real images and the averaged generator's reconstructions of them.

        Each image is encoded to its posterior mean and decoded as training decodes
        reconstructions (through the whole generator, or the base decoder alone).
        """
        real, labels = self._real_fixed(n)
        return real, self._reconstruct(real, labels).float().cpu()

    def _reconstruct(self, images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """Images -> posterior means -> decoded as training decodes reconstructions, by the
        averaged generator."""
        with self._evaluating():
            return reconstruct(self.generator_ema, images.to(self.device), seed=self.config.seed,
                               through_generator=self.config.train.recon_through_generator,
                               labels=labels)

    def save_samples(self, path: str | os.PathLike, n: int = 64) -> Path:
        """A grid of images generated from the fixed noise vectors, as a PNG."""
        with atomic_write(path) as tmp:
            save_image(self.samples(n), tmp, format="png", nrow=8, padding=2, pad_value=1.0)
        return Path(path)

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict:
        """Everything needed to continue exactly (the layout is in ``checkpoint.py``)."""
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "format": FORMAT, "version": __version__, "config": self.config.to_dict(),
            "step": self.step, "batches_seen": self.batches_seen,
            "vae": self.vae.state_dict(), "critic": self.critic.state_dict(),
            "predictor": self.predictor.state_dict() if self.predictor else None,
            "generator_ema": (self.generator_ema.state_dict()
                              if self.generator_ema is not self.generator else None),
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(), "rng": rng,
            "data": self.data_record, "swd_start": self.swd_start, "lineage": self.lineage,
            "train_seconds": self.train_seconds,
        }

    def save_checkpoint(self, path: str | os.PathLike) -> Path:
        return save_atomic(self.state_dict(), path)

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state``; a checkpoint made with other sizes is refused.

        Raises ``ValueError`` naming the part that does not fit (checked first by
        ``checkpoint.check_state``).
        """
        self.load_weights(state)
        load_part(self.opt_g, state["opt_g"], "opt_g")
        load_part(self.opt_d, state["opt_d"], "opt_d")
        self.batches_seen, self._batches = state["batches_seen"], None
        try:
            torch.set_rng_state(state["rng"]["torch"])
            if "cuda" in state["rng"] and self.device.type == "cuda":
                torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"its random state (rng) cannot be restored: {str(exc)[:200]}") from None
        if self.rank:  # the saved stream is rank 0's; the others draw their own
            torch.manual_seed(self.config.seed + 7919 * self.rank + self.step)

    def load_weights(self, state: dict) -> None:
        """The networks' weights, step and records of ``state``, without what training on
        needs (optimiser states, random state): enough to look at a model, as the
        shipped one is looked at (``shipped.py``)."""
        check_same_model(self.config, state)
        if self.generator_ema is not self.generator and state.get("generator_ema") is None:
            raise ValueError("the checkpoint holds no averaged generator (it was trained "
                             "with ema_decay = 0), but this config averages one")
        parts = [("vae", self.vae), ("critic", self.critic), ("predictor", self.predictor),
                 ("generator_ema", self.generator_ema if self.generator_ema is not self.generator else None)]
        for name, part in parts:
            if part is not None:
                load_part(part, state[name], name)
        self.step, self.train_seconds = state["step"], state.get("train_seconds")
        self.swd_start, self.lineage = state["swd_start"], list(state["lineage"])

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
        out = kwargs.get("out")
        held = Path(out) / CHECKPOINT if out is not None else None
        fork = held is not None and not (held.exists() and os.path.samefile(held, path))
        if fork and held.exists():
            raise ValueError(f"out={out}: already holds another run ({held}); continuing {path} "
                             "there would replace it; choose another folder")
        trainer = cls(config, data=data, overwrite=True, _resuming=True, **kwargs)
        try:
            trainer.load_state_dict(state)
        except ValueError as exc:
            raise ValueError(f"checkpoint {path}: {exc}") from None
        if not same_data(recorded, trainer.data_record):
            if not other_data:
                raise ValueError(f"checkpoint {path} was trained on {describe_data(recorded)}; the data "
                                 f"given is {describe_data(trainer.data_record)}. A resumed run keeps "
                                 "its data: leave it out, or go on with this data explicitly "
                                 "(other_data=True, --other-data)")
            trainer.swd_start = None  # measured on other images: the summary starts afresh
        if fork:
            trainer.lineage.append({"checkpoint": str(path.resolve()), "step": trainer.step})
        if trainer.out:
            lock_folder(trainer.out)
            trainer._open_folder(resuming=True)
            # The run's records up to the checkpoint (later ones belong to lost steps); a
            # fork starts from those of the run it came from.
            source = path.parent if fork else trainer.out
            trainer.history = [r for r in read_metrics(source / "metrics.jsonl") if r["step"] <= trainer.step]
            with atomic_write(trainer.out / "metrics.jsonl") as tmp:
                tmp.write_text("".join(json.dumps(r) + "\n" for r in trainer.history))
        return trainer
