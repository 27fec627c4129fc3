"""Where iocfleet keeps state on this host, and the per-fleet lock that serialises `up`/`down`.

Everything here treats the state directory as reachable by others (issue 13, class 3): directories are
made 0700 and refused when another user owns them or others may write them; files are opened with
O_NOFOLLOW, so a planted symlink never turns a lock, log or state write into a write elsewhere.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from contextlib import contextmanager
from pathlib import Path

from orchestrator.errors import RefusedError, UsageError
from orchestrator.paths import state_root, xdg_dir

__all__ = ["state_root", "xdg_dir", "fleet_dir", "make_dir", "fleet_lock"]

NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


INTERNAL_FLEETS = frozenset({"_host"})  # iocfleet's own (the host repeater, run/repeater.py): `_` starts no user fleet


def fleet_name_ok(fleet) -> bool:
    """A fleet name that may become a path: a valid user fleet name, or one of iocfleet's internal ones."""
    from orchestrator.spec.fields import valid_name

    return valid_name(fleet) or fleet in INTERNAL_FLEETS


def fleet_dir(fleet: str, environ=None) -> Path:
    if not fleet_name_ok(fleet):  # every caller validates; this keeps a name from ever becoming a path
        raise UsageError(f"{fleet!r} is not a fleet name", "fleet", "use 1-63 letters, digits, _ . -")
    return state_root(environ) / "fleets" / fleet


def make_dir(path: Path) -> Path:
    """Create a state directory (and its parents) 0700; UsageError naming it when that is impossible or
    when it is not safe (a symlink, not a directory, another user's, or writable by others)."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise _unusable(path, exc) from exc
    check_dir(path)
    if path.parent.name == "fleets" or path.name in ("fleets", "locks"):
        check_dir(path.parent)
    return path


def check_dir(path: Path) -> None:
    try:
        info = path.lstat()
    except OSError as exc:
        raise _unusable(path, exc) from exc
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise UsageError(f"state directory {path} is a symlink or not a directory", str(path),
                         "remove it; iocfleet creates its state directories itself")
    if info.st_uid != os.getuid():
        raise UsageError(f"state directory {path} belongs to uid {info.st_uid}, not to you (uid {os.getuid()})",
                         str(path), "use your own XDG_STATE_HOME, or remove that directory")
    if info.st_mode & 0o022:
        raise UsageError(f"state directory {path} is writable by others (mode {stat.S_IMODE(info.st_mode):o})",
                         str(path), f"chmod go-w {path}")


def _unusable(path: Path, exc: OSError) -> UsageError:
    return UsageError(f"cannot use the state directory: {exc.strerror or exc}: {exc.filename or path}",
                      "XDG_STATE_HOME", "point XDG_STATE_HOME at a directory this user can write")


def open_file(path: Path, flags: int, mode: int = 0o600) -> int:
    """os.open without following a final symlink, and only of a regular file; UsageError otherwise."""
    try:
        fd = os.open(path, flags | NOFOLLOW | os.O_NONBLOCK, mode)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO):  # a symlink; a FIFO without a reader
            raise UsageError(f"state file {path} is a symlink or not a regular file", str(path),
                             "remove it; iocfleet writes its state files itself") from exc
        raise _unusable(path, exc) from exc
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise UsageError(f"state file {path} is not a regular file", str(path),
                         "remove it; iocfleet writes its state files itself")
    os.set_blocking(fd, True)
    return fd


def read_text(path: Path, limit: int = 1_000_000) -> str:
    """A state file's text, read without following a symlink; OSError when it is missing or not a file."""
    try:
        fd = open_file(path, os.O_RDONLY)
    except UsageError as exc:
        raise OSError(str(exc)) from exc
    try:
        return os.read(fd, limit).decode(errors="replace")
    finally:
        os.close(fd)


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` through a fresh temporary file (O_EXCL: never an existing one)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


@contextmanager
def fleet_lock(fleet: str, command: str, environ=None):
    """Hold the fleet's lock for the duration of a changing command; refuse if another holds it."""
    if not fleet_name_ok(fleet):
        raise UsageError(f"{fleet!r} is not a fleet name", "fleet", "use 1-63 letters, digits, _ . -")
    root = make_dir(state_root(environ) / "locks")
    path = root / f"{fleet}.lock"
    fd = open_file(path, os.O_RDWR | os.O_CREAT)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            raise RefusedError(f"fleet {fleet!r} is busy: {holder}", str(path),
                               "wait for it to finish, or stop that process")
        os.ftruncate(fd, 0)
        os.write(fd, f"`iocfleet {command}` pid {os.getpid()}".encode())
        yield path
    finally:
        os.close(fd)
