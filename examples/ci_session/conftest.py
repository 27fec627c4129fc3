"""An example suite whose fleet starts once per session: `fleet_fixture(..., scope="session")`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from orchestrator.pytest_plugin import fleet_fixture

# Every test that asks for `beamline` shares one fleet, started before the first and removed after the last.
beamline = fleet_fixture(Path(__file__).resolve().parent / "fleet.yaml", scope="session")


@pytest.fixture
def record(request):
    """record(fleet): append which IOC instances served this test to $IOCFLEET_EXAMPLE_RECORD (for the
    project's own test of this example: one session fleet means one set of instances)."""
    def write(fleet) -> None:
        path = os.environ.get("IOCFLEET_EXAMPLE_RECORD")
        if path:
            ids = sorted(f"{i.name}:{i.container or i.pid}" for i in fleet.status())
            with open(path, "a") as out:
                out.write(json.dumps({"test": request.node.name, "fleet": fleet.name, "instances": ids}) + "\n")

    return write
