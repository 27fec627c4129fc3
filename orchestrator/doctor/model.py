"""The doctor's data: what it observed (client settings, processes, probe, fleet) and what it concluded.

Plain frozen dataclasses with `to_dict()`; `judge.diagnose` turns an Observation into a Diagnosis.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.ca import rules
from orchestrator.ca.env import ClientSettings
from orchestrator.errors import FindingsError
from orchestrator.findings import WARNING, Finding, errors_of, has_errors, raise_for_errors
from orchestrator.hostmodel import HostSnapshot
from orchestrator.ca.probe import ProbeResult

Address = tuple[str, int]
__all__ = ["FindingsError"]  # the doctor's exit-1 error (defined in errors, exported here as before)


@dataclass(frozen=True)
class Process:
    """A process holding a CA port or listening where a search reply pointed."""

    pid: int
    label: str  # the fleet IOC's name, else the script or program it runs
    runtime: str  # caproto | softioc | other (guessed from the command line)
    uid: int | None = None
    container: str | None = None
    started: float = 0.0  # creation time: orders binds, since the newest SO_REUSEPORT group wins (R1)
    environ: tuple[tuple[str, str], ...] | None = None  # its EPICS_* variables; None: unreadable


@dataclass(frozen=True)
class FleetIOC:
    """One IOC of the running fleet: what it should serve and where it runs."""

    name: str
    runtime: str
    pvs: tuple[str, ...]
    pids: tuple[int, ...] = ()  # the server process and its supervisor/container init
    container: str | None = None
    state: str = "running"


@dataclass(frozen=True)
class FleetView:
    name: str
    iocs: tuple[FleetIOC, ...]
    source: str = ""  # the fleet file, for fixes that name a command


@dataclass(frozen=True)
class Observation:
    """Everything the doctor looks at, gathered once by `gather.run` (or made up by a test)."""

    client: ClientSettings
    snapshot: HostSnapshot
    destinations: tuple[Address, ...] = ()  # what was probed, in order
    processes: tuple[Process, ...] = ()
    probe: ProbeResult | None = None
    fleet: FleetView | None = None
    probe_auto: bool = False
    unresolved: tuple[str, ...] = ()  # host names in the list the doctor could not resolve
    notes: tuple[str, ...] = ()
    fixed_probe: ProbeResult | None = None  # the same search, every round from ONE source port (as clients do)
    unsearchable: tuple[tuple[str, str], ...] = ()  # (name, why) of names no CA search can carry


@dataclass(frozen=True)
class Server:
    """A CA server as the replies show it: a local process (by pid) or a remote ip:tcp_port."""

    key: str
    pid: int | None
    label: str
    container: str | None
    runtime: str
    tcp: Address

    def describe(self) -> str:
        return f"pid {self.pid} ({self.label})" if self.pid else f"{self.tcp[0]}:{self.tcp[1]}"


@dataclass(frozen=True)
class IOCReach:
    name: str
    pid: int | None
    container: str | None
    reach: float  # mean over its names of the fraction of rounds it answered on this path
    server: str  # ip:tcp_port a client would connect to
    predicted: float | None  # rules.predict's share for this IOC; None: not modelled (remote)
    names: int  # how many of the searched names it serves
    fixed_reach: float | None = None  # the same from one fixed source port; None: not measured

    def to_dict(self) -> dict:
        return {"name": self.name, "pid": self.pid, "container": self.container, "reach": round(self.reach, 4),
                "server": self.server, "predicted": None if self.predicted is None else round(self.predicted, 4),
                "names": self.names,
                "fixed_reach": None if self.fixed_reach is None else round(self.fixed_reach, 4)}


@dataclass(frozen=True)
class PathReport:
    """One address the client searches: who answered, duplicates, and prediction against measurement."""

    address: str
    port: int
    kind: str  # broadcast | unicast (this host) | remote (another host)
    iocs: tuple[IOCReach, ...]
    duplicates: tuple[dict, ...]
    predicted: rules.Prediction | None
    matches_prediction: bool | None  # None: nothing to compare (remote, or nothing searched)
    replies: int = 0
    fixed_port_iocs: tuple[str, ...] | None = None  # who a client on one fixed source port reaches

    def to_dict(self) -> dict:
        return {"address": self.address, "port": self.port, "kind": self.kind,
                "iocs": [i.to_dict() for i in self.iocs], "duplicates": list(self.duplicates),
                "predicted": self.predicted.to_dict() if self.predicted else None,
                "matches_prediction": self.matches_prediction, "replies": self.replies,
                "fixed_port_iocs": None if self.fixed_port_iocs is None else list(self.fixed_port_iocs)}


@dataclass(frozen=True)
class Diagnosis:
    client: ClientSettings
    findings: tuple[Finding, ...]
    paths: tuple[PathReport, ...]
    holders: tuple[dict, ...]
    probe: dict
    notes: tuple[str, ...] = field(default=())
    name_servers: tuple[dict, ...] = field(default=())  # doctor.nameservers: one report per EPICS_CA_NAME_SERVERS entry

    @property
    def has_errors(self) -> bool:
        return has_errors(self.findings)

    @property
    def verdict(self) -> str:
        errors = errors_of(self.findings)
        warnings = [f for f in self.findings if f.severity == WARNING]
        if errors:
            more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
            fix = errors[0].fix[:1].lower() + errors[0].fix[1:]
            return f"NOT OK: {errors[0].message}. Fix: {fix}{more}."
        searched = self.probe.get("names", 0)
        if warnings:
            return f"Works, with {len(warnings)} warning(s); first: {warnings[0].message}."
        if searched:
            return f"OK: every searched name answered on every path as the rules predict ({len(self.paths)} path(s))."
        return "OK: no problem in the settings or on this host (nothing was searched: give --names or --fleet)."

    def raise_for_errors(self) -> None:
        """Raise FindingsError (exit 1) when an error finding remains; call after rendering."""
        raise_for_errors(self.findings, "doctor")

    def to_dict(self) -> dict:
        return {"verdict": self.verdict, "ok": not self.has_errors, "client": self.client.to_dict(),
                "findings": [f.to_dict() for f in self.findings], "paths": [p.to_dict() for p in self.paths],
                "ports": list(self.holders), "probe": self.probe, "notes": list(self.notes),
                "name_servers": list(self.name_servers)}
