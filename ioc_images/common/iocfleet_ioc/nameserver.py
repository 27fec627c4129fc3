"""A Channel Access name server for one iocfleet fleet: one unicast address that reaches every IOC.

Clients search here instead of broadcasting: over TCP (libca's EPICS_CA_NAME_SERVERS) or over UDP
(an EPICS_CA_ADDR_LIST entry, for clients such as caproto's that have no name-server support). For every
PV of the fleet it answers with the owning IOC's address and TCP port (the SearchResponse ip field set to
the IOC's interface address, never 255.255.255.255: over TCP libca would take that to mean "this name
server's own address and port"). Names it does not know get no answer (CA has no negative answer).

Which names exist, and which IOC owns each, comes from a names file written from the plan (`--names`,
re-read whenever it changes, so `up`/`down` update it without a restart). The IOCs share one UDP port,
so their TCP ports are chosen at start (one gets the server port, the others a free one): the name
server learns each IOC's port with a CA search of its own to the fleet's search address (the broadcast
where all IOCs hear it, from the names file), caches it, and drops a cached port as soon as nothing
listens on it any more (/proc/net/tcp) or after `ttl` seconds, so a restarted IOC is found again.
A name two IOCs answer for is never answered (the planner reports it as duplicate-pv).

Built on caproto's sans-I/O commands; one thread, one selector.

    python -m iocfleet_ioc.nameserver --names FILE [--port 5066] [--bind 0.0.0.0]
    (or IOCFLEET_NS_FILE, IOCFLEET_NS_PORT, IOCFLEET_NS_BIND)
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import sys
import time
from dataclasses import dataclass, field

import caproto as ca
from caproto._commands import read_from_bytestream  # the stream parser caproto's circuits use

VERSION = 13  # CA minor version we speak; libca sends TCP searches only to a name server >= 4.12
DISCOVERY_WINDOW = 0.5  # seconds a discovery search waits for IOC replies
SETTLE = 0.05  # after the first reply of a round, wait this long for a second IOC claiming the same name
CACHE_TTL = 30.0
LIVENESS_EVERY = 0.5  # seconds between /proc/net/tcp looks
RELOAD_EVERY = 0.5
MAX_TCP_BUFFER = 1 << 20
NAMES_PER_DATAGRAM = 100

Address = tuple[str, int]


# -- the names file ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class NameTable:
    """What the names file says: name -> IOC, IOC -> address clients connect to, where IOCs hear searches."""

    fleet: str = ""
    owner: dict = field(default_factory=dict)  # pv name -> ioc name
    address: dict = field(default_factory=dict)  # ioc name -> interface address clients connect to
    search: tuple = ()  # ((host, port), ...) where every IOC hears a search
    ambiguous: frozenset = frozenset()  # names listed under two IOCs: never answered

    @classmethod
    def from_dict(cls, data: dict) -> "NameTable":
        owner: dict[str, str] = {}
        ambiguous = set()
        address = {}
        for ioc, entry in dict(data.get("iocs", {})).items():
            address[str(ioc)] = str(entry["address"])
            for pv in entry.get("pvs", ()):
                if pv in owner and owner[pv] != ioc:
                    ambiguous.add(pv)
                owner[str(pv)] = str(ioc)
        search = tuple((str(h), int(p)) for h, p in data.get("search", ()))
        return cls(str(data.get("fleet", "")), owner, address, search, frozenset(ambiguous))


def read_table(path: str) -> NameTable:
    with open(path) as handle:
        return NameTable.from_dict(json.load(handle))


# -- discovery and cache (pure state; I/O in the server below) ---------------------------------------

@dataclass
class Resolution:
    ioc: str
    ip: str
    port: int
    at: float


class Resolver:
    """Name -> (ip, tcp port), learned from IOC replies to our own searches; no I/O here."""

    def __init__(self, ttl: float = CACHE_TTL) -> None:
        self.ttl = ttl
        self.cache: dict[str, Resolution] = {}
        self.conflicts: set[str] = set()

    def lookup(self, table: NameTable, name: str, now: float, listening=None) -> Resolution | None:
        hit = self.cache.get(name)
        if hit is None or table.owner.get(name) != hit.ioc or now - hit.at > self.ttl:
            return None
        if listening is not None and not listening(hit.ip, hit.port):
            self.forget_endpoint(hit.ip, hit.port)
            return None
        return hit

    def learn(self, table: NameTable, name: str, ip: str, port: int, now: float, round_answers: dict) -> None:
        """Record one discovery reply; two different endpoints in one round make the name ambiguous."""
        ioc = table.owner.get(name)
        if ioc is None or name in table.ambiguous:
            return
        answers = round_answers.setdefault(name, set())
        answers.add(port)
        if len(answers) > 1:
            self.conflicts.add(name)
            self.cache.pop(name, None)
            return
        if name not in self.conflicts:
            self.cache[name] = Resolution(ioc, table.address.get(ioc, ip), port, now)

    def forget_endpoint(self, ip: str, port: int) -> None:
        for name in [n for n, r in self.cache.items() if (r.ip, r.port) == (ip, port)]:
            del self.cache[name]


def listening_ports(paths=("/proc/net/tcp",)) -> set[int] | None:
    """TCP ports something listens on in this network namespace; None if /proc cannot tell."""
    ports = set()
    try:
        for path in paths:
            with open(path) as handle:
                next(handle, None)
                for line in handle:
                    parts = line.split()
                    if len(parts) > 3 and parts[3] == "0A":  # TCP_LISTEN
                        ports.add(int(parts[1].rsplit(":", 1)[1], 16))
    except OSError:
        return None
    return ports


def search_datagram(names, cids) -> bytes:
    commands = [ca.VersionRequest(0, VERSION)]
    commands += [ca.SearchRequest(n, c, VERSION) for n, c in zip(names, cids)]
    return b"".join(bytes(c) for c in commands)


def answer_bytes(answers) -> bytes:
    """VersionResponse then one SearchResponse per (cid, ip, port)."""
    commands = [ca.VersionResponse(VERSION)]
    commands += [ca.SearchResponse(port, ip, cid, VERSION) for cid, ip, port in answers]
    return b"".join(bytes(c) for c in commands)


# -- the server ----------------------------------------------------------------------------------------

@dataclass
class Pending:
    """A client search waiting for discovery: reply over `conn` (TCP) or to `addr` (UDP)."""

    name: str
    cid: int
    conn: object
    addr: Address | None


class NameServer:
    def __init__(self, names_file: str | None, port: int, bind: str = "0.0.0.0", ttl: float = CACHE_TTL,
                 log=print, names: dict | None = None) -> None:
        self.names_file, self.log = names_file, log
        self.inline = NameTable.from_dict(names) if names is not None else None
        self.table = NameTable()
        self.file_key = None
        self.resolver = Resolver(ttl)
        self.pending: list[Pending] = []
        self.discovering: dict[int, str] = {}  # cid -> name of the current discovery round
        self.round_answers: dict = {}
        self.discovery_until = 0.0
        self.settle_at: float | None = None
        self.next_cid = 1
        self.tcp_buffers: dict[socket.socket, bytearray] = {}
        self.sel = selectors.DefaultSelector()
        self.udp = self._socket(socket.SOCK_DGRAM, bind, port)
        self.tcp = self._socket(socket.SOCK_STREAM, bind, port)
        self.tcp.listen(64)
        self.disco = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.disco.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        self.disco.bind(("0.0.0.0", 0))
        for sock, kind in ((self.udp, "udp"), (self.tcp, "accept"), (self.disco, "disco")):
            sock.setblocking(False)
            self.sel.register(sock, selectors.EVENT_READ, kind)
        self._listening_at, self._listening = 0.0, None
        self._reload_at = 0.0
        self.reload(force=True)

    @staticmethod
    def _socket(kind: int, bind: str, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, kind)
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((bind, port))  # no SO_REUSEPORT: a second name server on this port fails here, loudly
        return sock

    @property
    def port(self) -> int:
        return self.udp.getsockname()[1]

    # -- names file --
    def reload(self, force: bool = False) -> None:
        if self.inline is not None:  # names given inline (exports): fixed for the life of the process
            if force:
                self.table = self.inline
                self.log(f"names: {len(self.table.owner)} PVs of {len(self.table.address)} IOCs (inline)")
            return
        try:
            st = os.stat(self.names_file)
            key = (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            key = None
        if key == self.file_key and not force:
            return
        self.file_key = key
        if key is None:
            self.table = NameTable()
            self.log(f"names file {self.names_file} missing: answering nothing")
            return
        try:
            table = read_table(self.names_file)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.log(f"names file {self.names_file} unreadable ({exc}); keeping the previous names")
            return
        self.table = table
        self.resolver.conflicts.clear()
        for name in table.ambiguous:
            self.log(f"{name} is listed under two IOCs: never answered (duplicate-pv)")
        self.log(f"names: {len(table.owner)} PVs of {len(table.address)} IOCs; discovery via "
                 + " ".join(f"{h}:{p}" for h, p in table.search))

    # -- liveness --
    def is_listening(self, ip: str, port: int) -> bool:
        now = time.monotonic()
        if now - self._listening_at > LIVENESS_EVERY:
            self._listening, self._listening_at = listening_ports(), now
        return True if self._listening is None else port in self._listening

    # -- client searches --
    def handle_searches(self, commands, conn, addr) -> None:
        now = time.monotonic()
        answers, waiting = [], False
        for command in commands:
            if not isinstance(command, ca.SearchRequest):
                continue
            name = command.name
            if name not in self.table.owner or name in self.table.ambiguous or name in self.resolver.conflicts:
                continue  # not ours: silence
            hit = self.resolver.lookup(self.table, name, now, self.is_listening)
            if hit is not None:
                answers.append((command.cid, hit.ip, hit.port))
            else:
                self.pending.append(Pending(name, command.cid, conn, addr))
                waiting = True
        if answers:
            self.reply(conn, addr, answers)
        if waiting:
            self.discover()

    def reply(self, conn, addr, answers) -> None:
        if conn is None and len({(ip, port) for _, ip, port in answers}) > 1:
            # One datagram per IOC: caproto's threading client (1.3) gives every name of a datagram the
            # address of its last SearchResponse (threading/client.py, the queue.put after the loop).
            by_server: dict = {}
            for answer in answers:
                by_server.setdefault(answer[1:], []).append(answer)
            for group in by_server.values():
                self.reply(conn, addr, group)
            return
        for i in range(0, max(1, len(answers)), NAMES_PER_DATAGRAM):
            data = answer_bytes(answers[i:i + NAMES_PER_DATAGRAM])
            try:
                if conn is None:
                    self.udp.sendto(data, addr)
                else:
                    conn.setblocking(True)
                    conn.settimeout(2.0)
                    conn.sendall(data)
                    conn.setblocking(False)
            except OSError as exc:
                self.log(f"reply to {addr or _peer(conn)} failed: {exc}")
                if conn is not None:
                    self.close(conn)
                return

    # -- discovery --
    def discover(self) -> None:
        now = time.monotonic()
        if now < self.discovery_until:
            names = [p.name for p in self.pending if p.name not in self.discovering.values()]
        else:
            self.discovering, self.round_answers = {}, {}
            names = [p.name for p in self.pending]
        names = list(dict.fromkeys(names))
        if not names or not self.table.search:
            return
        cids = []
        for name in names:
            cid, self.next_cid = self.next_cid, self.next_cid % 0x7FFFFFFF + 1
            self.discovering[cid] = name
            cids.append(cid)
        self.discovery_until = now + DISCOVERY_WINDOW
        self.settle_at = None
        for i in range(0, len(names), NAMES_PER_DATAGRAM):
            data = search_datagram(names[i:i + NAMES_PER_DATAGRAM], cids[i:i + NAMES_PER_DATAGRAM])
            for dest in self.table.search:
                try:
                    self.disco.sendto(data, dest)
                except OSError as exc:
                    self.log(f"discovery search to {dest[0]}:{dest[1]} failed: {exc}")

    def on_discovery_reply(self, data: bytes, sender: Address) -> None:
        try:
            commands = ca.Broadcaster(our_role=ca.CLIENT).recv(data, sender)
        except Exception:  # junk from the network must never stop the name server
            return
        now = time.monotonic()
        for c in commands:
            if isinstance(c, ca.SearchResponse) and c.cid in self.discovering:
                ip = sender[0] if c.ip == "255.255.255.255" else c.ip
                self.resolver.learn(self.table, self.discovering[c.cid], ip, c.port, now, self.round_answers)
                if self.settle_at is None:
                    self.settle_at = now + SETTLE

    def flush_pending(self, final: bool) -> None:
        """Answer the waiting searches that discovery resolved; keep the rest until the round ends
        (`final`), then drop them: a name no IOC answered gets no answer from us either."""
        ready: dict = {}
        keep = []
        for p in self.pending:
            if p.conn is not None and p.conn not in self.tcp_buffers:
                continue  # its circuit closed
            hit = self.resolver.cache.get(p.name)
            if p.name in self.resolver.conflicts:
                self.log(f"{p.name}: two IOCs answer it; not answering (duplicate-pv)")
            elif hit is not None:
                key = (id(p.conn), p.addr)
                ready.setdefault(key, (p.conn, p.addr, []))[2].append((p.cid, hit.ip, hit.port))
            elif not final:
                keep.append(p)
        self.pending = keep
        for conn, addr, answers in ready.values():
            self.reply(conn, addr, answers)

    # -- TCP circuits --
    def accept(self) -> None:
        try:
            conn, _ = self.tcp.accept()
        except OSError:
            return
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.tcp_buffers[conn] = bytearray()
        self.sel.register(conn, selectors.EVENT_READ, "tcp")
        self.reply(conn, None, [])  # VersionResponse first: libca sends TCP searches only after it

    def on_tcp(self, conn) -> None:
        try:
            data = conn.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.close(conn)
            return
        buf = self.tcp_buffers[conn]
        buf += data
        if len(buf) > MAX_TCP_BUFFER:
            self.close(conn)
            return
        commands = []
        while True:
            try:
                rest, command, needed = read_from_bytestream(buf, ca.CLIENT)
            except Exception as exc:  # junk from the network must never stop the name server
                self.log(f"{_peer(conn)}: {exc}; closing")
                self.close(conn)
                return
            if command is ca.NEED_DATA:
                break
            buf = bytearray(rest)
            commands.append(command)
        self.tcp_buffers[conn] = buf
        if any(isinstance(c, ca.EchoRequest) for c in commands):
            try:
                conn.send(bytes(ca.EchoResponse()))
            except OSError:
                pass
        self.handle_searches(commands, conn, None)

    def close(self, conn) -> None:
        if conn in self.tcp_buffers:
            del self.tcp_buffers[conn]
            self.sel.unregister(conn)
            conn.close()

    # -- loop --
    def step(self, timeout: float = 0.2) -> None:
        now = time.monotonic()
        if self.pending:
            timeout = max(0.0, min(timeout, self.discovery_until - now,
                                   self.settle_at - now if self.settle_at else timeout))
        for key, _ in self.sel.select(timeout):
            if key.data == "udp":
                self._drain(self.udp, self._on_udp)
            elif key.data == "disco":
                self._drain(self.disco, self.on_discovery_reply)
            elif key.data == "accept":
                self.accept()
            else:
                self.on_tcp(key.fileobj)
        now = time.monotonic()
        if self.pending and now >= self.discovery_until:
            self.flush_pending(final=True)
        elif self.pending and self.settle_at is not None and now >= self.settle_at:
            self.flush_pending(final=False)
        if now - self._reload_at > RELOAD_EVERY:
            self._reload_at = now
            self.reload()

    def _drain(self, sock, handler) -> None:
        for _ in range(256):
            try:
                data, sender = sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError, ConnectionRefusedError):
                return
            except OSError:
                return
            handler(data, sender)

    def _on_udp(self, data: bytes, sender: Address) -> None:
        try:
            commands = ca.Broadcaster(our_role=ca.SERVER).recv(data, sender)
        except Exception:  # junk from the network must never stop the name server
            return
        self.handle_searches(commands, None, sender)

    def serve_forever(self) -> None:
        while True:
            self.step()


def _peer(conn) -> str:
    try:
        host, port = conn.getpeername()[:2]
        return f"{host}:{port}"
    except OSError:
        return "?"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m iocfleet_ioc.nameserver", description=__doc__.splitlines()[0])
    parser.add_argument("--names", default=os.environ.get("IOCFLEET_NS_FILE"), help="names file (JSON)")
    parser.add_argument("--names-json", default=os.environ.get("IOCFLEET_NS_NAMES"),
                        help="the names as inline JSON instead of a file (exports; never re-read)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("IOCFLEET_NS_PORT", "5066")))
    parser.add_argument("--bind", default=os.environ.get("IOCFLEET_NS_BIND", "0.0.0.0"))
    parser.add_argument("--ttl", type=float, default=CACHE_TTL)
    args = parser.parse_args(argv)
    if not args.names and not args.names_json:
        print("nameserver: give --names FILE (or IOCFLEET_NS_FILE, or IOCFLEET_NS_NAMES inline)", file=sys.stderr)
        return 2
    try:
        inline = json.loads(args.names_json) if args.names_json and not args.names else None
    except ValueError as exc:
        print(f"nameserver: IOCFLEET_NS_NAMES is not JSON: {exc}", file=sys.stderr)
        return 2
    try:
        server = NameServer(args.names, args.port, args.bind, args.ttl,
                            log=lambda text: print(f"nameserver: {text}", flush=True), names=inline)
    except OSError as exc:
        print(f"nameserver: cannot listen on {args.bind}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"nameserver: listening on {args.bind}:{server.port} (TCP and UDP)", flush=True)
    print(f"READY {os.getpid()}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sys.exit(main())
