"""Exports of a name-server fleet (R15): compose, swarm and Kubernetes carry the name server."""

from __future__ import annotations

import json

import pytest

from hosts import host
from orchestrator.export import ImageInfo, compose_dict, manifests, stack_dict
from orchestrator.export.common import LABEL_HOST, LABEL_ROLE
from orchestrator.images import build as images
from orchestrator.plan import multihost, planner
from orchestrator import spec

INFO = ImageInfo({"caproto": "iocfleet/ioc-caproto:test", "softioc": "iocfleet/ioc-softioc:test"},
                 {r: images.container_hardening(r) for r in ("caproto", "softioc")}, images.IOC_UID)


def plan(n=6):
    iocs = [{"name": f"i{k}", "runtime": "caproto" if k % 2 else "softioc", "prefix": f"E:{k}:",
             "pvs": [{"name": "X"}]} for k in range(n)]
    f = spec.from_dict({"fleet": "e", "network": {"clients": "routed"}, "iocs": iocs})
    return f, planner.plan(f, host())


def names_of(env: dict) -> dict:
    return json.loads(env["IOCFLEET_NS_NAMES"])


def test_compose_runs_the_name_server_on_the_host_network_with_every_name():
    f, p = plan()
    service = compose_dict(p, f, INFO)["services"]["ca-nameserver"]
    assert service["network_mode"] == "host" and service["image"] == "iocfleet/ioc-caproto:test"
    assert service["entrypoint"][-4:] == ["--port", "5066", "--bind", "0.0.0.0"]
    names = names_of({k: v.replace("$$", "$") for k, v in service["environment"].items()})
    assert names["iocs"]["i3"]["pvs"] == list(p.ioc("i3").pv_names)
    assert names["search"] == [["198.51.100.255", 5064]]
    assert service["read_only"] is True and service["cap_drop"] == ["ALL"]


def test_swarm_stack_has_the_name_server_on_the_host_network():
    f, p = plan()
    service = stack_dict(p, f, INFO)["services"]["ca-nameserver"]
    assert service["networks"] == ["hostnet"] and service["deploy"]["restart_policy"]["condition"] == "any"
    assert names_of(service["environment"])["fleet"] == "e"


def test_no_name_server_service_for_other_strategies():
    f, p = plan(3)
    assert p.strategy == "distinct-ports"
    assert "ca-nameserver" not in compose_dict(p, f, INFO)["services"]


def test_k8s_gets_one_name_server_per_node_each_knowing_its_nodes_iocs():
    kv = pytest.importorskip("kubernetes_validate")
    from orchestrator.export.k8s import LABEL_HOST, LABEL_ROLE  # Kubernetes keys: iocfleet.org/*

    hosts = [{"name": "a", "address": "10.0.1.5/24"}, {"name": "b", "address": "10.0.2.6/24"}]
    iocs = [{"name": f"{h}{k}", "runtime": "caproto", "prefix": f"{h}:{k}:", "host": h} for h in "ab" for k in range(5)]
    f = spec.from_dict({"fleet": "m", "network": {"clients": "routed"}, "hosts": hosts, "iocs": iocs})
    plans = multihost.plan_hosts(f, host())
    docs = manifests(plans, f, INFO)
    servers = [d for d in docs if d["metadata"]["labels"].get(LABEL_ROLE) == "nameserver"]
    assert sorted(d["metadata"]["labels"][LABEL_HOST] for d in servers) == ["a", "b"]
    for d in servers:
        node = d["metadata"]["labels"][LABEL_HOST]
        pod = d["spec"]["template"]["spec"]
        assert pod["hostNetwork"] is True and pod["nodeSelector"] == {"kubernetes.io/hostname": node}
        env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
        assert set(names_of(env)["iocs"]) == {f"{node}{k}" for k in range(5)}
        kv.validate(d, "1.37.0", strict=True)
    config = next(d for d in docs if d["kind"] == "ConfigMap")
    assert config["data"]["EPICS_CA_NAME_SERVERS"] == "10.0.1.5:5066 10.0.2.6:5066"
