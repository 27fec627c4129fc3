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
    out.append(table(("ioc", "runtime", "prefix", "bind", "udp", "tcp", "pvs"), rows))
    out += ["", "client settings:", export_lines(plan.client_env_dict())]
    if explain:
        out += ["", "decisions:"]
        out += [f"  [{d.rule}] {d.text}" for d in plan.decisions]
    out += ["", "findings:", findings_text(planned.findings)]
    return "\n".join(out)
