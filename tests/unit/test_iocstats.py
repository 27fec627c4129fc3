"""iocStats: names and types like devIocStats, the IOC name from the fleet file, and the old names kept."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from hosts import host
from orchestrator.errors import SpecError
from orchestrator.images.build import ioc_images_root
from orchestrator.plan import planner
from orchestrator.spec import iocstats as stats
from orchestrator import spec


def _ioc_side():
    path = ioc_images_root() / "common" / "iocfleet_ioc" / "iocstats.py"
    module_spec = importlib.util.spec_from_file_location("iocfleet_ioc_iocstats", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def _plan(iocs, **network):
    return planner.plan(spec.from_dict({"fleet": "s", "network": {"interface": "lo", **network}, "iocs": iocs}), host())


def test_the_ioc_programs_table_equals_the_orchestrators():
    ioc_side = _ioc_side()
    assert [tuple(r) for r in ioc_side.STATS] == [(p.suffix, p.record, p.ca_type, p.units, p.count) for p in stats.STATS]


def test_the_table_is_devIocStats_ioc_template_as_pythonSoftIOC_ships_it():
    """Parse the template in the installed pythonSoftIOC wheel: same records, same record types."""
    import re
    from pathlib import Path

    softioc = pytest.importorskip("softioc")
    folder = Path(softioc.__file__).parent / "iocStats" / "iocAdmin" / "Db"

    def records(name, subs):
        out, include_subs = [], {}
        for line in (folder / name).read_text().splitlines():
            line = line.strip()
            if line.startswith("substitute"):
                include_subs = dict(kv.strip().split("=") for kv in line.split('"')[1].split(","))
            elif line.startswith("include"):
                out += records(line.split('"')[1], {**subs, **include_subs})
            match = re.match(r'record\(\s*(\w+)\s*,\s*"\$\(IOCNAME\):([^"]+)"', line)
            if match:
                suffix = match.group(2)
                for key, value in subs.items():
                    suffix = suffix.replace(f"$({key})", value)
                out.append((suffix, match.group(1)))
        return out

    assert records("ioc.template", {}) == [(p.suffix, p.record) for p in stats.STATS + stats.QUEUE_STATS]


@pytest.mark.parametrize("seconds,text", [(0, "00:00:00"), (59, "00:00:59"), (3661, "01:01:01"),
                                          (86400, "1 day, 00:00:00"), (2 * 86400 + 5, "2 days, 00:00:05")])
def test_uptime_is_devIocStats_string(seconds, text):
    assert _ioc_side().uptime_text(seconds) == text


def test_sampler_gives_every_periodic_and_static_value_with_its_type():
    ioc_side = _ioc_side()
    sampler = ioc_side.Sampler("caproto 1.3.0", records=10)
    values = {**sampler.static(), **sampler.periodic(3, clients=2, connections=5)}
    types = {row[0]: row[2] for row in ioc_side.STATS}
    assert set(values) == set(types)
    for suffix, value in values.items():
        expected = {"DOUBLE": float, "STRING": str, "CHAR": str, "ENUM": int}[types[suffix]]
        assert isinstance(value, expected), (suffix, value)
        if types[suffix] == "STRING":
            assert len(value.encode("latin-1")) <= 39
    assert values["HEARTBEAT"] == 3.0 and values["CA_CLNT_CNT"] == 2.0 and values["CA_CONN_CNT"] == 5.0
    assert values["MEM_USED"] > 0 and values["FD_CNT"] > 0 and values["UPTIME"] == "00:00:00"


def test_default_name_is_the_prefix_without_its_colon_and_takes_over_heartbeat_and_uptime():
    plan = _plan([{"name": "m", "runtime": "caproto", "prefix": "BL1:MTR:", "pvs": ["X"]}])
    ioc = plan.iocs[0]
    assert ioc.iocstats == "BL1:MTR"
    assert ioc.pv_names == ("BL1:MTR:X", "BL1:MTR:HEARTBEAT", "BL1:MTR:UPTIME")
    assert "BL1:MTR:IOC_CPU_LOAD" in ioc.all_pv_names() and len(ioc.all_pv_names()) == 1 + len(stats.STATS)
    assert ioc.liveness_pv == "BL1:MTR:UPTIME"
    assert json.loads(ioc.env_dict()["IOCFLEET_IOC"])["iocstats"] == "BL1:MTR"


def test_an_explicit_name_keeps_the_old_heartbeat_and_uptime_and_adds_iocstats():
    plan = _plan([{"name": "m", "runtime": "softioc", "prefix": "BL1:MTR:", "iocstats": "BL1-IOC-01", "pvs": ["X"]}])
    ioc = plan.iocs[0]
    assert ioc.pv_names == ("BL1:MTR:X", "BL1:MTR:HEARTBEAT", "BL1:MTR:UPTIME", "BL1-IOC-01:HEARTBEAT",
                            "BL1-IOC-01:UPTIME")
    assert "BL1-IOC-01:CBHIGH_Q_USEDPER" in ioc.all_pv_names()  # softioc serves the queue records too


def test_replicas_get_their_own_names_and_false_turns_iocstats_off():
    plan = _plan([{"name": "r", "runtime": "caproto", "prefix": "R{i}:", "replicas": 2, "iocstats": "R-IOC-{i}"},
                  {"name": "d", "runtime": "caproto", "prefix": "D:", "replicas": 2},
                  {"name": "off", "runtime": "caproto", "prefix": "OFF:", "iocstats": False},
                  {"name": "img", "runtime": "image", "image": "x:1", "prefix": "IMG:"}])
    names = {i.name: i.iocstats for i in plan.iocs}
    assert names == {"r-1": "R-IOC-1", "r-2": "R-IOC-2", "d-1": "D:1", "d-2": "D:2", "off": None, "img": None}
    off = plan.ioc("off")
    assert off.pv_names == ("OFF:HEARTBEAT", "OFF:UPTIME") and "iocstats" not in json.loads(off.env_dict()["IOCFLEET_IOC"])
    assert plan.ioc("img").pv_names == ()  # HEARTBEAT/UPTIME belong to iocfleet's own programs (issue 12)


@pytest.mark.parametrize("iocs,field,words", [
    ([{"name": "a", "prefix": "A:", "iocstats": "A:"}], "iocstats", "ends with"),
    ([{"name": "a", "prefix": "A:", "iocstats": "bad name"}], "iocstats", "characters"),
    ([{"name": "a", "prefix": "A:", "iocstats": True}], "iocstats", "not a name"),
    ([{"name": "a", "prefix": "A:", "replicas": 2, "iocstats": "A-IOC"}], "iocstats", "{i}"),
    ([{"name": "a", "prefix": "A:", "pvs": ["TOD"]}], "pvs (TOD)", "iocStats PV"),
])
def test_bad_iocstats_names_are_one_line_each(iocs, field, words):
    with pytest.raises(SpecError) as caught:
        spec.from_dict({"fleet": "bad", "iocs": iocs})
    line = next(p for p in caught.value.problems if field in p)
    assert words in line and " — " in line


def test_two_iocs_of_one_iocstats_name_are_reported_once_per_health_pv():
    from orchestrator.plan import conflicts

    plan = _plan([{"name": "a", "prefix": "A:", "iocstats": "SAME"}, {"name": "b", "prefix": "B:", "iocstats": "SAME"}])
    found = [f for f in conflicts.check(plan, host()) if f.code == "duplicate-pv"]
    assert {f.message.split()[1] for f in found} == {"SAME:HEARTBEAT", "SAME:UPTIME"}


def test_the_ioc_program_parses_the_iocstats_name_and_keeps_legacy_pvs_it_does_not_replace():
    common = str(ioc_images_root() / "common")
    sys.path.insert(0, common)
    try:
        from iocfleet_ioc.spec import ioc_from_dict
    finally:
        sys.path.remove(common)
    same = ioc_from_dict({"name": "a", "prefix": "A:", "pvs": [], "iocstats": "A"})
    assert same.legacy_pvs() == () and "A:UPTIME" in same.pv_names()
    other = ioc_from_dict({"name": "a", "prefix": "A:", "pvs": [], "iocstats": "A-IOC"})
    assert other.legacy_pvs() == ("HEARTBEAT", "UPTIME")
    assert ioc_from_dict({"name": "a", "prefix": "A:", "pvs": []}).pv_names() == ["A:HEARTBEAT", "A:UPTIME"]


@pytest.mark.parametrize("value,ok", [("BL1-IOC-01", True), (False, True), ("R-{i}", True), ("A:", False),
                                      (True, False), ("", False)])
def test_the_json_schema_agrees_with_the_validator_on_iocstats(value, ok):
    import jsonschema

    from orchestrator.spec.schema import fleet_schema

    data = {"fleet": "f", "iocs": [{"name": "a", "prefix": "A:", "iocstats": value}]}
    valid = jsonschema.Draft202012Validator(fleet_schema()).is_valid(data)
    try:
        spec.from_dict(data)
        accepted = True
    except SpecError:
        accepted = False
    assert valid == accepted == ok


def test_a_prefix_too_long_for_iocstats_names_keeps_the_old_health_pvs_only():
    """A fleet file valid before iocStats stays valid: the derived NAME:SCANONCE_Q_USEDPER would not fit in
    59 characters, so the IOC serves the old PREFIX+HEARTBEAT/UPTIME and no iocStats PVs."""
    prefix = "P" * 45 + ":"
    plan = _plan([{"name": "a", "runtime": "caproto", "prefix": prefix}])
    ioc = plan.ioc("a")
    assert ioc.iocstats is None
    assert ioc.pv_names == (prefix + "HEARTBEAT", prefix + "UPTIME")
    assert "iocstats" not in json.loads(ioc.env_dict()["IOCFLEET_IOC"])
