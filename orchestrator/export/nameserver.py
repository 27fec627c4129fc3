"""The fleet's name server (strategy name-server, R15) in the compose, swarm and Kubernetes exports.

One name server per host plan, with host networking like the IOCs, on the caproto image; its names are
passed inline (IOCFLEET_NS_NAMES: the names file of the plan), so an export carries no host files:
change the fleet, export again, deploy again. A multi-host Kubernetes fleet gets one Deployment per node,
each knowing only its node's IOCs; clients list every node's name server (the ConfigMap).
"""

from __future__ import annotations

import json

from orchestrator.plan.model import Plan
from orchestrator.plan.nameserver import INSTANCE

PROGRAM = "/opt/iocfleet/iocfleet_ioc/nameserver.py"  # where the caproto image has it


def service_name(plan: Plan) -> str:
    """The name server's service name, never the name of one of the fleet's IOCs."""
    taken = {i.name for i in plan.iocs}
    name = INSTANCE
    while name in taken:
        name = "iocfleet-" + name
    return name


def argv(plan: Plan) -> list[str]:
    ns = plan.name_server
    return ["python3", PROGRAM, "--port", str(ns.port), "--bind", ns.bind]


def environment(plan: Plan) -> dict[str, str]:
    return {"IOCFLEET_NS_NAMES": json.dumps(plan.name_server.names_file(plan.fleet), separators=(",", ":"))}


def labels(plan: Plan, host: str | None = None) -> dict[str, str]:
    from orchestrator.export.common import LABEL_FLEET, LABEL_HOST, LABEL_IOC, LABEL_PLAN, LABEL_ROLE, LABEL_RUNTIME

    out = {LABEL_FLEET: plan.fleet, LABEL_IOC: INSTANCE, LABEL_PLAN: "nameserver", LABEL_ROLE: "nameserver",
           LABEL_RUNTIME: "caproto"}
    if host:
        out[LABEL_HOST] = host
    return out


def compose_services(plan: Plan, info, host: str | None = None) -> dict:
    """{name: service} for a compose file; empty unless the plan has a name server."""
    if plan.name_server is None:
        return {}
    from orchestrator.export.compose import hardening_keys

    service = {"image": info.tag("caproto"), "entrypoint": argv(plan), "user": f"{info.uid}:{info.uid}",
               "network_mode": "host", "environment": environment(plan), "labels": labels(plan, host),
               "restart": "always", **hardening_keys(info.hardening_of("caproto")), "stop_grace_period": "5s"}
    return {service_name(plan): service}


def swarm_services(plan: Plan, info, node: str | None = None) -> dict:
    if plan.name_server is None:
        return {}
    from orchestrator.export.swarm import HOST_NETWORK, _deploy, _hardening

    lab = labels(plan, node)
    service = {"image": info.tag("caproto"), "entrypoint": argv(plan), "user": f"{info.uid}:{info.uid}",
               "environment": environment(plan), "labels": dict(lab), "networks": [HOST_NETWORK],
               **_hardening(info.hardening_of("caproto")), "stop_grace_period": "5s",
               "deploy": _deploy(lab, "any", node, {})}
    return {service_name(plan): service}


def k8s_deployment(plan: Plan, node: str, info, namespace: str | None = None) -> dict:
    """The name server of one node's plan as a Deployment pinned to that node, host network."""
    from orchestrator.export.k8s import (_container_security, _escape, _metadata, _pod_security, _pod_spec,
                                         _tmp_volumes, label_value, object_name)
    from orchestrator.export.common import LABEL_FLEET, LABEL_HOST, LABEL_ROLE

    selector = {LABEL_FLEET: label_value(plan.fleet), LABEL_ROLE: "nameserver", LABEL_HOST: label_value(node)}
    hardening = info.hardening_of("caproto")
    volumes = _tmp_volumes(hardening)
    container = {"name": "ca-nameserver", "image": info.tag("caproto"), "imagePullPolicy": "IfNotPresent",
                 "command": argv(plan),
                 "env": [{"name": k, "value": _escape(v)} for k, v in environment(plan).items()],
                 "securityContext": _container_security(hardening)}
    if volumes:
        container["volumeMounts"] = [{"name": v["name"], "mountPath": path} for path, v in volumes]
    pod_spec = _pod_spec(node, _pod_security(f"{info.uid}:{info.uid}"), [container], [v for _, v in volumes])
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": _metadata(object_name(plan.fleet, node, "ca-nameserver"), selector, {}, namespace),
            "spec": {"replicas": 1, "strategy": {"type": "Recreate"}, "selector": {"matchLabels": selector},
                     "template": {"metadata": {"labels": selector}, "spec": pod_spec}}}
