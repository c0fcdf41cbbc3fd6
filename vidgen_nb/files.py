"""Writing files so that nothing is lost: a crash leaves the old file or the new one,
and a run folder is written by one process at a time."""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
import sys
from pathlib import Path


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike):
    """Yield a temporary path beside ``path`` to write; on success, flush it to disk and
    rename it to ``path``. On any failure ``path`` is left as it was. The temporary
    name (``.<name>.tmp<pid>``) keeps no extension, so that nothing takes it for a
    finished file: writers that choose a format by extension must name the format.

    A crash at any moment leaves either the old file or the new one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


NAME_MAX, PATH_MAX = 255, 4096  # bytes in one name and in a whole path, on Linux and macOS


def check_path(path: str | os.PathLike, option: str) -> Path:
    """``path`` as a ``Path`` once it can name a file here; else ``ValueError`` naming
    ``option``: empty, a name longer than the file system allows (``NAME_MAX`` bytes),
    the whole longer than ``PATH_MAX``, or a symbolic link to nothing (writing through
    it would create its target somewhere unseen)."""
    raw = os.fsencode(path)
    shown = os.fsdecode(raw[:60]) + ("..." if len(raw) > 60 else "")
    if not raw.strip():
        raise ValueError(f"{option}: an empty path")
    longest = max(len(part) for part in raw.split(b"/"))
    if longest > NAME_MAX:
        raise ValueError(f"{option}: {shown}: a name of {longest} bytes; the file system allows {NAME_MAX}")
    if len(os.fsencode(os.path.abspath(path))) >= PATH_MAX:
        raise ValueError(f"{option}: {shown}: the path is {len(raw)} bytes; the system allows {PATH_MAX - 1}")
    if os.path.islink(path) and not os.path.exists(path):
        raise ValueError(f"{option}: {shown} is a symbolic link to {os.readlink(path)}, which does not exist")
    return Path(path)


def escape_unprintable_output() -> None:
    """Make stdout and stderr print what they cannot encode as escapes (a path that is
    not valid UTF-8, under a strict ASCII terminal) instead of raising."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def remove_stale_writes(folder: Path) -> None:
    """Delete the temporary files that a killed ``atomic_write`` left in ``folder``
    (those of a process still running are its writes in progress, and stay)."""
    for stale in folder.glob(".*.tmp[0-9]*"):
        pid = stale.name.rsplit(".tmp", 1)[1].split(".")[0]
        if not process_alive(int(pid)):
            stale.unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


LOCK = ".lock"  # in a run folder: "<pid> <host>" of the process writing it
_held: set[Path] = set()  # run folders this process has locked


def lock_folder(folder: Path) -> None:
    """Mark ``folder`` as written by this process, until it exits.

    Raises ``ValueError`` when another live process holds it. A lock left by a process
    that no longer runs (killed, crashed) is taken over, with a message on stderr.
    Locking a folder this process already holds again does nothing.
    """
    folder = Path(folder).resolve()
    if folder in _held:
        return
    folder.mkdir(parents=True, exist_ok=True)
    lock, host = folder / LOCK, socket.gethostname()
    mine = f"{os.getpid()} {host}\n"
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        pid, _, owner = lock.read_text(errors="replace").strip().partition(" ")
        if owner != host:
            raise ValueError(f"run folder {folder} is in use by process {pid} on {owner}; if that "
                             f"process is gone, delete {lock}") from None
        if pid.isdigit() and process_alive(int(pid)) and int(pid) != os.getpid():
            raise ValueError(f"run folder {folder} is in use by process {pid} (still running); wait "
                             "for it to finish, or choose another folder") from None
        print(f"taking over the lock of {folder} from process {pid}, which no longer runs",
              file=sys.stderr)
        with atomic_write(lock) as tmp:
            tmp.write_text(mine)
    else:
        with os.fdopen(fd, "w") as f:
            f.write(mine)
    _held.add(folder)
    atexit.register(_unlock, lock, mine)


def _unlock(lock: Path, mine: str) -> None:
    try:
        if lock.read_text() == mine:
            lock.unlink()
    except OSError:
        pass
