"""A fuzzer for the fleet file and the commands that read it (issue 13): hypothesis mutates valid fleet files
(as data, as YAML text, and as raw bytes) and runs the real CLI on each (forked, hostile_harness.py).

Whatever the input, every run must: never exit 70 (an internal error) nor print a traceback, end within
2 seconds, stay under 200 MB above the parent's memory, and change nothing outside the state directory
(the victim file next to it, the working directory, HOME). Exit codes other than 70 are all fine here:
the corpus (test_hostile_corpus.py) pins exact codes and lines.

The example counts are bounded (130 runs, about 20 s on 2 cores): this runs in every unit-test pass.
A slow run is run up to twice more before it counts as over the time budget, so a load spike from other
processes on the machine is not mistaken for an input that makes iocfleet slow.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostile_harness import INTERNAL, base_env, run_cli, tree

MAX_SECONDS = 2.0
MAX_MB = 200.0
VICTIM = "do not touch\n"

SEED = {
    "fleet": "fz",
    "network": {"interface": "lo", "strategy": "auto", "base_port": 31600, "clients": "auto"},
    "hosts": [{"name": "far", "interface": "eth0", "address": "10.99.0.5/24"}],
    "iocs": [
        {"name": "motor", "runtime": "caproto", "prefix": "FZ:MTR:", "replicas": 2,
         "pvs": [{"name": "POS", "type": "float", "value": 0.0, "sim": "sine", "rate_hz": 2},
                 {"name": "MOVN", "type": "enum", "enum_strings": ["Idle", "Moving"], "value": "Idle"},
                 {"name": "W", "type": "int", "count": 4, "value": [1, 2, 3, 4]}],
         "env": {"EPICS_CAS_BEACON_PERIOD": "15"}, "limits": {"memory": "256m", "pids": 64},
         "restart": "on-failure"},
        {"name": "det", "runtime": "softioc", "prefix": "FZ:DET{i}:", "replicas": 3,
         "pvs": [{"name": "COUNTS", "type": "int", "sim": "counter", "rate_hz": 5},
                 {"name": "S", "type": "str", "value": "OK", "writable": False}]},
        {"name": "remote", "runtime": "image", "image": "registry:5000/ioc:1.0", "prefix": "FZ:R:",
         "host": "far", "command": ["/ioc/st.cmd"], "user": "1000:1000", "pvs": ["X"]},
    ],
}

SCALARS = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**31, -(2**31) - 1, 5065, 0, -1, 65535, 65536, 10**4000]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=80),
    st.sampled_from(["05064", "84:30", "1_000", "0x10", "0o17", ".nan", "-.inf", "rt\n", "a\0b", "²", "١",
                     "../../x", "/etc/passwd", "$(id)", "N" * 60, "x" * 5000, "::1", "0.0.0.0/24",
                     "224.0.0.1/24", "soon", "Registry/IOC::1", "1k", "99999999999g", "{i}", "<<"]),
)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                       st.dictionaries(st.text(max_size=12), inner, max_size=5)),
                      max_leaves=12)


def _paths(node, prefix=()):
    """Every (container, key) in a nested dict/list, for picking a spot to mutate."""
    out = []
    if isinstance(node, dict):
        for key, value in node.items():
            out.append(prefix + (key,))
            out += _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out.append(prefix + (index,))
            out += _paths(value, prefix + (index,))
    return out


@st.composite
def mutated_fleets(draw) -> str:
    data = copy.deepcopy(SEED)
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(data)
        path = draw(st.sampled_from(paths))
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "replace", "delete", "add", "duplicate"]))
        if action == "replace":
            parent[path[-1]] = draw(VALUES)
        elif action == "delete":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=12))] = draw(VALUES)
        elif action == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[path[-1]]))
    try:
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=10**6)
    except (yaml.YAMLError, ValueError, OverflowError):
        return yaml.safe_dump(SEED, sort_keys=False)


SNIPPETS = ["&a ", "*a", "<<: *a", "[", "]", "{", "}", "- ", ": ", "\n  ", "\t", "!!python/object:os.system ",
            "!!binary ", "? ", "---\n", "...\n", "%YAML 1.1\n", "'", '"', "\\", "#", "|\n", ">-\n", "05064",
            "84:30", ".nan", "\0", "\ufeff", "\u2028", "x" * 300]


@st.composite
def mutated_texts(draw) -> str:
    text = yaml.safe_dump(SEED, sort_keys=False)
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(text)))
        how = draw(st.sampled_from(["insert", "insert", "delete", "swap-lines", "indent", "repeat"]))
        if how == "repeat":  # amplification by repetition: deep nesting, long numbers, long names
            text = text[:at] + draw(st.sampled_from(["[", "{a: ", "- ", "9", "*a, ", "N"])) * draw(st.integers(1, 6000)) + text[at:]
        elif how == "insert":
            text = text[:at] + draw(st.one_of(st.sampled_from(SNIPPETS), st.text(max_size=20))) + text[at:]
        elif how == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 40)):]
        elif how == "swap-lines":
            lines = text.splitlines(keepends=True)
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
            text = "".join(lines)
        else:
            lines = text.splitlines(keepends=True)
            i = draw(st.integers(0, len(lines) - 1))
            lines[i] = " " * draw(st.integers(0, 9)) + lines[i].lstrip(" ")
            text = "".join(lines)
    return text


def _check(content: bytes, command: str) -> None:
    with tempfile.TemporaryDirectory(prefix="iocfleet-fuzz-") as tmp:
        root = Path(tmp)
        work, outside = root / "work", root / "outside"
        for directory in (work, outside, root / "home"):
            directory.mkdir()
        (outside / "victim").write_text(VICTIM)
        fleet = work / "fleet.yaml"
        fleet.write_bytes(content)
        env = base_env(root)
        args = {"validate": ["validate", str(fleet)], "validate-json": ["validate", str(fleet), "--json"],
                "plan": ["plan", str(fleet), "--json"], "check": ["check", str(fleet)],
                "down": ["down", str(fleet), "--backend", "process"],
                "dry-run": ["up", str(fleet), "--backend", "process", "--dry-run"],
                "env": ["env", str(fleet)]}[command]
        state = root / "state"
        before = tree(root, skip=state)
        outcome = run_cli(args, env, work, timeout=30)
        for _ in range(2):  # a load spike, or the input? An input that is slow is slow every time.
            if outcome.seconds <= MAX_SECONDS or outcome.timed_out:
                break
            outcome = run_cli(args, env, work, timeout=30)
        after = tree(root, skip=state)
        assert not outcome.timed_out, f"{command} hung on {content[:300]!r}"
        assert outcome.code != INTERNAL, (command, outcome.stderr[-3000:], content[:2000])
        assert "Traceback" not in outcome.stderr, (command, outcome.stderr[-3000:])
        assert outcome.seconds <= MAX_SECONDS, (command, outcome.seconds, content[:2000])
        assert outcome.peak_mb <= MAX_MB, (command, outcome.peak_mb, content[:2000])
        assert before == after, (command, sorted(set(before) ^ set(after)), content[:2000])
        assert (outside / "victim").read_text() == VICTIM
        if command == "validate-json" and outcome.code == 0:
            import json

            json.loads(outcome.stdout, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))


COMMANDS = st.sampled_from(["validate", "validate", "validate-json", "plan", "check", "down", "dry-run", "env"])
def fuzz(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@fuzz(45)
@given(text=mutated_fleets(), command=COMMANDS)
def test_mutated_fleet_data_never_crashes_hangs_or_writes_outside(text, command):
    _check(text.encode(), command)


@fuzz(45)
@given(text=mutated_texts(), command=COMMANDS)
def test_mutated_fleet_text_never_crashes_hangs_or_writes_outside(text, command):
    _check(text.encode("utf-8", "surrogatepass"), command)


@fuzz(30)
@given(data=st.binary(max_size=2000), command=st.sampled_from(["validate", "plan", "down"]))
def test_raw_bytes_never_crash_hang_or_write_outside(data, command):
    _check(data, command)


@fuzz(10)
@given(count=st.integers(1, 12), width=st.integers(2, 9), command=st.sampled_from(["validate", "plan"]))
def test_alias_towers_are_refused_quickly(count, width, command):
    # Generated "billion laughs": `width` aliases per level, `count` levels, under the fleet's own keys.
    lines = ["fleet: fz", "network: {interface: lo, base_port: 31600}", "iocs:",
             "- {name: a, prefix: 'FZ:', pvs: &l0 [X]}"]
    for level in range(1, count + 1):
        lines.append(f"- {{name: a{level}, prefix: 'FZ{level}:', pvs: &l{level} [" + ", ".join([f"*l{level - 1}"] * width) + "]}")
    _check(("\n".join(lines) + "\n").encode(), command)


@fuzz(20)
@given(snippet=st.sampled_from(["[", "{a: ", "- ", "9", "*a, ", "N", "&a [x, ", "\\u00b2", "'", "?"]),
       count=st.integers(1, 6000), line=st.integers(0, 30), command=st.sampled_from(["validate", "plan", "down"]))
def test_repetition_never_crashes(snippet, count, line, command):
    # Amplification by repetition: deep nesting, 6000-digit numbers, long names, alias chains.
    lines = yaml.safe_dump(SEED, sort_keys=False).splitlines(keepends=True)
    at = min(line, len(lines))
    text = "".join(lines[:at]) + "x: " + snippet * count + "\n" + "".join(lines[at:])
    _check(text.encode(), command)


RECORD_KEYS = ["fleet", "name", "role", "runtime", "plan_hash", "state", "pid", "supervisor_pid",
               "supervisor_created", "exit_code", "restarts", "argv", "env", "restart", "log"]
JSONISH = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False),
                                 st.text(max_size=30), st.sampled_from(["fz", "a", "ioc", "running", "/", "../x", 1, "self"])),
                       lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner,
                                                                                             max_size=3)),
                       max_leaves=6)


@fuzz(40)
@given(record=st.dictionaries(st.sampled_from(RECORD_KEYS), JSONISH, max_size=len(RECORD_KEYS)),
       link=st.sampled_from([None, "json", "log", "lock"]),
       command=st.sampled_from(["status", "down", "logs"]))
def test_planted_state_never_crashes_or_reaches_outside(record, link, command):
    # State content is untrusted (class 3): forged records and symlinks to the victim, then a command.
    import json
    import os

    import psutil

    with tempfile.TemporaryDirectory(prefix="iocfleet-fuzz-") as tmp:
        root = Path(tmp)
        work, outside = root / "work", root / "outside"
        for directory in (work, outside, root / "home"):
            directory.mkdir()
        (outside / "victim").write_text(VICTIM)
        fleet_dir = root / "state" / "iocfleet" / "fleets" / "fz"
        fleet_dir.mkdir(parents=True)
        (root / "state" / "iocfleet" / "locks").mkdir()
        for key in ("supervisor_pid", "pid"):
            if record.get(key) == "self":  # a live pid of ours: it must never be signalled
                record[key] = os.getpid()
            elif isinstance(record.get(key), int) and not isinstance(record[key], bool):
                record[key] = 4194000  # never another process's pid (above pid_max): a regression stays harmless
        if record.get("supervisor_created") == "self":
            record["supervisor_created"] = psutil.Process().create_time()
        (fleet_dir / "a.json").write_text(json.dumps({"fleet": "fz", "name": "a", **record}))
        targets = {"json": fleet_dir / "b.json", "log": fleet_dir / "a.log",
                   "lock": root / "state" / "iocfleet" / "locks" / "fz.lock"}
        if link:
            targets[link].symlink_to(outside / "victim")
        args = {"status": ["status", "fz", "--backend", "process", "--json"],
                "down": ["down", "--fleet-name", "fz", "--backend", "process"],
                "logs": ["logs", "fz", "a", "--backend", "process"]}[command]
        me = psutil.Process()
        outcome = run_cli(args, base_env(root), work, timeout=30)
        assert me.is_running()
        assert not outcome.timed_out
        assert outcome.code != INTERNAL, (command, record, link, outcome.stderr[-3000:])
        assert "Traceback" not in outcome.stderr, outcome.stderr[-3000:]
        assert (outside / "victim").read_text() == VICTIM
        assert sorted(p.name for p in outside.iterdir()) == ["victim"]
