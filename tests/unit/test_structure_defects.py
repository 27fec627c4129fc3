"""The defects found while restructuring (issue 11), each held by a test that failed before its fix."""

from __future__ import annotations

import json
import sys

import pytest
import yaml

from hosts import host, udp_holder
from orchestrator import spec
from orchestrator.export import ImageInfo, export_file
from orchestrator.hostmodel import loopback_only_snapshot
from orchestrator.images import catalog
from orchestrator.plan import planner
from orchestrator.plan.identity import LABEL_HOST
from orchestrator.spec import pvs as spec_pvs

sys.path.insert(0, str(catalog.ioc_images_root() / "common"))

from iocfleet_ioc import spec as ioc_spec  # noqa: E402

INFO = ImageInfo({"caproto": "c:1", "softioc": "s:1"})
ONE = "fleet: one\nnetwork: {interface: lo, base_port: 31050}\niocs:\n  - {name: a, prefix: 'D:A:', pvs: [X]}\n"


def _fleet(text: str = ONE) -> spec.FleetSpec:
    return spec.parse(text)


# -- the plan says who provides the repeater, from the same snapshot `up` decides on ---------------------

def test_the_plan_says_host_when_a_repeater_already_holds_5065_and_fleet_when_none_does():
    held = planner.plan(_fleet(), host(holders=[udp_holder(port=5065, reuse_ok=True, pid=777)]))
    assert held.repeater.provider == "host"
    assert "pid 777" in held.repeater.reason
    assert any(d.rule == "R12" and "pid 777" in d.text for d in held.decisions)
    assert held.to_dict()["repeater"]["provider"] == "host"
    free = planner.plan(_fleet(), host(holders=[udp_holder(port=5064, reuse_ok=True)]))
    assert free.repeater.provider == "fleet"


def test_up_starts_a_repeater_exactly_when_the_plan_says_fleet():
    from orchestrator.plan.onhost import PlannedFleet
    from orchestrator.run.lifecycle import _repeater_elsewhere

    for holders, elsewhere in (([udp_holder(port=5065, reuse_ok=True)], True), ([], False)):
        snap = host(holders=holders)
        plan = planner.plan(_fleet(), snap)
        assert _repeater_elsewhere(PlannedFleet(_fleet(), snap, plan, ())) is elsewhere
        assert (plan.repeater.provider == "fleet") is not elsewhere


def test_an_export_keeps_the_fleet_repeater_even_when_one_runs_here_now(tmp_path):
    path = tmp_path / "f.yaml"
    path.write_text(ONE)
    snap = host(holders=[udp_holder(port=5065, reuse_ok=True)])
    out = export_file("compose", path, snapshot=snap, node="vm", images=INFO)
    assert "ca-repeater" in yaml.safe_load(out.text)["services"]
    assert out.plans["vm"].repeater.provider == "fleet"


# -- a compose export labels its containers with their host, as swarm does ------------------------------

@pytest.mark.parametrize("kind", ["compose", "swarm"])
def test_compose_and_swarm_exports_carry_the_host_label(tmp_path, kind):
    path = tmp_path / "f.yaml"
    path.write_text(ONE)
    out = export_file(kind, path, snapshot=host(), node="vm7", images=INFO)
    services = yaml.safe_load(out.text)["services"]
    assert {name: s["labels"].get(LABEL_HOST) for name, s in services.items()} == {"ca-repeater": "vm7", "a": "vm7"}


# -- doctor --fleet plans once on its own snapshot and runs no conflict check ---------------------------

def test_doctor_with_a_fleet_reads_the_network_once_and_runs_no_conflict_check(tmp_path, monkeypatch):
    from orchestrator import host as hostio
    from orchestrator.doctor.gather import DoctorOptions, run
    from orchestrator.plan import conflicts

    path = tmp_path / "f.yaml"
    path.write_text(ONE)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    calls = {"interfaces": 0, "check": 0}
    real_interfaces = hostio.interfaces

    def counted_interfaces():
        calls["interfaces"] += 1
        return real_interfaces()

    def counted_check(*args, **kwargs):
        calls["check"] += 1
        return []

    monkeypatch.setattr(hostio, "interfaces", counted_interfaces)
    monkeypatch.setattr(conflicts, "check", counted_check)
    diagnosis = run(DoctorOptions(fleet=str(path), backend="process", repeat=1, timeout=0.05), {})
    assert calls == {"interfaces": 1, "check": 0}
    assert diagnosis.client.source == "fleet one plan"
    assert diagnosis.probe["names"] == 3  # D:A:X, HEARTBEAT, UPTIME from the plan


# -- readiness paces with the clock it was given ---------------------------------------------------------

def test_readiness_sleeps_on_the_injected_sleep_not_the_real_one(monkeypatch):
    from orchestrator.run import readiness

    plan = planner.plan(_fleet(), loopback_only_snapshot())
    monkeypatch.setattr(readiness, "locate", lambda names, destinations, window: {})  # nobody answers
    now = [0.0]
    slept: list[float] = []

    def real_sleep(seconds):
        raise AssertionError(f"time.sleep({seconds}) called although a sleep was injected")

    monkeypatch.setattr(readiness.time, "sleep", real_sleep)
    report = readiness.wait_ready(plan, timeout=1.0, clock=lambda: now[0], search_window=0.25,
                                  sleep=lambda s: (slept.append(s), now.__setitem__(0, now[0] + s)))
    assert not report.ready
    assert slept and all(s == pytest.approx(0.25) for s in slept)
    assert report.elapsed >= 1.0


# -- a bad fleet name is called what it is ----------------------------------------------------------------

def test_a_bad_fleet_name_is_not_called_a_container_name():
    with pytest.raises(Exception) as caught:
        spec.parse("fleet: 'bad name'\niocs:\n  - {name: a, prefix: 'A:'}\n")
    assert caught.value.problems == [
        "<string>:1: fleet: 'bad name' is not a valid fleet name — use 1-63 characters: a letter or digit, then "
        "letters, digits, _ . -"]
    with pytest.raises(Exception) as caught:
        spec.parse("fleet: f\nhosts:\n  - {name: 'h h'}\niocs:\n  - {name: a, prefix: 'A:'}\n")
    assert "is not a valid host name" in caught.value.problems[0]


# -- the IOC programs and the orchestrator agree on the contract -------------------------------------------

def test_ioc_programs_know_the_same_types_simulations_and_standard_pvs():
    assert tuple(ioc_spec.TYPES) == spec.PV_TYPES
    assert tuple(ioc_spec.SIMS) == spec.SIMULATIONS
    assert tuple(ioc_spec.STANDARD_PVS) == spec.STANDARD_PVS


def test_what_the_fleet_file_accepts_the_ioc_programs_accept():
    assert spec_pvs.STRING_VALUE_MAX == ioc_spec.MAX_STRING
    assert spec_pvs.ENUM_MAX_STRINGS == ioc_spec.MAX_ENUM_STATES
    assert spec_pvs.ENUM_STRING_MAX == ioc_spec.MAX_ENUM_STRING
    assert spec_pvs.PV_NAME_MAX == ioc_spec.MAX_NAME
    assert spec_pvs.MAX_RATE_HZ == ioc_spec.MAX_RATE_HZ
    assert spec_pvs.MAX_COUNT <= ioc_spec.MAX_COUNT
    allowed = "".join(chr(c) for c in range(33, 127) if spec_pvs.PV_CHARS.match(chr(c)))
    assert ioc_spec._NAME_CHARS.match(allowed), allowed


EVERY_KIND = """\
fleet: contract
network: {interface: lo, base_port: 31060}
iocs:
  - name: a
    prefix: 'K:A:'
    pvs:
      - {name: F, type: float, value: 1.5, sim: sine, rate_hz: 2}
      - {name: I, type: int, value: 3, sim: counter}
      - {name: S, type: str, value: hello}
      - {name: E, type: enum, enum_strings: [Off, On], value: On}
      - {name: W, type: float, count: 4, value: [1, 2, 3, 4]}
"""


def test_the_ioc_programs_accept_what_the_planner_writes_into_IOCFLEET_IOC():
    plan = planner.plan(spec.parse(EVERY_KIND), loopback_only_snapshot())
    for ioc in plan.iocs:
        parsed = ioc_spec.load_ioc(ioc.env_dict())
        assert sorted(parsed.pv_names()) == sorted(ioc.all_pv_names())


def test_the_ioc_programs_accept_a_read_only_pv():
    plan = planner.plan(spec.parse(ONE.replace("pvs: [X]", "pvs: [{name: X, writable: false}]")),
                        loopback_only_snapshot())
    parsed = ioc_spec.load_ioc(plan.iocs[0].env_dict())
    assert json.loads(plan.iocs[0].env_dict()["IOCFLEET_IOC"])["pvs"][0]["writable"] is False
    assert not parsed.pvs[0].writable


# -- dead code: the docker backend's second `except` around containers.list dropped the cause ------------

def test_an_engine_error_while_listing_keeps_its_cause():
    import docker

    from orchestrator.errors import BackendUnavailable
    from orchestrator.run.backends.docker import DockerBackend

    class RefusingContainers:
        def list(self, **kwargs):
            raise docker.errors.APIError("500 Server Error: engine is shutting down")

    class RefusingEngine:  # an engine that answers but fails the call: cannot be made to happen on demand here
        containers = RefusingContainers()

    with pytest.raises(BackendUnavailable) as caught:
        DockerBackend(client=RefusingEngine()).instances("f")
    assert caught.value.line().startswith("Docker Engine error in instances: ")
    assert isinstance(caught.value.__cause__, docker.errors.APIError)
