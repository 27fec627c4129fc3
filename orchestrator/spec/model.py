"""The fleet file's types: what IOCs to run, what PVs they serve, and the network intent.

Plain frozen dataclasses and the allowed values of their fields. Reading and validating a file is
`spec.load` (`load.py`, with `validate.py`), which builds these types; this module imports neither.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

RUNTIMES = ("caproto", "softioc", "image")
RESTART_POLICIES = ("no", "on-failure", "always")
STRATEGIES = ("auto", "single", "shared-port", "distinct-ports", "name-server")
CLIENT_PLACES = ("auto", "same-host", "subnet", "routed")
FANOUTS = ("none", "dnat")  # network.fanout: R17, plan/fanout.py
PV_TYPES = ("float", "int", "str", "enum")
SIMULATIONS = ("sine", "ramp", "noise", "counter")
STANDARD_PVS = ("HEARTBEAT", "UPTIME")
READINESS = ("pvs", "server", "none")
# Packed fleets (issue 14): many caproto IOCs in one process; `pack_size` IOCs at most per pack.
PACK_SIZE_DEFAULT = 64
PACK_SIZE_MAX = 1024


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
class Mount:
    """A host folder or file made visible in an IOC container (`source` is absolute after validation)."""

    source: str
    target: str
    read_only: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class DbLoad:
    """One EPICS database of a softioc IOC: the file (absolute), its macros, and the records it defines."""

    file: str
    macros: tuple[tuple[str, str], ...] = ()
    records: tuple[str, ...] = ()  # full record names and aliases after macro expansion
    digest: str = ""  # of the file and its includes: a changed database recreates the IOC

    def to_dict(self) -> dict:
        return {"file": self.file, "macros": dict(self.macros), "records": list(self.records),
                "digest": self.digest}


@dataclass(frozen=True)
class GroupSpec:
    """A user's caproto PVGroup: `module` is "pkg.mod:Class", importable from `python_path`."""

    module: str
    python_path: str | None = None  # absolute folder, mounted read-only in containers
    kwargs: str = "{}"  # JSON text of the keyword arguments (kept as text: frozen and hashable)
    pvs: tuple[str, ...] = ()  # the names the group declares, without the IOC prefix
    digest: str = ""  # of the .py files under python_path: changed code recreates the IOC

    def to_dict(self) -> dict:
        import json

        return {"module": self.module, "python_path": self.python_path, "kwargs": json.loads(self.kwargs),
                "pvs": list(self.pvs), "digest": self.digest}


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
    entrypoint: tuple[str, ...] = ()
    workdir: str | None = None
    mounts: tuple[Mount, ...] = ()
    stdin_open: bool = False
    readiness: str = "pvs"  # pvs | server | none (resolved: the default is filled in)
    db: tuple[DbLoad, ...] = ()
    group: GroupSpec | None = None

    read_only: bool = True  # a read-only root filesystem with a /tmp tmpfs (containers)
    # iocStats IOC name (NAME:HEARTBEAT, ...): None derives it from the prefix for caproto/softioc (and
    # means "none" for image IOCs); False turns iocStats off (spec/iocstats.py)
    iocstats: str | bool | None = None

    @property
    def builtin(self) -> bool:
        """Whether iocfleet's own IOC program runs it (and so serves HEARTBEAT and UPTIME)."""
        return self.runtime in ("caproto", "softioc") and self.group is None

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
            "entrypoint": list(self.entrypoint),
            "workdir": self.workdir,
            "mounts": [m.to_dict() for m in self.mounts],
            "stdin_open": self.stdin_open,
            "readiness": self.readiness,
            "db": [d.to_dict() for d in self.db],
            "group": self.group.to_dict() if self.group else None,
            "read_only": self.read_only,
            "iocstats": self.iocstats,
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
    pack: bool = False  # caproto IOCs run packed: many in one process (plan/packing.py)
    pack_size: int = PACK_SIZE_DEFAULT

    def to_dict(self) -> dict:
        return {
            "fleet": self.name,
            "network": asdict(self.network),
            "hosts": [h.to_dict() for h in self.hosts],
            "iocs": [i.to_dict() for i in self.iocs],
            "pack": self.pack,
            "pack_size": self.pack_size,
        }
