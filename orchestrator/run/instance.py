"""What the run layer talks to: an `Instance` (a running IOC or repeater as a backend sees it) and the
`Backend` interface both backends implement. `lifecycle` depends on these, never on a backend module."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterator, Protocol

from orchestrator.plan.model import PlannedIOC


@dataclass(frozen=True)
class Instance:
    """A running (or exited) IOC or repeater of a fleet, as a backend sees it."""

    fleet: str
    name: str
    role: str  # "ioc" | "repeater"
    runtime: str
    state: str  # running | restarting | exited | created | missing
    plan_hash: str
    exit_code: int | None = None
    restarts: int = 0
    container: str | None = None
    pid: int | None = None
    tcp_port: int | None = None
    health: str | None = None  # docker: the healthcheck's verdict (a CA read of iocStats UPTIME)
    members: tuple[str, ...] = ()  # a pack (issue 14): the IOCs this one process or container runs
    pack: str | None = None  # a row of `per_ioc`: the pack this IOC runs in

    @property
    def running(self) -> bool:
        return self.state == "running"

    def runs(self, ioc: str) -> bool:
        """Whether this instance runs IOC `ioc` (itself, or as a member of its pack)."""
        return self.name == ioc or ioc in self.members

    def to_dict(self) -> dict:
        return asdict(self)


def unit_of(instances: list[Instance], ioc: str) -> Instance | None:
    """The instance that runs IOC `ioc`: its own, or its pack's."""
    own = next((i for i in instances if i.name == ioc), None)
    return own or next((i for i in instances if ioc in i.members), None)


def per_ioc(instances: list[Instance]) -> list[Instance]:
    """One row per IOC: each pack becomes one row per member (same state, pid and container, `pack` set)."""
    from dataclasses import replace

    out = []
    for inst in instances:
        if inst.members:
            out += [replace(inst, name=m, members=(), pack=inst.name, tcp_port=None) for m in inst.members]
        else:
            out.append(inst)
    return out


class Backend(Protocol):
    name: str
    ioc_uid: int

    def instances(self, fleet: str | None = None, details: bool = True) -> list[Instance]: ...
    def prepare(self, iocs: list[PlannedIOC], progress) -> None: ...
    def start(self, fleet: str, ioc: PlannedIOC, plan_hash: str) -> Instance: ...
    def start_repeater(self, fleet: str, port: int) -> Instance: ...
    def remove(self, instance: Instance) -> None: ...
    def restart(self, instance: Instance) -> Instance: ...
    def logs(self, instance: Instance, tail: int | None = 20) -> list[str]: ...
    def follow(self, instance: Instance) -> Iterator[str]: ...


@dataclass(frozen=True)
class Member:
    """An instance as the host-wide view sees it (`iocfleet ls`, cross-fleet checks): with its environment."""

    backend: str
    fleet: str
    name: str
    role: str
    runtime: str
    state: str
    pid: int | None
    container: str | None
    env: dict
    user: str | None = None


def expand_pack(member: Member) -> list[Member]:
    """A pack's instance as the host-wide view needs it: one `Member` per packed IOC, each with that IOC's
    planned env (so cross-fleet checks see every port and PV); any other instance unchanged. The pack's
    description is its IOCFLEET_PACK, or the state file it was moved to when large (IOCFLEET_PACK_FILE)."""
    import json
    from dataclasses import replace

    text = member.env.get("IOCFLEET_PACK")
    if text is None and "IOCFLEET_PACK_FILE" in member.env:
        from orchestrator.run import statedir

        try:
            text = statedir.read_text(statedir.fleet_dir(member.fleet) / f"{member.name}.ioc.json")
        except Exception:  # noqa: BLE001 - gone, unreadable or not ours: the pack shows as itself
            text = None
    if text is None:
        return [member]
    try:
        items = json.loads(text)["members"]
        return [replace(member, name=str(m["name"]), env={str(k): str(v) for k, v in dict(m["env"]).items()})
                for m in items]
    except (ValueError, KeyError, TypeError):
        return [member]
