"""Search like a real client: from fixed source ports, with retries, and count what every round reached.

libca and caproto clients search every name from ONE UDP socket. Behind a unicast address where several
IOCs share a port, the kernel's SO_REUSEPORT hash of that socket's 4-tuple picks the same IOC for every
search (R3), so the client reaches one IOC and never the others. A probe that opens a fresh socket per
round hides this: over a few rounds it hears every IOC once. A sweep therefore searches from a few
*rounds*, each bound to one source port: `fresh` sockets with one round each, and one `fixed` socket
that carries `fixed_rounds` rounds (the port a long-lived client keeps). A name missed in a round is
searched again from the SAME socket, `retries` times, `pace` seconds apart:

- random loss (a loaded host dropping a datagram on a broadcast path) is repaired by a retry;
- a unicast path in front of a shared port is not: the retry hashes to the same IOC as before, so the
  name stays missing. A name answered in every round (after retries) has reach 1.0; anything less is
  systematic.

Every datagram names its round, destination and name in the search id, so replies need no lookup. All
rounds are in flight at once: a sweep that reaches everything takes one reply time, a failing one
`window + retries * pace + grace` seconds. Sockets come from a factory (tests probe from a namespace).

A large sweep is a load of its own: 500 IOCs (2,500 names, 5 rounds) is 12,500 searches, and a server
process holding many IOCs (a pack, issue 14) parses every broadcast datagram once. So the waits grow with
the number of searches (`PER_SEARCH` seconds each), and the first sends go out a round at a time with a
short pause after each, so a burst never overflows a server's socket buffer (about 90 datagrams).
"""

from __future__ import annotations

import selectors
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import caproto as ca

from orchestrator.ca.probe import MAX_NAMES, Address, parse_responses, udp_socket

FRESH, FIXED = "fresh", "fixed"
MAX_SWEEP_ROUNDS = 16
PER_SEARCH = 4e-5  # seconds of window and of grace added per search sent (0.5 s at 12,500 searches)
ROUND_GAP = 2e-4  # seconds after each datagram of a round's first sends, before the next round's


@dataclass(frozen=True)
class SweepRound:
    """One round: which kind of socket carried it and its source port."""

    index: int
    kind: str  # "fresh" | "fixed"
    source_port: int


@dataclass(frozen=True)
class Sweep:
    """What a sweep sent and which server answered each (round, destination, name)."""

    names: tuple[str, ...]
    destinations: tuple[Address, ...]
    expected: Mapping[str, tuple[Address, ...]]  # where each name must be answered
    rounds: tuple[SweepRound, ...]
    answers: Mapping[tuple[int, Address, str], frozenset[Address]]  # -> servers (ip, tcp port)
    first_try: frozenset[tuple[int, Address, str]] = frozenset()  # answered before any retry
    retries_sent: int = 0
    elapsed: float = 0.0
    errors: tuple[str, ...] = field(default=())

    def kind_rounds(self, kind: str) -> tuple[SweepRound, ...]:
        return tuple(r for r in self.rounds if r.kind == kind)

    def missing(self) -> list[tuple[SweepRound, Address, str]]:
        """Every (round, destination, name) that should have answered and did not, even after retries."""
        return [(r, d, n) for r in self.rounds for n in self.names for d in self.expected[n]
                if (r.index, d, n) not in self.answers]

    def reach(self, kind: str, destination: Address, names: Sequence[str] | None = None) -> float:
        """Answered (round, name) pairs over expected ones at `destination`, for rounds of `kind`."""
        wanted = [n for n in (names if names is not None else self.names) if destination in self.expected[n]]
        rounds = self.kind_rounds(kind)
        total = len(wanted) * len(rounds)
        if not total:
            return 1.0
        got = sum(1 for r in rounds for n in wanted if (r.index, destination, n) in self.answers)
        return got / total

    def servers(self, kind: str, destination: Address) -> frozenset[Address]:
        """The distinct servers that answered at `destination` in rounds of `kind`."""
        idx = {r.index for r in self.kind_rounds(kind)}
        return frozenset(s for (r, d, _), found in self.answers.items() if r in idx and d == destination
                         for s in found)

    @property
    def complete(self) -> bool:
        return not self.missing()

    def to_dict(self) -> dict:
        dests = []
        for d in self.destinations:
            dests.append({"destination": f"{d[0]}:{d[1]}",
                          "fresh_reach": round(self.reach(FRESH, d), 4),
                          "fixed_reach": round(self.reach(FIXED, d), 4),
                          "fixed_servers": sorted(f"{ip}:{p}" for ip, p in self.servers(FIXED, d))})
        return {"names": len(self.names), "rounds": [{"kind": r.kind, "source_port": r.source_port}
                                                    for r in self.rounds],
                "destinations": dests, "retries_sent": self.retries_sent, "elapsed": round(self.elapsed, 4),
                "errors": list(self.errors)}


def sweep(names: Sequence[str], destinations: Sequence[Address], *,
          expected: Mapping[str, Sequence[Address]] | None = None, fresh: int = 3, fixed_rounds: int = 2,
          retries: int = 6, pace: float = 0.05, window: float = 0.3, grace: float = 0.5,
          socket_factory: Callable[[], socket.socket] = udp_socket,
          clock: Callable[[], float] = time.monotonic) -> Sweep:
    """Search every name at every destination it is `expected` at (default: all) from `fresh` one-round
    sockets and one socket carrying `fixed_rounds` rounds; retry misses from the same socket.

    Waits up to `window` for first answers, then resends what is missing every `pace` seconds,
    `retries` times, then waits `grace` more; ends as soon as nothing is missing.
    """
    names = tuple(dict.fromkeys(names))
    destinations = tuple(dict.fromkeys((str(h), int(p)) for h, p in destinations))
    exp = {n: tuple((str(h), int(p)) for h, p in (expected[n] if expected and n in expected else destinations))
           for n in names}
    if not 1 <= fresh + fixed_rounds <= MAX_SWEEP_ROUNDS or fresh < 0 or fixed_rounds < 0:
        raise ValueError(f"sweep rounds out of range: {fresh} fresh + {fixed_rounds} fixed")
    index_of = {n: i for i, n in enumerate(names)}
    dest_index = {d: i for i, d in enumerate(destinations)}
    start = clock()
    sel = selectors.DefaultSelector()
    socks: list[socket.socket] = []
    rounds: list[SweepRound] = []
    answers: dict[tuple[int, Address, str], set[Address]] = {}
    errors: list[str] = []
    first_try: set = set()
    retries_sent = 0

    def open_socket() -> socket.socket:
        sock = socket_factory()
        socks.append(sock)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.bind(("0.0.0.0", 0))
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ)
        return sock

    def cid(r: int, d: Address, n: str) -> int:
        return (r * len(destinations) + dest_index[d]) * len(names) + index_of[n]

    def send(r: int, sock: socket.socket, wanted: list[tuple[Address, str]]) -> None:
        by_dest: dict[Address, list[str]] = {}
        for d, n in wanted:
            by_dest.setdefault(d, []).append(n)
        for d, batch in by_dest.items():
            for i in range(0, len(batch), MAX_NAMES):
                commands = [ca.VersionRequest(0, ca.DEFAULT_PROTOCOL_VERSION)]
                commands += [ca.SearchRequest(n, cid(r, d, n), ca.DEFAULT_PROTOCOL_VERSION)
                             for n in batch[i:i + MAX_NAMES]]
                try:
                    sock.sendto(b"".join(bytes(c) for c in commands), d)
                except OSError as exc:
                    errors.append(f"round {r}: send to {d[0]}:{d[1]} failed: {exc.strerror or exc}")

    def pending(r: int) -> list[tuple[Address, str]]:
        return [(d, n) for n in names for d in exp[n] if (r, d, n) in outstanding]

    def collect(until: float) -> None:
        while (left := until - clock()) > 0 and outstanding:
            for key, _ in sel.select(left):
                owner = key.fileobj
                while True:
                    try:
                        data, sender = owner.recvfrom(65536)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:  # ICMP port unreachable and the like
                        break
                    for c, port, ip in parse_responses(data, sender):
                        rest, n = divmod(c, len(names)) if names else (0, 0)
                        r, d = divmod(rest, len(destinations))
                        if r >= len(rounds) or sock_of[r] is not owner:
                            continue  # not ours (stale or foreign cid)
                        server = (sender[0] if ip == "255.255.255.255" else ip, port)
                        key3 = (r, destinations[d], names[n])
                        answers.setdefault(key3, set()).add(server)
                        outstanding.discard(key3)

    sock_of: list[socket.socket] = []
    outstanding: set[tuple[int, Address, str]] = set()
    try:
        for _ in range(fresh):
            sock = open_socket()
            rounds.append(SweepRound(len(rounds), FRESH, sock.getsockname()[1]))
            sock_of.append(sock)
        if fixed_rounds:
            sock = open_socket()
            for _ in range(fixed_rounds):
                rounds.append(SweepRound(len(rounds), FIXED, sock.getsockname()[1]))
                sock_of.append(sock)
        outstanding.update((r.index, d, n) for r in rounds for n in names for d in exp[n])
        load = len(outstanding) * PER_SEARCH
        window, grace = window + load, grace + load
        sent = clock()
        for r in rounds:
            wanted = pending(r.index)
            send(r.index, sock_of[r.index], wanted)
            collect(clock() + ROUND_GAP * (len(wanted) // MAX_NAMES + 1))
        collect(sent + window)
        first_try = set(answers)
        for _ in range(retries):
            if not outstanding:
                break
            for r in rounds:
                missing = pending(r.index)
                if missing:
                    retries_sent += len(missing)
                    send(r.index, sock_of[r.index], missing)
            collect(clock() + pace)
        collect(clock() + grace)
    finally:
        sel.close()
        for sock in socks:
            sock.close()
    return Sweep(names, destinations, exp, tuple(rounds), {k: frozenset(v) for k, v in answers.items()},
                 frozenset(first_try), retries_sent, clock() - start, tuple(errors))
