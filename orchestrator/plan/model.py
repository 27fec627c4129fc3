"""The plan: what every IOC binds, which ports it takes, its environment, and why. Plain frozen data."""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.findings import Finding
from orchestrator.spec.model import STANDARD_PVS, DbLoad, GroupSpec, Limits, Mount, PVSpec


@dataclass(frozen=True)
class Decision:
    """One choice the planner made and the rule (ca-network-rules.md) behind it."""

    rule: str
    text: str

    def to_dict(self) -> dict:
        return {"rule": self.rule, "text": self.text}


@dataclass(frozen=True)
class PlannedIOC:
    """One IOC after replica expansion, with everything a backend needs to start it."""

    name: str
    runtime: str
    prefix: str
    declared_as: str  # the fleet-file IOC it came from
    udp_port: int
    tcp_port: int | None  # None: the server takes the first free port at start (R9)
    bind: tuple[str, ...]  # EPICS_CAS_INTF_ADDR_LIST
    env: tuple[tuple[str, str], ...]
    pvs: tuple[PVSpec, ...]
    image: str | None = None
    command: tuple[str, ...] = ()
    user: str | None = None
    limits: Limits = field(default_factory=Limits)
    restart: str = "on-failure"
    readiness: str = "pvs"  # pvs: read every PV | server: its CA server is up | none: do not wait
    builtin: bool = True  # iocfleet's own program runs it (and serves HEARTBEAT and UPTIME)
    extra_pvs: tuple[str, ...] = ()  # full names from .db records or the user's PVGroup
    entrypoint: tuple[str, ...] = ()
    workdir: str | None = None
    mounts: tuple[Mount, ...] = ()
    stdin_open: bool = False
    db: tuple[DbLoad, ...] = ()
    group: GroupSpec | None = None
    read_only: bool = True
    iocstats: str | None = None  # the iocStats IOC name (NAME:HEARTBEAT, ...); None: no iocStats PVs
    pack: str | None = None  # the pack this IOC runs in (plan/packing.py); None: its own process
    members: tuple[str, ...] = ()  # a pack's start unit: the IOCs it runs

    @property
    def pv_names(self) -> tuple[str, ...]:
        """The PVs readiness waits for: the declared ones, its .db records or group PVs, then (iocfleet's own
        programs only) the old HEARTBEAT/UPTIME names where iocStats does not serve them, and the iocStats
        HEARTBEAT and UPTIME (also of an image that declares `iocstats`). A name defined twice in one IOC
        (a .db record that is also a declared PV) appears twice: conflicts reports it."""
        from orchestrator.spec import iocstats as stats

        legacy = stats.legacy_names(self.prefix, self.iocstats) if self.builtin else ()
        ready = tuple(f"{self.iocstats}:{s}" for s in stats.READY_PVS) if self.iocstats else ()
        return tuple(self.prefix + p.name for p in self.pvs) + self.extra_pvs + legacy + ready

    @property
    def ready_names(self) -> tuple[str, ...]:
        """The PVs readiness reads: all of them for `pvs` readiness, none otherwise."""
        return self.pv_names if self.readiness == "pvs" else ()

    @property
    def health_pvs(self) -> tuple[str, ...]:
        """The iocStats PVs a display or a health check shows for this IOC."""
        from orchestrator.spec import iocstats as stats

        return tuple(f"{self.iocstats}:{s}" for s in stats.HEALTH_PVS) if self.iocstats else ()

    @property
    def liveness_pv(self) -> str | None:
        """The PV a liveness probe reads: iocStats UPTIME, else the old PREFIX+UPTIME of iocfleet's own
        programs; None for an IOC that serves neither (an image or a user PVGroup without iocStats)."""
        from orchestrator.spec import iocstats as stats

        if self.iocstats:
            return f"{self.iocstats}:{stats.LIVENESS_PV}"
        return self.prefix + "UPTIME" if self.builtin else None

    def all_pv_names(self) -> tuple[str, ...]:
        """Every PV this IOC serves: readiness' names plus every other iocStats PV of iocfleet's programs
        (duplicates within `pv_names` kept, so conflicts sees a name defined twice in one IOC)."""
        from orchestrator.spec import iocstats as stats

        extra = stats.names(self.iocstats, self.runtime) if self.builtin and self.iocstats else ()
        seen = set(self.pv_names)
        return self.pv_names + tuple(n for n in dict.fromkeys(extra) if n not in seen)

    def env_dict(self) -> dict[str, str]:
        return dict(self.env)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "runtime": self.runtime,
            "prefix": self.prefix,
            "declared_as": self.declared_as,
            "env": self.env_dict(),
            "udp_port": self.udp_port,
            "tcp_port": self.tcp_port,
            "bind": list(self.bind),
            "pvs": list(self.pv_names),
            "iocstats": self.iocstats,
            "image": self.image,
            "command": list(self.command),
            "user": self.user,
            "restart": self.restart,
            "readiness": self.readiness,
            **self._real_dict(),
            "read_only": self.read_only,
            **({"pack": self.pack} if self.pack else {}),
            **({"members": list(self.members)} if self.members else {}),
        }

    def _real_dict(self) -> dict:
        """The real-IOC fields, only when set (plans of built-in IOCs keep their keys and hashes)."""
        data = {"entrypoint": list(self.entrypoint), "workdir": self.workdir,
                "mounts": [m.to_dict() for m in self.mounts], "stdin_open": self.stdin_open,
                "db": [d.to_dict() for d in self.db], "group": self.group.to_dict() if self.group else None}
        return {k: v for k, v in data.items() if v}


@dataclass(frozen=True)
class Repeater:
    """Who provides the CA repeater (UDP 5065) that clients and IOC CA links register with (R12)."""

    port: int
    provider: str  # "fleet": the backend runs one beside the IOCs; "host": one already runs
    reason: str

    def to_dict(self) -> dict:
        return {"port": self.port, "provider": self.provider, "reason": self.reason}


@dataclass(frozen=True)
class Plan:
    """The whole plan of a fleet on one host."""

    fleet: str
    strategy: str
    interface: str | None
    address: str | None  # the interface address IOCs are reached at (None: interface unusable)
    broadcast: str | None
    clients: str
    iocs: tuple[PlannedIOC, ...]
    client_env: tuple[tuple[str, str], ...]
    repeater: Repeater
    decisions: tuple[Decision, ...]
    ioc_uid: int | None = None
    name_server: object = None  # plan.nameserver.NameServerPlan under strategy name-server (R15)
    fanout: object = None  # plan.fanout.FanoutPlan with network.fanout: dnat (R17)
    packing: object = None  # plan.packing.Packing: which caproto IOCs share a process (issue 14)
    pack_units: tuple[PlannedIOC, ...] = ()  # the start unit of each pack (plan.packing.pack_unit)

    def ioc(self, name: str) -> PlannedIOC:
        return next(i for i in self.iocs if i.name == name)

    def units(self) -> tuple[PlannedIOC, ...]:
        """What a backend starts, in plan order: every IOC that runs alone, and one unit per pack in place
        of its first member. Without packs, the IOCs themselves."""
        if not self.pack_units:
            return self.iocs
        packs = {u.name: u for u in self.pack_units}
        out, seen = [], set()
        for ioc in self.iocs:
            if ioc.pack is None:
                out.append(ioc)
            elif ioc.pack not in seen:
                seen.add(ioc.pack)
                out.append(packs[ioc.pack])
        return tuple(out)

    def client_env_dict(self) -> dict[str, str]:
        return dict(self.client_env)

    def to_dict(self, findings: list[Finding] | tuple[Finding, ...] = ()) -> dict:
        return {
            "fleet": self.fleet,
            "strategy": self.strategy,
            "interface": self.interface,
            "address": self.address,
            "broadcast": self.broadcast,
            "clients": self.clients,
            "iocs": [i.to_dict() for i in self.iocs],
            "client_env": self.client_env_dict(),
            "repeater": self.repeater.to_dict(),
            "decisions": [d.to_dict() for d in self.decisions],
            "findings": [f.to_dict() for f in findings],
            "name_server": self.name_server.to_dict() if self.name_server is not None else None,
            "fanout": self.fanout.to_dict() if self.fanout is not None else None,
            "packing": self.packing.to_dict() if self.packing is not None else None,
        }
