"""UID groups on a shared UDP port, and which one receives unicast right now (R2), as measured by the probe.

The kernel puts SO_REUSEPORT sockets of one address and one uid into a group; a unicast datagram goes
to the group of the most recently bound socket, older members of that group included. So with two uids
on a port one group takes every unicast search and the other gets none, and restarting any IOC flips
all unicast to that IOC's uid. Pure: reads an Observation.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict

from orchestrator.doctor.checks import server_ports, who
from orchestrator.doctor.model import Observation, Process
from orchestrator.plan.model import Finding

ERROR, WARNING = "error", "warning"


def _unicast(address: str, obs: Observation) -> bool:
    if address == "255.255.255.255":
        return False
    try:
        ip = ipaddress.IPv4Address(address)
    except ValueError:
        return False
    return not any(address in i.broadcasts() for i in obs.snapshot.interfaces) and not str(ip).endswith(".255")


def uid_group_findings(obs: Observation, procs: dict[int, Process], identify) -> list[Finding]:
    """One `unicast-uid-theft` error per probed unicast address whose port holders form several uid groups."""
    if obs.probe is None:
        return []
    out = []
    for dest in obs.destinations:
        address, port = dest
        if not _unicast(address, obs):
            continue
        holders = [h for h in obs.snapshot.holders("udp", port)
                   if h.pid and h.uid is not None and h.address in (address, "0.0.0.0")]
        groups: dict[int, list] = defaultdict(list)
        for h in holders:
            groups[h.uid].append(h)
        if len(groups) < 2:
            continue
        rounds = obs.probe.rounds or 1
        answered: dict[int, set[int]] = defaultdict(set)  # uid -> rounds in which one of its servers answered
        uid_of_pid = {h.pid: h.uid for h in holders}
        for reply in obs.probe.select(destination=dest):
            server = identify(reply, obs, procs)
            uid = uid_of_pid.get(server.pid)
            if uid is not None:
                answered[uid].add(reply.round)
        shares = {uid: len(answered[uid]) / rounds for uid in groups}
        winner = max(shares, key=lambda u: shares[u])
        parts = []
        for uid in sorted(groups, key=lambda u: -shares[u]):
            members = ", ".join(sorted({who(h, procs) for h in groups[uid]}))
            parts.append(f"uid {uid} ({members}): measured reach {shares[uid]:.0%}")
        out.append(Finding(
            "unicast-uid-theft", ERROR,
            f"UDP {address}:{port} is shared by {len(groups)} uid groups; unicast goes only to the group of the most "
            f"recently bound socket, now uid {winner}: " + "; ".join(parts)
            + f" ({rounds} searches each). Restarting any IOC there flips all unicast to its uid",
            f"search the broadcast address instead of {address}, or run everything on port {port} as one uid",
            "R2", tuple(str(h.pid) for h in holders)))
    return out


def predicted_uid_groups(obs: Observation, procs: dict[int, Process]) -> list[Finding]:
    """For ports no unicast search measured: the uid groups, and which one receives unicast now, predicted
    from the most recently started holder (its socket is the newest bind)."""
    measured = {(a, p) for a, p in obs.destinations if _unicast(a, obs)}
    out = []
    for port in server_ports(obs):
        by_address: dict[str, list] = defaultdict(list)
        for h in obs.snapshot.holders("udp", port):
            if h.pid and h.uid is not None:
                by_address[h.address].append(h)
        for address, holders in sorted(by_address.items()):
            uids = {h.uid for h in holders}
            if len(uids) < 2 or any(p == port and address in (a, "0.0.0.0") for a, p in measured):
                continue
            newest = max(holders, key=lambda h: procs[h.pid].started if h.pid in procs else 0.0)
            groups = "; ".join(f"uid {u}: " + ", ".join(sorted({who(h, procs) for h in holders if h.uid == u}))
                               for u in sorted(uids))
            out.append(Finding(
                "unicast-uid-theft", WARNING,
                f"UDP {address}:{port} is shared by {len(uids)} uid groups ({groups}); unicast to it goes only to "
                f"the group of the most recently bound socket, predicted now uid {newest.uid} ({who(newest, procs)} "
                "started last): the other groups get no unicast search at all, and restarting any IOC there flips "
                "all unicast to its uid",
                f"search a broadcast address, or run everything on port {port} as one uid; measure with "
                f"`iocfleet doctor --addr-list 127.0.0.1:{port} --names PV`",
                "R2", tuple(str(h.pid) for h in holders)))
    return out
