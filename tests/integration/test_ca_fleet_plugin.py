"""The `ca_fleet` pytest plugin: the example CI suite runs under `pytest -n 2` with no cross-talk."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("backend", [pytest.param("docker", marks=pytest.mark.docker), "process"])
def test_example_suite_passes_under_two_workers_without_cross_talk(tmp_path, backend):
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2", "examples/ci_suite",
         "--iocfleet-backend", backend, "--junitxml", str(tmp_path / "junit.xml")],
        env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "5 passed" in proc.stdout
    # every worker tore its fleets down: nothing of the suite is left
    if backend == "docker":
        left = subprocess.run(["docker", "ps", "-aq", "--filter", "label=org.iocfleet.fleet"],
                              capture_output=True, text=True, check=True).stdout.split()
        names = subprocess.run(["docker", "inspect", "--format", "{{.Name}}", *left], capture_output=True,
                               text=True).stdout if left else ""
        assert "ci-suite" not in names
    assert not any((tmp_path / "iocfleet" / "fleets").glob("ci-suite*/*.json"))


def test_the_fixture_tears_down_even_when_the_test_fails(tmp_path):
    suite = tmp_path / "test_failing.py"
    suite.write_text(
        "def test_fails(ca_fleet):\n"
        "    fleet = ca_fleet({'fleet': 'fails', 'iocs': [{'name': 'a', 'prefix': 'FAIL:', 'pvs': ['X']}]})\n"
        "    assert fleet.get('FAIL:X') == 0.0\n"
        "    raise AssertionError('on purpose')\n")
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(suite),
                           "--iocfleet-backend", "process", "--rootdir", str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 1 and "on purpose" in proc.stdout
    assert not any((tmp_path / "state" / "iocfleet" / "fleets").glob("fails/*.json"))


@pytest.mark.parametrize("backend", [pytest.param("docker", marks=pytest.mark.docker), "process"])
def test_a_session_scoped_fleet_starts_once_for_the_whole_suite(tmp_path, backend):
    """examples/ci_session: four tests in two modules share one session fleet (the same IOC instances
    serve them all); a module fleet parametrised over runtimes runs each runtime; nothing is left."""
    import json

    record = tmp_path / "record.jsonl"
    # The shell's own list points elsewhere (loopback, nothing serves there): only apply_env lets pyepics find it.
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path), "IOCFLEET_EXAMPLE_RECORD": str(record),
           "EPICS_CA_ADDR_LIST": "127.0.0.9"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "examples/ci_session",
         "--iocfleet-backend", backend], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "6 passed" in proc.stdout
    rows = [json.loads(line) for line in record.read_text().splitlines()]
    session = [r for r in rows if r["fleet"] == "ci-session"]
    assert len(session) == 4
    assert len({tuple(r["instances"]) for r in session}) == 1, session  # started once
    assert {i.split(":")[0] for i in session[0]["instances"]} >= {"motor", "detector"}
    runtimes = [r for r in rows if r["fleet"] == "ci-session-rt"]
    assert len(runtimes) == 2 and runtimes[0]["instances"] != runtimes[1]["instances"]
    if backend == "docker":
        left = subprocess.run(["docker", "ps", "-aq", "--filter", "label=org.iocfleet.fleet=ci-session"],
                              capture_output=True, text=True, check=True).stdout.split()
        assert left == []
    assert not any((tmp_path / "iocfleet" / "fleets").glob("ci-session*/*.json"))
