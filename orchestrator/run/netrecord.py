"""What a fleet was planned on: interface, address and broadcast at `up`, kept to tell when the host moved.

`up` writes the record after the fleet is ready; `status` and `doctor` compare it with the host as it is
now (`stale_findings`, pure) and flag `stale-fleet` when the interface went away or down, or its address
or broadcast changed (a DHCP renew, a re-addressing): the IOCs still bind and the clients still search
what the old plan said. `iocfleet up` again re-plans on the current addresses and replaces the IOCs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from orchestrator.hostmodel import HostSnapshot
from orchestrator.plan.model import Finding, Plan

@dataclass(frozen=True)
class NetRecord:
    """The network facts a running fleet's plan rests on."""

    fleet: str
    interface: str | None
    address: str | None
    broadcast: str | None
    client_addr_list: str

    @classmethod
    def of(cls, plan: Plan) -> "NetRecord":
        return cls(plan.fleet, plan.interface, plan.address, plan.broadcast,
                   plan.client_env_dict().get("EPICS_CA_ADDR_LIST", ""))

    def to_dict(self) -> dict:
        return asdict(self)


def stale_findings(record: NetRecord | None, snapshot: HostSnapshot) -> list[Finding]:
    """`stale-fleet` findings: how the host's interface differs from what the fleet was planned on."""
    if record is None or record.interface is None:
        return []
    name, fix = record.interface, f"run `iocfleet up` again for fleet {record.fleet}: it re-plans on the " \
                                  "current addresses and replaces the IOCs (clients need the new settings it prints)"
    iface = snapshot.interface(name)
    problem = None
    if iface is None:
        problem = f"interface {name} is gone"
    elif not iface.up:
        problem = f"interface {name} went down: no client on its subnet reaches the IOCs"
    elif record.address and record.address not in iface.addresses():
        now = ", ".join(iface.addresses()) or "no IPv4 address"
        problem = f"address {record.address} of {name} is gone (now: {now}): IOCs are bound to an address the host no longer has"
    else:
        addr = next(a for a in iface.ipv4 if a.address == record.address) if record.address else None
        now = (addr.broadcast if addr and addr.broadcast else
               str(addr.network().broadcast_address) if addr and iface.loopback else None)
        if addr is not None and now != record.broadcast:
            problem = (f"the broadcast of {record.address} on {name} changed from {record.broadcast or 'none'} to "
                       f"{now or 'none'}: clients search {record.client_addr_list or 'the old list'}")
    if problem is None:
        return []
    return [Finding("stale-fleet", "error", f"fleet {record.fleet} was planned on {name} "
                    f"{record.address or ''} (broadcast {record.broadcast or 'none'}), but {problem}", fix, "R16",
                    (name,))]


def path_of(fleet: str, environ=None) -> Path:
    """$XDG_STATE_HOME/iocfleet/network/FLEET.json (apart from the process backend's instance files)."""
    from orchestrator.run.statedir import state_root

    return state_root(environ) / "network" / f"{fleet}.json"


def write(record: NetRecord, path: Path) -> None:
    from orchestrator.run.statedir import make_dir

    make_dir(path.parent)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record.to_dict(), sort_keys=True))
    tmp.replace(path)


def read(path: Path) -> NetRecord | None:
    """The record at `path`, or None when there is none or it is unreadable (then nothing is judged)."""
    try:
        data = json.loads(path.read_text())
        return NetRecord(**{k: data.get(k) for k in NetRecord.__dataclass_fields__})
    except (OSError, ValueError, TypeError):
        return None


def remove(path: Path) -> None:
    path.unlink(missing_ok=True)
