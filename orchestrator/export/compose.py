"""A compose file from a Plan: one service per IOC with host networking, plus the fleet's CA repeater.

Version-less compose spec (docker-compose >= 1.27 and `docker compose` v2 accept it). Pure: the same plan
and images give the same text, keys in a fixed order, so exports diff cleanly.
"""

from __future__ import annotations

from typing import Mapping

from orchestrator.plan.model import Plan, PlannedIOC
from orchestrator.export.common import ImageInfo, escape_dollars, header_lines, health_argv, image_of, labels_of, plan_hash, repeater_env, repeater_labels, repeater_name, restart_of, restarts_of, to_yaml, user_of, wants_repeater, REPEATER_ARGV

HEALTH_TIMING = {"interval": "10s", "timeout": "5s", "retries": 3, "start_period": "15s"}


def compose_dict(plan: Plan, fleet=None, images: ImageInfo | None = None, repeater: bool = True,
                 host: str | None = None) -> dict:
    """The compose file as plain data: `services` keyed by IOC name (plan order), repeater first.

    `fleet` (the FleetSpec) supplies each IOC's restart policy; `images` the image tags and hardening
    (default: orchestrator.images.build); `repeater=False` leaves the CA repeater to the host.
    """
    info = images or ImageInfo.from_images()
    restarts = restarts_of(fleet)
    services: dict[str, dict] = {}
    with_repeater = repeater and wants_repeater(plan)
    if with_repeater:
        services[repeater_name(plan)] = repeater_service(plan, info, host)
    for ioc in plan.iocs:
        services[ioc.name] = ioc_service(plan, ioc, info, restarts, host)
        if with_repeater:
            # R12: the repeater is up before any IOC (or its health check) registers with it.
            services[ioc.name]["depends_on"] = [repeater_name(plan)]
    from orchestrator.export import nameserver

    services.update(nameserver.compose_services(plan, info, host))  # strategy name-server (R15)
    return {"services": escape_dollars(services)}


def compose_yaml(plan: Plan, fleet=None, images: ImageInfo | None = None, repeater: bool = True) -> str:
    """The compose file as YAML text with a header naming the client settings."""
    return to_yaml(compose_dict(plan, fleet, images, repeater), header_lines(plan, "Compose file"))


def ioc_service(plan: Plan, ioc: PlannedIOC, info: ImageInfo, restarts: Mapping[str, str],
                host: str | None = None) -> dict:
    """One IOC as a compose service (unescaped: `compose_dict` escapes `$` for the whole file)."""
    image = image_of(ioc, info)
    restart = restart_of(ioc, restarts)
    service: dict = {"image": image}
    if ioc.command:
        service["command"] = list(ioc.command)
    service["user"] = user_of(ioc, info)
    service["network_mode"] = "host"
    service["environment"] = ioc.env_dict()
    service["labels"] = labels_of(plan, ioc, plan_hash(ioc, image), host)
    service["restart"] = restart
    service.update(hardening_keys(info.hardening_of(ioc.runtime)))
    if ioc.limits.memory:
        service["mem_limit"] = ioc.limits.memory
    if ioc.limits.pids:
        service["pids_limit"] = ioc.limits.pids
    probe = health_argv(ioc)
    if probe:
        service["healthcheck"] = {"test": ["CMD", *probe], **HEALTH_TIMING}
    service["stop_grace_period"] = "10s"
    return service


def repeater_service(plan: Plan, info: ImageInfo, host: str | None = None) -> dict:
    """caproto's repeater on the plan's repeater port, confined like a caproto IOC (R12)."""
    service = {
        "image": info.tag("caproto"),
        "entrypoint": list(REPEATER_ARGV),
        "user": f"{info.uid}:{info.uid}",
        "network_mode": "host",
        "environment": repeater_env(plan),
        "labels": repeater_labels(plan, host),
        # Exit 0 means another repeater already serves the host: nothing to restart.
        "restart": "on-failure",
    }
    service.update(hardening_keys(info.hardening_of("caproto")))
    service["stop_grace_period"] = "5s"
    return service


def hardening_keys(hardening: dict) -> dict:
    """`container_hardening` (docker SDK keywords) as compose keys, minus `user` (set from the IOC)."""
    out: dict = {}
    if hardening.get("read_only"):
        out["read_only"] = True
    tmpfs = hardening.get("tmpfs") or {}
    if tmpfs:
        out["tmpfs"] = [f"{path}:{opts}" if opts else path for path, opts in sorted(tmpfs.items())]
    if hardening.get("cap_drop"):
        out["cap_drop"] = list(hardening["cap_drop"])
    if hardening.get("security_opt"):
        out["security_opt"] = list(hardening["security_opt"])
    unknown = set(hardening) - {"user", "read_only", "tmpfs", "cap_drop", "security_opt"}
    if unknown:
        # Refuse rather than silently drop a confinement the images module asks for.
        raise ValueError(f"container_hardening has keys the compose export does not know: {sorted(unknown)}")
    return out
