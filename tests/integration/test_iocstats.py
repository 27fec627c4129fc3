"""iocStats on both runtimes and both backends, read over CA with pyepics (libca): names, types, values;
the docker backend's healthcheck reads the same UPTIME PV."""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from cli_run import base_env, iocfleet_json, labelled_containers, write_fleet
from orchestrator.spec import iocstats as stats

pytestmark = [pytest.mark.slow]

BACKENDS = [pytest.param("docker", marks=pytest.mark.docker), "process"]

# pyepics reads each PV twice, 2.5 s apart, and prints {name: [native type, first, second]}
PYEPICS_TYPES = r"""
import json, sys, time
import epics
names = sys.argv[1:]
pvs = [epics.PV(n, auto_monitor=False) for n in names]
for pv in pvs:
    pv.wait_for_connection(timeout=10)
def value(pv):
    v = pv.get(timeout=5, use_monitor=False, as_string=pv.type.endswith("char"))
    return v.tolist() if hasattr(v, "tolist") else v
first = [value(pv) for pv in pvs]
time.sleep(2.5)
print(json.dumps({pv.pvname: [pv.type, a, value(pv)] for pv, a in zip(pvs, first)}))
"""
CA_TYPE = {"DOUBLE": "time_double", "STRING": "time_string", "ENUM": "time_enum", "CHAR": "time_char"}


def read_types(names, client_env):
    import json
    import sys

    proc = subprocess.run([sys.executable, "-c", PYEPICS_TYPES, *names], env=base_env(**client_env),
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def wait_healthy(fleet: str, timeout: float = 120.0) -> dict[str, str]:
    """Docker's health status of every container of the fleet (its healthcheck: a CA read of UPTIME)."""
    deadline = time.monotonic() + timeout
    status: dict[str, str] = {}
    while time.monotonic() < deadline:
        ids = labelled_containers(fleet)
        out = subprocess.run(["docker", "inspect", "--format",
                              '{{index .Config.Labels "org.iocfleet.ioc"}} {{if .State.Health}}{{.State.Health.Status}}{{end}}',
                              *ids], capture_output=True, text=True, timeout=60).stdout
        status = dict((line.split() + [""])[:2] for line in out.splitlines() if line.strip())
        status.pop("ca-repeater", None)
        if status and all(s == "healthy" for s in status.values()):
            return status
        time.sleep(2)
    return status


@pytest.mark.parametrize("backend", BACKENDS)
def test_iocstats_pvs_of_both_runtimes_read_over_ca_with_pyepics(tmp_path, state, teardown, backend):
    fleet = f"iocstats-{backend}"
    iocs = [{"name": "cp", "runtime": "caproto", "prefix": "IST:CP:", "pvs": [{"name": "X", "value": 1.0}]},
            {"name": "si", "runtime": "softioc", "prefix": "IST:SI:", "pvs": [{"name": "X", "value": 2.0}]},
            {"name": "named", "runtime": "caproto", "prefix": "IST:NM:", "iocstats": "IST-IOC-01",
             "pvs": [{"name": "X", "value": 3.0}]}]
    path = write_fleet(tmp_path / "fleet.yaml", fleet, iocs, base_port=24464)
    teardown.append((fleet, backend))
    result = iocfleet_json("up", str(path), "--backend", backend, "--timeout", "120", state=state)
    assert result["ready"] is True
    env = result["client_env"]

    names = {n: [f"{n}:{pv.suffix}" for pv in stats.STATS] for n in ("IST:CP", "IST:SI", "IST-IOC-01")}
    queues = [f"IST:SI:{pv.suffix}" for pv in stats.QUEUE_STATS]
    legacy = ["IST:NM:HEARTBEAT", "IST:NM:UPTIME"]  # an explicit iocstats name keeps the old PVs as they were
    values = read_types([n for group in names.values() for n in group] + queues + legacy, env)
    missing = [n for n, (kind, *_) in values.items() if kind is None or values[n][1] is None]
    assert not missing, missing

    # every iocStats PV has devIocStats' CA type, the same on caproto and softioc
    for pv in stats.STATS:
        kinds = {values[f"{n}:{pv.suffix}"][0] for n in names}
        assert kinds == {CA_TYPE[pv.ca_type]}, (pv.suffix, kinds)
    assert all(values[q][0] == "time_double" for q in queues)

    for name in names:
        kind, first, second = values[f"{name}:HEARTBEAT"]
        assert second > first >= 0  # counts once a second
        _, up1, up2 = values[f"{name}:UPTIME"]
        assert re.fullmatch(r"(\d+ days?, )?\d\d:\d\d:\d\d", up2) and up2 != up1
        assert values[f"{name}:MEM_USED"][2] > 0 or name == "IST:SI"  # softioc updates memory every 10 s
        assert values[f"{name}:CPU_CNT"][1] >= 1
        assert values[f"{name}:ACCESS"][1] == 0  # Running
    assert values["IST:CP:EPICS_VERSION"][1].startswith("caproto")
    assert values["IST:SI:EPICS_VERSION"][1].startswith("EPICS")
    assert values["IST:CP:CA_CLNT_CNT"][2] >= 1  # this pyepics client, counted by the caproto IOC
    assert values["IST:NM:HEARTBEAT"][0] == "time_long" and values["IST:NM:UPTIME"][0] == "time_double"

    # every PV the Phoebus screens name answers (export bob names every PV of the fleet)
    import xml.etree.ElementTree as ET

    from cli_run import iocfleet, pyepics_read

    screens = tmp_path / "screens"
    iocfleet("export", "bob", str(path), "-o", str(screens), state=state, check=True)
    named = {w.findtext("pv_name") for f in screens.glob("*.bob") for w in ET.parse(f).iter("widget")} - {None}
    assert len(named) == 3 + 41 * 3 + 20 + 2
    unread = [n for n, v in pyepics_read(sorted(named), env).items() if v is None]
    assert not unread, unread

    status = iocfleet_json("status", fleet, "--backend", backend, state=state)
    assert {i["name"] for i in status["iocs"] if i["role"] == "ioc"} == {"cp", "si", "named"}
    if backend == "docker":
        health = wait_healthy(fleet)
        assert health == {"cp": "healthy", "si": "healthy", "named": "healthy"}, health
        shown = iocfleet_json("status", fleet, "--backend", backend, state=state)["iocs"]
        assert {i["name"]: i["health"] for i in shown if i["role"] == "ioc"} == health
