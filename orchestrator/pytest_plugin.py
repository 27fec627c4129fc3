"""pytest plugin: the `ca_fleet` fixture factory brings up a CA fleet for a test and always tears it down.

    def test_motor(ca_fleet, monkeypatch):
        fleet = ca_fleet("tests/fleet.yaml")          # or a dict in the fleet-file shape
        assert fleet.get("BL:MTR:VELO") == 1.5
        fleet.put("BL:MTR:VELO", 2.0)
        fleet.apply_env(monkeypatch)                   # EPICS_CA_* for pyepics, caget, your code

Wider scopes start a fleet once and share it: `ca_fleet(path, scope="module")` or `scope="session"`
(kept until the last test of the module / session), or a named fixture of your own:

    beamline = fleet_fixture("tests/fleet.yaml", scope="session", runtimes=("caproto", "softioc"))

which also parametrises every test that uses it over the runtimes (one fleet per runtime, each started
once). `over_runtimes()` parametrises a test with `ca_runtime` for `ca_fleet(..., runtime=ca_runtime)`.

Under pytest-xdist each worker gets its own fleet name, PV prefixes (`gw0:BL:MTR:...`; `fleet.get`
and `fleet.pv` translate) and, for distinct-ports fleets, its own port range, so workers never
cross-talk. A fleet whose interface is `auto` is served on loopback: a CI fleet serves the test process.
Options: `--iocfleet-backend auto|docker|process` (or $IOCFLEET_BACKEND), `--iocfleet-timeout S`.
"""

from __future__ import annotations

import json
import os
import re
from contextlib import ExitStack

import pytest

PORT_STRIDE = 512  # distinct-ports range per xdist worker
SCOPES = ("function", "module", "session")
RUNTIMES = ("caproto", "softioc")
_LIVE = pytest.StashKey[dict]()  # fleet name -> scope, of the fleets kept for a module or the session


def pytest_addoption(parser) -> None:
    group = parser.getgroup("iocfleet", "EPICS CA fleets for tests (iocfleet)")
    group.addoption("--iocfleet-backend", default=os.environ.get("IOCFLEET_BACKEND", "auto"),
                    choices=("auto", "docker", "process"), help="Backend for ca_fleet fleets (default: auto).")
    group.addoption("--iocfleet-timeout", type=float, default=120.0,
                    help="Seconds ca_fleet waits for every PV to answer (default: 120).")


def worker_isolation(worker: str | None) -> tuple[str | None, int]:
    """(prefix tag, port offset) for an xdist worker id like `gw3`; nothing without xdist."""
    match = re.fullmatch(r"gw(\d+)", worker or "")
    if not match:
        return None, 0
    index = int(match.group(1))
    return f"gw{index}", index * PORT_STRIDE


def over_runtimes(*runtimes: str, argname: str = "ca_runtime"):
    """A `parametrize` mark running the test once per IOC runtime (default: caproto and softioc)."""
    chosen = runtimes or RUNTIMES
    for runtime in chosen:
        if runtime not in RUNTIMES:
            raise ValueError(f"over_runtimes: {runtime!r} is not one of {', '.join(RUNTIMES)}")
    return pytest.mark.parametrize(argname, chosen, ids=list(chosen))


class _Fleets:
    """Fleets started for one scope, one per fleet name; all removed when the scope ends.

    Asking again with the same file and options returns the running fleet. Asking for the same name with
    other options (another runtime) replaces it: two fleets of one name would serve the same PVs.
    """

    def __init__(self, config, scope: str) -> None:
        self.config = config
        self.scope = scope
        self.running: dict[str, tuple[str, ExitStack, object]] = {}  # name -> (key, its stack, Fleet)

    def get(self, source, backend=None, timeout=None, strategy=None, interface=None, runtime=None, pack=True):
        from orchestrator.errors import UsageError
        from orchestrator.run.fleet import Fleet

        fleet, options = _prepare(self.config, source, backend, timeout, strategy, interface, runtime, pack)
        key = json.dumps([fleet.to_dict(), options["backend"], strategy, options["interface"]], sort_keys=True)
        name = _isolated_name(fleet)
        if name in self.running:
            if self.running[name][0] == key:
                return self.running[name][2]
            self._stop(name)
        live = self.config.stash.setdefault(_LIVE, {})
        if name in live:
            raise UsageError(f"fleet {name!r} is already running for scope={live[name]!r}", "ca_fleet",
                             f"ask for it with scope={live[name]!r} here too, or give this fleet another name")
        stack = ExitStack()
        started = stack.enter_context(Fleet.up(fleet, **options))
        self.running[name] = (key, stack, started)
        if self.scope != "function":
            live[name] = self.scope
        return started

    def _stop(self, name: str) -> None:
        _, stack, _ = self.running.pop(name)
        try:
            stack.close()
        finally:
            if self.scope != "function":
                self.config.stash.setdefault(_LIVE, {}).pop(name, None)

    def close(self) -> None:
        errors = []
        for name in list(self.running):
            try:
                self._stop(name)
            except Exception as exc:  # noqa: BLE001 - remove every fleet, then report the first failure
                errors.append(exc)
        if errors:
            raise errors[0]


def _prepare(config, source, backend, timeout, strategy, interface, runtime, pack=True):
    from orchestrator.plan.onhost import with_pack
    from orchestrator.run.fleet import with_runtime
    from orchestrator import spec as specs

    fleet = source if isinstance(source, specs.FleetSpec) else (
        specs.from_dict(source) if isinstance(source, dict) else specs.load(source))
    fleet = with_pack(with_runtime(fleet, runtime), pack)
    if interface is None and fleet.network.interface == "auto":
        interface = "lo"
    tag, offset = worker_isolation(os.environ.get("PYTEST_XDIST_WORKER"))
    return fleet, {"backend": backend or config.getoption("--iocfleet-backend"),
                   "timeout": timeout or config.getoption("--iocfleet-timeout"), "strategy": strategy,
                   "interface": interface, "isolate": tag,
                   "port_offset": offset if _distinct(fleet, strategy) else 0}


def _isolated_name(fleet) -> str:
    tag, _ = worker_isolation(os.environ.get("PYTEST_XDIST_WORKER"))
    return f"{fleet.name}-{tag}" if tag else fleet.name


@pytest.fixture(scope="session")
def _iocfleet_session(request):
    fleets = _Fleets(request.config, "session")
    yield fleets
    fleets.close()


@pytest.fixture(scope="module")
def _iocfleet_module(request):
    fleets = _Fleets(request.config, "module")
    yield fleets
    fleets.close()


@pytest.fixture
def ca_fleet(request):
    """Factory: `ca_fleet(path_or_dict, backend=None, timeout=None, strategy=None, interface=None,
    scope="function", runtime=None, pack=True)` -> Fleet. `scope` "module" or "session" shares one fleet
    across the tests of the module or the session; `runtime` runs every built-in IOC with caproto or softioc;
    `pack` (default True) runs the caproto IOCs packed, many in one process (docs/packs.md): `pack=False`
    gives each its own process or container, `pack=None` keeps the fleet file's choice."""
    own = _Fleets(request.config, "function")

    def start(source, backend=None, timeout=None, strategy=None, interface=None, scope="function", runtime=None,
              pack=True):
        if scope not in SCOPES:
            raise ValueError(f"ca_fleet: scope={scope!r} is not one of {', '.join(SCOPES)}")
        fleets = own if scope == "function" else request.getfixturevalue(f"_iocfleet_{scope}")
        return fleets.get(source, backend, timeout, strategy, interface, runtime, pack)

    try:
        yield start
    finally:
        own.close()


def fleet_fixture(source, scope: str = "session", runtimes: tuple[str, ...] | None = None, **options):
    """A fixture (assign it to a name in a conftest or test module) that yields one Fleet started once per
    `scope` ("function", "module", "session"); with `runtimes`, one fleet per runtime and every test that
    uses the fixture runs once per runtime. `options`: backend, timeout, strategy, interface, pack (default
    True: caproto IOCs packed)."""
    if scope not in SCOPES:
        raise ValueError(f"fleet_fixture: scope={scope!r} is not one of {', '.join(SCOPES)}")
    for runtime in runtimes or ():
        if runtime not in RUNTIMES:
            raise ValueError(f"fleet_fixture: runtime {runtime!r} is not one of {', '.join(RUNTIMES)}")

    @pytest.fixture(scope=scope, params=list(runtimes) if runtimes else None,
                    ids=list(runtimes) if runtimes else None)
    def _fleet(request):
        # The fixture owns its fleet: pytest tears it down when the scope ends or the runtime changes
        # (it orders the tests so that each runtime's fleet starts once).
        fleets = _Fleets(request.config, scope)
        try:
            yield fleets.get(source, runtime=getattr(request, "param", None), **options)
        finally:
            fleets.close()

    return _fleet


def _distinct(fleet, strategy) -> bool:
    return (strategy or fleet.network.strategy) == "distinct-ports"
