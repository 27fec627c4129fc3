"""Lab networks for tests: network namespaces joined by veth pairs, always torn down.

A *lab* is one namespace (the IOC host, `ns`) with a veth pair to a *peer*: either the root namespace
(`lab`: the peer plays a remote client on the subnet) or a second namespace (`lab2`: a separate client
host, so no CA datagram ever touches the root namespace). The subnet is a free /24 of 198.18.0.0/15
(RFC 2544 benchmarking space) that overlaps no route or address of the root namespace; allocation holds
a file lock so parallel workers (pytest-xdist) never pick the same subnet.

Sockets can be made inside a namespace without a subprocess (`Lab.socket`): a short-lived thread enters
the namespace with setns(2), checks that it did, creates the socket and leaves; the socket stays in that
namespace for its whole life. Teardown kills every process still inside the lab's namespaces, then
deletes the namespaces (which deletes the veths), also when the test failed.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import ipaddress
import itertools
import os
import select
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator, TypeVar

import pytest

from orchestrator.hostmodel import IPv4, Interface

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
LAB_SPACE = ipaddress.IPv4Network("198.18.0.0/15")
LOCK_PATH = "/tmp/iocfleet-labnet.lock"
_counter = itertools.count()
_libc = ctypes.CDLL(None, use_errno=True)


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run `ip ARGS` (never through a shell) and return the finished process."""
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20, check=check)


def used_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network the root namespace routes or has an address on."""
    nets = []
    for line in ip("-4", "route", "show", "table", "all").stdout.splitlines():
        word = line.split()[0] if line.split() else ""
        if word in ("local", "broadcast", "unreachable", "prohibit", "blackhole", "multicast"):
            word = line.split()[1]
        if word == "default":
            continue
        with contextlib.suppress(ValueError):
            nets.append(ipaddress.IPv4Network(word, strict=False))
    for line in ip("-4", "-o", "addr").stdout.splitlines():
        parts = line.split()
        if "inet" in parts:
            nets.append(ipaddress.IPv4Interface(parts[parts.index("inet") + 1]).network)
    return nets


def free_subnet(used: list[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    """The first /24 of 198.18.0.0/15 (skipping the first) that overlaps none of `used`."""
    for net in itertools.islice(LAB_SPACE.subnets(new_prefix=24), 1, None):
        if not any(net.overlaps(u) for u in used):
            return net
    raise RuntimeError("no free /24 left in 198.18.0.0/15")


@dataclass(frozen=True)
class Lab:
    """A namespace `ns` (the IOC host) linked by a veth pair to a peer (root namespace or `peer_ns`)."""

    ns: str
    ns_veth: str
    ns_addr: str
    peer_ns: str | None  # None: the peer end lives in the root namespace
    peer_veth: str
    peer_addr: str
    prefixlen: int
    broadcast: str
    ns_brd: bool = True  # False: the IOC-side address was added without `brd` (no IFA_BROADCAST)

    @property
    def subnet(self) -> str:
        return str(ipaddress.IPv4Interface(f"{self.ns_addr}/{self.prefixlen}").network)

    def namespaces(self) -> tuple[str, ...]:
        return (self.ns,) + ((self.peer_ns,) if self.peer_ns else ())

    def argv(self, argv: list[str], where: str = "ns") -> list[str]:
        """`argv` wrapped to run inside the IOC namespace ("ns") or on the peer ("peer")."""
        ns = self.ns if where == "ns" else self.peer_ns
        return ["ip", "netns", "exec", ns, *argv] if ns else list(argv)

    def interfaces(self) -> tuple[Interface, ...]:
        """The IOC namespace's interfaces as hostmodel data (what `host.py` would report in there)."""
        lo = Interface("lo", True, True, False, False, 65536, (IPv4.from_cidr("127.0.0.1/8", broadcast=False),))
        veth = Interface(self.ns_veth, True, False, True, True, 1500,
                         (IPv4.from_cidr(f"{self.ns_addr}/{self.prefixlen}", broadcast=self.ns_brd),))
        return (lo, veth)

    def call(self, where: str, fn: Callable[[], T]) -> T:
        """Call `fn` in a thread that has entered the namespace of `where` ("ns" or "peer")."""
        ns = self.ns if where == "ns" else self.peer_ns
        return call_in_netns(ns, fn) if ns else fn()

    def socket(self, where: str = "ns", kind: int = socket.SOCK_DGRAM) -> socket.socket:
        """A new IPv4 socket living in the namespace of `where`."""
        return self.call(where, lambda: socket.socket(socket.AF_INET, kind))

    def socket_factory(self, where: str = "ns") -> Callable[[], socket.socket]:
        return lambda: self.socket(where)


def call_in_netns(ns: str, fn: Callable[[], T]) -> T:
    """Run `fn` in a fresh thread switched into network namespace `ns`; refuse if the switch failed."""
    box: dict = {}

    def run() -> None:
        try:
            target = os.stat(f"/run/netns/{ns}").st_ino
            with open(f"/run/netns/{ns}") as fd:
                if _libc.setns(fd.fileno(), CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns({ns}) failed")
            if os.stat("/proc/thread-self/ns/net").st_ino != target:
                raise RuntimeError(f"thread is not in namespace {ns}; refusing to make sockets")
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=run, name=f"netns-{ns}")
    thread.start()
    thread.join(timeout=30)
    if "error" in box:
        raise box["error"]
    if "value" not in box:
        raise TimeoutError(f"call in namespace {ns} did not finish")
    return box["value"]


def kill_namespace_processes(ns: str) -> None:
    """SIGKILL every process still running inside namespace `ns` (only ever ours: we made `ns`)."""
    for _ in range(5):
        pids = [int(p) for p in ip("netns", "pids", ns, check=False).stdout.split()]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)


def destroy(lab_names: tuple[str, ...], root_veth: str | None) -> None:
    """Remove namespaces (with their veths and processes) and a root-side veth; ignore what is gone."""
    for ns in lab_names:
        if ns in ip("netns", "list", check=False).stdout.split():
            kill_namespace_processes(ns)
            ip("netns", "del", ns, check=False)
    if root_veth and ip("link", "show", root_veth, check=False).returncode == 0:
        ip("link", "del", root_veth, check=False)


@contextlib.contextmanager
def bare_namespace(tag: str = "b") -> Iterator[str]:
    """A network namespace with only `lo` up, linked to nothing; yield its name; always remove it (and
    every process left in it)."""
    name = f"iocf{tag}{os.getpid()}x{next(_counter)}"
    try:
        ip("netns", "add", name)
        ip("-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        destroy((name,), None)


@contextlib.contextmanager
def make_lab(peer_in_namespace: bool = False, tag: str = "", peer_brd: bool = True,
             ns_brd: bool = True) -> Iterator[Lab]:
    """Create a lab (see module doc); yield it; always remove it.

    `peer_brd=False` adds the peer's address the common way, without `brd +` (no IFA_BROADCAST): the
    kernel still routes the subnet broadcast, but nothing configured names it (issue 16)."""
    k = next(_counter)
    pid = os.getpid()
    base = f"iocf{tag}{pid}x{k}"
    ns, peer_ns = f"{base}s", (f"{base}c" if peer_in_namespace else None)
    ns_veth, peer_veth = f"iv{pid}x{k}s"[:15], f"iv{pid}x{k}c"[:15]
    created_root_veth = None if peer_in_namespace else peer_veth
    try:
        with open(LOCK_PATH, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            net = free_subnet(used_networks())
            hosts = list(itertools.islice(net.hosts(), 2))
            peer_addr, ns_addr = str(hosts[0]), str(hosts[1])
            ip("netns", "add", ns)
            if peer_ns:
                ip("netns", "add", peer_ns)
            ip("link", "add", peer_veth, "type", "veth", "peer", "name", ns_veth)
            ip("link", "set", ns_veth, "netns", ns)
            if peer_ns:
                ip("link", "set", peer_veth, "netns", peer_ns)
            # The root-side address (and so the route) is added under the lock: the next lab sees it.
            peer = ["-n", peer_ns] if peer_ns else []
            brd = ["brd", "+"] if peer_brd else []
            ip(*peer, "addr", "add", f"{peer_addr}/{net.prefixlen}", *brd, "dev", peer_veth)
            ip(*peer, "link", "set", peer_veth, "up")
        ip("-n", ns, "addr", "add", f"{ns_addr}/{net.prefixlen}", *(["brd", "+"] if ns_brd else []), "dev", ns_veth)
        ip("-n", ns, "link", "set", ns_veth, "up")
        ip("-n", ns, "link", "set", "lo", "up")
        if peer_ns:
            ip("-n", peer_ns, "link", "set", "lo", "up")
        yield Lab(ns, ns_veth, ns_addr, peer_ns, peer_veth, peer_addr, net.prefixlen,
                  str(net.broadcast_address), ns_brd)
    finally:
        destroy(tuple(n for n in (ns, peer_ns) if n), created_root_veth)


def foreign_uid_argv(uid: int, argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """`argv` (a `python script ...` command) rewritten to run as `uid`, plus the environment it needs.

    The venv's interpreter symlinks into /root (mode 700), which another user cannot use, so the
    command runs the system interpreter of the same minor version with the venv's site-packages on
    PYTHONPATH (same ABI, so compiled extensions such as softioc load).
    """
    python = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    if not os.path.exists(python):
        pytest.skip(f"{python} (needed to run as uid {uid}) not installed")
    site = sysconfig.get_paths()["purelib"]
    cmd = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", python, *argv[1:]]
    return cmd, {"PYTHONPATH": site}


@dataclass
class LabProcess:
    """A process started in a lab namespace; `ready` once it printed its READY line."""

    popen: subprocess.Popen
    ready: bool = False
    pid: int | None = None

    def exit_code(self) -> int | None:
        return self.popen.poll()

    def stop(self) -> str:
        """Terminate (then kill) the process; return the tail of its stderr."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)
        err = self.popen.stderr.read() if self.popen.stderr else ""
        for stream in (self.popen.stdout, self.popen.stderr):
            if stream:
                stream.close()
        return err[-2000:]


def start_process(lab: Lab, where: str, argv: list[str], env: dict[str, str], uid: int | None = None,
                  timeout: float = 30.0) -> LabProcess:
    """Start `argv` in the lab (as `uid` if given) and wait until it prints `READY <pid>` or exits."""
    extra: dict[str, str] = {}
    if uid is not None and uid != os.geteuid():
        argv, extra = foreign_uid_argv(uid, argv)
    popen = subprocess.Popen(lab.argv(argv, where), env={**env, **extra}, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc = LabProcess(popen)
    deadline = time.monotonic() + timeout
    poller = select.poll()  # not select(): a busy test may hold more than 1024 descriptors
    poller.register(popen.stdout, select.POLLIN | select.POLLHUP)
    while (left := deadline - time.monotonic()) > 0:
        if not poller.poll(left * 1000):
            break
        line = popen.stdout.readline()
        if not line:  # EOF: the process exited before it was ready
            popen.wait(timeout=10)
            break
        if line.startswith("READY "):
            proc.ready, proc.pid = True, int(line.split()[1])
            break
    return proc


def _require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")


@pytest.fixture
def lab() -> Iterator[Lab]:
    """An IOC namespace with a veth to the root namespace (the root side plays a client on the subnet)."""
    _require_root()
    with make_lab(peer_in_namespace=False) as made:
        yield made


@pytest.fixture
def lab2() -> Iterator[Lab]:
    """An IOC namespace and a separate client namespace joined by a veth (nothing in the root namespace)."""
    _require_root()
    with make_lab(peer_in_namespace=True) as made:
        yield made


@pytest.fixture
def lab_nobrd() -> Iterator[Lab]:
    """Like `lab`, but the root-side (IOC host) address was added without `brd +`."""
    _require_root()
    with make_lab(peer_in_namespace=False, tag="nb", peer_brd=False) as made:
        yield made


@dataclass(frozen=True)
class RoutedLab:
    """Three namespaces in a line: client (`client_ns`) -> router (`router_ns`) -> IOC host (`ns`).

    Two /24 subnets joined only by IP forwarding in the router: a client broadcast never reaches the IOC
    host's subnet (Linux does not forward directed broadcasts), so only unicast crosses, as for a client
    on another subnet. Nothing lives in the root namespace, unless the lab was made with
    `host_in_root=True` (for Docker's host-network containers): then the root namespace is the IOC host
    (`ns` is None) with a test-made veth to the router and a route to the client subnet only.
    """

    ns: str | None  # the IOC host (None: the root namespace)
    ns_veth: str
    ns_addr: str
    ns_broadcast: str
    router_ns: str
    client_ns: str
    client_addr: str
    client_broadcast: str

    def namespaces(self) -> tuple[str, ...]:
        return tuple(n for n in (self.client_ns, self.router_ns, self.ns) if n)

    def argv(self, argv: list[str], where: str = "ns") -> list[str]:
        ns = {"ns": self.ns, "client": self.client_ns, "router": self.router_ns}[where]
        return ["ip", "netns", "exec", ns, *argv] if ns else list(argv)

    def call(self, where: str, fn: Callable[[], T]) -> T:
        ns = {"ns": self.ns, "client": self.client_ns, "router": self.router_ns}[where]
        return call_in_netns(ns, fn) if ns else fn()


@contextlib.contextmanager
def make_routed_lab(tag: str = "r", host_in_root: bool = False) -> Iterator[RoutedLab]:
    """Create a routed lab (see RoutedLab); yield it; always remove its namespaces (and root veth)."""
    k = next(_counter)
    pid = os.getpid()
    base = f"iocf{tag}{pid}x{k}"
    host_ns, router_ns, client_ns = (None if host_in_root else f"{base}h"), f"{base}r", f"{base}c"
    host_end = f"ivh{pid}x{k}"[:15] if host_in_root else "vh"
    root_veth = host_end if host_in_root else None
    try:
        for ns in (host_ns, router_ns, client_ns):
            if ns:
                ip("netns", "add", ns)
                ip("-n", ns, "link", "set", "lo", "up")
        with open(LOCK_PATH, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            used = used_networks()
            client_net = free_subnet(used)
            host_net = free_subnet([*used, client_net])
            c_addr, rc_addr = (str(a) for a in itertools.islice(client_net.hosts(), 2))
            rh_addr, h_addr = (str(a) for a in itertools.islice(host_net.hosts(), 2))
            links = ((client_ns, "vc", c_addr, "vrc", rc_addr, client_net),
                     (host_ns, host_end, h_addr, "vrh", rh_addr, host_net))
            for ns, end, addr, router_end, router_addr, net in links:
                where = ["netns", ns] if ns else ["netns", "1"]  # netns 1: the root namespace (pid 1's)
                at = ["-n", ns] if ns else []
                ip("-n", router_ns, "link", "add", router_end, "type", "veth", "peer", "name", end, *where)
                ip("-n", router_ns, "addr", "add", f"{router_addr}/{net.prefixlen}", "brd", "+", "dev", router_end)
                # The root-side address (and so its route) is added under the lock: the next lab sees it.
                ip(*at, "addr", "add", f"{addr}/{net.prefixlen}", "brd", "+", "dev", end)
                ip("-n", router_ns, "link", "set", router_end, "up")
                ip(*at, "link", "set", end, "up")
                if ns:
                    ip(*at, "route", "add", "default", "via", router_addr)
                else:  # the root namespace keeps its default route: only the client subnet goes via the lab
                    ip("route", "add", str(client_net), "via", router_addr, "dev", end)
        subprocess.run(["ip", "netns", "exec", router_ns, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
                       check=True, capture_output=True, timeout=20)
        yield RoutedLab(host_ns, host_end, h_addr, str(host_net.broadcast_address), router_ns, client_ns, c_addr,
                        str(client_net.broadcast_address))
    finally:
        destroy(tuple(n for n in (client_ns, router_ns, host_ns) if n), root_veth)


@pytest.fixture
def routed_lab() -> Iterator[RoutedLab]:
    """Client namespace -> router namespace -> IOC host namespace, routing only (see RoutedLab)."""
    _require_root()
    with make_routed_lab() as made:
        yield made


@pytest.fixture
def routed_lab_root() -> Iterator[RoutedLab]:
    """Client namespace -> router namespace -> this host (root namespace), for host-network containers."""
    _require_root()
    with make_routed_lab(host_in_root=True) as made:
        yield made
