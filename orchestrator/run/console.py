"""`iocfleet attach` and `iocfleet exec`: the IOC shell (iocsh) of a softioc IOC, through its backend.

The backend gives a connected socket to the IOC's terminal: the engine's attach stream of the container's
TTY (docker), or the pty its supervisor keeps (processes). `exec` sends one marked command line and
returns the output between the IOC's `TOKEN:begin` and `TOKEN:exit=STATUS` lines (ioc_images/common/iocfleet_ioc/console.py);
`attach` joins the terminal to the socket until Ctrl-P Ctrl-Q or Ctrl-] (or, without a terminal, until
stdin ends). caproto IOCs have no iocsh.
"""

from __future__ import annotations

import os
import re
import secrets
import select
import socket
import sys
import time

from orchestrator.errors import IocfleetError, UsageError

EXEC_MARK = "__iocfleet_exec__"
DETACH = (b"\x10\x11", b"\x1d")  # Ctrl-P Ctrl-Q (docker's default), Ctrl-] (telnet, procServ)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def check_console(instance) -> None:
    """Refuse IOCs without an IOC shell, with what to do instead."""
    if instance.role != "ioc":
        raise UsageError(f"{instance.name!r} is the fleet's CA repeater, not an IOC", instance.name,
                         "name an IOC of the fleet (`iocfleet status FLEET`)")
    if instance.runtime == "caproto":
        raise UsageError(f"IOC {instance.name!r} runs caproto, which has no IOC shell (iocsh): there is nothing "
                         "to attach to or run dbl/dbpr/casr in", instance.name,
                         "read and write its PVs over CA (caproto-get/caproto-put, caget/caput) and watch its "
                         "iocStats PVs (NAME:HEARTBEAT, NAME:UPTIME); `iocfleet logs FLEET IOC` shows its output")
    if instance.runtime != "softioc":
        raise UsageError(f"IOC {instance.name!r} runs its own image: iocfleet does not know its shell", instance.name,
                         "use `docker attach` if the image was made with a TTY")
    if not instance.running:
        raise UsageError(f"IOC {instance.name!r} is {instance.state}", instance.name,
                         "start it (`iocfleet up FLEET` or `iocfleet restart FLEET IOC`), then try again")


def command_line(words: tuple[str, ...] | list[str]) -> str:
    """iocsh words as one line: words with spaces or quotes are double-quoted."""
    if not words:
        raise UsageError("no command given", "exec", "write the iocsh command after --, e.g. -- dbl")
    out = []
    for word in words:
        if "\n" in word or "\r" in word:
            raise UsageError("a command word contains a line break", "exec", "give one iocsh command line")
        out.append('"' + word.replace('"', '\\"') + '"' if (not word or re.search(r'[\s"#]', word)) else word)
    return " ".join(out)


def exec_command(sock, line: str, timeout: float = 10.0) -> tuple[str, int]:
    """Run one iocsh line on the console behind `sock`: (output, iocsh status)."""
    token = "T" + secrets.token_hex(6)
    sock.sendall(f"{EXEC_MARK} {token} {line}\n".encode())
    end = re.compile(rf"(?:^|\n){token}:exit=(-?\d+)\r?\n")
    data, deadline = "", time.monotonic() + timeout
    while True:
        match = end.search(data)
        if match:
            break
        left = deadline - time.monotonic()
        if left <= 0:
            raise IocfleetError(f"no answer from the IOC shell within {timeout:g} s", "exec",
                                "a long command needs --timeout; check `iocfleet logs FLEET IOC`")
        ready, _, _ = select.select([sock], [], [], left)
        if ready:
            chunk = sock.recv(65536)
            if not chunk:
                raise IocfleetError("the console closed before the command finished", "exec",
                                    "check `iocfleet status FLEET`: the IOC may have restarted")
            data += chunk.decode(errors="replace")
    body = data[:match.start()]
    begin = re.search(rf"(?:^|\n){token}:begin\r?\n", body)  # after the echo of our line and any prompt
    if begin:
        body = body[begin.end():]
    text = _ANSI.sub("", body.replace("\r", "")).strip("\n")
    return text, int(match.group(1))


def exit_status(status: int) -> int:
    """The process exit status for an iocsh status: 0 stays 0, anything else is 1 (iocsh says -1)."""
    return 0 if status == 0 else (status if 0 < status < 126 else 1)


def attach(sock, stdin=None, stdout=None, grace: float = 1.0) -> str:
    """Join the terminal (or a pipe) to the console until a detach key, the console closing, or (not a
    terminal) stdin ending plus `grace` seconds of output. Returns why it ended."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    in_fd, out_fd = stdin.fileno(), stdout.fileno()
    terminal = os.isatty(in_fd)
    saved = None
    if terminal:
        import termios
        import tty

        saved = termios.tcgetattr(in_fd)
        tty.setraw(in_fd)
    try:
        sock.sendall(b"\n")  # a fresh prompt
        return _pump(sock, in_fd, out_fd, terminal, grace)
    finally:
        if saved is not None:
            import termios

            termios.tcsetattr(in_fd, termios.TCSADRAIN, saved)


def _pump(sock, in_fd: int, out_fd: int, terminal: bool, grace: float) -> str:
    watching = [sock, in_fd]
    previous = b""
    stop_at = None
    while True:
        timeout = None if stop_at is None else max(0.0, stop_at - time.monotonic())
        ready, _, _ = select.select(watching, [], [], timeout)
        if not ready and stop_at is not None:
            return "end of input"
        if sock in ready:
            try:
                chunk = sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                return "console closed"
            os.write(out_fd, chunk)
        if in_fd in ready:
            data = os.read(in_fd, 4096)
            if not data:
                watching.remove(in_fd)
                stop_at = time.monotonic() + grace
                continue
            pair = previous + data
            if any(key in pair for key in DETACH):
                return "detached"
            previous = data[-1:]
            try:
                sock.sendall(data if terminal else data.replace(b"\r\n", b"\n"))
            except OSError:
                return "console closed"


def open_console(backend, instance):
    """The backend's console socket of a softioc IOC (UsageError for any other)."""
    check_console(instance)
    opener = getattr(backend, "console", None)
    if opener is None:
        raise UsageError(f"the {backend.name} backend has no consoles", "--backend", "use docker or process")
    sock = opener(instance)
    if isinstance(sock, socket.socket):
        sock.setblocking(True)
    return sock
