"""Every IOC instance sharing this host's network, with its planned environment: the host-wide view's raw
material (`iocfleet ls`, cross-fleet checks, the host repeater's "does any fleet still run?")."""

from __future__ import annotations

import json

from orchestrator import host
from orchestrator.run.instance import Member


def members(environ=None) -> list[Member]:
    """Every instance of every fleet sharing this host's network: docker containers (if an engine answers
    and this is the host's namespace), this user's process fleets, and process fleets of other state
    directories in this namespace."""
    from orchestrator.run.backends.docker import host_members
    from orchestrator.run.backends.process import ProcessBackend

    own = ProcessBackend(environ).members()
    # docker IOCs use host networking: they share ports only with what runs in pid 1's namespace
    here, init = host.netns_id(), host.netns_id(1)
    docker = host_members() if here == init or "?" in (here, init) else []
    return [*docker, *own, *_supervised_members({(m.fleet, m.name) for m in own})]


def _supervised_members(known: set[tuple[str, str]]) -> list[Member]:
    """Process fleets of other state directories (another user, another XDG_STATE_HOME), found by their
    running supervisors' `--state` files, in this network namespace only (a fleet in another namespace
    shares no port with this one). Processes that vanish mid-scan are skipped."""
    from orchestrator.run.backends.process import ProcessBackend

    reader = ProcessBackend({})
    here = host.netns_id()
    out = []
    for pid, cmd in host.processes_with_argument("orchestrator.run.supervise"):
        if "--state" not in cmd or host.netns_id(pid) not in (here, "?"):
            continue
        try:
            with open(cmd[cmd.index("--state") + 1]) as handle:
                data = json.loads(handle.read(1 << 20))
            inst = reader._instance(data, details=False)
        except (IndexError, OSError, ValueError, KeyError, TypeError):
            continue
        if (inst.fleet, inst.name) in known:
            continue
        known.add((inst.fleet, inst.name))
        out.append(Member("process", inst.fleet, inst.name, inst.role, inst.runtime, inst.state, inst.pid, None,
                          dict(data.get("env") or {}), None))
    return out
