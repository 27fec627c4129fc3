"""A fleet as a resource: `with Fleet.up(spec) as fleet:` starts it, waits until ready, always tears down.

The pytest fixture `ca_fleet` is a thin wrapper over this. `isolate` renames the fleet and its PV
prefixes (and shifts distinct ports) so parallel test workers never serve the same names.
"""

from __future__ import annotations

import dataclasses
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from orchestrator import spec as specs
from orchestrator.errors import IocfleetError, UsageError


class Fleet:
    """A running fleet: its client settings, and `get`/`put` of PVs over CA through exactly those settings."""

    def __init__(self, fleet: specs.FleetSpec, backend, result, tag: str | None = None) -> None:
        self.spec = fleet
        self.name = fleet.name
        self.backend = backend
        self.result = result
        self.tag = tag

    @property
    def client_env(self) -> dict[str, str]:
        return dict(self.result.client_env)

    @property
    def findings(self):
        return list(self.result.findings)

    def apply_env(self, monkeypatch) -> dict[str, str]:
        """Put the fleet's client settings into this process's environment through `monkeypatch` (pytest's
        fixture or a `pytest.MonkeyPatch`), which restores it afterwards; other EPICS_CA_* variables are
        removed so nothing left over widens the search. Returns the settings.

        Clients read these when they start: libca (pyepics) once per process at its first channel, a
        caproto client when its context is made. Apply before the first client of the test starts.
        """
        import os

        env = self.client_env
        for key in [k for k in os.environ if k.startswith("EPICS_CA_") and k not in env]:
            monkeypatch.delenv(key, raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        return env

    def pv(self, name: str) -> str:
        """The served name of `name` as written in the fleet file (isolation prefixes it with `tag:`)."""
        if self.tag and not name.startswith(f"{self.tag}:"):
            return f"{self.tag}:{name}"
        return name

    def pvs(self) -> list[str]:
        """Every declared PV of the fleet, as served."""
        from orchestrator.plan.planner import expand_replicas

        return [prefix + pv.name for ioc, _, prefix in expand_replicas(self.spec.iocs) for pv in ioc.pvs]

    def get(self, name: str, timeout: float = 5.0):
        """Read one PV (fleet-file name or served name) over CA with the fleet's client settings."""
        from orchestrator.ca.circuit import read_channels

        actual = self.pv(name)
        outcome = self._on_server(actual, timeout, lambda server: read_channels(server, [actual])[actual])
        return outcome.value

    def put(self, name: str, value, timeout: float = 5.0):
        """Write one PV and return the value read back."""
        from orchestrator.ca.circuit import write_channel

        actual = self.pv(name)
        return self._on_server(actual, timeout, lambda server: write_channel(server, actual, value)).value

    def status(self):
        """One instance per IOC (a packed IOC's names its pack in `.pack`), plus the fleet's repeater."""
        from orchestrator.run.instance import per_ioc

        return per_ioc(self.backend.instances(self.name))

    def _on_server(self, actual: str, timeout: float, action):
        from orchestrator.run.readiness import client_destinations, locate

        deadline = time.monotonic() + timeout
        last = "no server answered the search"
        while time.monotonic() < deadline:
            for server, _names in locate([actual], client_destinations(self.client_env), 0.3).items():
                outcome = action(server)
                if outcome.ok:
                    return outcome
                last = outcome.error
        raise IocfleetError(f"{actual}: {last}", f"fleet {self.name}",
                            "check `iocfleet status` and that the name is declared in the fleet file")

    @classmethod
    @contextmanager
    def up(cls, source: str | Path | dict | specs.FleetSpec, backend: str = "auto", timeout: float = 60.0,
           strategy: str | None = None, interface: str | None = None, isolate: str | None = None,
           port_offset: int = 0, progress=None) -> Iterator["Fleet"]:
        """Start the fleet, wait until every PV answers, yield it, and always remove it afterwards."""
        from orchestrator.run.backends import select
        from orchestrator.run.service import down_fleet, up_spec

        fleet = _load(source)
        fleet = isolated(fleet, isolate, port_offset)
        chosen = select(backend)
        try:
            result = up_spec(fleet, chosen, strategy, interface, timeout, progress=progress)
            yield cls(fleet, chosen, result, isolate)
        finally:
            down_fleet(chosen, fleet.name)


def _load(source) -> specs.FleetSpec:
    if isinstance(source, specs.FleetSpec):
        return source
    if isinstance(source, dict):
        return specs.from_dict(source)
    return specs.load(source)


def _check_isolated_names(iocs, tag: str) -> None:
    """The tag lengthens every served name: keep them searchable (59 characters, issue 13 class 2)."""
    from orchestrator.errors import UsageError
    from orchestrator.spec.pvs import PV_NAME_MAX, served_prefix

    for ioc in iocs:
        longest = max([len(p.name) for p in ioc.pvs] + [len("HEARTBEAT")])
        if len(served_prefix(ioc.prefix, ioc.replicas)) + longest > PV_NAME_MAX:
            raise UsageError(f"isolating with tag {tag!r} makes names of IOC {ioc.name!r} longer than "
                             f"{PV_NAME_MAX} characters", "isolate", "use a shorter tag or shorter PV names")


def isolated(fleet: specs.FleetSpec, tag: str | None, port_offset: int = 0) -> specs.FleetSpec:
    """The fleet renamed for one test worker: `NAME-tag`, prefixes `tag:PREFIX`, ports shifted."""
    if not tag and not port_offset:
        return fleet
    iocs = tuple(dataclasses.replace(ioc, prefix=f"{tag}:{ioc.prefix}" if tag else ioc.prefix) for ioc in fleet.iocs)
    if tag:
        _check_isolated_names(iocs, tag)
    network = dataclasses.replace(fleet.network, base_port=fleet.network.base_port + port_offset)
    return dataclasses.replace(fleet, name=f"{fleet.name}-{tag}" if tag else fleet.name, iocs=iocs, network=network)


def with_runtime(fleet: specs.FleetSpec, runtime: str | None) -> specs.FleetSpec:
    """The fleet with every built-in IOC (caproto, softioc) run by `runtime` instead; `image` IOCs unchanged."""
    if runtime is None:
        return fleet
    if runtime not in ("caproto", "softioc"):
        raise UsageError(f"runtime {runtime!r} is not a built-in runtime", "runtime", "use caproto or softioc")
    iocs = tuple(dataclasses.replace(ioc, runtime=runtime) if ioc.runtime in ("caproto", "softioc") else ioc
                 for ioc in fleet.iocs)
    return dataclasses.replace(fleet, iocs=iocs)
