"""Tests a CI job would run against a fleet; run under `pytest -n 2` they must not see each other's IOCs."""

from __future__ import annotations

import pytest

from orchestrator.ca.probe import search
from orchestrator.run.readiness import client_destinations

FLEET = __file__.rsplit("/", 1)[0] + "/fleet.yaml"


def assert_one_server_per_pv(fleet) -> None:
    """A live probe through the fleet's client settings: each declared PV answered by exactly one server."""
    names = fleet.pvs()
    result = search(names, client_destinations(fleet.client_env), rounds=3, timeout=0.5)
    for name in names:
        servers = result.servers(name)
        assert len(servers) == 1, f"{name} answered by {sorted(servers)} (cross-talk between workers?)"
    assert not [f for f in fleet.findings if f.code == "duplicate-pv"]


@pytest.mark.parametrize("velocity", [0.5, 2.0, 3.25, 7.0])
def test_put_then_get(ca_fleet, velocity):
    fleet = ca_fleet(FLEET)
    assert fleet.get("CI:MTR:VELO") == 1.5
    assert fleet.put("CI:MTR:VELO", velocity) == velocity
    assert fleet.get("CI:MTR:VELO") == velocity
    assert_one_server_per_pv(fleet)


def test_strings_enums_and_a_counting_pv(ca_fleet):
    fleet = ca_fleet(FLEET)
    assert fleet.get("CI:DET:NAME") == "pilatus"
    assert fleet.put("CI:MTR:MODE", "Auto") == "Auto"
    first = fleet.get("CI:DET:COUNTS")
    assert isinstance(first, int)
    assert_one_server_per_pv(fleet)
