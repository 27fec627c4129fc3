"""Packed fleets (issue 14), the pure side: the fleet file's `pack`, how the planner groups IOCs into packs,
the start units backends get, and how the run layer maps IOCs to the pack that runs them."""

from __future__ import annotations

import json

import pytest

from hosts import host
from orchestrator import spec
from orchestrator.errors import SpecError
from orchestrator.plan import packing, planner
from orchestrator.plan.identity import LABEL_MEMBERS, ioc_labels
from orchestrator.run.instance import Instance, Member, expand_pack, per_ioc, unit_of
from orchestrator.run.lifecycle import belongs, diff


def fleet(iocs=None, **top):
    iocs = iocs or [{"name": "a", "prefix": "PK:A{i}:", "replicas": 5, "pvs": ["X", "Y"]}]
    return spec.from_dict({"fleet": "pk", "network": {"interface": "lo"}, "iocs": iocs, **top})


def plan_of(iocs=None, **top):
    return planner.plan(fleet(iocs, **top), host())


# -- the fleet file ------------------------------------------------------------------------------------

@pytest.mark.parametrize("top, pack, size", [
    ({}, False, 64), ({"pack": True}, True, 64), ({"pack": False}, False, 64), ({"pack": 8}, True, 8),
    ({"pack": True, "pack_size": 3}, True, 3), ({"pack": 1024}, True, 1024), ({"pack_size": 5}, False, 5),
])
def test_pack_and_pack_size_are_read(top, pack, size):
    f = fleet(**top)
    assert (f.pack, f.pack_size) == (pack, size)


@pytest.mark.parametrize("top, field", [
    ({"pack": 0}, "pack"), ({"pack": 1025}, "pack"), ({"pack": -1}, "pack"), ({"pack": "yes"}, "pack"),
    ({"pack": 2.5}, "pack"), ({"pack": True, "pack_size": 0}, "pack_size"),
    ({"pack": True, "pack_size": 2000}, "pack_size"), ({"pack": True, "pack_size": "big"}, "pack_size"),
    ({"pack": 4, "pack_size": 4}, "pack"),
])
def test_bad_pack_values_name_the_field_and_the_range(top, field):
    with pytest.raises(SpecError) as err:
        fleet(**top)
    line, = [x for x in str(err.value).splitlines() if f": {field}: " in x]  # one line, naming the field
    assert " — " in line and ("1 to 1024" in line or "pack_size: N" in line)


# -- grouping ------------------------------------------------------------------------------------------

def test_no_pack_by_default_and_units_are_the_iocs():
    p = plan_of()
    assert p.packing.requested is False and p.packing.packs == ()
    assert p.units() == p.iocs and all(i.pack is None for i in p.iocs)


def test_caproto_iocs_are_packed_in_packs_of_at_most_pack_size():
    p = plan_of(pack=2)
    assert [pk.members for pk in p.packing.packs] == [("a-1", "a-2"), ("a-3", "a-4"), ("a-5",)]
    assert [i.pack for i in p.iocs] == ["pack-1", "pack-1", "pack-2", "pack-2", "pack-3"]
    assert [u.name for u in p.units()] == ["pack-1", "pack-2", "pack-3"]


def test_softioc_image_and_pvgroup_iocs_run_alone_and_the_plan_says_why():
    iocs = [{"name": "c", "prefix": "PK:C:", "pvs": ["X"]},
            {"name": "s", "runtime": "softioc", "prefix": "PK:S:", "pvs": ["X"]},
            {"name": "i", "runtime": "image", "image": "ex/ioc:1", "prefix": "PK:I:", "pvs": ["X"]}]
    p = plan_of(iocs, pack=True)
    assert [pk.members for pk in p.packing.packs] == [("c",)]
    assert dict(p.packing.unpacked) == {"s": "runtime softioc: one EPICS IOC per process",
                                        "i": "runtime image: the image runs its own program"}
    assert [u.name for u in p.units()] == ["pack-1", "s", "i"]
    text = " ".join(d.text for d in p.decisions if d.rule == "pack")
    assert "s runs alone" in text and "i runs alone" in text and "pack-1: 1 IOC(s) (c)" in text


@pytest.mark.parametrize("field, value", [
    ("user", "1234"), ("restart", "always"), ("limits", {"memory": "64m"}), ("read_only", False),
    ("env", {"LOCATION": "hutch"}),
])
def test_iocs_that_differ_in_what_a_process_has_once_are_never_in_one_pack(field, value):
    iocs = [{"name": "a", "prefix": "PK:A:", "pvs": ["X"]}, {"name": "b", "prefix": "PK:B:", "pvs": ["X"], field: value},
            {"name": "c", "prefix": "PK:C:", "pvs": ["X"]}]
    p = plan_of(iocs, pack=True)
    assert sorted(pk.members for pk in p.packing.packs) == [("a", "c"), ("b",)]
    assert any("2 groups" in d.text for d in p.decisions if d.rule == "pack")


def test_pack_names_never_take_an_ioc_name():
    iocs = [{"name": "pack-1", "prefix": "PK:A:", "pvs": ["X"]}, {"name": "pack-2", "prefix": "PK:B:", "pvs": ["X"]}]
    p = plan_of(iocs, pack=1)
    names = [pk.name for pk in p.packing.packs]
    assert names == ["pack-3", "pack-4"] and not set(names) & {"pack-1", "pack-2"}


def test_pack_nothing_is_a_warning_not_an_error():
    p = plan_of([{"name": "s", "runtime": "softioc", "prefix": "PK:S:", "pvs": ["X"]}], pack=True)
    found = packing.findings(p.packing)
    assert [(f.code, f.severity) for f in found] == [("pack-nothing", "warning")]
    assert packing.findings(plan_of().packing) == []


def test_members_keep_their_own_network_plan_identical_to_unpacked():
    packed, alone = plan_of(pack=True), plan_of()
    strip = lambda i: {k: v for k, v in i.to_dict().items() if k != "pack"}  # noqa: E731
    assert [strip(i) for i in packed.iocs] == [strip(i) for i in alone.iocs]
    assert packed.client_env == alone.client_env


def test_a_pack_unit_describes_every_member_with_its_full_env():
    p = plan_of(pack=True)
    unit, = p.units()
    description = json.loads(unit.env_dict()[packing.PACK_VAR])
    assert description["pack"] == "pack-1"
    assert [m["name"] for m in description["members"]] == [i.name for i in p.iocs]
    assert [m["env"] for m in description["members"]] == [i.env_dict() for i in p.iocs]
    assert "IOCFLEET_IOC" not in unit.env_dict() and unit.members == tuple(i.name for i in p.iocs)
    assert ioc_labels("pk", unit, "h")[LABEL_MEMBERS] == "a-1 a-2 a-3 a-4 a-5"


def test_a_changed_member_changes_its_pack_unit_and_nothing_else():
    before = plan_of(pack=2)
    iocs = [{"name": "a", "prefix": "PK:A{i}:", "replicas": 5, "pvs": ["X", "Y"]}]
    after = planner.plan(spec.from_dict({"fleet": "pk", "pack": 2, "network": {"interface": "lo"},
                                         "iocs": iocs}), host())
    assert before.units() == after.units()
    changed = [dict(i) for i in iocs]
    changed[0]["pvs"] = ["X", "Z"]
    after = planner.plan(spec.from_dict({"fleet": "pk", "pack": 2, "network": {"interface": "lo"},
                                         "iocs": changed}), host())
    assert all(a != b for a, b in zip(before.units(), after.units()))  # every member changed here


def test_diff_runs_on_units():
    p = plan_of(pack=2)
    hashes = {u.name: "h" for u in p.units()}
    running = [Instance("pk", "pack-1", "ioc", "caproto", "running", "h", members=("a-1", "a-2")),
               Instance("pk", "a-9", "ioc", "caproto", "running", "h")]
    d = diff(p.units(), hashes, running)
    assert d.keep == ("pack-1",) and d.create == ("pack-2", "pack-3") and d.remove == ("a-9",)


# -- the run layer's view ------------------------------------------------------------------------------

def test_unit_of_and_per_ioc_map_members_to_their_pack():
    pack = Instance("pk", "pack-1", "ioc", "caproto", "running", "h", pid=42, tcp_port=5064, members=("a", "b"))
    alone = Instance("pk", "s", "ioc", "softioc", "running", "h", pid=43)
    assert unit_of([pack, alone], "b") is pack and unit_of([pack, alone], "s") is alone
    assert unit_of([pack, alone], "zz") is None
    rows = per_ioc([pack, alone])
    assert [(r.name, r.pack, r.pid, r.tcp_port) for r in rows] == [("a", "pack-1", 42, None),
                                                                  ("b", "pack-1", 42, None), ("s", None, 43, None)]


def test_a_members_log_lines_are_its_own_and_the_packs():
    assert belongs("[a-1] iocfleet-ioc[caproto]: serving 3 PVs", "a-1", "pack-1")
    assert belongs("[pack pack-1] a-2 crashed", "a-1", "pack-1")
    assert not belongs("[a-10] serving", "a-1", "pack-1")
    assert not belongs("a-1 says", "a-1", "pack-1")


def test_the_host_view_sees_every_member_with_its_env():
    p = plan_of(pack=True)
    unit, = p.units()
    m = Member("process", "pk", unit.name, "ioc", "caproto", "running", 42, None, unit.env_dict())
    out = expand_pack(m)
    assert [x.name for x in out] == [i.name for i in p.iocs]
    assert [x.env for x in out] == [i.env_dict() for i in p.iocs] and {x.pid for x in out} == {42}
    plain = Member("process", "pk", "s", "ioc", "softioc", "running", 43, None, {"A": "1"})
    assert expand_pack(plain) == [plain]
    broken = Member("process", "pk", "p", "ioc", "caproto", "running", 44, None, {"IOCFLEET_PACK": "{"})
    assert expand_pack(broken) == [broken]


# -- exports: one service or workload per pack -----------------------------------------------------------

def _info():
    from orchestrator.export import ImageInfo
    from orchestrator.images import build as images

    return ImageInfo({"caproto": "iocfleet/ioc-caproto:test", "softioc": "iocfleet/ioc-softioc:test"},
                     {r: images.container_hardening(r) for r in ("caproto", "softioc")}, images.IOC_UID)


def test_exports_write_one_service_per_pack_with_its_description():
    from orchestrator.export import compose_dict, manifests
    from orchestrator.export.swarm import stack_dict

    iocs = [{"name": "a", "prefix": "PK:A{i}:", "replicas": 5, "pvs": ["X"]},
            {"name": "s", "runtime": "softioc", "prefix": "PK:S:", "pvs": ["X"]}]
    p = plan_of(iocs, pack=3)
    compose = compose_dict(p, images=_info())["services"]
    assert [k for k in compose if k != "ca-repeater"] == ["pack-1", "pack-2", "s"]
    description = json.loads(compose["pack-1"]["environment"][packing.PACK_VAR].replace("$$", "$"))
    assert [m["name"] for m in description["members"]] == ["a-1", "a-2", "a-3"]
    assert compose["pack-2"]["labels"][LABEL_MEMBERS] == "a-4 a-5"
    assert compose["pack-1"]["healthcheck"]  # the first member's liveness PV
    assert [k for k in stack_dict(p, images=_info())["services"] if k != "ca-repeater"] == ["pack-1", "pack-2", "s"]
    workloads = [d["metadata"]["name"] for d in manifests({"here": p}, images=_info()) if d["kind"] == "Deployment"]
    assert len(workloads) == 3 and any("pack-1" in w for w in workloads)


def test_a_packs_memory_limit_is_the_per_ioc_limit_times_its_members():
    iocs = [{"name": "a", "prefix": "PK:A{i}:", "replicas": 3, "pvs": ["X"], "limits": {"memory": "64m", "pids": 64}}]
    unit, = plan_of(iocs, pack=True).units()
    assert unit.limits.memory == f"{3 * 64 * 2**20}b" and unit.limits.pids == 64
    alone, = plan_of(iocs[:1] and [{**iocs[0], "replicas": 1}], pack=True).units()
    assert alone.limits.memory == "64m"
