"""Fixtures and helpers for tests that run the IOC programs and images (movable to conftest).

Network safety: every server binds 127.0.0.1 on a port picked from 27000–27999, beacons go to
127.255.255.255 on a port of that range, and every client searches 127.0.0.1 on that port only.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from orchestrator.images import build as images
from ports import free_port

TEST_FLEET = "test-images"
LABELS = {"org.iocfleet.fleet": TEST_FLEET}
PORT_RANGE = (27000, 27998)
READY_TIMEOUT_S = 30.0


def free_port_pair(rng: random.Random | None = None) -> int:
    """A port p such that p (CA server) and p+1 (beacons, repeater) are free on loopback, UDP and TCP."""
    return free_port(*PORT_RANGE, address="127.0.0.1", with_next=True, rng=rng)


def server_env(port: int) -> dict[str, str]:
    """The EPICS environment of one test IOC: loopback only, beacons to loopback broadcast."""
    return {
        "EPICS_CAS_INTF_ADDR_LIST": "127.0.0.1",
        "EPICS_CA_SERVER_PORT": str(port),
        "EPICS_CAS_SERVER_PORT": str(port),
        "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
        "EPICS_CAS_BEACON_ADDR_LIST": "127.255.255.255",
        "EPICS_CAS_BEACON_PORT": str(port + 1),
        "EPICS_CA_REPEATER_PORT": str(port + 1),
        # the IOC's own CA client (rsrv's dbCa) must not search anywhere else either
        "EPICS_CA_AUTO_ADDR_LIST": "NO",
        "EPICS_CA_ADDR_LIST": "127.0.0.1",
    }


def client_env(port: int) -> dict[str, str]:
    """The EPICS environment of a test client of one IOC on `port`."""
    return {
        "EPICS_CA_AUTO_ADDR_LIST": "NO",
        "EPICS_CA_ADDR_LIST": "127.0.0.1",
        "EPICS_CA_SERVER_PORT": str(port),
        "EPICS_CA_REPEATER_PORT": str(port + 1),
        "EPICS_CA_MAX_ARRAY_BYTES": "2000000",
    }


def sample_ioc(prefix: str) -> dict:
    """An IOC with a PV of every type, two arrays and two simulated PVs."""
    return {
        "name": "imgtest",
        "prefix": prefix,
        "pvs": [
            {"name": "F", "type": "float", "value": 1.5},
            {"name": "I", "type": "int", "value": 7},
            {"name": "S", "type": "str", "value": "hello"},
            {"name": "E", "type": "enum", "value": "on", "enum_strings": ["off", "on", "fault"]},
            {"name": "FA", "type": "float", "count": 10000, "value": None},
            {"name": "IA", "type": "int", "count": 8, "value": [1, 2, 3, 4, 5, 6, 7, 8]},
            {"name": "SINE", "type": "float", "sim": "sine", "rate_hz": 10.0},
            {"name": "CNT", "type": "int", "sim": "counter", "rate_hz": 10.0},
        ],
    }


def kill_our_repeaters(port: int) -> None:
    """Stop CA repeaters a client of this test spawned on `port`+1 (found by pid, never by name)."""
    me = os.getuid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != me:
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"epeater" in cmdline and f"EPICS_CA_REPEATER_PORT={port + 1}".encode() in environ:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), 15)


@contextlib.contextmanager
def host_ioc(runtime: str, ioc: dict | None, port: int, extra_env: dict | None = None):
    """Run one IOC program as a plain host process; yield (process, serving line); always stop it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EPICS_", "IOCFLEET_"))}
    env.update(server_env(port))
    if ioc is not None:
        env["IOCFLEET_IOC"] = json.dumps(ioc)
    env.update(extra_env or {})
    proc = subprocess.Popen(images.program_argv(runtime), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        line = _wait_for_serving(proc)
        yield proc, line
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        kill_our_repeaters(port)


def _wait_for_serving(proc: subprocess.Popen) -> str:
    # A thread drains stdout for the whole life of the process (so the pipe never fills) and hands
    # lines over a queue, so waiting for the serving line has a real deadline.
    lines: queue.Queue = queue.Queue()

    def drain() -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=drain, daemon=True).start()
    deadline = time.monotonic() + READY_TIMEOUT_S
    seen = []
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"IOC not serving after {READY_TIMEOUT_S} s: {''.join(seen)}") from None
        if line is None:
            raise AssertionError(f"IOC exited ({proc.wait(timeout=5)}) before serving: {''.join(seen)}")
        seen.append(line)
        if "serving" in line:
            return line


@pytest.fixture(scope="session")
def docker_client():
    docker = pytest.importorskip("docker")
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:  # no engine: the docker-marked tests are skipped, not failed
        pytest.skip(f"Docker Engine not reachable: {exc}")
    yield client
    remove_test_containers(client)
    client.close()


def remove_test_containers(client) -> None:
    for container in client.containers.list(all=True, filters={"label": f"org.iocfleet.fleet={TEST_FLEET}"}):
        with contextlib.suppress(Exception):
            container.remove(force=True)


@pytest.fixture(scope="session")
def built_images(docker_client):
    """Both IOC images, built (or found up to date) once per session."""
    built = images.build_images(images.RUNTIMES, client=docker_client)
    return {b.runtime: b for b in built}


@contextlib.contextmanager
def container_ioc(client, runtime: str, ioc: dict, port: int, image: str | None = None):
    """Run one IOC image with host networking and the hardening kwargs; yield it serving; remove it."""
    env = server_env(port)
    env["IOCFLEET_IOC"] = json.dumps(ioc)
    container = client.containers.run(image or images.image_tag(runtime), detach=True,
                                      network_mode="host", environment=env, labels=dict(LABELS),
                                      **images.container_hardening(runtime))
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            container.reload()
            logs = container.logs().decode(errors="replace")
            if "serving" in logs:
                break
            if container.status == "exited":
                raise AssertionError(f"{runtime} container exited: {logs}")
            time.sleep(0.1)
        else:
            raise AssertionError(f"{runtime} container not serving after {READY_TIMEOUT_S} s: {logs}")
        yield container
    finally:
        with contextlib.suppress(Exception):
            container.remove(force=True)


def run_pyepics(script: str, port: int, args: dict, timeout: float = 60.0) -> dict:
    """Run a pyepics (libca) client script in its own process, so libca reads only this env."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPICS_")}
    env.update(client_env(port))
    result = subprocess.run([sys.executable, "-c", script, json.dumps(args)], env=env,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"pyepics client failed: {result.stderr[-2000:]}"
    try:
        kill_our_repeaters(port)
        return json.loads(result.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        raise AssertionError(f"pyepics client printed no JSON: {result.stdout[-2000:]} {result.stderr[-2000:]}")
