"""Supervise one IOC process for the process backend: run it, record its state, restart with backoff.

Run as `python -m orchestrator.run.supervise --state FILE --restart POLICY -- ARGV...` in its own session,
so the IOC outlives the `iocfleet` command that started it. The state file (JSON, replaced atomically)
holds the IOC's pid, restarts and last exit code; `iocfleet status` reads it. SIGTERM stops the IOC
and the supervisor. With `--console NAME` (softioc IOCs) the IOC runs on a pty the supervisor keeps, like
procServ: its output goes to the log and to `iocfleet attach`/`exec` clients of the socket NAME.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

MAX_RESTARTS = 5  # on-failure gives up after this many restarts, like docker's MaximumRetryCount
BACKOFF_FIRST, BACKOFF_MAX = 0.2, 10.0


def exit_code_of(returncode: int) -> int:
    """Shell/docker convention: a signal N shows as 128+N."""
    return returncode if returncode >= 0 else 128 - returncode


def should_restart(policy: str, code: int, restarts: int) -> bool:
    if policy == "always":
        return True
    if policy == "on-failure":
        return code != 0 and restarts < MAX_RESTARTS
    return False


def backoff(restarts: int) -> float:
    return min(BACKOFF_FIRST * 2 ** restarts, BACKOFF_MAX)


def update(path: Path, **changes) -> dict:
    # The supervisor and `iocfleet up` update one state file at the same moment right after a start: an
    # flock on its directory keeps each read-modify-write whole (else one side's keys were lost, leaving
    # a running IOC shown as "created" or "exited"), and a per-process temporary name keeps their writes apart.
    from orchestrator.run import statedir

    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            data = json.loads(statedir.read_text(path))
        except FileNotFoundError:
            data = {}
        except (OSError, ValueError):
            data = {}
        if not isinstance(data, dict):
            data = {}
        data.update(changes)
        statedir.write_atomic(path, json.dumps(data, indent=1))
    finally:
        os.close(fd)
    return data


def serve_console(name: str, log_fd: int = 1) -> int:
    """A pty for the IOC's stdin/stdout/stderr, kept for the supervisor's lifetime (across restarts), and
    a relay thread: the IOC's output goes to the log (fd `log_fd`) and to every connected console client;
    what clients send goes to the IOC. Clients connect to the abstract unix socket `name` (no file, no
    port) and must run as this user or root (SO_PEERCRED). Returns the pty's slave fd for the IOC."""
    import pty
    import select
    import socket
    import struct
    import threading

    master, slave = pty.openpty()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind("\0" + name)
    server.listen(8)
    allowed = {0, os.getuid()}

    def relay() -> None:
        clients: list[socket.socket] = []
        while True:
            ready, _, _ = select.select([master, server, *clients], [], [], 1.0)
            for item in ready:
                if item is master:
                    try:
                        data = os.read(master, 65536)
                    except OSError:  # no IOC holds the slave right now (between restarts)
                        time.sleep(0.1)
                        continue
                    os.write(log_fd, data.replace(b"\r\n", b"\n"))
                    for client in list(clients):
                        try:
                            client.sendall(data)
                        except OSError:
                            clients.remove(client)
                            client.close()
                elif item is server:
                    conn, _ = server.accept()
                    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
                    _, uid, _ = struct.unpack("3i", creds)
                    if uid in allowed:
                        clients.append(conn)
                    else:
                        conn.close()
                else:
                    try:
                        data = item.recv(4096)
                    except OSError:
                        data = b""
                    if data:
                        os.write(master, data)
                    else:
                        clients.remove(item)
                        item.close()

    threading.Thread(target=relay, name="console-relay", daemon=True).start()
    return slave


def run(state: Path, policy: str, argv: list[str], console: str | None = None) -> int:
    stopping = False
    child: subprocess.Popen | None = None
    slave = serve_console(console) if console else None
    if console:
        update(state, console=console)

    def stop(signum, frame):
        nonlocal stopping
        stopping = True
        if child and child.poll() is None:
            child.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    restarts = 0
    code = 0
    while not stopping:
        if slave is None:
            child = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        else:
            child = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave)
        update(state, supervisor_pid=os.getpid(), pid=child.pid, state="running", restarts=restarts,
               started=time.time())
        code = exit_code_of(child.wait())
        if stopping:
            break
        print(f"iocfleet-supervise: IOC exited with code {code}", file=sys.stderr, flush=True)
        if not should_restart(policy, code, restarts):
            break
        update(state, state="restarting", exit_code=code, pid=None)
        delay = backoff(restarts)
        restarts += 1
        deadline = time.monotonic() + delay
        while not stopping and time.monotonic() < deadline:
            time.sleep(0.05)
    update(state, state="exited", exit_code=code, pid=None, restarts=restarts)
    return 0


def main(args=None) -> int:
    parser = argparse.ArgumentParser(prog="iocfleet-supervise")
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--restart", choices=("no", "on-failure", "always"), default="on-failure")
    parser.add_argument("--console", metavar="NAME", help="keep a pty console, served on abstract socket NAME")
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    ns = parser.parse_args(args)
    argv = ns.argv[1:] if ns.argv[:1] == ["--"] else ns.argv
    if not argv:
        parser.error("nothing to run")
    return run(ns.state, ns.restart, argv, ns.console)


if __name__ == "__main__":
    sys.exit(main())
