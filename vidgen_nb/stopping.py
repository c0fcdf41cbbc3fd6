"""How training stops early: a NaN loss, Ctrl-C or SIGTERM, asked once or twice.

Once, the step in progress finishes, a checkpoint is written, and ``train`` raises
``TrainingInterrupted``; twice, the step is abandoned (``StepAbandoned``) and the last
checkpoint written holds the run. ``stop_requests`` turns the signals into requests for
the loop to read.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path
from typing import Callable


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


@contextlib.contextmanager
def stop_requests(current_step: Callable[[], int]):
    """Within it, SIGINT / SIGTERM ask the loop to stop after the current step: the list it
    yields then holds the signal. A second one abandons the step (``StepAbandoned``).
    The earlier handlers come back on exit; outside the main thread nothing is caught."""
    requested: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return

    def request_stop(signum, frame):
        if requested:  # asked twice: stop now, mid-step
            raise StepAbandoned(signum, current_step())
        requested.append(signum)

    previous = {signum: signal.signal(signum, request_stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield requested
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
