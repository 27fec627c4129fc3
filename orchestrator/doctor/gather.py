"""The doctor's I/O: read the client settings, search for real, snapshot the host, name the processes.

`run(options, environ)` is the one function `iocfleet doctor` calls. It sends nothing but CA searches,
and only to the addresses being diagnosed: the client's EPICS_CA_ADDR_LIST (or `--addr-list`, or the
fleet plan's client list), plus interface broadcasts only with `--probe-auto`. It does no DNS lookups.

For use inside a network namespace (tests, or a host you entered with `ip netns exec`), the same
options run as `python -m orchestrator.doctor ... [--json]`.
"""

from __future__ import annotations

import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Mapping

from orchestrator.ca import env as caenv
from orchestrator.doctor import judge as doctor
from orchestrator import host
from orchestrator.ca import probe
from orchestrator.errors import UsageError
from orchestrator.ca.probe import MAX_NAMES

DEFAULT_REPEAT = 20


@dataclass(frozen=True)
class DoctorOptions:
    """What `iocfleet doctor` was asked; None means "from the environment" (or the fleet)."""

    fleet: str | None = None
    addr_list: str | None = None
    auto_addr_list: bool | None = None
    names: tuple[str, ...] = ()
    repeat: int = DEFAULT_REPEAT
    timeout: float = 0.5
    probe_auto: bool = False
    backend: str = "auto"


def run(options: DoctorOptions, environ: Mapping[str, str],
        socket_factory: Callable[[], socket.socket] = probe.udp_socket) -> doctor.Diagnosis:
    """Diagnose the client settings in `environ` (or the fleet's) against this host; see module doc."""
    if not 1 <= options.repeat <= probe.MAX_ROUNDS:
        raise UsageError(f"--repeat {options.repeat} is out of range", "--repeat", f"use 1 to {probe.MAX_ROUNDS}")
    if not 0.01 <= options.timeout <= 60:  # also refuses NaN
        raise UsageError(f"--timeout {options.timeout} is out of range", "--timeout", "use 0.01 to 60 seconds")
    settings = caenv.client_settings(environ)
    names = tuple(dict.fromkeys(n for item in options.names for n in item.replace(",", " ").split()))
    fleet_view = None
    if options.fleet:
        settings, fleet_names, fleet_view = _fleet(options.fleet, options.backend, settings)
        names = names or fleet_names
    if options.addr_list is not None:
        settings = replace(settings, entries=caenv.addr_list(options.addr_list, settings.server_port, "--addr-list"),
                           source="--addr-list")
    if options.auto_addr_list is not None:
        settings = replace(settings, auto_addr_list=options.auto_addr_list)
    destinations, unresolved = resolve(settings)
    notes = []
    if settings.auto_addr_list:
        if options.probe_auto:
            destinations += [(b, settings.server_port) for b in doctor_auto_broadcasts()]
        else:
            notes.append("EPICS_CA_AUTO_ADDR_LIST is not NO, but interface broadcasts were NOT probed "
                         "(pass --probe-auto to send searches there)")
    destinations = list(dict.fromkeys(destinations))
    if fleet_view is not None:  # real IOCs that declare no PVs (docs/real-iocs.md): nothing to search for
        silent = [i.name for i in fleet_view.iocs if not i.pvs]
        if silent:
            notes.append(f"reach not measured for {', '.join(silent)}: no PV names known (declare the PVs an "
                         "image IOC serves under `pvs:` to have them probed)")
    result = None
    if names:
        if not destinations:
            if not settings.entries and not settings.auto_addr_list:
                raise UsageError("refusing to probe: EPICS_CA_ADDR_LIST is empty and EPICS_CA_AUTO_ADDR_LIST=NO, "
                                 "so there is no address to search", "doctor",
                                 "set EPICS_CA_ADDR_LIST, or pass --addr-list \"ADDRESS ...\"")
            notes.append("nothing was searched: no address to probe")
        else:
            result = search(names, destinations, options.repeat, options.timeout, socket_factory)
    else:
        notes.append("no names to search: give --names PV ... or --fleet FILE for a live probe")
    tcp_ports = {r.tcp_port for r in result.replies} if result else set()
    ports = {settings.server_port, settings.repeater_port, *(p for _, p in destinations), *tcp_ports}
    snap = host.snapshot(extra_ports=ports)
    processes = tuple(_process(pid, fleet_view) for pid in sorted({h.pid for h in snap.ca_ports if h.pid}))
    obs = doctor.Observation(settings, snap, tuple(destinations), tuple(p for p in processes if p), result,
                             fleet_view, options.probe_auto, tuple(unresolved), tuple(notes))
    return doctor.diagnose(obs)


def doctor_auto_broadcasts() -> list[str]:
    from orchestrator.doctor.checks import auto_broadcasts
    from orchestrator.hostmodel import HostSnapshot

    return auto_broadcasts(HostSnapshot(host.interfaces(), None))


def search(names, destinations, rounds: int, timeout: float, socket_factory) -> probe.ProbeResult:
    """probe.search in batches of MAX_NAMES names, all batches in flight at once; one merged result."""
    if len(destinations) > probe.MAX_DESTINATIONS:
        raise UsageError(f"{len(destinations)} addresses to search", "EPICS_CA_ADDR_LIST",
                         f"the doctor searches at most {probe.MAX_DESTINATIONS} addresses at once")
    batches = [names[i:i + MAX_NAMES] for i in range(0, len(names), MAX_NAMES)]
    with ThreadPoolExecutor(max_workers=len(batches)) as pool:
        parts = list(pool.map(lambda b: probe.search(b, destinations, rounds=rounds, timeout=timeout,
                                                     socket_factory=socket_factory), batches))
    return probe.ProbeResult(tuple(names), tuple(destinations), rounds,
                             tuple(r for p in parts for r in p.replies),
                             tuple(e for p in parts for e in p.errors),
                             max(p.elapsed for p in parts), any(p.truncated for p in parts))


def resolve(settings: caenv.ClientSettings, hosts_file: Path = Path("/etc/hosts")) -> tuple[list, list]:
    """(destinations, unresolved names): IPs as they are, host names from /etc/hosts only (no DNS)."""
    table = _hosts_table(hosts_file)
    out, unresolved = [], []
    for e in settings.entries:
        ip = e.host if e.is_ip else table.get(e.host.lower())
        if ip is None:
            unresolved.append(e.host)
        else:
            out.append((ip, e.port))
    return out, unresolved


def _hosts_table(path: Path) -> dict[str, str]:
    table: dict[str, str] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return table
    for line in lines:
        words = line.split("#", 1)[0].split()
        if len(words) >= 2 and caenv.host_is_ip(words[0]):
            for name in words[1:]:
                table.setdefault(name.lower(), words[0])
    return table


def _process(pid: int, fleet_view) -> doctor.Process | None:
    """What psutil knows about `pid`: label, runtime guess, start time, EPICS_* environment."""
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
    return doctor.Process(pid, label_of(cmdline, name), runtime_of(cmdline), uid, host.container_of(pid),
                          started, environ)


def label_of(cmdline: list[str], name: str) -> str:
    """A short name for a process: the script or module a Python runs, else the program name."""
    if cmdline and "python" in Path(cmdline[0]).name:
        args = cmdline[1:]
        if "-m" in args and args.index("-m") + 1 < len(args):
            return args[args.index("-m") + 1]
        scripts = [a for a in args if not a.startswith("-")]
        if scripts:
            return Path(scripts[0]).name
    return Path(cmdline[0]).name if cmdline else name


def runtime_of(cmdline: list[str]) -> str:
    text = " ".join(cmdline).lower()
    if "softioc" in text:
        return "softioc"
    if "caproto" in text:
        return "caproto"
    return "other"


def _fleet(path: str, backend_name: str, settings: caenv.ClientSettings):
    """The fleet plan's client settings, its PV names, and its running instances."""
    from orchestrator.run.backends import select
    from orchestrator.plan.onhost import plan_file

    if not Path(path).exists():
        raise UsageError(f"fleet file {path} does not exist", "--fleet", "give the fleet file the fleet was started from")
    planned = plan_file(path)
    plan = planned.plan
    fleet_settings = caenv.client_settings(plan.client_env_dict(), source=f"fleet {plan.fleet} plan")
    instances = {i.name: i for i in select(backend_name).instances(plan.fleet)}
    iocs = []
    for ioc in plan.iocs:
        inst = instances.get(ioc.name)
        pids = _family(inst.pid) if inst and inst.pid else ()
        iocs.append(doctor.FleetIOC(ioc.name, ioc.runtime, ioc.pv_names, pids, inst.container if inst else None,
                                    inst.state if inst else "missing"))
    names = tuple(n for ioc in plan.iocs for n in ioc.pv_names)
    return fleet_settings, names, doctor.FleetView(plan.fleet, tuple(iocs), str(path))


def _family(pid: int) -> tuple[int, ...]:
    import psutil

    try:
        return (pid, *(c.pid for c in psutil.Process(pid).children(recursive=True)))
    except psutil.Error:
        return (pid,)


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """`python -m orchestrator.doctor`: the doctor without click, for `ip netns exec`."""
    import argparse
    import json
    import os

    from orchestrator.errors import IocfleetError

    parser = argparse.ArgumentParser(prog="python -m orchestrator.doctor", description=__doc__.splitlines()[0])
    parser.add_argument("--fleet")
    parser.add_argument("--addr-list")
    parser.add_argument("--auto-addr-list", choices=["yes", "no"])
    parser.add_argument("--names", nargs="+", default=[])
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT)
    parser.add_argument("--timeout", type=float, default=0.5)
    parser.add_argument("--probe-auto", action="store_true")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    options = DoctorOptions(args.fleet, args.addr_list,
                            None if args.auto_addr_list is None else args.auto_addr_list == "yes",
                            tuple(args.names), args.repeat, args.timeout, args.probe_auto, args.backend)
    try:
        diagnosis = run(options, os.environ if environ is None else environ)
        print(json.dumps(diagnosis.to_dict(), indent=2) if args.json else doctor.text(diagnosis))
        diagnosis.raise_for_errors()
    except IocfleetError as exc:
        print(f"iocfleet: error: {exc.line()}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
