"""Fixtures shared by the integration tests that run the real `iocfleet` command."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from cli_run import iocfleet, labelled_containers, supervisors
from images_fixture import built_images, docker_client  # noqa: F401  (session fixtures: the engine, both images)
from orchestrator.images import build as images
from orchestrator.export import ImageInfo


@pytest.fixture(scope="session")
def ioc_images(docker_client) -> ImageInfo:
    """Both IOC images built (or found up to date) once per session; the tags an export names."""
    built = images.build_images(images.RUNTIMES, client=docker_client)
    info = ImageInfo.from_images()
    assert {b.runtime: b.tag for b in built} == dict(info.tags)
    return info


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
