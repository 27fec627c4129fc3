"""Write the files of a multi-file export (displays) into a directory: all of them, or none on a problem."""

from __future__ import annotations

import os
from pathlib import Path

from orchestrator.errors import UsageError


def write_files(files: dict[str, str], directory: str | Path) -> Path:
    """Create `directory` if needed and write every file; refuse a path that is a file."""
    path = Path(directory)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{path} is a file", "-o", "give a directory for display files (it is created if missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            tmp = path / f".{name}.tmp"
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path / name)
    except OSError as exc:
        raise UsageError(f"cannot write display files: {exc.strerror}", str(path),
                         "choose a writable directory with -o DIR") from None
    return path
