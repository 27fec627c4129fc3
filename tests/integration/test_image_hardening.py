"""`image` IOCs run hardened by default (issue 15), checked on real containers with `docker inspect`, and
still serve their PVs: iocfleet's caproto image is used as a foreign `runtime: image` (it honours the
EPICS_CAS_* variables and reads its PVs from IOCFLEET_IOC, given through `env:`)."""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest

from cli_run import iocfleet_json, write_fleet
from ports import free_port

pytestmark = [pytest.mark.slow, pytest.mark.docker]


def inspect(container: str) -> dict:
    out = subprocess.run(["docker", "inspect", container], capture_output=True, text=True, check=True, timeout=60)
    return json.loads(out.stdout)[0]


def payload(name: str, prefix: str) -> str:
    return json.dumps({"name": name, "prefix": prefix, "pvs": [{"name": "V", "type": "float", "value": 4.5}]})


def image_ioc(name: str, prefix: str, tag: str, **extra) -> dict:
    return {"name": name, "runtime": "image", "image": tag, "prefix": prefix, "pvs": ["V"],
            "env": {"IOCFLEET_IOC_FILE": f"/opt/site/{name}.json"}, **extra}


@pytest.fixture
def site_image(tmp_path, ioc_images):
    """A "foreign" image: FROM iocfleet's caproto image, with two IOC descriptions baked in (no registry)."""
    context = tmp_path / "site"
    context.mkdir()
    (context / "locked.json").write_text(payload("locked", "IMGHARD:L:"))
    (context / "open.json").write_text(payload("open", "IMGHARD:O:"))
    (context / "Dockerfile").write_text(f"FROM {dict(ioc_images.tags)['caproto']}\nCOPY *.json /opt/site/\n")
    tag = f"iocfleet-test/site-ioc:{uuid.uuid4().hex[:8]}"
    subprocess.run(["docker", "build", "-q", "-t", tag, str(context)], check=True, capture_output=True, timeout=300)
    yield tag
    subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, timeout=120)


def test_image_iocs_are_non_root_read_only_and_capless_unless_the_fleet_file_says_otherwise(
        tmp_path, state, teardown, site_image):
    tag = site_image
    fleet = "imghard"
    iocs = [image_ioc("locked", "IMGHARD:L:", tag),
            image_ioc("open", "IMGHARD:O:", tag, read_only=False)]
    path = write_fleet(tmp_path / "fleet.yaml", fleet, iocs, base_port=free_port(35000, 35998))
    teardown.append((fleet, "docker"))
    result = iocfleet_json("up", str(path), "--backend", "docker", "--timeout", "120", state=state)
    assert result["ready"] is True and all(i["pvs_ready"] == i["pvs_total"] == 1 for i in result["iocs"])  # V only: HEARTBEAT/UPTIME are iocfleet programs' (issue 12)
    by_name = {i["name"]: inspect(i["container"]) for i in result["iocs"]}
    for name, info in by_name.items():
        host = info["HostConfig"]
        assert info["Config"]["User"] == "10064:10064", name
        assert host["CapDrop"] == ["ALL"] and not host.get("CapAdd"), name
        assert "no-new-privileges" in host["SecurityOpt"], name
        assert host["Privileged"] is False, name
    locked, opened = by_name["locked"]["HostConfig"], by_name["open"]["HostConfig"]
    assert locked["ReadonlyRootfs"] is True and set(locked["Tmpfs"]) == {"/tmp"}
    assert opened["ReadonlyRootfs"] is False and not opened.get("Tmpfs")
    # the read-only root is real: a write outside /tmp fails, one into /tmp works
    container = next(i["container"] for i in result["iocs"] if i["name"] == "locked")
    outside = subprocess.run(["docker", "exec", container, "touch", "/opt/x"], capture_output=True, text=True)
    inside = subprocess.run(["docker", "exec", container, "touch", "/tmp/x"], capture_output=True, text=True)
    assert outside.returncode != 0 and "Read-only file system" in outside.stderr
    assert inside.returncode == 0, inside.stderr
