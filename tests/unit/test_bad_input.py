"""Bad input on the command line, in the environment and on the file system: one clear line, the documented
exit code (docs/cli.md), and no side effect (no state under the test's XDG_STATE_HOME, no file outside it).

Fleet-file content is covered by tests/unit/test_spec.py (BAD: 33 cases); this file adds the kinds that
test does not reach: options, fleet names, environment values, pipes and devices, permissions, the state
directory, and fleet-file content that tries to reach Docker options or a shell. Cases that need a
Docker Engine are in tests/integration/test_reliability_bad_input.py. The table is docs/reliability.md.

Every command runs as a real subprocess (`python -m orchestrator.cli`) with its own XDG_STATE_HOME and
the suite's loopback-only CA settings; none of these cases gets as far as starting an IOC or sending a
CA datagram (the diagnose cases are refused while parsing the environment, before any search).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

import orchestrator

REPO = Path(orchestrator.__file__).resolve().parent.parent
ERROR_LINE = re.compile(r"^iocfleet: error: .+ \(.+\) — .+$")
SPEC_LINE = re.compile(r"^[^:]+:\d+: \S+: .+ — .+$")
CLICK_LINE = re.compile(r"^Error: (Invalid value for|Missing argument|No such option).+$")


def write_fleet(path: Path, name: str = "relbad", **ioc) -> Path:
    entry = {"name": "a", "prefix": "RELBAD:A:", "pvs": ["X"], **ioc}
    path.write_text(yaml.safe_dump({"fleet": name, "network": {"interface": "lo", "base_port": 31010},
                                    "iocs": [entry]}, sort_keys=False))
    return path


def run(*args: str, state: Path, env: dict | None = None, argv: list[str] | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess:
    full = {**os.environ, "XDG_STATE_HOME": str(state), **(env or {})}
    return subprocess.run([*(argv or [sys.executable]), "-m", "orchestrator.cli", *args], env=full,
                          capture_output=True, text=True, timeout=timeout, cwd=str(REPO))


def last_line(proc: subprocess.CompletedProcess) -> str:
    lines = [x for x in proc.stderr.strip().splitlines() if x.strip()]
    return lines[-1] if lines else ""


def assert_no_state(state: Path) -> None:
    """Nothing of a fleet was written: no instance state (lock files are allowed: flock needs a file)."""
    fleets = state / "iocfleet" / "fleets"
    assert not fleets.exists() or not any(fleets.rglob("*")), sorted(fleets.rglob("*"))


@pytest.fixture
def state(tmp_path):
    path = tmp_path / "state"
    path.mkdir()
    yield path
    assert_no_state(path)


@pytest.fixture
def fleet(tmp_path):
    return write_fleet(tmp_path / "fleet.yaml")


# -- command-line options ---------------------------------------------------------------------------
# (id, argv after `iocfleet`, exit code, words in the last stderr line). "{fleet}" is the fleet file.
OPTION_CASES = [
    ("timeout-zero", ["up", "{fleet}", "--timeout", "0", "--backend", "process"], 2, "--timeout"),
    ("timeout-nan", ["up", "{fleet}", "--timeout", "nan", "--backend", "process"], 2, "--timeout"),
    ("timeout-huge", ["up", "{fleet}", "--timeout", "1e9", "--backend", "process"], 2, "--timeout"),
    ("unknown-backend", ["up", "{fleet}", "--backend", "podman"], 2, "--backend"),
    ("unknown-strategy", ["plan", "{fleet}", "--strategy", "fast"], 2, "--strategy"),
    ("unknown-option", ["up", "{fleet}", "--privileged"], 2, "--privileged"),
    ("port-zero", ["interfaces", "--port", "0"], 2, "--port"),
    ("port-too-big", ["interfaces", "--port", "70000"], 2, "--port"),
    ("port-not-a-number", ["interfaces", "--port", "http"], 2, "--port"),
    ("unknown-interface", ["up", "{fleet}", "--interface", "nosuch0", "--backend", "process"], 3,
     "interface 'nosuch0' does not exist"),
    ("interface-shell", ["up", "{fleet}", "--interface", "lo;touch /tmp/relbad-pwned", "--backend", "process"], 3,
     "interface 'lo;touch /tmp/relbad-pwned' does not exist"),
    ("interface-too-long", ["up", "{fleet}", "--interface", "x" * 300, "--backend", "process"], 3,
     "does not exist"),
    ("fleet-name-absolute", ["down", "--fleet-name", "{tmp}/evil", "--backend", "process"], 2,
     "is not a fleet name (--fleet-name)"),
    ("fleet-name-dotdot", ["status", "../../relbad-nonexistent", "--backend", "process"], 2, "is not a fleet name"),
    ("fleet-name-shell", ["status", "--fleet-name", "$(id)", "--backend", "process"], 2, "is not a fleet name"),
    ("no-fleet", ["status", "--backend", "process"], 2, "which fleet?"),
    ("missing-fleet-file", ["up", "{tmp}/nope.yaml", "--backend", "process"], 2, "not found"),
    ("unknown-ioc", ["logs", "relbad", "nosuch", "--backend", "process"], 2, "has no IOC 'nosuch'"),
    ("restart-unknown-ioc", ["restart", "relbad", "nosuch", "--backend", "process"], 2, "has no IOC 'nosuch'"),
    ("tail-zero", ["logs", "relbad", "a", "--tail", "0", "--backend", "process"], 2, "--tail"),
]


@pytest.mark.parametrize("case,argv,code,words", OPTION_CASES, ids=[c[0] for c in OPTION_CASES])
def test_bad_option_is_one_line_with_its_exit_code_and_no_side_effect(tmp_path, state, fleet, case, argv, code,
                                                                        words):
    args = [a.replace("{fleet}", str(fleet)).replace("{tmp}", str(tmp_path)) for a in argv]
    before = set(tmp_path.iterdir())
    proc = run(*args, state=state)
    assert proc.returncode == code, proc.stderr
    line = last_line(proc)
    assert ERROR_LINE.match(line) or CLICK_LINE.match(line) or SPEC_LINE.match(line), line
    assert words in line, line
    assert "Traceback" not in proc.stderr
    assert set(tmp_path.iterdir()) == before, "a file appeared next to the state dir"
    assert not Path("/tmp/relbad-pwned").exists()


def test_interface_name_of_300_characters_is_a_finding_not_a_crash(tmp_path, state, fleet):
    proc = run("check", str(fleet), "--interface", "x" * 300, state=state)
    assert proc.returncode == 1, proc.stderr
    assert "interface-missing" in proc.stdout


# -- fleet files that are not files ---------------------------------------------------------------------
@pytest.mark.parametrize("command", ["validate", "up", "down"])
def test_fleet_file_that_is_a_fifo_is_refused_not_waited_on(tmp_path, state, command):
    fifo = tmp_path / "fleet.yaml"
    os.mkfifo(fifo)
    proc = run(command, str(fifo), *(["--backend", "process"] if command != "validate" else []), state=state,
               timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert last_line(proc) == f"{fifo}:0: file: not a regular file (a pipe or device) — give the path of a fleet YAML file"


def test_fleet_file_that_is_a_device_is_refused(state):
    proc = run("validate", "/dev/zero", state=state, timeout=30)
    assert proc.returncode == 2
    assert "not a regular file" in last_line(proc)


def _as_nobody() -> list[str]:
    """argv prefix running Python as uid 65534 (the tests run as root, for whom every file is readable)."""
    python = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    if os.getuid() != 0 or not os.path.exists(python):
        pytest.skip("needs root and the system python of the venv's version, to drop to uid 65534")
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python]


def _nobody_env() -> dict[str, str]:
    return {"PYTHONPATH": f"{sysconfig.get_paths()['purelib']}:{REPO}"}


@pytest.fixture
def open_dir():
    """A directory uid 65534 can traverse (pytest's tmp_path lives under a root-only directory)."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="relbad-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_unreadable_fleet_file_is_refused_naming_it(open_dir, state):
    path = write_fleet(open_dir / "secret.yaml")
    path.chmod(0o600)  # root's file, read by uid 65534
    proc = run("validate", str(path), state=state, argv=_as_nobody(), env=_nobody_env())
    assert proc.returncode == 2, proc.stderr
    # click's own readability check answers first: "Error: Invalid value for 'FLEET': Path '...' is not readable."
    assert CLICK_LINE.match(last_line(proc)) and f"'{path}' is not readable" in last_line(proc)


# -- the state directory ----------------------------------------------------------------------------------
def test_state_home_that_is_a_file_is_a_usage_error_not_an_internal_one(tmp_path, fleet):
    not_a_dir = tmp_path / "state-file"
    not_a_dir.write_text("")
    proc = run("up", str(fleet), "--backend", "process", state=not_a_dir)
    assert proc.returncode == 2, proc.stderr
    assert ERROR_LINE.match(last_line(proc)) and "(XDG_STATE_HOME)" in last_line(proc)
    assert "Not a directory" in last_line(proc)


def test_state_home_not_writable_by_the_user_is_a_usage_error(open_dir):
    fleet = write_fleet(open_dir / "fleet.yaml")
    fleet.chmod(0o644)
    root_owned = open_dir / "root-state"
    root_owned.mkdir(mode=0o755)
    proc = run("up", str(fleet), "--backend", "process", state=root_owned, argv=_as_nobody(), env=_nobody_env())
    assert proc.returncode == 2, proc.stderr
    assert "Permission denied" in last_line(proc) and "(XDG_STATE_HOME)" in last_line(proc)
    assert list(root_owned.iterdir()) == []


# -- the Docker Engine, unreachable (no engine needed: nothing answers there) ---------------------------------
@pytest.mark.parametrize("docker_host", ["unix:///nonexistent.sock", "tcp://127.0.0.1:1", "bogus://x"])
@pytest.mark.parametrize("command", ["up", "status", "down"])
def test_docker_backend_without_engine_exits_4(tmp_path, state, fleet, docker_host, command):
    args = [command, str(fleet), "--backend", "docker"]
    proc = run(*args, state=state, env={"DOCKER_HOST": docker_host})
    assert proc.returncode == 4, proc.stderr
    line = last_line(proc)
    assert ERROR_LINE.match(line) and "no Docker Engine answers" in line and "(--backend docker)" in line


def test_image_runtime_on_the_process_backend_is_refused(tmp_path, state):
    path = write_fleet(tmp_path / "img.yaml", runtime="image", image="site/vendor-ioc:1")
    proc = run("up", str(path), "--backend", "process", state=state)
    assert proc.returncode == 2, proc.stderr
    assert "needs containers" in last_line(proc) and "(--backend process)" in last_line(proc)


# -- environment values read by commands (the doctor's client settings) ----------------------------------------
# Each value would be refused before any search; even if one were not, it points at loopback only.
ENV_CASES = [
    ("addr-list-comma", {"EPICS_CA_ADDR_LIST": "127.0.0.1,127.0.0.2"}, "comma or semicolon"),
    ("addr-list-semicolon-shell", {"EPICS_CA_ADDR_LIST": "127.0.0.1;id"}, "comma or semicolon"),
    ("addr-list-macro", {"EPICS_CA_ADDR_LIST": "$(id)"}, "neither an IPv4 address nor a host name"),
    ("addr-list-port-too-big", {"EPICS_CA_ADDR_LIST": "127.0.0.1:99999"}, "not a number from 1 to 65535"),
    ("addr-list-port-zero", {"EPICS_CA_ADDR_LIST": "127.0.0.1:0"}, "not a number from 1 to 65535"),
    ("addr-list-bad-ip", {"EPICS_CA_ADDR_LIST": "127.0.0.300"}, "not a dotted IPv4 address"),
    ("addr-list-no-host", {"EPICS_CA_ADDR_LIST": ":5064"}, "has no host"),
    ("auto-addr-list-maybe", {"EPICS_CA_AUTO_ADDR_LIST": "maybe"}, "is not YES or NO"),
    ("server-port-too-big", {"EPICS_CA_SERVER_PORT": "70000"}, "is not a port number"),
    ("server-port-negative", {"EPICS_CA_SERVER_PORT": "-1"}, "is not a port number"),
    ("repeater-port-word", {"EPICS_CA_REPEATER_PORT": "x"}, "is not a port number"),
    ("name-servers-comma", {"EPICS_CA_NAME_SERVERS": "127.0.0.1,127.0.0.2"}, "comma or semicolon"),
]


@pytest.mark.parametrize("case,env,words", ENV_CASES, ids=[c[0] for c in ENV_CASES])
def test_malformed_ca_environment_is_refused_naming_the_variable(state, case, env, words):
    variable = next(iter(env))
    full = {**os.environ, "XDG_STATE_HOME": str(state), **env}
    proc = subprocess.run([sys.executable, "-m", "orchestrator.doctor.gather", "--names", "RELBAD:NONE"], env=full,
                          capture_output=True, text=True, timeout=60, cwd=str(REPO))
    assert proc.returncode == 2, proc.stderr
    line = last_line(proc)
    assert ERROR_LINE.match(line), line
    assert f"({variable})" in line and words in line, line


def test_the_callers_epics_environment_never_reaches_the_plan(tmp_path, state, fleet):
    """A hostile EPICS_CAS_* in iocfleet's own environment does not change what the plan gives IOCs."""
    import json

    hostile = {"EPICS_CAS_INTF_ADDR_LIST": "192.0.2.2", "EPICS_CAS_BEACON_ADDR_LIST": "192.0.2.255",
               "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "YES", "EPICS_CA_SERVER_PORT": "5064"}
    proc = run("plan", str(fleet), "--json", state=state, env=hostile)
    assert proc.returncode == 0, proc.stderr
    env = json.loads(proc.stdout)["iocs"][0]["env"]
    assert env["EPICS_CAS_AUTO_BEACON_ADDR_LIST"] == "NO"
    assert "192.0.2" not in json.dumps(env)


# -- fleet-file content aimed at Docker options or a shell (kinds test_spec.py does not cover) ---------------
FILE_CASES = [
    ("docker-privileged", {"privileged": True}, "iocs[0].privileged", "unknown key"),
    ("docker-volumes", {"volumes": ["/:/host"]}, "iocs[0].volumes", "unknown key"),
    ("docker-cap-add", {"cap_add": ["NET_ADMIN"]}, "iocs[0].cap_add", "unknown key"),
    ("docker-network-mode", {"network_mode": "bridge"}, "iocs[0].network_mode", "unknown key"),
    ("docker-entrypoint", {"entrypoint": ["/bin/sh"]}, "iocs[0].entrypoint", "only `image` IOCs take"),
    ("mount-root", {"runtime": "image", "image": "x:1", "mounts": [{"source": "/", "target": "/host"}]},
     "iocs[0].mounts[0].source", "root folder"),
    ("mount-docker-socket", {"runtime": "image", "image": "x:1",
                             "mounts": [{"source": "/var/run", "target": "/r"}]},
     "iocs[0].mounts[0].source", "Docker socket"),
    ("pv-name-newline", {"pvs": ["X\nY"]}, "iocs[0].pvs[0].name", "not allowed"),
    ("pv-name-plus", {"pvs": ["X+Y"]}, "iocs[0].pvs[0].name", "not allowed"),
    ("prefix-command-substitution", {"prefix": "$(id):"}, "iocs[0].prefix", "not allowed"),
    ("command-list-with-non-strings", {"runtime": "image", "image": "x:1", "command": ["st.cmd", 3]},
     "iocs[0].command", "list of strings"),
    ("env-key-shell", {"env": {"A;B": "1"}}, "iocs[0].env.A;B", "not a valid environment variable name"),
    ("image-with-spaces", {"runtime": "image", "image": "x:1 --privileged"}, "iocs[0].image", "not an image"),
    ("user-shell", {"user": "0; id"}, "iocs[0].user", "is not a user"),
    ("memory-word", {"limits": {"memory": "lots"}}, "iocs[0].limits.memory", "not a memory size"),
    ("pids-too-low", {"limits": {"pids": 1}}, "iocs[0].limits.pids", "out of range"),
]


@pytest.mark.parametrize("case,ioc,field,words", FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_fleet_file_cannot_reach_docker_options_or_a_shell(tmp_path, state, case, ioc, field, words):
    path = write_fleet(tmp_path / "f.yaml", **ioc)
    proc = run("up", str(path), "--backend", "process", "--dry-run", state=state)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert all(SPEC_LINE.match(x) for x in lines), lines
    assert any(f": {field}: " in x and words in x for x in lines), lines


def test_fleet_name_with_command_substitution_is_refused(tmp_path, state):
    path = write_fleet(tmp_path / "f.yaml", name="$(id)")
    proc = run("validate", str(path), state=state)
    assert proc.returncode == 2
    assert ": fleet: '$(id)' is not a valid fleet name" in last_line(proc)


def test_too_many_distinct_ports_is_refused_before_anything_starts(tmp_path, state):
    path = tmp_path / "huge.yaml"
    path.write_text(yaml.safe_dump({"fleet": "relhuge", "network": {"interface": "lo", "base_port": 65279,
                                                                      "strategy": "distinct-ports"},
                                    "iocs": [{"name": n, "prefix": f"RELH:{n}{{i}}:", "replicas": 256}
                                             for n in ("a", "b")]}))
    proc = run("up", str(path), "--backend", "process", state=state)
    assert proc.returncode == 3, proc.stderr
    assert "port-out-of-range" in last_line(proc)


def test_root_user_next_to_default_iocs_is_an_error_finding(tmp_path, state):
    path = tmp_path / "u.yaml"
    path.write_text(yaml.safe_dump({"fleet": "relu", "network": {"interface": "lo", "base_port": 31012},
                                    "iocs": [{"name": "a", "prefix": "RELU:A:", "user": "0"},
                                             {"name": "b", "prefix": "RELU:B:"}]}))
    proc = run("up", str(path), "--backend", "process", state=state)
    assert proc.returncode == 3, proc.stderr
    assert "reuseport-uid-mismatch" in last_line(proc)
