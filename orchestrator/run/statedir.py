"""Where iocfleet keeps state on this host, and the per-fleet lock that serialises `up`/`down`."""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

from orchestrator.errors import RefusedError, UsageError
from orchestrator.paths import state_root

__all__ = ["state_root", "fleet_dir", "make_dir", "fleet_lock"]


def fleet_dir(fleet: str, environ=None) -> Path:
    return state_root(environ) / "fleets" / fleet


def make_dir(path: Path) -> Path:
    """Create a state directory (and its parents); UsageError naming it when that is impossible."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unusable(path, exc) from exc
    return path


def _unusable(path: Path, exc: OSError) -> UsageError:
    return UsageError(f"cannot use the state directory: {exc.strerror or exc}: {exc.filename or path}",
                      "XDG_STATE_HOME", "point XDG_STATE_HOME at a directory this user can write")


@contextmanager
def fleet_lock(fleet: str, command: str, environ=None):
    """Hold the fleet's lock for the duration of a changing command; refuse if another holds it."""
    root = make_dir(state_root(environ) / "locks")
    path = root / f"{fleet}.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise _unusable(path, exc) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = Path(path).read_text().strip() or "another process"
            raise RefusedError(f"fleet {fleet!r} is busy: {holder}", str(path),
                               "wait for it to finish, or stop that process")
        os.ftruncate(fd, 0)
        os.write(fd, f"`iocfleet {command}` pid {os.getpid()}".encode())
        yield path
    finally:
        os.close(fd)
