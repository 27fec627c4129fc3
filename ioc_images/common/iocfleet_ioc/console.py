"""The IOC shell console of a softioc IOC: iocsh command lines read from a terminal, one prompt per command.

The softioc program serves it when its stdin is a terminal: the container's TTY (docker, `tty` and
`stdin_open`) or the pty the process backend's supervisor keeps. Each line is run by EPICS base's iocsh
(`iocshCmd`: `dbl`, `dbpr NAME 2`, `casr 1`, `dbgf`, `dbpf`, ...). `iocfleet exec` sends one line
`__iocfleet_exec__ TOKEN COMMAND` and reads the output between `TOKEN:begin` and `TOKEN:exit=STATUS`.
Ctrl-C does not stop the IOC; SIGTERM does. Standard library only, except `iocsh_runner`, which the softioc program calls.
"""

from __future__ import annotations

import signal
import sys
from typing import Callable, TextIO

EXEC_MARK = "__iocfleet_exec__"


def iocsh_runner() -> Callable[[str], int]:
    """`run(line) -> status` with EPICS base's iocsh (libCom from epicscorelibs; softioc images only)."""
    import ctypes

    from epicscorelibs.path import get_lib

    com = ctypes.CDLL(get_lib("Com"))
    com.iocshCmd.argtypes = [ctypes.c_char_p]
    com.iocshCmd.restype = ctypes.c_int
    libc = ctypes.CDLL(None)

    def run(line: str) -> int:
        status = com.iocshCmd(line.encode())
        libc.fflush(None)  # iocsh prints through C stdio: out before our marker and prompt
        return int(status)

    return run


def serve(run: Callable[[str], int], prompt: str, stdin: TextIO | None = None, stdout: TextIO | None = None) -> None:
    """Read and run command lines until stdin ends; SIGTERM ends it with SystemExit(0)."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout

    def terminate(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, terminate)
    while True:
        stdout.write(prompt)
        stdout.flush()
        try:
            line = stdin.readline()
        except KeyboardInterrupt:  # Ctrl-C on the console: a new prompt, the IOC keeps running
            stdout.write("^C\n")
            continue
        if not line:
            return
        text = line.strip()
        if text.startswith(EXEC_MARK + " "):
            _, token, command = (text.split(" ", 2) + [""])[:3]
            stdout.write(f"\n{token}:begin\n")
            stdout.flush()
            status = run(command) if command else 0
            stdout.write(f"\n{token}:exit={status}\n")
        elif text in ("exit", "quit"):
            stdout.write("the IOC keeps running; detach with Ctrl-P Ctrl-Q (or Ctrl-])\n")
        elif text:
            status = run(text)
            if status:
                stdout.write(f"(status {status})\n")
        stdout.flush()
