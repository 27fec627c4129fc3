"""Text and JSON renderers for command results: data to stdout, nothing else decided here."""

from __future__ import annotations

import json
from collections.abc import Sequence


def to_json(data) -> str:
    return json.dumps(data, indent=2, sort_keys=False, default=str)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain aligned table; `-` for missing values."""
    cells = [[("-" if v is None or v == "" else str(v)) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def interfaces_text(snap) -> str:
    rows = []
    for iface in snap.interfaces:
        flags = ",".join(f for f, on in (("up", iface.up), ("loopback", iface.loopback),
                                         ("broadcast", iface.broadcast_capable), ("multicast", iface.multicast)) if on)
        addrs = " ".join(f"{a.address}/{a.prefixlen}" for a in iface.ipv4)
        bcasts = " ".join(iface.broadcasts())
        default = "*" if iface.name == snap.default_interface else ""
        rows.append((iface.name + default, flags, iface.mtu, addrs, bcasts))
    out = [table(("interface", "flags", "mtu", "ipv4", "broadcast"), rows)]
    out.append("(* default route)" if snap.default_interface else "(no default route)")
    if snap.ca_ports:
        out.append("")
        out.append(table(("proto", "port", "address", "pid", "process", "uid", "container", "reuse_ok"),
                         [(h.proto, h.port, h.address, h.pid, h.process, h.uid,
                           (h.container or "")[:12], h.reuse_ok) for h in snap.ca_ports]))
    else:
        out.append("\nno process holds a CA port")
    return "\n".join(out)


def export_lines(env: dict[str, str]) -> str:
    """`export NAME='value'` lines a POSIX shell can eval."""
    import shlex

    return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in env.items())


def findings_text(findings) -> str:
    if not findings:
        return "no findings"
    return "\n".join(f"{f.severity}: {f.code}: {f.message} — {f.fix}" for f in findings)


def plan_text(planned, explain: bool) -> str:
    plan = planned.plan
    out = [f"fleet {plan.fleet}: strategy {plan.strategy} on {plan.interface or '?'} "
           f"(address {plan.address or '?'}, broadcast {plan.broadcast or '-'}), clients {plan.clients}", ""]
    rows = [(i.name, i.runtime, i.prefix, " ".join(i.bind), i.udp_port, i.tcp_port or "any", len(i.pv_names))
            for i in plan.iocs]
    out.append(_with_pack(("ioc", "runtime", "prefix", "bind", "udp", "tcp", "pvs"), rows,
                          [i.pack for i in plan.iocs]))
    out += ["", "client settings:", export_lines(plan.client_env_dict())]
    if explain:
        out += ["", "decisions:"]
        out += [f"  [{d.rule}] {d.text}" for d in plan.decisions]
    out += ["", "findings:", findings_text(planned.findings)]
    return "\n".join(out)


def progress_printer(stream, enabled: bool):
    """A progress callback for long work: event lines, and a ready count that rewrites itself on a TTY."""
    if not enabled:
        return None
    tty = stream.isatty()
    last = {"count": None}

    def show(event) -> None:
        counts = getattr(event, "counts", None)
        if counts is None:
            if tty and last["count"] is not None:
                stream.write("\n")
                last["count"] = None
            stream.write(f"{event}\n")
        else:
            done, total = counts()
            if (done, total) == last["count"]:
                return
            last["count"] = (done, total)
            text = f"waiting for PVs: {done}/{total} answered ({event.elapsed:.1f} s)"
            stream.write(("\r" + text) if tty else text + "\n")
        stream.flush()

    return show


def up_text(result) -> str:
    data = result.to_dict()
    rows = [(i["name"], i["runtime"], i["state"], i["tcp_port"], f"{i['pvs_ready']}/{i['pvs_total']}",
             i.get("ready_by", "")) for i in data["iocs"]]
    d = result.diff
    out = [f"fleet {result.fleet} on {result.backend}: {len(d.create)} created, {len(d.replace)} replaced, "
           f"{len(d.keep)} unchanged, {len(d.remove)} removed", "",
           _with_pack(("ioc", "runtime", "state", "tcp port", "pvs ready", "ready by"), rows,
                      [i.get("pack") for i in data["iocs"]]), "",
           "client settings (paste into a shell, then e.g. `caget NAME`):", export_lines(result.client_env)]
    notable = [f for f in result.findings if f.severity != "info"]
    if notable:
        out += ["", findings_text(notable)]
    return "\n".join(out)


def _with_pack(columns, rows, packs) -> str:
    """A table with a `pack` column after `runtime` when any IOC runs in a pack (issue 14): the process or
    container it shares."""
    if any(packs):
        at = columns.index("runtime") + 1
        rows = [(*row[:at], pack or "-", *row[at:]) for row, pack in zip(rows, packs)]
        columns = (*columns[:at], "pack", *columns[at:])
    return table(columns, rows)


def diff_text(result) -> str:
    d = result.diff
    lines = [f"fleet {result.fleet} on {result.backend} (dry run):"]
    for verb, names in (("create", d.create), ("replace", d.replace), ("keep", d.keep), ("remove", d.remove)):
        lines += [f"  {verb:8} {n}" for n in names]
    if d.empty:
        lines.append("  nothing to change")
    return "\n".join(lines)


def status_text(fleet: str, backend: str, instances, ready: dict | None = None) -> str:
    if not instances:
        return f"fleet {fleet}: nothing running on {backend}"
    rows = [(i.name, i.role, i.runtime, i.state, i.health, i.exit_code, i.restarts, i.tcp_port, i.pid,
             (i.container or "")[:12]) for i in instances]
    columns = ("name", "role", "runtime", "state", "health", "exit code", "restarts", "tcp port", "pid", "container")
    if ready:  # the fleet file was given: how each IOC is ready right now
        rows = [(*row, ready.get(i.name, {}).get("ready_by", "")) for row, i in zip(rows, instances)]
        columns += ("ready by",)
    return f"fleet {fleet} on {backend}:\n" + _with_pack(columns, rows, [i.pack for i in instances])


def _ports_text(ports) -> str:
    """5064 or 5064-5083 (consecutive) or 5064,5070."""
    ports = list(ports)
    if len(ports) > 2 and ports == list(range(ports[0], ports[0] + len(ports))):
        return f"{ports[0]}-{ports[-1]}"
    return ",".join(map(str, ports))


def _short(text: str, entries: int = 2) -> str:
    words = text.split()
    return " ".join(words[:entries]) + (f" …(+{len(words) - entries})" if len(words) > entries else "")


def host_view_text(view) -> str:
    """`iocfleet ls`: fleets, CA servers of no fleet, and who provides the repeater."""
    lines = [table(["fleet", "backend", "strategy", "interface", "ports", "iocs", "states", "clients"],
                   [[f.fleet, f.backend, f.strategy, f.interface or "?", _ports_text(f.udp_ports), str(f.iocs),
                     " ".join(f"{k}:{v}" for k, v in sorted(f.states.items())), _short(f.client_addr_list)]
                    for f in view.fleets]) if view.fleets else "no fleets on this host"]
    if view.foreign:
        lines += ["", "CA servers of no fleet:",
                  table(["proto", "address", "port", "pid", "uid", "process", "container"],
                        [[s.proto, s.address, str(s.port), str(s.pid or "?"),
                          "?" if s.uid is None else str(s.uid), s.process or "?", (s.container or "")[:12]]
                         for s in view.foreign])]
    r = view.repeater
    if not r["held"]:
        who = "nobody holds it (the next `iocfleet up` starts one)"
    elif r["provider"] == "iocfleet":
        by = f"fleet {r['started_by']}" if r["started_by"] else "an earlier `iocfleet up` (no record in this host directory)"
        who = f"iocfleet's, started for {by} ({r['backend']}, pid {r['pid']})"
    else:
        who = f"pid {r['pid']} ({r['process'] or 'unknown'}), not started by iocfleet: used as it is"
    lines += ["", f"CA repeater (UDP {r['port']}): {who}"]
    return "\n".join(lines)
