"""Plan a fleet that spans several hosts: one Plan per host, and client settings that reach them all.

Pure: a host declared with an `address` is planned on a HostSnapshot made from that address (one up,
broadcast-capable interface carrying the default route); IOCs on this machine (no `host`, or a host
declared without `address`) are planned together on the live snapshot the caller passes in.
"""

from __future__ import annotations

import dataclasses

from orchestrator.plan import planner
from orchestrator.errors import UsageError
from orchestrator.hostmodel import HostSnapshot, Interface, IPv4
from orchestrator.plan.model import Plan
from orchestrator.spec.model import FleetSpec, HostSpec

LOCAL = "local"
# The name a declared host's interface gets when the fleet says `interface: auto` (only the address
# matters to the plan; the name shows up in `--explain`).
AUTO_INTERFACE_NAME = "default"


def declared_snapshot(host: HostSpec) -> HostSnapshot:
    """The host as the fleet file declares it: one interface with its address, carrying the default route."""
    if not host.address:
        raise ValueError(f"host {host.name!r} has no address: plan it on a live snapshot")
    name = host.interface if host.interface != "auto" else AUTO_INTERFACE_NAME
    iface = Interface(name, True, False, True, True, 1500, (IPv4.from_cidr(host.address),))
    return HostSnapshot((iface,), name, ())


def host_groups(spec: FleetSpec, local_name: str = LOCAL) -> dict[str, tuple[HostSpec | None, tuple]]:
    """IOCs per host name, in the order hosts are declared; this machine's IOCs under one name.

    This machine is the one host declared without `address` (its name), else `local_name`.
    """
    local_hosts = [h for h in spec.hosts if not h.address]
    used_local = [h for h in local_hosts if any(i.host == h.name for i in spec.iocs)]
    if len(used_local) > 1:
        names = ", ".join(h.name for h in used_local)
        raise UsageError(f"hosts {names} have no address, so all of them are this machine",
                         where=f"{spec.source}:hosts", fix="give every remote host an `address` (CIDR)")
    local = used_local[0] if used_local else (local_hosts[0] if local_hosts else None)
    local_key = local.name if local else local_name
    local_iocs = tuple(i for i in spec.iocs if i.host is None or (local is not None and i.host == local.name))
    groups: dict[str, tuple[HostSpec | None, tuple]] = {}
    if local_iocs:
        groups[local_key] = (local, local_iocs)
    for host in spec.hosts:
        if host.address:
            iocs = tuple(i for i in spec.iocs if i.host == host.name)
            if iocs:
                groups[host.name] = (host, iocs)
    return groups


def plan_hosts(spec: FleetSpec, local_snapshot: HostSnapshot, local_name: str = LOCAL,
               strategy: str | None = None, interface: str | None = None,
               ioc_uid: int | None = None) -> dict[str, Plan]:
    """One Plan per host that runs IOCs, keyed by host name (this machine first, then declaration order).

    `strategy` applies to every host; `interface` overrides the interface of this machine only.
    """
    plans: dict[str, Plan] = {}
    for name, (host, iocs) in host_groups(spec, local_name).items():
        sub = dataclasses.replace(spec, iocs=iocs)
        if host is not None and host.address:
            snapshot, wanted = declared_snapshot(host), None
        else:
            snapshot, wanted = local_snapshot, interface
            if wanted is None and host is not None and host.interface != "auto":
                wanted = host.interface
        plans[name] = planner.plan(sub, snapshot, strategy=strategy, interface=wanted, ioc_uid=ioc_uid)
    return plans


def client_env(plans: dict[str, Plan]) -> tuple[tuple[str, str], ...]:
    """Client settings that reach every host: the address lists concatenated (duplicates dropped).

    Entries of distinct-ports hosts carry their port; the others use EPICS_CA_SERVER_PORT, which is
    the fleet's base port on every host.
    """
    entries: list[str] = []
    server_ports: list[str] = []
    name_servers: list[str] = []  # one per host under strategy name-server, each knowing its host's IOCs
    for plan in plans.values():
        env = plan.client_env_dict()
        for entry in env.get("EPICS_CA_ADDR_LIST", "").split():
            if entry not in entries:
                entries.append(entry)
        for entry in env.get("EPICS_CA_NAME_SERVERS", "").split():
            if entry not in name_servers:
                name_servers.append(entry)
        if "EPICS_CA_SERVER_PORT" in env and env["EPICS_CA_SERVER_PORT"] not in server_ports:
            server_ports.append(env["EPICS_CA_SERVER_PORT"])
    if len(server_ports) > 1:
        raise UsageError(f"hosts plan different server ports ({', '.join(server_ports)})",
                         fix="use one network.base_port for the fleet")
    out: tuple[tuple[str, str], ...] = (("EPICS_CA_AUTO_ADDR_LIST", "NO"), ("EPICS_CA_ADDR_LIST", " ".join(entries)))
    if server_ports:
        out += (("EPICS_CA_SERVER_PORT", server_ports[0]),)
    if name_servers:
        out += (("EPICS_CA_NAME_SERVERS", " ".join(name_servers)),)
    return out
