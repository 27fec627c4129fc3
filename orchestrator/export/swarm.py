"""A Docker Swarm stack file from a Plan: one replicated service per IOC on the engine's `host` network.

Swarm services cannot use `network_mode: host`; they join the predefined `host` network instead, which
gives the same sharing of ports and broadcasts (R16). What swarm ignores (`security_opt`, `depends_on`,
`restart`) is expressed the swarm way or left out; docs/export.md lists the differences.
"""

from __future__ import annotations

from orchestrator.plan import identity
from orchestrator.plan.model import Plan, PlannedIOC
from orchestrator.export.common import ImageInfo, escape_dollars, header_lines, health_argv, image_of, labels_of, plan_hash, repeater_env, repeater_name, to_yaml, user_of, wants_repeater, REPEATER_ARGV
from orchestrator.export.compose import HEALTH_TIMING, ON_FAILURE_RETRIES

STACK_VERSION = "3.8"  # `docker stack deploy` (engine 20.10) needs an explicit 3.x version
HOST_NETWORK = "hostnet"
RESTART_CONDITIONS = {"no": "none", "on-failure": "on-failure", "always": "any"}


def stack_dict(plan: Plan, fleet=None, images: ImageInfo | None = None, repeater: bool = True,
               node: str | None = None) -> dict:
    """The stack file as plain data; `node` pins every service to that swarm node's hostname."""
    info = images or ImageInfo.from_images()
    services: dict[str, dict] = {}
    if repeater and wants_repeater(plan):
        services[repeater_name(plan)] = repeater_service(plan, info, node)
    for ioc in plan.units():  # an IOC that runs alone, or one service per pack (issue 14)
        services[ioc.name] = ioc_service(plan, ioc, info, node)
    services.update(nameserver_services(plan, info, node))  # strategy name-server (R15)
    return {
        "version": STACK_VERSION,
        "services": escape_dollars(services),
        "networks": {HOST_NETWORK: {"external": True, "name": "host"}},
    }


def stack_yaml(plan: Plan, fleet=None, images: ImageInfo | None = None, repeater: bool = True,
               node: str | None = None) -> str:
    """The stack file as YAML text for `docker stack deploy -c FILE NAME`."""
    return to_yaml(stack_dict(plan, fleet, images, repeater, node), header_lines(plan, "Swarm stack"))


def ioc_service(plan: Plan, ioc: PlannedIOC, info: ImageInfo, node: str | None = None) -> dict:
    image = image_of(ioc, info)
    restart = ioc.restart
    labels = labels_of(plan, ioc, plan_hash(ioc, image), node)
    service: dict = {"image": image}
    if ioc.command:
        service["command"] = list(ioc.command)
    service["user"] = user_of(ioc, info)
    service["environment"] = ioc.env_dict()
    service["labels"] = dict(labels)  # container labels: what `down` and tests find containers by
    service["networks"] = [HOST_NETWORK]
    from orchestrator.export.common import ioc_hardening

    service.update(_hardening(ioc_hardening(ioc, info)))
    probe = health_argv(ioc)
    if probe:
        service["healthcheck"] = {"test": ["CMD", *probe], **HEALTH_TIMING}
    if ioc.runtime == "softioc":  # the iocsh console, as `iocfleet up` starts it
        service["stdin_open"] = True
        service["tty"] = True
    service["stop_grace_period"] = "10s"
    limits: dict = {}
    if ioc.limits.memory:
        limits["memory"] = ioc.limits.memory
    # No pids limit: the stack schema of engine 20.10 refuses `deploy.resources.limits.pids`.
    service["deploy"] = _deploy(labels, RESTART_CONDITIONS[restart], node, limits)
    if restart == "on-failure":
        # the 5-retry cap of `iocfleet up` (docker's MaximumRetryCount) and the compose export
        service["deploy"]["restart_policy"]["max_attempts"] = ON_FAILURE_RETRIES
    return service


def repeater_service(plan: Plan, info: ImageInfo, node: str | None = None) -> dict:
    """caproto's repeater, one per node (`mode: global`), on the plan's repeater port (R12)."""
    labels = identity.repeater_labels(plan.fleet, node)
    service = {
        "image": info.tag("caproto"),
        "entrypoint": list(REPEATER_ARGV),
        "user": f"{info.uid}:{info.uid}",
        "environment": repeater_env(plan),
        "labels": dict(labels),
        "networks": [HOST_NETWORK],
        **_hardening(info.hardening_of("caproto")),
        "stop_grace_period": "5s",
    }
    deploy = _deploy(labels, "on-failure", node, {})
    deploy["mode"] = "global"
    del deploy["replicas"]
    service["deploy"] = deploy
    return service


def _deploy(labels: dict, condition: str, node: str | None, limits: dict) -> dict:
    deploy: dict = {"mode": "replicated", "replicas": 1, "labels": dict(labels)}
    # Stop the old task before starting the new one: both would want the IOC's port.
    deploy["update_config"] = {"order": "stop-first", "parallelism": 1}
    deploy["restart_policy"] = {"condition": condition, "delay": "5s"}
    if node:
        deploy["placement"] = {"constraints": [f"node.hostname == {node}"]}
    if limits:
        deploy["resources"] = {"limits": limits}
    return deploy


def _hardening(hardening: dict) -> dict:
    """Compose hardening as swarm supports it: tmpfs as a mount, no security_opt (swarm ignores it)."""
    out: dict = {}
    if hardening.get("read_only"):
        out["read_only"] = True
    if hardening.get("cap_drop"):
        out["cap_drop"] = list(hardening["cap_drop"])
    mounts = []
    for path, opts in sorted((hardening.get("tmpfs") or {}).items()):
        mount: dict = {"type": "tmpfs", "target": path}
        size = _tmpfs_size(opts)
        if size:
            mount["tmpfs"] = {"size": size}
        mounts.append(mount)
    if mounts:
        out["volumes"] = mounts
    return out


def _tmpfs_size(opts: str) -> int | None:
    """Bytes of a `size=16m` tmpfs option (swarm's tmpfs mount takes a number)."""
    for opt in (opts or "").split(","):
        key, _, value = opt.partition("=")
        if key == "size" and value:
            units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
            if value[-1].lower() in units:
                return int(value[:-1]) * units[value[-1].lower()]
            return int(value)
    return None


def nameserver_services(plan: Plan, info: ImageInfo, node: str | None = None) -> dict:
    """{name: service} of the fleet's name server (R15) on `node`; empty unless the plan has one."""
    from orchestrator.export import nameserver

    if plan.name_server is None:
        return {}
    lab = nameserver.labels(plan, node)
    service = {"image": info.tag("caproto"), "entrypoint": nameserver.argv(plan), "user": f"{info.uid}:{info.uid}",
               "environment": nameserver.environment(plan), "labels": dict(lab), "networks": [HOST_NETWORK],
               **_hardening(info.hardening_of("caproto")), "stop_grace_period": "5s",
               "deploy": _deploy(lab, "any", node, {})}
    return {nameserver.service_name(plan): service}
