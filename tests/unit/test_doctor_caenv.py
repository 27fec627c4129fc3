"""Client and server CA settings from an environment mapping: strict parsing, one-line errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.ca import env as caenv
from orchestrator.errors import UsageError


def test_defaults_and_entries():
    s = caenv.client_settings({"EPICS_CA_ADDR_LIST": " 198.51.100.255  10.0.0.5:5070 ioc-host.lab ",
                               "EPICS_CA_AUTO_ADDR_LIST": "no", "EPICS_CA_SERVER_PORT": "6000"})
    assert [(e.host, e.port) for e in s.entries] == [("198.51.100.255", 6000), ("10.0.0.5", 5070),
                                                     ("ioc-host.lab", 6000)]
    assert [e.is_ip for e in s.entries] == [True, True, False]
    assert s.auto_addr_list is False and s.repeater_port == 5065
    assert caenv.client_settings({}).auto_addr_list is True  # unset means YES in both runtimes


@pytest.mark.parametrize("variable,value,bad", [
    ("EPICS_CA_ADDR_LIST", "198.51.100.1 198.51.100.2,198.51.100.3", "198.51.100.2,198.51.100.3"),
    ("EPICS_CA_ADDR_LIST", "10.0.0.1:abc", "10.0.0.1:abc"),
    ("EPICS_CA_ADDR_LIST", "10.0.0.1:70000", "10.0.0.1:70000"),
    ("EPICS_CA_ADDR_LIST", "1.2.3", "1.2.3"),
    ("EPICS_CA_ADDR_LIST", "300.1.1.1", "300.1.1.1"),
    ("EPICS_CA_ADDR_LIST", ":5064", ":5064"),
    ("EPICS_CA_ADDR_LIST", "bad_host!", "bad_host!"),
    ("EPICS_CA_AUTO_ADDR_LIST", "maybe", "maybe"),
    ("EPICS_CA_SERVER_PORT", "99999", "99999"),
    ("EPICS_CA_REPEATER_PORT", "x", "x"),
    ("EPICS_CA_NAME_SERVERS", "10.0.0.1:", "10.0.0.1:"),
])
def test_malformed_values_name_the_variable_and_the_entry(variable, value, bad):
    with pytest.raises(UsageError) as caught:
        caenv.client_settings({variable: value})
    line = caught.value.line()
    assert variable in line and repr(bad) in line and "\n" not in line
    assert caught.value.exit_code == 2


@given(st.lists(st.tuples(st.ip_addresses(v=4).map(str), st.one_of(st.none(), st.integers(1, 65535))),
                max_size=8))
def test_any_valid_list_round_trips(items):
    text = " ".join(h if p is None else f"{h}:{p}" for h, p in items)
    parsed = caenv.addr_list(text, 5064)
    assert [(e.host, e.port) for e in parsed] == [(h, 5064 if p is None else p) for h, p in items]


@pytest.mark.parametrize("runtime,env,auto", [
    ("caproto", {}, True),
    ("caproto", {"EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO"}, True),  # empty list: caproto adds 255.255.255.255
    ("caproto", {"EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO", "EPICS_CAS_BEACON_ADDR_LIST": "10.0.0.255"}, False),
    ("caproto", {"EPICS_CAS_AUTO_BEACON_ADDR_LIST": "yes", "EPICS_CAS_BEACON_ADDR_LIST": "10.0.0.255"}, True),
    ("softioc", {}, True),
    ("softioc", {"EPICS_CA_AUTO_ADDR_LIST": "NO"}, False),  # rsrv falls back to the client's setting
    ("softioc", {"EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO"}, False),
    ("softioc", {"EPICS_CAS_AUTO_BEACON_ADDR_LIST": "YES", "EPICS_CA_AUTO_ADDR_LIST": "NO"}, True),
])
def test_beacon_settings_follow_each_runtime(runtime, env, auto):
    got = caenv.beacon_settings(runtime, env)
    assert got.auto is auto
    if auto:
        assert got.auto_targets and got.reason
