"""Where one training iteration's work and time go (``bench``, ``bench --profile``).

``iteration_flops`` counts the model FLOPs of an iteration with PyTorch's FLOP counter.
``operator_profile`` records a few iterations with ``torch.profiler`` after a warm-up;
each operator's *self* time (its own kernels, not the operators it calls) is summed
over them, so the shares add up to the whole. Convolutions and matrix products are
also grouped, with the FLOP/s each group reached: set beside a large matrix product's
rate, that says which of them run far below what the machine can do.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from .trainer import Trainer

# Groups of operators: which profiler names belong, and the FLOP counter's names for them.
GROUPS = {
    "convolutions, forward": (lambda n: "convolution" in n and "backward" not in n, ("convolution",)),
    "convolutions, backward": (lambda n: "convolution_backward" in n, ("convolution_backward",)),
    "matrix products": (lambda n: n.removeprefix("aten::") in ("mm", "addmm", "bmm", "baddbmm"),
                        ("mm", "addmm", "bmm", "baddbmm")),
}


class _NoModuleTracker:
    """Stands in for FlopCounterMode's per-module tracker, whose backward hooks do not
    work inside ``torch.autograd.grad`` (the gradient penalty); totals stay exact."""

    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *args):
        return False


def iteration_flops_by_op(trainer: Trainer) -> Counter:
    """Model FLOPs of one training iteration by operator name ("convolution", "mm", ...).

    Every matrix product and convolution PyTorch runs is counted, forward and backward,
    including the double backward through the critic that the gradient penalty needs.
    """
    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _NoModuleTracker()
    with counter:
        trainer.train_step()
    return Counter({op.__name__.split(".")[0]: n for op, n in counter.get_flop_counts()["Global"].items()})


def iteration_flops(trainer: Trainer) -> int:
    """Model FLOPs of one training iteration, all operators together."""
    return sum(iteration_flops_by_op(trainer).values())


def operator_profile(trainer: Trainer, *, iterations: int = 3, warmup: int = 1, top: int = 15
                     ) -> tuple[list[dict], list[dict], float]:
    """Where ``trainer.train_step()``'s time goes: (the ``top`` operators by self time,
    the groups of ``GROUPS``, the seconds of one iteration as the profiler saw it).

    Each row: name, self_s (per iteration), share (of the iteration's operator time),
    calls (per iteration); a group's row also gflop_per_s.
    """
    flops = iteration_flops_by_op(trainer)
    for _ in range(warmup):
        trainer.train_step()
    cuda = trainer.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(iterations):
            trainer.train_step()
        if cuda:
            torch.cuda.synchronize(trainer.device)
    events = list(prof.key_averages())

    def self_us(e) -> float:
        return e.self_device_time_total if cuda else e.self_cpu_time_total

    total_us = sum(self_us(e) for e in events)

    def row(name: str, chosen: list) -> dict:
        us = sum(self_us(e) for e in chosen)
        return {"name": name, "self_s": us / 1e6 / iterations, "share": us / total_us,
                "calls": sum(e.count for e in chosen) / iterations}

    ops = [row(e.key, [e]) for e in sorted(events, key=self_us, reverse=True)[:top]]
    groups = []
    for name, (belongs, counted) in GROUPS.items():
        g = row(name, [e for e in events if belongs(e.key)])
        g["gflop_per_s"] = sum(flops[c] for c in counted) / g["self_s"] / 1e9 if g["self_s"] else 0.0
        groups.append(g)
    rest = sum(g["self_s"] for g in groups)
    groups.append({"name": "everything else", "self_s": total_us / 1e6 / iterations - rest,
                   "share": 1 - sum(g["share"] for g in groups), "calls": None, "gflop_per_s": None})
    return ops, groups, total_us / 1e6 / iterations


def profile_table(ops: list[dict], groups: list[dict], iteration_s: float,
                  matmul_flops_per_s: float) -> str:
    """``operator_profile``'s results as two Markdown tables, the groups' FLOP/s also as a
    share of the matrix-product rate."""
    lines = [f"operator time per iteration: {iteration_s * 1e3:.0f} ms", "",
             "| group | ms / iteration | share | GFLOP/s | of matmul rate |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for g in groups:
        rate = g["gflop_per_s"]
        flops = f"{rate:.0f} | {rate * 1e9 / matmul_flops_per_s:.2f}" if rate is not None else "- | -"
        lines.append(f"| {g['name']} | {g['self_s'] * 1e3:.1f} | {g['share']:.0%} | {flops} |")
    lines += ["", "| operator | ms / iteration | share | calls |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| `{r['name']}` | {r['self_s'] * 1e3:.1f} | {r['share']:.0%} | {r['calls']:g} |"
              for r in ops]
    return "\n".join(lines)
