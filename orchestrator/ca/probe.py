"""Real Channel Access searches over UDP: who answers which name, through which address.

A probe sends one datagram per destination and round (a VersionRequest plus one SearchRequest per
name, built with caproto's sans-I/O commands) and collects the SearchResponses for a bounded time.
Every round uses a fresh socket, hence a fresh source port: the kernel spreads unicast over a
SO_REUSEPORT group by a hash of the 4-tuple (rule R3), so a new source port per round is what lets a
probe measure the 1/N a unicast client sees. All rounds are in flight at once, so a probe of 30 rounds
takes one collection window, not thirty.

The result is plain data (`ProbeResult.to_dict()`); `reach` turns it into the fraction of rounds in
which each server answered, which is what `rules.reach` predicts. Sockets come from a factory passed
in, so tests can probe from inside a network namespace and the readiness check can probe from anywhere.

CLI (for use inside a namespace: `ip netns exec NS python -m orchestrator.ca.probe ...`):
    python -m orchestrator.ca.probe --addr 198.18.5.255:5064 --names A B --repeat 30 --json
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import sys
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import caproto as ca

from orchestrator.errors import UsageError, report
from orchestrator.hostmodel import CA_SERVER_PORT

MAX_ROUNDS = 256  # sockets open at once; also bounds the cid space below
MAX_NAMES = 64
MAX_DESTINATIONS = 32
MAX_REPLIES = 20_000
# The longest name a CA search can carry here (issue 13, class 2; measured, docs/reliability.md): caproto's
# client refuses record names over 59 characters (caproto._constants.MAX_RECORD_LENGTH, raised by its
# SearchRequest), while libca (pyepics) and both IOC runtimes take 60. So 59 is the fleet-wide limit.
MAX_SEARCH_NAME = 59


def name_problem(name: str) -> str | None:
    """Why `name` cannot be searched for (too long, empty, not ASCII, whitespace), or None."""
    if not isinstance(name, str) or not name:
        return "is empty"
    record = name.partition(".")[0]
    if len(record) > MAX_SEARCH_NAME:
        return f"has {len(record)} characters before any `.FIELD`; CA clients search at most {MAX_SEARCH_NAME}"
    if not name.isascii() or any(c.isspace() or not c.isprintable() for c in name):
        return "has characters a PV name cannot have (non-ASCII, space, control)"
    if len(name) > 255:
        return "is longer than 255 characters"
    return None
USE_SENDER = "255.255.255.255"  # SearchResponse ip meaning "connect to the address this came from"

Address = tuple[str, int]


@dataclass(frozen=True)
class Reply:
    """One SearchResponse: which name, which probed destination and round, and who answered."""

    name: str
    destination: Address
    round: int
    source: Address  # the UDP source of the reply
    tcp_port: int  # the server's advertised TCP port
    advertised_ip: str  # SearchResponse ip as sent; 255.255.255.255 means "use source"

    @property
    def server_ip(self) -> str:
        return self.source[0] if self.advertised_ip == USE_SENDER else self.advertised_ip

    @property
    def server(self) -> Address:
        """Where a client would open the TCP circuit: (ip, tcp_port)."""
        return (self.server_ip, self.tcp_port)

    def to_dict(self) -> dict:
        return {**asdict(self), "server": list(self.server)}


@dataclass(frozen=True)
class ProbeResult:
    """Everything one probe sent and heard."""

    names: tuple[str, ...]
    destinations: tuple[Address, ...]
    rounds: int
    replies: tuple[Reply, ...] = ()
    errors: tuple[str, ...] = ()  # send failures, one line each
    elapsed: float = 0.0
    truncated: bool = False  # stopped at MAX_REPLIES

    def select(self, name: str | None = None, destination: Address | None = None) -> tuple[Reply, ...]:
        return tuple(r for r in self.replies
                     if (name is None or r.name == name) and (destination is None or r.destination == destination))

    def servers(self, name: str | None = None, destination: Address | None = None) -> frozenset[Address]:
        """The distinct (ip, tcp_port) servers that answered."""
        return frozenset(r.server for r in self.select(name, destination))

    def rounds_answered(self, name: str, destination: Address) -> int:
        return len({r.round for r in self.select(name, destination)})

    def to_dict(self) -> dict:
        return {
            "names": list(self.names),
            "destinations": [list(d) for d in self.destinations],
            "rounds": self.rounds,
            "elapsed": round(self.elapsed, 4),
            "truncated": self.truncated,
            "errors": list(self.errors),
            "replies": [r.to_dict() for r in self.replies],
        }


def cid_for(round_: int, dest_index: int, name_index: int) -> int:
    """A search id that encodes (round, destination, name) so replies need no lookup table."""
    return (round_ * MAX_DESTINATIONS + dest_index) * MAX_NAMES + name_index


def decode_cid(cid: int) -> tuple[int, int, int]:
    rest, name_index = divmod(cid, MAX_NAMES)
    round_, dest_index = divmod(rest, MAX_DESTINATIONS)
    return round_, dest_index, name_index


def search_datagram(names: Sequence[str], round_: int, dest_index: int) -> bytes:
    """The bytes of one search datagram: a VersionRequest then a SearchRequest per name."""
    commands = [ca.VersionRequest(0, ca.DEFAULT_PROTOCOL_VERSION)]
    commands += [ca.SearchRequest(name, cid_for(round_, dest_index, i), ca.DEFAULT_PROTOCOL_VERSION)
                 for i, name in enumerate(names)]
    return b"".join(bytes(c) for c in commands)


def parse_responses(data: bytes, sender: Address) -> list[tuple[int, int, str]]:
    """(cid, tcp_port, advertised_ip) of each SearchResponse in a datagram; other commands ignored.

    A malformed datagram yields nothing: a probe must not die because something odd answered.
    """
    try:
        commands = ca.Broadcaster(our_role=ca.CLIENT).recv(data, sender)
    except ca.RemoteProtocolError:
        return []
    return [(c.cid, c.port, c.ip) for c in commands if isinstance(c, ca.SearchResponse)]


def udp_socket() -> socket.socket:
    return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)


def search(
    names: Sequence[str],
    destinations: Sequence[Address],
    *,
    rounds: int = 1,
    timeout: float = 0.5,
    socket_factory: Callable[[], socket.socket] = udp_socket,
    clock: Callable[[], float] = time.monotonic,
    until_found: bool = False,
    fixed_port: bool = False,
) -> ProbeResult:
    """Search `names` at every destination, `rounds` times each from a fresh source port; collect replies.

    `fixed_port`: send every round from ONE socket instead, as libca and caproto clients search: behind
    a unicast address where IOCs share a port, all rounds then reach the same IOC (R3).

    Waits `timeout` seconds after sending for replies (all rounds share the window) and returns them
    all, including duplicates: a server answering twice (R14) shows up twice. `until_found` ends the
    wait as soon as every name has had an answer (readiness needs one, a measurement needs the window).
    """
    names, destinations = tuple(names), tuple((str(h), int(p)) for h, p in destinations)
    if not names or not destinations:
        raise UsageError("nothing to probe", "probe", "give at least one name and one destination")
    bad = next((n for n in names if name_problem(n)), None)
    if bad is not None:
        raise UsageError(f"PV name {bad[:40]!r}{'...' if len(bad) > 40 else ''} {name_problem(bad)}", "probe",
                         "search for names of at most 59 characters")
    if len(names) > MAX_NAMES or len(destinations) > MAX_DESTINATIONS or not 1 <= rounds <= MAX_ROUNDS:
        raise UsageError(f"probe too large ({len(names)} names, {len(destinations)} destinations, "
                         f"{rounds} rounds)", "probe",
                         f"at most {MAX_NAMES} names, {MAX_DESTINATIONS} destinations, {MAX_ROUNDS} rounds")
    start = clock()
    errors: list[str] = []
    replies: list[Reply] = []
    truncated = False
    socks: list[socket.socket] = []
    sel = selectors.DefaultSelector()
    try:
        for r in range(rounds):
            if not fixed_port or not socks:
                sock = socket_factory()
                socks.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
                sock.bind(("0.0.0.0", 0))
                sock.setblocking(False)
                sel.register(sock, selectors.EVENT_READ, None if fixed_port else r)
            for d, dest in enumerate(destinations):
                try:
                    sock.sendto(search_datagram(names, r, d), dest)
                except OSError as exc:
                    errors.append(f"round {r}: send to {dest[0]}:{dest[1]} failed: {exc.strerror or exc}")
        deadline = clock() + timeout
        unanswered = set(range(len(names))) if until_found else None
        while (left := deadline - clock()) > 0 and not truncated and unanswered != set():
            for key, _ in sel.select(left):
                while True:
                    try:
                        data, sender = key.fileobj.recvfrom(65536)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:  # e.g. ICMP port unreachable reported on the socket
                        break
                    for cid, port, ip in parse_responses(data, sender):
                        round_, d, n = decode_cid(cid)
                        if (key.data is not None and round_ != key.data) or round_ >= rounds \
                                or d >= len(destinations) or n >= len(names):
                            continue  # not ours (stale or foreign cid)
                        replies.append(Reply(names[n], destinations[d], round_, (sender[0], sender[1]), port, ip))
                        if unanswered is not None:
                            unanswered.discard(n)
                    if len(replies) >= MAX_REPLIES:
                        truncated = True
                        break
    finally:
        sel.close()
        for sock in socks:
            sock.close()
    return ProbeResult(names, destinations, rounds, tuple(replies), tuple(errors), clock() - start, truncated)


def search_batched(
    names: Sequence[str],
    destinations: Sequence[Address],
    *,
    rounds: int = 1,
    timeout: float = 0.5,
    socket_factory: Callable[[], socket.socket] = udp_socket,
    until_found: bool = False,
    parallel: int | None = None,
    fixed_port: bool = False,
    socket_budget: int = 512,
) -> ProbeResult:
    """`search` for any number of names and destinations: batches of MAX_NAMES names x MAX_DESTINATIONS
    destinations, in flight at once (at most `parallel` batches, and no more than `socket_budget` sockets,
    bounded by this process's file descriptors), merged into one result. What readiness and the doctor
    both search with. `fixed_port`: each batch sends all its rounds from one socket (one client's port)."""
    import resource
    from concurrent.futures import ThreadPoolExecutor

    names = tuple(names)
    destinations = tuple((str(h), int(p)) for h, p in destinations)
    batches = [(names[i:i + MAX_NAMES], destinations[j:j + MAX_DESTINATIONS])
               for i in range(0, len(names), MAX_NAMES) for j in range(0, len(destinations), MAX_DESTINATIONS)]

    def one(batch) -> ProbeResult:
        return search(batch[0], batch[1], rounds=rounds, timeout=timeout, socket_factory=socket_factory,
                      until_found=until_found, fixed_port=fixed_port)

    if len(batches) <= 1:
        return one((names, destinations))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    per_batch = 1 if fixed_port else rounds
    budget = max(per_batch, min(socket_budget, (soft if soft > 0 else 1024) // 2))
    workers = max(1, min(len(batches), budget // per_batch, parallel or len(batches)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        parts = list(pool.map(one, batches))
    return ProbeResult(names, destinations, rounds, tuple(r for p in parts for r in p.replies),
                       tuple(e for p in parts for e in p.errors), max(p.elapsed for p in parts),
                       any(p.truncated for p in parts))


def reach(result: ProbeResult, name: str, destination: Address) -> dict[Address, float]:
    """Fraction of rounds in which each server answered `name` searched at `destination`."""
    per_server: dict[Address, set[int]] = {}
    for r in result.select(name, destination):
        per_server.setdefault(r.server, set()).add(r.round)
    return {server: len(rounds) / result.rounds for server, rounds in sorted(per_server.items())}


def binomial_band(n: int, p: float, z: float = 4.0) -> tuple[int, int]:
    """Counts k out of n trials consistent with probability p (normal approximation, z sigmas, clipped).

    Used to judge a measured unicast reach against a predicted 1/N: z=4 makes a false alarm rarer than
    one in 15,000 checks. It rejects "none" only when n*p > z*z*(1-p), i.e. n >= 33 for p = 1/3 (the
    truth matrix uses n = 60); smaller n needs a smaller z or a separate "never answered" check.
    """
    import numpy as np

    mean, sd = n * p, float(np.sqrt(n * p * (1 - p)))
    return max(0, int(np.floor(mean - z * sd))), min(n, int(np.ceil(mean + z * sd)))


def parse_addr(text: str) -> Address:
    host, _, port = text.partition(":")
    return (host, int(port) if port else CA_SERVER_PORT)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.ca.probe", description=__doc__.splitlines()[0])
    parser.add_argument("--addr", action="append", required=True, help="host[:port], repeatable")
    parser.add_argument("--names", nargs="+", required=True)
    parser.add_argument("--repeat", type=int, default=1, help="rounds, each from a fresh source port")
    parser.add_argument("--timeout", type=float, default=0.5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        result = search(args.names, [parse_addr(a) for a in args.addr], rounds=args.repeat, timeout=args.timeout)
    except UsageError as exc:
        return report(exc, sys.stderr)
    if args.json:
        json.dump(result.to_dict(), sys.stdout)
        print()
        return 0
    for dest in result.destinations:
        for name in result.names:
            shares = reach(result, name, dest)
            text = ", ".join(f"{ip}:{port} {f:.0%}" for (ip, port), f in shares.items()) or "no answer"
            print(f"{dest[0]}:{dest[1]}  {name}: {text}")
    for line in result.errors:
        print(line, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
