"""Display exports: Phoebus .bob and PyDM .ui files parse, use the widgets and properties those tools
define, link the index to every IOC screen, and name every PV the fleet serves."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from click.testing import CliRunner

from hosts import host
from orchestrator.cli import cli
from orchestrator.export.bob import bob_files
from orchestrator.export.pydm import CUSTOM, pydm_files
from orchestrator.plan import planner
from orchestrator import spec

FLEET = {"fleet": "disp", "network": {"interface": "lo", "base_port": 29700}, "iocs": [
    {"name": "motor", "runtime": "caproto", "prefix": "D:MTR:", "pvs": [
        {"name": "VELO", "type": "float", "value": 1.5}, {"name": "MODE", "type": "enum", "enum_strings": ["A", "B"]},
        {"name": "WAVE", "type": "float", "count": 16, "sim": "sine"},
        {"name": "NAME", "type": "str", "writable": False}, {"name": "N", "type": "int"}]},
    {"name": "det", "runtime": "softioc", "prefix": "D:DET:", "replicas": 2, "pvs": [
        {"name": "C", "type": "int", "sim": "counter"}]},
    {"name": "old", "runtime": "caproto", "prefix": "D:OLD:", "iocstats": False, "pvs": ["X"]},
    {"name": "named", "runtime": "caproto", "prefix": "D:NM:", "iocstats": "D-IOC-NM"},
    {"name": "index", "runtime": "image", "image": "x:1", "prefix": "D:IMG:"}]}

# Phoebus display format: widget type -> properties this export may write (besides name, x, y, width, height)
BOB_PROPS = {"label": {"text", "tooltip"}, "textupdate": {"pv_name", "format", "show_units"},
             "textentry": {"pv_name", "show_units"}, "combo": {"pv_name", "items_from_pv", "show_units"},
             "xyplot": {"traces"}, "action_button": {"text", "actions"}}
GEOMETRY = ["name", "x", "y", "width", "height"]


def plans():
    fleet = spec.from_dict(FLEET)
    return {"vm": planner.plan(fleet, host())}


def every_pv():
    return {pv for plan in plans().values() for ioc in plan.iocs for pv in ioc.all_pv_names()}


def bob_pvs(files: dict[str, str]) -> set[str]:
    names = set()
    for name, text in files.items():
        root = ET.fromstring(text)
        assert root.tag == "display" and root.get("version") == "2.0.0"
        assert [c.tag for c in root][:3] == ["name", "width", "height"]
        for widget in root.iter("widget"):
            kind = widget.get("type")
            assert kind in BOB_PROPS, kind
            assert widget.get("version") in ("2.0.0", "3.0.0")
            tags = [c.tag for c in widget]
            assert set(GEOMETRY) <= set(tags), (name, tags)
            assert set(tags) - set(GEOMETRY) <= BOB_PROPS[kind], (kind, tags)
            assert all(int(widget.find(k).text) >= 0 for k in GEOMETRY[1:])
            if kind in ("textupdate", "textentry", "combo"):
                names.add(widget.find("pv_name").text)
            if kind == "xyplot":
                names.update(t.find("y_pv").text for t in widget.iter("trace"))
            for action in widget.iter("action"):
                assert action.get("type") == "open_display" and action.find("file").text in files
    return names


def test_bob_files_parse_and_name_every_pv_of_the_fleet():
    files = bob_files(plans())
    assert set(files) == {"index.bob", "motor.bob", "det-1.bob", "det-2.bob", "old.bob", "named.bob",
                          "ioc_index.bob"}
    assert bob_pvs(files) == every_pv()


def test_each_pv_gets_a_widget_for_its_type():
    motor = ET.fromstring(bob_files(plans())["motor.bob"])
    kinds = {}
    for widget in motor.iter("widget"):
        pv = widget.findtext("pv_name") or next((t.findtext("y_pv") for t in widget.iter("trace")), None)
        if pv:
            kinds[pv] = widget.get("type")
    assert kinds["D:MTR:VELO"] == "textentry" and kinds["D:MTR:N"] == "textentry"
    assert kinds["D:MTR:MODE"] == "combo" and kinds["D:MTR:WAVE"] == "xyplot"
    assert kinds["D:MTR:NAME"] == "textupdate" and kinds["D:MTR:UPTIME"] == "textupdate"


def test_the_index_has_one_row_per_ioc_with_its_health_pvs_and_a_link():
    index = ET.fromstring(bob_files(plans())["index.bob"])
    links = [a.findtext("file") for a in index.iter("action")]
    assert links == ["motor.bob", "det-1.bob", "det-2.bob", "old.bob", "named.bob", "ioc_index.bob"]
    health = {w.findtext("pv_name") for w in index.iter("widget") if w.get("type") == "textupdate"}
    assert {"D:MTR:HEARTBEAT", "D:MTR:UPTIME", "D:MTR:IOC_CPU_LOAD", "D:MTR:MEM_USED", "D:MTR:CA_CLNT_CNT",
            "D:OLD:HEARTBEAT", "D-IOC-NM:UPTIME"} <= health


def test_pydm_files_parse_declare_their_widgets_and_name_every_pv():
    files = pydm_files(plans())
    pvs = set()
    for name, text in files.items():
        root = ET.fromstring(text)
        assert root.tag == "ui" and root.get("version") == "4.0" and root.findtext("class") == "Form"
        declared = {c.findtext("class"): c.findtext("header") for c in root.iter("customwidget")}
        assert all(CUSTOM[cls][1] == header for cls, header in declared.items())
        for widget in root.iter("widget"):
            cls = widget.get("class")
            assert cls in ("QWidget", "QLabel") or cls in declared, cls
            for prop in widget.findall("property"):
                if prop.get("name") == "channel":
                    channel = prop.findtext("string")
                    assert channel.startswith("ca://")
                    pvs.add(channel[5:])
                if prop.get("name") == "curves":
                    pvs.update(json.loads(s.text)["y_channel"][5:] for s in prop.iter("string"))
                if prop.get("name") == "filenames":
                    assert all(s.text in files for s in prop.iter("string"))
    assert pvs == every_pv()


def test_the_cli_writes_a_directory_and_refuses_a_file(tmp_path):
    path = tmp_path / "f.yaml"
    import yaml

    path.write_text(yaml.safe_dump(FLEET))
    out = tmp_path / "screens"
    result = CliRunner().invoke(cli, ["export", "bob", str(path), "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["directory"] == str(out) and "index.bob" in data["files"]
    assert bob_pvs({p.name: p.read_text() for p in out.glob("*.bob")}) == every_pv()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    refused = CliRunner().invoke(cli, ["export", "pydm", str(path), "-o", str(blocker)])
    assert refused.exit_code == 2 and "is a file" in refused.output
