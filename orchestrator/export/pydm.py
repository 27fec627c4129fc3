"""PyDM display files (.ui, Qt Designer XML) for a fleet: `index.ui` (one row per IOC with its health PVs
and a related-display button opening its screen) and one `<ioc>.ui` per IOC with every PV.

Pure: screens in, {file name: XML text} out. Channels are `ca://NAME`. Widgets: PyDMLabel (read back),
PyDMLineEdit (write), PyDMEnumComboBox (enum), PyDMWaveformPlot (arrays), PyDMRelatedDisplayButton.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Mapping

from orchestrator.export.screens import IocScreen, fleet_screens
from orchestrator.plan.model import Plan

# PyDM class -> (Qt base class, module), declared in <customwidgets> as Qt Designer does
CUSTOM = {
    "PyDMLabel": ("QLabel", "pydm.widgets.label"),
    "PyDMLineEdit": ("QLineEdit", "pydm.widgets.line_edit"),
    "PyDMEnumComboBox": ("QComboBox", "pydm.widgets.enum_combo_box"),
    "PyDMWaveformPlot": ("QGraphicsView", "pydm.widgets.waveformplot"),
    "PyDMRelatedDisplayButton": ("QPushButton", "pydm.widgets.related_display_button"),
}
WIDGET_OF = {"readback": "PyDMLabel", "entry": "PyDMLineEdit", "choice": "PyDMEnumComboBox",
             "plot": "PyDMWaveformPlot", "text": "PyDMLabel"}


def pydm_files(plans: Mapping[str, Plan]) -> dict[str, str]:
    """`index.ui` and one screen per IOC, as {file name: XML text}."""
    screens = fleet_screens(plans)
    fleet = next(iter(plans.values())).fleet
    files = {"index.ui": _text(index_ui(fleet, screens))}
    for screen in screens:
        files[f"{screen.file_stem}.ui"] = _text(ioc_ui(fleet, screen))
    return files


def channel(pv: str) -> str:
    return f"ca://{pv}"


def index_ui(fleet: str, screens: list[IocScreen]) -> ET.Element:
    ui, grid, used = _form(f"{fleet}: IOCs")
    _item(grid, 0, 0, _label(f"Fleet {fleet}", "title"))
    for col, (title, _) in enumerate(screens[0].health if screens else ()):
        _item(grid, 1, col + 2, _label(title, f"col_{col}"))
    for row, screen in enumerate(screens, start=2):
        _item(grid, row, 0, _label(screen.ioc, f"ioc_{row}"))
        _item(grid, row, 1, _label(screen.runtime, f"runtime_{row}"))
        for col, (_, pv) in enumerate(screen.health):
            _item(grid, row, col + 2, _pydm("PyDMLabel", f"health_{row}_{col}", pv, used))
        button = _custom("PyDMRelatedDisplayButton", f"open_{row}", used)
        _prop(button, "text", "string", "Open")
        _stringlist(button, "filenames", [f"{screen.file_stem}.ui"])
        _item(grid, row, len(screen.health) + 2, button)
    _declare(ui, used)
    return ui


def ioc_ui(fleet: str, screen: IocScreen) -> ET.Element:
    title = f"{screen.ioc} ({screen.runtime}, prefix {screen.prefix})"
    ui, grid, used = _form(f"{fleet}: {screen.ioc}")
    _item(grid, 0, 0, _label(title, "title"))
    group, line = None, 1
    for index, row in enumerate(screen.rows):
        if row.group != group:
            group = row.group
            _item(grid, line, 0, _label(group, f"group_{index}"))
            line += 1
        label = _label(row.label, f"label_{index}")
        _prop(label, "toolTip", "string", row.pv)
        _item(grid, line, 0, label)
        _item(grid, line, 1, _pydm(WIDGET_OF[row.widget], f"pv_{index}", row.pv, used, row.label))
        line += 1
    _declare(ui, used)
    return ui


def _form(title: str):
    ui = ET.Element("ui", version="4.0")
    ET.SubElement(ui, "class").text = "Form"
    form = ET.SubElement(ui, "widget", {"class": "QWidget", "name": "Form"})
    geometry = ET.SubElement(ET.SubElement(form, "property", name="geometry"), "rect")
    for key, value in (("x", 0), ("y", 0), ("width", 640), ("height", 480)):
        ET.SubElement(geometry, key).text = str(value)
    _prop(form, "windowTitle", "string", title)
    grid = ET.SubElement(form, "layout", {"class": "QGridLayout", "name": "grid"})
    return ui, grid, set()


def _pydm(cls: str, name: str, pv: str, used: set, label: str = "") -> ET.Element:
    widget = _custom(cls, name, used)
    if cls == "PyDMWaveformPlot":
        curve = {"name": label or pv, "y_channel": channel(pv), "x_channel": None, "color": "#1f77b4"}
        _stringlist(widget, "curves", [json.dumps(curve)])
    else:
        _prop(widget, "channel", "string", channel(pv), stdset=False)
    return widget


def _custom(cls: str, name: str, used: set) -> ET.Element:
    used.add(cls)
    return ET.Element("widget", {"class": cls, "name": name})


def _label(text: str, name: str) -> ET.Element:
    label = ET.Element("widget", {"class": "QLabel", "name": name})
    _prop(label, "text", "string", text)
    return label


def _prop(widget: ET.Element, name: str, kind: str, value: str, stdset: bool = True) -> None:
    attrs = {"name": name} if stdset else {"name": name, "stdset": "0"}
    ET.SubElement(ET.SubElement(widget, "property", attrs), kind).text = value


def _stringlist(widget: ET.Element, name: str, values: list[str]) -> None:
    holder = ET.SubElement(ET.SubElement(widget, "property", {"name": name, "stdset": "0"}), "stringlist")
    for value in values:
        ET.SubElement(holder, "string").text = value


def _item(grid: ET.Element, row: int, column: int, widget: ET.Element) -> None:
    ET.SubElement(grid, "item", row=str(row), column=str(column)).append(widget)


def _declare(ui: ET.Element, used: set) -> None:
    widgets = ET.SubElement(ui, "customwidgets")
    for cls in sorted(used):
        base, header = CUSTOM[cls]
        entry = ET.SubElement(widgets, "customwidget")
        ET.SubElement(entry, "class").text = cls
        ET.SubElement(entry, "extends").text = base
        ET.SubElement(entry, "header").text = header
    ET.SubElement(ui, "resources")
    ET.SubElement(ui, "connections")


def _text(root: ET.Element) -> str:
    ET.indent(root, " ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
