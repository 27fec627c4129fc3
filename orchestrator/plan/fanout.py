"""DNAT fan-out (`network.fanout: dnat`): a unicast search to this host reaches every IOC of a shared port.

Pure. The most common client setting in the field is `EPICS_CA_ADDR_LIST=<the IOC host's IP>`, which on a
shared port reaches one IOC per search (R3). A destination NAT rule in a fleet-owned nftables table
rewrites such a search to the interface's broadcast address before it is delivered, so every IOC hears
it (R4): `prerouting` for remote clients, `output` for local ones, and 127.0.0.1 -> 127.255.255.255 on
loopback. Measured in a lab namespace: 20 of 20 searches reached all three IOCs, remote and local, where
without the rule each search reached one. The side effect: a local client's search to the host IP
leaves the host as a subnet broadcast. This module plans the table; run/fanout.py applies it with `nft`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from orchestrator.plan.model import Finding

ERROR, WARNING = "error", "warning"


@dataclass(frozen=True)
class FanoutRule:
    chain: str  # "prerouting" (remote clients) | "output" (clients on this host)
    daddr: str
    port: int
    to: str

    def argv(self, table: str) -> list[str]:
        return ["nft", "add", "rule", "ip", table, self.chain, "ip", "daddr", self.daddr, "udp", "dport",
                str(self.port), "dnat", "to", self.to]

    def to_dict(self) -> dict:
        return {"chain": self.chain, "daddr": self.daddr, "port": self.port, "to": self.to}


@dataclass(frozen=True)
class FanoutPlan:
    table: str  # `table ip <table>`, owned by the fleet: created by up, deleted by down
    rules: tuple[FanoutRule, ...]

    def to_dict(self) -> dict:
        return {"kind": "dnat", "table": self.table, "rules": [r.to_dict() for r in self.rules]}


def table_name(fleet: str) -> str:
    """The fleet's own nftables table (never shared, never one we did not create)."""
    clean = re.sub(r"[^A-Za-z0-9_]", "_", fleet)
    if clean != fleet:  # `a-b` and `a_b` must not share a table
        import hashlib

        clean += "_" + hashlib.sha256(fleet.encode()).hexdigest()[:6]
    return "iocfleet_" + clean


def plan(fleet: str, wanted: str, strategy: str, address: str | None, broadcast: str | None, loopback: bool,
         port: int, say) -> FanoutPlan | None:
    if wanted != "dnat":
        return None
    rules = []
    if address and broadcast and not loopback:
        rules += [FanoutRule("prerouting", address, port, broadcast), FanoutRule("output", address, port, broadcast)]
    rules.append(FanoutRule("output", "127.0.0.1", port, "127.255.255.255"))
    fan = FanoutPlan(table_name(fleet), tuple(rules))
    unicast = ", ".join(sorted({f"{r.daddr}:{r.port} -> {r.to}" for r in rules}))
    say("R17", f"Fan-out (network.fanout: dnat): nftables table `ip {fan.table}` rewrites unicast searches "
               f"{unicast}, so a client with EPICS_CA_ADDR_LIST=<this host's IP> (or 127.0.0.1 here) reaches "
               "every IOC of the shared port instead of one per search (R3, R4); `down` deletes the table.")
    if address and broadcast and not loopback:
        say("R17", f"Side effect: a search from this host to {address}:{port} leaves it as a broadcast to "
                   f"{broadcast}, so IOCs of other hosts on that subnet answer it too.")
    return fan


def check(plan) -> list[Finding]:
    """What makes fan-out useless in this plan (the host checks are run/fanout.preflight)."""
    fan = getattr(plan, "fanout", None)
    if fan is None:
        return []
    out = []
    if plan.strategy not in ("shared-port", "name-server"):
        out.append(Finding("fanout-not-shared", WARNING,
                           f"fan-out rewrites searches for a shared port, but the strategy is {plan.strategy}",
                           "drop network.fanout, or use strategy shared-port", "R17"))
    if not plan.broadcast and not any(r.daddr == "127.0.0.1" for r in fan.rules):
        out.append(Finding("fanout-no-broadcast", ERROR, f"interface {plan.interface} has no broadcast address "
                           "to fan out to", "use an interface with a broadcast address, or drop network.fanout",
                           "R17", (str(plan.interface),)))
    specific = [i.name for i in plan.iocs if "0.0.0.0" not in i.bind]
    if specific:
        out.append(Finding("fanout-specific-bind", ERROR,
                           f"{len(specific)} IOC(s) bind {plan.iocs[0].bind[0] if plan.iocs else '?'} instead of "
                           f"0.0.0.0 (first {specific[0]}): a search rewritten to a broadcast does not reach "
                           "them all", "use strategy shared-port (fan-out then binds 0.0.0.0)", "R17",
                           tuple(specific)))
    return out
