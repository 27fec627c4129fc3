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

    @property
    def running(self) -> bool:
        return self.state == "running"

    def to_dict(self) -> dict:
        return asdict(self)


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
