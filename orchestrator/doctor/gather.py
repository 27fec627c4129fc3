"""The doctor's I/O: read the client settings, search for real, snapshot the host, name the processes.

`run(options, environ)` is the one function `iocfleet doctor` calls. It sends nothing but CA searches,
and only to the addresses being diagnosed: the client's EPICS_CA_ADDR_LIST (or `--addr-list`, or the
fleet plan's client list), plus interface broadcasts only with `--probe-auto`. Host names in the list
are resolved as libca resolves them (the system resolver: /etc/hosts, DNS), which may ask a DNS server.

For use inside a network namespace (tests, or a host you entered with `ip netns exec`), the same
options run as `python -m orchestrator.doctor ... [--json]`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import socket
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Mapping

from orchestrator import host, spec
from orchestrator.ca import env as caenv
from orchestrator.ca import probe
from orchestrator.doctor import judge as doctor
from orchestrator.doctor.checks import auto_broadcasts
from orchestrator.errors import UsageError
from orchestrator.hostmodel import HostSnapshot
from orchestrator.plan import planner

MAX_DOCTOR_NAMES = 4096
MAX_DOCTOR_DESTINATIONS = 1024
SOCKET_BUDGET = 512  # UDP sockets in flight at once

DEFAULT_REPEAT = 20


@dataclass(frozen=True, kw_only=True)
class DoctorOptions:
    """What `iocfleet doctor` was asked; None means "from the environment" (or the fleet). Keywords only:
    eight options in a row are too easy to swap."""

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
    network = host.network_snapshot()  # read once: the fleet is planned on it, the snapshot below reuses it
    if options.fleet:
        settings, fleet_names, fleet_view = _fleet(options.fleet, options.backend, settings, network)
        names = names or fleet_names
    if len(names) > MAX_DOCTOR_NAMES:
        raise UsageError(f"{len(names)} names to search", "--names",
                         f"the doctor searches at most {MAX_DOCTOR_NAMES} names at once; give fewer")
    unsearchable = tuple((n, probe.name_problem(n)) for n in names if probe.name_problem(n))
    names = tuple(n for n in names if not probe.name_problem(n))
    if options.addr_list is not None:
        settings = replace(settings, entries=caenv.addr_list(options.addr_list, settings.server_port, "--addr-list"),
                           source="--addr-list")
    if options.auto_addr_list is not None:
        settings = replace(settings, auto_addr_list=options.auto_addr_list)
    destinations, unresolved = resolve(settings)
    notes = []
    if settings.auto_addr_list:
        if options.probe_auto:
            destinations += [(b, settings.server_port) for b in auto_broadcasts(network)]
        else:
            notes.append("EPICS_CA_AUTO_ADDR_LIST is not NO, but interface broadcasts were NOT probed "
                         "(pass --probe-auto to send searches there)")
    destinations = list(dict.fromkeys(destinations))
    if fleet_view is not None:  # real IOCs that declare no PVs (docs/real-iocs.md): nothing to search for
        silent = [i.name for i in fleet_view.iocs if not i.pvs]
        if silent:
            notes.append(f"reach not measured for {', '.join(silent)}: no PV names known (declare the PVs an "
                         "image IOC serves under `pvs:` to have them probed)")
    result = fixed_result = None
    if names:
        if not destinations:
            if not settings.entries and not settings.auto_addr_list:
                raise UsageError("refusing to probe: EPICS_CA_ADDR_LIST is empty and EPICS_CA_AUTO_ADDR_LIST=NO, "
                                 "so there is no address to search", "doctor",
                                 "set EPICS_CA_ADDR_LIST, or pass --addr-list \"ADDRESS ...\"")
            notes.append("nothing was searched: no address to probe")
        else:
            from concurrent.futures import ThreadPoolExecutor as _Pool

            source = "--addr-list" if settings.source == "--addr-list" else "EPICS_CA_ADDR_LIST"
            with _Pool(max_workers=2) as pool:  # fresh-port and fixed-port rounds in flight together
                fresh = pool.submit(search, names, destinations, options.repeat, options.timeout, socket_factory,
                                    False, source)
                fixed = pool.submit(search, names, destinations, options.repeat, options.timeout, socket_factory,
                                    True, source)
                result, fixed_result = fresh.result(), fixed.result()
    else:
        notes.append("no names to search: give --names PV ... or --fleet FILE for a live probe")
    tcp_ports = {r.tcp_port for r in result.replies} if result else set()
    ports = {settings.server_port, settings.repeater_port, *(p for _, p in destinations), *tcp_ports}
    snap = host.snapshot(extra_ports=ports, network=network)
    processes = tuple(_process(pid) for pid in sorted({h.pid for h in snap.ca_ports if h.pid}))
    obs = doctor.Observation(settings, snap, tuple(destinations), tuple(p for p in processes if p), result,
                             fleet_view, options.probe_auto, tuple(unresolved), tuple(notes), fixed_result,
                             unsearchable)
    diagnosis = _name_servers(with_stale(doctor.diagnose(obs), fleet_view, snap), settings, names, options.timeout,
                              snap, fleet_view, processes)
    from orchestrator.doctor import fanout

    return fanout.attach(diagnosis, fanout.active_rules())  # network.fanout: dnat (R17)


def _name_servers(diagnosis, settings, names, timeout, snap, fleet_view, processes):
    """Search through each EPICS_CA_NAME_SERVERS entry and check its answers (R15; doctor/nameservers.py)."""
    from orchestrator.doctor import nameservers

    if not settings.name_servers:
        return diagnosis
    reports = nameservers.probe([e for e in settings.name_servers if e.is_ip], list(names), max(timeout, 1.0))
    owner = nameservers.owner_lookup(snap, fleet_view, [p for p in processes if p])
    return nameservers.attach(diagnosis, reports, list(names), owner)


def with_stale(diagnosis, fleet_view, snap):
    """Add `stale-fleet` when the running fleet's interface moved since `up` (run/netrecord)."""
    if fleet_view is None or not any(i.state != "missing" for i in fleet_view.iocs):
        return diagnosis
    from dataclasses import replace as _replace

    from orchestrator.run import netrecord

    stale = netrecord.stale_findings(netrecord.read(netrecord.path_of(fleet_view.name)), snap)
    if not stale:
        return diagnosis
    order = {"error": 0, "warning": 1, "info": 2}
    return _replace(diagnosis, findings=tuple(sorted((*stale, *diagnosis.findings), key=lambda f: order[f.severity])))


def search(names, destinations, rounds: int, timeout: float, socket_factory,
           fixed_port: bool = False, source: str = "EPICS_CA_ADDR_LIST") -> probe.ProbeResult:
    """probe.search_batched: batches of MAX_NAMES names and MAX_DESTINATIONS destinations, a bounded number
    in flight at once (file descriptors); one merged result. `fixed_port`: each batch sends all its rounds
    from one socket (one client's source port)."""
    if len(destinations) > MAX_DOCTOR_DESTINATIONS:
        raise UsageError(f"{len(destinations)} addresses to search", source,
                         f"the doctor searches at most {MAX_DOCTOR_DESTINATIONS} addresses")
    return probe.search_batched(names, destinations, rounds=rounds, timeout=timeout, socket_factory=socket_factory,
                                fixed_port=fixed_port, socket_budget=SOCKET_BUDGET)


RESOLVE_TIMEOUT = 5.0  # seconds for all name lookups together; libca blocks on each, we do not hang


def resolve(settings: caenv.ClientSettings, lookup: Callable[[str], str] | None = None,
            timeout: float = RESOLVE_TIMEOUT) -> tuple[list, list]:
    """(destinations, unresolved names): IPs as they are, host names resolved the way libca does.

    libca (aToIPAddr -> hostToIPAddr) asks the C resolver for one IPv4 address of each name: whatever
    nsswitch.conf says, so /etc/hosts, DNS and the rest; a name that does not resolve is dropped from the
    list. `lookup(name) -> ip` does the same here (default: the system resolver, IPv4); lookups run in
    parallel and a name not answered within `timeout` counts as unresolved.
    """
    from concurrent.futures import wait

    lookup = lookup or system_lookup
    names = list(dict.fromkeys(e.host for e in settings.entries if not e.is_ip))
    found: dict[str, str] = {}
    if names:
        pool = ThreadPoolExecutor(max_workers=min(8, len(names)))
        futures = {name: pool.submit(lookup, name) for name in names}
        wait(futures.values(), timeout=timeout)
        pool.shutdown(wait=False, cancel_futures=True)
        for name, future in futures.items():
            if future.done() and future.exception() is None and caenv.host_is_ip(future.result() or ""):
                found[name] = future.result()
    out, unresolved = [], []
    for e in settings.entries:
        ip = e.host if e.is_ip else found.get(e.host)
        if ip is None:
            unresolved.append(e.host)
        else:
            out.append((ip, e.port))
    return out, unresolved


def system_lookup(name: str) -> str:
    """The first IPv4 address the system resolver (NSS: /etc/hosts, DNS, ...) gives for `name`, as libca's
    gethostbyname does."""
    infos = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_DGRAM)
    return infos[0][4][0]


def _process(pid: int) -> doctor.Process | None:
    """The process holding a CA port: label, runtime guess, start time, EPICS_* environment."""
    info = host.process_info(pid)
    if info is None:
        return None
    cmdline = list(info.cmdline)
    return doctor.Process(pid, label_of(cmdline, info.name), runtime_of(cmdline), info.uid, host.container_of(pid),
                          info.started, info.epics_environ)


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


def _fleet(path: str, backend_name: str, settings: caenv.ClientSettings, network: HostSnapshot):
    """The fleet plan's client settings, its PV names, and its running instances. The plan is made on the
    doctor's own view of the network (no second snapshot) and not checked: the doctor judges what runs."""
    from orchestrator.run.backends import select
    from orchestrator.run.instance import unit_of

    if not Path(path).exists():
        raise UsageError(f"fleet file {path} does not exist", "--fleet", "give the fleet file the fleet was started from")
    plan = planner.plan(spec.load(path), network)
    fleet_settings = caenv.client_settings(plan.client_env_dict(), source=f"fleet {plan.fleet} plan")
    instances = select(backend_name).instances(plan.fleet)
    iocs = []
    for ioc in plan.iocs:
        inst = unit_of(instances, ioc.name)  # its own process, or its pack's (issue 14)
        pids = host.process_family(inst.pid) if inst and inst.pid else ()
        iocs.append(doctor.FleetIOC(ioc.name, ioc.runtime, ioc.pv_names, pids, inst.container if inst else None,
                                    inst.state if inst else "missing"))
    names = tuple(n for ioc in plan.iocs for n in ioc.pv_names)
    return fleet_settings, names, doctor.FleetView(plan.fleet, tuple(iocs), str(path))


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """`python -m orchestrator.doctor`: the doctor without click, for `ip netns exec`."""
    import argparse
    import json
    import os

    from orchestrator.errors import IocfleetError, report

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
    options = DoctorOptions(fleet=args.fleet, addr_list=args.addr_list,
                            auto_addr_list=None if args.auto_addr_list is None else args.auto_addr_list == "yes",
                            names=tuple(args.names), repeat=args.repeat, timeout=args.timeout,
                            probe_auto=args.probe_auto, backend=args.backend)
    try:
        diagnosis = run(options, os.environ if environ is None else environ)
        print(json.dumps(diagnosis.to_dict(), indent=2) if args.json else doctor.text(diagnosis))
        diagnosis.raise_for_errors()
    except IocfleetError as exc:
        return report(exc, sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
