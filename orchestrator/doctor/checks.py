"""The static half of the doctor: findings from the host snapshot, the CA processes and the client settings.

Pure: plain data in (see `model.Observation`), `Finding`s out. No probe results here; what real
searches heard is judged in `judge`.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict

from orchestrator.ca.env import beacon_settings, host_is_ip
from orchestrator.hostmodel import HostSnapshot, Interface, PortHolder
from orchestrator.findings import ERROR, INFO, WARNING, Finding
from orchestrator.doctor.model import Observation, Process

CA_RUNTIMES = ("caproto", "softioc")


def who(holder: PortHolder, procs: dict[int, Process]) -> str:
    """'pid 123 (caproto_server.py, uid 0, container 3f2a…)' for messages."""
    proc = procs.get(holder.pid or -1)
    parts = [proc.label if proc else (holder.process or "unknown process")]
    if holder.uid is not None:
        parts.append(f"uid {holder.uid}")
    if holder.container:
        parts.append(f"container {holder.container[:12]}")
    return f"pid {holder.pid} ({', '.join(parts)})"


def server_ports(obs: Observation) -> list[int]:
    """The UDP ports the client searches: its entries' ports and the default server port."""
    return sorted({obs.client.server_port, *(p for _, p in obs.destinations), *(e.port for e in obs.client.entries)})


def static_findings(obs: Observation) -> list[Finding]:
    procs = {p.pid: p for p in obs.processes}
    return [
        *_udp_holders(obs, procs),
        *_repeater(obs, procs),
        *_beacons(obs, procs),
        *_entries(obs),
        *_interfaces(obs),
        *_auto(obs),
    ]


def _udp_holders(obs: Observation, procs: dict) -> list[Finding]:
    out = []
    for port in server_ports(obs):
        holders = obs.snapshot.holders("udp", port)
        for h in holders:
            if h.reuse_ok is False and not _name_server(procs.get(h.pid)):
                out.append(Finding(
                    "port-held-without-reuse", ERROR,
                    f"UDP {h.address}:{port} is held by {who(h, procs)} without SO_REUSEADDR|SO_REUSEPORT: "
                    f"no other IOC can use port {port} on this host while it runs",
                    f"stop pid {h.pid}, or start it with SO_REUSEADDR and SO_REUSEPORT (both CA runtimes do)",
                    "R1", (str(h.pid),)))
        by_addr: dict[str, set] = defaultdict(set)
        for h in holders:
            if h.uid is not None:
                by_addr["0.0.0.0" if h.address == "0.0.0.0" else h.address].add(h.uid)
        uids = {u for s in by_addr.values() for u in s}
        if len(uids) > 1:
            listing = ", ".join(who(h, procs) for h in holders)
            out.append(Finding(
                "reuseport-uid-mismatch", WARNING,
                f"UDP {port} is shared by processes of different users ({listing}); the kernel load-balances "
                "only within one user's group, so a unicast search reaches only the newest user's IOCs",
                "run every IOC that shares the port as one user", "R2", tuple(str(h.pid) for h in holders)))
        loop = defaultdict(set)
        for h in holders:
            if h.pid and ipaddress.IPv4Address(h.address).is_loopback:
                loop[h.address].add(h.pid)
        for address, pids in loop.items():
            if len(pids) > 1:
                out.append(Finding(
                    "loopback-bind-multi-ioc", ERROR,
                    f"{len(pids)} processes bind {address}:{port}; loopback cannot be broadcast to, so each "
                    "search reaches one of them",
                    "bind the IOCs to 0.0.0.0 and search 127.255.255.255, or give each IOC its own port",
                    "R7", tuple(str(p) for p in sorted(pids))))
    return out


def _ioc_containers(obs: Observation) -> set[str]:
    """Containers that run an IOC: fleet IOC containers and containers holding a CA server port."""
    found = {h.container for port in server_ports(obs) for h in obs.snapshot.holders("udp", port) if h.container}
    if obs.fleet:
        found |= {i.container for i in obs.fleet.iocs if i.container}
    return found


def _repeater(obs: Observation, procs: dict) -> list[Finding]:
    port = obs.client.repeater_port
    holders = obs.snapshot.holders("udp", port)
    if not holders:
        return [Finding(
            "repeater-missing", WARNING,
            f"no CA repeater holds UDP {port} on this host: libca clients start one themselves (caRepeater), "
            "and if the first such client runs in a container the repeater dies with it",
            "run one repeater on the host, e.g. `python -m caproto.commandline.repeater` or EPICS base "
            "`caRepeater` (`iocfleet up` starts one for its fleets)", "R12")]
    iocs = _ioc_containers(obs)
    out = []
    for h in holders:
        if h.container and h.container in iocs:
            out.append(Finding(
                "repeater-in-ioc-container", WARNING,
                f"the CA repeater on UDP {port} is {who(h, procs)}, inside an IOC container: when that "
                "container stops, every client on this host loses its beacon and connection notices",
                "run the repeater on the host or in its own container (`iocfleet up` does)", "R12",
                (str(h.pid), h.container)))
    return out


def _beacons(obs: Observation, procs: dict) -> list[Finding]:
    ports = server_ports(obs)
    holders = {h.pid for p in ports for h in obs.snapshot.holders("udp", p) if h.pid}
    out = []
    for proc in obs.processes:
        if proc.pid not in holders or proc.runtime not in CA_RUNTIMES:
            continue
        if proc.environ is None:
            continue  # unreadable: diagnose adds a note
        beacons = beacon_settings(proc.runtime, dict(proc.environ))
        if beacons.auto:
            out.append(Finding(
                "beacon-auto", WARNING,
                f"IOC pid {proc.pid} ({proc.label}, {proc.runtime}) sends beacons to {beacons.auto_targets} "
                f"as well as to its list: {beacons.reason}",
                "start it with EPICS_CAS_AUTO_BEACON_ADDR_LIST=NO and EPICS_CAS_BEACON_ADDR_LIST=<the broadcast "
                "address your clients listen on>", "R11", (str(proc.pid),)))
    return out


def route_of(address: str, snapshot: HostSnapshot) -> tuple[str, Interface | None]:
    """How this host would send to `address`: ("local"|"subnet"|"default"|"down"|"none", interface)."""
    ip = ipaddress.IPv4Address(address)
    if ip.is_loopback:
        lo = next((i for i in snapshot.interfaces if i.loopback), None)
        return ("local" if lo and lo.up else "down"), lo
    owner = snapshot.interface_of(address)
    if owner is not None and address in owner.addresses():
        return ("local" if owner.up else "down"), owner
    if address == "255.255.255.255":
        up = [i for i in snapshot.interfaces if i.up and not i.loopback and i.broadcasts()]
        return ("subnet", up[0]) if up else ("none", None)
    for iface in snapshot.interfaces:
        if iface.loopback:
            continue
        for a in iface.ipv4:
            if ip in a.network():
                return ("subnet" if iface.up else "down"), iface
    default = snapshot.interface(snapshot.default_interface) if snapshot.default_interface else None
    if default is not None and default.up:
        return "default", default
    return "none", None


def _entries(obs: Observation) -> list[Finding]:
    out = []
    for e in obs.client.entries:
        if not host_is_ip(e.host):
            if e.host in obs.unresolved:
                out.append(Finding(
                    "addr-list-unresolved", WARNING,
                    f"EPICS_CA_ADDR_LIST entry {e.text} is a host name the system resolver (/etc/hosts, DNS) "
                    "did not resolve, so it was not probed; libca drops such an entry too",
                    f"put the IP address of {e.host} in the list, or fix its name (DNS or /etc/hosts)", "R13",
                    (e.text,)))
            continue
        how, iface = route_of(e.host, obs.snapshot)
        if how == "none":
            out.append(Finding(
                "addr-list-unreachable", ERROR,
                f"EPICS_CA_ADDR_LIST entry {e.text}: no interface of this host reaches {e.host} "
                "(not on any interface's subnet, and no default route)",
                "use an address on one of this host's subnets (see `iocfleet interfaces`), or add a route",
                "R13", (e.text,)))
        elif how == "down":
            out.append(Finding(
                "interface-down", ERROR,
                f"EPICS_CA_ADDR_LIST entry {e.text} is on interface {iface.name}, which is down",
                f"bring it up (ip link set {iface.name} up) or search through another interface",
                "R4", (iface.name, e.text)))
    if not obs.client.entries and not obs.client.auto_addr_list:
        out.append(Finding(
            "addr-list-empty", ERROR,
            "EPICS_CA_ADDR_LIST is empty and EPICS_CA_AUTO_ADDR_LIST=NO: a libca client searches nowhere "
            "(a caproto client then broadcasts on every interface anyway)",
            "set EPICS_CA_ADDR_LIST to the broadcast address of the IOCs' subnet, or to host:port entries",
            "R13"))
    return out


def _interfaces(obs: Observation) -> list[Finding]:
    named = {route_of(e.host, obs.snapshot)[1].name for e in obs.client.entries
             if host_is_ip(e.host) and route_of(e.host, obs.snapshot)[0] == "down"}
    out = []
    for iface in obs.snapshot.interfaces:
        if iface.loopback or not iface.ipv4:
            continue
        if not iface.up and iface.name not in named:
            out.append(Finding(
                "interface-down", INFO,
                f"interface {iface.name} ({', '.join(iface.addresses())}) is down; no CA traffic passes it",
                f"nothing to do unless IOCs or clients should use it (ip link set {iface.name} up)",
                "R4", (iface.name,)))
        elif iface.up and not iface.broadcasts():
            relevant = obs.client.auto_addr_list or any(
                host_is_ip(e.host) and route_of(e.host, obs.snapshot)[1] == iface for e in obs.client.entries)
            out.append(Finding(
                "interface-no-broadcast", WARNING if relevant else INFO,
                f"interface {iface.name} ({', '.join(iface.addresses())}) has no broadcast address: CA searches "
                "cannot broadcast through it, so several IOCs behind it need distinct ports",
                "list each IOC as host:port (`--strategy distinct-ports`) for clients behind it",
                "R4", (iface.name,)))
    return out


def auto_broadcasts(snapshot: HostSnapshot) -> list[str]:
    """What EPICS_CA_AUTO_ADDR_LIST=YES adds: the broadcast of every up, non-loopback interface."""
    return [b for i in snapshot.interfaces if i.up and not i.loopback for b in i.broadcasts()]


def _auto(obs: Observation) -> list[Finding]:
    if not obs.client.auto_addr_list:
        return []
    targets = ", ".join(auto_broadcasts(obs.snapshot)) or "none found"
    probed = ("they were probed (--probe-auto)" if obs.probe_auto
              else "the doctor did not probe them (pass --probe-auto to include them)")
    return [Finding(
        "auto-addr-list", WARNING,
        f"EPICS_CA_AUTO_ADDR_LIST is not NO: the client also broadcasts every search on every interface "
        f"({targets}); {probed}",
        "set EPICS_CA_AUTO_ADDR_LIST=NO and list exactly where your IOCs are in EPICS_CA_ADDR_LIST",
        "R13")]


def _name_server(proc) -> bool:
    """iocfleet's name server holds its port without reuse on purpose: a second one must fail (R15)."""
    from orchestrator.doctor.nameservers import is_name_server

    return is_name_server(proc)
