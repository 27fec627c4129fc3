"""The IOC console: `iocfleet exec` and `attach` run iocsh commands (dbl, dbpr) in a softioc IOC on both
backends and show its records; the IOC keeps running after a detach; caproto IOCs are refused clearly."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cli_run import iocfleet, iocfleet_json, pyepics_read, write_fleet

pytestmark = [pytest.mark.slow]

BACKENDS = [pytest.param("docker", marks=pytest.mark.docker), "process"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_exec_and_attach_run_dbl_in_a_softioc_ioc_and_show_its_records(tmp_path, state, teardown, backend):
    fleet = f"console-{backend}"
    iocs = [{"name": "si", "runtime": "softioc", "prefix": "CON:SI:",
             "pvs": [{"name": "X", "value": 1.5}, {"name": "MODE", "type": "enum", "enum_strings": ["A", "B"]}]},
            {"name": "cp", "runtime": "caproto", "prefix": "CON:CP:", "pvs": ["Y"]}]
    path = write_fleet(tmp_path / "fleet.yaml", fleet, iocs, base_port=24564)
    teardown.append((fleet, backend))
    up = iocfleet_json("up", str(path), "--backend", backend, "--timeout", "120", state=state)
    assert up["ready"] is True
    before = {i["name"]: (i["pid"], i["container"]) for i in up["iocs"]}

    # exec: one iocsh command, its output, its status
    dbl = iocfleet("exec", str(path), "si", "--backend", backend, "--", "dbl", state=state)
    assert dbl.returncode == 0, dbl.stderr
    records = set(dbl.stdout.split())
    assert {"CON:SI:X", "CON:SI:MODE", "CON:SI:HEARTBEAT", "CON:SI:UPTIME", "CON:SI:IOC_CPU_LOAD"} <= records
    assert "__iocfleet_exec__" not in dbl.stdout and ":exit=" not in dbl.stdout
    shown = iocfleet("exec", str(path), "si", "--backend", backend, "--json", "--", "dbpr", "CON:SI:X", state=state)
    assert shown.returncode == 0, shown.stderr
    as_json = json.loads(shown.stdout)
    assert as_json["status"] == 0 and "VAL : 1.5" in as_json["output"] and as_json["command"] == "dbpr CON:SI:X"
    put = iocfleet("exec", str(path), "si", "--backend", backend, "--", "dbpf", "CON:SI:X", "2.25", state=state)
    assert put.returncode == 0, put.stderr
    assert pyepics_read(["CON:SI:X"], up["client_env"]) == {"CON:SI:X": 2.25}  # seen over CA too
    bad = iocfleet("exec", str(path), "si", "--backend", backend, "--", "nosuchcommand", state=state)
    assert bad.returncode == 1 and "not registered" in bad.stdout

    # attach: a pipe for stdin here (a terminal in real use); dbl's records come back, then it detaches
    env = {**os.environ, "XDG_STATE_HOME": str(state)}
    attached = subprocess.run([sys.executable, "-m", "orchestrator.cli", "attach", str(path), "si", "--backend",
                               backend], input="dbl\n", env=env, capture_output=True, text=True, timeout=60)
    assert attached.returncode == 0, attached.stderr
    assert "CON:SI:X" in attached.stdout and "CON:SI:HEARTBEAT" in attached.stdout
    assert "keeps running" in attached.stderr

    # caproto has no iocsh: a clear refusal (usage error)
    refused = iocfleet("exec", str(path), "cp", "--backend", backend, "--", "dbl", state=state)
    assert refused.returncode == 2 and "caproto, which has no IOC shell (iocsh)" in refused.stderr
    refused = iocfleet("attach", str(path), "cp", "--backend", backend, state=state)
    assert refused.returncode == 2 and "no IOC shell" in refused.stderr

    # the IOC never stopped: same process/container, still serving
    after = {i["name"]: (i["pid"], i["container"]) for i in
             iocfleet_json("status", str(path), "--backend", backend, state=state)["iocs"]}
    assert after["si"] == before["si"]
    assert pyepics_read(["CON:SI:X"], up["client_env"]) == {"CON:SI:X": 2.25}
