"""A compose file from a Plan: one service per IOC with host networking, plus the fleet's CA repeater.

Version-less compose spec (docker-compose >= 1.27 and `docker compose` v2 accept it). Pure: the same plan
and images give the same text, keys in a fixed order, so exports diff cleanly.
"""

from __future__ import annotations

from orchestrator.plan import identity
from orchestrator.plan.model import Plan, PlannedIOC
from orchestrator.export.common import ImageInfo, escape_dollars, header_lines, health_argv, image_of, labels_of, plan_hash, repeater_env, repeater_name, to_yaml, user_of, wants_repeater, REPEATER_ARGV

from orchestrator.export.common import HEALTH_INTERVAL_S, HEALTH_RETRIES, HEALTH_START_S, HEALTH_TIMEOUT_S

HEALTH_TIMING = {"interval": f"{HEALTH_INTERVAL_S}s", "timeout": f"{HEALTH_TIMEOUT_S}s", "retries": HEALTH_RETRIES,
                 "start_period": f"{HEALTH_START_S}s"}


def compose_dict(plan: Plan, fleet=None, images: ImageInfo | None = None, repeater: bool = True,
                 host: str | None = None, v1: bool = False) -> dict:
    """The compose file as plain data: the project `name`, `services` keyed by IOC name (plan order),
    repeater first.

    `fleet` is not needed (each planned IOC carries its restart policy; kept for callers); `images` the
    image tags and hardening (default: orchestrator.images.catalog); `repeater=False` leaves the CA repeater
    to the host; `host` labels every container with the host it is for (org.iocfleet.host). Every IOC
    service has the profiles `iocs` and its own name (`--profile iocs` starts all, `--profile NAME` one);
    the repeater has none (always on). `v1=True` leaves out `name:`, which docker-compose 1.x refuses.
    """
    info = images or ImageInfo.from_images()
    services: dict[str, dict] = {}
    with_repeater = repeater and wants_repeater(plan)
    if with_repeater:
        services[repeater_name(plan)] = repeater_service(plan, info, host)
    for ioc in plan.units():  # an IOC that runs alone, or one service per pack (issue 14)
        services[ioc.name] = ioc_service(plan, ioc, info, host)
        services[ioc.name]["profiles"] = [PROFILE_ALL, ioc.name] if ioc.name != PROFILE_ALL else [PROFILE_ALL]
        if with_repeater:
            # R12: the repeater is up before any IOC (or its health check) registers with it.
            services[ioc.name]["depends_on"] = [repeater_name(plan)]
    services.update(nameserver_services(plan, info, host))  # strategy name-server (R15)
    doc: dict = {} if v1 else {"name": project_name(plan.fleet)}
    doc["services"] = escape_dollars(services)
    return doc


def compose_yaml(plan: Plan, fleet=None, images: ImageInfo | None = None, repeater: bool = True,
                 host: str | None = None, v1: bool = False) -> str:
    """The compose file as YAML text with a header naming the client settings and how to start it; `host`
    labels every container with the host it is for (org.iocfleet.host), as the swarm and k8s exports do."""
    start = (f"# Start every IOC: docker compose --profile {PROFILE_ALL} up -d (one IOC: --profile NAME); "
             "plain `up` starts only services without a profile.\n")
    return to_yaml(compose_dict(plan, fleet, images, repeater, host, v1=v1), header_lines(plan, "Compose file") + start)


PROFILE_ALL = "iocs"
ON_FAILURE_RETRIES = 5  # the docker backend's MaximumRetryCount, so an export restarts as `up` does


def project_name(fleet: str) -> str:
    """The compose project name of a fleet: lowercase letters, digits, `-` and `_`, starting with a letter
    or digit (compose's rule)."""
    import re

    name = re.sub(r"[^a-z0-9_-]", "-", fleet.lower()).lstrip("-_")
    return name or "iocfleet"


def restart_value(policy: str) -> str:
    """`restart:` of a compose service: on-failure gets the same 5-retry cap as `iocfleet up`."""
    return f"on-failure:{ON_FAILURE_RETRIES}" if policy == "on-failure" else policy


def ioc_service(plan: Plan, ioc: PlannedIOC, info: ImageInfo, host: str | None = None) -> dict:
    """One IOC as a compose service (unescaped: `compose_dict` escapes `$` for the whole file)."""
    image = image_of(ioc, info)
    restart = ioc.restart
    service: dict = {"image": image}
    if ioc.command:
        service["command"] = list(ioc.command)
    service["user"] = user_of(ioc, info)
    service["network_mode"] = "host"
    service["environment"] = ioc.env_dict()
    service["labels"] = labels_of(plan, ioc, plan_hash(ioc, image), host)
    service["restart"] = restart_value(restart)
    from orchestrator.export.common import ioc_hardening

    service.update(hardening_keys(ioc_hardening(ioc, info)))
    if ioc.limits.memory:
        service["mem_limit"] = ioc.limits.memory
    if ioc.limits.pids:
        service["pids_limit"] = ioc.limits.pids
    probe = health_argv(ioc)
    if probe:
        service["healthcheck"] = {"test": ["CMD", *probe], **HEALTH_TIMING}
    if ioc.runtime == "softioc":  # the iocsh console, as `iocfleet up` starts it: `docker attach` reaches it
        service["stdin_open"] = True
        service["tty"] = True
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
        "labels": identity.repeater_labels(plan.fleet, host),
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


def nameserver_services(plan: Plan, info: ImageInfo, host: str | None = None) -> dict:
    """{name: service} of the fleet's name server (R15); empty unless the plan has one."""
    from orchestrator.export import nameserver

    if plan.name_server is None:
        return {}
    service = {"image": info.tag("caproto"), "entrypoint": nameserver.argv(plan), "user": f"{info.uid}:{info.uid}",
               "network_mode": "host", "environment": nameserver.environment(plan),
               "labels": nameserver.labels(plan, host), "restart": "always",
               **hardening_keys(info.hardening_of("caproto")), "stop_grace_period": "5s"}
    return {nameserver.service_name(plan): service}
