"""Faults during and after `up`, on the real engine and as local processes (docs/reliability.md).

Every fleet serves on loopback (base ports 31100-31399, PV prefixes REL...), runs under the test's own
XDG_STATE_HOME, and is brought down by label/state in teardown, also when the test failed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from cli_run import (iocfleet, iocfleet_json, labelled_containers, pyepics_read, start_up, supervisors,
                     write_fleet)

pytestmark = [pytest.mark.slow]

BACKENDS = [pytest.param("docker", marks=pytest.mark.docker), "process"]


def instance_count(backend: str, state: Path, fleet: str) -> int:
    """Instances of the fleet that exist, counted where the backend keeps them (labels / live supervisors)."""
    if backend == "docker":
        return len(labelled_containers(fleet))
    return len(supervisors(state, fleet))


def ioc(name: str, prefix: str, **extra) -> dict:
    return {"name": name, "runtime": "caproto", "prefix": prefix, "pvs": [{"name": "V", "value": 1.0}], **extra}


def without_repeater(ids_or_instances) -> list:
    return [i for i in ids_or_instances if i.get("name") != "ca-repeater"]


# -- an IOC that crashes at start, in a loop -----------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_crash_loop_restarts_with_backoff_then_up_fails_fast_naming_it_and_rolls_back(tmp_path, state, teardown,
                                                                                       backend):
    """An IOC whose Python refuses to start (exit 1), every time. (This used `EPICS_CAS_BEACON_PERIOD: soon`,
    which `validate` now refuses, issue 13 class 11.) Docker: the container gets PYTHONHASHSEED=bogus, a
    fatal error of its python3. Process: a sitecustomize on the caller's PYTHONPATH exits 1 in the crash
    IOC's program only (its supervisor, also Python, runs normally)."""
    fleet = f"relcrash-{backend}"
    crash_env = {"PYTHONHASHSEED": "bogus"} if backend == "docker" else {}
    iocs = [ioc("good", "RELCR:G:"), ioc("crash", "RELCR:C:", env=crash_env)]
    path = write_fleet(tmp_path / "fleet.yaml", fleet, iocs, base_port=31110 if backend == "docker" else 31112)
    teardown.append((fleet, backend))
    caller_env = None
    if backend == "process":
        site = tmp_path / "site"
        site.mkdir()
        (site / "sitecustomize.py").write_text(
            "import os, sys\n"
            "cmd = open('/proc/self/cmdline', 'rb').read()\n"
            "if b'orchestrator.run.supervise' not in cmd and '\"name\":\"crash\"' in os.environ.get('IOCFLEET_IOC', ''):\n"
            "    print('iocfleet-test: crash at start', file=sys.stderr, flush=True)\n"
            "    os._exit(1)\n")
        caller_env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}

    start = time.monotonic()
    proc = iocfleet("up", str(path), "--backend", backend, "--timeout", "120", state=state, input_env=caller_env)
    elapsed = time.monotonic() - start
    assert proc.returncode == 5, proc.stderr
    assert "crash (exited, exit code 1)" in proc.stderr
    assert "PYTHONHASHSEED" in proc.stderr or "iocfleet-test: crash at start" in proc.stderr
    assert elapsed < 90, f"up waited {elapsed:.0f} s: it should give up once the IOC exited for good"
    assert instance_count(backend, state, fleet) == 0, "rollback left instances"

    kept = iocfleet("up", str(path), "--backend", backend, "--timeout", "120", "--keep-on-failure", state=state,
                    input_env=caller_env)
    assert kept.returncode == 5
    status = {i["name"]: i for i in iocfleet_json("status", fleet, "--backend", backend, state=state)["iocs"]}
    assert status["crash"]["state"] == "exited"
    assert status["crash"]["exit_code"] == 1
    assert status["crash"]["restarts"] == 5  # on-failure: 5 retries, then given up (docker and supervisor alike)
    assert status["good"]["state"] == "running"
    print(f"\n[{backend}] crash loop: up exit 5 after {elapsed:.1f} s; restarts={status['crash']['restarts']}")


# -- the Docker Engine goes away in the middle of `up` ---------------------------------------------------
class EngineProxy:
    """A unix socket forwarding to the real engine socket that the test can cut at any moment."""

    def __init__(self, path: Path, target: str = "/var/run/docker.sock") -> None:
        self.path, self.target = path, target
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(64)
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self.target)
            with self.lock:
                if self.closed:
                    client.close()
                    upstream.close()
                    return
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        with self.lock:
            self.closed = True
            conns = list(self.conns)
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        self.path.unlink(missing_ok=True)
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


@pytest.mark.docker
def test_engine_gone_mid_up_is_exit_4_and_the_next_up_adopts_without_duplicates(tmp_path, state, teardown):
    fleet = "relcut"
    iocs = [ioc("c", "RELCUT:{i}:", replicas=5)]
    path = write_fleet(tmp_path / "fleet.yaml", fleet, iocs, base_port=31120)
    teardown.append((fleet, "docker"))
    proxy = EngineProxy(tmp_path / "engine.sock")
    up, seen = start_up(path, "docker", state, until="starting c-",
                        extra_env={"DOCKER_HOST": f"unix://{tmp_path / 'engine.sock'}"})
    try:
        proxy.cut()
        rest = up.communicate(timeout=120)[1]
    finally:
        proxy.cut()
        if up.poll() is None:
            up.kill()
    stderr = "".join(seen) + rest
    assert up.returncode == 4, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("iocfleet: error: Docker Engine error") and "(docker)" in last, last
    assert "internal error" not in stderr
    left = len(labelled_containers(fleet))

    again = iocfleet_json("up", str(path), "--backend", "docker", "--timeout", "120", state=state)
    assert again["ready"] is True
    names = sorted(i["name"] for i in again["iocs"])
    assert names == [f"c-{i}" for i in range(1, 6)]
    ids = labelled_containers(fleet)
    assert len(ids) == len(set(ids)) <= 6  # 5 IOCs and at most one repeater: nothing twice
    iocs_by_label = subprocess.run(["docker", "ps", "-a", "--filter", f"label=org.iocfleet.fleet={fleet}",
                                    "--filter", "label=org.iocfleet.role=ioc", "--format", "{{.Names}}"],
                                   capture_output=True, text=True, check=True).stdout.split()
    assert sorted(iocs_by_label) == [f"iocfleet-{fleet}-c-{i}" for i in range(1, 6)]
    print(f"\nengine cut: {left} container(s) left behind, next up: diff {again['diff']}")


# -- kill -9 of iocfleet during `up` -------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_kill_9_during_up_then_up_again_adopts_with_no_duplicates(tmp_path, state, teardown, backend):
    fleet = f"relkill-{backend}"
    iocs = [ioc("k", "RELKILL:{i}:", replicas=6)]
    path = write_fleet(tmp_path / "fleet.yaml", fleet, iocs, base_port=31130 if backend == "docker" else 31132)
    teardown.append((fleet, backend))
    up, _ = start_up(path, backend, state, until="starting k-")
    try:
        deadline = time.monotonic() + 30  # kill once some (not all) instances exist: a half-started fleet
        while instance_count(backend, state, fleet) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        up.send_signal(signal.SIGKILL)
        up.wait(timeout=30)
    finally:
        if up.poll() is None:
            up.kill()
    assert up.returncode == -signal.SIGKILL
    orphans = instance_count(backend, state, fleet)
    assert orphans >= 2, "the kill should land in the middle of starting"

    again = iocfleet_json("up", str(path), "--backend", backend, "--timeout", "120", state=state)
    assert again["ready"] is True
    assert sorted(i["name"] for i in again["iocs"]) == [f"k-{i}" for i in range(1, 7)]
    status = iocfleet_json("status", fleet, "--backend", backend, state=state)["iocs"]
    iocs_now = [i for i in status if i["role"] == "ioc"]
    assert sorted(i["name"] for i in iocs_now) == [f"k-{i}" for i in range(1, 7)]
    assert all(i["state"] == "running" for i in iocs_now)
    # No duplicates: one live IOC process per IOC (pids distinct), and instances counted where they live.
    pids = [i["pid"] for i in iocs_now]
    assert len(set(pids)) == 6 and all(pids)
    assert instance_count(backend, state, fleet) == len(status) <= 7
    values = pyepics_read([f"RELKILL:{i}:V" for i in range(1, 7)], again["client_env"])
    assert all(v == 1.0 for v in values.values()), values
    print(f"\n[{backend}] kill -9: {orphans} instance(s) survived; next up diff {again['diff']}")


# -- a foreign socket takes the fleet's UDP port between plan and launch -----------------------------------
class PortThief:
    """A backend wrapper that binds the fleet's UDP port without reuse right after the plan was made."""

    def __init__(self, backend, port: int) -> None:
        self._backend, self._port = backend, port
        self.sock: socket.socket | None = None

    def __getattr__(self, name):
        return getattr(self._backend, name)

    def prepare(self, iocs, progress=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", self._port))  # no SO_REUSEADDR / SO_REUSEPORT
        return self._backend.prepare(iocs, progress)


@pytest.mark.parametrize("runtime,timeout", [("caproto", 120), ("softioc", 20)])
@pytest.mark.parametrize("backend", BACKENDS)
def test_port_taken_between_plan_and_launch_is_reported_and_nothing_leaks(tmp_path, state, teardown, monkeypatch,
                                                                         backend, runtime, timeout):
    from orchestrator import spec
    from orchestrator.run.backends import select
    from orchestrator.errors import ReadinessTimeout
    from orchestrator.run.service import up_spec

    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    port = {("docker", "caproto"): 31140, ("docker", "softioc"): 31142,
            ("process", "caproto"): 31144, ("process", "softioc"): 31146}[(backend, runtime)]
    fleet = spec.from_dict({"fleet": f"relthief-{backend}-{runtime}",
                            "network": {"interface": "lo", "base_port": port},
                            "iocs": [ioc("t", f"RELTH:{runtime}:", runtime=runtime)]})
    teardown.append((fleet.name, backend))
    real = select(backend)
    thief = PortThief(real, port)
    try:
        start = time.monotonic()
        with pytest.raises(ReadinessTimeout) as err:
            up_spec(fleet, thief, timeout=timeout)
        elapsed = time.monotonic() - start
        text = err.value.line()
        assert err.value.exit_code == 5
        assert "t (" in text and f"RELTH:{runtime}:V" in text
        if runtime == "caproto":  # caproto exits 1 on EADDRINUSE, is restarted 5 times, then given up
            assert "exit code 1" in text and "Address already in use" in text, text
            assert elapsed < 90
        # softioc stays alive without finishing iocInit (rules-evidence R1): only the timeout ends the wait
        assert real.instances(fleet.name) == []
        assert instance_count(backend, state, fleet.name) == 0
    finally:
        if thief.sock:
            thief.sock.close()
    print(f"\n[{backend}/{runtime}] port thief: exit 5 after {elapsed:.1f} s")


def test_port_held_before_up_is_refused_by_the_plan(tmp_path, state, teardown):
    fleet = "relheld"
    path = write_fleet(tmp_path / "fleet.yaml", fleet, [ioc("h", "RELHELD:")], base_port=31150)
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind(("127.0.0.1", 31150))
    try:
        proc = iocfleet("up", str(path), "--backend", "process", state=state)
    finally:
        holder.close()
    assert proc.returncode == 3, proc.stderr
    assert "port-held-without-reuse" in proc.stderr.strip().splitlines()[-1]
    assert not (state / "iocfleet" / "fleets" / fleet).exists()


# -- two `up` of one fleet at the same time ------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_second_concurrent_up_is_refused_by_the_lock(tmp_path, state, teardown, backend):
    fleet = f"rellock-{backend}"
    path = write_fleet(tmp_path / "fleet.yaml", fleet, [ioc("l", "RELLOCK:{i}:", replicas=3)],
                       base_port=31160 if backend == "docker" else 31162)
    teardown.append((fleet, backend))
    first, _ = start_up(path, backend, state, until="starting l-1")
    try:
        second = iocfleet("up", str(path), "--backend", backend, state=state)
        first_rest = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert second.returncode == 3, second.stderr
    last = second.stderr.strip().splitlines()[-1]
    assert f"iocfleet: error: fleet '{fleet}' is busy: `iocfleet up` pid {first.pid}" in last, last
    assert first.returncode == 0, first_rest[1]
    assert instance_count(backend, state, fleet) <= 4  # 3 IOCs (+ repeater): the second started nothing
    names = [i["name"] for i in iocfleet_json("status", fleet, "--backend", backend, state=state)["iocs"]
             if i["role"] == "ioc"]
    assert sorted(names) == ["l-1", "l-2", "l-3"]
