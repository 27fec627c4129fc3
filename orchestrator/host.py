"""Inspect this host: interfaces, addresses, the default route, and who holds CA ports.

The only module that asks the operating system about the network and its processes (netifaces, psutil,
/proc). It returns the plain data types of `hostmodel` (or plain numbers), so everything downstream can be
tested with made-up hosts.
"""

from __future__ import annotations

import errno
import os
import re
import socket
from collections.abc import Iterable
from pathlib import Path

from orchestrator.hostmodel import CA_REPEATER_PORT, CA_SERVER_PORT, HostSnapshot, Interface, IPv4, PortHolder, ProcessInfo

# A container id in a cgroup path: docker (".../docker/<id>", "docker-<id>.scope"), containerd,
# podman ("libpod-<id>"), Kubernetes ("cri-containerd-<id>").
_CONTAINER_ID = re.compile(r"(?:docker|libpod|crio|cri-containerd|containerd)[-/]([0-9a-f]{64})")


def snapshot(extra_ports: Iterable[int] = (), as_uid: int | None = None,
             network: HostSnapshot | None = None) -> HostSnapshot:
    """Inspect interfaces and CA port holders (5064, 5065 and `extra_ports`) right now.

    `as_uid`: test reuse binds as this user (the IOCs' uid), since the kernel only lets sockets of
    one uid share a port (R2). Default: the calling user. `network`: interfaces and default route already
    read (`network_snapshot()`), so one command reads them once.
    """
    ports = sorted({CA_SERVER_PORT, CA_REPEATER_PORT, *extra_ports})
    network = network or network_snapshot()
    return HostSnapshot(network.interfaces, network.default_interface, tuple(holders_of(ports, as_uid)))


def network_snapshot() -> HostSnapshot:
    """Interfaces and the default route, without port holders: enough to plan on."""
    return HostSnapshot(interfaces(), default_interface(), ())


def interfaces() -> tuple[Interface, ...]:
    """Every interface with its flags, MTU and IPv4 addresses, in the kernel's order.

    Addresses and broadcasts come from the kernel (`ip -j addr`, netlink underneath): an address without
    IFA_BROADCAST has no broadcast, and a point-to-point address has a peer instead. netifaces reports
    the address itself (or the peer) as "broadcast" then, so it is only the fallback when `ip` is missing.
    """
    import netifaces
    import psutil

    stats = psutil.net_if_stats()
    kernel = kernel_addresses()
    names = list(kernel) if kernel is not None else netifaces.interfaces()
    result = []
    for name in names:
        st = stats.get(name)
        flags = set((getattr(st, "flags", "") or "").split(",")) if st else set()
        if kernel is not None:
            ipv4, kflags = kernel[name]
            flags |= {f.lower() for f in kflags}
        else:
            addrs = netifaces.ifaddresses(name).get(netifaces.AF_INET, [])
            ipv4 = tuple(_ipv4(a) for a in addrs if a.get("addr"))
        loopback = "loopback" in flags or name == "lo" or any(a.address.startswith("127.") for a in ipv4)
        result.append(
            Interface(
                name=name,
                up=bool(st and st.isup) if st else "up" in flags,
                loopback=loopback,
                broadcast_capable="broadcast" in flags or any(a.broadcast for a in ipv4),
                multicast="multicast" in flags,
                mtu=int(st.mtu) if st else 0,
                ipv4=ipv4,
                point_to_point="pointopoint" in flags or any(a.peer for a in ipv4),
            )
        )
    return tuple(result)


def kernel_addresses(ip_json: str | None = None) -> dict[str, tuple[tuple[IPv4, ...], tuple[str, ...]]] | None:
    """{interface: (IPv4 addresses, link flags)} from `ip -j addr show` (or the JSON given); None if `ip`
    cannot run. Kernel order is kept: the primary address of each subnet first, then secondaries."""
    import json
    import subprocess

    if ip_json is None:
        try:
            ip_json = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True, timeout=10,
                                     check=True).stdout
        except (OSError, subprocess.SubprocessError):
            return None
    try:
        links = json.loads(ip_json)
    except ValueError:
        return None
    out = {}
    for link in links:
        addrs = tuple(address_from_kernel(a) for a in link.get("addr_info", ())
                      if a.get("family") == "inet" and a.get("local"))
        out[link["ifname"]] = (addrs, tuple(link.get("flags", ())))
    return out


def address_from_kernel(info: dict) -> IPv4:
    """One `addr_info` entry of `ip -j addr`: broadcast only when the kernel has one (IFA_BROADCAST)."""
    import ipaddress

    net = ipaddress.IPv4Network(f"{info['local']}/{info.get('prefixlen', 32)}", strict=False)
    peer = info.get("address") if info.get("address") not in (None, info["local"]) else None
    return IPv4(address=info["local"], netmask=str(net.netmask), prefixlen=net.prefixlen,
                broadcast=info.get("broadcast"), peer=peer, secondary=bool(info.get("secondary")),
                label=info.get("label") or None)


def _ipv4(entry: dict) -> IPv4:
    import ipaddress

    address = entry["addr"]
    netmask = entry.get("netmask") or "255.255.255.255"
    net = ipaddress.IPv4Network(f"{address}/{netmask}", strict=False)
    broadcast = entry.get("broadcast")
    # netifaces reports the peer of point-to-point links, and the address itself when no broadcast is
    # configured (ip addr add without brd), as "broadcast".
    if broadcast and (ipaddress.IPv4Address(broadcast) not in net or broadcast == address or net.prefixlen >= 31):
        broadcast = None
    return IPv4(address=address, netmask=str(net.netmask), prefixlen=net.prefixlen, broadcast=broadcast)


def default_interface() -> str | None:
    """The interface of the IPv4 default route, or None when there is none."""
    import netifaces

    default = netifaces.gateways().get("default", {}).get(netifaces.AF_INET)
    return default[1] if default else None


def holders_of(ports: Iterable[int], as_uid: int | None = None) -> list[PortHolder]:
    """Sockets bound to `ports` (UDP, and TCP listeners), with their process and a reuse test for UDP."""
    import psutil

    wanted = set(ports)
    found = []
    for conn in psutil.net_connections(kind="inet4"):
        if not conn.laddr or conn.laddr.port not in wanted:
            continue
        proto = "udp" if conn.type == socket.SOCK_DGRAM else "tcp"
        if proto == "tcp" and conn.status != psutil.CONN_LISTEN:
            continue
        process, uid = _process(conn.pid)
        found.append(
            PortHolder(
                proto=proto,
                port=conn.laddr.port,
                address=conn.laddr.ip,
                pid=conn.pid,
                process=process,
                uid=uid,
                container=container_of(conn.pid),
                reuse_ok=reuse_bind_ok(conn.laddr.ip, conn.laddr.port, as_uid) if proto == "udp" else None,
            )
        )
    return sorted(found, key=lambda h: (h.port, h.proto, h.address, h.pid or 0))


def _process(pid: int | None) -> tuple[str | None, int | None]:
    import psutil

    if not pid:
        return None, None
    try:
        proc = psutil.Process(pid)
        return proc.name(), proc.uids().effective
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None, None


def container_of(pid: int | None, proc_root: Path = Path("/proc")) -> str | None:
    """The id of the container a process runs in (from its cgroup), or None for a host process."""
    if not pid:
        return None
    try:
        text = (proc_root / str(pid) / "cgroup").read_text()
    except OSError:
        return None
    return container_id_from_cgroup(text)


def container_id_from_cgroup(text: str) -> str | None:
    """Parse a /proc/PID/cgroup text (v1 or v2) for a container id."""
    match = _CONTAINER_ID.search(text)
    return match.group(1) if match else None


def reuse_bind_ok(address: str, port: int, as_uid: int | None = None) -> bool | None:
    """Whether a UDP socket with SO_REUSEADDR|SO_REUSEPORT can join `address:port` now (R1, R2).

    False means the holder bound without reuse, or runs as another user than `as_uid` (R2), so an IOC
    of that user could not share the port. None: cannot tell (testing as another user needs root).
    The test socket exists for microseconds and is closed at once.
    """
    if as_uid is not None and as_uid != os.geteuid():
        return _reuse_bind_ok_as(address, port, as_uid)
    return _reuse_bind_ok(address, port)


def _reuse_bind_ok_as(address: str, port: int, uid: int) -> bool | None:
    """Run the reuse test in a forked child that switched to `uid` (root only)."""
    if os.geteuid() != 0:
        return None
    pid = os.fork()
    if pid == 0:  # child: no Python cleanup, just the answer as the exit status
        code = 3
        try:
            os.setgid(uid)
            os.setuid(uid)
            code = {True: 0, False: 1}.get(_reuse_bind_ok(address, port), 3)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return {0: True, 1: False}.get(code)


def _reuse_bind_ok(address: str, port: int) -> bool | None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((address, port))
        return True
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EACCES):
            return False
        if exc.errno == errno.EADDRNOTAVAIL:  # the holder's address went away since we listed it
            return None
        raise
    finally:
        sock.close()


# -- processes ------------------------------------------------------------------------------------

def process_info(pid: int) -> ProcessInfo | None:
    """Name, command line, user, start time and EPICS_* environment of `pid`; None when it is gone or hidden."""
    import psutil

    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            cmdline, name, started, uid = proc.cmdline(), proc.name(), proc.create_time(), proc.uids().effective
    except psutil.Error:
        return None
    try:
        environ = tuple(sorted((k, v) for k, v in proc.environ().items() if k.startswith("EPICS_")))
    except psutil.Error:
        environ = None
    return ProcessInfo(pid, name, tuple(cmdline), uid, started, environ)


def process_family(pid: int, with_parent: bool = False) -> tuple[int, ...]:
    """`pid` and all its descendants (and its parent, e.g. a container's init or a supervisor, if asked);
    just `pid` when it is gone or hidden."""
    import psutil

    try:
        proc = psutil.Process(pid)
        family = (pid, *(c.pid for c in proc.children(recursive=True)))
        parent = proc.parent() if with_parent else None
    except psutil.Error:
        return (pid,)
    return family + ((parent.pid,) if parent else ())


def listening_port(pid: int | None, with_children: bool = False) -> int | None:
    """The lowest IPv4 TCP port `pid` (or, if asked, one of its descendants) listens on; None if none."""
    import psutil

    if not pid:
        return None
    try:
        procs = [psutil.Process(pid)]
        if with_children:
            procs += procs[0].children(recursive=True)
        ports = sorted(c.laddr.port for p in procs for c in p.net_connections(kind="tcp4")
                       if c.status == psutil.CONN_LISTEN)
    except (psutil.Error, AttributeError):
        return None
    return ports[0] if ports else None


def started_at(pid: int) -> float | None:
    """When `pid` started (seconds since the epoch), or None when it is gone."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def alive(pid: int | None, started: float | None = None) -> bool:
    """Whether `pid` runs (not a zombie) and, given `started`, is the same process (same start time)."""
    import psutil

    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(proc.create_time() - started) < 0.5
    except psutil.Error:
        return False


def own_group_leader(pid: int) -> tuple[str, ...] | None:
    """The command line of `pid` when it leads its own process group and runs as this user (what a
    supervisor iocfleet started looks like); None otherwise or when it is gone."""
    import psutil

    try:
        proc = psutil.Process(pid)
        cmdline = tuple(proc.cmdline())
        if os.getpgid(pid) != pid or proc.uids().real != os.getuid():
            return None
    except (psutil.Error, OSError):
        return None
    return cmdline


def udp_holder_pids(port: int) -> list[int]:
    """Pids holding UDP `port` on IPv4 right now (0 for a holder this user cannot see); empty: nobody."""
    import psutil

    return sorted({c.pid or 0 for c in psutil.net_connections(kind="udp4") if c.laddr and c.laddr.port == port})


def tcp_listeners(ports: set[int]) -> dict[int, tuple[int | None, str | None]]:
    """Port -> (pid, process name) of an IPv4 TCP listener on each of `ports` that has one."""
    import psutil

    out: dict[int, tuple[int | None, str | None]] = {}
    if not ports:
        return out
    for conn in psutil.net_connections(kind="tcp4"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port in ports:
            name = None
            try:
                name = psutil.Process(conn.pid).name() if conn.pid else None
            except psutil.Error:
                pass
            out.setdefault(conn.laddr.port, (conn.pid, name))
    return out


def processes_with_argument(argument: str) -> list[tuple[int, tuple[str, ...]]]:
    """(pid, command line) of every visible process whose command line holds `argument` exactly."""
    import psutil

    out = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = tuple(proc.info.get("cmdline") or ())
        if argument in cmd:
            out.append((proc.pid, cmd))
    return out


CAP_NET_ADMIN = 12


def has_net_admin() -> bool:
    """Whether this process holds CAP_NET_ADMIN (root usually does)."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    except OSError:
        pass
    return os.geteuid() == 0


def nftables_problem() -> tuple[str, str] | None:
    """Why this process cannot manage an nftables table here, as (problem, fix); None when it can."""
    import shutil
    import subprocess

    if shutil.which("nft") is None:
        return ("the `nft` command (nftables) is not installed", "install nftables (apt-get install nftables)")
    if not has_net_admin():
        return ("this process lacks CAP_NET_ADMIN (root) to create an nftables table", "run it as root")
    probe = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, timeout=20)
    if probe.returncode != 0:
        return (f"nftables does not work here: {probe.stderr.strip()[:200]}", "load nf_tables (modprobe nf_tables)")
    return None


def sockets_visible(pid: int | None) -> bool:
    """Whether this process may list the sockets of `pid` (so "no listener" really means none); a pid that
    is gone counts as visible (nothing listens there, and that is known)."""
    import psutil

    if not pid:
        return False
    try:
        psutil.Process(pid).net_connections(kind="tcp4")
        return True
    except psutil.AccessDenied:
        return False
    except psutil.Error:
        return True


def netns_id(pid: int | str = "self") -> str:
    """The inode of a process's network namespace ("?" when it cannot be read)."""
    try:
        return str(os.stat(f"/proc/{pid}/ns/net").st_ino)
    except OSError:
        return "?"

