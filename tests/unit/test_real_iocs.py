"""Real IOCs in a fleet (issue 12): image IOCs, .db softiocs and user PVGroups, planned like built-in ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hosts import LO, host
from orchestrator.errors import SpecError
from orchestrator.plan import conflicts, planner
from orchestrator.run.readiness import wait_ready
from orchestrator import spec

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "real"


def fleet_file(tmp_path: Path, *iocs: dict, name: str = "real", **network) -> Path:
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump({"fleet": name, "network": {"interface": "lo", **network}, "iocs": list(iocs)},
                                   sort_keys=False))
    return path


def planned(path: Path):
    fleet = spec.load(path)
    plan = planner.plan(fleet, host(LO, default=None))
    return plan, conflicts.check(plan, host(LO, default=None))


def problems(path: Path) -> list[str]:
    with pytest.raises(SpecError) as err:
        spec.load(path)
    return err.value.problems


def image(**extra) -> dict:
    return {"name": "img", "runtime": "image", "image": "site/ioc:1", "prefix": "HBY:F:", **extra}


def test_an_image_ioc_is_probed_for_exactly_its_declared_pvs(tmp_path):
    plan, findings = planned(fleet_file(tmp_path, image(pvs=["A", "B", "C", "HEARTBEAT"])))
    ioc = plan.ioc("img")
    assert ioc.pv_names == ioc.ready_names == ("HBY:F:A", "HBY:F:B", "HBY:F:C", "HBY:F:HEARTBEAT")
    assert ioc.readiness == "pvs" and plan.to_dict()["iocs"][0]["pvs"] == list(ioc.pv_names)


def test_an_image_ioc_without_pvs_waits_for_its_server(tmp_path):
    plan, _ = planned(fleet_file(tmp_path, image(), image(name="quiet", prefix="Q:", readiness="none")))
    assert plan.ioc("img").readiness == "server" and plan.ioc("img").ready_names == ()
    asked = []

    def server_up(names, known, pvs_done):
        asked.append(tuple(names))
        return {"img": "server: TCP listener on port 5064"} if len(asked) > 1 else {}

    report = wait_ready(plan, timeout=30, server_up=server_up, search_window=0.01)
    assert report.ready and len(asked) == 2 and asked[0] == ("img",)
    assert report.ioc("img").how() == "server: TCP listener on port 5064"
    assert report.ioc("quiet").how().startswith("not waited for")


def test_pvs_readiness_needs_pvs(tmp_path):
    lines = problems(fleet_file(tmp_path, image(readiness="pvs")))
    assert any("iocs[0].readiness" in x and "declares no PVs" in x for x in lines), lines
    lines = problems(fleet_file(tmp_path, image(readiness="sometimes")))
    assert any("not one of pvs, server, none" in x for x in lines), lines


def test_container_fields_reach_docker_as_asked(tmp_path):
    (tmp_path / "config").mkdir()
    ioc = image(entrypoint=["/epics/ioc/start.sh", "-v"], workdir="/epics/ioc", stdin_open=True,
                mounts=[{"source": "config", "target": "/epics/ioc/config"},
                        {"source": ".", "target": "/data", "read_only": False}])
    plan, _ = planned(fleet_file(tmp_path, ioc))
    from orchestrator.run.backends.docker import run_kwargs

    kwargs = run_kwargs("real", plan.ioc("img"), "hash")
    assert kwargs["entrypoint"] == ["/epics/ioc/start.sh", "-v"] and kwargs["working_dir"] == "/epics/ioc"
    assert kwargs["stdin_open"] is True
    mounts = {m["Target"]: (m["Source"], m["ReadOnly"]) for m in kwargs["mounts"]}
    assert mounts == {"/epics/ioc/config": (str((tmp_path / "config").resolve()), True),
                      "/data": (str(tmp_path.resolve()), False)}


@pytest.mark.parametrize("mount,words", [
    ({"source": "nope", "target": "/x"}, "does not exist"),
    ({"source": "/", "target": "/x"}, "root folder"),
    ({"source": "/run", "target": "/x"}, "Docker socket"),
    ({"source": "state/fleets", "target": "/x"}, "state directory"),
    ({"source": ".", "target": "/"}, "not a container path"),
    ({"source": ".", "target": "relative"}, "not a container path"),
    ({"source": ".", "target": "/x", "read_only": "no"}, "expected true or false"),
    ({"source": ".", "target": "/x", "mode": "rw"}, "unknown key"),
])
def test_bad_mounts_are_refused_with_their_field(tmp_path, monkeypatch, mount, words):
    (tmp_path / "state" / "iocfleet" / "fleets").mkdir(parents=True)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    if mount["source"] == "state/fleets":
        mount = {**mount, "source": "state/iocfleet/fleets"}
    lines = problems(fleet_file(tmp_path, image(mounts=[mount])))
    assert any(": iocs[0].mounts[0]." in x and words in x for x in lines), lines


def test_container_fields_are_for_image_iocs_only(tmp_path):
    lines = problems(fleet_file(tmp_path, {"name": "a", "prefix": "A:", "pvs": ["X"], "workdir": "/x"}))
    assert any("iocs[0].workdir: only `image` IOCs take `workdir`" in x for x in lines), lines


def db_ioc(**extra) -> dict:
    return {"name": "motor", "runtime": "softioc", "prefix": "RL:M:",
            "db": [{"file": str(EXAMPLE / "db" / "motor.db"), "macros": {"P": "RL:", "R": "M1:"}}], **extra}


def test_db_records_are_planned_and_loaded_with_their_macros(tmp_path):
    plan, findings = planned(fleet_file(tmp_path, db_ioc()))
    ioc = plan.ioc("motor")
    assert {"RL:OFF", "RL:M1:VAL", "RL:M1:RBV", "RL:M1:READBACK", "RL:M1:TRACE"} <= set(ioc.pv_names)
    assert ioc.pv_names[-2:] == ("RL:M:HEARTBEAT", "RL:M:UPTIME")  # iocfleet's program still runs it
    loads = json.loads(ioc.env_dict()["IOCFLEET_DB"])
    assert loads == [{"file": str(EXAMPLE / "db" / "motor.db"), "macros": {"P": "RL:", "R": "M1:"}}]
    assert not conflicts.has_errors(findings)


def test_a_db_record_that_is_also_a_declared_pv_is_a_duplicate(tmp_path):
    other = {"name": "cp", "prefix": "RL:M1:", "pvs": ["VAL"]}
    _, findings = planned(fleet_file(tmp_path, db_ioc(), other))
    dup = [f for f in findings if f.code == "duplicate-pv"]
    assert dup and "RL:M1:VAL" in dup[0].message and set(dup[0].subjects) == {"motor", "cp"}
    _, findings = planned(fleet_file(tmp_path, db_ioc(prefix="RL:M1:", pvs=["RBV"])))
    dup = [f for f in findings if f.code == "duplicate-pv"]
    assert dup and "RL:M1:RBV" in dup[0].message and dup[0].subjects == ("motor",)


@pytest.mark.parametrize("db,line,words", [
    ('record(ai, "$(P)A")\nrecord(ai, "$(Q)B")\n', 2, "macro $(Q) is undefined"),
    ('record(ai, "$(P)A")\nrecord(motor, "$(P)B")\n', 2, "record type 'motor'"),
    ('record(ai, "$(P)A") {\n  field(VAL "1")\n}\n', 2, "expected `,`"),
    ('record(ai, "$(P)' + "L" * 60 + '")\n', 1, "characters"),
])
def test_bad_databases_are_one_line_at_file_and_line_and_nothing_starts(tmp_path, db, line, words):
    (tmp_path / "bad.db").write_text(db)
    path = fleet_file(tmp_path, {"name": "s", "runtime": "softioc", "prefix": "S:",
                                 "db": [{"file": "bad.db", "macros": {"P": "S:"}}]})
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    proc = subprocess.run([sys.executable, "-m", "orchestrator.cli", "up", str(path), "--backend", "process"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    errors = [x for x in proc.stderr.splitlines() if str(tmp_path / "bad.db") in x]
    assert len(errors) == 1 and errors[0].startswith(f"{tmp_path / 'bad.db'}:{line}: iocs[0].db[0]: ")
    assert words in errors[0], errors[0]
    assert not (tmp_path / "state" / "iocfleet" / "fleets").exists()


def test_a_missing_database_file_names_it(tmp_path):
    lines = problems(fleet_file(tmp_path, {"name": "s", "runtime": "softioc", "prefix": "S:",
                                           "db": [{"file": "gone.db"}]}))
    assert any(x.startswith(f"{tmp_path / 'fleet.yaml'}:9: iocs[0].db[0].file: database file 'gone.db' not found")
               for x in lines), lines


def test_db_is_for_softioc_only(tmp_path):
    lines = problems(fleet_file(tmp_path, {"name": "c", "prefix": "C:", "db": ["x.db"]}))
    assert any("only `softioc` IOCs load EPICS databases" in x for x in lines), lines


def group_ioc(**extra) -> dict:
    return {"name": "shutter", "runtime": "caproto", "prefix": "RL:SH:", "module": "beamline.shutter:Shutter",
            "python_path": str(EXAMPLE / "user"), "kwargs": {"label": "fe"}, **extra}


def test_a_user_group_is_asked_for_its_pvs_and_gets_the_prefix(tmp_path):
    plan, _ = planned(fleet_file(tmp_path, group_ioc()))
    ioc = plan.ioc("shutter")
    assert ioc.pv_names == ("RL:SH:COUNT", "RL:SH:OPEN", "RL:SH:STATE") and not ioc.builtin
    group = json.loads(ioc.env_dict()["IOCFLEET_GROUP"])
    assert group == {"module": "beamline.shutter:Shutter", "python_path": str(EXAMPLE / "user"),
                     "kwargs": {"label": "fe"}, "prefix": "RL:SH:"}
    assert "IOCFLEET_IOC" not in ioc.env_dict()
    from orchestrator.run.backends.docker import run_kwargs

    kwargs = run_kwargs("real", ioc, "hash")
    assert [(m["Target"], m["Source"], m["ReadOnly"]) for m in kwargs["mounts"]] == [
        ("/iocfleet/user", str(EXAMPLE / "user"), True)]
    assert json.loads(kwargs["environment"]["IOCFLEET_GROUP"])["python_path"] == "/iocfleet/user"


@pytest.mark.parametrize("extra,words", [
    ({"module": "beamline.nothere:Shutter"}, "cannot import beamline.nothere"),
    ({"module": "beamline.shutter:Nope"}, "has no Nope"),
    ({"module": "json:JSONDecoder"}, "not a caproto PVGroup"),
    ({"module": "not a module"}, "not a PVGroup reference"),
    ({"kwargs": {"colour": "red"}}, "unexpected keyword argument"),
    ({"pvs": ["X"]}, "serves the group's PVs"),
    ({"python_path": "nowhere"}, "is not a folder"),
])
def test_bad_groups_are_refused_before_launch(tmp_path, extra, words):
    lines = problems(fleet_file(tmp_path, group_ioc(**extra)))
    assert any(words in x for x in lines), lines


def test_process_backend_refuses_what_only_containers_honour(tmp_path):
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    for ioc, words in ((image(pvs=["A"]), "img use runtime `image`, which needs containers"),
                       ({"name": "lim", "prefix": "L:", "pvs": ["X"], "limits": {"memory": "64m"}},
                        "IOC lim sets limits, which only containers honour")):
        path = fleet_file(tmp_path, ioc, base_port=31517)
        for extra in ([], ["--dry-run"]):  # refused also in a dry run (a port no fleet uses: no conflict first)
            proc = subprocess.run([sys.executable, "-m", "orchestrator.cli", "up", str(path), "--backend", "process",
                                   *extra], capture_output=True, text=True, env=env, timeout=120)
            assert proc.returncode == 2 and words in proc.stderr, proc.stderr
        assert not list((tmp_path / "state").glob("iocfleet/fleets/*/*.json"))


def test_real_iocs_need_no_prefix_and_a_db_softioc_keeps_its_own_pvs_apart(tmp_path):
    (tmp_path / "a.db").write_text('record(ai, "$(P)X")\n')
    iocs = [{"name": f"s{i}", "runtime": "softioc", "db": [{"file": "a.db", "macros": {"P": f"S{i}:"}}]}
            for i in range(2)]
    plan, findings = planned(fleet_file(tmp_path, *iocs, image(prefix=None, pvs=["FULL:NAME"]),
                                        group_ioc(prefix=None)))
    assert plan.ioc("s0").pv_names == ("S0:X", "s0:HEARTBEAT", "s0:UPTIME")
    assert plan.ioc("img").pv_names == ("FULL:NAME",)
    assert plan.ioc("shutter").pv_names == ("COUNT", "OPEN", "STATE")
    assert not conflicts.has_errors(findings), findings
    lines = problems(fleet_file(tmp_path, {"name": "c", "pvs": ["X"]}))
    assert any("iocs[0].prefix: missing" in x for x in lines), lines  # built-in IOCs still need one


def test_a_changed_database_or_group_code_changes_the_plan_hash(tmp_path):
    from orchestrator.run.backends import plan_hash

    (tmp_path / "a.db").write_text('record(ai, "$(P)X")\n')
    (tmp_path / "inc.db").write_text('record(ao, "$(P)Y") {\n  field(VAL, "1")\n}\n')
    (tmp_path / "a.db").write_text('include "inc.db"\nrecord(ai, "$(P)X")\n')
    path = fleet_file(tmp_path, {"name": "s", "runtime": "softioc", "db": [{"file": "a.db", "macros": {"P": "S:"}}]})
    before = plan_hash(planned(path)[0].ioc("s"), "img")
    (tmp_path / "inc.db").write_text('record(ao, "$(P)Y") {\n  field(VAL, "2")\n}\n')  # same names, new value
    assert plan_hash(planned(path)[0].ioc("s"), "img") != before


def test_exports_refuse_what_they_cannot_carry(tmp_path):
    from orchestrator.errors import UsageError
    from orchestrator.export import compose_yaml
    from orchestrator.export.common import ImageInfo

    plan, _ = planned(fleet_file(tmp_path, db_ioc()))
    with pytest.raises(UsageError) as err:
        compose_yaml(plan, images=ImageInfo({"caproto": "c:1", "softioc": "s:1"}))
    assert "IOC motor uses db, which exports do not carry yet" in str(err.value)


def test_a_group_importable_without_python_path(tmp_path):
    plan, _ = planned(fleet_file(tmp_path, {"name": "simple", "runtime": "caproto", "prefix": "SIM:",
                                            "module": "caproto.ioc_examples.simple:SimpleIOC"}))
    assert plan.ioc("simple").pv_names == ("SIM:A", "SIM:B", "SIM:C")
    from orchestrator.run.backends.docker import run_kwargs

    assert "mounts" not in run_kwargs("f", plan.ioc("simple"), "h")  # nothing of the host to mount


class _Inst:
    def __init__(self, name, tcp_port=None, state="running"):
        self.name, self.tcp_port, self.state, self.pid = name, tcp_port, state, None  # no pid: not inspectable


class _Backend:
    def __init__(self, *instances):
        self.list = list(instances)

    def instances(self, fleet=None, details=True):
        return self.list


class _Beacons:
    """Beacons as the repeater would forward them: (address, tcp port) -> first beacon id."""

    def __init__(self, seen):
        self.seen, self.closed = seen, False

    def __call__(self, port):
        return self

    def poll(self, window=0.05):
        return dict(self.seen)

    def close(self):
        self.closed = True


def test_server_evidence_prefers_the_listener_then_beacons_by_elimination(tmp_path):
    from orchestrator.run.serverup import listener_evidence

    plan, _ = planned(fleet_file(tmp_path, image(name="i1", prefix="I1:"), image(name="i2", prefix="I2:"),
                                 {"name": "cp", "prefix": "CP:", "pvs": ["X"]}))
    assert plan.strategy == "shared-port"
    seen = {("127.0.0.1", 40001): 0, ("127.0.0.1", 40002): 1, ("127.0.0.1", 40003): 2, ("10.0.0.9", 5064): 900}
    beacons = _Beacons(seen)
    # i1's listener is visible; i2's is not: the beacons of new servers other than cp's (40003) decide
    up = listener_evidence(_Backend(_Inst("i1", 40001), _Inst("i2"), _Inst("cp")), plan, beacons)
    assert up(["i1", "i2"], known={("127.0.0.1", 40003)}, pvs_done=False) == {
        "i1": "server: TCP listener on port 40001"}  # not before every PV IOC is located
    got = up(["i2"], known={("127.0.0.1", 40003)}, pvs_done=True)
    assert got == {"i2": "server: beacon from 127.0.0.1:40002"} and beacons.closed
    # an old server (beacon id 900) is not taken for a new IOC, nor is a known one
    up = listener_evidence(_Backend(_Inst("i1"), _Inst("i2"), _Inst("cp")), plan,
                           _Beacons({("127.0.0.1", 40003): 0, ("10.0.0.9", 5064): 900, ("127.0.0.1", 40002): 3}))
    assert up(["i1", "i2"], known={("127.0.0.1", 40003)}, pvs_done=True) == {}  # one new server for two IOCs


def test_a_planned_tcp_port_is_matched_exactly_never_by_elimination(tmp_path):
    from orchestrator.run.serverup import listener_evidence

    plan, _ = planned(fleet_file(tmp_path, image(), strategy="distinct-ports"))
    assert plan.ioc("img").tcp_port == 5064  # a planned TCP port (on lo a lone IOC shares the port, issue 15)
    stranger = _Beacons({("127.0.0.1", 31110): 0})  # some other IOC starting on this host
    up = listener_evidence(_Backend(_Inst("img")), plan, stranger)
    assert up(["img"], known=set(), pvs_done=True) == {}
    mine = _Beacons({("127.0.0.1", 31110): 0, ("127.0.0.1", 5064): 2})
    up = listener_evidence(_Backend(_Inst("img")), plan, mine)
    assert up(["img"], known=set(), pvs_done=True) == {"img": "server: beacon from 127.0.0.1:5064"}
