"""export_file: a fleet file to compose/swarm/k8s text, one host or all of them."""

from __future__ import annotations

import pytest
import yaml

from hosts import host
from orchestrator.errors import UsageError
from orchestrator.export import ImageInfo, export_file

INFO = ImageInfo({"caproto": "c:1", "softioc": "s:1"})
TWO_HOSTS = """\
fleet: mh
network: {base_port: 29550}
hosts:
  - {name: node-a, address: 10.0.1.5/24}
  - {name: node-b, address: 10.0.2.6/24}
iocs:
  - {name: a, runtime: caproto, prefix: "MH:A:", host: node-a}
  - {name: b, runtime: softioc, prefix: "MH:B:", host: node-b}
  - {name: here, runtime: caproto, prefix: "MH:H:"}
"""


def write(tmp_path, text):
    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    return path


def test_compose_of_a_single_host_fleet(tmp_path):
    path = write(tmp_path, "fleet: one\nnetwork: {interface: lo}\niocs:\n  - {name: a, prefix: 'O:A:'}\n")
    out = export_file("compose", path, snapshot=host(), node="vm", images=INFO)
    assert list(out.plans) == ["vm"]
    assert list(yaml.safe_load(out.text)["services"]) == ["ca-repeater", "a"]
    assert {f.code for f in out.findings} <= {"repeater-missing"}


def test_compose_and_swarm_need_a_host_when_the_fleet_spans_several(tmp_path):
    path = write(tmp_path, TWO_HOSTS)
    with pytest.raises(UsageError, match="spans 3 hosts"):
        export_file("compose", path, snapshot=host(), node="vm", images=INFO)
    out = export_file("swarm", path, host="node-b", snapshot=host(), node="vm", images=INFO)
    stack = yaml.safe_load(out.text)
    assert stack["services"]["b"]["deploy"]["placement"] == {"constraints": ["node.hostname == node-b"]}
    assert stack["services"]["b"]["environment"]["EPICS_CAS_BEACON_ADDR_LIST"] == "10.0.2.255"
    with pytest.raises(UsageError, match="no IOCs planned on host 'node-c'"):
        export_file("swarm", path, host="node-c", snapshot=host(), node="vm", images=INFO)


def test_k8s_covers_every_host_including_this_machine(tmp_path):
    path = write(tmp_path, TWO_HOSTS)
    out = export_file("k8s", path, snapshot=host(), node="vm", interface="lo", images=INFO)
    assert list(out.plans) == ["vm", "node-a", "node-b"]
    nodes = {d["metadata"]["name"]: d["spec"]["template"]["spec"]["nodeSelector"]["kubernetes.io/hostname"]
             for d in yaml.safe_load_all(out.text) if d["kind"] == "Deployment"}
    assert nodes == {"mh-here": "vm", "mh-a": "node-a", "mh-b": "node-b"}
    assert out.plans["vm"].interface == "lo"


def test_unknown_kind_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError):
        export_file("helm", write(tmp_path, TWO_HOSTS), snapshot=host(), images=INFO)
