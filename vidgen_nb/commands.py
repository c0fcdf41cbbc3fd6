"""What every command shares: its parser, and the one line it ends with when it stops early.

A command line the command cannot use ends in ``Parser.error``: one line,
``PROG: error: MESSAGE (see --help)``, exit status 2. The command's body runs in
``run_command``, which turns a ``CommandError`` (or an exception of a kind the command
names) into one line on stderr and an exit status:

* ``PROG: error: MESSAGE`` and status 2: input the command cannot use;
* ``PROG: MESSAGE`` and any other status: a run that failed (1) or was stopped by a
  signal (128 + its number), saying what was kept.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from typing import Callable, Iterator

from .files import escape_unprintable_output

USAGE = 2  # the exit status of input the command cannot use, as argparse's own


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line (sub-commands inherit it)."""

    def error(self, message: str):
        """One line, exit status 2, no usage dump."""
        self.exit(USAGE, f"{self.prog}: error: {message} (see --help)\n")


class CommandError(Exception):
    """Why a command stops, in one line, and its exit status (``USAGE``: input it cannot use)."""

    def __init__(self, message: str, code: int = USAGE):
        super().__init__(message)
        self.code = code


class Terminated(BaseException):
    """SIGTERM, raised where ``run_command`` was asked to answer signals in one line."""


def fail(prog: str, message: str, code: int = USAGE) -> int:
    """Print why ``prog`` stops as one line on stderr; returns ``code``, its exit status."""
    print(f"{prog}: error: {message}" if code == USAGE else f"{prog}: {message}", file=sys.stderr)
    return code


def run_command(prog: str, body: Callable[[], int], *, errors: tuple[type[Exception], ...] = (),
                interrupted: Callable[[str], str] | None = None) -> int:
    """Run a command's ``body`` and return its exit status.

    A ``CommandError`` ends in its own line and status; an exception of a kind in
    ``errors`` in its text as the line, status 2. ``interrupted``, when given, says
    what a Ctrl-C ("interrupted") or a SIGTERM ("SIGTERM") left behind: the command
    then ends in that line and 130 or 143 (without it, Python's own handling stays).
    A ``SystemExit`` (``Parser.error``) passes through.
    """
    escape_unprintable_output()
    with _sigterm_raises(interrupted is not None):
        try:
            return body()
        except CommandError as exc:
            return fail(prog, str(exc), exc.code)
        except errors as exc:
            return fail(prog, str(exc))
        except (KeyboardInterrupt, Terminated) as stop:
            if interrupted is None:
                raise
            signum = signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT
            return fail(prog, interrupted("SIGTERM" if signum == signal.SIGTERM else "interrupted"),
                        128 + signum)


def _terminate(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def _sigterm_raises(wanted: bool) -> Iterator[None]:
    """While inside, SIGTERM raises ``Terminated`` (only the main thread can take signals)."""
    if not wanted or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
