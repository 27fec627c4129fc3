"""The console protocol: one marked line in, output and status back; quoting; refusals for caproto."""

from __future__ import annotations

import io
import socket
import sys
import threading

import pytest

from orchestrator.errors import UsageError
from orchestrator.images.build import ioc_images_root
from orchestrator.run.backends import Instance
from orchestrator.run.console import check_console, command_line, exec_command, exit_status


def _console_module():
    common = str(ioc_images_root() / "common")
    sys.path.insert(0, common)
    try:
        from iocfleet_ioc import console
    finally:
        sys.path.remove(common)
    return console


def serve_on(sock, run, echo: bool):
    """The IOC side on one end of a socketpair, optionally echoing input like a terminal does."""
    console = _console_module()
    reader = sock.makefile("r", newline="")

    class Echo(io.TextIOBase):
        def readline(self):
            line = reader.readline()
            if echo and line:
                sock.sendall(line.replace("\n", "\r\n").encode())
            return line

    class Out(io.TextIOBase):
        def write(self, text):
            try:
                sock.sendall(text.replace("\n", "\r\n").encode())
            except OSError:  # the client hung up; the next readline sees the end
                pass
            return len(text)

    import signal

    original = signal.getsignal(signal.SIGTERM)
    try:
        console.serve(run, "ioc > ", Echo(), Out())
    finally:
        signal.signal(signal.SIGTERM, original)


@pytest.mark.parametrize("echo", [True, False])
def test_exec_returns_the_output_and_status_of_one_command(echo):
    ran = []

    def run(line):
        ran.append(line)
        if line == "dbl":
            ours.sendall(b"A:X\r\nA:Y\r\n")
            return 0
        ours.sendall(b"\x1b[31;1mCommand 'bad' not registered.\x1b[0m\r\n")
        return -1

    client, ours = socket.socketpair()
    # serve() installs a SIGTERM handler, which only the main thread may do: run the client in a thread
    results = {}

    def talk():
        results["ok"] = exec_command(client, "dbl", timeout=5)
        results["bad"] = exec_command(client, "bad", timeout=5)
        client.close()

    thread = threading.Thread(target=talk)
    thread.start()
    serve_on(ours, run, echo)
    thread.join(10)
    assert results["ok"] == ("A:X\nA:Y", 0)
    assert results["bad"] == ("Command 'bad' not registered.", -1)
    assert ran == ["dbl", "bad"]


def test_words_are_quoted_for_iocsh_and_statuses_map_to_exit_codes():
    assert command_line(["dbpr", "BL:X", "2"]) == "dbpr BL:X 2"
    assert command_line(["dbpf", "BL:S", "two words"]) == 'dbpf BL:S "two words"'
    assert command_line(["echo", 'say "hi"']) == 'echo "say \\"hi\\""'
    with pytest.raises(UsageError):
        command_line([])
    with pytest.raises(UsageError):
        command_line(["dbl\nrm"])
    assert [exit_status(s) for s in (0, -1, 1, 300)] == [0, 1, 1, 1]


@pytest.mark.parametrize("runtime,role,state,words", [
    ("caproto", "ioc", "running", "no IOC shell (iocsh)"), ("image", "ioc", "running", "its own image"),
    ("caproto", "repeater", "running", "repeater"), ("softioc", "ioc", "exited", "is exited")])
def test_iocs_without_a_shell_are_refused_with_what_to_do(runtime, role, state, words):
    instance = Instance("f", "x", role, runtime, state, "h")
    with pytest.raises(UsageError) as caught:
        check_console(instance)
    assert words in caught.value.line() and caught.value.fix
    check_console(Instance("f", "x", "ioc", "softioc", "running", "h"))
