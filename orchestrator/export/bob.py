"""Phoebus display files (.bob) for a fleet: `index.bob` (one row per IOC with its health PVs and a button
opening its screen) and one `<ioc>.bob` per IOC listing every PV with a widget that suits its type.

Pure: screens in, {file name: XML text} out. The XML is the Phoebus display format 2.0 (`<display
version="2.0.0">` of `<widget type=... version=...>` elements with `pv_name`, geometry and the widget's
own properties); Phoebus fills every property left out with its default.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Mapping

from orchestrator.export.screens import IocScreen, fleet_screens
from orchestrator.plan.model import Plan

# Phoebus widget type -> the version its current model writes
VERSIONS = {"display": "2.0.0", "label": "2.0.0", "textupdate": "2.0.0", "textentry": "3.0.0", "combo": "2.0.0",
            "xyplot": "3.0.0", "action_button": "3.0.0", "group": "3.0.0"}
WIDGET_OF = {"readback": "textupdate", "entry": "textentry", "choice": "combo", "plot": "xyplot", "text": "textupdate"}
ROW_H, LABEL_W, VALUE_W, PLOT_H, MARGIN = 24, 220, 220, 160, 10
HEALTH_W = 130


def bob_files(plans: Mapping[str, Plan]) -> dict[str, str]:
    """`index.bob` and one screen per IOC, as {file name: XML text}."""
    screens = fleet_screens(plans)
    fleet = next(iter(plans.values())).fleet
    files = {"index.bob": _text(index_display(fleet, screens))}
    for screen in screens:
        files[f"{screen.file_stem}.bob"] = _text(ioc_display(fleet, screen))
    return files


def index_display(fleet: str, screens: list[IocScreen]) -> ET.Element:
    columns = max(len(s.health) for s in screens) if screens else 0
    width = 2 * MARGIN + 160 + 90 + columns * HEALTH_W + 110
    root = _display(f"{fleet}: IOCs", width, 2 * MARGIN + (len(screens) + 2) * (ROW_H + 4))
    _widget(root, "label", "title", MARGIN, MARGIN, width - 2 * MARGIN, ROW_H, text=f"Fleet {fleet}")
    y = MARGIN + ROW_H + 4
    titles = screens[0].health if screens else ()
    for col, (title, _) in enumerate(titles):
        _widget(root, "label", f"col_{col}", MARGIN + 250 + col * HEALTH_W, y, HEALTH_W - 4, ROW_H, text=title)
    for row, screen in enumerate(screens):
        y = MARGIN + (row + 2) * (ROW_H + 4)
        _widget(root, "label", f"ioc_{row}", MARGIN, y, 156, ROW_H, text=screen.ioc)
        _widget(root, "label", f"runtime_{row}", MARGIN + 160, y, 86, ROW_H, text=screen.runtime)
        for col, (_, pv) in enumerate(screen.health):
            _widget(root, "textupdate", f"health_{row}_{col}", MARGIN + 250 + col * HEALTH_W, y, HEALTH_W - 4,
                    ROW_H, pv_name=pv)
        button = _widget(root, "action_button", f"open_{row}", MARGIN + 250 + columns * HEALTH_W, y, 100, ROW_H,
                         text="Open")
        _open_action(button, f"{screen.file_stem}.bob", f"Open {screen.ioc}")
    return root


def ioc_display(fleet: str, screen: IocScreen) -> ET.Element:
    heights = [PLOT_H if r.widget == "plot" else ROW_H for r in screen.rows]
    width = 2 * MARGIN + LABEL_W + VALUE_W + 60
    root = _display(f"{fleet}: {screen.ioc}", width, 2 * MARGIN + ROW_H * 2 + sum(h + 4 for h in heights) + 40)
    title = f"{screen.ioc} ({screen.runtime}, prefix {screen.prefix}" + (
        f", iocStats {screen.iocstats})" if screen.iocstats else ")")
    _widget(root, "label", "title", MARGIN, MARGIN, width - 2 * MARGIN, ROW_H, text=title)
    y = MARGIN + ROW_H + 8
    group = None
    for index, (row, height) in enumerate(zip(screen.rows, heights)):
        if row.group != group:
            group = row.group
            _widget(root, "label", f"group_{index}", MARGIN, y, width - 2 * MARGIN, ROW_H, text=group)
            y += ROW_H + 4
        _widget(root, "label", f"label_{index}", MARGIN, y, LABEL_W - 4, ROW_H, text=row.label,
                tooltip=row.pv)
        kind = WIDGET_OF[row.widget]
        if kind == "xyplot":
            plot = _widget(root, kind, f"pv_{index}", MARGIN + LABEL_W, y, VALUE_W + 50, height)
            trace = ET.SubElement(ET.SubElement(plot, "traces"), "trace")
            ET.SubElement(trace, "name").text = row.label
            ET.SubElement(trace, "x_pv").text = ""
            ET.SubElement(trace, "y_pv").text = row.pv
        else:
            extra = {"items_from_pv": "true"} if kind == "combo" else {}
            if row.widget == "text":
                extra["format"] = "6"  # Phoebus FormatOption STRING: a char waveform as text
            if row.units:
                extra["show_units"] = "true"
            _widget(root, kind, f"pv_{index}", MARGIN + LABEL_W, y, VALUE_W, height, pv_name=row.pv, **extra)
        y += height + 4
    return root


def _display(name: str, width: int, height: int) -> ET.Element:
    root = ET.Element("display", version=VERSIONS["display"])
    ET.SubElement(root, "name").text = name
    ET.SubElement(root, "width").text = str(width)
    ET.SubElement(root, "height").text = str(height)
    return root


def _widget(parent: ET.Element, kind: str, name: str, x: int, y: int, width: int, height: int,
            **props: str) -> ET.Element:
    widget = ET.SubElement(parent, "widget", type=kind, version=VERSIONS[kind])
    ET.SubElement(widget, "name").text = name
    for key, value in props.items():
        if key in ("pv_name", "text", "tooltip"):
            ET.SubElement(widget, key).text = value
    for key, value in (("x", x), ("y", y), ("width", width), ("height", height)):
        ET.SubElement(widget, key).text = str(value)
    for key, value in props.items():
        if key not in ("pv_name", "text", "tooltip"):
            ET.SubElement(widget, key).text = value
    return widget


def _open_action(button: ET.Element, file: str, description: str) -> None:
    action = ET.SubElement(ET.SubElement(button, "actions"), "action", type="open_display")
    ET.SubElement(action, "file").text = file
    ET.SubElement(action, "target").text = "tab"
    ET.SubElement(action, "description").text = description


def _text(root: ET.Element) -> str:
    ET.indent(root, "  ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
