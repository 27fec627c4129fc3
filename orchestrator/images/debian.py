"""The Debian base: a minimal bookworm root filesystem with python3, made by mmdebstrap.

Used when python:3.11-slim cannot be pulled (no registry) or the build is offline. The apt mirror and
any apt proxy come from the host's own apt configuration, so the bootstrap goes wherever the host's
`apt-get` goes. Bookworm's python3 is 3.11, the Python the wheelhouse targets.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Mapping, Sequence

from orchestrator.images import ImageBuildError
from orchestrator.images.inputs import digest

SUITE = "bookworm"
VARIANT = "minbase"
PACKAGES = ("python3",)
DEFAULT_MIRROR = "http://deb.debian.org/debian"
MERGED_USR_HOOKS = "/usr/share/mmdebstrap/hooks/merged-usr"
# Documentation and translations are half of minbase+python3; IOCs never read them.
DPKG_OPTIONS = (
    "path-exclude=/usr/share/man/*", "path-exclude=/usr/share/locale/*", "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/doc/*", "path-include=/usr/share/doc/*/copyright",
)
# apt settings that decide how the host reaches its mirror; everything else stays mmdebstrap's.
_PASSED_APT_OPTIONS = re.compile(
    r"^Acquire::(?:(?:http|https|ftp)::Proxy(?:::[^ ]+)?|Check-Valid-Until|Check-Date|Retries) ")
BOOTSTRAP_TIMEOUT_S = 1800
IMAGE_CHANGES = ('ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
                 'ENV LANG=C.UTF-8', 'CMD ["python3"]')


def base_tag() -> str:
    """`iocfleet/base:bookworm-<12 hex>`, a digest of the recipe (not of the mirror it came from)."""
    recipe = [("suite", SUITE.encode()), ("variant", VARIANT.encode()),
              ("packages", " ".join(PACKAGES).encode()), ("dpkg", "\n".join(DPKG_OPTIONS).encode()),
              ("changes", "\n".join(IMAGE_CHANGES).encode()), ("hooks", b"merged-usr")]
    from orchestrator.images.inputs import namespace

    return f"{namespace()}/base:{SUITE}-{digest(recipe)[:12]}"


def mirror_lines(sources: Mapping[str, str], suite: str = SUITE) -> list[str]:
    """One-line apt sources (`deb URI SUITE COMPONENTS`) for `suite` and its -updates/-security
    companions, from the texts of the host's sources.list and *.sources files (deb822)."""
    lines: list[str] = []
    for name, text in sorted(sources.items()):
        entries = _deb822_entries(text) if name.endswith(".sources") else _one_line_entries(text)
        for uris, suites, components in entries:
            for uri in uris:
                for s in suites:
                    if s == suite or s.startswith(suite + "-"):
                        line = f"deb {uri} {s} {' '.join(components or ['main'])}"
                        if line not in lines:
                            lines.append(line)
    # mmdebstrap takes the first line as the main mirror: put the plain suite first.
    lines.sort(key=lambda line: line.split()[2] != suite)
    return lines or [f"deb {DEFAULT_MIRROR} {suite} main"]


def _deb822_entries(text: str) -> list[tuple[list[str], list[str], list[str]]]:
    entries = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in stanza.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0] in " \t" and key:
                fields[key] += " " + line.strip()
                continue
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        entries.append((fields.get("uris", "").split(), fields.get("suites", "").split(),
                        fields.get("components", "").split()))
    return entries


def _one_line_entries(text: str) -> list[tuple[list[str], list[str], list[str]]]:
    entries = []
    for line in text.splitlines():
        line = re.sub(r"\[[^\]]*\]", "", line.split("#", 1)[0]).split()
        if len(line) >= 3 and line[0] == "deb":
            entries.append(([line[1]], [line[2]], line[3:]))
    return entries


def read_host_sources(apt_dir: Path = Path("/etc/apt")) -> dict[str, str]:
    """The texts of the host's apt source files, keyed by path."""
    paths = [apt_dir / "sources.list"] + sorted((apt_dir / "sources.list.d").glob("*.list")) \
        + sorted((apt_dir / "sources.list.d").glob("*.sources"))
    return {str(p): p.read_text(errors="replace") for p in paths if p.is_file()}


def apt_options(config_dump: str) -> list[str]:
    """The proxy and validity settings of `apt-config dump` output, as mmdebstrap --aptopt values."""
    return [line.rstrip(";") for line in config_dump.splitlines() if _PASSED_APT_OPTIONS.match(line)]


def host_apt_options(run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> list[str]:
    if shutil.which("apt-config") is None:
        return []
    result = run(["apt-config", "dump"], capture_output=True, text=True, timeout=30)
    return apt_options(result.stdout) if result.returncode == 0 else []


def mmdebstrap_argv(tarball: Path, mirrors: Sequence[str], aptopts: Sequence[str],
                    hooks_available: bool = True) -> list[str]:
    argv = ["mmdebstrap", f"--variant={VARIANT}", f"--include={','.join(PACKAGES)}"]
    if hooks_available:
        argv.append(f"--hook-dir={MERGED_USR_HOOKS}")  # merged /usr without the usrmerge+perl chain
    argv += [f"--dpkgopt={opt}" for opt in DPKG_OPTIONS]
    argv += [f"--aptopt={opt}" for opt in aptopts]
    return argv + [SUITE, str(tarball), *mirrors]


def bootstrap(tarball: Path, mirrors: Sequence[str], aptopts: Sequence[str],
              log: Callable[[str], None] = lambda line: None,
              run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> None:
    """Write a bookworm minbase+python3 root filesystem tarball with mmdebstrap."""
    if shutil.which("mmdebstrap") is None:
        raise ImageBuildError("base step: mmdebstrap is not installed, and the default base "
                              "python:3.11-slim could not be pulled",
                              fix="`apt-get install -y mmdebstrap` (Debian/Ubuntu), or pass "
                                  "--base-image with a local image that has python3.11")
    argv = mmdebstrap_argv(tarball, mirrors, aptopts, Path(MERGED_USR_HOOKS).is_dir())
    log(f"bootstrapping {SUITE} {VARIANT}+{','.join(PACKAGES)} from {mirrors[0].split()[1]}")
    try:
        result = run(argv, capture_output=True, text=True, timeout=BOOTSTRAP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ImageBuildError(f"base step: mmdebstrap took over {BOOTSTRAP_TIMEOUT_S} s",
                              fix="check the apt mirror is reachable (`apt-get update`)") from None
    if result.returncode != 0:
        tail = " | ".join(result.stderr.strip().splitlines()[-4:])
        fix = "check `apt-get update` works on this host; pass --mirror with a reachable Debian mirror"
        if "unshare" in result.stderr or "Operation not permitted" in result.stderr:
            fix = "run as root, or enable unprivileged user namespaces and install uidmap"
        elif "keyring" in result.stderr or "NO_PUBKEY" in result.stderr:
            fix = "`apt-get install -y debian-archive-keyring`"
        raise ImageBuildError(f"base step: mmdebstrap failed: {tail}", fix=fix)
