"""Plan a fleet: strategy, interface, bind addresses, ports, environments and client settings.

Pure: `plan(spec, snapshot)` takes plain data and returns a `Plan`; every choice is recorded as a
`Decision` citing the rule of ca-network-rules.md behind it. Problems (a missing interface, a port out of
range) are not raised here: the plan is still made and `conflicts.check` reports them.
"""

from __future__ import annotations

import json

from orchestrator.hostmodel import CA_REPEATER_PORT, HostSnapshot, Interface
from orchestrator.plan.model import Decision, Plan, PlannedIOC, Repeater
from orchestrator.spec.model import FleetSpec, IOCSpec

ANY = "0.0.0.0"


def plan(spec: FleetSpec, snapshot: HostSnapshot, strategy: str | None = None, interface: str | None = None,
         ioc_uid: int | None = None) -> Plan:
    """Plan `spec` on the host described by `snapshot`; `strategy`/`interface` override the fleet file."""
    decisions: list[Decision] = []
    say = lambda rule, text: decisions.append(Decision(rule, text))  # noqa: E731

    expanded = expand_replicas(spec.iocs)
    iface_name = choose_interface(interface or spec.network.interface, snapshot, say)
    iface = snapshot.interface(iface_name) if iface_name else None
    address = _address(iface, iface_name)
    broadcast = _broadcast(iface)
    clients = _clients(spec.network.clients, iface, say)
    chosen = choose_strategy(strategy or spec.network.strategy, len(expanded), iface, clients, say)

    say("R16", "IOC containers use host networking: they share this host's ports and broadcasts exactly "
               "as processes do, so the rules below apply across containers.")
    binds = _bind_addresses(chosen, iface, address, say)
    ports = _ports(chosen, spec.network.base_port, len(expanded), say)
    beacon = broadcast or address or "127.255.255.255"
    client_list = _client_addr_list(chosen, address, broadcast, ports, say)
    say("R11", f"Beacons go only to {beacon} (EPICS_CAS_AUTO_BEACON_ADDR_LIST=NO): without it caproto "
               "adds 255.255.255.255 and rsrv every interface's broadcast.")
    _runtime_notes(expanded, chosen, iface, say)
    repeater = Repeater(CA_REPEATER_PORT, "fleet",
                        "a repeater spawned inside an IOC container dies with that container; the fleet "
                        "runs its own on the host's UDP 5065 before the IOCs start")
    say("R12", f"CA repeater: {repeater.reason}.")

    client_env = (("EPICS_CA_AUTO_ADDR_LIST", "NO"), ("EPICS_CA_ADDR_LIST", client_list))
    if chosen != "distinct-ports":
        client_env += (("EPICS_CA_SERVER_PORT", str(spec.network.base_port)),)
    iocs = tuple(
        _planned(ioc, name, prefix, ports[i], chosen, binds, beacon, client_env)
        for i, (ioc, name, prefix) in enumerate(expanded)
    )
    return Plan(fleet=spec.name, strategy=chosen, interface=iface_name, address=address, broadcast=broadcast,
                clients=clients, iocs=iocs, client_env=client_env, repeater=repeater,
                decisions=tuple(decisions), ioc_uid=ioc_uid)


def expand_replicas(iocs: tuple[IOCSpec, ...]) -> list[tuple[IOCSpec, str, str]]:
    """(ioc, name, prefix) per running IOC: replicas get `-1`, `-2`… and `{i}` or `N:` in the prefix."""
    out = []
    for ioc in iocs:
        if ioc.replicas == 1:
            out.append((ioc, ioc.name, ioc.prefix.replace("{i}", "")))
            continue
        for i in range(1, ioc.replicas + 1):
            prefix = ioc.prefix.replace("{i}", str(i)) if "{i}" in ioc.prefix else f"{ioc.prefix}{i}:"
            out.append((ioc, f"{ioc.name}-{i}", prefix))
    return out


def choose_interface(wanted: str, snapshot: HostSnapshot, say) -> str | None:
    if wanted != "auto":
        say("R16", f"Interface {wanted}: named in the fleet file or on the command line.")
        return wanted
    if snapshot.default_interface:
        say("R16", f"Interface {snapshot.default_interface}: it carries the default route (interface: auto).")
        return snapshot.default_interface
    lo = next((i.name for i in snapshot.interfaces if i.loopback), None)
    say("R7", f"Interface {lo}: no default route, so the fleet serves this host only.")
    return lo


def _address(iface: Interface | None, name: str | None) -> str | None:
    if iface is None or not iface.ipv4:
        return None
    return iface.ipv4[0].address


def _broadcast(iface: Interface | None) -> str | None:
    if iface is None:
        return None
    broadcasts = iface.broadcasts()
    return broadcasts[0] if broadcasts else None


def _clients(wanted: str, iface: Interface | None, say) -> str:
    if wanted != "auto":
        return wanted
    if iface is not None and iface.loopback:
        say("R7", "Clients are on this host: the interface is loopback.")
        return "same-host"
    say("R4", "Clients are on the interface's subnet (network.clients: auto); say `routed` if they are not.")
    return "subnet"


def choose_strategy(wanted: str, count: int, iface: Interface | None, clients: str, say) -> str:
    if wanted != "auto":
        say("R1", f"Strategy {wanted}: named in the fleet file or on the command line.")
        return wanted
    if count == 1:
        say("R1", "Strategy single: one IOC owns its port, no sharing rules apply.")
        return "single"
    if clients == "routed":
        say("R13", f"Strategy distinct-ports: {count} IOCs and routed clients, which cannot broadcast to this "
                   "host, so every IOC gets its own port and clients list host:port entries.")
        return "distinct-ports"
    if iface is not None and not iface.loopback and not iface.broadcasts():
        say("R4", f"Strategy distinct-ports: interface {iface.name} has no broadcast address, so a shared "
                  "port could only be reached by unicast, which reaches one IOC per search (R3).")
        return "distinct-ports"
    where = "127.255.255.255" if iface is not None and iface.loopback else "the subnet broadcast"
    say("R4", f"Strategy shared-port: {count} IOCs share one UDP port with SO_REUSEADDR|SO_REUSEPORT (R1); "
              f"a search to {where} reaches every one of them.")
    return "shared-port"


def _bind_addresses(strategy: str, iface: Interface | None, address: str | None, say) -> dict[str, tuple[str, ...]]:
    """EPICS_CAS_INTF_ADDR_LIST per runtime (rsrv and caproto bind differently: R6, R10)."""
    if address is None:
        return _same_for_all((ANY,))
    broadcast = iface.broadcasts()[0] if iface is not None and iface.broadcasts() else None
    if strategy == "shared-port" and (iface is None or iface.loopback or broadcast is None):
        say("R4", "Bind 0.0.0.0: a wildcard socket hears broadcasts, which is how one search reaches every IOC; "
                  "on loopback it is the only bind where both runtimes hear 127.255.255.255 (rsrv adds no "
                  "broadcast socket for 127.0.0.1, R10).")
        say("R5", "Not 127.0.0.1 or the interface IP alone: a specific-IP bind hears no broadcast, only "
                  "unicast, load-balanced to one IOC per search (R3).")
        say("R6", "Not the broadcast address alone: such a bind hears no unicast, and the TCP listener would "
                  "follow it to an address where clients cannot connect.")
        return _same_for_all((ANY,))
    if strategy == "shared-port":
        say("R10", f"softioc (rsrv) IOCs bind {address}: rsrv adds the broadcast socket of {iface.name} itself, "
                   f"so they hear unicast and broadcast there and nothing from other interfaces.")
        say("R6", f"caproto IOCs bind {address} {broadcast}: the broadcast socket hears searches to "
                  f"{broadcast}, TCP listens on {address} where clients connect (a bare broadcast bind would "
                  "put TCP where no client can connect). caproto then answers some searches twice; that is "
                  "one server, not a duplicate PV (R14).")
        return {"caproto": (address, broadcast), "softioc": (address,), "image": (address,)}
    if iface is not None and iface.loopback:
        say("R7", f"Bind {address}: the IOCs serve this host only; each IOC owns its port, so unicast "
                  "reaches it without load balancing.")
    else:
        say("R5", f"Bind {address}: each IOC owns its port on interface {iface.name if iface else '?'}, "
                  "so unicast to that address reaches it, also from routed clients.")
    return _same_for_all((address,))


def _same_for_all(binds: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    return {"caproto": binds, "softioc": binds, "image": binds}


def _ports(strategy: str, base: int, count: int, say) -> list[int]:
    if strategy != "distinct-ports":
        if count > 1:
            say("R9", f"UDP {base} for all; one IOC gets TCP {base}, the others take a free TCP port at start. "
                      "Search replies carry the real TCP port. EPICS_CA_SERVER_PORT (caproto) and "
                      "EPICS_CAS_SERVER_PORT (rsrv) are both set.")
        return [base] * count
    ports, port = [], base
    while len(ports) < count:
        if port != CA_REPEATER_PORT:  # 5065 belongs to the repeater and beacons
            ports.append(port)
        port += 1
    say("R9", f"Ports {ports[0]}..{ports[-1]}: each IOC's UDP and TCP port (both EPICS_CA_SERVER_PORT and "
              f"EPICS_CAS_SERVER_PORT), skipping the repeater's {CA_REPEATER_PORT}.")
    return ports


def _client_addr_list(strategy: str, address: str | None, broadcast: str | None, ports: list[int], say) -> str:
    host = address or "127.0.0.1"
    if strategy == "distinct-ports":
        entries = " ".join(f"{host}:{p}" for p in ports)
        say("R13", f"Clients list every IOC as host:port ({len(ports)} entries); EPICS_CA_AUTO_ADDR_LIST=NO.")
        return entries
    if strategy == "shared-port":
        target = broadcast or host
        say("R13", f"Clients search {target} with EPICS_CA_AUTO_ADDR_LIST=NO: a broadcast reaches every IOC "
                   f"(R4); the unicast {host} would reach one IOC per search (R3).")
        return target
    say("R13", f"Clients search {host} (unicast: one IOC owns the port) with EPICS_CA_AUTO_ADDR_LIST=NO.")
    return host


def _runtime_notes(expanded, strategy: str, iface: Interface | None, say) -> None:
    runtimes = {ioc.runtime for ioc, _, _ in expanded}
    if "softioc" in runtimes and strategy != "shared-port" and iface is not None and not iface.loopback:
        say("R10", "softioc (rsrv) IOCs given the interface IP also bind its broadcast address, so they hear "
                   "broadcasts there too; caproto IOCs bind exactly the address given.")
    if "image" in runtimes:
        say("R10", "`image` IOCs are assumed to honour the EPICS_CAS_* variables like EPICS base (rsrv).")


def _pv_payload(pv) -> dict:
    """A PV as the IOC programs read it (ioc_images/common); `writable` only when false."""
    data = pv.to_dict()
    if data.pop("writable"):
        return data
    return {**data, "writable": False}


_PVS_JSON: dict[int, tuple[object, str]] = {}


def _pvs_json(pvs) -> str:
    """The JSON of an IOC's PV list, made once for all its replicas (1024 replicas x 95 PVs took 7 s
    of `plan` in dataclasses.asdict, issue 13 class 13). Keyed by identity, checked by `is`."""
    cached = _PVS_JSON.get(id(pvs))
    if cached is not None and cached[0] is pvs:
        return cached[1]
    if len(_PVS_JSON) > 256:
        _PVS_JSON.clear()
    text = json.dumps([_pv_payload(p) for p in pvs], separators=(",", ":"))
    _PVS_JSON[id(pvs)] = (pvs, text)
    return text


def _planned(ioc: IOCSpec, name: str, prefix: str, port: int, strategy: str,
             binds_by_runtime: dict[str, tuple[str, ...]], beacon: str, client_env) -> PlannedIOC:
    binds = binds_by_runtime[ioc.runtime]
    env = (
        ("EPICS_CAS_INTF_ADDR_LIST", " ".join(binds)),
        ("EPICS_CA_SERVER_PORT", str(port)),
        ("EPICS_CAS_SERVER_PORT", str(port)),
        ("EPICS_CAS_AUTO_BEACON_ADDR_LIST", "NO"),
        ("EPICS_CAS_BEACON_ADDR_LIST", beacon),
        ("EPICS_CAS_BEACON_PORT", str(CA_REPEATER_PORT)),
        ("EPICS_CA_REPEATER_PORT", str(CA_REPEATER_PORT)),
        # The IOC's own CA client (links to other IOCs) searches exactly where external clients do.
        ("EPICS_CA_AUTO_ADDR_LIST", "NO"),
        ("EPICS_CA_ADDR_LIST", dict(client_env)["EPICS_CA_ADDR_LIST"]),
    )
    if ioc.runtime != "image":
        head = json.dumps({"name": name, "prefix": prefix}, separators=(",", ":"))
        env += (("IOCFLEET_IOC", f'{head[:-1]},"pvs":{_pvs_json(ioc.pvs)}}}'),)
    env += ioc.env
    return PlannedIOC(
        name=name, runtime=ioc.runtime, prefix=prefix, declared_as=ioc.name, udp_port=port,
        tcp_port=port if strategy != "shared-port" else None, bind=binds, env=env, pvs=ioc.pvs,
        image=ioc.image, command=ioc.command, user=ioc.user, limits=ioc.limits, restart=ioc.restart,
    )
