"""Every IOC instance on this host with its planned environment: the host-wide view's raw material
(`iocfleet ls`, cross-fleet checks, the host repeater's "does any fleet still run?")."""

from __future__ import annotations

from orchestrator.run.instance import Member


def members(environ=None) -> list[Member]:
    """Every instance of every fleet on this host: docker containers (if an engine answers) and this
    user's process fleets."""
    from orchestrator.run.backends.docker import host_members
    from orchestrator.run.backends.process import ProcessBackend

    return [*host_members(), *ProcessBackend(environ).members()]
