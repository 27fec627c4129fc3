"""The inputs of an IOC image and the tags derived from them.

An image is identified by what went into it: the runtime folder (Dockerfile, program, requirements
lock, hence the exact wheel list), the shared `common/` code, the installer pin and the base image id.
`source_tag` leaves the base out so a plan can name the image without asking Docker; `content_tag`
adds the base id, so a changed base means a rebuild.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Iterable

# Bump when orchestrator/images/build.py changes how it builds (build args, context layout).
RECIPE_VERSION = "2"  # 2: OCI labels (images/labels.py)
REPOSITORY = "iocfleet/ioc-{runtime}"
_SKIP_PARTS = {"__pycache__", ".pytest_cache"}
_REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)$")


def digest(parts: Iterable[tuple[str, bytes]]) -> str:
    """A sha256 hex digest of named byte strings; names and lengths are hashed too, so no two
    different sets of parts can collide by concatenation."""
    h = hashlib.sha256()
    for name, data in parts:
        encoded = name.encode()
        h.update(len(encoded).to_bytes(4, "big") + encoded)
        h.update(len(data).to_bytes(8, "big") + data)
    return h.hexdigest()


def source_files(root: Path, runtime: str) -> list[tuple[str, bytes]]:
    """The files of `ioc_images/` that go into one runtime's image, sorted, as (relative path, bytes)."""
    found = []
    for folder in (root / runtime, root / "common"):
        if not folder.is_dir():
            continue
        for path in folder.rglob("*"):
            rel = path.relative_to(root)
            if path.is_file() and not _SKIP_PARTS & set(rel.parts) and path.suffix != ".pyc":
                found.append((rel.as_posix(), path.read_bytes()))
    return sorted(found)


def source_digest(root: Path, runtime: str) -> str:
    return digest([("recipe", RECIPE_VERSION.encode())] + source_files(root, runtime))


def namespace() -> str:
    """The image namespace: `iocfleet`, or $IOCFLEET_IMAGE_NAMESPACE (tests use a fresh one to make every
    iocfleet image "missing" without touching the host's images)."""
    import os

    return os.environ.get("IOCFLEET_IMAGE_NAMESPACE") or "iocfleet"


def repository(runtime: str) -> str:
    name = REPOSITORY.format(runtime=runtime)
    return name.replace("iocfleet/", namespace() + "/", 1)


def source_tag(root: Path, runtime: str) -> str:
    """`iocfleet/ioc-<runtime>:<12 hex>`: the image of this source, on whichever base built it last."""
    return f"{repository(runtime)}:{source_digest(root, runtime)[:12]}"


def content_tag(root: Path, runtime: str, base_id: str) -> str:
    """`iocfleet/ioc-<runtime>:<source 12 hex>-<base 12 hex>`: one exact set of inputs."""
    base_hex = base_id.split(":", 1)[-1]
    return f"{source_tag(root, runtime)}-{base_hex[:12]}"


def requirements(path: Path) -> list[tuple[str, str]]:
    """The (name, version) pins of a lock file; anything but `name==version` lines is refused."""
    pins = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = _REQUIREMENT.fullmatch(line)
        if not match:
            raise ValueError(f"{path}:{number}: {line!r} is not an exact pin (name==version)")
        pins.append((match.group(1), match.group(2)))
    return pins


def canonical(name: str) -> str:
    """The PEP 503 normal form of a distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()
