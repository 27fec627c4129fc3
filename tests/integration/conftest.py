"""Fixtures shared by the integration tests that run the real `iocfleet` command."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from cli_run import iocfleet, labelled_containers, supervisors


@pytest.fixture
def state(tmp_path):
    """A state directory (XDG_STATE_HOME) of the test's own."""
    path = tmp_path / "state"
    path.mkdir()
    return path


@pytest.fixture
def teardown(state):
    """Remember (fleet, backend) pairs and always remove them, also when the test failed: `down` first,
    then whatever a deliberately broken run left (containers by label, supervisors by state dir)."""
    started: list[tuple[str, str]] = []
    yield started
    for fleet, backend in started:
        iocfleet("down", "--fleet-name", fleet, "--backend", backend, state=state)
        if backend == "docker":
            ids = labelled_containers(fleet)
            if ids:
                subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, timeout=60)
        else:
            for proc in supervisors(state, fleet):
                os.killpg(proc.pid, signal.SIGKILL)
