"""Check a plan against the rules and the host: every problem as a Finding with a stable code and a fix.

Pure: `check(plan, snapshot)` reads plain data only. Codes are listed in docs/findings.md and never renamed.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict

from orchestrator.hostmodel import CA_REPEATER_PORT, HostSnapshot
from orchestrator.findings import ERROR, INFO, WARNING, Finding, by_severity, has_errors
from orchestrator.plan.model import Plan

__all__ = ["check", "client_entries", "has_errors"]


def check(plan: Plan, snapshot: HostSnapshot, own_pids: frozenset[int] = frozenset()) -> list[Finding]:
    """Every finding for `plan` on `snapshot`, errors first. `own_pids` are the fleet's own IOC processes."""
    findings = [
        *_interface(plan, snapshot),
        *_duplicate_pvs(plan),
        *_ports_in_range(plan),
        *_repeater_port(plan),
        *_loopback_binds(plan),
        *_unicast_to_shared_port(plan),
        *_tcp_clashes(plan, snapshot, own_pids),
        *_udp_holders(plan, snapshot, own_pids),
        *_uids(plan),
        *_repeater(plan, snapshot),
        *_name_server(plan, snapshot, own_pids),
        *_fanout(plan),
    ]
    return by_severity(findings)


def _interface(plan: Plan, snapshot: HostSnapshot) -> list[Finding]:
    name = plan.interface
    iface = snapshot.interface(name) if name else None
    known = ", ".join(i.name for i in snapshot.interfaces)
    if iface is None:
        return [Finding("interface-missing", ERROR, f"interface {name!r} does not exist on this host",
                        f"use one of: {known} (see `iocfleet interfaces`)", "R16", (str(name),))]
    out = []
    if not iface.up:
        out.append(Finding("interface-down", ERROR, f"interface {name} is down",
                           f"bring it up (ip link set {name} up) or choose another interface", "R4", (name,)))
    if not iface.ipv4:
        out.append(Finding("interface-missing", ERROR, f"interface {name} has no IPv4 address",
                           f"add an address (ip addr add ... dev {name}) or choose another interface", "R5", (name,)))
    if iface.loopback and plan.clients in ("subnet", "routed"):
        out.append(Finding("loopback-remote-clients", ERROR,
                           f"clients are `{plan.clients}`, but interface {name} is loopback: no other host can reach it",
                           "serve on a network interface (--interface NAME), or set network.clients: same-host",
                           "R7", (name,)))
    if plan.strategy == "shared-port" and not iface.loopback and plan.broadcast is None and len(plan.iocs) > 1:
        addr = next((a for a in iface.ipv4 if a.address == plan.address), None)
        cidr = f"{addr.address}/{addr.prefixlen}" if addr else "ADDR/LEN"
        kind = (f"point-to-point (peer {addr.peer})" if addr and addr.peer else
                f"a /{addr.prefixlen}" if addr and addr.prefixlen >= 31 else "added without brd")
        out.append(Finding("interface-no-broadcast", ERROR,
                           f"{len(plan.iocs)} IOCs share UDP {plan.iocs[0].udp_port}, but address {cidr} of "
                           f"interface {name} has no broadcast ({kind}): clients could only search it by unicast, "
                           "which reaches one IOC per client source port",
                           f"use --strategy distinct-ports, or give the address a broadcast: ip addr del {cidr} "
                           f"dev {name} && ip addr add {cidr} brd + dev {name}", "R4", (name,)))
    return out


def _duplicate_pvs(plan: Plan) -> list[Finding]:
    owners: dict[str, list[str]] = defaultdict(list)
    main: set[str] = set()  # declared, old standard and iocStats HEARTBEAT/UPTIME names
    for ioc in plan.iocs:
        main.update(ioc.pv_names)
        for pv in ioc.all_pv_names():
            owners[pv].append(ioc.name)
    # Two IOCs with one iocStats name clash on all ~40 iocStats PVs: report HEARTBEAT and UPTIME (in
    # `main`), not every other iocStats PV of the same IOCs again.
    reported = {tuple(iocs) for pv, iocs in owners.items() if pv in main and len(iocs) > 1}
    out = []
    for pv, iocs in owners.items():
        if len(iocs) > 1 and len(set(iocs)) == 1:  # a .db record that is also a declared PV, or in two .db files
            out.append(Finding("duplicate-pv", ERROR, f"PV {pv} is defined {len(iocs)} times in IOC {iocs[0]} "
                               "(its declared pvs, .db records or group PVs)",
                               "keep one definition: remove the declared PV or rename the record", "R14", (iocs[0],)))
        elif len(iocs) > 1 and (pv in main or tuple(iocs) not in reported):
            out.append(Finding("duplicate-pv", ERROR, f"PV {pv} is served by {len(iocs)} IOCs: {', '.join(iocs)}",
                               "give each IOC a unique prefix; clients connect to whichever answers first",
                               "R14", tuple(iocs)))
    return out


def _ports_in_range(plan: Plan) -> list[Finding]:
    bad = [i for i in plan.iocs if not 1 <= i.udp_port <= 65535]
    if not bad:
        return []
    return [Finding("port-out-of-range", ERROR,
                    f"{len(bad)} IOC(s) would get ports above 65535 (first: {bad[0].name} on {bad[0].udp_port})",
                    "lower network.base_port or the number of IOCs", "R9", tuple(i.name for i in bad))]


def _repeater_port(plan: Plan) -> list[Finding]:
    """An IOC planned on the CA repeater's UDP port (5065): the repeater and the IOC would share it."""
    bad = [i.name for i in plan.iocs if i.udp_port == CA_REPEATER_PORT or i.tcp_port == CA_REPEATER_PORT]
    if not bad:
        return []
    return [Finding("port-is-repeater", ERROR,
                    f"{len(bad)} IOC(s) would serve on port {CA_REPEATER_PORT}, the CA repeater's (first: {bad[0]})",
                    f"choose network.base_port so no IOC gets {CA_REPEATER_PORT} (e.g. 5064 with shared-port, "
                    f"or a base above {CA_REPEATER_PORT} for distinct-ports)", "R12", tuple(bad))]


def _by_udp_endpoint(plan: Plan) -> dict[tuple[str, int], list[str]]:
    groups: dict[tuple[str, int], list[str]] = defaultdict(list)
    for ioc in plan.iocs:
        for address in ioc.bind:
            groups[(address, ioc.udp_port)].append(ioc.name)
    return groups


def _loopback_binds(plan: Plan) -> list[Finding]:
    out = []
    for (address, port), iocs in _by_udp_endpoint(plan).items():
        if len(iocs) > 1 and ipaddress.IPv4Address(address).is_loopback:
            out.append(Finding("loopback-bind-multi-ioc", ERROR,
                               f"{len(iocs)} IOCs bind {address}:{port}; loopback cannot be broadcast to, so each "
                               "search reaches one of them",
                               "use --strategy shared-port (bind 0.0.0.0, clients 127.255.255.255) or distinct-ports",
                               "R7", tuple(iocs)))
    return out


def _unicast_to_shared_port(plan: Plan) -> list[Finding]:
    """A unicast address-list entry in front of a port that several IOCs share (R3, R13).

    Indexed by port, so it is linear in IOCs and entries (a distinct-ports fleet has one entry per IOC;
    comparing every entry with every endpoint was quadratic: 58 s for 400x256 IOCs, issue 13 class 13).
    """
    by_port: dict[int, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for (addr, port), names in _by_udp_endpoint(plan).items():
        by_port[port][addr].update(names)
    out = []
    for host, port in client_entries(plan):
        try:
            ip = ipaddress.IPv4Address(host)
        except ValueError:
            continue
        if str(ip) in (plan.broadcast, "255.255.255.255") or port not in by_port:
            continue
        sharing = sorted(by_port[port].get(host, set()) | by_port[port].get("0.0.0.0", set()))
        if len(sharing) > 1:
            out.append(Finding("unicast-addr-list-multi-ioc", ERROR,
                               f"EPICS_CA_ADDR_LIST entry {host}:{port} is a unicast address where {len(sharing)} "
                               f"IOCs share UDP {port}; each search reaches one of them",
                               f"use the broadcast {plan.broadcast or 'address'} or --strategy distinct-ports",
                               "R3", tuple(sharing)))
    return out


def client_entries(plan: Plan) -> list[tuple[str, int]]:
    """The plan's client address list as (host, port) pairs.

    Lenient on purpose (unlike ca.env, which judges a user's settings): a plan with ports past 65535 must
    still be checked, so `port-out-of-range` can say so.
    """
    env = plan.client_env_dict()
    default_port = int(env.get("EPICS_CA_SERVER_PORT", "5064"))
    out = []
    for entry in env.get("EPICS_CA_ADDR_LIST", "").split():
        host, _, port = entry.partition(":")
        out.append((host, int(port) if port.isascii() and port.isdigit() and len(port) <= 6 else default_port))
    return out


def _tcp_clashes(plan: Plan, snapshot: HostSnapshot, own_pids: frozenset[int]) -> list[Finding]:
    by_port: dict[int, list[str]] = defaultdict(list)
    for ioc in plan.iocs:
        if ioc.tcp_port is not None:
            by_port[ioc.tcp_port].append(ioc.name)
    out = []
    for port, iocs in by_port.items():
        if len(iocs) > 1:
            out.append(Finding("tcp-port-clash", ERROR, f"{len(iocs)} IOCs are planned on TCP {port}: {', '.join(iocs)}",
                               "use --strategy distinct-ports or shared-port", "R9", tuple(iocs)))
        for holder in snapshot.holders("tcp", port):
            if holder.pid not in own_pids:
                out.append(Finding("tcp-port-clash", ERROR,
                                   f"TCP {port} planned for {', '.join(iocs)} is held by pid {holder.pid} "
                                   f"({holder.process or 'unknown'})",
                                   "stop that process or change network.base_port", "R9", (str(holder.pid),)))
    return out


def _udp_holders(plan: Plan, snapshot: HostSnapshot, own_pids: frozenset[int]) -> list[Finding]:
    out = []
    for port in sorted({i.udp_port for i in plan.iocs}):
        for holder in snapshot.holders("udp", port):
            if holder.pid in own_pids:
                continue
            who = f"pid {holder.pid} ({holder.process or 'unknown'}, uid {holder.uid})"
            if holder.reuse_ok is False:
                out.append(Finding("port-held-without-reuse", ERROR,
                                   f"UDP {holder.address}:{port} is held by {who} and a reuse bind next to it fails",
                                   "stop that process, or run it with SO_REUSEADDR|SO_REUSEPORT as the IOCs' user",
                                   "R1", (str(holder.pid),)))
            elif plan.ioc_uid is not None and holder.uid is not None and holder.uid != plan.ioc_uid:
                out.append(Finding("reuseport-uid-mismatch", WARNING,
                                   f"UDP {holder.address}:{port} is shared by {who}, but the IOCs run as uid "
                                   f"{plan.ioc_uid}; the kernel only groups sockets of one uid",
                                   "run everything that shares the port as one user", "R2", (str(holder.pid),)))
    return out


def _uids(plan: Plan) -> list[Finding]:
    if plan.strategy != "shared-port":
        return []
    users = defaultdict(list)
    for ioc in plan.iocs:
        users[ioc.user or "fleet default"].append(ioc.name)
    if len(users) < 2:
        return []
    listing = "; ".join(f"{u}: {', '.join(n)}" for u, n in users.items())
    return [Finding("reuseport-uid-mismatch", ERROR,
                    f"IOCs sharing UDP {plan.iocs[0].udp_port} run as different users ({listing})",
                    "give every IOC the same `user` (SO_REUSEPORT groups need one uid)", "R2",
                    tuple(n for names in users.values() for n in names))]


def _repeater(plan: Plan, snapshot: HostSnapshot) -> list[Finding]:
    if snapshot.holders("udp", CA_REPEATER_PORT):
        return []
    return [Finding("repeater-missing", INFO, f"no CA repeater holds UDP {CA_REPEATER_PORT} on this host yet",
                    "nothing to do: the fleet starts one (R12)", "R12")]


def _name_server(plan: Plan, snapshot: HostSnapshot, own_pids: frozenset[int]) -> list[Finding]:
    from orchestrator.plan import nameserver

    return nameserver.check(plan, snapshot, own_pids)


def _fanout(plan: Plan) -> list[Finding]:
    from orchestrator.plan import fanout

    return fanout.check(plan)
