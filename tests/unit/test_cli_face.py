"""One CLI face: every error is shown by the same lines (`IocfleetError.lines()`), `check` raises like the
other commands, the doctor's options are built by keyword. Real subprocesses, loopback only; nothing here
gets as far as a CA datagram except the doctor with a valid fleet (not used here)."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import orchestrator
from orchestrator import errors

REPO = Path(orchestrator.__file__).resolve().parent.parent
ERROR_LINE = re.compile(r"^iocfleet: error: .+ \(.+\) — .+$")
TWO_PROBLEMS = "fleet: face\nnetwork: {interface: lo, base_port: 31030}\niocs:\n  - {name: a, prefix: 'F:A:', bogus: 1}\n" \
               "  - {name: b, prefix: 'F:B:', replicas: 0}\n"


def _run(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    return subprocess.run([sys.executable, "-m", *args], env=env, capture_output=True, text=True, timeout=60,
                          cwd=str(REPO))


def test_check_with_an_error_finding_exits_1_with_one_error_line_after_the_findings(tmp_path):
    fleet = tmp_path / "f.yaml"
    fleet.write_text("fleet: face\nnetwork: {interface: nosuchif0, base_port: 31030}\niocs:\n"
                     "  - {name: a, prefix: 'F:A:'}\n")
    proc = _run("orchestrator.cli", "check", str(fleet), tmp_path=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "interface-missing" in proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and ERROR_LINE.match(lines[0]), proc.stderr
    assert "first: interface-missing" in lines[0] and "(fleet face)" in lines[0]


def test_check_without_error_findings_exits_0_and_says_nothing_on_stderr(tmp_path):
    fleet = tmp_path / "f.yaml"
    fleet.write_text("fleet: face\nnetwork: {interface: lo, base_port: 31030}\niocs:\n  - {name: a, prefix: 'F:A:'}\n")
    proc = _run("orchestrator.cli", "check", str(fleet), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_doctor_module_prints_every_problem_of_a_bad_fleet_file_like_the_cli(tmp_path):
    fleet = tmp_path / "f.yaml"
    fleet.write_text(TWO_PROBLEMS)
    module = _run("orchestrator.doctor", "--fleet", str(fleet), "--backend", "process", "--names", "F:A:X",
                  tmp_path=tmp_path)
    cli = _run("orchestrator.cli", "doctor", "--fleet", str(fleet), "--backend", "process", "--names", "F:A:X",
               tmp_path=tmp_path)
    assert module.returncode == cli.returncode == 2, (module.stderr, cli.stderr)
    problems = module.stderr.strip().splitlines()
    assert len(problems) == 2, module.stderr
    assert "iocs[0].bogus" in problems[0] and "iocs[1].replicas" in problems[1]
    assert module.stderr == cli.stderr


def test_probe_module_shows_errors_as_the_cli_does(capsys):
    from orchestrator.ca import probe

    assert probe.main(["--addr", "127.0.0.1:28999", "--names", "A", "--repeat", "100000"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and ERROR_LINE.match(err[0])


def test_report_writes_the_lines_of_an_error_and_returns_its_exit_code():
    out = io.StringIO()
    assert errors.report(errors.UsageError("bad", "--x", "fix it"), out) == 2
    assert out.getvalue() == "iocfleet: error: bad (--x) — fix it\n"
    out = io.StringIO()
    assert errors.report(errors.SpecError(["f:1: a: one — x", "f:2: b: two — y"]), out) == 2
    assert out.getvalue().splitlines() == ["f:1: a: one — x", "f:2: b: two — y"]
    assert errors.FindingsError("n", "w", "f").exit_code == 1


def test_doctor_options_are_built_by_keyword_only():
    from orchestrator.doctor.gather import DoctorOptions

    with pytest.raises(TypeError):
        DoctorOptions("fleet.yaml", "127.0.0.1")  # type: ignore[misc]
    assert DoctorOptions(fleet="f", repeat=3).repeat == 3
