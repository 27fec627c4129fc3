"""Packed fleets (issue 14) through the real `iocfleet` command on both backends: up, reads by a real client
(pyepics/libca: one client, one source port), status and logs per IOC, restart of a packed IOC, up again,
the doctor naming packed IOCs, and down leaving nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from orchestrator.ca import probe

from cli_run import base_env, iocfleet, iocfleet_json, labelled_containers, pyepics_read, supervisors, write_fleet

pytestmark = [pytest.mark.slow]

BACKENDS = [pytest.param("docker", marks=pytest.mark.docker), "process"]


def fleet_iocs(tag: str) -> list[dict]:
    """6 replicas of one caproto IOC (packs of 4: pack-1 and pack-2), one caproto IOC that must restart
    always (its own pack: it cannot share a process with on-failure IOCs), one softioc (never packed)."""
    pvs = [{"name": "F", "type": "float", "value": 2.5}, {"name": "S", "type": "str", "value": "packed"},
           {"name": "W", "type": "int", "count": 4, "value": [1, 2, 3, 4]}]
    return [{"name": "m", "runtime": "caproto", "prefix": f"{tag}M{{i}}:", "replicas": 6, "pvs": pvs},
            {"name": "r", "runtime": "caproto", "prefix": f"{tag}R:", "restart": "always", "pvs": ["F"]},
            {"name": "s", "runtime": "softioc", "prefix": f"{tag}S:", "pvs": ["F"]}]


def names_of(iocs: list[dict]) -> list[str]:
    out = []
    for ioc in iocs:
        pvs = [p if isinstance(p, str) else p["name"] for p in ioc["pvs"]]
        prefixes = [ioc["prefix"].replace("{i}", str(k)) for k in range(1, ioc.get("replicas", 1) + 1)]
        out += [prefix + pv for prefix in prefixes for pv in pvs]
    return out


def write_packed(tmp_path, fleet: str, iocs, port: int):
    import yaml

    path = write_fleet(tmp_path / "fleet.yaml", fleet, iocs, base_port=port)
    data = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**data, "pack": 4}, sort_keys=False))
    return path


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_packed_fleet_serves_every_pv_and_is_operated_per_ioc(tmp_path, state, teardown, backend):
    fleet, tag = f"pk-{backend}", f"PK{backend[0].upper()}:"
    port = 24264 if backend == "docker" else 24274
    iocs = fleet_iocs(tag)
    path = write_packed(tmp_path, fleet, iocs, port)
    teardown.append((fleet, backend))

    result = iocfleet_json("up", str(path), "--backend", backend, "--timeout", "120", state=state)
    assert result["ready"] is True
    packs = {i["name"]: i["pack"] for i in result["iocs"]}
    assert packs == {"m-1": "pack-1", "m-2": "pack-1", "m-3": "pack-1", "m-4": "pack-1", "m-5": "pack-2",
                     "m-6": "pack-2", "r": "pack-3", "s": None}
    assert sorted(result["diff"]["create"]) == ["pack-1", "pack-2", "pack-3", "s"]

    values = pyepics_read(names_of(iocs), result["client_env"])
    assert not [n for n, v in values.items() if v is None], values
    assert values[f"{tag}M5:F"] == pytest.approx(2.5) and values[f"{tag}M6:S"] == "packed"
    assert values[f"{tag}M3:W"] == [1, 2, 3, 4]

    # one process or container per pack, not per IOC
    if backend == "docker":
        assert len([c for c in labelled_containers(fleet)]) == 4  # 3 packs + the softioc
    else:
        assert len(supervisors(state, fleet)) == 4

    status = iocfleet_json("status", fleet, "--backend", backend, state=state)
    rows = {i["name"]: i for i in status["iocs"]}
    assert set(rows) == {"m-1", "m-2", "m-3", "m-4", "m-5", "m-6", "r", "s"}
    assert rows["m-2"]["pack"] == "pack-1" and rows["m-2"]["pid"] == rows["m-4"]["pid"] != rows["m-5"]["pid"]
    assert rows["s"]["pack"] is None

    logs = iocfleet("logs", fleet, "m-2", "--backend", backend, state=state, check=True).stdout.splitlines()
    assert logs and all(line.startswith(("[m-2] ", "[pack pack-1] ")) for line in logs), logs
    assert any(line.startswith("[m-2] ") and "serving" in line and f"{tag}M2:" in line for line in logs)

    restarted = iocfleet("restart", fleet, "m-3", "--backend", backend, state=state, check=True)
    assert "restarting the pack" in restarted.stderr and "m-1, m-2, m-3, m-4" in restarted.stderr
    again = iocfleet_json("up", str(path), "--backend", backend, "--timeout", "120", state=state)
    assert again["ready"] is True and sorted(again["diff"]["keep"]) == ["pack-1", "pack-2", "pack-3", "s"]
    values = pyepics_read([f"{tag}M3:F", f"{tag}M1:S"], again["client_env"])
    assert values == {f"{tag}M3:F": pytest.approx(2.5), f"{tag}M1:S": "packed"}

    unpacked = iocfleet_json("up", str(path), "--backend", backend, "--no-pack", "--timeout", "120", state=state)
    assert unpacked["ready"] is True and all(i["pack"] is None for i in unpacked["iocs"])
    assert sorted(unpacked["diff"]["remove"]) == ["pack-1", "pack-2", "pack-3"]

    iocfleet_json("down", str(path), "--backend", backend, state=state)
    if backend == "docker":
        assert labelled_containers(fleet) == []
    else:
        assert supervisors(state, fleet) == []


def test_the_doctor_names_each_packed_ioc_by_its_tcp_port(tmp_path, state, teardown):
    """One pid holds every member's sockets: the doctor attributes replies by TCP port and PV, so each packed
    IOC is named, and a unicast list's 1/N per IOC is judged per member, not per process."""
    fleet = "pk-doctor"
    iocs = [{"name": "d", "runtime": "caproto", "prefix": "PKD{i}:", "replicas": 3, "pvs": ["X"]}]
    path = write_packed(tmp_path, fleet, iocs, 24284)
    teardown.append((fleet, "process"))
    up = iocfleet_json("up", str(path), "--backend", "process", "--timeout", "60", state=state)
    assert up["ready"] is True and {i["pack"] for i in up["iocs"]} == {"pack-1"}
    env = {"XDG_STATE_HOME": str(state)}
    done = subprocess.run([sys.executable, "-m", "orchestrator.doctor.gather", "--json", "--fleet", str(path),
                           "--backend", "process", "--repeat", "20"], env=base_env(**env, **up["client_env"]),
                          capture_output=True, text=True, timeout=120)
    report = json.loads(done.stdout)
    broadcast = report["paths"][0]
    assert {i["name"]: i["reach"] for i in broadcast["iocs"]} == {"d-1": 1.0, "d-2": 1.0, "d-3": 1.0}
    assert len({i["server"] for i in broadcast["iocs"]}) == 3  # three TCP listeners, one pid

    done = subprocess.run([sys.executable, "-m", "orchestrator.doctor.gather", "--json", "--fleet", str(path),
                           "--backend", "process", "--repeat", "120", "--addr-list", "127.0.0.1"],
                          env=base_env(**env, **up["client_env"]), capture_output=True, text=True, timeout=120)
    report = json.loads(done.stdout)
    unicast = report["paths"][0]
    reach = {i["name"]: i for i in unicast["iocs"]}
    # each member is its own server (pid, TCP port), predicted one socket's share of the port, not the pack's
    assert set(reach) == {"d-1", "d-2", "d-3"} and len({i["server"] for i in reach.values()}) == 3
    assert all(abs(i["predicted"] - 1 / 3) < 1e-3 for i in reach.values()), reach
    lo, hi = probe.binomial_band(120, 1 / 3, z=5)  # the share itself is measured tightly in test_pack_program
    assert all(lo <= round(i["reach"] * 120) <= hi for i in reach.values()), reach
    iocfleet("down", str(path), "--backend", "process", state=state, check=True)
    time.sleep(0.1)
