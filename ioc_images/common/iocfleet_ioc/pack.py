"""A pack: many caproto IOCs served by one process, each network-identical to the IOC running alone.

The orchestrator starts `ioc.py` with IOCFLEET_PACK (JSON text) or IOCFLEET_PACK_FILE (a path to it):

    {"pack": "<pack name>", "members": [{"name": "<ioc name>", "env": {<that IOC's whole environment>}}]}

Every member gets its own caproto Context, built and run inside a `contextvars` context whose MEMBER
holds its name and environment; caproto reads the EPICS_* variables through get_environment_variables,
which `install()` points at MEMBER. So each member binds its own UDP socket(s), TCP listener and beacons
from its own environment, exactly as if it ran alone, and its log lines carry `[<ioc name>] `.

Why a dispatcher: the kernel hands every broadcast search to every socket bound to the port, so N
members in one process would each parse each broadcast (N x names; 48 s for 1,500 PVs at N = 500).
Members whose UDP sockets share a (bind address, port) form a *group*; the first to bind is its leader:

- each follower socket gets a classic BPF filter dropping datagrams sent to a broadcast or multicast
  address, so it still gets its SO_REUSEPORT share of unicast searches (the socket count is unchanged);
- the leader reads its socket itself with IP_PKTINFO: unicast goes to its own caproto path, and a
  broadcast is parsed once and each search handed to the member(s) serving that name (one name table
  for the group), which reply from their own sockets with their own TCP port as caproto does.

Every member's UDP socket is read by the pack (MemberTransport), up to 64 datagrams per wake-up: one loop
serves every member, and caproto's one-datagram-per-turn reader let a burst of searches overflow a member's
socket buffer where the same IOC alone kept up.

EPICS_CAS_IGNORE_ADDR_LIST stays each member's caproto's business: dispatched searches go through the
member's own `_broadcaster_queue_iteration`, which applies caproto's check exactly as when alone.

The pack is one unit: a member whose server fails ends the process (exit 1) after logging
`[<ioc>] crashed: ...`; the restart policy applies to the whole pack. SIGTERM/SIGINT stop all members
cleanly (exit 0). IOCFLEET_PACK_DISPATCH=naive turns the dispatcher off (every socket parses every
broadcast, as N separate processes would): for benchmarks only.
"""

from __future__ import annotations

import asyncio
import contextvars
import ctypes
import ipaddress
import json
import logging
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, TextIO

import caproto as ca
import caproto._utils as ca_utils
import caproto.server.common as ca_server_common
from caproto.asyncio.utils import _create_udp_socket

from .spec import IocSpec, IocSpecError, load_ioc

EXIT_BAD_PACK = 2
EXIT_CRASHED = 1
MULTICAST_FLOOR = int(ipaddress.IPv4Address("224.0.0.0"))  # multicast and 255.255.255.255 lie above
LIMITED_BROADCAST = "255.255.255.255"
FIB_TRIE = "/proc/net/fib_trie"

# Linux constants the socket module does not export
SO_ATTACH_FILTER = 26
IP_PKTINFO = 8
SKF_NET_OFF = 0xFFF00000  # -0x100000 as u32: classic BPF loads relative to the IP header
_IN_PKTINFO = struct.Struct("i4s4s")  # ifindex, spec_dst, addr (the header's destination)
_CMSG_SPACE = socket.CMSG_SPACE(_IN_PKTINFO.size)
_DRAIN = 64  # datagrams read per wake-up of the leader's reader, so one busy socket cannot starve the loop


@dataclass(frozen=True)
class Member:
    """One IOC of the pack: its name, its whole environment, and its parsed description."""

    name: str
    env: dict[str, str]
    spec: IocSpec


MEMBER: contextvars.ContextVar[Member | None] = contextvars.ContextVar("iocfleet_pack_member", default=None)


class PackError(ValueError):
    """The pack description is unusable; the message names the member when one is at fault."""


# ---------------------------------------------------------------- loading

def load_pack(environ: Mapping[str, str]) -> tuple[str, list[Member]]:
    """The pack name and its members from IOCFLEET_PACK / IOCFLEET_PACK_FILE; raise PackError."""
    text = environ.get("IOCFLEET_PACK")
    if not text or not text.strip():
        path = environ.get("IOCFLEET_PACK_FILE", "")
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise PackError(f"IOCFLEET_PACK_FILE={path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PackError(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(data, dict) or not isinstance(data.get("pack"), str) or not data["pack"]:
        raise PackError('must be an object with a non-empty string "pack" and a list "members"')
    raw = data.get("members")
    if not isinstance(raw, list) or not raw:
        raise PackError(f'pack {data["pack"]}: "members" must be a non-empty list')
    members, seen = [], set()
    for index, item in enumerate(raw):
        members.append(_member(item, index, seen))
    return data["pack"], members


def _member(item: Any, index: int, seen: set[str]) -> Member:
    name = item.get("name") if isinstance(item, dict) else None
    if not isinstance(name, str) or not name:
        raise PackError(f"members[{index}]: must be an object with a non-empty string \"name\"")
    if name in seen:
        raise PackError(f"member {name}: name appears twice in the pack")
    seen.add(name)
    env = item.get("env")
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise PackError(f"member {name}: \"env\" must be an object of string values")
    if env.get("IOCFLEET_GROUP"):
        raise PackError(f"member {name}: a user's PVGroup (IOCFLEET_GROUP) cannot run in a pack")
    try:
        spec = load_ioc(env)
    except IocSpecError as exc:
        raise PackError(f"member {name}: bad IOC description (IOCFLEET_IOC):\n"
                        + "\n".join(f"  - {p}" for p in exc.problems)) from None
    return Member(name, dict(env), spec)


def load_or_exit(environ: Mapping[str, str], err: TextIO = sys.stderr) -> tuple[str, list[Member]]:
    """load_pack, or end the process with exit status 2 and the reason (naming the member at fault)."""
    try:
        return load_pack(environ)
    except PackError as exc:
        print(f"[pack {_pack_name_hint(environ)}] error: bad pack description (IOCFLEET_PACK): {exc}", file=err)
        print("  fix: regenerate the plan (`iocfleet plan`) or correct the JSON; see docs/images.md", file=err)
        err.flush()
        raise SystemExit(EXIT_BAD_PACK) from None


def _pack_name_hint(environ: Mapping[str, str]) -> str:
    try:
        return str(json.loads(environ.get("IOCFLEET_PACK") or "{}").get("pack") or "?")
    except (ValueError, AttributeError):
        return "?"


# ---------------------------------------------------------------- caproto reads the member's environment

def member_environment() -> dict:
    """caproto's get_environment_variables, over the current member's environment (os.environ outside)."""
    member = MEMBER.get()
    if member is None:
        return _ORIGINAL_GET_ENV()
    result = dict(member.env)
    for key, default in ca_utils._ENVIRONMENT_DEFAULTS.items():
        try:
            result[key] = type(default)(result[key])
        except KeyError:
            result[key] = default
        except Exception as ex:
            raise ca.CaprotoEnvironmentSetupError(
                f"Environment variable {key} misconfigured: {ex.__class__.__name__} {ex}") from ex
    return result


_ORIGINAL_GET_ENV = ca_utils.get_environment_variables


def install() -> None:
    """Point caproto's environment reads at MEMBER, and prefix caproto's own log lines with the member."""
    for module in (ca_utils, ca_server_common, ca):
        module.get_environment_variables = member_environment
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_MemberFormatter("%(message)s"))
    handler.setLevel(logging.WARNING)  # what Python's last-resort handler shows for an unconfigured caproto
    caproto_log = logging.getLogger("caproto")
    caproto_log.addHandler(handler)
    caproto_log.propagate = False


class _MemberFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return prefix() + super().format(record)


def prefix() -> str:
    member = MEMBER.get()
    return f"[{member.name}] " if member else ""


def say(line: str, err: bool = False) -> None:
    """Print one line of the current member, prefixed with its name."""
    print(prefix() + line, file=sys.stderr if err else sys.stdout, flush=True)


# ---------------------------------------------------------------- kernel facts and the follower filter

def broadcast_addresses(fib_trie: str) -> set[str]:
    """The addresses /proc/net/fib_trie marks `/32 link BROADCAST` (every table), plus 255.255.255.255."""
    found = {LIMITED_BROADCAST}
    last = None
    for line in fib_trie.splitlines():
        text = line.strip()
        if text.startswith("|--"):
            last = text[3:].strip()
        elif last and text.startswith("/32") and text.endswith("BROADCAST"):
            found.add(last)
    return found


def read_broadcast_addresses() -> set[str]:
    with open(FIB_TRIE, encoding="ascii") as handle:
        return broadcast_addresses(handle.read())


def no_broadcast_program(broadcasts: set[str]) -> list[tuple[int, int, int, int]]:
    """A classic BPF program (code, jt, jf, k) accepting a datagram unless its IP destination is one of
    `broadcasts` or at least 224.0.0.0 (multicast, 255.255.255.255)."""
    addresses = sorted(int(ipaddress.IPv4Address(a)) for a in broadcasts if int(ipaddress.IPv4Address(a))
                       < MULTICAST_FLOOR)
    if len(addresses) > 250:
        raise ValueError(f"{len(addresses)} broadcast addresses: more than one BPF jump can skip")
    n = len(addresses)
    program = [(0x20, 0, 0, SKF_NET_OFF + 16),  # ld [net + 16]: the destination address
               (0x35, n + 1, 0, MULTICAST_FLOOR)]  # jge #224.0.0.0 -> drop
    for i, address in enumerate(addresses):
        program.append((0x15, n - i, 0, address))  # jeq #broadcast -> drop
    program += [(0x06, 0, 0, 0xFFFFFFFF),  # ret accept
                (0x06, 0, 0, 0)]  # drop
    return program


def attach_filter(sock: socket.socket, program: list[tuple[int, int, int, int]]) -> None:
    """SO_ATTACH_FILTER: the kernel runs `program` on every datagram before queueing it to `sock`."""
    code = b"".join(struct.pack("HBBI", *insn) for insn in program)
    buffer = ctypes.create_string_buffer(code)
    fprog = struct.pack("HL", len(program), ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


# ---------------------------------------------------------------- groups: one leader parses broadcasts

@dataclass
class Group:
    """The members' sockets on one (bind address, port): the leader dispatches broadcasts by PV name."""

    key: tuple[str, int]
    planned: int
    broadcasts: set[str]
    leader: Any = None
    names: dict[str, list] = field(default_factory=dict)
    joined: set = field(default_factory=set)
    parser: Any = field(default_factory=lambda: ca.Broadcaster(our_role=ca.SERVER))

    def join(self, ctx) -> None:
        """`ctx` serves on this group's socket from now on: broadcasts for its names reach it."""
        if ctx in self.joined:
            return  # a recreated socket (caproto does that after a receive error)
        self.joined.add(ctx)
        for name in ctx.pvdb:
            self.names.setdefault(name, []).append(ctx)

    def owners(self, name: str) -> list:
        """The members serving `name` (record.FIELD and modifiers by their record, as caproto resolves)."""
        found = self.names.get(name)
        if found:
            return found
        try:
            rec_field, rec, _, _ = ca.parse_record_field(name)
        except ValueError:
            return []
        return self.names.get(rec_field) or self.names.get(rec) or []

    def dispatch(self, data: bytes, address: tuple[str, int]) -> None:
        """Parse one broadcast once; hand each member its own searches (plus any VersionRequest)."""
        try:
            commands = self.parser.recv(data, address)
        except ca.RemoteProtocolError:
            return  # a member would drop it too (caproto logs it at debug level)
        versions = [c for c in commands if isinstance(c, ca.VersionRequest)]
        bundles: dict[Any, list] = {}
        for command in commands:
            if isinstance(command, ca.SearchRequest):
                for ctx in self.owners(command.name):
                    bundles.setdefault(ctx, list(versions)).append(command)
        for ctx, bundle in bundles.items():
            try:
                ctx.command_bundle_queue.put_nowait((address, bundle))
            except asyncio.QueueFull:
                pass  # as a full socket buffer drops a datagram


class MemberTransport:
    """A member's UDP socket, read by the pack itself: caproto's sendto/close, and a reader that drains up to
    _DRAIN datagrams per wake-up into the member's queue. caproto's own transport reads one datagram per
    loop turn; in a pack one turn serves every member, so a burst of searches (a doctor's 250 rounds at
    once) outran it and overflowed a member's socket buffer, losing searches an IOC alone would answer.
    The group's leader (`leader=True`) also learns each datagram's destination (IP_PKTINFO) and hands a
    broadcast to the group's dispatcher."""

    def __init__(self, sock: socket.socket, ctx, interface: str, group: "Group | None" = None,
                 leader: bool = False) -> None:
        self.sock, self.ctx, self.interface, self.group, self.leader = sock, ctx, interface, group, leader
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(sock.fileno(), self._read)

    def _read(self) -> None:
        for _ in range(_DRAIN):
            try:
                data, ancdata, _, address = self.sock.recvmsg(ca.MAX_UDP_RECV, _CMSG_SPACE if self.leader else 0)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.ctx.broadcaster_datagram_queue.put((self.interface, exc, None))
                return
            if not data:
                continue
            if self.leader and is_broadcast(destination(ancdata), self.group.broadcasts):
                self.group.dispatch(data, address)
            else:
                self.ctx.broadcaster_datagram_queue.put((self.interface, data, address))

    async def sendto(self, data: bytes, address: tuple[str, int]) -> None:
        try:
            await self.loop.sock_sendto(self.sock, data, address)
        except OSError as exc:
            raise ca.CaprotoNetworkError(f"Failed to send to {address[0]}:{address[1]}") from exc

    def sockname(self) -> tuple[str, int]:
        return self.sock.getsockname()

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()


def destination(ancdata: list) -> str | None:
    """The IP header's destination address from an IP_PKTINFO control message."""
    for level, kind, payload in ancdata:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(payload) >= _IN_PKTINFO.size:
            return socket.inet_ntoa(_IN_PKTINFO.unpack_from(payload)[2])
    return None


def is_broadcast(address: str | None, broadcasts: set[str]) -> bool:
    if address is None:
        return False
    return address in broadcasts or int(ipaddress.IPv4Address(address)) >= MULTICAST_FLOOR


class PackMember:
    """Mixin for a caproto asyncio server Context: its UDP socket joins the pack's group for its
    (interface, port) — as leader (IP_PKTINFO reader) or filtered follower — when the group is shared."""

    pack_groups: dict[tuple[str, int], Group] = {}

    async def _create_broadcaster_transport(self, interface):
        old = self.udp_socks.pop(interface, None)
        if old is not None:
            old.close()
        group = self.pack_groups.get((interface, self.ca_server_port))
        shared = group is not None and group.planned > 1
        sock = _create_udp_socket()
        leader = shared and (group.leader is None or group.leader is self)
        if leader:
            group.leader = self
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        elif shared:
            attach_filter(sock, no_broadcast_program(group.broadcasts))
        sock.bind((interface, self.ca_server_port))
        sock.setblocking(False)
        self.udp_socks[interface] = MemberTransport(sock, self, interface, group, leader)
        if shared:
            group.join(self)


def plan_groups(contexts: list, broadcasts: set[str]) -> dict[tuple[str, int], Group]:
    """One Group per (bind address, port) the members' contexts will bind, counting its sockets."""
    counts: dict[tuple[str, int], int] = {}
    for ctx in contexts:
        for interface in ctx.interfaces:
            key = (interface, ctx.ca_server_port)
            counts[key] = counts.get(key, 0) + 1
    return {key: Group(key, n, broadcasts) for key, n in counts.items()}


def context_sockets(ctx) -> list[str]:
    """The member's own UDP sockets and TCP listeners, as 'udp 0.0.0.0:5064' (report.bound_sockets form)."""
    found = set()
    for transport in ctx.udp_socks.values():
        name = transport.sockname() if isinstance(transport, MemberTransport) else \
            transport.transport.get_extra_info("sockname")
        found.add(f"udp {name[0]}:{name[1]}")
    for sock in ctx.tcp_sockets.values():
        host, port = sock.getsockname()[:2]
        found.add(f"tcp {host}:{port}")
    return sorted(found)


# ---------------------------------------------------------------- running the pack

Build = Callable[[Member, type], tuple[Any, Callable]]


def main(environ: Mapping[str, str], base_context: type, build: Build) -> None:
    """Run the pack described in `environ` until a signal (exit 0) or a member's crash (exit 1).

    `build(member, context_class)` makes one member's Context and startup hook (ioc.py's make_server);
    it is called inside the member's contextvars context, so caproto reads the member's environment.
    """
    name, members = load_or_exit(environ)
    install()
    dispatch = environ.get("IOCFLEET_PACK_DISPATCH", "") != "naive"
    code = asyncio.run(run_pack(name, members, base_context, build, dispatch))
    raise SystemExit(code)


async def run_pack(name: str, members: list[Member], base_context: type, build: Build,
                   dispatch: bool = True) -> int:
    started = time.monotonic()
    context_class = type(f"Packed{base_context.__name__}", (PackMember, base_context), {}) if dispatch \
        else base_context
    loop = asyncio.get_running_loop()
    launched = []
    for member in members:
        cv = contextvars.copy_context()
        cv.run(MEMBER.set, member)
        ctx, startup = cv.run(build, member, context_class)
        launched.append((member, cv, ctx, startup))
    if dispatch:
        context_class.pack_groups = plan_groups([ctx for _, _, ctx, _ in launched], read_broadcast_addresses())
    print(f"[pack {name}] starting {len(members)} IOCs"
          f"{'' if dispatch else ' (naive dispatch: for benchmarks only)'}", flush=True)
    tasks = {loop.create_task(ctx.run(startup_hook=startup), context=cv): member
             for member, cv, ctx, startup in launched}
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    stopper = loop.create_task(stop.wait())
    done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    finished = [t for t in done if t in tasks and not t.cancelled()]
    crashed = [(tasks[t], t.exception()) for t in finished if t.exception()]
    ended = [tasks[t] for t in finished if not t.exception()]
    for member, exc in crashed:
        print(f"[{member.name}] crashed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
    for member in ended:
        print(f"[{member.name}] crashed: its server stopped", file=sys.stderr, flush=True)
    for task in [*tasks, stopper]:
        task.cancel()
    await asyncio.gather(*tasks, stopper, return_exceptions=True)
    if crashed or ended:
        print(f"[pack {name}] stopped: a member crashed (the pack is one unit; its restart policy applies)",
              file=sys.stderr, flush=True)
        return EXIT_CRASHED
    print(f"[pack {name}] stopped after {time.monotonic() - started:.1f} s", flush=True)
    return 0
