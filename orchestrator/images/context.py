"""The docker build context of one IOC image, assembled in a scratch directory.

Each runtime folder keeps only what is specific to it; the shared `common/iocfleet_ioc` package and
the wheels are copied in here, so the Dockerfile sees one flat, self-contained directory.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterable

_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")


def assemble(dest: Path, root: Path, runtime: str, wheels: Iterable[Path]) -> Path:
    """Fill `dest` with Dockerfile, ioc.py, requirements.txt, iocfleet_ioc/ and wheels/; return it."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("Dockerfile", "ioc.py", "requirements.txt"):
        shutil.copy2(root / runtime / name, dest / name)
    shutil.copytree(root / "common" / "iocfleet_ioc", dest / "iocfleet_ioc", ignore=_IGNORE)
    wheel_dir = dest / "wheels"
    wheel_dir.mkdir()
    for wheel in wheels:
        _link_or_copy(wheel, wheel_dir / wheel.name)
    return dest


def _link_or_copy(src: Path, dst: Path) -> None:
    # Wheels are large and immutable: a hard link saves copying them on every cold build.
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
