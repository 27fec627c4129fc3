"""The doctor on a host with DNAT fan-out (network.fanout: dnat, R17).

On such a host a unicast search to the host IP (or 127.0.0.1) is rewritten to a broadcast before it is
delivered, so every IOC of the shared port answers it (reach 1.0) where the socket rules alone predict
one IOC per search (R3). `active_rules()` reads the fleet tables (`ip iocfleet_*`) with `nft` (I/O);
`attach` (pure) marks those paths as fan-out, drops the R3 warnings the rewrite makes untrue, and says so.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess

from orchestrator.plan.model import Finding

_RULE = re.compile(r"ip daddr (\S+) udp dport (\d+) dnat (?:ip )?to (\S+)")
DROPPED = ("unicast-addr-list-multi-ioc", "prediction-mismatch")


def active_rules() -> list[tuple[str, int, str, str]]:
    """(daddr, port, rewritten to, table) for every rule of every fleet table here; [] where nft cannot run."""
    from orchestrator.run.fanout import tables

    out = []
    for table in tables():
        listing = subprocess.run(["nft", "list", "table", "ip", table], capture_output=True, text=True, timeout=20)
        out += [(m.group(1), int(m.group(2)), m.group(3), table) for m in _RULE.finditer(listing.stdout)]
    return out


def attach(diagnosis, rules):
    if not rules:
        return diagnosis
    fanned = {(d, p): (to, table) for d, p, to, table in rules}
    paths, notes, dropped_for = [], [], []
    for path in diagnosis.paths:
        hit = fanned.get((path.address, path.port))
        if hit is None:
            paths.append(path)
            continue
        to, table = hit
        paths.append(dataclasses.replace(path, kind=f"fan-out to {to}", predicted=None, matches_prediction=None))
        dropped_for.append(path.address)
        answered = ", ".join(f"{i.name} {i.reach:.2f}" for i in path.iocs) or "nobody"
        notes.append(Finding("fanout-active", "info",
                             f"searches to {path.address}:{path.port} are rewritten to {to} by nftables table "
                             f"{table} (network.fanout: dnat), so every IOC on the port hears them: {answered}",
                             "nothing to do; `iocfleet down` removes the table", "R17",
                             (f"{path.address}:{path.port}",)))
    findings = [f for f in diagnosis.findings
                if not (f.code in DROPPED and any(a in f.message for a in dropped_for))]
    return dataclasses.replace(diagnosis, paths=tuple(paths), findings=tuple(findings) + tuple(notes))
