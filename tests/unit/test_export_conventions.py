"""Export conventions: compose `name:` and profiles (compose-spec schema), restart caps like `up`,
Kubernetes recommended labels, and the epics-containers flavour (StatefulSets, validated)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

from hosts import host
from orchestrator.errors import UsageError
from orchestrator.export import ImageInfo, compose_dict, manifests, stack_dict
from orchestrator.export.k8s import APP, LABEL_FLEET, LABEL_IOC
from orchestrator.images import build as images
from orchestrator.plan import planner
from orchestrator.run.backends.docker import ON_FAILURE_RETRIES, restart_policy
from orchestrator import spec

kv = pytest.importorskip("kubernetes_validate")
K8S_VERSION = "1.37.0"
SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "data" / "compose-spec.json").read_text())
INFO = ImageInfo({"caproto": "iocfleet/ioc-caproto:test", "softioc": "iocfleet/ioc-softioc:test"},
                 {r: images.container_hardening(r) for r in ("caproto", "softioc")}, images.IOC_UID)
FLEET = spec.from_dict({"fleet": "Beam_Line.1", "network": {"interface": "lo", "base_port": 29600}, "iocs": [
    {"name": "motor", "runtime": "caproto", "prefix": "BL:MTR:", "pvs": ["VELO"]},
    {"name": "det", "runtime": "softioc", "prefix": "BL:DET:", "restart": "always", "replicas": 2},
    {"name": "cam", "runtime": "image", "image": "registry.example/cam:1.0", "prefix": "BL:CAM:", "restart": "no"}]})


def validate(doc) -> None:
    jsonschema.Draft7Validator(SCHEMA).validate(doc)


def plan():
    return planner.plan(FLEET, host())


def test_compose_has_a_project_name_and_a_profile_per_ioc_and_passes_the_compose_spec_schema():
    doc = compose_dict(plan(), FLEET, INFO)
    validate(doc)
    assert doc["name"] == "beam_line-1"
    services = doc["services"]
    assert {n: s.get("profiles") for n, s in services.items()} == {
        "ca-repeater": None, "motor": ["iocs", "motor"], "det-1": ["iocs", "det-1"], "det-2": ["iocs", "det-2"],
        "cam": ["iocs", "cam"]}
    assert re.fullmatch(r"[a-z0-9][a-z0-9_-]*", doc["name"])  # compose's project-name rule
    bad = {**doc, "services": {**services, "motor": {**services["motor"], "profiles": "iocs"}}}
    with pytest.raises(jsonschema.ValidationError):
        validate(bad)


def test_softioc_services_get_the_console_tty_like_up():
    services = compose_dict(plan(), FLEET, INFO)["services"]
    assert services["det-1"]["tty"] is True and services["det-1"]["stdin_open"] is True
    assert "tty" not in services["motor"]
    assert stack_dict(plan(), FLEET, INFO)["services"]["det-2"]["tty"] is True


def test_compose_v1_leaves_out_name_which_docker_compose_1_refuses():
    doc = compose_dict(plan(), FLEET, INFO, v1=True)
    assert "name" not in doc and "profiles" in doc["services"]["motor"]
    validate(doc)


def test_restart_caps_match_up_in_compose_and_swarm():
    assert restart_policy("on-failure") == {"Name": "on-failure", "MaximumRetryCount": ON_FAILURE_RETRIES}
    services = compose_dict(plan(), FLEET, INFO)["services"]
    assert (services["motor"]["restart"], services["det-1"]["restart"], services["cam"]["restart"]) == (
        f"on-failure:{ON_FAILURE_RETRIES}", "always", "no")
    swarm = stack_dict(plan(), FLEET, INFO)["services"]
    assert swarm["motor"]["deploy"]["restart_policy"] == {"condition": "on-failure", "delay": "5s",
                                                          "max_attempts": ON_FAILURE_RETRIES}
    assert "max_attempts" not in swarm["det-1"]["deploy"]["restart_policy"]


def test_k8s_objects_carry_the_recommended_labels_and_domain_prefixed_keys():
    docs = manifests({"vm": plan()}, FLEET, INFO)
    for doc in docs:
        kv.validate(doc, K8S_VERSION, strict=True)
        labels = doc["metadata"]["labels"]
        assert labels[f"{APP}/managed-by"] == "iocfleet" and labels[f"{APP}/part-of"] == "Beam_Line.1"
        assert {f"{APP}/name", f"{APP}/instance", f"{APP}/component"} <= set(labels)
        assert all("/" in key for key in labels), labels  # every key is prefixed (no bare org.iocfleet.*)
    det = next(d for d in docs if d["metadata"]["labels"].get(LABEL_IOC) == "det-2")
    assert det["metadata"]["labels"][f"{APP}/name"] == "det"  # the fleet-file IOC; instance tells replicas apart
    assert det["metadata"]["labels"][f"{APP}/component"] == "ioc"
    assert len({d["metadata"]["labels"][f"{APP}/instance"] for d in docs}) == len(docs)


def test_ec_flavor_makes_statefulsets_like_the_ioc_instance_chart_and_they_validate():
    docs = manifests({"vm": plan()}, FLEET, INFO, flavor="ec", stopped=("cam",))
    sets = {d["metadata"]["labels"][LABEL_IOC]: d for d in docs if d["kind"] == "StatefulSet"}
    assert set(sets) == {"motor", "det-1", "det-2", "cam"}
    assert not [d for d in docs if d["kind"] == "Deployment"]
    for doc in docs:
        kv.validate(doc, K8S_VERSION, strict=True)
    motor = sets["motor"]
    assert motor["spec"]["replicas"] == 1 and sets["cam"]["spec"]["replicas"] == 0
    assert sets["cam"]["metadata"]["labels"]["enabled"] == "false"
    assert motor["metadata"]["labels"]["ioc"] == "true" and motor["metadata"]["labels"]["app"] == motor["metadata"]["name"]
    (container,) = motor["spec"]["template"]["spec"]["containers"]
    assert container["stdin"] is True and container["tty"] is True
    assert container["livenessProbe"]["exec"]["command"][-1] == "BL:MTR:UPTIME"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["IOC_NAME"] == "motor" and env["IOC_PREFIX"] == "BL:MTR" and env["IOCSH_PS1"] == "motor > "
    assert motor["spec"]["selector"]["matchLabels"].items() <= motor["spec"]["template"]["metadata"]["labels"].items()
    assert motor["spec"]["selector"]["matchLabels"][LABEL_FLEET] == "Beam_Line.1"


def test_ec_flavor_refuses_unknown_names_and_flavors():
    with pytest.raises(UsageError, match="nope"):
        manifests({"vm": plan()}, FLEET, INFO, flavor="ec", stopped=("nope",))
    with pytest.raises(UsageError, match="helm"):
        manifests({"vm": plan()}, FLEET, INFO, flavor="helm")


def test_the_cli_exports_ec_statefulsets_that_validate(tmp_path):
    import yaml
    from click.testing import CliRunner

    from orchestrator.cli import cli

    path = tmp_path / "f.yaml"
    path.write_text(yaml.safe_dump({"fleet": "ecx", "network": {"interface": "lo", "base_port": 29650}, "iocs": [
        {"name": "a", "runtime": "softioc", "prefix": "ECX:A:"}, {"name": "b", "runtime": "caproto", "prefix": "ECX:B:"}]}))
    result = CliRunner().invoke(cli, ["export", "k8s", str(path), "--flavor", "ec", "--stopped", "b", "--node", "n1"])
    assert result.exit_code == 0, result.output
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert [d["kind"] for d in docs].count("StatefulSet") == 2
    for doc in docs:
        kv.validate(doc, K8S_VERSION, strict=True)
    assert {d["metadata"]["name"]: d["spec"]["replicas"] for d in docs if d["kind"] == "StatefulSet"} == {
        "ecx-a": 1, "ecx-b": 0}
    bad = CliRunner().invoke(cli, ["export", "k8s", str(path), "--flavor", "ec", "--stopped", "zz", "--node", "n1"])
    assert bad.exit_code == 2 and "zz" in bad.output
