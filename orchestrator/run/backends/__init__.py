"""Backends start, find and stop IOCs; the rest of iocfleet never talks to Docker or spawns processes.

One small interface (`Backend`) with two implementations: `docker.DockerBackend` (containers with host
networking, found by label) and `process.ProcessBackend` (supervised local processes, found by state
files). `select(name)` picks one; `auto` means Docker when an engine answers a ping, else processes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Iterator, Protocol

from orchestrator.errors import BackendUnavailable, UsageError
from orchestrator.plan.model import PlannedIOC

LABEL_FLEET = "org.iocfleet.fleet"
LABEL_IOC = "org.iocfleet.ioc"
LABEL_PLAN = "org.iocfleet.plan"
LABEL_ROLE = "org.iocfleet.role"
LABEL_RUNTIME = "org.iocfleet.runtime"
REPEATER = "ca-repeater"  # the instance name of a fleet's CA repeater


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


def plan_hash(ioc: PlannedIOC, image: str | None) -> str:
    """A digest of everything that, when changed, means the IOC must be recreated."""
    data = {**ioc.to_dict(), "limits": asdict(ioc.limits), "image_ref": image}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def select(name: str = "auto") -> Backend:
    """The backend called `name`; `auto`: Docker if an engine answers a ping, else local processes."""
    if name not in ("auto", "docker", "process"):
        raise UsageError(f"unknown backend {name!r}", "--backend", "use auto, docker or process")
    if name in ("auto", "docker"):
        from orchestrator.run.backends.docker import DockerBackend, engine_error

        problem = engine_error()
        if problem is None:
            return DockerBackend()
        if name == "docker":
            raise BackendUnavailable(f"no Docker Engine answers: {problem}", "--backend docker",
                                     "start dockerd (or set DOCKER_HOST), or use --backend process")
    from orchestrator.run.backends.process import ProcessBackend

    return ProcessBackend()
