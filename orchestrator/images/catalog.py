"""The IOC images and programs as names and settings: where the programs are, what the images are called,
how an IOC of each runtime runs (argv, user, hardening). No engine calls: the tag is a digest of the
sources in ioc_images/, read from disk; `build` makes the images these names refer to.
"""

from __future__ import annotations

import sys
from pathlib import Path

from orchestrator.errors import UsageError
from orchestrator.images import inputs
from orchestrator.plan.identity import IOC_UID, IOC_USER

RUNTIMES = ("caproto", "softioc")
# softioc writes its generated database to a temporary file before loading it; nothing else writes.
TMPFS = {"/tmp": "rw,nosuid,nodev,noexec,size=16m,mode=1777"}


def ioc_images_root() -> Path:
    """The `ioc_images/` folder: inside the installed package first, else next to it in a checkout."""
    package_dir = Path(__file__).resolve().parent.parent  # orchestrator/
    for candidate in (package_dir / "ioc_images", package_dir.parent / "ioc_images"):
        if (candidate / "common" / "iocfleet_ioc").is_dir():
            return candidate
    raise UsageError("the IOC programs (ioc_images/) are not installed", where=str(package_dir),
                     fix="reinstall iocfleet, or run from a source checkout")


def check_runtime(runtime: str) -> None:
    if runtime not in RUNTIMES:
        raise UsageError(f"unknown IOC runtime {runtime!r}", fix=f"use one of {', '.join(RUNTIMES)}")


def program_path(runtime: str) -> Path:
    """The IOC program of a runtime, runnable on the host with the same environment as in its image."""
    check_runtime(runtime)
    return ioc_images_root() / runtime / "ioc.py"


def program_argv(runtime: str, python: str | None = None) -> list[str]:
    """The command the process backend runs for one IOC of `runtime`."""
    return [python or sys.executable, str(program_path(runtime))]


def image_tag(runtime: str) -> str:
    """The image a plan names for `runtime` (a digest of its sources; no Docker call)."""
    check_runtime(runtime)
    return inputs.source_tag(ioc_images_root(), runtime)


def container_hardening(runtime: str) -> dict:
    """docker `containers.run` keyword arguments that confine an IOC container of `runtime`.

    Both runtimes run as IOC_UID (plan.identity) with no capabilities and a read-only root filesystem; /tmp is a
    small tmpfs (softioc needs it, caproto does not but gets it for uniformity).
    """
    check_runtime(runtime)
    return {
        "user": IOC_USER,
        "read_only": True,
        "tmpfs": dict(TMPFS),
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
    }
