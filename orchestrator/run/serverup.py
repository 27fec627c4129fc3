"""Evidence that an IOC's CA server is up, for IOCs whose PVs iocfleet does not know (`readiness: server`).

A CA server answers a search for a name it does not serve with silence, so a probe cannot tell "up"
from "down". What CA does give: the server's TCP listener (on the planned port when the plan fixes one,
R9), seen in the IOC's own processes, and the beacons it sends to the fleet's beacon address (R11), which
carry that TCP port. The listener is looked up through the backend, so it belongs to this IOC for sure.
"""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.plan.model import Plan


def listener_evidence(backend, plan: Plan):
    """A `server_up(names)` for readiness: IOC name -> "TCP listener on port N" for IOCs listening."""
    planned = {i.name: i.tcp_port for i in plan.iocs}

    def server_up(names: Sequence[str]) -> dict[str, str]:
        found = {}
        for inst in backend.instances(plan.fleet):
            if inst.name not in names or inst.state != "running" or inst.tcp_port is None:
                continue
            want = planned.get(inst.name)
            if want is None or inst.tcp_port == want:
                found[inst.name] = f"server: TCP listener on port {inst.tcp_port}"
        return found

    return server_up
