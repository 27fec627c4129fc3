"""Bad input that needs a Docker Engine to judge: an image that is not there. One line naming the image and the
fleet-file field, exit 4 (docs/cli.md), and no container started or removed (compared by label)."""

from __future__ import annotations


import pytest

from cli_run import iocfleet, labelled_containers, write_fleet

pytestmark = [pytest.mark.docker]


@pytest.mark.parametrize("runtime", ["image", "caproto"])
def test_image_that_does_not_exist_is_exit_4_naming_it_and_starts_nothing(tmp_path, runtime):
    fleet = f"relnoimg-{runtime}"
    image = "relbad/no-such-image:0.0"
    iocs = [{"name": "ok", "runtime": "caproto", "prefix": "RELNOIMG:OK:", "pvs": ["V"]},
            {"name": "x", "runtime": runtime, "image": image, "prefix": "RELNOIMG:X:", "pvs": ["V"]}]
    path = write_fleet(tmp_path / "fleet.yaml", fleet, iocs, base_port=31240)
    state = tmp_path / "state"
    before = labelled_containers(fleet)
    try:
        proc = iocfleet("up", str(path), "--backend", "docker", state=state)
        assert proc.returncode == 4, proc.stderr
        last = proc.stderr.strip().splitlines()[-1]
        assert last == (f"iocfleet: error: image '{image}' of IOC x is not on this host (iocs[x].image) — "
                        "load or build it first (docker load / docker build)"), last
        assert labelled_containers(fleet) == before == []
        assert not (state / "iocfleet" / "fleets").exists()
    finally:
        iocfleet("down", "--fleet-name", fleet, "--backend", "docker", state=state)
