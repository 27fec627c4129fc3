"""The Kubernetes export: valid manifests (checked offline against the 1.37 schemas), one Deployment per IOC."""

from __future__ import annotations

import re

import pytest
import yaml

from hosts import host
from orchestrator.images import build as images
from orchestrator.plan import multihost
from orchestrator.plan import planner
from orchestrator import spec
from orchestrator.export import ImageInfo, manifests, manifests_yaml
from orchestrator.export.common import CAPROTO_HEALTH
from orchestrator.export.k8s import LABEL_FLEET, LABEL_HOST, LABEL_IOC, LABEL_PLAN
from orchestrator.export.k8s import label_value, object_name

kv = pytest.importorskip("kubernetes_validate")
K8S_VERSION = "1.37.0"
INFO = ImageInfo({"caproto": "iocfleet/ioc-caproto:test", "softioc": "iocfleet/ioc-softioc:test"},
                 {r: images.container_hardening(r) for r in ("caproto", "softioc")}, images.IOC_UID)
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

TWO_HOSTS = {
    "fleet": "Beamline_1",
    "network": {"base_port": 29530},
    "hosts": [{"name": "node-a", "interface": "eth1", "address": "10.0.1.5/24"},
              {"name": "node-b", "address": "10.0.2.6/24"}],
    "iocs": [
        {"name": "Motor_X", "runtime": "caproto", "prefix": "BL1:MX:", "host": "node-a", "limits": {"memory": "256m"},
         "pvs": [{"name": "POS"}]},
        {"name": "vac", "runtime": "softioc", "prefix": "BL1:VAC:", "host": "node-a", "restart": "always"},
        {"name": "det", "runtime": "caproto", "prefix": "BL1:DET:", "host": "node-b", "replicas": 2,
         "pvs": [{"name": "C", "type": "str", "value": "$(HOME)"}]},
        {"name": "cam", "runtime": "image", "image": "registry.example/cam:1.0", "command": ["/ioc/st.cmd", "$(X)"],
         "prefix": "BL1:CAM:", "host": "node-b", "user": "1000"},
    ],
}


def two_host_docs():
    f = spec.from_dict(TWO_HOSTS)
    plans = multihost.plan_hosts(f, host())
    return f, plans, manifests(plans, f, INFO)


def deployments(docs):
    return {d["metadata"]["labels"][LABEL_IOC]: d for d in docs if d["kind"] == "Deployment"}


def test_every_manifest_of_a_two_host_fleet_is_valid_against_the_schema():
    _, _, docs = two_host_docs()
    assert [d["kind"] for d in docs] == ["ConfigMap", "DaemonSet"] + ["Deployment"] * 5
    for doc in docs:
        kv.validate(doc, K8S_VERSION, strict=True)


def test_the_yaml_text_is_valid_too_and_deterministic():
    f, plans, docs = two_host_docs()
    text = manifests_yaml(plans, f, INFO)
    assert text == manifests_yaml(multihost.plan_hosts(f, host()), f, INFO)
    loaded = list(yaml.safe_load_all(text))
    assert loaded == docs
    for doc in loaded:
        kv.validate(doc, K8S_VERSION, strict=True)


def test_each_ioc_runs_once_on_its_hosts_node_with_host_networking():
    _, plans, docs = two_host_docs()
    deps = deployments(docs)
    assert set(deps) == {"Motor_X", "vac", "det-1", "det-2", "cam"}
    for node, plan in plans.items():
        for ioc in plan.iocs:
            dep = deps[ioc.name]
            pod = dep["spec"]["template"]["spec"]
            assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"] == {"type": "Recreate"}
            assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
            assert pod["nodeSelector"] == {"kubernetes.io/hostname": node}
            assert dep["metadata"]["labels"][LABEL_HOST] == node
            env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
            assert env == {k: v.replace("$(", "$$(") for k, v in ioc.env_dict().items()}
            assert env["EPICS_CAS_AUTO_BEACON_ADDR_LIST"] == "NO"
            assert env["EPICS_CAS_BEACON_ADDR_LIST"] == plan.broadcast
            assert env["EPICS_CA_AUTO_ADDR_LIST"] == "NO" and env["EPICS_CA_ADDR_LIST"]


def test_readiness_probe_reads_heartbeat_and_security_matches_the_hardening():
    _, _, docs = two_host_docs()
    deps = deployments(docs)
    pod = deps["Motor_X"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["exec"]["command"] == ["python3", "-c", CAPROTO_HEALTH, "BL1:MX:UPTIME"]
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}}
    assert pod["securityContext"]["runAsUser"] == images.IOC_UID and pod["securityContext"]["runAsNonRoot"]
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}]
    assert container["resources"] == {"limits": {"memory": "256Mi"}}
    cam = deps["cam"]["spec"]["template"]["spec"]
    assert "readinessProbe" not in cam["containers"][0]
    assert cam["containers"][0]["args"] == ["/ioc/st.cmd", "$$(X)"]
    assert cam["securityContext"]["runAsUser"] == 1000  # its own `user:`
    assert cam["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True  # hardened by default
    assert cam["volumes"] == [{"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}]


def test_names_and_labels_are_valid_and_unique():
    _, _, docs = two_host_docs()
    names = [d["metadata"]["name"] for d in docs]
    assert len(set(names)) == len(names)
    assert all(DNS_LABEL.match(n) and len(n) <= 63 for n in names)
    deps = deployments(docs)
    assert deps["vac"]["metadata"]["labels"][LABEL_FLEET] == "Beamline_1"
    assert all(len(d["metadata"]["labels"][LABEL_PLAN]) == 16 for d in deps.values())
    assert object_name("t", "ioc") == "t-ioc"
    assert object_name("T", "x_1") != object_name("t", "x-1")
    assert label_value("ok.name-1") == "ok.name-1"
    assert re.match(r"^[A-Za-z0-9][-A-Za-z0-9_.]*[A-Za-z0-9]$", label_value("trailing-"))
    assert len(label_value("x" * 70)) <= 63


def test_repeater_daemon_set_covers_exactly_the_fleets_nodes_and_the_configmap_the_clients():
    _, plans, docs = two_host_docs()
    config, daemon = docs[0], docs[1]
    assert config["data"] == dict(multihost.client_env(plans))
    assert config["data"]["EPICS_CA_ADDR_LIST"] == "10.0.1.255 10.0.2.255"
    terms = daemon["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In",
                                            "values": ["node-a", "node-b"]}]}]
    assert daemon["spec"]["template"]["spec"]["hostNetwork"] is True


def test_single_host_fleet_on_loopback_exports_valid_manifests_with_a_namespace():
    f = spec.from_dict({"fleet": "lab", "network": {"interface": "lo", "base_port": 29540},
                        "iocs": [{"name": "a", "runtime": "caproto", "prefix": "L:A:"},
                                 {"name": "b", "runtime": "softioc", "prefix": "L:B:", "restart": "no"}]})
    docs = manifests({"vm": planner.plan(f, host())}, f, INFO, namespace="epics")
    for doc in docs:
        kv.validate(doc, K8S_VERSION, strict=True)
        assert doc["metadata"]["namespace"] == "epics"
    b = deployments(docs)["b"]
    assert b["metadata"]["annotations"]["iocfleet.org/restart"] == "no"
    assert "not expressible" in b["metadata"]["annotations"]["iocfleet.org/note"]


def test_an_invalid_manifest_is_caught_by_the_validator():
    _, _, docs = two_host_docs()
    broken = yaml.safe_load(yaml.safe_dump(docs[-1]))
    broken["spec"]["template"]["spec"]["hostNetwork"] = "yes"
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, K8S_VERSION, strict=True)
