"""The name server's pure parts: the names file, the resolver cache, the bytes it answers with."""

from __future__ import annotations

import importlib
import sys

import caproto as ca
import pytest

from orchestrator.images.build import ioc_images_root


@pytest.fixture(scope="module")
def ns():
    common = str(ioc_images_root() / "common")
    sys.path.insert(0, common)
    try:
        return importlib.import_module("iocfleet_ioc.nameserver")
    finally:
        sys.path.remove(common)


def table(ns, **extra):
    data = {"fleet": "f", "search": [["127.255.255.255", 5064]],
            "iocs": {"a": {"address": "198.18.5.2", "pvs": ["A:X", "A:Y"]},
                     "b": {"address": "198.18.5.2", "pvs": ["B:X"]}}}
    data.update(extra)
    return ns.NameTable.from_dict(data)


def test_names_file_maps_each_pv_to_its_ioc(ns):
    t = table(ns)
    assert t.owner == {"A:X": "a", "A:Y": "a", "B:X": "b"}
    assert t.search == (("127.255.255.255", 5064),)
    assert not t.ambiguous


def test_a_pv_listed_under_two_iocs_is_ambiguous(ns):
    t = table(ns, iocs={"a": {"address": "h", "pvs": ["DUP"]}, "b": {"address": "h", "pvs": ["DUP", "B"]}})
    assert t.ambiguous == {"DUP"}


def test_resolver_answers_with_the_planned_address_and_the_learned_port(ns):
    t, r = table(ns), ns.Resolver(ttl=30)
    r.learn(t, "A:X", "127.0.0.1", 40001, now=0.0, round_answers={})
    hit = r.lookup(t, "A:X", now=1.0)
    assert (hit.ioc, hit.ip, hit.port) == ("a", "198.18.5.2", 40001)


def test_resolver_forgets_after_ttl_and_when_nothing_listens(ns):
    t, r = table(ns), ns.Resolver(ttl=5)
    r.learn(t, "A:X", "198.18.5.2", 40001, now=0.0, round_answers={})
    r.learn(t, "A:Y", "198.18.5.2", 40001, now=0.0, round_answers={})
    assert r.lookup(t, "A:X", now=6.0) is None
    assert r.lookup(t, "A:Y", now=1.0, listening=lambda ip, port: False) is None
    assert r.cache == {}, "a dead endpoint drops every name cached for it"


def test_two_endpoints_for_one_name_in_one_round_are_a_conflict(ns):
    t, r = table(ns), ns.Resolver()
    answers: dict = {}
    r.learn(t, "A:X", "198.18.5.2", 40001, now=0.0, round_answers=answers)
    r.learn(t, "A:X", "198.18.5.2", 40002, now=0.0, round_answers=answers)
    assert "A:X" in r.conflicts and "A:X" not in r.cache


def test_unknown_names_are_never_learned(ns):
    t, r = table(ns), ns.Resolver()
    r.learn(t, "OTHER:PV", "198.18.5.2", 40001, now=0.0, round_answers={})
    assert r.cache == {}


def test_answer_bytes_parse_as_search_responses_with_the_ioc_ip(ns):
    data = ns.answer_bytes([(7, "198.18.5.2", 40001), (8, "198.18.5.2", 40002)])
    commands = ca.Broadcaster(our_role=ca.CLIENT).recv(data, ("198.18.5.1", 5066))
    assert isinstance(commands[0], ca.VersionResponse) and commands[0].version >= 12  # libca: TCP search >= 4.12
    replies = [(c.cid, c.ip, c.port) for c in commands[1:]]
    assert replies == [(7, "198.18.5.2", 40001), (8, "198.18.5.2", 40002)]


def test_listening_ports_reads_proc_net_tcp(ns, tmp_path):
    path = tmp_path / "tcp"
    path.write_text("  sl  local_address rem_address   st\n"
                    "   0: 0100007F:1F90 00000000:0000 0A 0\n"
                    "   1: 0100007F:1F91 0100007F:C000 01 0\n")
    assert ns.listening_ports((str(path),)) == {0x1F90}
    assert ns.listening_ports((str(tmp_path / "missing"),)) is None
