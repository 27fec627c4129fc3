"""Packs (issue 14): which caproto IOCs share one process, and the start unit that runs each pack.

A pack runs many caproto servers in one Python process (ioc_images/common/iocfleet_ioc/pack.py). Each
member keeps its own UDP socket on its planned bind and port, its own TCP listener, beacons and PV table, so
the network sees exactly the planned IOCs; only processes (and containers) are fewer. Pure: plain data in,
plain data out; the planner records every grouping as a `Decision`.

Only iocfleet's own caproto program is packed. A softioc is an EPICS IOC, one per process; an image or a
user's PVGroup runs its own code. Members of one pack share everything a process has once: user, limits,
restart policy, root filesystem mode and their own `env` entries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

from orchestrator.plan.model import PlannedIOC

RULE = "pack"  # the Decision rule of packing choices (not a network rule: packing changes no socket)
PACK_VAR = "IOCFLEET_PACK"  # the pack's description: {"pack": NAME, "members": [{"name", "env"}, ...]}


@dataclass(frozen=True)
class Pack:
    """One pack: its name (the unit's instance and container name) and its members, in plan order."""

    name: str
    members: tuple[str, ...]
    shared: str  # what the members have in common, for --explain

    def to_dict(self) -> dict:
        return {"name": self.name, "members": list(self.members), "shared": self.shared}


@dataclass(frozen=True)
class Packing:
    """The fleet's packing: asked for or not, the pack size, the packs and every IOC left unpacked with why."""

    requested: bool
    size: int
    packs: tuple[Pack, ...] = ()
    unpacked: tuple[tuple[str, str], ...] = ()  # (IOC, why it runs alone)

    def pack_of(self, ioc: str) -> str | None:
        return next((p.name for p in self.packs if ioc in p.members), None)

    def to_dict(self) -> dict:
        return {"requested": self.requested, "size": self.size, "packs": [p.to_dict() for p in self.packs],
                "unpacked": [{"ioc": name, "why": why} for name, why in self.unpacked]}


def why_alone(ioc: PlannedIOC) -> str | None:
    """Why `ioc` cannot join a pack, or None when it can."""
    if ioc.runtime != "caproto":
        return f"runtime {ioc.runtime}: one EPICS IOC per process" if ioc.runtime == "softioc" else \
            "runtime image: the image runs its own program"
    if ioc.group is not None:
        return "a user PVGroup runs the user's code in its own process"
    if ioc.image or ioc.command or ioc.entrypoint:
        return "it runs its own image or command"
    return None


def _key(ioc: PlannedIOC) -> tuple:
    """What members of one pack must share: everything that is set once per process or container."""
    own_env = tuple(sorted((k, v) for k, v in ioc.env if not k.startswith(("EPICS_", "IOCFLEET_"))))
    return ioc.user, ioc.limits, ioc.restart, ioc.read_only, own_env


def _shared_text(ioc: PlannedIOC) -> str:
    parts = [f"user {ioc.user or 'default'}", f"limits {ioc.limits.memory or '-'}/{ioc.limits.pids or '-'}",
             f"restart {ioc.restart}", "read-only root" if ioc.read_only else "writable root"]
    own = [k for k, _ in ioc.env if not k.startswith(("EPICS_", "IOCFLEET_"))]
    if own:
        parts.append(f"env {', '.join(own)}")
    return ", ".join(parts)


def assign(iocs: tuple[PlannedIOC, ...], requested: bool, size: int, say) -> tuple[tuple[PlannedIOC, ...], Packing]:
    """Group the packable IOCs into packs of at most `size`; return the IOCs (members carry their pack) and
    the packing. Packs are named pack-1, pack-2, ... in plan order, never an IOC's name."""
    if not requested:
        return iocs, Packing(False, size)
    alone = {i.name: why_alone(i) for i in iocs}
    unpacked = tuple((name, why) for name, why in alone.items() if why is not None)
    groups: dict[tuple, list[PlannedIOC]] = {}
    for ioc in iocs:
        if alone[ioc.name] is None:
            groups.setdefault(_key(ioc), []).append(ioc)
    taken = {i.name for i in iocs}
    names = (n for n in (f"pack-{k}" for k in range(1, 10**6)) if n not in taken)
    packs = []
    for members in groups.values():
        for start in range(0, len(members), size):
            chunk = members[start:start + size]
            packs.append(Pack(next(names), tuple(m.name for m in chunk), _shared_text(chunk[0])))
    packing = Packing(True, size, tuple(packs), unpacked)
    _explain(packing, len(groups), say)
    of = {m: p.name for p in packs for m in p.members}
    return tuple(replace(i, pack=of[i.name]) if i.name in of else i for i in iocs), packing


def _explain(packing: Packing, groups: int, say) -> None:
    if packing.packs:
        say(RULE, f"Packed {sum(len(p.members) for p in packing.packs)} caproto IOC(s) into {len(packing.packs)} "
                  f"process(es) of at most {packing.size}: each member keeps its own UDP socket, TCP port, beacons "
                  "and PVs, so clients see the same IOCs (a pack is one container or process, restarted as one).")
        if groups > 1:
            say(RULE, f"{groups} groups, because members of one pack must share user, limits, restart policy, "
                      "root filesystem mode and own env entries.")
        for p in packing.packs:
            say(RULE, f"{p.name}: {len(p.members)} IOC(s) ({_names(p.members)}); shared: {p.shared}.")
    for name, why in packing.unpacked:
        say(RULE, f"{name} runs alone: {why}.")


def _names(names: tuple[str, ...]) -> str:
    return ", ".join(names) if len(names) <= 4 else f"{names[0]}, {names[1]}, ... {names[-1]}"


def units(iocs: tuple[PlannedIOC, ...], packing: Packing) -> tuple[PlannedIOC, ...]:
    """The start units of the pack program, one per pack (a caproto unit whose env describes its members)."""
    by_name = {i.name: i for i in iocs}
    return tuple(pack_unit(p, [by_name[m] for m in p.members]) for p in packing.packs)


def pack_unit(pack: Pack, members: list[PlannedIOC]) -> PlannedIOC:
    """The unit a backend starts for `pack`: iocfleet's caproto program with IOCFLEET_PACK set. Its own env
    is the first member's (less its description), so host-wide views read the fleet's ports and lists off it;
    each member's full env is in the description. Health and liveness are the first member's."""
    first = members[0]
    description = {"pack": pack.name, "members": [{"name": m.name, "env": m.env_dict()} for m in members]}
    env = tuple((k, v) for k, v in first.env if k != "IOCFLEET_IOC")
    env += ((PACK_VAR, json.dumps(description, separators=(",", ":"))),)
    return PlannedIOC(
        name=pack.name, runtime="caproto", prefix=first.prefix, declared_as=pack.name, udp_port=first.udp_port,
        tcp_port=None, bind=first.bind, env=env, pvs=(), user=first.user, limits=pack_limits(first.limits, len(members)),
        restart=first.restart, readiness="none", builtin=first.builtin, read_only=first.read_only,
        iocstats=first.iocstats, members=pack.members)


def pack_limits(limits, members: int):
    """A pack's container limits: `limits.memory` is per IOC, so a pack of N may use N times it; `pids`
    stays per process (a pack is one process)."""
    if not limits.memory or members == 1:
        return limits
    units = {"b": 1, "k": 2**10, "m": 2**20, "g": 2**30}
    text = limits.memory.lower()
    number, unit = (text[:-1], text[-1]) if text[-1] in units else (text, "b")
    return replace(limits, memory=f"{int(number) * units[unit] * members}b")


def findings(packing: Packing | None) -> list:
    """`pack` asked for a fleet with nothing to pack: a warning, not an error (issue 14)."""
    from orchestrator.findings import Finding

    if packing is None or not packing.requested or packing.packs:
        return []
    return [Finding("pack-nothing", "warning", "pack is on, but no IOC of the fleet can be packed "
                    f"({'; '.join(f'{n}: {w}' for n, w in packing.unpacked[:3]) or 'no IOCs'})",
                    "only caproto IOCs of iocfleet's own program are packed; remove `pack` or ignore this", "R16",
                    tuple(n for n, _ in packing.unpacked))]
