"""The swarm export: the compose services as a 3.8 stack on the engine's `host` network."""

from __future__ import annotations

import yaml

from hosts import host
from orchestrator.images import build as images
from orchestrator.plan import planner
from orchestrator import spec
from orchestrator.export import ImageInfo, compose_dict, stack_dict, stack_yaml
from orchestrator.export.common import LABEL_FLEET, LABEL_IOC, LABEL_PLAN

INFO = ImageInfo({"caproto": "iocfleet/ioc-caproto:test", "softioc": "iocfleet/ioc-softioc:test"},
                 {r: images.container_hardening(r) for r in ("caproto", "softioc")}, images.IOC_UID)


def fleet(**network):
    iocs = [
        {"name": "cp", "runtime": "caproto", "prefix": "T:CP:", "restart": "always",
         "limits": {"memory": "128m", "pids": 64}},
        {"name": "si", "runtime": "softioc", "prefix": "T:SI:", "restart": "no"},
        {"name": "im", "runtime": "image", "image": "reg/ioc:1", "prefix": "T:IM:"},
    ]
    return spec.from_dict({"fleet": "t", "network": {"interface": "lo", "base_port": 29510, **network}, "iocs": iocs})


def export(node=None, **network):
    f = fleet(**network)
    p = planner.plan(f, host())
    return p, f, stack_dict(p, f, INFO, node=node)


def test_stack_uses_the_external_host_network_not_network_mode():
    _, _, doc = export()
    assert doc["version"] == "3.8"
    assert doc["networks"] == {"hostnet": {"external": True, "name": "host"}}
    for service in doc["services"].values():
        assert service["networks"] == ["hostnet"]
        assert "network_mode" not in service and "depends_on" not in service and "restart" not in service


def test_services_carry_the_same_environment_labels_and_health_as_compose():
    p, f, doc = export()
    compose = compose_dict(p, f, INFO)["services"]
    for ioc in p.iocs:
        service = doc["services"][ioc.name]
        assert service["environment"] == compose[ioc.name]["environment"]
        assert service["labels"] == compose[ioc.name]["labels"] == service["deploy"]["labels"]
        assert service.get("healthcheck") == compose[ioc.name].get("healthcheck")
        assert service["user"] == compose[ioc.name]["user"]
        assert service["environment"]["EPICS_CAS_AUTO_BEACON_ADDR_LIST"] == "NO"
        assert service["environment"]["EPICS_CA_AUTO_ADDR_LIST"] == "NO"
    assert doc["services"]["cp"]["labels"][LABEL_FLEET] == "t"
    assert doc["services"]["cp"]["labels"][LABEL_IOC] == "cp"
    assert LABEL_PLAN in doc["services"]["cp"]["labels"]


def test_restart_limits_and_placement_the_swarm_way():
    _, _, doc = export(node="vm1")
    cp, si, im = (doc["services"][n]["deploy"] for n in ("cp", "si", "im"))
    assert (cp["restart_policy"]["condition"], si["restart_policy"]["condition"],
            im["restart_policy"]["condition"]) == ("any", "none", "on-failure")
    assert cp["resources"] == {"limits": {"memory": "128m"}}  # engine 20.10 refuses a pids limit in stacks
    assert cp["replicas"] == 1 and cp["update_config"]["order"] == "stop-first"
    assert cp["placement"] == {"constraints": ["node.hostname == vm1"]}
    rep = doc["services"]["ca-repeater"]["deploy"]
    assert rep["mode"] == "global" and "replicas" not in rep


def test_hardening_tmpfs_becomes_a_sized_tmpfs_mount():
    _, _, doc = export()
    cp = doc["services"]["cp"]
    assert cp["read_only"] is True and cp["cap_drop"] == ["ALL"]
    assert cp["volumes"] == [{"type": "tmpfs", "target": "/tmp", "tmpfs": {"size": 16 * 2**20}}]
    assert "security_opt" not in cp  # swarm ignores it; docs/export.md says so
    im = doc["services"]["im"]  # `image` IOCs: the same read-only root and /tmp tmpfs by default
    assert im["read_only"] is True and im["volumes"] == cp["volumes"]


def test_yaml_is_deterministic():
    p, f, doc = export()
    text = stack_yaml(p, f, INFO)
    assert text == stack_yaml(planner.plan(fleet(), host()), fleet(), INFO)
    assert yaml.safe_load(text) == doc
