"""Launch and lifecycle on the real engine and as local processes: up, read over CA, status, kill, down."""

from __future__ import annotations

import signal
import time

import pytest

from cli_run import iocfleet, iocfleet_json, labelled_containers, pyepics_read, start_up, write_fleet

pytestmark = [pytest.mark.slow]

BACKENDS = [pytest.param("docker", marks=pytest.mark.docker), "process"]


def seven_iocs(prefix: str) -> list[dict]:
    """5 caproto + 2 softioc IOCs with PVs of every type; one IOC never restarts (for the kill test)."""
    iocs = []
    for i in range(5):
        iocs.append({"name": f"cp{i}", "runtime": "caproto", "prefix": f"{prefix}CP{i}:", "pvs": [
            {"name": "F", "type": "float", "value": 1.5 + i},
            {"name": "I", "type": "int", "value": i},
            {"name": "S", "type": "str", "value": f"cp{i}"},
            {"name": "E", "type": "enum", "enum_strings": ["Off", "On"], "value": "On"},
            {"name": "W", "type": "float", "count": 16, "sim": "sine", "rate_hz": 2},
        ]})
    for i in range(2):
        iocs.append({"name": f"si{i}", "runtime": "softioc", "prefix": f"{prefix}SI{i}:", "pvs": [
            {"name": "F", "type": "float", "value": 10.0 + i},
            {"name": "C", "type": "int", "sim": "counter", "rate_hz": 5},
            {"name": "S", "type": "str", "value": f"si{i}"},
        ]})
    iocs[0]["restart"] = "no"
    return iocs


def declared_pvs(iocs: list[dict]) -> list[str]:
    return [ioc["prefix"] + pv["name"] for ioc in iocs for pv in ioc["pvs"]]


@pytest.mark.parametrize("backend", BACKENDS)
def test_fleet_comes_up_every_pv_reads_with_printed_settings_and_down_leaves_nothing(tmp_path, state, teardown,
                                                                                      backend):
    fleet = f"launch-{backend}"
    iocs = seven_iocs(f"LT{backend[0].upper()}:")
    # one port per backend: docker IOCs (uid 10064) and processes (this uid) on one port would be refused
    # as port-uid-group (R2) when the two variants run at the same time
    port = 24064 if backend == "docker" else 24074
    path = write_fleet(tmp_path / "fleet.yaml", fleet, iocs, base_port=port)
    teardown.append((fleet, backend))

    result = iocfleet_json("up", str(path), "--backend", backend, "--timeout", "120", state=state)
    assert result["ready"] is True and result["backend"] == backend
    assert len(result["iocs"]) == 7
    assert all(i["pvs_ready"] == i["pvs_total"] == len(next(x for x in iocs if x["name"] == i["name"])["pvs"]) + 2
               for i in result["iocs"])
    client_env = result["client_env"]
    assert client_env == {"EPICS_CA_AUTO_ADDR_LIST": "NO", "EPICS_CA_ADDR_LIST": "127.255.255.255",
                          "EPICS_CA_SERVER_PORT": str(port)}

    values = pyepics_read(declared_pvs(iocs), client_env)
    missing = [name for name, value in values.items() if value is None]
    assert not missing, f"pyepics could not read {missing}"
    assert values[f"LT{backend[0].upper()}:CP3:F"] == pytest.approx(4.5)
    assert values[f"LT{backend[0].upper()}:SI1:S"] == "si1"
    assert len(values[f"LT{backend[0].upper()}:CP0:W"]) == 16

    again = iocfleet_json("up", str(path), "--backend", backend, state=state)
    assert again["diff"]["create"] == again["diff"]["replace"] == again["diff"]["remove"] == []
    assert sorted(again["diff"]["keep"]) == sorted(i["name"] for i in iocs)

    victim = next(i for i in result["iocs"] if i["name"] == "cp0")
    _kill_ioc(backend, victim)
    status = _wait_for_state(fleet, backend, state, "cp0", "exited")
    assert status["exit_code"] == 128 + signal.SIGKILL

    before = {i["name"] for i in iocfleet_json("status", fleet, "--backend", backend, state=state)["iocs"]}
    down = iocfleet_json("down", str(path), "--backend", backend, state=state)
    # 7 IOCs, plus the fleet's CA repeater unless another one already held UDP 5065 (R12)
    assert sorted(down["removed"]) == sorted(before) and before >= {i["name"] for i in iocs}
    assert iocfleet_json("status", fleet, "--backend", backend, state=state)["iocs"] == []
    if backend == "docker":
        assert labelled_containers(fleet) == []
    assert not (state / "iocfleet" / "fleets" / fleet).exists()


def _kill_ioc(backend: str, ioc: dict) -> None:
    import psutil

    target = psutil.Process(ioc["pid"])
    if backend == "docker":  # the container's pid 1 is docker-init; the IOC is its child
        target = target.children()[0]
    target.send_signal(signal.SIGKILL)


def _wait_for_state(fleet, backend, state, name, wanted, timeout=30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        iocs = iocfleet_json("status", fleet, "--backend", backend, state=state)["iocs"]
        entry = next(i for i in iocs if i["name"] == name)
        if entry["state"] == wanted or time.monotonic() > deadline:
            assert entry["state"] == wanted, entry
            return entry
        time.sleep(0.2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigterm_during_up_removes_what_it_started(tmp_path, state, teardown, backend):
    fleet = f"interrupt-{backend}"
    iocs = seven_iocs(f"INT{backend[0].upper()}:")  # per backend: both variants may run at once
    path = write_fleet(tmp_path / "fleet.yaml", fleet, iocs, base_port=24164 if backend == "docker" else 24174)
    teardown.append((fleet, backend))
    proc, _ = start_up(path, backend, state, until="starting cp2")
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143  # 128 + SIGTERM; Ctrl-C would be 130
    assert iocfleet_json("status", fleet, "--backend", backend, state=state)["iocs"] == []
    if backend == "docker":
        assert labelled_containers(fleet) == []


@pytest.mark.netns
@pytest.mark.parametrize("backend", BACKENDS)
def test_fleet_on_a_lab_interface_is_read_from_the_remote_namespace(tmp_path, state, teardown, lab, backend):
    fleet = f"remote-{backend}"
    iocs = [{"name": f"r{i}", "runtime": "caproto" if i < 2 else "softioc", "prefix": f"REM:{i}:",
             "pvs": [{"name": "V", "value": float(i)}]} for i in range(3)]
    path = write_fleet(tmp_path / "fleet.yaml", fleet, iocs)
    teardown.append((fleet, backend))
    result = iocfleet_json("up", str(path), "--backend", backend, "--interface", lab.peer_veth, state=state)
    client_env = result["client_env"]
    assert client_env["EPICS_CA_ADDR_LIST"] == lab.broadcast  # shared-port: the subnet broadcast (R4)

    values = pyepics_read(declared_pvs(iocs), client_env, argv_prefix=["ip", "netns", "exec", lab.ns])
    assert values == {"REM:0:V": 0.0, "REM:1:V": 1.0, "REM:2:V": 2.0}


def test_logs_and_restart_of_one_ioc(tmp_path, state, teardown):
    fleet = "logs-restart"
    path = write_fleet(tmp_path / "fleet.yaml", fleet,
                       [{"name": "one", "runtime": "caproto", "prefix": "LR:", "pvs": [{"name": "X"}]}], base_port=24264)
    teardown.append((fleet, "process"))
    result = iocfleet_json("up", str(path), "--backend", "process", state=state)
    first = result["iocs"][0]
    logs = iocfleet("logs", str(path), "one", "--backend", "process", state=state, check=True).stdout
    assert "serving 42 PVs of one (prefix 'LR:')" in logs, logs  # X and the 41 iocStats PVs (HEARTBEAT, UPTIME, ...)
    iocfleet("restart", str(path), "one", "--backend", "process", state=state, check=True)
    after = _wait_for_state(fleet, "process", state, "one", "running")
    assert after["pid"] != first["pid"]
    assert pyepics_read(["LR:X"], result["client_env"]) == {"LR:X": 0.0}
    missing = iocfleet("logs", str(path), "nope", "--backend", "process", state=state)
    assert missing.returncode == 2 and "has no IOC 'nope'" in missing.stderr
