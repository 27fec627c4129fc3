"""The .db reader: record names, aliases, includes and macros as EPICS base reads them; errors at FILE:LINE."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.spec.dbfile import RECORD_TYPES, DbError, expand, load, parse

NAME_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-:;[]<>"
names = st.text(NAME_CHARS, min_size=1, max_size=30)
macro_names = st.from_regex(r"[A-Z][A-Z0-9_]{0,6}", fullmatch=True)
# field values: anything printable on one line, quotes and backslashes escaped as in a .db file
values = st.text(st.characters(min_codepoint=32, max_codepoint=126, blacklist_characters="$"), max_size=20)


def quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(sorted(RECORD_TYPES)), names, st.lists(values, max_size=3)),
                min_size=1, max_size=8, unique_by=lambda r: r[1]),
       st.booleans())
def test_every_record_is_found_in_order_whatever_its_fields_hold(records, grecord):
    text = ""
    for rtype, name, fields in records:
        text += f'{"grecord" if grecord else "record"}({rtype}, {quoted(name)}) {{\n'
        text += "".join(f"    field(DESC, {quoted(v)})  # {v}\n" for v in fields)
        text += "}\n"
    found = parse(text, "x.db", {})
    assert [(r.type, r.name) for r in found] == [(t, n) for t, n, _ in records]


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(macro_names, st.text(NAME_CHARS, max_size=8), min_size=1, max_size=4), names, st.data())
def test_macros_expand_like_maclib(macros, tail, data):
    used = data.draw(st.lists(st.sampled_from(sorted(macros)), min_size=1, max_size=3))
    braces = data.draw(st.booleans())
    ref = (lambda m: "${" + m + "}") if braces else (lambda m: "$(" + m + ")")
    name = "".join(ref(m) for m in used) + tail
    expected = "".join(macros[m] for m in used) + tail
    found = parse(f'record(ai, "{name}")\n', "x.db", macros)
    assert [r.name for r in found] == [expected]


@given(st.text(st.characters(blacklist_characters="$"), max_size=50))
def test_text_without_macros_is_unchanged(text):
    assert expand(text, {"A": "x"}, "x.db", 1) == text


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=20), macro_names)
def test_an_undefined_macro_is_reported_at_its_line(blank_lines, macro):
    text = 'record(ai, "OK")\n' + "\n" * blank_lines + f'record(ai, "$({macro})X")\n'
    with pytest.raises(DbError) as err:
        parse(text, "m.db", {})
    assert err.value.line == blank_lines + 2 and f"$({macro})" in str(err.value)


def test_defaults_nested_macros_and_aliases():
    text = ('record(calc, "$(P=BL:)$(R)SUM") {\n  field(INPA, "$(P=BL:)IN CP")\n  alias("$(P=BL:)TOTAL")\n}\n'
            'alias("$(P=BL:)$(R)SUM", "$(A=$(R)ALT)")\n')
    found = parse(text, "x.db", {"R": "M1:"})
    assert [(r.name, r.type) for r in found] == [("BL:M1:SUM", "calc"), ("BL:TOTAL", "alias"), ("M1:ALT", "alias")]


@pytest.mark.parametrize("text,line,words", [
    ('record(ai, "A")\nrecord(foo, "B")\n', 2, "record type 'foo'"),
    ('record(ai "A")\n', 1, "expected `,`"),
    ('record(ai, "A") {\n field(VAL, "1")\n', 2, "file ends"),
    ('record(ai, "' + "N" * 61 + '")\n', 1, "61 characters"),
    ('record(ai, "A.B")\n', 1, "contains '.'"),
    ('record(ai, "A") {\n  bogus(X, "1")\n}\n', 2, "unexpected 'bogus'"),
    ('\n\nrecord(ai, "A) {\n', 3, "unterminated string"),
    ('\nrecord(ai, "$(P")\n', 2, "malformed macro reference"),
    ('\nrecord(ai, $(P\n', 2, "unterminated macro"),
    ('record(ai, "$(A)")\n', 1, "macros expand into themselves"),
])
def test_bad_databases_name_the_line(text, line, words):
    with pytest.raises(DbError) as err:
        parse(text, "bad.db", {"A": "$(A)"} if "$(A)" in text else {})
    assert err.value.line == line and words in str(err.value), str(err.value)
    assert str(err.value).startswith(f"bad.db:{line}: ")


def test_dbd_definitions_and_comments_with_undefined_macros_are_skipped():
    text = ('# $(NOT_DEFINED) in a comment\nmenu(x) {\n choice(a, "b")\n}\n'
            'record(ai, "A") # $(ALSO_NOT)\n')
    assert [r.name for r in parse(text, "x.db", {})] == ["A"]


def test_includes_are_followed_and_must_stay_in_the_folder(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "top.db").write_text('include "sub/inner.db"\nrecord(ao, "$(P)TOP")\n')
    (tmp_path / "sub" / "inner.db").write_text('record(bo, "$(P)INNER")\n')
    assert [r.name for r in load(tmp_path / "top.db", {"P": "X:"})] == ["X:INNER", "X:TOP"]
    (tmp_path / "sub" / "escape.db").write_text('include "../../outside.db"\n')
    (tmp_path.parent / "outside.db").write_text('record(ai, "O")\n')
    with pytest.raises(DbError) as err:
        load(tmp_path / "sub" / "escape.db", {}, root=tmp_path)
    assert "outside" in str(err.value) and err.value.line == 1
    with pytest.raises(DbError) as err:
        load(tmp_path / "missing.db", {})
    assert "not found" in str(err.value)


def test_record_types_match_the_installed_epics_base():
    import epicscorelibs.path

    std = Path(epicscorelibs.path.base_path) / "dbd" / "stdRecords.dbd"
    if not std.exists():
        pytest.skip("epicscorelibs has no stdRecords.dbd")
    import re

    declared = set(re.findall(r'include "(\w+)Record\.dbd"', std.read_text()))
    assert declared == set(RECORD_TYPES)


@settings(max_examples=200, deadline=None)
@given(st.lists(values, min_size=1, max_size=4), macro_names)
def test_trailing_comments_are_never_expanded_whatever_the_strings_hold(fields, macro):
    text = 'record(ao, "A") {\n' + "".join(f"  field(DESC, {quoted(v)}) # $({macro})\n" for v in fields) + "}\n"
    assert [r.name for r in parse(text, "x.db", {})] == ["A"]


@pytest.mark.parametrize("text,line,words", [
    ('record(ai, "A")\nrecord(ao, "A")\n', 2, "already a ai, not a ao"),
    ('record("*", "A")\nrecord(ai, "A")\n', 1, "before 'A' is defined"),
    ('record(ai, "A")\nrecord(*, "A")\n', 2, "an unquoted * is not valid"),  # EPICS: Invalid character '*'
    ('record(ai, "A")\nrecord(ai, "B")\nalias("A", "B")\n', 3, "already a record name"),
    ('record(ai, "A")\nrecord(ai, "B")\nalias("A", "C")\nalias("B", "C")\n', 4, "already names 'A'"),
    ('alias("A", "C")\nrecord(ai, "A")\n', 1, "not defined before it"),
])
def test_definitions_epics_refuses(text, line, words):
    with pytest.raises(DbError) as err:
        parse(text, "d.db", {})
    assert err.value.line == line and words in str(err.value), str(err.value)


def test_definitions_epics_accepts():
    text = ('record(ai, "A") {\n  alias("A2")\n}\nrecord(ai, "A") {\n  field(DESC, "more")\n}\n'
            'record("*", "A")\nalias("A", "C")\nalias("A", "C")\n')
    assert sorted({r.name for r in parse(text, "d.db", {})}) == ["A", "A2", "C"]
