"""State content is untrusted (issue 13, class 3): a planted state file naming a live process never gets it
signalled, unless the process is the very supervisor iocfleet recorded (start time, command line, group).

The victim is a real `sleep` in its own session, so a regression signals only it, never the test run.
"""

from __future__ import annotations

import json
import subprocess
import sys

import psutil
import pytest

from hostile_harness import base_env, run_cli


@pytest.fixture
def sleeper():
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


def plant(tmp_path, record: dict):
    env = base_env(tmp_path)
    directory = tmp_path / "state" / "iocfleet" / "fleets" / "hc"
    directory.mkdir(parents=True)
    (directory / "a.json").write_text(json.dumps(record))
    (tmp_path / "work").mkdir()
    return env


def record(pid: int, created, **more) -> dict:
    return {"fleet": "hc", "name": "a", "role": "ioc", "runtime": "caproto", "plan_hash": "x", "state": "running",
            "supervisor_pid": pid, "supervisor_created": created, "pid": pid, **more}


@pytest.mark.parametrize("created", [None, "now", 0.0], ids=["null-creator", "string-creator", "wrong-creator"])
def test_down_never_signals_a_pid_whose_start_time_does_not_match(tmp_path, sleeper, created):
    env = plant(tmp_path, record(sleeper.pid, created))
    outcome = run_cli(["down", "--fleet-name", "hc", "--backend", "process"], env, tmp_path / "work")
    assert outcome.code == 0, outcome.stderr
    assert sleeper.poll() is None, "the planted pid was signalled"
    assert not (tmp_path / "state" / "iocfleet" / "fleets" / "hc" / "a.json").exists()


def test_down_never_signals_a_pid_whose_command_line_is_not_our_supervisor(tmp_path, sleeper):
    created = psutil.Process(sleeper.pid).create_time()  # the start time matches; the command line does not
    env = plant(tmp_path, record(sleeper.pid, created))
    outcome = run_cli(["down", "--fleet-name", "hc", "--backend", "process"], env, tmp_path / "work")
    assert outcome.code == 0, outcome.stderr
    assert sleeper.poll() is None, "a process that is not iocfleet's supervisor was signalled"


def test_down_never_signals_a_supervisor_lookalike_of_another_state_file(tmp_path):
    # Our supervise module on the command line, but for another state file: not this instance's.
    other = tmp_path / "elsewhere.json"
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", "orchestrator.run.supervise",
                             "--state", str(other)], start_new_session=True)
    try:
        created = psutil.Process(proc.pid).create_time()
        env = plant(tmp_path, record(proc.pid, created))
        outcome = run_cli(["down", "--fleet-name", "hc", "--backend", "process"], env, tmp_path / "work")
        assert outcome.code == 0, outcome.stderr
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_restart_refuses_a_planted_argv_from_a_state_file_of_another_fleet(tmp_path):
    pwned = tmp_path / "pwned"
    env = plant(tmp_path, {**record(None, None, state="exited"), "fleet": "other",
                           "argv": ["/bin/sh", "-c", f"touch {pwned}"], "env": {}, "restart": "no"})
    outcome = run_cli(["restart", "hc", "a", "--backend", "process"], env, tmp_path / "work")
    assert outcome.code == 2, outcome.stderr
    assert "is not iocfleet's" in outcome.stderr
    assert not pwned.exists()
