"""The plan: what every IOC binds, which ports it takes, its environment, and why. Plain frozen data."""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.spec.model import Limits, PVSpec


@dataclass(frozen=True)
class Decision:
    """One choice the planner made and the rule (ca-network-rules.md) behind it."""

    rule: str
    text: str

    def to_dict(self) -> dict:
        return {"rule": self.rule, "text": self.text}


@dataclass(frozen=True)
class Finding:
    """A problem or notice about a plan or a host, with a stable code and a fix."""

    code: str
    severity: str  # "error" | "warning" | "info"
    message: str
    fix: str
    rule: str = ""
    subjects: tuple[str, ...] = ()  # IOC names, pids, addresses the finding is about

    def to_dict(self) -> dict:
        return {"code": self.code, "severity": self.severity, "message": self.message, "fix": self.fix,
                "rule": self.rule, "subjects": list(self.subjects)}


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

    @property
    def pv_names(self) -> tuple[str, ...]:
        """Every PV this IOC serves: the declared ones, then the standard HEARTBEAT and UPTIME."""
        from orchestrator.spec.model import STANDARD_PVS

        return tuple(self.prefix + p.name for p in self.pvs) + tuple(self.prefix + s for s in STANDARD_PVS)

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
            "image": self.image,
            "command": list(self.command),
            "user": self.user,
            "restart": self.restart,
        }


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

    def ioc(self, name: str) -> PlannedIOC:
        return next(i for i in self.iocs if i.name == name)

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
        }
