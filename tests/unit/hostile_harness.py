"""Run the `iocfleet` CLI on hostile input in a forked child: bounded in time, measured in memory, and
watched for writes outside the state directory.

A fork is as isolated as a subprocess for what these tests judge (exit code, output, files, time, peak
memory) but costs milliseconds instead of an interpreter start, so the corpus and the fuzzer can afford
hundreds of runs. The child replaces its whole environment and working directory with the case's, calls
the click group in-process and leaves with `os._exit(code)`, so nothing of it outlives the run.
"""

from __future__ import annotations

import hashlib
import os
import resource
import select
import signal
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import orchestrator.cli  # noqa: F401 - imported before forking, so the child starts warm
import orchestrator.plan.onhost  # noqa: F401
import orchestrator.spec.validate  # noqa: F401

INTERNAL = 70


HOST_DEPENDENT = ("info: repeater-missing:",)  # depends on the host, not on the input


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    seconds: float
    peak_mb: float  # the child's peak resident set above what the parent had at the fork
    timed_out: bool = False

    @property
    def first_line(self) -> str:
        """The first non-empty line of stderr, else of stdout: the line a user reads first. The one info
        finding that depends on this host rather than on the input (whether a CA repeater already holds
        UDP 5065) is skipped unless it is all there is, so a case means the same on every host."""
        lines = [line for text in (self.stderr, self.stdout) for line in text.splitlines() if line.strip()]
        return next((line for line in lines if not line.startswith(HOST_DEPENDENT)), lines[0] if lines else "")


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_cli(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 20.0,
            stdin: bytes = b"") -> Outcome:
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    base = _rss_mb()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # child
        code = INTERNAL
        try:
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            for fd in (out_r, err_r, out_w, err_w):
                os.close(fd)
            sys.stdout = open(1, "w", closefd=False)
            sys.stderr = open(2, "w", closefd=False)
            sys.stdin = open(0, "r", closefd=False)
            os.environ.clear()
            os.environ.update(env)
            os.chdir(cwd)
            try:
                orchestrator.cli.cli.main(args, prog_name="iocfleet", standalone_mode=True)
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException as exc:  # noqa: BLE001 - anything escaping the CLI root is the defect we look for
            try:
                sys.stderr.write(f"harness: escaped the CLI: {type(exc).__name__}: {exc}\n")
            except BaseException:  # noqa: BLE001
                pass
            code = INTERNAL
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            except BaseException:  # noqa: BLE001
                pass
            os._exit(code)
    os.close(out_w)
    os.close(err_w)
    chunks = {out_r: [], err_r: []}
    open_fds = [out_r, err_r]
    timed_out = False
    deadline = started + timeout
    while open_fds:
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            os.kill(pid, signal.SIGKILL)
            break
        ready, _, _ = select.select(open_fds, [], [], left)
        for fd in ready:
            data = os.read(fd, 65536)
            if data:
                if sum(map(len, chunks[fd])) < 4_000_000:
                    chunks[fd].append(data)
            else:
                open_fds.remove(fd)
    _, status, usage = os.wait4(pid, 0)
    seconds = time.monotonic() - started
    for fd in (out_r, err_r):
        os.close(fd)
    code = os.waitstatus_to_exitcode(status)
    return Outcome(code, b"".join(chunks[out_r]).decode(errors="replace"),
                   b"".join(chunks[err_r]).decode(errors="replace"), seconds,
                   max(0.0, usage.ru_maxrss / 1024 - base), timed_out)


def tree(root: Path, skip: Path | None = None) -> dict[str, tuple]:
    """Every entry under `root` (not following symlinks) with its kind, size and content hash; `skip`
    (the state directory) is left out."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        if skip is not None and (here == skip or skip in here.parents):
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            path = here / name
            if skip is not None and path == skip:
                continue
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                found[str(path)] = ("link", os.readlink(path))
            elif stat.S_ISREG(info.st_mode):
                try:
                    digest = hashlib.sha256(path.read_bytes()).hexdigest()
                except OSError:
                    digest = "unreadable"
                found[str(path)] = ("file", info.st_size, digest, stat.S_IMODE(info.st_mode))
            else:
                found[str(path)] = ("other", stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode))
    return found


def base_env(root: Path) -> dict[str, str]:
    """A clean environment: HOME and XDG_STATE_HOME inside `root`, loopback-only CA settings."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(root / "home"),
        "XDG_STATE_HOME": str(root / "state"),
        "LANG": "C.UTF-8",
        "EPICS_CA_AUTO_ADDR_LIST": "NO",
        "EPICS_CA_ADDR_LIST": "127.0.0.1",
        "DOCKER_HOST": "unix:///nonexistent-iocfleet-test.sock",
    }


def limit_note() -> str:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return f"RLIMIT_NOFILE={soft}"
