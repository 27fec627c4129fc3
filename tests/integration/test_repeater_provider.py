"""`plan --json` says who provides the CA repeater (R12), and `up` does what it says: in a namespace of its
own, with and without caproto's real repeater holding UDP 5065, the process backend, loopback only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

pytestmark = [pytest.mark.netns, pytest.mark.slow]

FLEET = "fleet: reprov\nnetwork: {interface: lo, base_port: 31080}\niocs:\n  - {name: a, prefix: 'RPV:A:', pvs: [X]}\n"


def _env(tmp_path) -> dict[str, str]:
    return {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), "EPICS_CA_AUTO_ADDR_LIST": "NO",
            "EPICS_CA_ADDR_LIST": "127.255.255.255"}


def _cli(lab, tmp_path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(lab.argv([sys.executable, "-m", "orchestrator.cli", *args]), env=_env(tmp_path),
                          capture_output=True, text=True, timeout=timeout)


def _repeater_holders(lab, tmp_path) -> list[dict]:
    data = json.loads(_cli(lab, tmp_path, "interfaces", "--json").stdout)
    return [h for h in data["ca_ports"] if h["proto"] == "udp" and h["port"] == 5065]


def test_plan_and_up_agree_on_who_provides_the_repeater(lab, tmp_path):
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(FLEET)
    assert _repeater_holders(lab, tmp_path) == []
    plan = json.loads(_cli(lab, tmp_path, "plan", str(fleet), "--json").stdout)
    assert plan["repeater"]["provider"] == "fleet"

    repeater = subprocess.Popen(lab.argv([sys.executable, "-m", "caproto.commandline.repeater", "--quiet"]),
                                env={**_env(tmp_path), "EPICS_CA_REPEATER_PORT": "5065"},
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not _repeater_holders(lab, tmp_path) and time.monotonic() < deadline and repeater.poll() is None:
            time.sleep(0.2)
        holders = _repeater_holders(lab, tmp_path)
        assert holders, repeater.stderr.read() if repeater.poll() is not None else "no holder of UDP 5065"
        plan = json.loads(_cli(lab, tmp_path, "plan", str(fleet), "--json").stdout)
        assert plan["repeater"]["provider"] == "host"
        assert f"pid {repeater.pid}" in plan["repeater"]["reason"]
        try:
            up = _cli(lab, tmp_path, "up", str(fleet), "--backend", "process", "--json", "--timeout", "60")
            assert up.returncode == 0, up.stderr
            assert json.loads(up.stdout)["ready"] is True
            status = json.loads(_cli(lab, tmp_path, "status", str(fleet), "--backend", "process", "--json").stdout)
            assert [i["role"] for i in status["iocs"]] == ["ioc"]  # the plan said host: no repeater of ours
        finally:
            down = _cli(lab, tmp_path, "down", str(fleet), "--backend", "process")
            assert down.returncode == 0, down.stderr
    finally:
        repeater.terminate()
        try:
            repeater.wait(timeout=5)
        except subprocess.TimeoutExpired:
            repeater.kill()
            repeater.wait(timeout=5)
        if repeater.stderr:
            repeater.stderr.close()
