"""Messy interfaces read from the real kernel inside a test-made namespace: an address without brd, /31,
a point-to-point /32, a secondary address in another subnet, a down interface. For each: what
`iocfleet interfaces` reports, what `plan` chooses (and why), and what `check` / `up` say."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from labnet import Lab, ip, kill_namespace_processes, start_process

pytestmark = pytest.mark.netns


@pytest.fixture
def messy(tmp_path):
    """A namespace with veth pairs: a0 (no-brd /24 then brd+ /24 in another subnet), b0 (/31),
    c0 (peer /32), d0 (brd+ /24, link down). Subnets from 198.18.0.0/15 stay inside the namespace."""
    import os

    ns = f"iocfmessy{os.getpid()}"
    ip("netns", "add", ns)
    try:
        n = ["-n", ns]
        for a, b in (("a0", "a1"), ("b0", "b1"), ("c0", "c1"), ("d0", "d1")):
            ip(*n, "link", "add", a, "type", "veth", "peer", "name", b)
        ip(*n, "addr", "add", "198.18.240.1/24", "dev", "a0")
        ip(*n, "addr", "add", "198.18.241.1/24", "brd", "+", "dev", "a0")
        ip(*n, "addr", "add", "198.18.242.0/31", "dev", "b0")
        ip(*n, "addr", "add", "198.18.243.1", "peer", "198.18.243.2", "dev", "c0")
        ip(*n, "addr", "add", "198.18.244.1/24", "brd", "+", "dev", "d0")
        for dev in ("lo", "a0", "a1", "b0", "b1", "c0", "c1", "d1"):
            ip(*n, "link", "set", dev, "up")
        yield ns
    finally:
        kill_namespace_processes(ns)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)


def cli(ns, tmp_path, *args, check=True):
    env_state = {"XDG_STATE_HOME": str(tmp_path / "state"), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    proc = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m", "orchestrator.cli", *args],
                          capture_output=True, text=True, timeout=60, env=env_state)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def fleet_file(tmp_path, interface, n=3):
    path = tmp_path / f"{interface}.yaml"
    iocs = "".join(f"  - {{name: i{k}, prefix: 'M{k}:'}}\n" for k in range(n))
    path.write_text(f"fleet: messy\nnetwork: {{interface: {interface}}}\niocs:\n{iocs}")
    return str(path)


def test_the_kernel_not_netifaces_says_which_address_has_a_broadcast(messy, tmp_path):
    data = json.loads(cli(messy, tmp_path, "interfaces", "--json").stdout)
    got = {i["name"]: [(a["address"], a["prefixlen"], a["broadcast"], a["peer"]) for a in i["ipv4"]]
           for i in data["interfaces"]}
    assert got["a0"] == [("198.18.240.1", 24, None, None), ("198.18.241.1", 24, "198.18.241.255", None)]
    assert got["b0"] == [("198.18.242.0", 31, None, None)]
    assert got["c0"] == [("198.18.243.1", 32, None, "198.18.243.2")]
    by = {i["name"]: i for i in data["interfaces"]}
    assert by["c0"]["point_to_point"] and not by["a0"]["point_to_point"]
    assert by["d0"]["up"] is False and by["a0"]["up"] is True


@pytest.mark.parametrize("iface,why", [("b0", "/31"), ("c0", "peer 198.18.243.2")])
def test_slash_31_and_point_to_point_plan_distinct_ports(messy, tmp_path, iface, why):
    plan = json.loads(cli(messy, tmp_path, "plan", fleet_file(tmp_path, iface), "--json").stdout)
    assert plan["strategy"] == "distinct-ports" and plan["broadcast"] is None
    assert why in " ".join(d["text"] for d in plan["decisions"])
    forced = cli(messy, tmp_path, "check", fleet_file(tmp_path, iface), "--strategy", "shared-port", "--json",
                 check=False)
    assert forced.returncode == 1
    assert "interface-no-broadcast" in {f["code"] for f in json.loads(forced.stdout)["findings"]}


def test_secondary_address_with_broadcast_is_the_one_bound_and_its_broadcast_the_one_printed(messy, tmp_path):
    plan = json.loads(cli(messy, tmp_path, "plan", fleet_file(tmp_path, "a0"), "--json").stdout)
    assert (plan["strategy"], plan["address"], plan["broadcast"]) == ("shared-port", "198.18.241.1",
                                                                        "198.18.241.255")
    assert plan["client_env"]["EPICS_CA_ADDR_LIST"] == "198.18.241.255"
    assert all(i["bind"] == ["198.18.241.1", "198.18.241.255"] for i in plan["iocs"])
    assert "198.18.240.1/24 (broadcast none)" in " ".join(d["text"] for d in plan["decisions"])


def test_a_down_interface_named_in_the_fleet_file_is_an_error_and_up_refuses(messy, tmp_path):
    checked = cli(messy, tmp_path, "check", fleet_file(tmp_path, "d0"), "--json", check=False)
    assert checked.returncode == 1
    [down] = [f for f in json.loads(checked.stdout)["findings"] if f["code"] == "interface-down"]
    assert "ip link set d0 up" in down["fix"]
    up = cli(messy, tmp_path, "up", fleet_file(tmp_path, "d0"), "--backend", "process", check=False)
    assert up.returncode == 3 and "interface-down" in up.stderr


def test_rsrv_given_a_point_to_point_address_never_starts(messy):
    """rsrv binds the peer (what getifaddrs reports in place of a broadcast) next to the address: EADDRNOTAVAIL."""
    from pathlib import Path

    lab = Lab(messy, "c0", "198.18.243.1", None, "c1", "198.18.243.2", 32, "198.18.243.1")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "EPICS_CA_SERVER_PORT": "23100", "EPICS_CAS_SERVER_PORT": "23100",
           "EPICS_CAS_INTF_ADDR_LIST": "198.18.243.1", "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
           "EPICS_CAS_BEACON_ADDR_LIST": "198.18.243.2", "EPICS_CA_AUTO_ADDR_LIST": "NO",
           "EPICS_CA_ADDR_LIST": "198.18.243.1"}
    server = Path(__file__).parent / "servers" / "softioc_server.py"
    proc = start_process(lab, "ns", [sys.executable, str(server), "P2P:X"], env, timeout=15)
    err = proc.stop()
    assert not proc.ready and "bcast bind ERROR" in err, err


def test_a_fleet_on_a_point_to_point_address_is_read_by_pyepics_with_the_printed_settings(messy, tmp_path):
    from cli_run import pyepics_read

    path = tmp_path / "p2p.yaml"
    path.write_text("fleet: ptp\nnetwork: {interface: c0, base_port: 23200}\niocs:\n"
                    "  - {name: c, runtime: caproto, prefix: 'PTP:C:', pvs: [{name: V, value: 1.0}]}\n"
                    "  - {name: s, runtime: softioc, prefix: 'PTP:S:', pvs: [{name: V, value: 2.0}]}\n")
    try:
        up = cli(messy, tmp_path, "up", str(path), "--backend", "process", "--json", "--timeout", "60", check=False)
        assert up.returncode == 0, up.stderr
        result = json.loads(up.stdout)
        env = result["client_env"]
        assert env["EPICS_CA_ADDR_LIST"] == "198.18.243.1:23200 198.18.243.1:23201"
        assert all(p["full"] for p in result["reach"]), result["reach"]
        values = pyepics_read(["PTP:C:V", "PTP:S:V"], env, argv_prefix=["ip", "netns", "exec", messy])
        assert values == {"PTP:C:V": 1.0, "PTP:S:V": 2.0}
    finally:
        cli(messy, tmp_path, "down", str(path), "--backend", "process", check=False)


def test_secondary_subnets_the_fleet_hears_only_the_broadcast_of_the_address_it_binds(messy, tmp_path):
    """a0 has 198.18.240.1/24 (no brd) then 198.18.241.1/24 brd +: the plan binds .241.1 (and its
    broadcast for caproto); measured from inside the namespace, a search to 198.18.241.255 reaches all
    three IOCs in every round, one to 198.18.240.255 (the other subnet's top, a kernel broadcast) or to
    198.18.240.1 reaches none of them, as rules.predict says for those sockets."""
    from orchestrator.ca import probe, rules
    from orchestrator.host import kernel_addresses

    path = tmp_path / "sec.yaml"
    path.write_text("fleet: secondary\nnetwork: {interface: a0, base_port: 23300}\niocs:\n"
                    + "".join(f"  - {{name: i{k}, runtime: {rt}, prefix: 'SEC:{k}:'}}\n"
                              for k, rt in enumerate(("caproto", "caproto", "softioc"))))
    lab = Lab(messy, "a0", "198.18.241.1", None, "a1", "198.18.241.2", 24, "198.18.241.255")
    try:
        up = cli(messy, tmp_path, "up", str(path), "--backend", "process", "--json", "--timeout", "60", check=False)
        assert up.returncode == 0, up.stderr
        plan_env = json.loads(up.stdout)["client_env"]
        assert plan_env["EPICS_CA_ADDR_LIST"] == "198.18.241.255"
        names = [f"SEC:{k}:HEARTBEAT" for k in range(3)]
        measured = {}
        for dest in ("198.18.241.255", "198.18.240.255", "198.18.240.1"):
            res = probe.search(names, [(dest, 23300)], rounds=20, timeout=1.0, socket_factory=lab.socket_factory("ns"))
            measured[dest] = [res.rounds_answered(n, (dest, 23300)) for n in names]
        assert measured == {"198.18.241.255": [20, 20, 20], "198.18.240.255": [0, 0, 0], "198.18.240.1": [0, 0, 0]}

        # the model, fed the namespace's real interfaces and the plan's binds, says the same
        ip_json = subprocess.run(["ip", "-n", messy, "-j", "addr", "show"], capture_output=True, text=True,
                                 check=True).stdout
        from orchestrator.hostmodel import Interface

        ifaces = [Interface(n, True, n == "lo", True, True, 1500, addrs)
                  for n, (addrs, _) in kernel_addresses(ip_json).items()]
        plan = json.loads(cli(messy, tmp_path, "plan", str(path), "--json").stdout)
        sockets = [s for i in plan["iocs"] for s in rules.server_sockets(i["runtime"], i["bind"], 23300, i["name"],
                                                                         interfaces=ifaces)]
        for dest, got in measured.items():
            predicted = rules.predict(sockets, rules.Datagram(dest, 23300), ifaces)
            assert len(predicted.receivers) == (3 if got[0] else 0), (dest, predicted)
    finally:
        cli(messy, tmp_path, "down", str(path), "--backend", "process", check=False)
