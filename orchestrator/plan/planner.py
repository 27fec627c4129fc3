"""Plan a fleet: strategy, interface, bind addresses, ports, environments and client settings.

Pure: `plan(spec, snapshot)` takes plain data and returns a `Plan`; every choice is recorded as a
`Decision` citing the rule of ca-network-rules.md behind it. Problems (a missing interface, a port out of
range) are not raised here: the plan is still made and `conflicts.check` reports them.
"""

from __future__ import annotations

import json

from orchestrator.hostmodel import CA_REPEATER_PORT, HostSnapshot, Interface
from orchestrator.plan import nameserver, packing
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
    bound = chosen_address(iface, say)
    address = bound.address if bound else None
    broadcast = _broadcast(iface, bound)
    clients = _clients(spec.network.clients, iface, say)
    chosen = choose_strategy(strategy or spec.network.strategy, len(expanded), iface, clients, say,
                             has_broadcast=broadcast is not None)

    say("R16", "IOC containers use host networking: they share this host's ports and broadcasts exactly "
               "as processes do, so the rules below apply across containers.")
    layout = "shared-port" if chosen == nameserver.STRATEGY else chosen  # a name server's IOCs share a port
    binds = _bind_addresses(layout, iface, address, say)
    if spec.network.fanout == "dnat" and layout == "shared-port" and binds["caproto"] != (ANY,):
        binds = _same_for_all((ANY,))
        say("R17", "Bind 0.0.0.0 instead (fan-out): a search rewritten to the subnet broadcast or to "
                   "127.255.255.255 reaches only sockets bound to the wildcard or to that broadcast (R4).")
    ports = _ports(layout, spec.network.base_port, len(expanded), say)
    beacon = broadcast or address or "127.255.255.255"
    if chosen == nameserver.STRATEGY:
        client_list = f"{address or '127.0.0.1'}:{nameserver.port_for(spec.network.base_port)}"
    else:
        client_list = _client_addr_list(chosen, address, broadcast, ports, say)
    say("R11", f"Beacons go only to {beacon} (EPICS_CAS_AUTO_BEACON_ADDR_LIST=NO): without it caproto "
               "adds 255.255.255.255 and rsrv every interface's broadcast.")
    _runtime_notes(expanded, chosen, iface, say)
    repeater = choose_repeater(snapshot, say)

    client_env = (("EPICS_CA_AUTO_ADDR_LIST", "NO"), ("EPICS_CA_ADDR_LIST", client_list))
    if chosen not in ("distinct-ports", nameserver.STRATEGY):
        client_env += (("EPICS_CA_SERVER_PORT", str(spec.network.base_port)),)
    iocs = tuple(
        _planned(ioc, name, prefix, ports[i], layout, binds, beacon, client_env)
        for i, (ioc, name, prefix) in enumerate(expanded)
    )
    iocs, packs = packing.assign(iocs, spec.pack, spec.pack_size, say)
    name_server = None
    if chosen == nameserver.STRATEGY:
        name_server = nameserver.plan(spec.network.base_port, address, broadcast,
                                      iface is not None and iface.loopback, iocs, say)
        client_env = nameserver.client_env(name_server)
    from orchestrator.plan import fanout

    fan = fanout.plan(spec.name, spec.network.fanout, chosen, address, broadcast,
                      iface is not None and iface.loopback, spec.network.base_port, say)
    return Plan(fleet=spec.name, strategy=chosen, interface=iface_name, address=address, broadcast=broadcast,
                clients=clients, iocs=iocs, client_env=client_env, repeater=repeater,
                decisions=tuple(decisions), ioc_uid=ioc_uid, name_server=name_server, fanout=fan,
                packing=packs, pack_units=packing.units(iocs, packs))


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


def chosen_address(iface: Interface | None, say=None):
    """The IPv4 address the fleet binds: the first one with a broadcast (R4), else the first one."""
    if iface is None or not iface.ipv4:
        return None
    if iface.loopback:
        return iface.ipv4[0]
    chosen = next((a for a in iface.ipv4 if a.broadcast), iface.ipv4[0])
    if say is not None and len(iface.ipv4) > 1:
        others = ", ".join(f"{a.address}/{a.prefixlen} (broadcast {a.broadcast or 'none'})"
                           for a in iface.ipv4 if a is not chosen)
        why = "the first with a broadcast" if chosen.broadcast else "none has a broadcast, so the first"
        say("R4", f"Address {chosen.address}/{chosen.prefixlen} of {iface.name}: {why}; its broadcast "
                  f"{chosen.broadcast or 'none'} is the one the fleet uses. The other addresses ({others}) are "
                  "not bound, and a search to their broadcasts reaches the IOCs only through a 0.0.0.0 bind.")
    if say is not None and chosen.broadcast is None and not iface.loopback:
        kind = (f"a point-to-point address (peer {chosen.peer})" if chosen.peer
                else f"a /{chosen.prefixlen}" if chosen.prefixlen >= 31
                else "added without `brd` (the kernel holds no IFA_BROADCAST for it)")
        say("R4", f"Address {chosen.address}/{chosen.prefixlen} of {iface.name} has no broadcast: {kind}. "
                  f"To give clients a broadcast: ip addr del {chosen.address}/{chosen.prefixlen} dev {iface.name} "
                  f"&& ip addr add {chosen.address}/{chosen.prefixlen} brd + dev {iface.name}.")
    return chosen


def _broadcast(iface: Interface | None, bound) -> str | None:
    if iface is None or bound is None:
        return None
    if bound.broadcast:
        return bound.broadcast
    if iface.loopback:
        return str(bound.network().broadcast_address)
    return None


def _clients(wanted: str, iface: Interface | None, say) -> str:
    if wanted != "auto":
        return wanted
    if iface is not None and iface.loopback:
        say("R7", "Clients are on this host: the interface is loopback.")
        return "same-host"
    say("R4", "Clients are on the interface's subnet (network.clients: auto); say `routed` if they are not.")
    return "subnet"


def choose_strategy(wanted: str, count: int, iface: Interface | None, clients: str, say,
                    has_broadcast: bool | None = None) -> str:
    if wanted != "auto":
        say("R1", f"Strategy {wanted}: named in the fleet file or on the command line.")
        return wanted
    if count == 1 and iface is not None and iface.loopback and clients != "routed":
        say("R4", "Strategy shared-port, even for one IOC: on loopback another fleet may join this port, and "
                  "the broadcast 127.255.255.255 still reaches this IOC then, where the unicast 127.0.0.1 "
                  "would reach it in only some searches (R3); the printed settings stay true.")
        return "shared-port"
    if count == 1:
        say("R1", "Strategy single: one IOC owns its port, no sharing rules apply.")
        return "single"
    if nameserver.auto_applies(count, clients, iface is not None and iface.loopback,
                               iface is not None and bool(iface.broadcasts())):
        say("R15", f"Strategy name-server: {count} IOCs and routed clients, which cannot broadcast to this host; "
                   f"distinct ports would need {count} host:port entries in every client, a name server needs "
                   f"one address (from {nameserver.AUTO_MIN_IOCS} IOCs on), and the IOCs share one port.")
        return nameserver.STRATEGY
    if clients == "routed":
        say("R13", f"Strategy distinct-ports: {count} IOCs and routed clients, which cannot broadcast to this "
                   "host, so every IOC gets its own port and clients list host:port entries.")
        return "distinct-ports"
    if has_broadcast is None:
        has_broadcast = iface is None or iface.loopback or bool(iface.broadcasts())
    if iface is not None and not iface.loopback and not has_broadcast:
        say("R4", f"Strategy distinct-ports: interface {iface.name} has no broadcast address, so a shared "
                  "port could only be reached by unicast, which reaches one IOC per client source port (R3): "
                  "libca and caproto search from one fixed port, so such a client would read one IOC's PVs "
                  "and never the others'.")
        return "distinct-ports"
    where = "127.255.255.255" if iface is not None and iface.loopback else "the subnet broadcast"
    say("R4", f"Strategy shared-port: {count} IOCs share one UDP port with SO_REUSEADDR|SO_REUSEPORT (R1); "
              f"a search to {where} reaches every one of them.")
    return "shared-port"


def _bind_addresses(strategy: str, iface: Interface | None, address: str | None, say) -> dict[str, tuple[str, ...]]:
    """EPICS_CAS_INTF_ADDR_LIST per runtime (rsrv and caproto bind differently: R6, R10)."""
    if address is None:
        return _same_for_all((ANY,))
    bound = chosen_address(iface)
    broadcast = _broadcast(iface, bound) if iface is not None and not iface.loopback else None
    if strategy == "shared-port" and (iface is None or iface.loopback or broadcast is None):
        say("R4", "Bind 0.0.0.0: a wildcard socket hears broadcasts, which is how one search reaches every IOC; "
                  "on loopback it is the only bind where both runtimes hear 127.255.255.255 (rsrv adds no "
                  "broadcast socket for 127.0.0.1, only a second socket on 127.0.0.1 itself, R10).")
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
    if bound is not None and bound.peer and not bound.broadcast:
        say("R10", f"softioc (rsrv) IOCs bind 0.0.0.0 on their own port: given the point-to-point address "
                   f"{address}, rsrv also binds the peer {bound.peer} (what the kernel reports in place of a "
                   "broadcast), which is not this host's, and never finishes starting.")
        say("R5", f"caproto IOCs bind {address}: each IOC owns its port, so unicast to that address reaches it.")
        return {"caproto": (address,), "softioc": (ANY,), "image": (ANY,)}
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
    bound = chosen_address(iface) if iface is not None else None
    if "softioc" in runtimes and strategy != "shared-port" and iface is not None and not iface.loopback \
            and bound is not None and bound.broadcast:
        say("R10", "softioc (rsrv) IOCs given the interface IP also bind its broadcast address, so they hear "
                   "broadcasts there too; caproto IOCs bind exactly the address given.")
    elif "softioc" in runtimes and strategy != "shared-port" and bound is not None and not bound.peer \
            and iface is not None and not iface.loopback:
        say("R10", f"softioc (rsrv) IOCs given {bound.address}, which has no broadcast, bind a second socket on "
                   "that address instead of a broadcast one; on a port of its own that changes nothing.")
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
    iocstats = _iocstats_name(ioc, name, prefix)
    if ioc.builtin:
        head = json.dumps({"name": name, "prefix": prefix, **({"iocstats": iocstats} if iocstats else {})},
                          separators=(",", ":"))
        env += (("IOCFLEET_IOC", f'{head[:-1]},"pvs":{_pvs_json(ioc.pvs)}}}'),)
    env += _real_env(ioc, prefix)
    env += ioc.env
    extra = tuple(r for d in ioc.db for r in d.records) + (
        tuple(prefix + n for n in ioc.group.pvs) if ioc.group else ())
    return PlannedIOC(
        name=name, runtime=ioc.runtime, prefix=prefix, declared_as=ioc.name, udp_port=port,
        tcp_port=port if strategy != "shared-port" else None, bind=binds, env=env, pvs=ioc.pvs,
        image=ioc.image, command=ioc.command, user=ioc.user, limits=ioc.limits, restart=ioc.restart,
        readiness=ioc.readiness, builtin=ioc.builtin, extra_pvs=tuple(dict.fromkeys(extra)),
        entrypoint=ioc.entrypoint, workdir=ioc.workdir, mounts=ioc.mounts, stdin_open=ioc.stdin_open,
        db=ioc.db, group=ioc.group,
        read_only=ioc.read_only, iocstats=iocstats,
    )


def choose_repeater(snapshot: HostSnapshot, say) -> Repeater:
    """The fleet runs its own CA repeater unless one already holds UDP 5065 on this host (R12); `up` starts
    one exactly when this says `fleet` (and none of the fleet's own runs yet)."""
    holders = snapshot.holders("udp", CA_REPEATER_PORT)
    if holders:
        who = ", ".join(f"pid {h.pid} ({h.process or 'unknown'})" if h.pid else "a process of another user"
                        for h in holders[:3])
        repeater = Repeater(CA_REPEATER_PORT, "host",
                            f"one already holds UDP {CA_REPEATER_PORT} on this host ({who}): clients and IOCs "
                            "register with it, and a host needs only one, so the fleet starts none")
    else:
        repeater = Repeater(CA_REPEATER_PORT, "fleet",
                            "a repeater spawned inside an IOC container dies with that container; the fleet "
                            "runs its own on the host's UDP 5065 before the IOCs start")
    say("R12", f"CA repeater: {repeater.reason}.")
    return repeater


def _real_env(ioc: IOCSpec, prefix: str) -> tuple[tuple[str, str], ...]:
    """IOCFLEET_DB (databases to load before iocInit) and IOCFLEET_GROUP (the user's PVGroup), with host
    paths; the docker backend rewrites them to where it mounts the files (ioc_images/common/iocfleet_ioc)."""
    out: tuple[tuple[str, str], ...] = ()
    if ioc.db:
        loads = [{"file": d.file, "macros": dict(d.macros)} for d in ioc.db]
        out += (("IOCFLEET_DB", json.dumps(loads, separators=(",", ":"))),)
    if ioc.group:
        group = {"module": ioc.group.module, "python_path": ioc.group.python_path,
                 "kwargs": json.loads(ioc.group.kwargs), "prefix": prefix}
        out += (("IOCFLEET_GROUP", json.dumps(group, separators=(",", ":"))),)
    return out


def _iocstats_name(ioc: IOCSpec, name: str, prefix: str) -> str | None:
    """The iocStats name of one running IOC: as written (`{i}` is the replica number), else derived from
    its prefix (built-in runtimes only)."""
    from orchestrator.spec import iocstats as stats

    if ioc.iocstats is False:
        return None
    if isinstance(ioc.iocstats, str):
        number = name.rsplit("-", 1)[1] if ioc.replicas > 1 else ""
        return ioc.iocstats.replace("{i}", number)
    derived = stats.default_name(prefix) if ioc.builtin and prefix else None
    return derived if derived and not stats.name_problem(derived) else None  # too long: the old names only
