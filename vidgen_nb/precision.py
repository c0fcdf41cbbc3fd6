"""Which precision a run trains in, and why: ``choose_precision`` (``--precision auto``).

bf16 autocast multiplies matrices several times faster than float32 on CUDA and on
CPUs with bf16 instructions (AVX-512 BF16, AMX), and hundreds of times slower on CPUs
without them, where it is emulated. On a CPU it has also failed in ways a run would not
notice until too late (oneDNN kernels that returned NaN gradients on one machine, a
resumed run that drifted from an uninterrupted one on another). So ``auto`` picks:

- bf16 on CUDA;
- on a CPU with bf16 instructions, bf16 if a start check passes on the run's own
  networks (``bf16_trial``: a few steps stay finite, and a stop and resume in the middle
  gives bit-for-bit the weights of the uninterrupted steps), else float32;
- float32 everywhere else.

The commands that start runs ask for the check (``Trainer(..., try_bf16=True)``). The
Python API's ``Trainer(precision="auto")`` does not, and keeps float32 on every CPU, so
that a notebook or a test computes the same figures on every CPU.
"""

from __future__ import annotations

import copy

import torch

from .config import Config
from .device import autocast, pick_device, resolve_precision
from .parts import build_parts
from .step import train_step

BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo's names for the instructions


def cpu_bf16_flags(cpuinfo: str = "/proc/cpuinfo") -> list[str]:
    """The bf16 instructions this CPU announces (none where ``cpuinfo`` cannot be read)."""
    try:
        with open(cpuinfo) as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return []
    return [flag for flag in BF16_FLAGS if flag in flags]


def choose_precision(asked: str, config: Config, device=None, *, try_bf16: bool = True
                     ) -> tuple[str, str]:
    """(``fp32`` or ``bf16``, why) for a run of ``config`` on ``device`` (a name or None).

    ``asked``: ``fp32`` or ``bf16`` are taken as they are; ``auto`` is decided as the
    module's docstring says (on a bf16 CPU by ``bf16_trial``, a few seconds), and is
    float32 on every CPU without ``try_bf16``.
    """
    device = pick_device(device) if not isinstance(device, torch.device) else device
    if asked != "auto":
        return resolve_precision(asked, device), "asked for"
    if device.type == "cuda":
        return "bf16", "bf16 autocast on CUDA"
    if device.type != "cpu":
        return "fp32", f"bf16 is chosen on CUDA and on bf16 CPUs, not on {device.type}"
    if not try_bf16:
        return "fp32", "float32 on a CPU unless bf16 is asked for or tried (try_bf16)"
    flags = cpu_bf16_flags()
    if not flags:
        return "fp32", f"this CPU has no bf16 instructions ({' or '.join(BF16_FLAGS)})"
    trouble = bf16_trial(config, device)
    if trouble:
        return "fp32", f"this CPU has {', '.join(flags)}, but bf16 failed its start check: {trouble}"
    return "bf16", f"this CPU has {', '.join(flags)} and bf16 passed its start check"


class _NotFinite(Exception):
    pass


def bf16_trial(config: Config, device: torch.device, *, steps: int = 2) -> str | None:
    """None if bf16 trains ``config`` soundly on ``device``, else what went wrong.

    On a fixed random batch: ``steps`` iterations from the run's start, a snapshot (as a
    checkpoint holds it), ``steps`` more; then fresh networks load the snapshot and take
    the same ``steps``. Every loss must be finite and both ends the same to the bit.
    The global random state is left as it was.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        m = config.model
        real = torch.rand(config.batch_size, m.channels, m.image_size, m.image_size, device=device)
        labels = torch.randint(0, max(1, m.num_classes), (config.batch_size,), device=device)
        try:
            first = _parts(config, device)
            _train(first, config, real, labels, steps)
            snapshot = copy.deepcopy(_state(first))
            _train(first, config, real, labels, steps, start=steps)
            second = _parts(config, device)
            _load(second, snapshot)
            _train(second, config, real, labels, steps, start=steps)
        except _NotFinite as exc:
            return str(exc)
    gap = max((a - b).abs().max().item() for a, b in zip(_weights(first), _weights(second)))
    if gap:
        return f"a run resumed after {steps} steps differs from an uninterrupted one by {gap:.1e}"
    return None


def _parts(config: Config, device: torch.device):
    def check_finite(name: str, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss).item():
            raise _NotFinite(f"the {name} loss became {loss.item()} within a few steps")

    return build_parts(config, device, precision="bf16", autocast=lambda: autocast(device, "bf16"),
                       check_finite=check_finite)


def _train(parts, config: Config, real: torch.Tensor, labels: torch.Tensor, steps: int,
           start: int = 0) -> None:
    x = real.contiguous(memory_format=torch.channels_last)  # as the trainer hands batches over
    for step in range(start, start + steps):
        train_step(parts, lambda: (x, labels), config.train, step)


SNAPSHOT = ("generator", "critic", "generator_ema", "opt_g", "opt_d")  # what a checkpoint holds of Parts


def _state(parts) -> dict:
    return {**{name: getattr(parts, name).state_dict() for name in SNAPSHOT}, "rng": torch.get_rng_state()}


def _load(parts, state: dict) -> None:
    for name in SNAPSHOT:
        getattr(parts, name).load_state_dict(state[name])
    torch.set_rng_state(state["rng"])


def _weights(parts) -> list[torch.Tensor]:
    return [p.detach().float() for net in (parts.generator, parts.critic) for p in net.parameters()]
