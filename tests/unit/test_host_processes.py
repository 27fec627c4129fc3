"""host.py answers what the backends and the doctor used to ask psutil themselves: real processes only."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from orchestrator import host

LISTENER = ("import socket, sys, time; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); "
            "print(s.getsockname()[1], flush=True); time.sleep(60)")


def _spawn(code: str, env=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)


def test_listening_port_of_a_process_and_of_its_parent_with_children():
    shell = _spawn(f"import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', {LISTENER!r}]); p.wait()")
    family: tuple[int, ...] = ()
    try:
        # The grandchild prints its port through the inherited stdout.
        port = int(shell.stdout.readline())
        family = host.process_family(shell.pid)
        assert len(family) == 2 and family[0] == shell.pid
        child = family[1]
        assert host.listening_port(child) == port
        assert host.listening_port(shell.pid) is None  # the parent itself listens on nothing
        assert host.listening_port(shell.pid, with_children=True) == port
        assert os.getpid() in host.process_family(shell.pid, with_parent=True)
    finally:
        for pid in family[1:]:
            os.kill(pid, 9)
        shell.kill()
        shell.wait()


def test_a_gone_process_is_not_alive_and_has_no_family_or_port():
    proc = _spawn("pass")
    proc.wait()
    assert not host.alive(proc.pid)
    assert host.process_family(proc.pid) == (proc.pid,)
    assert host.listening_port(proc.pid) is None
    assert host.process_info(proc.pid) is None


def test_alive_tells_a_reused_pid_by_its_start_time():
    proc = _spawn("import time; time.sleep(60)")
    try:
        started = host.started_at(proc.pid)
        assert started is not None
        assert host.alive(proc.pid) and host.alive(proc.pid, started)
        assert not host.alive(proc.pid, started - 100)  # another process that once had this pid
    finally:
        proc.kill()
        proc.wait()


def test_process_info_reads_command_line_user_and_only_epics_variables():
    env = {**os.environ, "EPICS_CA_ADDR_LIST": "127.0.0.1", "NOT_EPICS": "x"}
    proc = _spawn("import time; time.sleep(60)", env=env)
    try:
        info = None
        for _ in range(100):  # the exec must have happened before the command line is the child's
            info = host.process_info(proc.pid)
            if info and "-c" in info.cmdline:
                break
        assert info is not None and info.pid == proc.pid
        assert info.cmdline[0] == sys.executable and "-c" in info.cmdline
        assert info.uid == os.geteuid()
        assert ("EPICS_CA_ADDR_LIST", "127.0.0.1") in info.epics_environ
        assert all(k.startswith("EPICS_") for k, _ in info.epics_environ)
    finally:
        proc.kill()
        proc.wait()


def test_listening_port_of_this_process():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        mine = host.listening_port(os.getpid())
        assert mine is not None and mine <= s.getsockname()[1]
