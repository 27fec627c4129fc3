"""The planner's .db reader against EPICS base itself: for generated databases, the record and alias names
it plans are exactly those pythonSoftIOC's dbLoadDatabase defines (`dbl`), and what it refuses EPICS
refuses too. (The reader is deliberately stricter on one point: an undefined macro without a default is
an error even in a field value, where EPICS only warns; the generator keeps such macros to names.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.spec.dbfile import DbError, load

pytestmark = [pytest.mark.slow]

LOAD_AND_LIST = r"""
import sys
from softioc import softioc
try:
    softioc.dbLoadDatabase(sys.argv[1], sys.argv[2], sys.argv[3] or None)
except AssertionError:
    print("FAILED", flush=True)
    sys.exit(0)
print("LOADED", flush=True)
softioc.dbl()
"""

CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-:"
part = st.text(CHARS, min_size=1, max_size=8)
# a name piece: literal text, a defined macro, or a macro with a default
piece = st.one_of(part, st.sampled_from(["$(P)", "${R}", "$(D=dflt)", "$(P=ignored)"]))
name = st.lists(piece, min_size=1, max_size=3).map("".join)
rtype = st.one_of(st.sampled_from(["ai", "ao", "calc", "waveform", "bi", "stringin", "longout", "mbbo"]),
                  st.sampled_from(["foo", "motor"]))  # types EPICS base does not have
field_value = st.text(st.characters(min_codepoint=32, max_codepoint=126, blacklist_characters='$"\\'), max_size=12)


@st.composite
def databases(draw):
    lines, used = [], []
    for index in range(draw(st.integers(1, 5))):
        keyword = draw(st.sampled_from(["record", "grecord"]))
        fresh = f"{draw(name)}{index}"
        # sometimes a name used before (same or other type: a merge or a clash), or "*" (EPICS: "the same";
        # unquoted, EPICS base refuses it: "Invalid character '*'", found by this test in CI)
        again = draw(st.sampled_from(used)) if used and draw(st.booleans()) else None
        kind = draw(st.one_of(rtype, st.sampled_from(["*", '"*"']))) if again else draw(rtype)
        lines.append(f'{keyword}({kind}, "{again or fresh}") {{')
        used.append(again or fresh)
        lines += [f'  field(DESC, "{draw(field_value)}")  # a comment' for _ in range(draw(st.integers(0, 2)))]
        lines += [f'  alias("{draw(name)}al{index}")' for _ in range(draw(st.integers(0, 1)))]
        lines.append("}")
        if draw(st.integers(0, 3)) == 0:  # a top-level alias, of a known record or of an unknown one
            target = draw(st.sampled_from(used)) if draw(st.booleans()) else draw(name)
            alias = draw(st.sampled_from(used)) if draw(st.integers(0, 4)) == 0 else f"{draw(name)}tl{index}"
            lines.append(f'alias("{target}", "{alias}")')
    return "\n".join(lines) + "\n"


def epics_names(path: Path, macros: str) -> set[str] | None:
    done = subprocess.run([sys.executable, "-c", LOAD_AND_LIST, path.name, str(path.parent), macros],
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "EPICS_CA_AUTO_ADDR_LIST": "NO",
                               "EPICS_CA_ADDR_LIST": "127.0.0.1", "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
                               "EPICS_CAS_BEACON_ADDR_LIST": "127.0.0.1"})
    lines = done.stdout.splitlines()
    assert lines and lines[0] in ("LOADED", "FAILED"), done.stdout + done.stderr
    return None if lines[0] == "FAILED" else set(lines[1:])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(databases())
def test_reader_and_epics_base_agree_on_names_and_refusals(tmp_path, text):
    path = tmp_path / "gen.db"
    path.write_text(text)
    macros = {"P": "BL7:", "R": "M1:"}
    try:
        ours = {r.name for r in load(path, macros)}
    except DbError:
        ours = None
    theirs = epics_names(path, ",".join(f"{k}={v}" for k, v in macros.items()))
    assert ours == theirs, text
