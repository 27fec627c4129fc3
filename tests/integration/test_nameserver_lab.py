"""Strategy name-server (R15) in a routed lab: client namespace -> router -> IOC host, routing only.

A 20-IOC fleet on one shared port runs in the IOC host: a namespace of its own (process backend), or the
root namespace behind a test-made veth (docker backend: host-network containers live there); its client
settings are exactly what `iocfleet up` printed. From the client namespace, where no broadcast reaches the
fleet, pyepics (libca, EPICS_CA_NAME_SERVERS over TCP) and caproto's client (the UDP entry) read and
write every PV. The same run measures the time to connect all 60 PVs through the name server against
the 20 host:port entries of distinct-ports, and writes it to $IOCFLEET_EVIDENCE_DIR/nameserver-connect.json
(bench/bench_nameserver.py turns that into a section of docs/benchmarks.md).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cli_run import base_env
from cli_run import labelled_containers
from labnet import RoutedLab, make_routed_lab
from orchestrator.ca.probe import search

pytestmark = [pytest.mark.slow, pytest.mark.netns]

N_IOCS, N_SOFTIOC = 20, 6
UNICAST_ROUNDS = 30
CONNECT_RUNS = 3

# Every PV named on the command line: connect (timed), read, write a new value with completion, read back.
PYEPICS_RW = r"""
import json, sys, time
import epics
names, write = sys.argv[2:], sys.argv[1] == "write"
t0 = time.monotonic()
pvs = [epics.PV(n, auto_monitor=False, connection_timeout=30) for n in names]
connected = [pv.wait_for_connection(timeout=30) for pv in pvs]
elapsed = time.monotonic() - t0
out = {"elapsed": elapsed, "connected": sum(connected), "values": {}, "hosts": {}}
for pv in pvs:
    if write:
        new = {"F": 7.25, "I": 42, "S": "nsw"}[pv.pvname.rsplit(":", 1)[1]]
        pv.put(new, wait=True, timeout=10)
    out["values"][pv.pvname] = pv.get(timeout=10, use_monitor=False, as_string=pv.pvname.endswith(":S"))
    out["hosts"][pv.pvname] = pv.host
print(json.dumps(out))
"""

# The same with caproto's threading client (no name-server support: it uses the EPICS_CA_ADDR_LIST entry).
CAPROTO_RW = r"""
import json, sys
from caproto.threading.client import Context
names = sys.argv[1:]
ctx = Context()
pvs = ctx.get_pvs(*names, timeout=30)
for pv in pvs:
    pv.wait_for_connection(timeout=30)
out = {}
for pv in pvs:
    new = {"F": 3.5, "I": 7, "S": "cpw"}[pv.name.rsplit(":", 1)[1]]
    pv.write([new] if not isinstance(new, str) else [new.encode()], wait=True, timeout=10)
    data = pv.read(timeout=10).data
    value = data[0]
    out[pv.name] = value.decode() if isinstance(value, bytes) else value.item()
print(json.dumps(out))
"""


# caproto's sync client (what caproto-get uses): one read per name, each a search of its own.
CAPROTO_SYNC_READ = r"""
import json, sys
from caproto.sync.client import read
print(json.dumps({n: read(n, timeout=10, repeater=False).data[0].item() for n in sys.argv[1:]}))
"""


def fleet_iocs() -> list[dict]:
    iocs = []
    for i in range(N_IOCS):
        runtime = "softioc" if i < N_SOFTIOC else "caproto"
        iocs.append({"name": f"n{i:02d}", "runtime": runtime, "prefix": f"NS:{i:02d}:", "pvs": [
            {"name": "F", "type": "float", "value": float(i)},
            {"name": "I", "type": "int", "value": i},
            {"name": "S", "type": "str", "value": f"n{i:02d}"},
        ]})
    return iocs


def declared(iocs) -> list[str]:
    return [ioc["prefix"] + pv["name"] for ioc in iocs for pv in ioc["pvs"]]


def cli(lab: RoutedLab, state: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDG_STATE_HOME": str(state)}
    return subprocess.run(lab.argv([sys.executable, "-m", "orchestrator.cli", *args], "ns"), env=env,
                          capture_output=True, text=True, timeout=timeout)


def cli_json(lab, state, *args, **kw) -> dict:
    proc = cli(lab, state, *args, "--json", **kw)
    assert proc.returncode == 0, f"{args} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout)


def client_run(lab: RoutedLab, script: str, args: list[str], client_env: dict, timeout: float = 180) -> dict:
    """Run `script` in the client namespace with exactly `client_env` as its CA settings."""
    proc = subprocess.run(lab.argv([sys.executable, "-c", script, *args], "client"), env=base_env(**client_env),
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def exported(text: str) -> dict:
    return dict(line.removeprefix("export ").split("=", 1) for line in text.splitlines() if line.startswith("export "))


# process: the IOC host is a namespace of its own (port 5064 there is ours alone); docker: host-network
# containers live in the root namespace, so the IOC host is the root namespace with a veth to the router.
BASE_PORT = {"process": 5064, "docker": 24064}


@pytest.fixture(params=["process", pytest.param("docker", marks=pytest.mark.docker)])
def routed_fleet(request, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    backend = request.param
    state = tmp_path / "state"
    state.mkdir()
    iocs = fleet_iocs()
    path = tmp_path / "fleet.yaml"
    fleet = f"nslab-{backend}"
    with make_routed_lab(host_in_root=backend == "docker") as lab:
        path.write_text(yaml.safe_dump({"fleet": fleet, "network": {
            "interface": lab.ns_veth, "clients": "routed", "base_port": BASE_PORT[backend]}, "iocs": iocs}))
        try:
            yield lab, state, path, iocs, backend, fleet
        finally:
            cli(lab, state, "down", "--fleet-name", fleet, "--backend", backend, timeout=300)
            if backend == "docker" and labelled_containers(fleet):
                subprocess.run(["docker", "rm", "-f", *labelled_containers(fleet)], capture_output=True, timeout=120)


def test_twenty_iocs_on_one_port_are_read_and_written_from_another_subnet_through_the_name_server(routed_fleet):
    lab, state, path, iocs, backend, fleet = routed_fleet
    port = BASE_PORT[backend]
    names = declared(iocs)
    plan = cli_json(lab, state, "plan", str(path))
    assert plan["strategy"] == "name-server", "auto picks the name server for 20 IOCs and routed clients"
    assert {i["udp_port"] for i in plan["iocs"]} == {port}

    up = cli_json(lab, state, "up", str(path), "--backend", backend, "--timeout", "300", timeout=1200)
    client_env = up["client_env"]
    endpoint = f"{lab.ns_addr}:{port + 2}"
    assert client_env == {"EPICS_CA_AUTO_ADDR_LIST": "NO", "EPICS_CA_ADDR_LIST": endpoint,
                          "EPICS_CA_NAME_SERVERS": endpoint}
    assert exported(cli(lab, state, "env", str(path)).stdout) == client_env, "env prints what up printed"

    # Routing only: a broadcast from the client subnet reaches nothing; a unicast to the shared port one IOC.
    lost = lab.call("client", lambda: search(["NS:00:F"], [(lab.ns_broadcast, port)], timeout=1.0))
    assert not lost.replies
    unicast = lab.call("client", lambda: search(names, [(lab.ns_addr, port)], rounds=UNICAST_ROUNDS, timeout=1.5))
    per_round: dict[int, set] = {}
    for reply in unicast.replies:
        per_round.setdefault(reply.round, set()).add(reply.server)
    assert all(len(servers) == 1 for servers in per_round.values()), "R3: a unicast search reaches one IOC"
    assert len(per_round) == UNICAST_ROUNDS
    rows = [row("R3", f"unicast {lab.ns_addr}:{port}, all {len(names)} names, {UNICAST_ROUNDS} searches",
                "every search answered by exactly 1 of 20 IOCs",
                f"{len(per_round)}/{UNICAST_ROUNDS} answered, max {max(map(len, per_round.values()))} IOC(s) per search",
                True),
            row("R15", f"subnet broadcast {lab.ns_broadcast}:{port} from the client subnet", "no answer (routing only)",
                f"{len(lost.replies)} replies", True)]

    # The name server: the owning IOC's address and TCP port for every name, nothing for unknown names.
    tcp_ports = {i["name"]: i["tcp_port"] for i in up["iocs"]}
    probed = lab.call("client", lambda: search(names[:60:7] + ["NOPE:X"], [(lab.ns_addr, port + 2)], timeout=2.0))
    for name in names[:60:7]:
        owner = f"n{name.split(':')[1]}"
        assert probed.servers(name) == {(lab.ns_addr, tcp_ports[owner])}, name
    assert not probed.select("NOPE:X")
    rows += [row("R15", f"UDP search at the name server {endpoint} ({len(names[:60:7])} names)",
                 "each answer names the owning IOC's address and TCP port",
                 f"{sum(probed.servers(n) == {(lab.ns_addr, tcp_ports['n' + n.split(':')[1]])} for n in names[:60:7])}"
                 f"/{len(names[:60:7])} right", True),
             row("R15", "a name no IOC serves", "no answer (no negative answer in CA)",
                 f"{len(probed.select('NOPE:X'))} replies", True)]

    # pyepics (libca) with exactly the printed settings: read, write, read back every PV.
    rw = client_run(lab, PYEPICS_RW, ["write", *names], client_env)
    assert rw["connected"] == len(names)
    expected = {n: {"F": 7.25, "I": 42, "S": "nsw"}[n.rsplit(":", 1)[1]] for n in names}
    assert rw["values"] == expected
    assert {h.rsplit(":", 1)[0] for h in rw["hosts"].values()} == {lab.ns_addr}
    assert len(set(rw["hosts"].values())) == N_IOCS, "one TCP circuit per IOC: every name went to its own IOC"

    # pyepics over TCP alone (EPICS_CA_NAME_SERVERS, no UDP address list at all).
    tcp_only = {**client_env, "EPICS_CA_ADDR_LIST": ""}
    ro = client_run(lab, PYEPICS_RW, ["read", *names], tcp_only)
    assert ro["values"] == expected
    rows += [row("R15", "pyepics (libca), printed settings: read+write every PV", f"{len(names)}/{len(names)}",
                 f"{sum(rw['values'][n] == expected[n] for n in names)}/{len(names)}, {len(set(rw['hosts'].values()))}"
                 " circuits", True),
             row("R15", "pyepics (libca), EPICS_CA_NAME_SERVERS only (TCP search)", f"{len(names)}/{len(names)}",
                 f"{sum(ro['values'][n] == expected[n] for n in names)}/{len(names)}", True)]

    # caproto's client with exactly the printed settings (it honours the ip field of the UDP answer).
    assert client_run(lab, CAPROTO_RW, names, client_env) == \
        {n: {"F": 3.5, "I": 7, "S": "cpw"}[n.rsplit(":", 1)[1]] for n in names}
    rows.append(row("R15", "caproto threading client, printed settings (UDP entry): write+read every PV",
                    f"{len(names)}/{len(names)}", f"{len(names)}/{len(names)}", True))
    sync = client_run(lab, CAPROTO_SYNC_READ, names[::3], client_env)  # one PV of every IOC
    assert sync == {n: 3.5 for n in names[::3]}
    rows.append(row("R15", "caproto sync client (caproto-get), printed settings: one PV of every IOC",
                    f"{len(names[::3])}/{len(names[::3])}", f"{len(sync)}/{len(names[::3])}", True))

    # One IOC restarts (new TCP port): the name server keeps answering, and points at the new port.
    assert cli(lab, state, "restart", fleet, "n07", "--backend", backend).returncode == 0
    after = client_run(lab, PYEPICS_RW, ["read", "NS:07:F", "NS:08:F"], client_env)
    assert after["values"] == {"NS:07:F": 7.0, "NS:08:F": 3.5}
    rows.append(row("R15", "IOC n07 restarted (new TCP port), then read through the name server",
                    "answers, pointing at the new port", f"read {after['values']['NS:07:F']} from {after['hosts']['NS:07:F']}",
                    True))

    # Timing, in this one run: connect all 60 PVs via the name server (first with its cache empty: just
    # restarted, so it must discover every IOC's port), then via 20 host:port entries.
    assert cli(lab, state, "restart", fleet, "ca-nameserver", "--backend", backend).returncode == 0
    wait_listening(lab, (lab.ns_addr, port + 2))
    cold = client_run(lab, PYEPICS_RW, ["read", *names], client_env)
    assert cold["connected"] == len(names)
    via_ns = [client_run(lab, PYEPICS_RW, ["read", *names], client_env)["elapsed"] for _ in range(CONNECT_RUNS)]
    up_dp = cli_json(lab, state, "up", str(path), "--strategy", "distinct-ports", "--backend", backend,
                     "--timeout", "300", timeout=1200)
    dp_env = up_dp["client_env"]
    assert len(dp_env["EPICS_CA_ADDR_LIST"].split()) == N_IOCS and "EPICS_CA_NAME_SERVERS" not in dp_env
    status = cli_json(lab, state, "status", "--fleet-name", fleet, "--backend", backend)
    assert "ca-nameserver" not in json.dumps(status), "switching strategy removes the name server"
    via_dp = []
    for _ in range(CONNECT_RUNS):
        run = client_run(lab, PYEPICS_RW, ["read", *names], dp_env)
        assert run["connected"] == len(names)
        via_dp.append(run["elapsed"])
    write_evidence(backend, cold["elapsed"], via_ns, via_dp, len(names), rows)


def row(rule: str, check: str, predicted: str, measured: str, agree: bool) -> dict:
    """One evidence row; every row is asserted before it is written, so `agree` is true when it lands."""
    return {"rule": rule, "check": check, "predicted": predicted, "measured": measured, "agree": agree}


def wait_listening(lab: RoutedLab, address, timeout: float = 30.0) -> None:
    """Until a TCP connect from the client namespace to `address` succeeds."""
    import socket
    import time

    deadline = time.monotonic() + timeout
    while True:
        sock = lab.call("client", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        try:
            sock.settimeout(1.0)
            sock.connect(address)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
        finally:
            sock.close()


def write_evidence(backend: str, cold: float, via_ns: list[float], via_dp: list[float], n_pvs: int, rows: list[dict]) -> None:
    target = os.environ.get("IOCFLEET_EVIDENCE_DIR")
    if not target:
        return
    Path(target).mkdir(parents=True, exist_ok=True)
    data = {"backend": backend, "iocs": N_IOCS, "pvs": n_pvs, "runs": CONNECT_RUNS, "client": "pyepics (libca), fresh process per run",
            "rows": rows, "name_server_cold_s": cold, "name_server_s": via_ns, "distinct_ports_s": via_dp,
            "name_server_median_s": statistics.median(via_ns), "distinct_ports_median_s": statistics.median(via_dp)}
    name = "nameserver-connect.json" if backend == "process" else f"nameserver-connect-{backend}.json"
    (Path(target) / name).write_text(json.dumps(data, indent=1))
