"""Shell completion (click's): fleet files, fleet names from this host's state, IOC names of a fleet."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from orchestrator.cli import cli


@pytest.fixture
def host(tmp_path, monkeypatch):
    """A made-up host: a fleet file, and one process fleet's state files (no processes run)."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    state = tmp_path / "state"
    for name in ("motor", "det-1", "det-2", "ca-repeater"):
        path = state / "iocfleet" / "fleets" / "beam" / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"fleet": "beam", "name": name}))
    (state / "iocfleet" / "fleets" / "_host").mkdir()
    (work / "beam.yaml").write_text("fleet: beam\niocs:\n  - {name: motor, prefix: 'B:M:'}\n"
                                        "  - {name: det, prefix: 'B:D{i}:', replicas: 2}\n")
    (work / "notes.txt").write_text("not a fleet")
    (work / "sub").mkdir()
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")  # no engine: process state only
    return work


def complete(words: str) -> list[tuple[str, str]]:
    parts = words.split(" ")
    env = {"COMP_WORDS": words, "COMP_CWORD": str(len(parts) - 1), "_IOCFLEET_COMPLETE": "bash_complete"}
    result = CliRunner().invoke(cli, [], env=env, prog_name="iocfleet")
    return [tuple(line.split(",", 1)) for line in result.output.splitlines() if line]


def test_fleet_file_arguments_complete_yaml_files_and_directories_only(host):
    assert complete("iocfleet plan ") == [("plain", "beam.yaml"), ("dir", "sub/")]
    assert complete("iocfleet up b") == [("plain", "beam.yaml")]


def test_fleet_arguments_complete_running_fleet_names_then_files(host):
    assert complete("iocfleet status ") == [("plain", "beam"), ("plain", "beam.yaml"), ("dir", "sub/")]
    assert complete("iocfleet down --fleet-name ") == [("plain", "beam")]  # never the host repeater's `_host`


def test_ioc_arguments_complete_the_named_fleets_iocs(host):
    assert complete("iocfleet logs beam ") == [("plain", "det-1"), ("plain", "det-2"), ("plain", "motor")]
    assert complete("iocfleet restart beam.yaml d") == [("plain", "det-1"), ("plain", "det-2")]


def test_ioc_names_come_from_the_fleet_file_when_nothing_runs(host, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "empty"))
    assert complete("iocfleet logs beam.yaml ") == [("plain", "motor"), ("plain", "det-1"), ("plain", "det-2")]
    assert complete("iocfleet logs nosuchfleet ") == []


def test_the_completion_command_prints_a_script_for_each_shell():
    for shell, marker in (("bash", "complete -o nosort -F"), ("zsh", "compdef"), ("fish", "complete --no-files")):
        result = CliRunner().invoke(cli, ["completion", shell], prog_name="iocfleet")
        assert result.exit_code == 0 and marker in result.output and "_IOCFLEET_COMPLETE" in result.output
