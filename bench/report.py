"""Write one benchmark's results as a section of docs/benchmarks.md, replacing only that section."""

from __future__ import annotations

import platform
import re
import time
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
HEADER = """# Benchmarks

Each section is written by one script in `bench/` (`python bench/NAME.py --write`). Numbers are from
one run on the machine named in the section; machines here are noisy, so compare the ratios measured
in the same run rather than absolute times across runs.
"""


def machine() -> str:
    import os

    return f"{platform.system()} {platform.release()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def write_section(title: str, body: str, doc: Path = DOC, context: str = "") -> None:
    """Replace (or append) the `## title` section of the benchmarks page; `context` extends the stamp line."""
    text = doc.read_text() if doc.exists() else HEADER
    stamp = time.strftime("%Y-%m-%d")
    section = f"## {title}\n\n_Measured {stamp} on {machine()}{context}._\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)
