"""What an IOC program tells its operator: the startup line, and a clear exit on a bad description.

The bound addresses are read back from the kernel (/proc/self/fd and /proc/net) instead of being
derived from the environment, so the log shows what the runtime really did — rsrv, for one, binds
more than EPICS_CAS_INTF_ADDR_LIST names.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
from typing import Mapping, TextIO

from .spec import IocSpec, IocSpecError, load_ioc

EXIT_BAD_SPEC = 2
NETWORK_VARS = (
    "EPICS_CAS_INTF_ADDR_LIST", "EPICS_CA_SERVER_PORT", "EPICS_CAS_SERVER_PORT",
    "EPICS_CAS_AUTO_BEACON_ADDR_LIST", "EPICS_CAS_BEACON_ADDR_LIST", "EPICS_CAS_BEACON_PORT",
)
_TCP_LISTEN = "0A"


def load_or_exit(environ: Mapping[str, str], runtime: str, err: TextIO = sys.stderr) -> IocSpec:
    """Load the IOC description or end the process with exit status 2 and every problem listed."""
    try:
        return load_ioc(environ)
    except IocSpecError as exc:
        print(f"iocfleet-ioc[{runtime}]: error: bad IOC description (IOCFLEET_IOC):", file=err)
        for problem in exc.problems:
            print(f"  - {problem}", file=err)
        print("  fix: regenerate the plan (`iocfleet plan`) or correct the JSON; see docs/images.md",
              file=err)
        err.flush()
        raise SystemExit(EXIT_BAD_SPEC) from None


def ensure_array_bytes(spec: IocSpec, environ: "os._Environ[str]") -> str | None:
    """Raise EPICS_CA_MAX_ARRAY_BYTES to fit the largest PV when the plan left it unset.

    Returns a warning when the plan set it too small; an explicit setting is never overridden.
    """
    needed = spec.max_array_bytes()
    current = environ.get("EPICS_CA_MAX_ARRAY_BYTES")
    if current is None:
        if needed > 16384:
            environ["EPICS_CA_MAX_ARRAY_BYTES"] = str(needed)
        return None
    if current.isdigit() and int(current) < needed:
        return (f"EPICS_CA_MAX_ARRAY_BYTES={current} is below the {needed} bytes the largest PV needs; "
                "clients will fail to read it")
    return None


def bound_sockets(pid: str = "self") -> list[str]:
    """The UDP sockets and listening TCP sockets of a process, as 'udp 0.0.0.0:5064' strings."""
    inodes = set()
    fd_dir = f"/proc/{pid}/fd"
    try:
        for fd in os.listdir(fd_dir):
            try:
                target = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return []
    found = []
    for proto in ("udp", "tcp", "udp6", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{proto}", encoding="ascii") as handle:
                rows = handle.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            if inode not in inodes:
                continue
            if proto.startswith("tcp") and state != _TCP_LISTEN:
                continue
            if proto.startswith("udp") and not remote.endswith(":0000"):
                continue  # connected sockets (beacon senders) are not listeners
            found.append(f"{proto[:3]} {_address(local)}")
    return sorted(set(found))


def _address(hex_addr: str) -> str:
    host, port = hex_addr.split(":")
    if len(host) == 8:
        ip = socket.inet_ntop(socket.AF_INET, struct.pack("<I", int(host, 16)))
    else:
        words = struct.unpack(">4I", bytes.fromhex(host))
        ip = "[" + socket.inet_ntop(socket.AF_INET6, struct.pack("<4I", *words)) + "]"
    return f"{ip}:{int(port, 16)}"


def serving_line(runtime: str, spec: IocSpec, sockets: list[str], environ: Mapping[str, str]) -> str:
    """The one line an IOC logs once it serves: who, how many PVs, where it is bound."""
    net = " ".join(f"{k}={environ[k]}" for k in NETWORK_VARS if k in environ)
    return (f"iocfleet-ioc[{runtime}]: serving {len(spec.pv_names())} PVs of {spec.name} "
            f"(prefix {spec.prefix!r}) bound [{', '.join(sockets) or 'unknown'}] {net}").rstrip()
