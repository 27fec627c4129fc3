"""pytest plugin: the `ca_fleet` fixture factory brings up a CA fleet for a test and always tears it down.

    def test_motor(ca_fleet):
        fleet = ca_fleet("tests/fleet.yaml")          # or a dict in the fleet-file shape
        assert fleet.get("BL:MTR:VELO") == 1.5
        fleet.put("BL:MTR:VELO", 2.0)
        env = fleet.client_env                         # EPICS_CA_* for other clients (pyepics, caget)

Under pytest-xdist each worker gets its own fleet name, PV prefixes (`gw0:BL:MTR:...`; `fleet.get`
and `fleet.pv` translate) and, for distinct-ports fleets, its own port range, so workers never
cross-talk. A fleet whose interface is `auto` is served on loopback: a CI fleet serves the test process.
Options: `--iocfleet-backend auto|docker|process` (or $IOCFLEET_BACKEND), `--iocfleet-timeout S`.
"""

from __future__ import annotations

import os
import re
from contextlib import ExitStack

import pytest

PORT_STRIDE = 512  # distinct-ports range per xdist worker


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


@pytest.fixture
def ca_fleet(request):
    """Factory: `ca_fleet(path_or_dict, backend=None, timeout=None, strategy=None, interface=None)` -> Fleet."""
    from orchestrator import spec as specs
    from orchestrator.run.fleet import Fleet

    tag, offset = worker_isolation(os.environ.get("PYTEST_XDIST_WORKER"))
    config = request.config
    with ExitStack() as stack:
        def start(source, backend=None, timeout=None, strategy=None, interface=None):
            fleet = source if isinstance(source, specs.FleetSpec) else (
                specs.from_dict(source) if isinstance(source, dict) else specs.load(source))
            if interface is None and fleet.network.interface == "auto":
                interface = "lo"
            return stack.enter_context(Fleet.up(
                fleet, backend=backend or config.getoption("--iocfleet-backend"),
                timeout=timeout or config.getoption("--iocfleet-timeout"), strategy=strategy,
                interface=interface, isolate=tag, port_offset=offset if _distinct(fleet, strategy) else 0))

        yield start


def _distinct(fleet, strategy) -> bool:
    return (strategy or fleet.network.strategy) == "distinct-ports"
