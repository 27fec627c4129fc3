"""The exported compose file, run by the real docker-compose: every PV readable with the plan's client settings.

Network safety: the fleet is planned on `lo` (shared-port, a free base port in 29000-29999), so IOCs bind
0.0.0.0 but beacon to and are searched at 127.255.255.255 only; the libca client gets exactly the plan's
client settings. Containers are found and removed by label in `finally`, also when the test fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from orchestrator.images import build as images
from orchestrator.plan import planner
from orchestrator import spec
from orchestrator.export import ImageInfo, compose_yaml
from orchestrator.export.common import LABEL_FLEET
from orchestrator.hostmodel import loopback_only_snapshot
from ports import free_port

PORT_RANGE = (29000, 29998)
HEALTHY_TIMEOUT_S = 120.0
COMPOSE = shutil.which("docker-compose")
needs_compose = pytest.mark.skipif(COMPOSE is None, reason="docker-compose is not installed")


def free_base_port() -> int:
    """A port of 29000-29999 free on every address for UDP and TCP (shared-port IOCs bind 0.0.0.0)."""
    return free_port(*PORT_RANGE)


def loopback_fleet(name: str, base_port: int) -> spec.FleetSpec:
    """Four IOCs (two caproto, two softioc) sharing one port on loopback, PV prefixes CMPTEST:."""
    iocs = [
        {"name": "cp1", "runtime": "caproto", "prefix": "CMPTEST:CP1:", "restart": "always",
         "limits": {"memory": "256m", "pids": 128},
         "pvs": [{"name": "F", "value": 1.5}, {"name": "S", "type": "str", "value": "costs $HOME"}]},
        {"name": "cp2", "runtime": "caproto", "prefix": "CMPTEST:CP2:",
         "pvs": [{"name": "E", "type": "enum", "enum_strings": ["off", "on"], "value": "on"}]},
        {"name": "si1", "runtime": "softioc", "prefix": "CMPTEST:SI1:", "restart": "no",
         "pvs": [{"name": "I", "type": "int", "value": 7}]},
        {"name": "si2", "runtime": "softioc", "prefix": "CMPTEST:SI2:",
         "pvs": [{"name": "A", "type": "float", "count": 4, "value": [1, 2, 3, 4]}]},
    ]
    network = {"interface": "lo", "strategy": "shared-port", "base_port": base_port}
    return spec.from_dict({"fleet": name, "network": network, "iocs": iocs})


def lo_plan(name: str, base_port: int):
    fleet = loopback_fleet(name, base_port)
    plan = planner.plan(fleet, loopback_only_snapshot(), interface="lo")
    assert plan.interface == "lo" and plan.client_env_dict()["EPICS_CA_ADDR_LIST"] == "127.255.255.255"
    return fleet, plan




def fixed_images() -> ImageInfo:
    return ImageInfo({"caproto": "iocfleet/ioc-caproto:x", "softioc": "iocfleet/ioc-softioc:x"},
                     {r: images.container_hardening(r) for r in images.RUNTIMES}, images.IOC_UID)


@needs_compose
def test_docker_compose_accepts_the_exported_file(tmp_path):
    fleet, plan = lo_plan("cmptest-config", 29100)
    path = tmp_path / "compose.yaml"
    path.write_text(compose_yaml(plan, fleet, fixed_images(), v1=True))  # the installed docker-compose is 1.29
    result = subprocess.run([COMPOSE, "-f", str(path), "config"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert set(resolved["services"]) == {"ca-repeater", "cp1", "cp2", "si1", "si2"}
    env = resolved["services"]["cp1"]["environment"]
    assert env["EPICS_CAS_AUTO_BEACON_ADDR_LIST"] == "NO" and env["EPICS_CA_AUTO_ADDR_LIST"] == "NO"
    # compose keeps `$` literal once escaped (it prints it re-escaped)
    assert "costs $$HOME" in env["IOCFLEET_IOC"]


# --- running the fleet -----------------------------------------------------------------------------------

def containers_of(client, fleet_name: str) -> list:
    return client.containers.list(all=True, filters={"label": f"{LABEL_FLEET}={fleet_name}"})


def remove_fleet_containers(client, fleet_name: str) -> None:
    for container in containers_of(client, fleet_name):
        with contextlib.suppress(Exception):
            container.remove(force=True)


def wait_healthy(client, fleet_name: str, iocs: set[str], timeout: float = HEALTHY_TIMEOUT_S) -> dict[str, str]:
    """Wait until every IOC container's health check (a CA read of HEARTBEAT inside it) passes."""
    deadline = time.monotonic() + timeout
    status: dict[str, str] = {}
    while time.monotonic() < deadline:
        status = {}
        for container in containers_of(client, fleet_name):
            ioc = container.labels.get("org.iocfleet.ioc")
            if ioc in iocs:
                container.reload()
                state = container.attrs["State"]
                status[ioc] = state.get("Health", {}).get("Status") or state["Status"]
        if set(status) == iocs and all(s == "healthy" for s in status.values()):
            return status
        time.sleep(1.0)
    logs = {c.name: c.logs(tail=20).decode(errors="replace") for c in containers_of(client, fleet_name)}
    raise AssertionError(f"IOCs not healthy after {timeout} s: {status}; logs: {logs}")


CLIENT_SCRIPT = r"""
import json, sys
import epics
names = json.loads(sys.argv[1])
out = {}
for name in names:
    value = epics.caget(name, timeout=5.0)
    out[name] = value.tolist() if hasattr(value, "tolist") else value
print(json.dumps(out))
"""


def read_with_client_env(plan, names: list[str], timeout: float = 120.0) -> dict:
    """Read PVs with pyepics (libca) in a process whose EPICS settings are only the plan's client settings."""
    mark = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPICS_")}
    env.update(plan.client_env_dict())
    env["IOCFLEET_TEST_CLIENT"] = mark  # not a CA setting: finds a caRepeater this client may spawn
    try:
        result = subprocess.run([sys.executable, "-c", CLIENT_SCRIPT, json.dumps(names)], env=env,
                                capture_output=True, text=True, timeout=timeout)
    finally:
        kill_marked(mark)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def kill_marked(mark: str) -> None:
    """Stop processes (by pid) whose environment carries `mark`: a repeater libca spawned for our client."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if f"IOCFLEET_TEST_CLIENT={mark}".encode() in (entry / "environ").read_bytes().split(b"\0"):
                os.kill(int(entry.name), 15)


def expected_values(plan) -> dict:
    return {
        "CMPTEST:CP1:F": 1.5, "CMPTEST:CP1:S": "costs $HOME", "CMPTEST:CP2:E": 1,
        "CMPTEST:SI1:I": 7, "CMPTEST:SI2:A": [1.0, 2.0, 3.0, 4.0],
    }


def check_every_pv_readable(plan) -> None:
    names = [n for ioc in plan.iocs for n in ioc.pv_names]
    values = read_with_client_env(plan, names)
    missing = [n for n in names if values.get(n) is None]
    assert not missing, f"not readable with {plan.client_env_dict()}: {missing}"
    for name, value in expected_values(plan).items():
        assert values[name] == value, (name, values[name])


def compose(project: str, path: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([COMPOSE, "-p", project, "-f", str(path), *args], capture_output=True, text=True,
                          timeout=timeout)


@needs_compose
@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize("pack", [False, True], ids=["unpacked", "packed"])
def test_compose_up_serves_every_pv_to_a_libca_client_and_down_removes_it(docker_client, ioc_images, tmp_path, pack):
    """Packed (issue 14): the caproto IOCs are one service, which serves every one of their PVs."""
    import dataclasses

    suffix = uuid.uuid4().hex[:8]
    name, project = f"cmptest-{suffix}", f"iocflcmp{suffix}"
    fleet, _ = lo_plan(name, free_base_port())
    fleet = dataclasses.replace(fleet, pack=pack)
    plan = planner.plan(fleet, loopback_only_snapshot(), interface="lo")
    path = tmp_path / "compose.yaml"
    path.write_text(compose_yaml(plan, fleet, ioc_images, v1=True))
    try:
        up = compose(project, path, "--profile", "iocs", "up", "-d")  # every IOC has the profile `iocs`
        assert up.returncode == 0, up.stderr
        status = wait_healthy(docker_client, name, {u.name for u in plan.units()})
        packs = {u.name for u in plan.units()} - {"si1", "si2"}
        assert set(status) == packs | {"si1", "si2"}
        assert packs == ({"pack-1", "pack-2"} if pack else {"cp1", "cp2"})  # cp1 and cp2 differ in restart/env
        for container in containers_of(docker_client, name):
            attrs = container.attrs["HostConfig"]
            assert attrs["NetworkMode"] == "host" and attrs["ReadonlyRootfs"] is True
            assert attrs["CapDrop"] == ["ALL"]
        check_every_pv_readable(plan)
        down = compose(project, path, "--profile", "iocs", "down", "--timeout", "10", "--remove-orphans")
        assert down.returncode == 0, down.stderr
        assert containers_of(docker_client, name) == []
    finally:
        compose(project, path, "--profile", "iocs", "down", "--timeout", "5", "--remove-orphans")
        remove_fleet_containers(docker_client, name)


@needs_compose
@pytest.mark.parametrize("example", ["demo.compose.yaml"])
def test_example_compose_files_are_accepted(example):
    path = Path(__file__).resolve().parents[2] / "compose" / example
    result = subprocess.run([COMPOSE, "-f", str(path), "config", "-q"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
