"""How fast is one training iteration? ``python -m vidgen_nb.bench`` (or ``make bench``).

Everything is measured in one process, after warm-up, as the median of repeated runs,
and reported as ratios, which stay meaningful on a noisy machine:

1. the full training iteration (``n_critic`` critic steps with gradient penalty, then
   one generator step with synthetic video, predictor and per-sample patched decode);
2. the same iteration without the predictor (plain VAE-WGAN-GP): overhead = 1 / 2;
   and with the critic-guided video (``critic_step``), its cost over 1;
3. a straightforward version of the same math (``reference.ReferenceTrainer``: frames
   built in a Python loop, per-sample deltas applied by looping over the batch, default
   memory layout for the VAE and critic): speed-up = 3 / 1, after checking both give
   the same losses;
4. model FLOPs of one iteration (``torch.utils.flop_counter``, the gradient penalty's
   double backward included) per second, over the FLOP/s of a large matrix product;
5. synthetic-video bytes written per second, over a plain copy of the same bytes;
6. images/s the data loader delivers, over the images/s the iteration consumes;
7. peak memory (RSS on a CPU, ``torch.cuda.max_memory_allocated`` on a GPU).

It prints a table of ratios and targets, then one JSON line with every figure.
``--quick`` (the tiny preset, few repeats) runs in well under a minute.
"""

from __future__ import annotations

import json
import math
import platform
import resource
import statistics
import sys
import time
from typing import Callable

import torch
import torch.nn.functional as F

from .commands import Parser, run_command
from .config import PRESETS, Config
from .data import ResumableBatchSampler, endless_batches
from .device import PRECISIONS
from .profiling import iteration_flops, operator_profile, profile_table
from .reference import ReferenceTrainer
from .trainer import Trainer
from .video import synthetic_video

# Targets for the CPU; on a GPU the table shows the same ratios for comparison.
TARGETS = {
    "overhead": ("<=", 1.3),
    "speedup": (">=", 1.5),
    "flops_fraction": (">=", 0.5),
    "video_vs_copy": (">=", 0.5),
    "loader_vs_training": (">=", 5.0),
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
OTHER_PRECISION = {"fp32": "bf16", "bf16": "fp32"}
# Loss fields two implementations of the same math must agree on.
LOSSES = ("critic", "wasserstein", "gp", "generator", "adversarial", "recon", "kl")
PROG = "python -m vidgen_nb.bench"


# ---------------------------------------------------------------------- timing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(fn: Callable[[], object], device: torch.device, *, repeats: int, warmup: int = 1
                ) -> tuple[float, list[float]]:
    """Median wall time of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def matmul_flops_per_s(device: torch.device, *, n: int, repeats: int,
                       dtype: torch.dtype = torch.float32) -> tuple[float, str]:
    """FLOP/s of an n x n matrix product in ``dtype``."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    seconds, _ = median_time(lambda: a @ b, device, repeats=repeats)
    return 2 * n**3 / seconds, str(dtype).removeprefix("torch.")


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else the architecture."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    """The GPU's name on CUDA, else the CPU's."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()


def peak_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def same_losses(cfg: Config, device, *, tol: float, precision: str = "auto"
                ) -> dict[str, tuple[float, float]]:
    """One iteration (one critic step, then the generator step) of the fast and the
    reference trainer from the same start. One critic step, not ``n_critic``: rounding
    differences of the two layouts would otherwise grow with every critic update.

    Returns {loss: (fast, reference)}; raises AssertionError if a pair differs by more
    than ``tol``, relative or absolute (the Wasserstein estimate is a small difference
    of two large means, so its rounding differences are absolute, not relative).
    """
    values, cfg = [], cfg.replace(n_critic=1)
    for kind in (Trainer, ReferenceTrainer):
        trainer = kind(cfg, device=device, progress=False, precision=precision)
        torch.manual_seed(1234)
        values.append(trainer.train_step())
    pairs = {k: (values[0][k], values[1][k]) for k in LOSSES}
    bad = {k: v for k, v in pairs.items() if not math.isclose(*v, rel_tol=tol, abs_tol=tol)}
    if bad:
        raise AssertionError(f"fast and reference iterations disagree: {bad}")
    return pairs


# ---------------------------------------------------------------------- the run


def run(cfg: Config, *, device=None, precision: str = "auto", repeats: int = 5, warmup: int = 1,
        matmul_n: int | None = None, log: Callable[[str], None] = print) -> dict:
    """Every measurement for ``cfg``; returns the figures as a flat dict.

    ``matmul_n``: size of the reference matrix product (default 8192 on CUDA, where
    smaller ones do not fill the GPU, else 2048).
    """
    probe = Trainer(cfg, device=device, progress=False, precision=precision)
    r = _setting(cfg, probe)
    timed = dict(repeats=repeats, warmup=warmup)
    log("1. full iteration")
    _time_full(r, cfg, probe, **timed)
    log(f"   {r['iteration_s']:.3f} s")
    log("2. without the predictor")
    _time_plain(r, cfg, probe.device, precision, **timed)
    log(f"   {r['plain_iteration_s']:.3f} s")
    log("   with the critic-guided video")
    _time_guided(r, cfg, probe.device, precision, **timed)
    log(f"   {r['guided_iteration_s']:.3f} s")
    log("3. straightforward reference")
    _time_reference(r, cfg, probe, precision, **timed)
    log(f"   {r['reference_iteration_s']:.3f} s")
    log("4. FLOPs and the matrix-product rate")
    _flops(r, probe, matmul_n=matmul_n, repeats=repeats)
    log("5. synthetic video against a copy")
    _video_vs_copy(r, cfg, probe.device, repeats=repeats)
    log("6. data loading")
    _loading(r, cfg, probe)
    return r


def _setting(cfg: Config, probe: Trainer) -> dict:
    """What is measured, and where: sizes, device, threads, torch and precision."""
    m, t, B, device = cfg.model, cfg.train, cfg.batch_size, probe.device
    return {"preset_size": f"{B}x{m.channels}x{m.image_size}x{m.image_size}",
            "frames": m.num_frames, "n_critic": t.n_critic, "device": str(device),
            "device_name": device_name(device),
            "threads": torch.get_num_threads(), "torch": torch.__version__,
            "precision": probe.precision}


def _time_full(r: dict, cfg: Config, probe: Trainer, *, repeats: int, warmup: int) -> None:
    """1. The full iteration: its time, images per second and the peak memory."""
    device = probe.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    r["iteration_s"], r["iteration_runs_s"] = median_time(probe.train_step, device,
                                                          repeats=repeats, warmup=warmup)
    r["peak_memory_bytes"] = peak_memory_bytes(device)
    r["images_per_s"] = cfg.batch_size * (cfg.train.n_critic + 1) / r["iteration_s"]


def _time_plain(r: dict, cfg: Config, device: torch.device, precision: str, *, repeats: int,
                warmup: int) -> None:
    """2. The same iteration without the predictor, and the predictor's overhead."""
    plain = Trainer(cfg.replace(use_predictor=False), device=device, progress=False,
                    precision=precision)
    r["plain_iteration_s"], _ = median_time(plain.train_step, device, repeats=repeats, warmup=warmup)
    r["overhead"] = r["iteration_s"] / r["plain_iteration_s"]


def _time_guided(r: dict, cfg: Config, device: torch.device, precision: str, *, repeats: int,
                 warmup: int) -> None:
    """2b. The iteration with the critic-guided video (``critic_step``): what its critic
    forward and backward per generated batch cost, over the full iteration."""
    guided = Trainer(cfg.replace(critic_step=0.02), device=device, progress=False, precision=precision)
    r["guided_iteration_s"], _ = median_time(guided.train_step, device, repeats=repeats, warmup=warmup)
    r["guided_cost"] = r["guided_iteration_s"] / r["iteration_s"]


def _time_reference(r: dict, cfg: Config, probe: Trainer, precision: str, *, repeats: int,
                    warmup: int) -> None:
    """3. The straightforward reference: the same losses, then its time and the speed-up."""
    device = probe.device
    tol = 5e-2 if probe.precision == "bf16" else 1e-3
    r["losses_fast_vs_reference"] = same_losses(cfg, device, tol=tol, precision=precision)
    reference = ReferenceTrainer(cfg, device=device, progress=False, precision=precision)
    r["reference_iteration_s"], _ = median_time(reference.train_step, device,
                                                repeats=repeats, warmup=warmup)
    r["speedup"] = r["reference_iteration_s"] / r["iteration_s"]
    # What the speed-up would be if predictor, video and patching cost nothing at all.
    r["speedup_bound"] = r["reference_iteration_s"] / r["plain_iteration_s"]


def _flops(r: dict, probe: Trainer, *, matmul_n: int | None, repeats: int) -> None:
    """4. Model FLOP/s of the iteration, over those of a large matrix product."""
    device = probe.device
    r["iteration_flops"] = iteration_flops(probe)
    r["achieved_flops_per_s"] = r["iteration_flops"] / r["iteration_s"]
    matmul_n = matmul_n or (8192 if device.type == "cuda" else 2048)
    # The limit in the precision the iteration runs in; the other one for comparison.
    r["matmul_flops_per_s"], r["matmul_dtype"] = matmul_flops_per_s(
        device, n=matmul_n, repeats=repeats, dtype=DTYPES[probe.precision])
    other = OTHER_PRECISION[probe.precision]
    r[f"matmul_{other}_flops_per_s"], _ = matmul_flops_per_s(
        device, n=matmul_n, repeats=repeats, dtype=DTYPES[other])
    r["flops_fraction"] = r["achieved_flops_per_s"] / r["matmul_flops_per_s"]


def _video_vs_copy(r: dict, cfg: Config, device: torch.device, *, repeats: int) -> None:
    """5. Synthetic-video bytes per second, over a plain copy and over its resampling alone."""
    m, B = cfg.model, cfg.batch_size
    images = torch.rand(B, m.channels, m.image_size, m.image_size, device=device)
    video_s, _ = median_time(lambda: synthetic_video(images, m.num_frames, cfg.video, seed=0),
                             device, repeats=max(repeats, 10))
    nbytes = B * m.num_frames * images[0].numel() * images.element_size()
    src = torch.rand(nbytes // images.element_size(), device=device)
    dst = torch.empty_like(src)
    copy_s, _ = median_time(lambda: dst.copy_(src), device, repeats=max(repeats, 10))
    r["video_bytes_per_s"], r["copy_bytes_per_s"] = nbytes / video_s, nbytes / copy_s
    r["video_vs_copy"] = copy_s / video_s
    # The bilinear resampling alone (one grid_sample writing the same bytes) bounds it.
    grid = torch.rand(B, m.num_frames * m.image_size, m.image_size, 2, device=device) * 2 - 1
    resample_s, _ = median_time(lambda: F.grid_sample(images, grid, align_corners=False), device,
                                repeats=max(repeats, 10))
    r["resample_vs_copy"] = copy_s / resample_s


def _loading(r: dict, cfg: Config, probe: Trainer) -> None:
    """6. Images per second the data loader delivers, over those the iteration consumes."""
    B = cfg.batch_size
    sampler = ResumableBatchSampler(len(probe.dataset), B, seed=cfg.seed)
    batches = endless_batches(probe.dataset, sampler, num_workers=cfg.train.num_workers)
    n_batches = 50
    load_s, _ = median_time(lambda: [next(batches) for _ in range(n_batches)], probe.device,
                            repeats=3, warmup=1)
    r["loader_images_per_s"] = n_batches * B / load_s
    r["loader_vs_training"] = r["loader_images_per_s"] / r["images_per_s"]


def table(r: dict) -> str:
    """The ratios against their targets, as a Markdown table."""
    gib = r["peak_memory_bytes"] / 2**30
    other = OTHER_PRECISION[r["precision"]]
    rows = [
        ("overhead: full / without predictor", r["overhead"], "overhead"),
        ("speed-up: reference / full", r["speedup"], "speedup"),
        (f"model FLOP/s / {r['matmul_dtype']} matmul FLOP/s", r["flops_fraction"], "flops_fraction"),
        ("video bytes/s / copy bytes/s", r["video_vs_copy"], "video_vs_copy"),
        ("loader images/s / training images/s", r["loader_vs_training"], "loader_vs_training"),
    ]
    lines = ["| measure | ratio | target | met |", "| --- | ---: | ---: | :---: |"]
    for name, value, key in rows:
        op, goal = TARGETS[key]
        met = value <= goal if op == "<=" else value >= goal
        lines.append(f"| {name} | {value:.2f} | {op} {goal:g} | {'yes' if met else 'no'} |")
    lines += [
        "",
        f"iteration {r['iteration_s']:.3f} s ({r['images_per_s']:.0f} images/s), without predictor "
        f"{r['plain_iteration_s']:.3f} s, with the critic-guided video {r['guided_iteration_s']:.3f} s "
        f"(x{r['guided_cost']:.2f}), reference {r['reference_iteration_s']:.3f} s; "
        f"{r['iteration_flops'] / 1e9:.1f} GFLOP per iteration at {r['achieved_flops_per_s'] / 1e9:.1f} "
        f"GFLOP/s, {r['matmul_dtype']} matmul {r['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s ("
        f"{other} {r[f'matmul_{other}_flops_per_s'] / 1e9:.1f}); video "
        f"{r['video_bytes_per_s'] / 1e9:.2f} GB/s, copy {r['copy_bytes_per_s'] / 1e9:.2f} GB/s; "
        f"loader {r['loader_images_per_s']:.0f} images/s; peak memory {gib:.2f} GiB",
        f"bounds: speed-up if the predictor's path were free (reference / without predictor) "
        f"{r['speedup_bound']:.2f}; video if all but the resampling were free (grid_sample "
        f"alone / copy) {r['resample_vs_copy']:.2f}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m vidgen_nb.bench``: measure, print the table, then every figure as JSON."""
    return run_command(PROG, lambda: _main(argv), errors=(ValueError,))


def _main(argv: list[str] | None) -> int:
    """Read the command line, run every measurement, print the results."""
    parser = Parser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="seed", choices=tuple(PRESETS),
                        help="configuration to time (default: seed, batch 16, 3x128x128)")
    parser.add_argument("--batch-size", type=int, help="override the preset's batch size")
    parser.add_argument("--device", default="auto", help="auto (the best available), cpu, cuda, cuda:N, mps")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="as vidgen-train: auto (bf16 on CUDA, fp32 elsewhere), fp32, bf16")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (median)")
    parser.add_argument("--profile", action="store_true",
                        help="instead of the table: where one iteration's time goes, by operator")
    parser.add_argument("--quick", action="store_true",
                        help="tiny preset, 3 repeats: a smoke test in well under a minute")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats {args.repeats}: expected a positive integer")
    preset, repeats, matmul_n = args.preset, args.repeats, None
    if args.quick:
        preset, repeats, matmul_n = "tiny", 3, 512
    overrides = {"batch_size": args.batch_size} if args.batch_size else {}
    cfg = Config.preset(preset, **overrides)
    if args.profile:
        return _profile(cfg, preset, args.device, args.precision, repeats)
    results = run(cfg, device=args.device, precision=args.precision, repeats=repeats,
                  matmul_n=matmul_n, log=lambda s: print(s, file=sys.stderr, flush=True))
    results["preset"] = preset
    print(f"\n{preset} preset ({results['preset_size']}, T={results['frames']}, "
          f"n_critic={results['n_critic']}, {results['precision']}) on {results['device']} "
          f"({results['device_name']}, "
          f"{results['threads']} threads), torch {results['torch']}\n")
    print(table(results))
    print(json.dumps(results))
    return 0


def _profile(cfg: Config, preset: str, device: str, precision: str, repeats: int) -> int:
    """``--profile``: the iteration's operators by self time (``profiling``), with the
    matrix-product rate of the precision it runs in."""
    trainer = Trainer(cfg, device=device, progress=False, precision=precision)
    ops, groups, seconds = operator_profile(trainer, iterations=repeats)
    rate, dtype = matmul_flops_per_s(trainer.device, n=2048, repeats=repeats,
                                     dtype=DTYPES[trainer.precision])
    print(f"\n{preset} preset, {trainer.precision}, on {trainer.device} ({device_name(trainer.device)}, "
          f"{torch.get_num_threads()} threads); {dtype} matmul {rate / 1e9:.1f} GFLOP/s\n")
    print(profile_table(ops, groups, seconds, rate))
    return 0


if __name__ == "__main__":
    sys.exit(main())
