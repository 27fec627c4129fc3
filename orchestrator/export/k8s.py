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

from orchestrator.plan import multihost
from orchestrator.plan.model import Plan, PlannedIOC
from orchestrator.export.common import ImageInfo, health_argv, image_of, k8s_quantity, plan_hash, repeater_env, to_yaml_documents, user_of, wants_repeater, REPEATER_ARGV

NODE_LABEL = "kubernetes.io/hostname"
# Kubernetes keys: the recommended app.kubernetes.io/* labels, and iocfleet's own under its domain prefix
# (docker and compose keep the reverse-DNS `org.iocfleet.*` keys Docker recommends).
DOMAIN = "iocfleet.org"
LABEL_FLEET = f"{DOMAIN}/fleet"
LABEL_IOC = f"{DOMAIN}/ioc"
LABEL_PLAN = f"{DOMAIN}/plan"
LABEL_ROLE = f"{DOMAIN}/role"
LABEL_RUNTIME = f"{DOMAIN}/runtime"
LABEL_HOST = f"{DOMAIN}/host"
RESTART_ANNOTATION = f"{DOMAIN}/restart"
NOTE_ANNOTATION = f"{DOMAIN}/note"
APP = "app.kubernetes.io"
FLAVORS = ("plain", "ec")
TMP_VOLUME = "tmp"
PROBE_TIMING = {"initialDelaySeconds": 5, "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3}
LIVENESS_TIMING = {"initialDelaySeconds": 15, "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3}
_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def manifests(plans: Mapping[str, Plan], fleet=None, images: ImageInfo | None = None, repeater: bool = True,
              namespace: str | None = None, client_env: tuple[tuple[str, str], ...] | None = None,
              flavor: str = "plain", stopped: tuple[str, ...] | frozenset[str] = ()) -> list[dict]:
    """Every manifest of the fleet: client ConfigMap, repeater DaemonSet, then one workload per IOC.

    `plans` maps node name (kubernetes.io/hostname) to the Plan made for that host, as
    `multihost.plan_hosts` returns it; a single-host fleet is `{node: plan}`. `flavor` "plain" makes a
    Deployment per IOC; "ec" a StatefulSet shaped like epics-containers' ioc-instance chart (replicas 1,
    or 0 for the IOCs in `stopped`; stdin and tty for `kubectl attach`; IOC_NAME/IOC_PREFIX env).
    """
    if not plans:
        return []
    if flavor not in FLAVORS:
        from orchestrator.errors import UsageError

        raise UsageError(f"unknown k8s flavor {flavor!r}", "--flavor", f"use one of: {', '.join(FLAVORS)}")
    info = images or ImageInfo.from_images()
    first = next(iter(plans.values()))
    names = {i.name for p in plans.values() for i in p.units()}
    unknown = sorted(set(stopped) - names)
    if unknown:
        from orchestrator.errors import UsageError

        raise UsageError(f"--stopped names no IOC of the fleet: {', '.join(unknown)}", "--stopped",
                         f"use IOC names: {', '.join(sorted(names))}")
    if client_env is None:
        client_env = multihost.client_env(dict(plans))
    docs = [client_config_map(first.fleet, client_env, namespace)]
    repeater_nodes = [node for node, plan in plans.items() if wants_repeater(plan)]
    if repeater and repeater_nodes:
        docs.append(repeater_daemon_set(first, repeater_nodes, info, namespace))
    for node, plan in plans.items():
        for ioc in plan.units():  # one workload per pack (issue 14)
            if flavor == "ec":
                docs.append(ioc_stateful_set(plan, ioc, node, info, namespace, ioc.name not in stopped))
            else:
                docs.append(ioc_deployment(plan, ioc, node, info, namespace))
    docs += [nameserver_deployment(plan, node, info, namespace) for node, plan in plans.items()
             if plan.name_server is not None]  # strategy name-server (R15): one per node, its IOCs only
    return docs


def manifests_yaml(plans: Mapping[str, Plan], fleet=None, images: ImageInfo | None = None, repeater: bool = True,
                   namespace: str | None = None, flavor: str = "plain", stopped: tuple[str, ...] = ()) -> str:
    """The manifests as one multi-document YAML text for `kubectl apply -f`."""
    docs = manifests(plans, fleet, images, repeater, namespace, flavor=flavor, stopped=stopped)
    first = next(iter(plans.values()))
    header = (f"# Kubernetes manifests exported by iocfleet from the plans of fleet {first.fleet!r} "
              f"on node(s) {', '.join(plans)}.\n")
    return to_yaml_documents(docs, header)


def recommended_labels(name: str, instance: str, component: str, fleet: str) -> dict[str, str]:
    """Kubernetes' recommended labels: what (name), which one (instance), its role (component), the
    application it belongs to (part-of: the fleet) and the tool that manages it."""
    return {f"{APP}/name": label_value(name), f"{APP}/instance": label_value(instance),
            f"{APP}/component": component, f"{APP}/part-of": label_value(fleet), f"{APP}/managed-by": "iocfleet"}


def _ioc_pod(plan: Plan, ioc: PlannedIOC, node: str, info: ImageInfo, kind: str):
    """(selector, labels, annotations, pod spec, container) of one IOC's pod."""
    image = image_of(ioc, info)
    restart = ioc.restart
    digest = plan_hash(ioc, image)
    selector = {LABEL_FLEET: label_value(plan.fleet), LABEL_IOC: label_value(ioc.name)}
    labels = {**recommended_labels(ioc.declared_as, object_name(plan.fleet, ioc.name), "ioc", plan.fleet),
              **selector, LABEL_HOST: label_value(node), LABEL_PLAN: digest, LABEL_ROLE: "ioc",
              LABEL_RUNTIME: ioc.runtime}
    annotations = {RESTART_ANNOTATION: restart}
    if restart != "always":
        # Kubernetes always restarts the pod of a Deployment or StatefulSet (with back-off, no retry cap);
        # the fleet file's policy is kept for the record.
        annotations[NOTE_ANNOTATION] = f"restart {restart!r} is not expressible in a {kind} (always restarts)"
    container: dict = {"name": "ioc", "image": image, "imagePullPolicy": "IfNotPresent"}
    if ioc.command:
        container["args"] = [_escape(a) for a in ioc.command]  # compose `command` = Kubernetes `args`
    container["env"] = [{"name": k, "value": _escape(v)} for k, v in ioc.env]
    from orchestrator.export.common import ioc_hardening

    hardening = ioc_hardening(ioc, info)
    container["securityContext"] = _container_security(hardening)
    if ioc.limits.memory:
        container["resources"] = {"limits": {"memory": k8s_quantity(ioc.limits.memory)}}
    probe = health_argv(ioc)
    if probe:
        container["readinessProbe"] = {"exec": {"command": probe}, **PROBE_TIMING}
        # Liveness reads the same PV (iocStats UPTIME); a hung IOC is restarted, like the engine's healthcheck.
        container["livenessProbe"] = {"exec": {"command": probe}, **LIVENESS_TIMING}
    volumes = _tmp_volumes(hardening)
    if volumes:
        container["volumeMounts"] = [{"name": v["name"], "mountPath": path} for path, v in volumes]
    pod_spec = _pod_spec(node, _pod_security(user_of(ioc, info)), [container], [v for _, v in volumes])
    return selector, labels, annotations, pod_spec, container


def ioc_deployment(plan: Plan, ioc: PlannedIOC, node: str, info: ImageInfo,
                   namespace: str | None = None) -> dict:
    selector, labels, annotations, pod_spec, _ = _ioc_pod(plan, ioc, node, info, "Deployment")
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


def ioc_stateful_set(plan: Plan, ioc: PlannedIOC, node: str, info: ImageInfo,
                     namespace: str | None = None, enabled: bool = True) -> dict:
    """One IOC as epics-containers' ioc-instance chart deploys it: a StatefulSet of one pod (0 when
    stopped), labels app/ioc/enabled/location/domain, stdin+tty (`kubectl attach -it` reaches the IOC's
    shell), IOC_NAME/IOC_PREFIX/IOC_LOCATION/IOC_DOMAIN/IOCSH_PS1 in the environment, liveness on UPTIME."""
    selector, labels, annotations, pod_spec, container = _ioc_pod(plan, ioc, node, info, "StatefulSet")
    name = object_name(plan.fleet, ioc.name)
    ec = {"app": name, "ioc": "true", "enabled": "true" if enabled else "false", "location": label_value(node),
          "domain": label_value(plan.fleet)}
    labels = {**ec, **labels}
    container["name"] = name
    container["stdin"] = True
    container["tty"] = True
    planned = {e["name"] for e in container["env"]}
    extra = {"IOCSH_PS1": f"{ioc.name} > ", "IOC_NAME": ioc.name, "IOC_PREFIX": ioc.iocstats or ioc.prefix,
             "IOC_LOCATION": node, "IOC_DOMAIN": plan.fleet, "TERM": "xterm-256color"}
    container["env"] += [{"name": k, "value": _escape(v)} for k, v in extra.items() if k not in planned]
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _metadata(name, labels, annotations, namespace),
        "spec": {
            "replicas": 1 if enabled else 0,
            "podManagementPolicy": "Parallel",  # as the chart: roll out even from a failing pod
            "serviceName": name,
            "selector": {"matchLabels": {**selector, "app": name}},
            "template": {"metadata": {"labels": labels, "annotations": annotations}, "spec": pod_spec},
        },
    }


def repeater_daemon_set(plan: Plan, nodes: list[str], info: ImageInfo, namespace: str | None = None) -> dict:
    """caproto's repeater on every node of the fleet (R12), on the plan's repeater port."""
    selector = {LABEL_FLEET: label_value(plan.fleet), LABEL_ROLE: "repeater"}
    labels = {**recommended_labels("ca-repeater", object_name(plan.fleet, "ca-repeater"), "ca-repeater", plan.fleet),
              **selector}
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
        "metadata": _metadata(object_name(plan.fleet, "ca-repeater"), labels, {}, namespace),
        "spec": {"selector": {"matchLabels": selector},
                 "template": {"metadata": {"labels": labels}, "spec": pod_spec}},
    }


def client_config_map(fleet: str, client_env, namespace: str | None = None) -> dict:
    """The client settings as a ConfigMap: `envFrom: [{configMapRef: {name: ...}}]` in a client pod."""
    labels = {**recommended_labels("ca-client", object_name(fleet, "ca-client"), "ca-client", fleet),
              LABEL_FLEET: label_value(fleet), LABEL_ROLE: "ca-client"}
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


def nameserver_deployment(plan: Plan, node: str, info: ImageInfo, namespace: str | None = None) -> dict:
    """The name server of one node's plan (R15) as a Deployment pinned to that node, host network."""
    from orchestrator.export import nameserver

    selector = {LABEL_FLEET: label_value(plan.fleet), LABEL_ROLE: "nameserver", LABEL_HOST: label_value(node)}
    labels = {**recommended_labels("ca-nameserver", object_name(plan.fleet, node, "ca-nameserver"), "ca-nameserver",
                                   plan.fleet), **selector}
    hardening = info.hardening_of("caproto")
    volumes = _tmp_volumes(hardening)
    container = {"name": "ca-nameserver", "image": info.tag("caproto"), "imagePullPolicy": "IfNotPresent",
                 "command": nameserver.argv(plan),
                 "env": [{"name": k, "value": _escape(v)} for k, v in nameserver.environment(plan).items()],
                 "securityContext": _container_security(hardening)}
    if volumes:
        container["volumeMounts"] = [{"name": v["name"], "mountPath": path} for path, v in volumes]
    pod_spec = _pod_spec(node, _pod_security(f"{info.uid}:{info.uid}"), [container], [v for _, v in volumes])
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": _metadata(object_name(plan.fleet, node, "ca-nameserver"), labels, {}, namespace),
            "spec": {"replicas": 1, "strategy": {"type": "Recreate"}, "selector": {"matchLabels": selector},
                     "template": {"metadata": {"labels": labels}, "spec": pod_spec}}}
