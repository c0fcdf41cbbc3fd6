"""Where the computation runs: the device, its precision, and several processes.

One device helper (CUDA, then Apple MPS, then the CPU), bf16 autocast or nothing, and
the few ``torch.distributed`` calls the trainer needs under ``torchrun``.
"""

from __future__ import annotations

import contextlib
import os
import warnings

import torch
import torch.distributed as dist
from torch import nn

PRECISIONS = ("auto", "fp32", "bf16")


def pick_device(name: str | None = None) -> torch.device:
    """``name`` ('cpu', 'cuda', 'cuda:1', 'mps'), or the best available: CUDA, MPS, CPU."""
    if name in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"device={name!r}: expected auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r}: CUDA is not available on this machine")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={name!r}: MPS is not available on this machine")
    return device


def memory_bytes(device: torch.device) -> int | None:
    """The memory of ``device``: a GPU's own, else the machine's RAM; None if unknown."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows)
        return None


def check_fits(nbytes: int, device: torch.device, what: str) -> None:
    """``ValueError`` naming ``what`` when ``nbytes`` exceed all of ``device``'s memory,
    before any of it is allocated (the estimates are rough: only what cannot fit is refused)."""
    total = memory_bytes(device)
    if total is not None and nbytes > total:
        raise ValueError(f"{what}: that would take about {nbytes / 2**30:,.1f} GiB, more than the "
                         f"{total / 2**30:,.0f} GiB of {device.type} memory here")


def resolve_precision(precision: str, device: torch.device) -> str:
    """``fp32`` or ``bf16`` for ``precision`` in ``PRECISIONS`` on ``device``.

    auto: bf16 on CUDA, float32 on every other device. On CPUs, even those with bf16
    instructions, bf16 is only used when asked for: there a resumed run is not exact, and
    oneDNN's bf16 convolutions were seen to turn losses NaN (docs/speed.md says when).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: expected one of {PRECISIONS}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def autocast(device: torch.device, precision: str):
    """bf16 autocast on ``device`` when ``precision`` is bf16; nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def init_distributed(device: str | None = None) -> tuple[int, int, torch.device]:
    """(rank, world size, device) for this process.

    Under ``torchrun`` (WORLD_SIZE > 1) this joins the process group: NCCL with one GPU
    per process (LOCAL_RANK) when CUDA is used, Gloo on CPUs. Otherwise (0, 1, device).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, pick_device(device)
    use_cuda = pick_device(device).type == "cuda"
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    # DDP's hint about gradient strides fires for the critic's (1, F) score weight,
    # whose layout cannot matter; keep the log readable.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    if use_cuda:
        torch.cuda.set_device(local)
    return dist.get_rank(), dist.get_world_size(), torch.device(f"cuda:{local}" if use_cuda else "cpu")


def any_process(flag: bool, device: torch.device) -> bool:
    """True if ``flag`` is true in any process (so that all act together)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def replicas_agree(nets: list[nn.Module]) -> bool:
    """Whether every process holds the same weights in ``nets`` (always true in one)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return True
    local = torch.stack([p.detach().double().sum() for net in nets for p in net.parameters()])
    gathered = [torch.zeros_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, local)
    return all(torch.equal(gathered[0], g) for g in gathered[1:])
