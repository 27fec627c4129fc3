"""Field checkers shared by the fleet-file validators: each adds `FILE:LINE: field: problem — fix` lines."""

from __future__ import annotations

import difflib
import re

# Docker container names: [a-zA-Z0-9][a-zA-Z0-9_.-]+; we also keep them short enough for labels and
# Kubernetes object names once the fleet name is prepended.
# fullmatch, never `$`: `$` also matches before a trailing newline, so "rt\n" passed (issue 13, class 9).
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
SHOW_MAX = 40


def show(value, limit: int = SHOW_MAX) -> str:
    """`repr(value)` for a message, cut to `limit` characters: never format a whole (aliased, huge) value."""
    if isinstance(value, (list, dict)) and len(value) > 8:
        return f"<{type_name(value)} of {len(value)} items>"
    try:
        text = repr(value)
    except ValueError:  # an int too long to print
        return "<a number too long to print>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def key_text(key) -> str:
    """A mapping key as it appears in a field path: itself when plain, else its cut repr (one line)."""
    if isinstance(key, str) and len(key) <= SHOW_MAX and key.isprintable() and not any(c.isspace() for c in key):
        return key
    return show(key)


def valid_name(value) -> bool:
    return isinstance(value, str) and NAME_RE.fullmatch(value) is not None


class Problems:
    """Collects problems with the file and line they refer to."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: list[str] = []

    def add(self, line: int, field: str, problem: str, fix: str) -> None:
        self.lines.append(f"{self.source}:{line}: {field}: {problem} — {fix}")


def line_of(container, key) -> int:
    getter = getattr(container, "line_of", None)
    return getter(key) if getter else 0


def type_name(value) -> str:
    names = ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"), (list, "list"), (dict, "mapping"))
    if value is None:
        return "null"
    return next((name for kind, name in names if isinstance(value, kind)), type(value).__name__)


def unknown_keys(mapping: dict, known: tuple[str, ...], where: str, problems: Problems) -> None:
    for key in mapping:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            fix = f"did you mean `{close[0]}`?" if close else f"remove it; known keys: {', '.join(known)}"
            problems.add(line_of(mapping, key), f"{where}{key_text(key)}", "unknown key", fix)


def check_name(mapping: dict, key: str, field: str, problems: Problems, required: bool) -> str:
    value = mapping.get(key)
    line = line_of(mapping, key)
    if value is None:
        if required:
            problems.add(line, field, "missing", f"add `{key}: NAME` (letters, digits, _ . -)")
        return ""
    if not valid_name(value):
        problems.add(line, field, f"{show(value)} is not a valid {_noun(field)}",
                     "use 1-63 characters: a letter or digit, then letters, digits, _ . -")
        return ""
    return value


def _noun(field: str) -> str:
    """What a name field names: the fleet, a host, or an IOC (whose name becomes its container's)."""
    if field == "fleet":
        return "fleet name"
    if field.startswith("hosts["):
        return "host name"
    return "container name"


def check_choice(mapping: dict, key: str, field: str, choices, default: str, problems: Problems) -> str:
    value = mapping.get(key, default)
    if value not in choices:
        problems.add(line_of(mapping, key), field, f"{show(value)} is not one of {', '.join(choices)}",
                     f"use one of: {', '.join(choices)}")
        return default
    return value


def check_int(mapping: dict, key: str, field: str, default: int, low: int, high: int, problems: Problems,
         fix: str) -> int:
    value = mapping.get(key, default)
    line = line_of(mapping, key)
    from orchestrator.spec.yamlsource import Yaml11Int

    if isinstance(value, Yaml11Int):
        problems.add(line, field, f"{value} is ambiguous (YAML 1.1 reads a leading 0 as octal, `a:b` as base 60)",
                     f"write the number in plain decimal without leading zeros, `:` or `_`; {fix}")
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        problems.add(line, field, f"expected an integer, got {type_name(value)} {show(value)}", fix)
        return default
    if not low <= value <= high:
        problems.add(line, field, f"{value} is out of range {low}..{high}", fix)
        return default
    return value


