"""network.fanout: dnat (R17) in a lab: unicast to the IOC host (or 127.0.0.1 on it) reaches every IOC.

A 3-IOC shared-port fleet (2 caproto, 1 softioc; process backend) runs in the IOC namespace of `lab2`;
its nftables table lives in that namespace only. pyepics reads every PV with EPICS_CA_ADDR_LIST=<host IP>
from the client namespace and with EPICS_CA_ADDR_LIST=127.0.0.1 on the host; the probe shows one IOC per
search without the table and every IOC with it; after `down` the table is gone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from cli_run import base_env
from orchestrator.ca.probe import search
from orchestrator.plan.fanout import table_name

pytestmark = [pytest.mark.slow, pytest.mark.netns]
ROUNDS = 20

READ = r"""
import json, sys
import epics
out = {n: epics.caget(n, timeout=5.0, use_monitor=False) for n in sys.argv[1:]}
print(json.dumps(out))
"""


def cli(lab, state, *args, timeout=600):
    env = {**os.environ, "XDG_STATE_HOME": str(state)}
    return subprocess.run(lab.argv([sys.executable, "-m", "orchestrator.cli", *args], "ns"), env=env,
                          capture_output=True, text=True, timeout=timeout)


def nft_tables(lab) -> str:
    return subprocess.run(lab.argv(["nft", "list", "tables"], "ns"), capture_output=True, text=True,
                          timeout=20).stdout


def read(lab, where, names, addr_list):
    env = base_env(EPICS_CA_AUTO_ADDR_LIST="NO", EPICS_CA_ADDR_LIST=addr_list)
    proc = subprocess.run(lab.argv([sys.executable, "-c", READ, *names], where), env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def reach(lab, where, names, dest) -> dict[str, int]:
    result = lab.call(where, lambda: search(names, [dest], rounds=ROUNDS, timeout=1.0))
    return {n: result.rounds_answered(n, dest) for n in names}


def test_dnat_fanout_makes_unicast_to_the_host_reach_every_ioc_and_down_removes_the_table(lab2, tmp_path):
    lab = lab2
    state = tmp_path / "state"
    iocs = [{"name": f"f{i}", "runtime": "softioc" if i == 0 else "caproto", "prefix": f"FAN:{i}:",
             "pvs": [{"name": "V", "value": float(i)}]} for i in range(3)]
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump({"fleet": "fan", "network": {"interface": lab.ns_veth, "fanout": "dnat"},
                                    "iocs": iocs}))
    names = [f"FAN:{i}:V" for i in range(3)]
    expected = {n: float(i) for i, n in enumerate(names)}
    try:
        explain = cli(lab, state, "plan", str(path), "--explain").stdout
        assert f"{lab.ns_addr}:5064 -> {lab.broadcast}" in explain and "Side effect" in explain
        up = cli(lab, state, "up", str(path), "--backend", "process", "--json")
        assert up.returncode == 0, up.stderr[-3000:]
        assert f"table ip {table_name('fan')}" in nft_tables(lab)

        assert read(lab, "peer", names, lab.ns_addr) == expected  # remote, host IP
        assert read(lab, "ns", names, "127.0.0.1") == expected  # local, loopback
        assert reach(lab, "peer", names, (lab.ns_addr, 5064)) == {n: ROUNDS for n in names}
        assert reach(lab, "ns", names, ("127.0.0.1", 5064)) == {n: ROUNDS for n in names}

        # The doctor on the IOC host recognises the fan-out: reach 1.0 on the unicast path, explained.
        doctor = subprocess.run(lab.argv([sys.executable, "-m", "orchestrator.doctor", "--addr-list", lab.ns_addr,
                                          "--auto-addr-list", "no", "--names", *names, "--repeat", "10", "--json"],
                                         "ns"), env={**os.environ, "XDG_STATE_HOME": str(state)},
                                capture_output=True, text=True, timeout=120)
        report = json.loads(doctor.stdout)
        (unicast,) = report["paths"]
        assert unicast["kind"] == f"fan-out to {lab.broadcast}" and {i["reach"] for i in unicast["iocs"]} == {1.0}
        codes = {f["code"] for f in report["findings"]}
        assert "fanout-active" in codes and "unicast-addr-list-multi-ioc" not in codes

        # Without the table (deleted by hand): each unicast search reaches one IOC again (R3).
        subprocess.run(lab.argv(["nft", "delete", "table", "ip", table_name("fan")], "ns"), check=True, timeout=20)
        without = reach(lab, "peer", names, (lab.ns_addr, 5064))
        assert sum(without.values()) == ROUNDS and max(without.values()) < ROUNDS, without
        # `up` again puts it back (nothing else changes); `--fanout dnat` on a file without the key does the same.
        path.write_text(yaml.safe_dump({"fleet": "fan", "network": {"interface": lab.ns_veth}, "iocs": iocs}))
        again = cli(lab, state, "up", str(path), "--backend", "process", "--fanout", "dnat")
        assert again.returncode == 0, again.stderr[-2000:]
        assert reach(lab, "peer", names, (lab.ns_addr, 5064)) == {n: ROUNDS for n in names}
    finally:
        down = cli(lab, state, "down", "--fleet-name", "fan", "--backend", "process")
    assert down.returncode == 0, down.stderr
    assert "iocfleet" not in nft_tables(lab)
