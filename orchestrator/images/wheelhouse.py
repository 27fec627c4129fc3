"""The wheelhouse: a directory of the exact wheels the images install, prepared on the host.

`docker build` runs without network, so every Python package is downloaded here first with
`pip download --only-binary=:all:` for CPython 3.11 on manylinux x86_64 (the Python of both bases).
A wheel already present is never downloaded again; an offline host can be handed a copied directory.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Callable, Sequence

from orchestrator.images import ImageBuildError
from orchestrator.images.inputs import canonical

PYTHON_VERSION = "3.11"
ABI = "cp311"
# glibc of Debian bookworm is 2.36: any manylinux up to 2_36 fits; these are the tags wheels use.
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64", "manylinux_2_34_x86_64")
DOWNLOAD_TIMEOUT_S = 900

Pin = tuple[str, str]


def wheel_key(filename: str) -> tuple[str, str] | None:
    """(canonical name, version) of a wheel file name, or None for anything else."""
    if not filename.endswith(".whl"):
        return None
    parts = filename[:-4].split("-")
    if len(parts) < 5:
        return None
    return canonical(parts[0]), parts[1]


def wheels_for(directory: Path, pins: Sequence[Pin]) -> tuple[list[Path], list[Pin]]:
    """The wheel files in `directory` matching `pins`, and the pins that have none."""
    present: dict[tuple[str, str], Path] = {}
    if directory.is_dir():
        for path in sorted(directory.iterdir()):
            key = wheel_key(path.name)
            if key is not None:
                present.setdefault(key, path)
    found, missing = [], []
    for name, version in pins:
        path = present.get((canonical(name), version))
        if path is None:
            missing.append((name, version))
        else:
            found.append(path)
    return found, missing


def download_argv(dest: Path, pins: Sequence[Pin], python: str = sys.executable) -> list[str]:
    """The pip command that fetches `pins` as wheels for the image's Python, without installing."""
    argv = [python, "-m", "pip", "download", "--disable-pip-version-check", "--no-deps",
            "--only-binary=:all:", "--python-version", PYTHON_VERSION, "--implementation", "cp",
            "--abi", ABI, "--abi", "abi3", "--abi", "none"]
    for platform in PLATFORMS:
        argv += ["--platform", platform]
    argv += ["--platform", "any", "--dest", str(dest)]
    return argv + [f"{name}=={version}" for name, version in pins]


def ensure_wheels(dest: Path, pins: Sequence[Pin], offline: bool,
                  log: Callable[[str], None] = lambda line: None,
                  run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> list[Path]:
    """Make sure `dest` holds a wheel for every pin, downloading only the missing ones.

    With `offline`, nothing is downloaded: a missing wheel is an error that says how to fetch it on
    a connected machine.
    """
    found, missing = wheels_for(dest, pins)
    if not missing:
        return found
    names = " ".join(f"{n}=={v}" for n, v in missing)
    if offline:
        raise ImageBuildError(
            f"wheelhouse step: {len(missing)} wheel(s) missing from {dest}: {names}",
            fix=("on a connected machine run `" + " ".join(download_argv(Path("wheels"), missing, "python3"))
                 + f"` and copy wheels/* into {dest}, or build without --offline"))
    dest.mkdir(parents=True, exist_ok=True)
    log(f"downloading {len(missing)} wheel(s) into {dest}: {names}")
    argv = download_argv(dest, missing)
    try:
        result = run(argv, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ImageBuildError(f"wheelhouse step: pip download took over {DOWNLOAD_TIMEOUT_S} s",
                              fix="check the package index is reachable (pip config list), "
                                  "or prepare the wheelhouse elsewhere (docs/air-gapped.md)") from None
    if result.returncode != 0:
        tail = " | ".join((result.stderr or result.stdout).strip().splitlines()[-3:])
        raise ImageBuildError(f"wheelhouse step: pip download failed: {tail}",
                              fix="check the package index is reachable (pip config list / "
                                  "PIP_INDEX_URL), or pass a prepared --wheelhouse (docs/air-gapped.md)")
    found, missing = wheels_for(dest, pins)
    if missing:
        raise ImageBuildError(f"wheelhouse step: pip reported success but no wheel for "
                              f"{' '.join(f'{n}=={v}' for n, v in missing)} is in {dest}",
                              fix="remove the directory and build again")
    return found
