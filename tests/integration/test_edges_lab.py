"""Truth at the edges, in a lab: an interface address added without `brd` (the common way), and
readiness that measures what a real client (one fixed source port) gets.

The IOC host is the root namespace's end of the lab veth (docker's host network is the root namespace,
so both backends run there); the client is pyepics inside the lab namespace, with exactly the settings
`up` printed.
"""

from __future__ import annotations

import json

import pytest

from cli_run import iocfleet, iocfleet_json, pyepics_read, write_fleet

pytestmark = [pytest.mark.netns, pytest.mark.slow]

BACKENDS = [pytest.param("docker", marks=pytest.mark.docker), "process"]


def three_iocs(prefix: str) -> list[dict]:
    return [{"name": f"n{i}", "runtime": "softioc" if i == 2 else "caproto", "prefix": f"{prefix}{i}:",
             "pvs": [{"name": "V", "value": float(i)}]} for i in range(3)]


def test_interfaces_reports_no_broadcast_for_an_address_added_without_brd(lab_nobrd):
    out = json.loads(iocfleet("interfaces", "--json", state=_tmp_state(), check=True).stdout)
    veth = next(i for i in out["interfaces"] if i["name"] == lab_nobrd.peer_veth)
    assert [(a["address"], a["broadcast"]) for a in veth["ipv4"]] == [(lab_nobrd.peer_addr, None)]


def _tmp_state():
    import tempfile
    from pathlib import Path

    return Path(tempfile.mkdtemp(prefix="iocfleet-edges-"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_brd_interface_plans_ports_with_which_pyepics_reads_every_pv(tmp_path, state, teardown, lab_nobrd,
                                                                        backend):
    fleet = f"nobrd-{backend}"
    iocs = three_iocs(f"NOBRD{backend[0].upper()}:")
    path = write_fleet(tmp_path / "fleet.yaml", fleet, iocs, base_port=27400 if backend == "process" else 27500)
    check = iocfleet("check", str(path), "--interface", lab_nobrd.peer_veth, "--json", state=state)
    assert check.returncode == 0, check.stdout + check.stderr
    explain = iocfleet("plan", str(path), "--interface", lab_nobrd.peer_veth, "--explain", state=state,
                       check=True).stdout
    assert "has no broadcast address" in explain and "brd +" in explain, explain
    teardown.append((fleet, backend))
    result = iocfleet_json("up", str(path), "--backend", backend, "--interface", lab_nobrd.peer_veth,
                           "--timeout", "120", state=state)
    env = result["client_env"]
    assert env["EPICS_CA_ADDR_LIST"].split() == [f"{lab_nobrd.peer_addr}:{p}" for p in
                                                  sorted({i["tcp_port"] for i in result["iocs"]})]
    assert all(p["full"] and p["fixed_reach"] == 1.0 for p in result["reach"]), result["reach"]
    names = [ioc["prefix"] + "V" for ioc in iocs]
    values = pyepics_read(names, env, argv_prefix=["ip", "netns", "exec", lab_nobrd.ns])
    assert values == {names[0]: 0.0, names[1]: 1.0, names[2]: 2.0}


@pytest.mark.parametrize("backend", BACKENDS)
def test_unicast_path_in_front_of_a_shared_port_fails_up_with_exit_5_and_the_measured_reach(
        tmp_path, state, teardown, lab_nobrd, backend):
    fleet = f"unicast-{backend}"
    iocs = three_iocs(f"UNI{backend[0].upper()}:")
    port = 27600 if backend == "process" else 27700
    path = write_fleet(tmp_path / "fleet.yaml", fleet, iocs, base_port=port)
    teardown.append((fleet, backend))
    refused = iocfleet("up", str(path), "--backend", backend, "--interface", lab_nobrd.peer_veth,
                       "--strategy", "shared-port", state=state)
    assert refused.returncode == 3 and "interface-no-broadcast" in refused.stderr, refused.stderr
    proc = iocfleet("up", str(path), "--backend", backend, "--interface", lab_nobrd.peer_veth,
                    "--strategy", "shared-port", "--force", "--timeout", "120", state=state)
    assert proc.returncode == 5, proc.stdout + proc.stderr
    err = proc.stderr
    assert f"EPICS_CA_ADDR_LIST entry {lab_nobrd.peer_addr}:{port}" in err, err
    assert "from one fixed source port" in err and "stuck with" in err and "rule R3" in err, err
    assert "brd +" in err and "distinct-ports" in err, err
    # the measured fixed-port reach is one IOC's share, not 1.0
    assert "reach 0.33 from one fixed source port" in err, err
    # rolled back: nothing of the fleet is left
    assert iocfleet_json("status", fleet, "--backend", backend, state=state)["iocs"] == []


def test_broadcast_path_passes_readiness_at_full_reach(tmp_path, state, teardown, lab):
    fleet = "bcastpath"
    iocs = three_iocs("BCP:")
    path = write_fleet(tmp_path / "fleet.yaml", fleet, iocs, base_port=27800)
    teardown.append((fleet, "process"))
    result = iocfleet_json("up", str(path), "--backend", "process", "--interface", lab.peer_veth, state=state)
    assert result["client_env"]["EPICS_CA_ADDR_LIST"] == lab.broadcast
    [path_reach] = result["reach"]
    assert path_reach["destination"] == f"{lab.broadcast}:27800"
    assert (path_reach["fresh_reach"], path_reach["fixed_reach"], path_reach["full"]) == (1.0, 1.0, True)
    assert path_reach["fixed_port_iocs"] == ["n0", "n1", "n2"]
    values = pyepics_read([i["prefix"] + "V" for i in iocs], result["client_env"],
                          argv_prefix=["ip", "netns", "exec", lab.ns])
    assert values == {"BCP:0:V": 0.0, "BCP:1:V": 1.0, "BCP:2:V": 2.0}


def _status(fleet, state):
    return iocfleet_json("status", fleet, "--backend", "process", state=state)


def test_readdressing_or_a_down_interface_makes_the_running_fleet_stale_until_up_again(tmp_path, state, teardown,
                                                                                        lab):
    from labnet import ip

    fleet = "movedfleet"
    iocs = three_iocs("MOV:")
    path = write_fleet(tmp_path / "fleet.yaml", fleet, iocs, base_port=27900, interface=lab.peer_veth)
    teardown.append((fleet, "process"))
    first = iocfleet_json("up", str(path), "--backend", "process", state=state)
    assert _status(fleet, state)["findings"] == []

    # a DHCP renew / re-addressing: the address the IOCs bind goes away, another takes its place
    new_addr = lab.peer_addr.rsplit(".", 1)[0] + ".77"
    ip("addr", "del", f"{lab.peer_addr}/{lab.prefixlen}", "dev", lab.peer_veth)
    ip("addr", "add", f"{new_addr}/{lab.prefixlen}", "brd", "+", "dev", lab.peer_veth)
    [stale] = _status(fleet, state)["findings"]
    assert (stale["code"], stale["severity"]) == ("stale-fleet", "error")
    assert f"address {lab.peer_addr} of {lab.peer_veth} is gone (now: {new_addr})" in stale["message"]
    assert "iocfleet up" in stale["fix"]
    text = iocfleet("status", fleet, "--backend", "process", state=state).stdout
    assert "error: stale-fleet" in text
    doctor = iocfleet("doctor", "--fleet", str(path), "--backend", "process", "--json", state=state)
    assert doctor.returncode == 1, doctor.stderr
    assert "stale-fleet" in {f["code"] for f in json.loads(doctor.stdout)["findings"]}

    again = iocfleet_json("up", str(path), "--backend", "process", state=state)
    assert set(again["diff"]["replace"]) == {"n0", "n1", "n2"} and again["ready"]
    assert _status(fleet, state)["findings"] == []
    values = pyepics_read([i["prefix"] + "V" for i in iocs], again["client_env"],
                          argv_prefix=["ip", "netns", "exec", lab.ns])
    assert values == {"MOV:0:V": 0.0, "MOV:1:V": 1.0, "MOV:2:V": 2.0}
    assert first["client_env"] == again["client_env"]  # same subnet: the broadcast did not change

    # the interface goes down while the fleet runs
    ip("link", "set", lab.peer_veth, "down")
    try:
        [down] = _status(fleet, state)["findings"]
        assert down["code"] == "stale-fleet" and f"interface {lab.peer_veth} went down" in down["message"]
    finally:
        ip("link", "set", lab.peer_veth, "up")
