"""Isolation of fleets between pytest-xdist workers (pure parts of the plugin and Fleet)."""

from orchestrator import spec
from orchestrator.run.fleet import isolated
from orchestrator.pytest_plugin import PORT_STRIDE, worker_isolation


def test_worker_ids_map_to_a_tag_and_a_port_range():
    assert worker_isolation(None) == (None, 0)
    assert worker_isolation("master") == (None, 0)
    assert worker_isolation("gw0") == ("gw0", 0)
    assert worker_isolation("gw3") == ("gw3", 3 * PORT_STRIDE)


def test_isolated_fleet_renames_fleet_and_prefixes_and_shifts_ports():
    fleet = spec.from_dict({"fleet": "ci", "network": {"base_port": 6000},
                            "iocs": [{"name": "a", "prefix": "BL:A:"}, {"name": "m", "prefix": "BL:M{i}:", "replicas": 2}]})
    iso = isolated(fleet, "gw1", 512)
    assert iso.name == "ci-gw1"
    assert [i.prefix for i in iso.iocs] == ["gw1:BL:A:", "gw1:BL:M{i}:"]
    assert iso.network.base_port == 6512
    assert isolated(fleet, None, 0) is fleet
