"""The README's first command always runs (issue 15): `make demo` on a clean checkout, with Docker answering
but IOC images unobtainable, falls back to local processes, says why in one line, and reads PVs.

"Unobtainable" without breaking the machine: PATH without mmdebstrap (a shadow directory of symlinks to
everything else in its directory), a fresh IOCFLEET_IMAGE_NAMESPACE (so no iocfleet image or base is
present), and the engine cannot pull python:3.11-slim without a registry (if it could, the build would
work and the demo would run on Docker: then this test is skipped, the fallback cannot be provoked).
Everything runs in a network namespace of its own, so the demo's UDP 5064/5065 meet no other suite.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from labnet import bare_namespace

ROOT = Path(__file__).resolve().parents[2]


def path_without(tool: str, shadow: Path) -> str:
    """$PATH with every directory holding `tool` replaced by a shadow directory that holds the rest."""
    shadow.mkdir(exist_ok=True)
    out = []
    for entry in os.environ["PATH"].split(os.pathsep):
        d = Path(entry)
        if (d / tool).exists():
            for f in d.iterdir():
                if f.name != tool and not (shadow / f.name).exists():
                    (shadow / f.name).symlink_to(f)
            entry = str(shadow)
        if entry not in out:
            out.append(entry)
    return os.pathsep.join(out)


def clean_checkout(dest: Path) -> Path:
    """The tracked (and new, not ignored) files of this working tree, as a fresh clone would have them."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_symlink():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.readlink(src), dest / name)
        elif src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


@pytest.fixture
def netns():
    with bare_namespace("demo") as name:
        yield name


@pytest.mark.docker
@pytest.mark.netns
@pytest.mark.slow
def test_make_demo_without_obtainable_images_runs_on_processes_and_reads_pvs(tmp_path, netns, docker_client):
    pull = subprocess.run(["docker", "pull", "python:3.11-slim"], capture_output=True, text=True, timeout=120)
    if pull.returncode == 0:
        pytest.skip("python:3.11-slim can be pulled here: images are obtainable, nothing falls back")
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    repo = clean_checkout(tmp_path / "checkout")
    namespace = f"iocfleet-missing-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "PATH": path_without("mmdebstrap", tmp_path / "shadow"),
           "IOCFLEET_IMAGE_NAMESPACE": namespace, "XDG_STATE_HOME": str(tmp_path / "state"),
           "XDG_CACHE_HOME": str(tmp_path / "cache"), "IOCFLEET_HOST_DIR": str(tmp_path / "host"),
           "PYTHON": sys.executable}
    for key in [k for k in env if k.startswith("EPICS_") or k == "VIRTUAL_ENV"]:
        env.pop(key)
    assert subprocess.run(["sh", "-c", "command -v mmdebstrap"], env=env, capture_output=True).returncode != 0
    ns = ["ip", "netns", "exec", netns]
    iocfleet = [*ns, str(repo / ".venv" / "bin" / "iocfleet")]
    # `make demo` first makes the venv; pip needs the host's network for that, the namespace has none
    venv = subprocess.run(["make", "venv"], cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    assert venv.returncode == 0, venv.stderr[-3000:]
    try:
        demo = subprocess.run([*ns, "make", "demo"], cwd=repo, env=env, capture_output=True, text=True, timeout=900)
        assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
        notes = [line for line in demo.stderr.splitlines() if line.startswith("iocfleet: note: no IOC images")]
        assert len(notes) == 1, demo.stderr[-3000:]
        assert "mmdebstrap" in notes[0] and "local processes" in notes[0] and "iocfleet images build" in notes[0]
        # the two PVs `make demo` reads with the printed settings, with values
        values = {line.split()[0]: line.split()[1:] for line in demo.stdout.splitlines()
                  if line.startswith(("DEMO:MTR:POS", "DEMO:DET:COUNTS"))}
        assert set(values) == {"DEMO:MTR:POS", "DEMO:DET:COUNTS"} and all(values.values()), demo.stdout[-2000:]
        status = subprocess.run([*iocfleet, "status", "examples/demo.yaml", "--backend", "process", "--json"],
                                cwd=repo, env=env, capture_output=True, text=True, timeout=120)
        assert '"backend": "process"' in status.stdout and status.stdout.count('"state": "running"') >= 3
        assert subprocess.run(["docker", "images", "-q", f"{namespace}/*"], capture_output=True,
                              text=True).stdout.strip() == ""
    finally:
        subprocess.run([*iocfleet, "down", "examples/demo.yaml", "--backend", "process"], cwd=repo,
                       env={**env, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}, capture_output=True,
                       timeout=120)
    left = subprocess.run([*ns, "ss", "-Hlnu", "sport", "= :5065"], capture_output=True, text=True).stdout
    assert left.strip() == "", left  # the last `down` stopped the repeater `up` started
    # asked for Docker explicitly, the same host still says exit 4 (backend unavailable)
    forced = subprocess.run([*iocfleet, "up", "examples/demo.yaml", "--backend", "docker"], cwd=repo,
                            env={**env, "XDG_STATE_HOME": str(tmp_path / "state2")}, capture_output=True,
                            text=True, timeout=600)
    assert forced.returncode == 4, forced.stderr[-2000:]
    assert "mmdebstrap" in forced.stderr
