"""The name server as a built-in runtime of both backends, on loopback: up, reads, names update, down."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cli_run import base_env, iocfleet, iocfleet_json, labelled_containers, pyepics_read, write_fleet
from orchestrator.ca.probe import search

pytestmark = [pytest.mark.slow]

BACKENDS = [pytest.param("docker", marks=pytest.mark.docker), "process"]
BASE_PORT = {"docker": 23464, "process": 23564}


def iocs(n: int, tag: str) -> list[dict]:
    return [{"name": f"k{i}", "runtime": "softioc" if i == 0 else "caproto", "prefix": f"{tag}:{i}:",
             "pvs": [{"name": "V", "value": float(i)}]} for i in range(n)]


def instance(state, fleet, backend, name) -> dict | None:
    status = iocfleet_json("status", "--fleet-name", fleet, "--backend", backend, state=state)
    found = [i for i in status.get("instances", status.get("iocs", [])) if i["name"] == name]
    return found[0] if found else None


@pytest.mark.parametrize("backend", BACKENDS)
def test_name_server_fleet_serves_every_pv_learns_new_names_without_restart_and_goes_with_down(
        tmp_path, state, teardown, backend):
    fleet, tag, port = f"nsf-{backend}", f"NSF{backend[0].upper()}", BASE_PORT[backend]
    path = write_fleet(tmp_path / "fleet.yaml", fleet, iocs(3, tag), strategy="name-server", base_port=port)
    teardown.append((fleet, backend))
    up = iocfleet_json("up", str(path), "--backend", backend, "--timeout", "240", state=state, timeout=900)
    env = up["client_env"]
    assert env == {"EPICS_CA_AUTO_ADDR_LIST": "NO", "EPICS_CA_ADDR_LIST": f"127.0.0.1:{port + 2}",
                   "EPICS_CA_NAME_SERVERS": f"127.0.0.1:{port + 2}"}
    before = instance(state, fleet, backend, "ca-nameserver")
    assert before is not None and before["state"] == "running"

    names = [f"{tag}:{i}:V" for i in range(3)]
    assert pyepics_read(names, {**env, "EPICS_CA_ADDR_LIST": ""}) == {n: float(i) for i, n in enumerate(names)}

    # A fourth IOC: `up` rewrites the names file; the same name server process answers for it.
    write_fleet(path, fleet, iocs(4, tag), strategy="name-server", base_port=port)
    iocfleet_json("up", str(path), "--backend", backend, "--timeout", "240", state=state, timeout=900)
    after = instance(state, fleet, backend, "ca-nameserver")
    assert (after["pid"], after.get("container")) == (before["pid"], before.get("container")), "not restarted"
    found = search([f"{tag}:3:V", "NOT:OURS"], [("127.0.0.1", port + 2)], timeout=2.0)
    assert {s[0] for s in found.servers(f"{tag}:3:V")} == {"127.0.0.1"} and not found.select("NOT:OURS")
    assert pyepics_read([f"{tag}:3:V"], env) == {f"{tag}:3:V": 3.0}

    # The doctor, given the fleet, searches through its name server over TCP and names each PV's IOC.
    doctor = iocfleet("doctor", "--fleet", str(path), "--backend", backend, "--repeat", "3", "--json", state=state)
    report = json.loads(doctor.stdout)
    (ns,) = report["name_servers"]
    assert ns["connected"] and not ns["unanswered"]
    assert {a["name"]: a["ioc"] for a in ns["answers"] if a["name"].endswith(":V")} == \
        {f"{tag}:{i}:V": f"k{i}" for i in range(4)}
    assert all(a["served"] for a in ns["answers"])
    assert not [f for f in report["findings"] if f["code"].startswith("name-server")]

    iocfleet("down", "--fleet-name", fleet, "--backend", backend, state=state, check=True)
    assert not list((state / "iocfleet" / "nameservers").glob(f"{fleet}*"))
    assert not search([f"{tag}:0:V"], [("127.0.0.1", port + 2)], timeout=1.0).replies
    if backend == "docker":
        assert labelled_containers(fleet) == []
