"""The fleet file: valid input parses; every kind of bad input gives one line naming file, line, field, fix."""

from __future__ import annotations

import re
import textwrap

import pytest
from click.testing import CliRunner

from orchestrator import spec
from orchestrator.cli import cli
from orchestrator.errors import SpecError

GOOD = """\
fleet: lab
network: {interface: lo, strategy: auto, base_port: 5064}
iocs:
  - name: ioc-a
    runtime: caproto
    prefix: "LAB:A:"
    pvs:
      - {name: TEMP, type: float, value: 1.5, sim: sine, rate_hz: 2}
"""

LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): (?P<field>\S+): (?P<problem>.+) — (?P<fix>.+)$")


def _ioc(body: str) -> str:
    return "fleet: lab\niocs:\n" + textwrap.indent(textwrap.dedent(body), "  ")


# (case id, fleet text, expected line, expected field, words in the problem)
BAD = [
    ("unknown-top-key", GOOD + "colour: blue\n", 9, "colour", "unknown key"),
    ("unknown-ioc-key", GOOD.replace("    runtime: caproto\n", "    runtim: caproto\n"), 5, "iocs[0].runtim", "unknown key"),
    ("wrong-type-replicas", _ioc("- {name: a, prefix: 'A:', replicas: two}\n"), 3, "iocs[0].replicas", "expected an integer"),
    ("wrong-type-iocs", "fleet: lab\niocs: 3\n", 2, "iocs", "non-empty list"),
    ("duplicate-ioc-names", _ioc("- {name: a, prefix: 'A:'}\n- {name: a, prefix: 'B:'}\n"), 4, "iocs[1].name", "duplicate IOC name"),
    ("invalid-container-name", _ioc("- {name: 'my ioc', prefix: 'A:'}\n"), 3, "iocs[0].name", "not a valid container name"),
    ("container-name-leading-dash", _ioc("- {name: '-ioc', prefix: 'A:'}\n"), 3, "iocs[0].name", "not a valid container name"),
    ("empty-prefix", _ioc("- {name: a, prefix: ''}\n"), 3, "iocs[0].prefix", "empty prefix"),
    ("pv-name-space", _ioc("- name: a\n  prefix: 'A:'\n  pvs: [{name: 'MY PV'}]\n"), 5, "iocs[0].pvs[0].name", "not allowed"),
    ("pv-name-quote", _ioc("- name: a\n  prefix: 'A:'\n  pvs: [{name: 'PV\"X'}]\n"), 5, "iocs[0].pvs[0].name", "not allowed"),
    ("pv-name-macro", _ioc("- name: a\n  prefix: 'A:'\n  pvs: [{name: '$(P)X'}]\n"), 5, "iocs[0].pvs[0].name", "not allowed"),
    ("pv-name-too-long", _ioc("- name: a\n  prefix: 'A:'\n  pvs: [{name: " + "X" * 59 + "}]\n"), 5, "iocs[0].pvs[0].name", "61 characters"),
    ("replicas-zero", _ioc("- {name: a, prefix: 'A:', replicas: 0}\n"), 3, "iocs[0].replicas", "out of range"),
    ("replicas-absurd", _ioc("- {name: a, prefix: 'A:', replicas: 100000}\n"), 3, "iocs[0].replicas", "out of range"),
    ("count-zero", _ioc("- name: a\n  prefix: 'A:'\n  pvs: [{name: W, count: 0}]\n"), 5, "iocs[0].pvs[0].count", "out of range"),
    ("sim-on-string", _ioc("- name: a\n  prefix: 'A:'\n  pvs: [{name: S, type: str, sim: ramp}]\n"), 5, "iocs[0].pvs[0].sim", "cannot simulate"),
    ("enum-without-strings", _ioc("- name: a\n  prefix: 'A:'\n  pvs: [{name: E, type: enum}]\n"), 5, "iocs[0].pvs[0].enum_strings", "needs its strings"),
    ("unknown-runtime", _ioc("- {name: a, prefix: 'A:', runtime: epics}\n"), 3, "iocs[0].runtime", "unknown runtime"),
    ("image-runtime-without-image", _ioc("- {name: a, prefix: 'A:', runtime: image}\n"), 3, "iocs[0].image", "needs an image"),
    ("not-yaml", "fleet: lab\niocs: [\n", 3, "file", "not valid YAML"),
    ("empty-file", "", 1, "file", "empty"),
    ("comments-only", "# nothing here\n", 1, "file", "empty"),
    ("top-level-list", "- a\n- b\n", 1, "file", "not a mapping"),
    ("unknown-strategy", GOOD.replace("strategy: auto", "strategy: fast"), 2, "network.strategy", "not one of"),
    ("base-port-out-of-range", GOOD.replace("base_port: 5064", "base_port: 70000"), 2, "network.base_port", "out of range"),
    ("duplicate-yaml-key", GOOD.replace("fleet: lab\n", "fleet: lab\nfleet: lab2\n"), 2, "fleet", "duplicate key"),
    ("value-wrong-type", _ioc("- name: a\n  prefix: 'A:'\n  pvs: [{name: N, type: int, value: 1.5}]\n"), 5, "iocs[0].pvs[0].value", "does not fit"),
    ("enum-value-not-in-strings", _ioc("- name: a\n  prefix: 'A:'\n  pvs: [{name: E, type: enum, enum_strings: [Off, On], value: Maybe}]\n"), 5, "iocs[0].pvs[0].value", "does not fit"),
    ("shell-string-command", _ioc("- {name: a, prefix: 'A:', runtime: image, image: 'x:1', command: 'st.cmd; rm -rf /'}\n"), 3, "iocs[0].command", "shell string"),
    ("plan-owned-env", _ioc("- name: a\n  prefix: 'A:'\n  env: {EPICS_CAS_INTF_ADDR_LIST: 10.0.0.1}\n"), 5, "iocs[0].env.EPICS_CAS_INTF_ADDR_LIST", "set by the plan"),
    ("missing-fleet-name", "iocs:\n  - {name: a, prefix: 'A:'}\n", 1, "fleet", "missing"),
    ("rate-zero", _ioc("- name: a\n  prefix: 'A:'\n  pvs: [{name: R, sim: ramp, rate_hz: 0}]\n"), 5, "iocs[0].pvs[0].rate_hz", "not a rate"),
    ("standard-pv-redeclared", _ioc("- name: a\n  prefix: 'A:'\n  pvs: [{name: HEARTBEAT}]\n"), 5, "iocs[0].pvs[0].name", "served by every IOC"),
]


@pytest.mark.parametrize("case,text,line,field,problem", BAD, ids=[b[0] for b in BAD])
def test_validate_reports_bad_input_as_one_line_and_exits_2(tmp_path, case, text, line, field, problem):
    path = tmp_path / f"{case}.yaml"
    path.write_text(text)
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    matches = [LINE.match(x) for x in lines]
    assert all(matches), f"not FILE:LINE: field: problem — fix: {lines}"
    hit = [m for m in matches if m["field"] == field and problem in m["problem"]]
    assert hit, f"no line for {field!r} with {problem!r} in {lines}"
    assert hit[0]["file"] == str(path)
    assert int(hit[0]["line"]) == line
    assert hit[0]["fix"].strip()


def test_missing_file_exits_2_naming_the_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    result = CliRunner().invoke(cli, ["validate", str(missing)])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"{missing}:0: file: not found — check the path, or create it (see docs/fleet-file.md)"


def test_unreadable_file_exits_2(tmp_path):
    result = CliRunner().invoke(cli, ["validate", str(tmp_path)])
    assert result.exit_code == 2
    assert "is a directory" in result.stderr


def test_every_problem_is_reported_not_just_the_first(tmp_path):
    path = tmp_path / "many.yaml"
    path.write_text(_ioc("- {name: 'bad name', prefix: '', replicas: 0, runtime: nope}\n"))
    result = CliRunner().invoke(cli, ["validate", str(path)])
    fields = {LINE.match(x)["field"] for x in result.stderr.strip().splitlines()}
    assert {"iocs[0].name", "iocs[0].prefix", "iocs[0].replicas", "iocs[0].runtime"} <= fields


def test_demo_fleet_is_valid():
    result = CliRunner().invoke(cli, ["validate", "examples/demo.yaml"])
    assert result.exit_code == 0, result.output
    assert "fleet 'demo', 3 IOC(s)" in result.output


def test_good_fleet_parses_to_frozen_types():
    fleet = spec.parse(GOOD, "good.yaml")
    assert fleet.name == "lab"
    assert fleet.network == spec.NetworkSpec(interface="lo", strategy="auto", base_port=5064)
    (ioc,) = fleet.iocs
    assert (ioc.name, ioc.runtime, ioc.prefix, ioc.replicas) == ("ioc-a", "caproto", "LAB:A:", 1)
    assert ioc.pvs == (spec.PVSpec(name="TEMP", type="float", value=1.5, sim="sine", rate_hz=2.0),)
    with pytest.raises(AttributeError):
        ioc.name = "other"


def test_from_dict_validates_like_the_file():
    with pytest.raises(SpecError) as err:
        spec.from_dict({"fleet": "x", "iocs": [{"name": "a", "prefix": "A:", "replicas": -1}]})
    assert err.value.problems == ["<dict>:0: iocs[0].replicas: -1 is out of range 1..256 — use 1 to 256 replicas per IOC entry"]
    fleet = spec.from_dict({"fleet": "x", "iocs": [{"name": "a", "prefix": "A:", "pvs": ["X", {"name": "Y", "type": "int"}]}]})
    assert [p.name for p in fleet.iocs[0].pvs] == ["X", "Y"]


def test_json_output_round_trips_the_fleet(tmp_path):
    import json

    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    result = CliRunner().invoke(cli, ["validate", "--json", str(path)])
    data = json.loads(result.output)
    assert data["fleet"] == "lab"
    assert data["iocs"][0]["pvs"][0]["sim"] == "sine"


def test_yaml_1_1_booleans_stay_strings():
    text = _ioc("- name: a\n  prefix: 'A:'\n  pvs: [{name: E, type: enum, enum_strings: [Off, On], value: On}, {name: S, type: str, value: no}]\n")
    fleet = spec.parse(text, "norway.yaml")
    enum, string = fleet.iocs[0].pvs
    assert enum.enum_strings == ("Off", "On") and enum.value == "On"
    assert string.value == "no"
    assert spec.parse(_ioc("- name: a\n  prefix: 'A:'\n  pvs: [{name: W, writable: false}]\n")).iocs[0].pvs[0].writable is False
