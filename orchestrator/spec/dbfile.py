"""Read the record names of an EPICS database (.db) before any IOC runs: macros, includes, aliases.

A small reader of the .db grammar of EPICS base (dbLex.l / dbYacc.y) that keeps only what planning needs:
record and grecord names (with their types), aliases and includes, after macro expansion the way macLib
does it (`$(X)`, `${X}`, `$(X=default)`, nested). Definitions of the .dbd kind (menu, recordtype, device…)
are skipped. Every problem is a `DbError` carrying the file and line it is about.

No PyPI parser fits: `whatrecord` parses databases but pulls in a server stack (lark, apischema,
aiohttp) and was last released in 2023; `dbtoolspy` 0.0.2 (2022) has no include or default-macro
support. This one is pure, small and property-tested (tests/unit/test_dbfile.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

# The record types of EPICS base 7 (stdRecords.dbd), which pythonSoftIOC loads with base.dbd.
RECORD_TYPES = frozenset((
    "aSub aai aao ai ao bi bo calc calcout compress dfanout event fanout histogram int64in int64out longin "
    "longout lsi lso mbbi mbbiDirect mbbo mbboDirect permissive printf sel seq state stringin stringout "
    "sub subArray waveform").split())
NAME_MAX = 60  # PVNAME_STRINGSZ 61 with the terminating NUL
BAD_NAME_CHARS = re.compile(r"[\s\"'.$(){}\\]")
DBD_KEYWORDS = frozenset(("menu", "recordtype", "device", "driver", "link", "registrar", "function",
                          "variable", "breaktable"))
MAX_INCLUDE_DEPTH = 16
MAX_MACRO_DEPTH = 32

_TOKEN = re.compile(r'\s+|#[^\n]*|"(?:[^"\\\n]|\\.)*"|[(){},]|[^\s(){},"#]+')


class DbError(ValueError):
    """A problem in a database file, at a line."""

    def __init__(self, file: str, line: int, problem: str, fix: str) -> None:
        self.file, self.line, self.problem, self.fix = file, line, problem, fix
        super().__init__(f"{file}:{line}: {problem} — {fix}")


@dataclass(frozen=True)
class Record:
    """One record (or alias) the database defines."""

    name: str
    type: str  # the record type; "alias" for an alias
    file: str
    line: int
    target: str = ""  # an alias's record


def expand(text: str, macros: dict[str, str], file: str, line: int, depth: int = 0) -> str:
    """`text` with every `$(X)`, `${X}` and `$(X=default)` replaced; DbError for an undefined macro."""
    if depth > MAX_MACRO_DEPTH:
        raise DbError(file, line, "macros expand into themselves", "break the cycle in the macro values")
    out, i = [], 0
    while i < len(text):
        start = text.find("$", i)
        if start < 0 or start + 1 >= len(text) or text[start + 1] not in "({":
            out.append(text[i:] if start < 0 else text[i:start + 1])
            i = len(text) if start < 0 else start + 1
            continue
        out.append(text[i:start])
        close = ")" if text[start + 1] == "(" else "}"
        end, level = start + 2, 1
        while end < len(text):
            if text[end] in "({":
                level += 1
            elif text[end] in ")}":
                level -= 1
                if level == 0:
                    break
            end += 1
        if end >= len(text) or text[end] != close:
            raise DbError(file, line, f"unterminated macro reference {text[start:start + 20]!r}",
                          f"close it with `{close}`")
        body = text[start + 2:end]
        name, has_default, default = body.partition("=")
        name = expand(name, macros, file, line, depth + 1)
        if not re.fullmatch(r"[A-Za-z0-9_]+", name):
            raise DbError(file, line, f"malformed macro reference {text[start:end + 1]!r}",
                          "write $(NAME) or $(NAME=default) with a name of letters, digits and _")
        if name in macros:
            out.append(expand(macros[name], macros, file, line, depth + 1))
        elif has_default:
            out.append(expand(default, macros, file, line, depth + 1))
        else:
            raise DbError(file, line, f"macro $({name}) is undefined and has no default",
                          f"add it to `macros:` (e.g. {{{name}: ...}}) or write $({name}=default) in the file")
        i = end + 1
    return "".join(out)


def tokens(text: str, file: str, macros: dict[str, str]) -> list[tuple[str, int]]:
    """(token, line) pairs after macro expansion, line by line (as dbLoadRecords reads); strings keep quotes."""
    result = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = expand(_without_comment(raw), macros, file, number)  # comments are never expanded
        pos = 0
        while pos < len(line):
            match = _TOKEN.match(line, pos)
            if match is None:  # an opening quote without its closing one
                raise DbError(file, number, "unterminated string", "close the string with \" on the same line")
            token = match.group(0)
            pos = match.end()
            if not token.isspace() and not token.startswith("#"):
                result.append((token, number))
    return result


def _without_comment(raw: str) -> str:
    """The line up to a `#` that is outside any string (backslash escapes inside strings respected)."""
    inside = escaped = False
    for index, char in enumerate(raw):
        if escaped:
            escaped = False
        elif inside and char == "\\":
            escaped = True
        elif char == '"':
            inside = not inside
        elif char == "#" and not inside:
            return raw[:index]
    return raw


def _unquote(token: str) -> str:
    if len(token) >= 2 and token[0] == token[-1] == '"':
        return re.sub(r"\\(.)", r"\1", token[1:-1])
    return token


class _Reader:
    def __init__(self, toks: list[tuple[str, int]], file: str) -> None:
        self.toks, self.pos, self.file = toks, 0, file

    def at_end(self) -> bool:
        return self.pos >= len(self.toks)

    def line(self) -> int:
        if self.pos < len(self.toks):
            return self.toks[self.pos][1]
        return self.toks[-1][1] if self.toks else 1

    def next(self, what: str) -> str:
        if self.at_end():
            raise DbError(self.file, self.line(), f"file ends where {what} was expected", "complete the definition")
        token = self.toks[self.pos][0]
        self.pos += 1
        return token

    def expect(self, wanted: str, context: str) -> None:
        line = self.line()
        token = self.next(f"`{wanted}`")
        if token != wanted:
            raise DbError(self.file, line, f"expected `{wanted}` {context}, found {token!r}",
                          "check the brackets and commas of this definition")

    def peek(self) -> str | None:
        return None if self.at_end() else self.toks[self.pos][0]

    def skip_balanced(self) -> None:
        """Skip a `( … )` head and an optional `{ … }` body (definitions of the .dbd kind)."""
        for opening, closing in (("(", ")"), ("{", "}")):
            if self.peek() != opening:
                continue
            level, line = 0, self.line()
            while True:
                if self.at_end():
                    raise DbError(self.file, line, f"`{opening}` is never closed", f"add the matching `{closing}`")
                token = self.next(closing)
                level += token == opening
                level -= token == closing
                if level == 0:
                    break


def _name(reader: _Reader, what: str) -> tuple[str, int]:
    line = reader.line()
    token = reader.next(what)
    if token in "(){},":
        raise DbError(reader.file, line, f"expected {what}, found {token!r}", "check the definition's syntax")
    return _unquote(token), line


def _check_name(name: str, file: str, line: int) -> None:
    if not name:
        raise DbError(file, line, "empty record name", "give the record a name (check the macros it uses)")
    if len(name) > NAME_MAX:
        raise DbError(file, line, f"record name {name!r} has {len(name)} characters",
                      f"keep record names within {NAME_MAX} characters (EPICS PVNAME_STRINGSZ)")
    bad = BAD_NAME_CHARS.search(name)
    if bad:
        raise DbError(file, line, f"record name {name!r} contains {bad.group(0)!r}",
                      "use letters, digits and _ - : ; [ ] < > only in record names")


def parse(text: str, file: str, macros: dict[str, str],
          read_include: Callable[[str, str, int], tuple[str, str]] | None = None,
          depth: int = 0, check: bool = True) -> list[Record]:
    """The records and aliases of a database text, in file order.

    `read_include(name, from_file, line)` returns (file, text) of an included file; without it an
    `include` is an error.
    """
    reader = _Reader(tokens(text, file, macros), file)
    records: list[Record] = []
    while not reader.at_end():
        line = reader.line()
        keyword = reader.next("a definition")
        if keyword in ("record", "grecord"):
            records += _record(reader, line)
        elif keyword == "alias":
            reader.expect("(", "after alias")
            target, _ = _name(reader, "the record name")
            reader.expect(",", "between the record and its alias")
            alias, aline = _name(reader, "the alias name")
            reader.expect(")", "after the alias")
            _check_name(alias, file, aline)
            records.append(Record(alias, "alias", file, aline, target))
        elif keyword == "include":
            name, iline = _name(reader, "the file to include")
            if read_include is None:
                raise DbError(file, iline, f"include {name!r} cannot be followed here", "inline the file")
            if depth >= MAX_INCLUDE_DEPTH:
                raise DbError(file, iline, f"includes nest deeper than {MAX_INCLUDE_DEPTH}", "remove the include cycle")
            included, content = read_include(name, file, iline)
            records += parse(content, included, macros, read_include, depth + 1, check=False)
        elif keyword in ("path", "addpath"):
            _name(reader, "a path")
        elif keyword in DBD_KEYWORDS:
            reader.skip_balanced()
        else:
            raise DbError(file, line, f"unexpected {keyword!r}",
                          "a database holds record, grecord, alias and include definitions")
    if check:
        _check_definitions(records)
    return records


def _check_definitions(records: list[Record]) -> None:
    """What EPICS base refuses across definitions: a record redefined with another type, `record(*, X)`
    before X exists, an alias named like a record or aliasing two records, an alias of no record."""
    types: dict[str, str] = {}  # record name -> type
    aliases: dict[str, str] = {}  # alias -> record
    for rec in records:
        if rec.type == "alias":
            if rec.name in types:
                raise DbError(rec.file, rec.line, f"alias {rec.name!r} is already a record name", "rename the alias")
            if aliases.get(rec.name, rec.target) != rec.target:
                raise DbError(rec.file, rec.line, f"alias {rec.name!r} already names {aliases[rec.name]!r}",
                              "give each alias one record")
            if rec.target not in types:
                raise DbError(rec.file, rec.line, f"alias of {rec.target!r}, which is not defined before it",
                              "define the record first")
            aliases[rec.name] = rec.target
            continue
        known = types.get(rec.name)
        if rec.type == "*":
            if known is None:
                raise DbError(rec.file, rec.line, f"record(*, {rec.name!r}) before {rec.name!r} is defined",
                              "define the record with its type first")
            continue
        if rec.name in aliases:
            raise DbError(rec.file, rec.line, f"record {rec.name!r} is already an alias", "rename the record")
        if known is not None and known != rec.type:
            raise DbError(rec.file, rec.line, f"record {rec.name!r} is already a {known}, not a {rec.type}",
                          "keep one type per record name (a second definition only adds fields)")
        types[rec.name] = rec.type


def _record(reader: _Reader, line: int) -> list[Record]:
    file = reader.file
    reader.expect("(", "after record")
    if reader.peek() == "*":  # EPICS base: "Invalid character '*'"; only the quoted form names "the same"
        raise DbError(file, reader.line(), "record(*, ...): an unquoted * is not valid in a database",
                      'write record("*", NAME) to add fields to a record defined earlier')
    rtype, tline = _name(reader, "the record type")
    reader.expect(",", "between the record type and name")
    name, nline = _name(reader, "the record name")
    reader.expect(")", "after the record name")
    if rtype not in RECORD_TYPES and rtype != "*":
        close = sorted(RECORD_TYPES, key=lambda t: _distance(t.lower(), rtype.lower()))[0]
        raise DbError(file, tline, f"record type {rtype!r} is not in this runtime (EPICS base record types)",
                      f"did you mean `{close}`? (softioc serves the record types of EPICS base only)")
    _check_name(name, file, nline)
    out = [Record(name, rtype, file, nline)]
    if reader.peek() != "{":
        return out
    reader.next("{")
    while True:
        item_line = reader.line()
        item = reader.next("`}` closing the record")
        if item == "}":
            return out
        if item in ("field", "info"):
            reader.expect("(", f"after {item}")
            _name(reader, f"the {item} name")
            reader.expect(",", f"between the {item} name and value")
            value, _ = _name(reader, f"the {item} value")
            reader.expect(")", f"after the {item} value")
        elif item == "alias":
            reader.expect("(", "after alias")
            alias, aline = _name(reader, "the alias name")
            reader.expect(")", "after the alias")
            _check_name(alias, file, aline)
            out.append(Record(alias, "alias", file, aline, name))
        else:
            raise DbError(file, item_line, f"unexpected {item!r} in record {name!r}",
                          "a record body holds field(NAME, \"value\"), info(...) and alias(...) only")


def _distance(a: str, b: str) -> int:
    import difflib

    return -int(difflib.SequenceMatcher(None, a, b).ratio() * 1000)


def load(path: Path, macros: dict[str, str], root: Path | None = None,
         seen: list[tuple[str, str]] | None = None) -> list[Record]:
    """The records of the database file `path`; includes are looked up next to the including file and in
    `root` (the top file's folder, which is what the IOC sees), and must stay inside `root`. `seen`, if
    given, receives (file, text) of every file read (for a content digest)."""
    seen = [] if seen is None else seen
    root = (root or path.parent).resolve()
    top = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DbError(top, 0, "file not found", "check the path (relative to the fleet file)")
    except (OSError, UnicodeDecodeError) as exc:
        raise DbError(top, 0, f"cannot read it ({exc.__class__.__name__})", "make it a readable UTF-8 text file")

    def read_include(name: str, from_file: str, line: int) -> tuple[str, str]:
        for folder in (Path(from_file).parent, root):
            candidate = (folder / name).resolve()
            if candidate.is_file():
                if root not in (candidate, *candidate.parents):
                    raise DbError(from_file, line, f"include {name!r} lies outside {root}",
                                  "keep included files in the folder of the database (it is what the IOC sees)")
                try:
                    seen.append((str(candidate), candidate.read_text(encoding="utf-8")))
                    return seen[-1]
                except (OSError, UnicodeDecodeError) as exc:
                    raise DbError(from_file, line, f"cannot read include {name!r} ({exc.__class__.__name__})",
                                  "make it a readable UTF-8 text file")
        raise DbError(from_file, line, f"include {name!r} not found", f"put it next to {Path(from_file).name}")

    seen.append((top, text))
    return parse(text, top, macros, read_include)
