"""The doctor and CA name servers (R15): search through each EPICS_CA_NAME_SERVERS entry, then check
that every answer points at a live server that really serves the name.

`probe(entries, names, timeout)` does the I/O (a TCP search the way libca does it, then one read per
answered server over a CA circuit); `judge(reports, fleet, snapshot)` is pure and turns the reports into
findings and a per-name table: which IOC each name points to. `attach` adds both to a Diagnosis.
"""

from __future__ import annotations

import dataclasses
import selectors
import socket
import time
from dataclasses import dataclass

import caproto as ca

from orchestrator.plan.model import Finding

ERROR, WARNING = "error", "warning"
VERSION = 13
BATCH = 200


@dataclass(frozen=True)
class Answer:
    name: str
    server: tuple[str, int]  # where the name server says to connect
    served: bool | None = None  # that server has the channel (None: not checked)
    problem: str = ""  # why not: refused connection, no such channel


@dataclass(frozen=True)
class NameServerReport:
    """What one EPICS_CA_NAME_SERVERS entry did: accepted TCP?, answered which names with what."""

    entry: str
    address: tuple[str, int]
    connected: bool
    error: str = ""
    answers: tuple[Answer, ...] = ()
    unanswered: tuple[str, ...] = ()

    def to_dict(self, owner_of=lambda server: None) -> dict:
        return {"entry": self.entry, "connected": self.connected, "error": self.error,
                "answers": [{"name": a.name, "server": f"{a.server[0]}:{a.server[1]}", "ioc": owner_of(a.server),
                             "served": a.served, "problem": a.problem} for a in self.answers],
                "unanswered": list(self.unanswered)}


# -- I/O ------------------------------------------------------------------------------------------------

def tcp_search(address: tuple[str, int], names, timeout: float = 1.0) -> tuple[bool, str, dict]:
    """Search `names` over TCP at a name server: (connected, error, {name: (ip, port)})."""
    names = list(dict.fromkeys(names))
    try:
        sock = socket.create_connection(address, timeout=timeout)
    except OSError as exc:
        return False, f"TCP connect to {address[0]}:{address[1]}: {exc.strerror or exc}", {}
    found: dict[str, tuple[str, int]] = {}
    try:
        requests = [ca.VersionRequest(0, VERSION), ca.HostNameRequest("doctor"), ca.ClientNameRequest("doctor")]
        sock.sendall(b"".join(bytes(c) for c in requests))
        for start in range(0, len(names), BATCH):
            batch = [ca.SearchRequest(n, start + i, VERSION) for i, n in enumerate(names[start:start + BATCH])]
            sock.sendall(b"".join(bytes(c) for c in batch))
        from caproto._commands import read_from_bytestream

        buf, deadline = bytearray(), time.monotonic() + timeout
        sel = selectors.DefaultSelector()
        sel.register(sock, selectors.EVENT_READ)
        while len(found) < len(names) and (left := deadline - time.monotonic()) > 0:
            if not sel.select(left):
                break
            data = sock.recv(65536)
            if not data:
                break
            buf += data
            while True:
                rest, command, _ = read_from_bytestream(buf, ca.SERVER)
                if command is ca.NEED_DATA:
                    break
                buf = bytearray(rest)
                if isinstance(command, ca.SearchResponse) and 0 <= command.cid < len(names):
                    ip = address[0] if command.ip == "255.255.255.255" else command.ip
                    port = address[1] if command.ip == "255.255.255.255" else command.port
                    found[names[command.cid]] = (ip, port)
        sel.close()
    except (OSError, ca.CaprotoError) as exc:
        return True, f"{type(exc).__name__}: {exc}", found
    finally:
        sock.close()
    return True, "", found


def probe(entries, names, timeout: float = 1.0, verify: bool = True) -> tuple[NameServerReport, ...]:
    """Search through every name-server entry; with `verify`, read each answer from the server it names."""
    from orchestrator.ca.circuit import read_channels

    reports = []
    for entry in entries:
        address = (entry.host, entry.port)
        connected, error, found = tcp_search(address, names, timeout) if names else tcp_search(address, [], 0.2)
        answers = []
        by_server: dict = {}
        for name, server in found.items():
            by_server.setdefault(server, []).append(name)
        for server, served_names in by_server.items():
            outcomes = read_channels(server, served_names, timeout=max(1.0, timeout)) if verify else {}
            for name in served_names:
                o = outcomes.get(name)
                answers.append(Answer(name, server, None if o is None else o.ok, "" if o is None or o.ok else o.error))
        answers.sort(key=lambda a: a.name)
        reports.append(NameServerReport(entry.text, address, connected, error, tuple(answers),
                                        tuple(n for n in names if n not in found)))
    return tuple(reports)


# -- judging (pure) ---------------------------------------------------------------------------------------

NAME_SERVER_LABELS = ("nameserver.py", "iocfleet_ioc.nameserver")  # doctor.gather.label_of of our program


def is_name_server(proc) -> bool:
    """A process that is iocfleet's name server: it holds its UDP port alone on purpose (no reuse)."""
    return proc is not None and proc.label in NAME_SERVER_LABELS


def name_server_port(port: int, snapshot, procs: dict) -> bool:
    """Whether a name server of this host holds UDP `port` (a search there is answered for others, R15)."""
    return any(is_name_server(procs.get(h.pid)) for h in snapshot.holders("udp", port))

def owner_lookup(snapshot, fleet, processes=()):
    """server (ip, port) -> a name for it: the fleet IOC or process that listens on that TCP port."""
    labels = {p.pid: p.label for p in processes}
    by_pid = {pid: ioc.name for ioc in (fleet.iocs if fleet else ()) for pid in ioc.pids}

    def owner(server) -> str | None:
        for holder in snapshot.holders("tcp", server[1]) if snapshot is not None else ():
            if holder.pid in by_pid:
                return by_pid[holder.pid]
            if holder.pid:
                return labels.get(holder.pid, holder.process or f"pid {holder.pid}")
        return None

    return owner


def judge(reports, names) -> list[Finding]:
    out = []
    for r in reports:
        if not r.connected:
            out.append(Finding("name-server-unreachable", ERROR,
                               f"EPICS_CA_NAME_SERVERS entry {r.entry} does not answer: {r.error}",
                               "start the fleet's name server (`iocfleet up`), or remove the entry", "R15",
                               (r.entry,)))
            continue
        if names and not r.answers:
            out.append(Finding("name-server-unreachable", ERROR,
                               f"EPICS_CA_NAME_SERVERS entry {r.entry} accepts TCP but answered none of "
                               f"{len(names)} name(s)" + (f" ({r.error})" if r.error else ""),
                               "check that it is a CA name server for these names (`iocfleet status` shows "
                               "ca-nameserver)", "R15", (r.entry,)))
        dead = sorted({a.server for a in r.answers if a.served is False and "connect" in a.problem})
        for server in dead:
            which = [a.name for a in r.answers if a.server == server]
            out.append(Finding("name-server-dead-ioc", ERROR,
                               f"name server {r.entry} points {len(which)} name(s) (first {which[0]}) at "
                               f"{server[0]}:{server[1]}, where nothing accepts a CA connection",
                               "restart the IOC, or wait: the name server drops the port once nothing listens "
                               "there and searches again", "R15", (r.entry, f"{server[0]}:{server[1]}")))
        wrong = [a for a in r.answers if a.served is False and "connect" not in a.problem]
        if wrong:
            out.append(Finding("name-server-wrong-server", ERROR,
                               f"name server {r.entry} points {len(wrong)} name(s) (first {wrong[0].name}) at "
                               f"{wrong[0].server[0]}:{wrong[0].server[1]}, which does not serve them "
                               f"({wrong[0].problem})",
                               "the IOC's port changed or another server took it: restart the name server "
                               "(`iocfleet restart FLEET ca-nameserver`)", "R15",
                               (r.entry, f"{wrong[0].server[0]}:{wrong[0].server[1]}")))
    return out


def attach(diagnosis, reports, names, owner):
    """The diagnosis with the name-server findings and reports added (stable key `name_servers`)."""
    if not reports:
        return diagnosis
    from orchestrator.findings import SEVERITY_ORDER

    findings = sorted((*diagnosis.findings, *judge(reports, names)), key=lambda f: SEVERITY_ORDER[f.severity])
    return dataclasses.replace(diagnosis, findings=tuple(findings),
                               name_servers=tuple(r.to_dict(owner) for r in reports))


def text(reports: tuple[dict, ...]) -> list[str]:
    out = []
    for r in reports:
        state = "answers" if r["connected"] else f"DOES NOT ANSWER ({r['error']})"
        out += ["", f"name server {r['entry']} (TCP, EPICS_CA_NAME_SERVERS): {state}"]
        for a in r["answers"][:50]:
            ok = {True: "serves it", False: f"DOES NOT ({a['problem']})", None: "-"}[a["served"]]
            out.append(f"  {a['name']} -> {a['server']} {a['ioc'] or ''}: {ok}".replace("  :", ":"))
        if len(r["answers"]) > 50:
            out.append(f"  ... {len(r['answers']) - 50} more")
        if r["unanswered"]:
            out.append(f"  no answer for {len(r['unanswered'])} name(s), first {r['unanswered'][0]}")
    return out


