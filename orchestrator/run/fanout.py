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
from orchestrator.plan.fanout import FanoutPlan, table_name
from orchestrator.plan.model import Finding

CAP_NET_ADMIN = 12
TIMEOUT = 20


def _nft(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["nft", *args], capture_output=True, text=True, timeout=TIMEOUT, check=check)


def has_net_admin() -> bool:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    except OSError:
        pass
    return os.geteuid() == 0


def preflight(fan: FanoutPlan | None) -> list[Finding]:
    if fan is None:
        return []
    if shutil.which("nft") is None:
        return [Finding("fanout-unavailable", "error", "network.fanout: dnat needs the `nft` command (nftables), "
                        "which is not installed", "install nftables (apt-get install nftables), or drop "
                        "network.fanout", "R17")]
    if not has_net_admin():
        return [Finding("fanout-unavailable", "error", "network.fanout: dnat needs CAP_NET_ADMIN (root) to "
                        "create its nftables table", "run `iocfleet up` as root, or drop network.fanout", "R17")]
    probe = _nft("list", "tables", check=False)
    if probe.returncode != 0:
        return [Finding("fanout-unavailable", "error", f"nftables does not work here: {probe.stderr.strip()[:200]}",
                        "load nf_tables (modprobe nf_tables), or drop network.fanout", "R17")]
    return []


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
