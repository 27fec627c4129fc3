"""Diagnose a CA client's view of this host: what the host shows, what real searches heard, what to change.

Pure over its inputs: an `Observation` (client settings, host snapshot, the CA processes, the probe
result, the running fleet) goes in, a `Diagnosis` (findings with fixes, per-path reach, a verdict) comes
out. `gather.run` gathers the Observation; the CLI renders the Diagnosis (`text`, or `to_dict`).

Per path (one address-list entry) the doctor reports which IOC answered in what fraction of the
searches (each search from a fresh source port, rule R3), which names more than one IOC answered (R14),
and whether that matches `rules.predict` for the UDP sockets this host really has: exactly for
broadcast and single receivers, within a binomial band for a load-balanced unicast group.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from orchestrator.ca import rules
from orchestrator.doctor.checks import CA_RUNTIMES, route_of, static_findings
from orchestrator.doctor.model import Address, Diagnosis, FindingsError, FleetIOC, FleetView, IOCReach, Observation, PathReport, Process, Server
from orchestrator.hostmodel import HostSnapshot
from orchestrator.findings import ERROR, INFO, WARNING, Finding, by_severity
from orchestrator.ca.probe import Reply, binomial_band

__all__ = ["Address", "Diagnosis", "FindingsError", "FleetIOC", "FleetView", "IOCReach", "Observation", "PathReport",
           "Process", "Server", "diagnose", "text"]

BAND_Z = 3.0  # sigmas of the binomial band a load-balanced (unicast) reach must fall in


# -- identifying who answered ---------------------------------------------------------------------

def _local_ips(snapshot: HostSnapshot) -> set[str]:
    return {a for i in snapshot.interfaces for a in i.addresses()}


def identify(reply: Reply, obs: Observation, procs: dict[int, Process]) -> Server:
    """The server behind a reply: the local process LISTENing on its TCP port, else the remote ip:port."""
    ip, port = reply.server
    local = ip.startswith("127.") or ip in _local_ips(obs.snapshot)
    if local:
        for h in obs.snapshot.holders("tcp", port):
            if h.pid and h.address in (ip, "0.0.0.0"):
                proc = procs.get(h.pid)
                # keyed by pid and TCP port: a pack (issue 14) is one pid holding many IOCs' listeners
                return Server(f"pid:{h.pid}:{port}", h.pid, _ioc_name(obs, proc, h.pid, reply.name) or h.process
                              or "?", h.container, proc.runtime if proc else "other", (ip, port))
    return Server(f"{ip}:{port}", None, f"{ip}:{port}", None, "remote", (ip, port))


def _ioc_name(obs: Observation, proc: Process | None, pid: int, name: str = "") -> str | None:
    """The fleet IOC a process runs; of a pack's process (several IOCs, one pid), the one serving `name`."""
    if obs.fleet:
        found = [ioc for ioc in obs.fleet.iocs
                 if pid in ioc.pids or (proc and proc.container and proc.container == ioc.container)]
        if found:
            return next((ioc.name for ioc in found if name in ioc.pvs), found[0].name)
    return proc.label if proc else None


def _packed(obs: Observation, pid: int) -> bool:
    """Whether `pid` runs several IOCs of the fleet (a pack): its UDP sockets are its members'."""
    return obs.fleet is not None and sum(pid in ioc.pids for ioc in obs.fleet.iocs) > 1


# -- the diagnosis --------------------------------------------------------------------------------

def diagnose(obs: Observation) -> Diagnosis:
    """Judge `obs`: static findings, then per-path reach, duplicates and prediction checks, then a verdict."""
    procs = {p.pid: p for p in obs.processes}
    findings = static_findings(obs)
    paths: list[PathReport] = []
    notes = list(obs.notes)
    if obs.probe is not None:
        servers, index = _index(obs, procs)
        fixed_index = None
        if obs.fixed_probe is not None:
            fixed_servers, fixed_index = _index(obs, procs, obs.fixed_probe)
            for key, srv in fixed_servers.items():
                servers.setdefault(key, srv)
        names_of: dict[str, set[str]] = defaultdict(set)
        for (dest, name), by_server in (*index.items(), *(fixed_index or {}).items()):
            for key in by_server:
                names_of[key].add(name)
        for ioc in (obs.fleet.iocs if obs.fleet else ()):
            for key, srv in servers.items():
                if srv.label == ioc.name:
                    names_of[key] |= set(ioc.pvs) & set(obs.probe.names)
        for dest in obs.destinations:
            paths.append(_path(dest, obs, servers, index, names_of, fixed_index))
        findings += _path_findings(obs, paths, servers, index, names_of)
        findings += _duplicate_findings(obs, servers, index)
        findings += _missing_findings(obs, index)
        from orchestrator.doctor.uidgroups import uid_group_findings

        findings += uid_group_findings(obs, procs, identify)
    from orchestrator.doctor.uidgroups import predicted_uid_groups

    findings += predicted_uid_groups(obs, procs)
    for name, why in obs.unsearchable:
        findings.append(Finding("name-unsearchable", ERROR, f"PV name {name[:40]!r}{'...' if len(name) > 40 else ''} "
                                f"{why}; it was not searched", "rename the PV (prefix + name) to at most 59 "
                                "characters, or search for a shorter name", "R13", (name[:80],)))
    findings = by_severity(_dedupe(findings))
    procs_note = [p for p in obs.processes if p.environ is None and p.runtime in CA_RUNTIMES]
    if procs_note:
        notes.append("could not read the environment of pid(s) " + ", ".join(str(p.pid) for p in procs_note)
                     + " (run as root or as their user to check their beacon settings)")
    probe_summary = ({"names": len(obs.probe.names), "rounds": obs.probe.rounds,
                      "destinations": [list(d) for d in obs.destinations], "replies": len(obs.probe.replies),
                      "elapsed": round(obs.probe.elapsed, 3), "errors": list(obs.probe.errors),
                      "fixed_port": obs.fixed_probe is not None}
                     if obs.probe else {"names": 0, "rounds": 0, "destinations": [], "replies": 0,
                                        "elapsed": 0.0, "errors": [], "fixed_port": False})
    holders = tuple({"proto": h.proto, "port": h.port, "address": h.address, "pid": h.pid, "process": h.process,
                     "label": procs[h.pid].label if h.pid in procs else h.process, "uid": h.uid,
                     "container": h.container, "reuse_ok": h.reuse_ok} for h in obs.snapshot.ca_ports)
    return Diagnosis(obs.client, tuple(findings), tuple(paths), holders, probe_summary, tuple(notes))


def _dedupe(findings: list[Finding]) -> list[Finding]:
    seen, out = set(), []
    for f in findings:
        key = (f.code, f.message)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


def _index(obs: Observation, procs, result=None) -> tuple[dict[str, Server], dict]:
    """servers by key, and {(destination, name): {server key: set of rounds answered}} (of obs.probe or
    `result`)."""
    servers: dict[str, Server] = {}
    index: dict[tuple[Address, str], dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    for r in (result or obs.probe).replies:
        srv = identify(r, obs, procs)
        servers.setdefault(srv.key, srv)
        index[(r.destination, r.name)][srv.key].add(r.round)
    return servers, index


def _kind(address: str, snapshot: HostSnapshot) -> str:
    how = rules.classify(address, rules.LOCAL, snapshot.interfaces)
    return "remote" if how == "elsewhere" else how


def model_sockets(port: int, obs: Observation, procs: dict[int, Process]) -> list[rules.Socket]:
    """The UDP sockets on `port` as the host shows them, oldest process first (bind order, R1/R2)."""
    holders = sorted(obs.snapshot.holders("udp", port),
                     key=lambda h: (procs[h.pid].started if h.pid in procs else 0.0, h.pid or 0))
    return [rules.Socket(str(h.pid), procs[h.pid].runtime if h.pid in procs else "other", h.address, port,
                         reuse=h.reuse_ok is not False, uid=h.uid or 0) for h in holders]


def _path(dest: Address, obs: Observation, servers: dict[str, Server], index, names_of,
          fixed_index=None) -> PathReport:
    procs = {p.pid: p for p in obs.processes}
    kind = _kind(dest[0], obs.snapshot)
    prediction = None
    from orchestrator.doctor.nameservers import name_server_port

    if kind != "remote" and name_server_port(dest[1], obs.snapshot, procs):
        kind = "name server"  # it answers for the IOCs (R15): no socket model predicts who answers
    elif kind != "remote":
        prediction = rules.predict(model_sockets(dest[1], obs, procs), rules.Datagram(dest[0], dest[1]),
                                   obs.snapshot.interfaces)
    rounds = obs.probe.rounds
    iocs, checks = [], []
    for key, srv in sorted(servers.items(), key=lambda kv: (kv[1].label, kv[1].pid or 0, kv[0])):
        names = sorted(names_of.get(key, ()))
        if not names:
            continue
        counts = np.array([len(index.get((dest, n), {}).get(key, ())) for n in names], dtype=float)
        reach = float(counts.mean() / rounds)
        share = None
        if prediction is not None and srv.pid is not None:
            share = prediction.share(str(srv.pid))
            if kind != "broadcast" and _packed(obs, srv.pid):  # a pack member: one of the pid's sockets
                share /= max(1, sum(h.pid == srv.pid for h in obs.snapshot.holders("udp", dest[1])))
            checks.append(_agrees(counts, rounds, share))
        fixed = None
        if fixed_index is not None:
            fixed_counts = [len(fixed_index.get((dest, n), {}).get(key, ())) for n in names]
            fixed = float(np.mean(fixed_counts) / obs.fixed_probe.rounds)
        iocs.append(IOCReach(srv.label, srv.pid, srv.container, reach, f"{srv.tcp[0]}:{srv.tcp[1]}", share,
                             len(names), fixed))
    duplicates = []
    for name in obs.probe.names:
        keys = sorted(index.get((dest, name), {}))
        pids = {servers[k].pid or k for k in keys}
        if len(pids) > 1:
            duplicates.append({"name": name, "servers": [
                {"ioc": servers[k].label, "pid": servers[k].pid, "server": f"{servers[k].tcp[0]}:{servers[k].tcp[1]}"}
                for k in keys]})
    replies = sum(len(r) for (d, _), by in index.items() if d == dest for r in by.values())
    if checks:
        matches = all(checks)
    elif prediction is not None and not prediction.receivers:
        matches = True  # nobody here should hear it, and nobody here answered
    else:
        matches = None  # remote, or the predicted receivers serve none of the searched names
    stuck = None if fixed_index is None else tuple(i.name for i in iocs if i.fixed_reach)
    return PathReport(dest[0], dest[1], kind, tuple(iocs), tuple(duplicates), prediction, matches, replies, stuck)


def _agrees(counts: np.ndarray, rounds: int, share: float) -> bool:
    """Measured per-name answer counts against a predicted share: exact for 0 and 1, else a binomial band."""
    if share in (0.0, 1.0):
        return bool(np.all(counts == round(share * rounds)))
    # z=3: a false alarm in ~1 of 370 checks, and a mismatch is only a warning; never answering at all
    # is a mismatch too whenever that is improbable (the band alone admits 0 for small n).
    k = round(float(counts.mean()))
    lo, hi = binomial_band(rounds, share, z=BAND_Z)
    return lo <= k <= hi and (k > 0 or (1.0 - share) ** rounds > 1e-3)


def _entry_words(dest: Address, obs: Observation) -> str:
    entries = obs.client.entries
    match = next((e for e in entries if e.host == dest[0] and e.port == dest[1]), None)
    if match is None:
        return f"the automatic broadcast {dest[0]}:{dest[1]} (EPICS_CA_AUTO_ADDR_LIST)"
    if len(entries) == 1:
        return f"EPICS_CA_ADDR_LIST={match.text}"
    return f"EPICS_CA_ADDR_LIST entry {match.text}"


def broadcast_for(address: str, snapshot: HostSnapshot) -> str | None:
    """The broadcast address a client should use instead of unicast `address`."""
    if address.startswith("127."):
        return "127.255.255.255"
    _, iface = route_of(address, snapshot)
    if iface is None or iface.loopback:
        return None
    import ipaddress

    for a in iface.ipv4:
        if a.broadcast and ipaddress.IPv4Address(address) in a.network():
            return a.broadcast
    return None


def _path_findings(obs: Observation, paths, servers, index, names_of) -> list[Finding]:
    out = []
    procs = {p.pid: p for p in obs.processes}
    for p in paths:
        dest = (p.address, p.port)
        words = _entry_words(dest, obs)
        if p.kind == "unicast" and p.predicted and p.predicted.kind == "one-of":
            sharing = len(p.predicted.receivers)
            measured = [i for i in p.iocs if i.pid is not None and str(i.pid) in p.predicted.receivers]
        elif p.kind == "remote" and len(p.iocs) > 1 and all(0 < i.reach < 0.9 for i in p.iocs) and \
                obs.probe.rounds >= 5:
            sharing, measured = len(p.iocs), list(p.iocs)
        else:
            sharing = 0
        if sharing > 1:
            out.append(_unicast_finding(obs, p, words, sharing, measured, procs))
        if p.replies == 0 and obs.probe.names:
            out.append(_silent_finding(obs, p, words))
        if p.matches_prediction is False:
            got = ", ".join(f"{i.name} {i.reach:.2f} (predicted {i.predicted:.2f})" for i in p.iocs
                            if i.predicted is not None)
            out.append(Finding(
                "prediction-mismatch", WARNING,
                f"{words}: measured reach differs from what the rules predict for this host's sockets: {got}",
                "re-run with a larger --repeat; if it persists, report it with `iocfleet doctor --json` attached",
                " ".join(p.predicted.rules) if p.predicted else "", (f"{p.address}:{p.port}",)))
    return out


def _unicast_finding(obs, p: PathReport, words: str, sharing: int, measured, procs) -> Finding:
    kinds = {procs[int(r)].runtime if r.isdigit() and int(r) in procs else "other"
             for r in (p.predicted.receivers if p.predicted else ())}
    what = "IOCs" if p.kind == "remote" or kinds <= set(CA_RUNTIMES) else "processes"
    where = "this host" if p.kind == "unicast" else "that host"
    reach_text = ", ".join(f"{i.reach:.2f}" for i in measured)
    msg = (f"{words} is the unicast address of {where}, where {sharing} {what} share UDP {p.port}; each search "
           f"reaches one of them" + (f" (measured {reach_text})" if reach_text else ""))
    if p.fixed_port_iocs is not None:
        fixed_text = ", ".join(f"{i.fixed_reach:.2f}" for i in measured if i.fixed_reach is not None)
        msg += (f"; a client searching from one fixed source port (libca, caproto) is stuck with "
                f"{', '.join(p.fixed_port_iocs) or 'none of them'}" + (f" (fixed-port reach {fixed_text})"
                                                                       if fixed_text else ""))
    bcast = broadcast_for(p.address, obs.snapshot)
    fleet = f"`iocfleet up {obs.fleet.source or obs.fleet.name} --strategy distinct-ports`" if obs.fleet else \
        "`--strategy distinct-ports` (each IOC on its own port, listed as host:port)"
    fix = ((f"Use EPICS_CA_ADDR_LIST={bcast} (the subnet broadcast, which every IOC hears)" if bcast
            else "Use the subnet broadcast address of that host") + f", or run the fleet with {fleet}")
    whole = [(h, pt) for h, pt in obs.destinations]
    severity = ERROR
    if p.kind == "unicast":
        sockets = model_sockets(p.port, obs, procs)
        if rules.reaches_all(whole, sockets, obs.snapshot.interfaces):
            severity = INFO
            msg += "; another entry of the list reaches all of them, so clients still find every IOC"
            fix = f"drop {p.address} from the list (it only adds duplicate answers)"
    subjects = tuple(str(i.pid or i.server) for i in measured)
    return Finding("unicast-addr-list-multi-ioc", severity, msg, fix, "R3", subjects)


def _silent_finding(obs: Observation, p: PathReport, words: str) -> Finding:
    n = len(obs.probe.names)
    if p.kind == "remote":
        fix = ("check that the host is up, that an IOC there serves these names on UDP "
               f"{p.port}, and that no firewall drops UDP {p.port}")
    elif not obs.snapshot.holders("udp", p.port):
        fix = f"no process holds UDP {p.port} on this host: start the IOC, or search the port it really uses"
    else:
        fix = "the processes on this port do not serve these names, or do not hear this address (R5/R6 binds)"
    return Finding("no-reply", WARNING,
                   f"{words}: nothing answered any of the {n} name(s) searched in {obs.probe.rounds} round(s)",
                   fix, "R13", (f"{p.address}:{p.port}",))


def _duplicate_findings(obs: Observation, servers: dict[str, Server], index) -> list[Finding]:
    by_name: dict[str, set[str]] = defaultdict(set)
    paths_of: dict[tuple[str, str], set[Address]] = defaultdict(set)
    for (dest, name), by in index.items():
        for key in by:
            by_name[name].add(key)
            paths_of[(name, key)].add(dest)
    groups: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for name, keys in by_name.items():
        if len(keys) > 1:
            groups[tuple(sorted(keys))].append(name)
    out = []
    for keys, names in groups.items():
        listed = ", ".join(servers[k].describe() + (f" at {servers[k].tcp[0]}:{servers[k].tcp[1]}" if servers[k].pid else "")
                           for k in keys)
        out.append(Finding(
            "duplicate-pv", ERROR,
            f"{_names(names)} {'is' if len(names) == 1 else 'are'} served by {len(keys)} different IOCs: {listed}; "
            "a client connects to whichever answers first",
            "give each IOC a unique prefix, or stop the extra IOC", "R14",
            tuple(str(servers[k].pid or k) for k in keys)))
    twice: dict[tuple[Address, ...], dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for (name, key), dests in paths_of.items():
        if len(dests) > 1:
            twice[tuple(sorted(dests))][key].append(name)
    for dests, by_key in twice.items():
        where = " and ".join(f"{h}:{pt}" for h, pt in dests)
        who = "; ".join(f"{servers[k].describe()}: {_names(n)}" for k, n in sorted(by_key.items()))
        out.append(Finding(
            "same-ioc-two-paths", INFO,
            f"{len(by_key)} IOC(s) answer through both {where} ({who}): each is one process with one TCP port "
            "seen twice, not a duplicate",
            "nothing to fix; dropping one of the entries halves the search traffic", "R14",
            tuple(str(servers[k].pid or k) for k in sorted(by_key))))
    return out


def _names(names: list[str]) -> str:
    names = sorted(names)
    shown = ", ".join(names[:4])
    return f"PV {shown}" if len(names) == 1 else f"{len(names)} PVs ({shown}{', ...' if len(names) > 4 else ''})"


def _missing_findings(obs: Observation, index) -> list[Finding]:
    answered = {name for (_, name) in index}
    missing = [n for n in obs.probe.names if n not in answered]
    if not missing:
        return []
    out = []
    if obs.fleet:
        for ioc in obs.fleet.iocs:
            lost = [n for n in ioc.pvs if n in missing]
            if lost:
                state = "" if ioc.state == "running" else f" (it is {ioc.state})"
                out.append(Finding(
                    "ioc-not-reached", ERROR,
                    f"IOC {ioc.name}{state}: none of its searches through {obs.client.addr_list_text() or 'the list'} "
                    f"found {_names(lost)}",
                    f"see the path findings above; `iocfleet status {obs.fleet.name}` and `iocfleet logs` "
                    f"{obs.fleet.name} {ioc.name} show whether it runs", "R13", (ioc.name,)))
        missing = [n for n in missing if not any(n in i.pvs for i in obs.fleet.iocs)]
    if missing:
        out.append(Finding(
            "pv-not-found", ERROR,
            f"no server answered {_names(missing)} through {obs.client.addr_list_text() or 'the searched addresses'}",
            "check the spelling, that the IOC serving it runs, and that the list contains its host (or broadcast)",
            "R13", tuple(missing[:10])))
    return out


# -- text ---------------------------------------------------------------------------------------------

def text(d: Diagnosis) -> str:
    """The human report: client settings, one block per path, findings with fixes, the verdict."""
    c = d.client
    out = [f"client ({c.source}): EPICS_CA_ADDR_LIST={c.addr_list_text() or '(empty)'}  "
           f"EPICS_CA_AUTO_ADDR_LIST={'YES' if c.auto_addr_list else 'NO'}  server port {c.server_port}"]
    if d.probe["names"]:
        out.append(f"probe: {d.probe['names']} name(s) x {d.probe['rounds']} round(s) from fresh source ports, "
                   f"{d.probe['replies']} replies in {d.probe['elapsed']:.2f} s"
                   + ("; the same rounds again from one fixed source port" if d.probe.get("fixed_port") else ""))
    for line in d.probe["errors"]:
        out.append(f"  send error: {line}")
    for p in d.paths:
        pred = p.predicted.kind + (" " + ",".join(p.predicted.rules)) if p.predicted else "not modelled"
        verdict = {True: "matches", False: "DIFFERS", None: "-"}[p.matches_prediction]
        out += ["", f"path {p.address}:{p.port} ({p.kind}); prediction: {pred}; measurement {verdict}"]
        rows = [(i.name, i.pid or "-", (i.container or "-")[:12], i.server, f"{i.reach:.2f}",
                 "-" if i.fixed_reach is None else f"{i.fixed_reach:.2f}",
                 "-" if i.predicted is None else f"{i.predicted:.2f}") for i in p.iocs]
        if p.fixed_port_iocs is not None:
            out.append(f"  a client on one fixed source port reaches: {', '.join(p.fixed_port_iocs) or 'nobody'}")
        if rows:
            head = ("IOC", "PID", "CONTAINER", "SERVER", "REACH", "FIXED-PORT REACH", "PREDICTED")
            widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
            out += ["  " + "  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip() for r in [head, *rows]]
        else:
            out.append("  nobody answered")
        for dup in p.duplicates[:5]:
            out.append(f"  duplicate {dup['name']}: " + ", ".join(
                f"{s['ioc']} pid {s['pid']} at {s['server']}" if s["pid"] else s["server"] for s in dup["servers"]))
        if len(p.duplicates) > 5:
            out.append(f"  ... {len(p.duplicates) - 5} more duplicate name(s)")
    if d.name_servers:
        from orchestrator.doctor.nameservers import text as name_server_text

        out += name_server_text(d.name_servers)
    out += ["", "findings:" if d.findings else "findings: none"]
    for f in d.findings:
        out += [f"  {f.severity}: {f.code} [{f.rule}]: {f.message}", f"    fix: {f.fix}"]
    for note in d.notes:
        out.append(f"note: {note}")
    out += ["", f"verdict: {d.verdict}"]
    return "\n".join(out)
