"""Tests sharing one session-scoped fleet, and a module fleet parametrised over the IOC runtimes."""

from __future__ import annotations

import os
import subprocess
import sys

from orchestrator.pytest_plugin import over_runtimes


def test_reads_the_motor(beamline, record):
    assert beamline.get("CS:MTR:VELO") == 1.5
    record(beamline)


def test_writes_then_restores(beamline, record):
    assert beamline.put("CS:MTR:VELO", 2.5) == 2.5
    assert beamline.put("CS:MTR:VELO", 1.5) == 1.5
    record(beamline)


def test_pyepics_sees_it_through_apply_env(beamline, monkeypatch, record):
    env = beamline.apply_env(monkeypatch)  # EPICS_CA_* of this process, restored after the test
    assert os.environ["EPICS_CA_ADDR_LIST"] == env["EPICS_CA_ADDR_LIST"]
    # a client started now (here pyepics/libca in a child process) searches exactly where the fleet serves
    read = subprocess.run([sys.executable, "-c", "import epics; print(epics.caget('CS:DET:NAME', timeout=5))"],
                          capture_output=True, text=True, timeout=60)
    assert read.stdout.strip() == "pilatus", read.stderr
    record(beamline)


@over_runtimes()
def test_the_same_ioc_on_each_runtime(ca_fleet, ca_runtime, record):
    fleet = ca_fleet({"fleet": "ci-session-rt", "network": {"interface": "lo", "base_port": 5190},
                      "iocs": [{"name": "rt", "prefix": "CS:RT:", "pvs": [{"name": "X", "value": 3.0}]}]},
                     scope="module", runtime=ca_runtime)
    assert fleet.get("CS:RT:X") == 3.0
    assert {i.runtime for i in fleet.status() if i.role == "ioc"} == {ca_runtime}
    record(fleet)
