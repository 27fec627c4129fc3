"""Apply and remove a fleet's DNAT fan-out table (plan/fanout.py) with the `nft` command (argv lists only).

The table `ip iocfleet_<fleet>` is the fleet's alone: `up` replaces it whole, `down` deletes it by name
(also after a crash, when only the kernel still has it); no other table or rule is ever touched.
`preflight` says why it cannot work on this host (no nft, no nf_tables, no CAP_NET_ADMIN) as findings.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from orchestrator.errors import RefusedError
from orchestrator.host import has_net_admin
from orchestrator.plan.fanout import FanoutPlan, table_name
from orchestrator.plan.model import Finding

TIMEOUT = 20


def _nft(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["nft", *args], capture_output=True, text=True, timeout=TIMEOUT, check=check)


def preflight(fan: FanoutPlan | None) -> list[Finding]:
    """The host checks of network.fanout: dnat (nft, CAP_NET_ADMIN, nf_tables), as findings."""
    from orchestrator.plan.onhost import fanout_preflight

    return fanout_preflight(fan)


def exists(table: str) -> bool:
    return _nft("list", "table", "ip", table, check=False).returncode == 0


def apply(fan: FanoutPlan) -> None:
    """Create (or replace) the fleet's table with its chains and rules; RefusedError naming nft's complaint."""
    try:
        if exists(fan.table):
            _nft("delete", "table", "ip", fan.table)
        _nft("add", "table", "ip", fan.table)
        _nft("add", "chain", "ip", fan.table, "prerouting", "{ type nat hook prerouting priority dstnat ; }")
        _nft("add", "chain", "ip", fan.table, "output", "{ type nat hook output priority -100 ; }")
        for rule in fan.rules:
            subprocess.run(rule.argv(fan.table), capture_output=True, text=True, timeout=TIMEOUT, check=True)
    except (subprocess.CalledProcessError, OSError, subprocess.TimeoutExpired) as exc:
        remove_table(fan.table)
        detail = getattr(exc, "stderr", "") or str(exc)
        raise RefusedError(f"could not create nftables table {fan.table}: {detail.strip()[:300]}",
                           "network.fanout", "run as root with nftables, or drop network.fanout") from exc


def remove_table(table: str) -> bool:
    """Delete one table of ours if it exists; True if it was there. Quiet where nft cannot run."""
    if shutil.which("nft") is None or not has_net_admin():
        return False
    if not exists(table):
        return False
    _nft("delete", "table", "ip", table, check=False)
    return True


def remove(fleet: str) -> bool:
    return remove_table(table_name(fleet))


def tables() -> list[str]:
    """The fleet tables (iocfleet_*) present on this host, for the doctor."""
    if shutil.which("nft") is None or not has_net_admin():
        return []
    listing = _nft("list", "tables", "ip", check=False)
    return [line.split()[-1] for line in listing.stdout.splitlines()
            if line.startswith("table ip iocfleet_")]
