"""Kubernetes manifests from per-host Plans: one Deployment per IOC on its host's node, host networking.

Every IOC pod uses `hostNetwork: true`, so the node's ports and broadcasts are shared exactly as on a
Docker host (R16), and a nodeSelector pins it to the host its plan was made for. A DaemonSet runs the
CA repeater on the fleet's nodes (R12); a ConfigMap carries the client settings that reach every host.
Pure: plain dicts in a fixed order (`manifests`), or multi-document YAML (`manifests_yaml`).
"""

from __future__ import annotations

import hashlib
import re
from typing import Mapping

from orchestrator.plan.model import Plan, PlannedIOC
from orchestrator.export.common import LABEL_FLEET, LABEL_HOST, LABEL_IOC, LABEL_PLAN, LABEL_ROLE, LABEL_RUNTIME, ImageInfo, health_argv, image_of, k8s_quantity, plan_hash, repeater_env, restart_of, restarts_of, to_yaml_documents, user_of, wants_repeater, REPEATER_ARGV

NODE_LABEL = "kubernetes.io/hostname"
RESTART_ANNOTATION = "org.iocfleet.restart"
NOTE_ANNOTATION = "org.iocfleet.note"
TMP_VOLUME = "tmp"
PROBE_TIMING = {"initialDelaySeconds": 5, "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3}
_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def manifests(plans: Mapping[str, Plan], fleet=None, images: ImageInfo | None = None, repeater: bool = True,
              namespace: str | None = None, client_env: tuple[tuple[str, str], ...] | None = None) -> list[dict]:
    """Every manifest of the fleet: client ConfigMap, repeater DaemonSet, then one Deployment per IOC.

    `plans` maps node name (kubernetes.io/hostname) to the Plan made for that host, as
    `multihost.plan_hosts` returns it; a single-host fleet is `{node: plan}`.
    """
    if not plans:
        return []
    info = images or ImageInfo.from_images()
    restarts = restarts_of(fleet)
    first = next(iter(plans.values()))
    if client_env is None:
        from orchestrator.plan.multihost import client_env as merged

        client_env = merged(dict(plans))
    docs = [client_config_map(first.fleet, client_env, namespace)]
    repeater_nodes = [node for node, plan in plans.items() if wants_repeater(plan)]
    if repeater and repeater_nodes:
        docs.append(repeater_daemon_set(first, repeater_nodes, info, namespace))
    for node, plan in plans.items():
        for ioc in plan.iocs:
            docs.append(ioc_deployment(plan, ioc, node, info, restarts, namespace))
    return docs


def manifests_yaml(plans: Mapping[str, Plan], fleet=None, images: ImageInfo | None = None, repeater: bool = True,
                   namespace: str | None = None) -> str:
    """The manifests as one multi-document YAML text for `kubectl apply -f`."""
    docs = manifests(plans, fleet, images, repeater, namespace)
    first = next(iter(plans.values()))
    header = (f"# Kubernetes manifests exported by iocfleet from the plans of fleet {first.fleet!r} "
              f"on node(s) {', '.join(plans)}.\n")
    return to_yaml_documents(docs, header)


def ioc_deployment(plan: Plan, ioc: PlannedIOC, node: str, info: ImageInfo, restarts: Mapping[str, str],
                   namespace: str | None = None) -> dict:
    image = image_of(ioc, info)
    restart = restart_of(ioc, restarts)
    digest = plan_hash(ioc, image)
    selector = {LABEL_FLEET: label_value(plan.fleet), LABEL_IOC: label_value(ioc.name)}
    labels = {**selector, LABEL_HOST: label_value(node), LABEL_PLAN: digest, LABEL_ROLE: "ioc",
              LABEL_RUNTIME: ioc.runtime}
    annotations = {RESTART_ANNOTATION: restart}
    if restart != "always":
        # A Deployment always restarts its pod; the fleet file's policy is kept for the record.
        annotations[NOTE_ANNOTATION] = f"restart {restart!r} is not expressible in a Deployment (always restarts)"
    container: dict = {"name": "ioc", "image": image, "imagePullPolicy": "IfNotPresent"}
    if ioc.command:
        container["args"] = [_escape(a) for a in ioc.command]  # compose `command` = Kubernetes `args`
    container["env"] = [{"name": k, "value": _escape(v)} for k, v in ioc.env]
    hardening = info.hardening_of(ioc.runtime)
    container["securityContext"] = _container_security(hardening)
    if ioc.limits.memory:
        container["resources"] = {"limits": {"memory": k8s_quantity(ioc.limits.memory)}}
    probe = health_argv(ioc)
    if probe:
        container["readinessProbe"] = {"exec": {"command": probe}, **PROBE_TIMING}
    volumes = _tmp_volumes(hardening)
    if volumes:
        container["volumeMounts"] = [{"name": v["name"], "mountPath": path} for path, v in volumes]
    pod_spec = _pod_spec(node, _pod_security(user_of(ioc, info)), [container], [v for _, v in volumes])
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(object_name(plan.fleet, ioc.name), labels, annotations, namespace),
        "spec": {
            "replicas": 1,
            # Stop the old pod before the new one starts: both would want the IOC's port.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector},
            "template": {"metadata": {"labels": labels, "annotations": annotations}, "spec": pod_spec},
        },
    }


def repeater_daemon_set(plan: Plan, nodes: list[str], info: ImageInfo, namespace: str | None = None) -> dict:
    """caproto's repeater on every node of the fleet (R12), on the plan's repeater port."""
    selector = {LABEL_FLEET: label_value(plan.fleet), LABEL_ROLE: "repeater"}
    hardening = info.hardening_of("caproto")
    volumes = _tmp_volumes(hardening)
    container = {
        "name": "ca-repeater",
        "image": info.tag("caproto"),
        "imagePullPolicy": "IfNotPresent",
        "command": list(REPEATER_ARGV),
        "env": [{"name": k, "value": v} for k, v in repeater_env(plan).items()],
        "securityContext": _container_security(hardening),
    }
    if volumes:
        container["volumeMounts"] = [{"name": v["name"], "mountPath": path} for path, v in volumes]
    pod_spec = _pod_spec(None, _pod_security(f"{info.uid}:{info.uid}"), [container], [v for _, v in volumes])
    pod_spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": NODE_LABEL, "operator": "In", "values": list(nodes)}]}]}}}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": _metadata(object_name(plan.fleet, "ca-repeater"), selector, {}, namespace),
        "spec": {"selector": {"matchLabels": selector},
                 "template": {"metadata": {"labels": selector}, "spec": pod_spec}},
    }


def client_config_map(fleet: str, client_env, namespace: str | None = None) -> dict:
    """The client settings as a ConfigMap: `envFrom: [{configMapRef: {name: ...}}]` in a client pod."""
    labels = {LABEL_FLEET: label_value(fleet), LABEL_ROLE: "ca-client"}
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": _metadata(object_name(fleet, "ca-client"), labels, {}, namespace),
            "data": dict(client_env)}


def object_name(*parts: str) -> str:
    """A DNS-1123 label (lowercase, digits, `-`, at most 63) from names; a digest keeps mangled names unique."""
    raw = "-".join(parts)
    name = re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", raw.lower())).strip("-")
    if name == raw and len(name) <= 63:
        return name
    digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
    return f"{name[:54].rstrip('-')}-{digest}"


def label_value(value: str) -> str:
    """`value` if Kubernetes accepts it as a label value, else a valid shortened form with a digest."""
    if len(value) <= 63 and _LABEL_VALUE_RE.fullmatch(value):
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:8]
    head = re.sub(r"[^A-Za-z0-9_.-]", "-", value)[:54].strip("-_.")
    return f"{head}-{digest}" if head else digest


def _escape(value: str) -> str:
    """Kubernetes expands `$(VAR)` in env values and args; `$$(` keeps it literal."""
    return value.replace("$(", "$$(")


def _metadata(name: str, labels: dict, annotations: dict, namespace: str | None) -> dict:
    meta: dict = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    meta["labels"] = dict(labels)
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def _pod_spec(node: str | None, security: dict, containers: list, volumes: list) -> dict:
    spec: dict = {
        "hostNetwork": True,
        # With host networking the pod would otherwise resolve names with the node's resolv.conf only.
        "dnsPolicy": "ClusterFirstWithHostNet",
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 10,
    }
    if node is not None:
        spec["nodeSelector"] = {NODE_LABEL: node}
    spec["securityContext"] = security
    spec["containers"] = containers
    if volumes:
        spec["volumes"] = volumes
    return spec


def _pod_security(user: str) -> dict:
    """runAsUser/runAsGroup from a numeric `UID[:GID]`; a user name cannot be expressed and is left to the image."""
    security: dict = {}
    uid, _, gid = user.partition(":")
    if uid.isdigit():
        security["runAsUser"] = int(uid)
        security["runAsNonRoot"] = int(uid) != 0
        if gid.isdigit():
            security["runAsGroup"] = int(gid)
    security["seccompProfile"] = {"type": "RuntimeDefault"}
    return security


def _container_security(hardening: dict) -> dict:
    security: dict = {"allowPrivilegeEscalation": "no-new-privileges" not in hardening.get("security_opt", [])}
    if hardening.get("read_only"):
        security["readOnlyRootFilesystem"] = True
    if hardening.get("cap_drop"):
        security["capabilities"] = {"drop": list(hardening["cap_drop"])}
    return security


def _tmp_volumes(hardening: dict) -> list[tuple[str, dict]]:
    """Each tmpfs of the hardening as a memory-backed emptyDir (path, volume)."""
    out = []
    for index, (path, opts) in enumerate(sorted((hardening.get("tmpfs") or {}).items())):
        volume: dict = {"name": TMP_VOLUME if index == 0 else f"{TMP_VOLUME}{index}", "emptyDir": {"medium": "Memory"}}
        size = next((o.split("=", 1)[1] for o in (opts or "").split(",") if o.startswith("size=")), None)
        if size:
            volume["emptyDir"]["sizeLimit"] = k8s_quantity(size)
        out.append((path, volume))
    return out
