"""Backends start, find and stop IOCs; the rest of iocfleet never talks to Docker or spawns processes.

One small interface (`Backend`) with two implementations: `docker.DockerBackend` (containers with host
networking, found by label) and `process.ProcessBackend` (supervised local processes, found by state
files). `select(name)` picks one; `auto` means Docker when an engine answers a ping, else processes.
"""

from __future__ import annotations

from orchestrator.errors import BackendUnavailable, UsageError
from orchestrator.plan.identity import (LABEL_FLEET, LABEL_IOC, LABEL_PLAN, LABEL_ROLE, LABEL_RUNTIME, REPEATER,
                                        plan_hash)
from orchestrator.run.instance import Backend, Instance, Member

# The names callers used from here before identity and instance had their own modules.
__all__ = ["Backend", "Instance", "select", "plan_hash", "REPEATER", "LABEL_FLEET", "LABEL_IOC", "LABEL_PLAN",
           "LABEL_ROLE", "LABEL_RUNTIME"]


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


