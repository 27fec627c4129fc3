"""The hostile-input corpus (issue 13): every case in tests/unit/hostile/*.yaml runs the real CLI (forked,
see hostile_harness.py) and must give its documented exit code and first line, never exit 70, never hang,
and never change a file outside the state directory.

A case is a mapping:

    id: unique-name              class: the issue-13 class number (docs/reliability.md)
    args: [validate, "{fleet}"]  the argv after `iocfleet` (args_py: a Python expression giving it)
    fleet: TEXT                  written to {work}/fleet.yaml (or fleet_py: a Python expression giving TEXT)
    files: {REL: TEXT}           more files under {work}; links: {REL: TARGET} symlinks there
    env: {NAME: VALUE}           on top of a clean environment (HOME, XDG_STATE_HOME in the case's root;
                                 VALUE null removes NAME)
    plant: [...]                 state-directory plants, each {path: REL under {state}, one of text: TEXT,
                                 link: TARGET, dir: true, fifo: true; mode: 0o777}
    exit: 2                      the expected exit code
    first: REGEX                 searched in the first non-empty line of stderr (else stdout)
    stdout: REGEX                optional, searched in the whole stdout (for --json)
    last: REGEX                  optional, searched in the last non-empty line of stderr
    writes: [PATH]               paths outside the state directory the command may create (e.g. -o FILE)

Placeholders in args, env, files, plants: {fleet} {work} {outside} {state} (= $XDG_STATE_HOME/iocfleet)
{home} {root}. {outside}/victim is a file that must survive every case unchanged.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml

from hostile_harness import INTERNAL, base_env, run_cli, tree

CORPUS = Path(__file__).parent / "hostile"
VICTIM = "do not touch\n"
MIN_CASES = 150


def _cases() -> list[dict]:
    cases = []
    for path in sorted(CORPUS.glob("*.yaml")):
        for case in yaml.safe_load(path.read_text()):
            case["_file"] = path.name
            cases.append(case)
    return cases


CASES = _cases()


def _fill(value, places: dict[str, str]):
    if isinstance(value, str):
        for key, text in places.items():
            value = value.replace("{" + key + "}", text)
        return value
    if isinstance(value, list):
        return [_fill(v, places) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, places) for k, v in value.items()}
    return value


def _plant(state: Path, items: list[dict], places: dict[str, str]) -> None:
    for item in items:
        item = _fill(item, places)
        path = state / item["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        if "link" in item:
            path.symlink_to(item["link"])
        elif item.get("dir"):
            path.mkdir(exist_ok=True)
        elif item.get("fifo"):
            os.mkfifo(path)
        else:
            text = item.get("text", "")
            path.write_text(text if isinstance(text, str) else json.dumps(text))
        if "mode" in item and not path.is_symlink():
            path.chmod(int(str(item["mode"]), 8))
        if "owner" in item:
            os.lchown(path, item["owner"], item["owner"])


def prepare(case: dict, root: Path) -> tuple[list[str], dict[str, str], Path, dict[str, str]]:
    work, outside, home = root / "work", root / "outside", root / "home"
    for directory in (work, outside, home):
        directory.mkdir(parents=True, exist_ok=True)
    (outside / "victim").write_text(VICTIM)
    env = base_env(root)
    state = Path(env["XDG_STATE_HOME"]) / "iocfleet"
    places = {"fleet": str(work / "fleet.yaml"), "work": str(work), "outside": str(outside), "state": str(state),
              "home": str(home), "root": str(root)}
    if "fleet_py" in case:
        (work / "fleet.yaml").write_text(eval(case["fleet_py"]))  # noqa: S307 - our own corpus
    elif "fleet" in case:
        (work / "fleet.yaml").write_text(case["fleet"])
    for rel, target in (case.get("links") or {}).items():
        (work / rel).symlink_to(_fill(target, places))
    for rel, text in (case.get("files") or {}).items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text(_fill(text, places))
    if case.get("plant"):
        state.mkdir(parents=True, exist_ok=True)
        _plant(state, case["plant"], places)
    for key, value in _fill(case.get("env") or {}, places).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    args = eval(case["args_py"]) if "args_py" in case else case["args"]  # noqa: S307 - our own corpus
    return _fill(args, places), env, work, places


def test_corpus_is_big_and_ids_are_unique():
    ids = [c["id"] for c in CASES]
    assert len(ids) == len(set(ids)), [i for i in ids if ids.count(i) > 1]
    assert len(CASES) >= MIN_CASES, len(CASES)
    for case in CASES:
        assert {"id", "class", "args", "exit", "first"} <= set(case), case["id"]


def _down_everything(env: dict[str, str], work: Path) -> None:
    """A safety net: no case may leave an IOC running (a case expecting `up` to be refused that was not)."""
    xdg = env.get("XDG_STATE_HOME", "")
    fleets = Path(xdg) / "iocfleet" / "fleets" if xdg.startswith("/") else None
    if fleets is None or not fleets.is_dir() or fleets.is_symlink():
        return
    for directory in fleets.iterdir():
        if directory.is_dir() and not directory.is_symlink() and any(directory.glob("*.json")):
            run_cli(["down", "--fleet-name", directory.name, "--backend", "process"], env, work)


def test_no_case_starts_an_ioc():
    # `up` cases must be dry runs or be refused before anything starts.
    for case in CASES:
        args = case.get("args") or []
        if args[:1] == ["up"] and "--dry-run" not in args:
            assert case["exit"] != 0, case["id"]


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_hostile_case(case, tmp_path):
    root = tmp_path
    args, env, work, places = prepare(case, root)
    state_home = Path(env.get("XDG_STATE_HOME") or root / "state")
    skip = state_home if state_home.is_relative_to(root) and state_home != root else None
    before = tree(root, skip=skip)
    try:
        outcome = run_cli(args, env, work, timeout=60)
    finally:
        _down_everything(env, work)
    after = tree(root, skip=skip)
    assert not outcome.timed_out, f"hung: {case['id']}"
    assert outcome.code != INTERNAL, outcome.stderr
    assert "Traceback" not in outcome.stderr, outcome.stderr
    assert outcome.code == case["exit"], (outcome.code, outcome.stdout[-2000:], outcome.stderr[-2000:])
    assert re.search(case["first"], outcome.first_line), (case["first"], outcome.first_line, outcome.stderr[-2000:])
    if "last" in case:
        lines = [x for x in outcome.stderr.splitlines() if x.strip()]
        assert lines and re.search(case["last"], lines[-1]), (case["last"], outcome.stderr[-2000:])
    if "stdout" in case:
        assert re.search(case["stdout"], outcome.stdout), (case["stdout"], outcome.stdout[:2000])
    assert (root / "outside" / "victim").read_text() == VICTIM
    allowed = {_fill(p, places) for p in case.get("writes") or ()}
    changed = {p for p in set(before) | set(after) if before.get(p) != after.get(p)} - allowed
    assert not changed, sorted(changed)
