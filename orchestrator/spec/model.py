"""The fleet file: what IOCs to run, what PVs they serve, and the network intent.

`load(path)` reads and validates a fleet file and returns a frozen `FleetSpec`, or raises `SpecError`
listing every problem as `FILE:LINE: field: problem — fix`. `from_dict` does the same for data built in
code (the pytest plugin). Validation lives in `specrules.py`; this module holds the types and the entry
points.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from orchestrator.errors import SpecError

RUNTIMES = ("caproto", "softioc", "image")
RESTART_POLICIES = ("no", "on-failure", "always")
STRATEGIES = ("auto", "single", "shared-port", "distinct-ports", "name-server")
CLIENT_PLACES = ("auto", "same-host", "subnet", "routed")
FANOUTS = ("none", "dnat")  # network.fanout: R17, plan/fanout.py
PV_TYPES = ("float", "int", "str", "enum")
SIMULATIONS = ("sine", "ramp", "noise", "counter")
STANDARD_PVS = ("HEARTBEAT", "UPTIME")


@dataclass(frozen=True)
class PVSpec:
    """One process variable an IOC serves; the full name is the IOC prefix plus `name`."""

    name: str
    type: str = "float"
    value: object = None
    count: int = 1
    sim: str | None = None
    rate_hz: float = 1.0
    enum_strings: tuple[str, ...] = ()
    writable: bool = True

    def to_dict(self) -> dict:
        data = asdict(self)
        data["enum_strings"] = list(self.enum_strings)
        return data


@dataclass(frozen=True)
class Limits:
    """Resource limits applied to each IOC container (docker backend)."""

    memory: str | None = None  # docker notation, e.g. "256m"
    pids: int | None = None


@dataclass(frozen=True)
class IOCSpec:
    """One IOC as declared in the fleet file (before replica expansion)."""

    name: str
    runtime: str
    prefix: str
    replicas: int = 1
    pvs: tuple[PVSpec, ...] = ()
    image: str | None = None
    command: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    user: str | None = None
    limits: Limits = field(default_factory=Limits)
    restart: str = "on-failure"
    host: str | None = None  # a name from `hosts:`; None: this machine
    line: int = 0

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "runtime": self.runtime,
            "prefix": self.prefix,
            "replicas": self.replicas,
            "pvs": [p.to_dict() for p in self.pvs],
            "image": self.image,
            "command": list(self.command),
            "env": dict(self.env),
            "user": self.user,
            "limits": asdict(self.limits),
            "restart": self.restart,
            "host": self.host,
        }


@dataclass(frozen=True)
class NetworkSpec:
    """Where the fleet listens and how clients reach it."""

    interface: str = "auto"
    strategy: str = "auto"
    base_port: int = 5064
    clients: str = "auto"
    fanout: str = "none"  # "dnat": unicast searches to this host fan out to every IOC (plan/fanout.py)


@dataclass(frozen=True)
class HostSpec:
    """Another machine of a multi-host fleet: the interface to serve on and its address (CIDR).

    Without `address` the host is this machine and is inspected.
    """

    name: str
    interface: str = "auto"
    address: str | None = None  # e.g. "10.0.1.5/24"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FleetSpec:
    """A validated fleet file."""

    name: str
    network: NetworkSpec
    iocs: tuple[IOCSpec, ...]
    source: str = "<dict>"
    hosts: tuple[HostSpec, ...] = ()

    def to_dict(self) -> dict:
        return {
            "fleet": self.name,
            "network": asdict(self.network),
            "hosts": [h.to_dict() for h in self.hosts],
            "iocs": [i.to_dict() for i in self.iocs],
        }


def load(path: str | Path) -> FleetSpec:
    """Read and validate a fleet file; raise SpecError with one line per problem."""
    source = str(path)
    try:
        # A FIFO or a device would block or never end: read regular files only.
        if Path(path).exists() and not Path(path).is_dir() and not Path(path).is_file():
            raise SpecError([f"{source}:0: file: not a regular file (a pipe or device) — "
                             "give the path of a fleet YAML file"])
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([f"{source}:0: file: not found — check the path, or create it (see docs/fleet-file.md)"])
    except IsADirectoryError:
        raise SpecError([f"{source}:0: file: is a directory — give the path of a fleet YAML file"])
    except PermissionError:
        raise SpecError([f"{source}:0: file: permission denied — make it readable (chmod a+r) or run as its owner"])
    except UnicodeDecodeError:
        raise SpecError([f"{source}:0: file: not UTF-8 text — save the fleet file as UTF-8 YAML"])
    return parse(text, source)


def parse(text: str, source: str = "<string>") -> FleetSpec:
    """Validate fleet-file text; raise SpecError with one line per problem."""
    from orchestrator.spec import validate as specrules

    return specrules.validate_text(text, source)


def from_dict(data: dict, source: str = "<dict>") -> FleetSpec:
    """Validate a fleet given as plain Python data (as the YAML would load)."""
    from orchestrator.spec import validate as specrules

    return specrules.validate_data(data, source)
