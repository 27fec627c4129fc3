"""The fleet's name server (strategy name-server, R15) in the exports: what every format shares (its
service name, command, environment, labels); compose, swarm and k8s each build their service from these.

One name server per host plan, with host networking like the IOCs, on the caproto image; its names are
passed inline (IOCFLEET_NS_NAMES: the names file of the plan), so an export carries no host files:
change the fleet, export again, deploy again. A multi-host Kubernetes fleet gets one Deployment per node,
each knowing only its node's IOCs; clients list every node's name server (the ConfigMap).
"""

from __future__ import annotations

import json

from orchestrator.export.common import free_service_name, LABEL_FLEET, LABEL_HOST, LABEL_IOC, LABEL_PLAN, LABEL_ROLE, LABEL_RUNTIME
from orchestrator.plan.model import Plan
from orchestrator.plan.nameserver import INSTANCE

PROGRAM = "/opt/iocfleet/iocfleet_ioc/nameserver.py"  # where the caproto image has it


def service_name(plan: Plan) -> str:
    """The name server's service name, never the name of one of the fleet's IOCs or packs."""
    return free_service_name(plan, INSTANCE)


def argv(plan: Plan) -> list[str]:
    ns = plan.name_server
    return ["python3", PROGRAM, "--port", str(ns.port), "--bind", ns.bind]


def environment(plan: Plan) -> dict[str, str]:
    return {"IOCFLEET_NS_NAMES": json.dumps(plan.name_server.names_file(plan.fleet), separators=(",", ":"))}


def labels(plan: Plan, host: str | None = None) -> dict[str, str]:
    """The compose/swarm labels of the name server (the docker backend's keys)."""
    out = {LABEL_FLEET: plan.fleet, LABEL_IOC: INSTANCE, LABEL_PLAN: "nameserver", LABEL_ROLE: "nameserver",
           LABEL_RUNTIME: "caproto"}
    if host:
        out[LABEL_HOST] = host
    return out
