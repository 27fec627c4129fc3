"""Many fleets, one host (issue 15): two fleets side by side on one loopback port, `ls`, cross-fleet refusals,
the unicast theft of another uid measured by the doctor, and the host's one CA repeater.

The process variant runs every command inside a network namespace of its own (its own loopback, its own
UDP 5065), so the repeater's whole life can be asserted while other suites run. The docker variant runs on
the host's loopback on a free port; the host repeater there may be someone else's, and the test asserts
what it may: ours is removed by the last `down`, a foreign one is never touched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from labnet import bare_namespace
from cli_run import base_env, labelled_containers, supervisors, write_fleet
from ports import free_port

CAGET = r"""
import json, sys
from caproto.sync.client import read
out = {}
for name in sys.argv[1:]:
    try:
        data = read(name, timeout=5).data
        data = data.tolist() if hasattr(data, "tolist") else list(data)
        # iocStats UPTIME is a string PV: caproto gives bytes
        out[name] = [d.decode(errors="replace") if isinstance(d, bytes) else d for d in data]
    except Exception as exc:
        out[name] = None
print(json.dumps(out))
"""


def one_ioc(prefix: str, value: float, runtime: str = "caproto") -> list[dict]:
    return [{"name": "one", "runtime": runtime, "prefix": prefix, "pvs": [{"name": "X", "value": value}]}]


class Host:
    """Runs `iocfleet` and clients with one state dir, host dir and (optionally) inside a namespace."""

    def __init__(self, state: Path, hostdir: Path | None, netns: str | None = None, extra_env: dict | None = None):
        self.state, self.hostdir, self.netns = state, hostdir, netns
        self.extra_env = extra_env or {}

    def _argv(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *argv] if self.netns else argv

    def iocfleet(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        env = {**os.environ, "XDG_STATE_HOME": str(self.state), **self.extra_env}
        if self.hostdir is not None:
            env["IOCFLEET_HOST_DIR"] = str(self.hostdir)
        return subprocess.run(self._argv([sys.executable, "-m", "orchestrator.cli", *args]), env=env,
                              capture_output=True, text=True, timeout=timeout)

    def ok(self, *args: str) -> subprocess.CompletedProcess:
        proc = self.iocfleet(*args)
        assert proc.returncode == 0, f"iocfleet {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        return proc

    def ls(self) -> dict:
        return json.loads(self.ok("ls", "--json").stdout)

    def printed_env(self, path: Path) -> dict[str, str]:
        """The client settings exactly as `iocfleet env` prints them."""
        out = {}
        for line in self.ok("env", str(path)).stdout.splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            out[key] = value.strip("'\"")
        assert out["EPICS_CA_AUTO_ADDR_LIST"] == "NO" and out["EPICS_CA_ADDR_LIST"]
        return out

    def read(self, names: list[str], client_env: dict[str, str]) -> dict:
        proc = subprocess.run(self._argv([sys.executable, "-c", CAGET, *names]), env=base_env(**client_env),
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def netns():
    with bare_namespace("mf") as name:
        yield name


def _hand_started_ioc_is_foreign_and_its_pvs_are_found_live(h: Host, tmp_path: Path) -> None:
    """A caproto IOC started by hand on 5064 (no fleet): `ls` lists it as foreign with pid and uid, and a
    fleet serving one of its PVs is refused by `check` naming that pid (found by the live search only)."""
    from orchestrator.hostmodel import loopback_only_snapshot
    from orchestrator.images.build import program_argv
    from orchestrator.plan import planner
    from orchestrator import spec

    hand = spec.from_dict({"fleet": "hand", "network": {"interface": "lo"}, "iocs": one_ioc("MFHAND:", 1.0)})
    payload = planner.plan(hand, loopback_only_snapshot()).iocs[0].env_dict()["IOCFLEET_IOC"]
    env = base_env(IOCFLEET_IOC=payload,
                   EPICS_CAS_INTF_ADDR_LIST="0.0.0.0", EPICS_CA_SERVER_PORT="5064", EPICS_CAS_SERVER_PORT="5064",
                   EPICS_CAS_AUTO_BEACON_ADDR_LIST="NO", EPICS_CAS_BEACON_ADDR_LIST="127.255.255.255")
    proc = subprocess.Popen(h._argv(program_argv("caproto")), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        for line in proc.stdout:  # the program says when it serves
            if "serving" in line.lower() or "listening" in line.lower():
                break
        foreign = [s for s in h.ls()["foreign"] if s["pid"] == proc.pid]
        assert {(s["proto"], s["port"], s["uid"]) for s in foreign} >= {("udp", 5064, 0)}, h.ls()["foreign"]
        dup = write_fleet(tmp_path / "dup.yaml", "mfdup", one_ioc("MFHAND:", 1.0), base_port=5064)
        checked = h.iocfleet("check", str(dup))
        assert checked.returncode == 1 and f"pid {proc.pid}" in checked.stdout and "MFHAND:X" in checked.stdout, \
            checked.stdout
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _record(hostdir: Path) -> Path:
    """The repeater record in a test's own host directory (one network namespace: at most one file)."""
    return next(iter(sorted(hostdir.glob("repeater-*.json"))), hostdir / "no-record")


def _repeater_pids(h: Host) -> list[int]:
    view = h.ls()["repeater"]
    return [view["pid"]] if view["held"] else []


def _side_by_side(h: Host, tmp_path: Path, backend: str, port: int, tag: str, teardown) -> tuple[Path, Path]:
    a = write_fleet(tmp_path / "a.yaml", f"mfa{tag}", one_ioc(f"MFA{tag}:", 1.5), base_port=port)
    b = write_fleet(tmp_path / "b.yaml", f"mfb{tag}", one_ioc(f"MFB{tag}:", 2.5, "softioc"), base_port=port)
    teardown += [(f"mfa{tag}", backend), (f"mfb{tag}", backend)]
    h.ok("up", str(a), "--backend", backend)
    h.ok("up", str(b), "--backend", backend)
    # both fully readable through their own printed settings, each with a fresh client
    for path, prefix, value in ((a, f"MFA{tag}:", 1.5), (b, f"MFB{tag}:", 2.5)):
        env = h.printed_env(path)
        assert env["EPICS_CA_ADDR_LIST"] == "127.255.255.255"
        got = h.read([f"{prefix}X", f"{prefix}HEARTBEAT", f"{prefix}UPTIME"], env)
        assert got[f"{prefix}X"] == [value], got
        assert all(v is not None for v in got.values()), got
    fleets = {f["fleet"]: f for f in h.ls()["fleets"]}
    for name in (f"mfa{tag}", f"mfb{tag}"):
        assert fleets[name]["backend"] == backend and fleets[name]["udp_ports"] == [port]
        assert fleets[name]["strategy"] == "shared-port" and fleets[name]["states"] == {"running": 1}
    # a third fleet serving a PV of the first is refused by `check`, naming the first
    c = write_fleet(tmp_path / "c.yaml", f"mfc{tag}", one_ioc(f"MFA{tag}:", 9.0), base_port=port)
    proc = h.iocfleet("check", str(c))
    assert proc.returncode == 1, proc.stdout
    assert "duplicate-pv" in proc.stdout and f"fleet mfa{tag}" in proc.stdout, proc.stdout
    return a, b


@pytest.mark.netns
@pytest.mark.slow
def test_two_process_fleets_share_a_loopback_port_and_the_last_down_stops_the_repeater(
        tmp_path, state, teardown, netns):
    # DOCKER_HOST pointing nowhere: the namespace's host view holds only its own process fleets
    h = Host(state, tmp_path / "host", netns, {"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    try:
        a, b = _side_by_side(h, tmp_path, "process", 5064, "p", teardown)
        # a fleet that printed a unicast (strategy single, 127.0.0.1) is protected from a newcomer on it
        s1 = write_fleet(tmp_path / "s1.yaml", "mfsp", one_ioc("MFSP:", 5.5), base_port=5070, strategy="single")
        s2 = write_fleet(tmp_path / "s2.yaml", "mfsq", one_ioc("MFSQ:", 6.5), base_port=5070, strategy="single")
        teardown += [("mfsp", "process"), ("mfsq", "process")]
        h.ok("up", str(s1), "--backend", "process")
        assert h.printed_env(s1)["EPICS_CA_ADDR_LIST"] == "127.0.0.1"
        checked = h.iocfleet("check", str(s2))
        assert checked.returncode == 1 and "neighbour-settings-broken" in checked.stdout, checked.stdout
        assert "fleet mfsp" in checked.stdout and "127.0.0.1:5070" in checked.stdout
        refused = h.iocfleet("up", str(s2), "--backend", "process")
        assert refused.returncode == 3 and "fleet mfsp" in refused.stderr, refused.stderr
        assert h.read(["MFSP:X"], h.printed_env(s1))["MFSP:X"] == [5.5]  # untouched
        h.ok("down", str(s1), "--backend", "process")
        _hand_started_ioc_is_foreign_and_its_pvs_are_found_live(h, tmp_path)
        repeater = h.ls()["repeater"]
        assert repeater["provider"] == "iocfleet" and repeater["started_by"] == "mfap", repeater
        first = repeater["pid"]
        h.ok("down", str(a), "--backend", "process")
        assert _repeater_pids(h) == [first]  # still serving fleet b
        assert [f["fleet"] for f in h.ls()["fleets"]] == ["mfbp"]
        h.ok("down", str(b), "--backend", "process")
        assert _repeater_pids(h) == [] and h.ls()["fleets"] == []
        assert not _record(tmp_path / "host").exists()
    finally:
        for fleet, backend in teardown:
            h.iocfleet("down", "--fleet-name", fleet, "--backend", backend)
        teardown.clear()
        for fleet in ("mfap", "mfbp", "_host"):
            for proc in supervisors(state, fleet):
                os.killpg(proc.pid, 9)


@pytest.mark.netns
@pytest.mark.slow
def test_concurrent_up_and_down_of_two_fleets_start_one_repeater_and_stop_it_once(tmp_path, state, netns):
    """Two `up`s at the same moment (host lock around the repeater decision): one repeater on UDP 5065, one
    record; two `down`s at the same moment: the repeater goes with the last, nothing is left."""
    h = Host(state, tmp_path / "host", netns, {"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    paths = [write_fleet(tmp_path / f"{n}.yaml", f"mfcc{n}", one_ioc(f"MFCC{n}:", 1.0 + i), base_port=5064)
             for i, n in enumerate("xy")]
    env = {**os.environ, "XDG_STATE_HOME": str(state), "IOCFLEET_HOST_DIR": str(tmp_path / "host"),
           **h.extra_env}

    def both(args):
        procs = [subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-m", "orchestrator.cli", *args(p)],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for p in paths]
        outs = [p.communicate(timeout=300) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outs
        return outs

    try:
        outs = both(lambda p: ["up", str(p), "--backend", "process"])
        started = [line for _, err in outs for line in err.splitlines() if "CA repeater: started" in line]
        assert len(started) == 1, outs  # a fresh namespace: nobody held UDP 5065
        sockets = subprocess.run(["ip", "netns", "exec", netns, "ss", "-Hlnup", "sport", "= :5065"],
                                 capture_output=True, text=True).stdout.strip().splitlines()
        assert len(sockets) == 1, sockets  # one repeater for both fleets
        assert _record(tmp_path / "host").exists()
        for p, n in zip(paths, "xy"):
            got = h.read([f"MFCC{n}:X"], h.printed_env(p))
            assert got[f"MFCC{n}:X"] is not None
        both(lambda p: ["down", str(p), "--backend", "process"])
        left = subprocess.run(["ip", "netns", "exec", netns, "ss", "-Hlnu", "sport", "= :5065"],
                              capture_output=True, text=True).stdout.strip()
        assert left == "" and not _record(tmp_path / "host").exists()
    finally:
        for n in "xy":
            h.iocfleet("down", "--fleet-name", f"mfcc{n}", "--backend", "process")
        for fleet in ("mfccx", "mfccy", "_host"):
            for proc in supervisors(state, fleet):
                os.killpg(proc.pid, 9)


@pytest.mark.docker
@pytest.mark.slow
def test_two_docker_fleets_share_a_port_and_another_uid_is_refused_then_measured(
        tmp_path, state, teardown, ioc_images):
    # Docker fleets live in the host's namespace: the default host directory (shared lock and record with
    # every other iocfleet here), unique fleet names (container names are host-wide), a free port.
    port = free_port(34000, 34998)
    t = f"d{uuid.uuid4().hex[:4]}"
    h = Host(state, None)
    before = h.ls()["repeater"]
    a, b = _side_by_side(h, tmp_path, "docker", port, t, teardown)
    after_up = h.ls()["repeater"]
    ours = after_up["provider"] == "iocfleet" and after_up["started_by"] == f"mfa{t}"
    assert after_up["held"]
    if not before["held"]:
        assert ours or after_up["provider"] in ("iocfleet", "foreign")  # another `up` may have won the lock

    # a process fleet (root) on the same port: another uid next to the docker IOCs (uid 10064)
    u = write_fleet(tmp_path / "u.yaml", f"mfu{t}", one_ioc(f"MFU{t}:", 3.5), base_port=port)
    teardown.append((f"mfu{t}", "process"))
    checked = h.iocfleet("check", str(u), "--backend", "process")
    assert checked.returncode == 1 and "port-uid-group" in checked.stdout and f"fleet mfa{t}" in checked.stdout
    assert h.iocfleet("check", str(u), "--backend", "docker").returncode == 0  # same uid: nothing to say
    refused = h.iocfleet("up", str(u), "--backend", "process")
    assert refused.returncode == 3, refused.stderr
    assert "port-uid-group" in refused.stderr and f"fleet mfa{t}" in refused.stderr, refused.stderr
    h.ok("up", str(u), "--backend", "process", "--force")
    # the newest uid group (root) now takes every unicast search: the docker IOCs get none
    doc = h.iocfleet("doctor", "--addr-list", f"127.0.0.1:{port}", "--names", f"MFA{t}:X MFU{t}:X",
                     "--repeat", "40", "--json")
    data = json.loads(doc.stdout)
    assert doc.returncode == 1
    (theft,) = [f for f in data["findings"] if f["code"] == "unicast-uid-theft"]
    assert theft["rule"] == "R2", theft
    assert "now uid 0" in theft["message"] and "uid 10064" in theft["message"], theft["message"]
    assert "uid 10064 (" in theft["message"] and "measured reach 0%" in theft["message"], theft["message"]
    assert "uid 0 (" in theft["message"].split("uid 10064 (")[0], theft["message"]  # the winner comes first
    print(f"\n[docker+process] {theft['message']}")

    h.ok("down", str(u), "--backend", "process")
    h.ok("down", str(a), "--backend", "docker")
    mid = h.ls()["repeater"]
    assert mid["held"]  # fleet b still runs: the repeater stays
    if ours:
        assert mid["pid"] == after_up["pid"] and mid["started_by"] == f"mfa{t}"
    others = {f["fleet"] for f in h.ls()["fleets"]} - {f"mfb{t}"}
    h.ok("down", str(b), "--backend", "docker")
    assert labelled_containers(f"mfa{t}") == [] and labelled_containers(f"mfb{t}") == []
    end = h.ls()
    if ours and not others and not end["fleets"]:  # nobody else ran on this host: the last down stopped it
        assert not end["repeater"]["held"] or end["repeater"]["pid"] != after_up["pid"], end["repeater"]
    if after_up["provider"] == "foreign" and end["repeater"]["held"] and end["repeater"]["pid"] == after_up["pid"]:
        assert end["repeater"]["provider"] == "foreign"  # never stopped one it did not start
