"""The IOC programs and images, exercised over real Channel Access with caproto and pyepics (libca).

The host-process tests need no Docker and run in a few seconds; the image tests build both images
once per session (offline-capable) and run them with host networking, hardened as the backend will.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time

import numpy as np
import pytest

from orchestrator.images import build as images

from images_fixture import (LABELS, client_env, container_ioc, free_port_pair, host_ioc, run_pyepics,
                            sample_ioc, server_env)

FA = (np.arange(10000) * 0.5).tolist()
WRITES_CAPROTO = {"F": 3.25, "I": -5, "S": "world", "E": "fault", "FA": FA, "IA": [8, 7, 6, 5, 4, 3, 2, 1]}
WRITES_PYEPICS = {"F": -1.75, "I": 123456, "S": "from libca", "E": "off", "FA": [x + 1 for x in FA],
                  "IA": [0, -1, -2, -3, -4, -5, -6, -7]}

PYEPICS_CLIENT = r'''
import json, sys, threading
import numpy as np
import epics

args = json.loads(sys.argv[1])
p = args["prefix"]

def get(name, **kw):
    # use_monitor=False: a fresh read. The cached monitor value may not yet show a put that just
    # completed (caproto answers the put before it posts the monitor update).
    value = epics.caget(p + name, timeout=10, use_monitor=False, **kw)
    if value is None:
        raise SystemExit(f"caget {p + name} timed out")
    return value

def snapshot():
    fa = get("FA")
    return {"F": float(get("F")), "I": int(get("I")), "S": get("S"), "E": get("E", as_string=True),
            "FA_len": int(len(fa)), "FA_sum": float(np.sum(fa)), "IA": [int(x) for x in get("IA")]}

out = {"before": snapshot()}
for name, value in args["writes"].items():
    ok = epics.caput(p + name, np.asarray(value) if isinstance(value, list) else value, wait=True, timeout=10)
    if ok != 1:
        raise SystemExit(f"caput {p + name} failed: {ok}")
out["after"] = snapshot()
updates, enough = [], threading.Event()
def on_update(value=None, **kw):
    updates.append(float(value))
    if len(updates) >= 4:
        enough.set()
pv = epics.PV(p + "SINE", callback=on_update, auto_monitor=True)
enough.wait(15)
pv.clear_callbacks()
out["updates"] = updates
out["heartbeat"] = int(get("HEARTBEAT"))
out["uptime"] = float(get("UPTIME"))
print(json.dumps(out))
'''


def _expected_snapshot(writes: dict) -> dict:
    return {"F": writes["F"], "I": writes["I"], "S": writes["S"], "E": writes["E"],
            "FA_len": 10000, "FA_sum": float(np.sum(writes["FA"])), "IA": writes["IA"]}


def _caproto_read(prefix: str, name: str, **kwargs):
    from caproto.sync.client import read
    return read(prefix + name, timeout=10, repeater=False, **kwargs).data


def _caproto_monitor(prefix: str, name: str, wanted: int, timeout: float = 15.0) -> list[float]:
    from caproto.threading.client import Context
    values, enough = [], threading.Event()

    def on_update(sub, response) -> None:
        values.append(float(response.data[0]))
        if len(values) >= wanted:
            enough.set()

    ctx = Context()
    try:
        pv, = ctx.get_pvs(prefix + name, timeout=10)
        pv.wait_for_connection(timeout=10)
        sub = pv.subscribe()
        sub.add_callback(on_update)
        enough.wait(timeout)
        sub.clear()
    finally:
        ctx.disconnect()
    return values


def exercise(prefix: str, port: int, monkeypatch) -> None:
    """Read and write every PV type with caproto, then with pyepics, each reading what the other wrote."""
    from caproto import ChannelType, ErrorResponseReceived
    from caproto.sync.client import write

    for key, value in client_env(port).items():
        monkeypatch.setenv(key, value)
    heartbeat_start = int(_caproto_read(prefix, "HEARTBEAT")[0])

    # initial values, as declared
    assert _caproto_read(prefix, "F")[0] == 1.5
    assert _caproto_read(prefix, "I")[0] == 7
    assert _caproto_read(prefix, "S")[0] == b"hello"
    assert _caproto_read(prefix, "E", data_type=ChannelType.LONG)[0] == 1
    assert _caproto_read(prefix, "E", data_type=ChannelType.STRING)[0] == b"on"
    initial_fa = _caproto_read(prefix, "FA")
    assert len(initial_fa) == 10000 and not np.any(initial_fa)
    assert list(_caproto_read(prefix, "IA")) == [1, 2, 3, 4, 5, 6, 7, 8]

    # caproto writes; caproto reads back
    for name, value in WRITES_CAPROTO.items():
        write(prefix + name, np.asarray(value) if isinstance(value, list) else value, notify=True,
              timeout=10, repeater=False)
    assert _caproto_read(prefix, "F")[0] == 3.25
    assert _caproto_read(prefix, "I")[0] == -5
    assert _caproto_read(prefix, "S")[0] == b"world"
    assert _caproto_read(prefix, "E", data_type=ChannelType.LONG)[0] == 2
    assert np.array_equal(_caproto_read(prefix, "FA"), FA)
    assert list(_caproto_read(prefix, "IA")) == WRITES_CAPROTO["IA"]

    # the IOC owns simulated and standard PVs: a put fails (caproto raises for the caproto server's
    # error response, and returns rsrv's failed WriteNotifyResponse)
    for name in ("HEARTBEAT", "CNT"):
        try:
            response = write(prefix + name, 99, notify=True, timeout=10, repeater=False)
        except ErrorResponseReceived:
            continue
        assert response.status.success == 0, f"put to read-only {name} succeeded"

    sine = _caproto_monitor(prefix, "SINE", wanted=4)
    assert len(sine) >= 4 and len(set(sine)) >= 3

    # libca sees what caproto wrote, writes its own values, and gets monitor updates
    result = run_pyepics(PYEPICS_CLIENT, port, {"prefix": prefix, "writes": WRITES_PYEPICS})
    assert result["before"] == _expected_snapshot(WRITES_CAPROTO)
    assert result["after"] == _expected_snapshot(WRITES_PYEPICS)
    assert len(result["updates"]) >= 4 and len(set(result["updates"])) >= 3
    assert result["uptime"] > 0

    # and caproto reads what libca wrote
    assert _caproto_read(prefix, "F")[0] == -1.75
    assert np.array_equal(_caproto_read(prefix, "FA"), WRITES_PYEPICS["FA"])
    assert int(_caproto_read(prefix, "HEARTBEAT")[0]) > heartbeat_start


@pytest.mark.parametrize("runtime", images.RUNTIMES)
def test_program_serves_every_type_as_host_process(runtime, monkeypatch):
    port = free_port_pair()
    prefix = f"IMGTEST:P{port}:"
    with host_ioc(runtime, sample_ioc(prefix), port) as (_, line):
        assert "serving 10 PVs" in line
        assert f"tcp 127.0.0.1:{port}" in line and f"udp 127.0.0.1:{port}" in line
        exercise(prefix, port, monkeypatch)


@pytest.mark.parametrize("runtime", images.RUNTIMES)
@pytest.mark.parametrize("ioc_json, message", [
    ("{not json", "not valid JSON"),
    (json.dumps({"name": "x", "prefix": "IMGTEST:X:", "pvs": [{"name": "A", "type": "complex"}]}),
     "type 'complex' must be one of"),
])
def test_program_exits_2_with_a_clear_message_on_a_bad_description(runtime, ioc_json, message):
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPICS_")}
    env.update(server_env(free_port_pair()))
    env["IOCFLEET_IOC"] = ioc_json
    result = subprocess.run(images.program_argv(runtime), env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr and "bad IOC description" in result.stderr


def test_program_reads_the_description_from_a_file(tmp_path, monkeypatch):
    port = free_port_pair()
    prefix = f"IMGTEST:P{port}:"
    path = tmp_path / "ioc.json"
    path.write_text(json.dumps(sample_ioc(prefix)))
    with host_ioc("caproto", None, port, {"IOCFLEET_IOC_FILE": str(path)}) as (_, line):
        assert "serving 10 PVs" in line
        for key, value in client_env(port).items():
            monkeypatch.setenv(key, value)
        assert _caproto_read(prefix, "S")[0] == b"hello"


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize("runtime", images.RUNTIMES)
def test_image_serves_every_type_over_host_networking(runtime, built_images, docker_client, monkeypatch):
    port = free_port_pair()
    prefix = f"IMGTEST:C{port}:"
    with container_ioc(docker_client, runtime, sample_ioc(prefix), port,
                       image=built_images[runtime].tag) as container:
        assert container.top()["Processes"][0][0] == str(images.IOC_UID)
        assert f"tcp 127.0.0.1:{port}" in container.logs().decode()
        exercise(prefix, port, monkeypatch)
        # read-only root filesystem, writable /tmp
        assert container.exec_run(["python3", "-c", "open('/opt/iocfleet/x', 'w')"]).exit_code != 0
        assert container.exec_run(["python3", "-c", "open('/tmp/x', 'w')"]).exit_code == 0


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize("runtime", images.RUNTIMES)
def test_image_exits_2_on_a_bad_description(runtime, built_images, docker_client):
    env = server_env(free_port_pair())
    env["IOCFLEET_IOC"] = "{not json"
    container = docker_client.containers.run(built_images[runtime].tag, detach=True, network_mode="host",
                                             environment=env, labels=dict(LABELS),
                                             **images.container_hardening(runtime))
    try:
        assert container.wait(timeout=60)["StatusCode"] == 2
        assert "not valid JSON" in container.logs().decode()
    finally:
        container.remove(force=True)


@pytest.mark.docker
@pytest.mark.slow
def test_warm_build_reuses_the_images_quickly(built_images, docker_client):
    started = time.monotonic()
    again = images.build_images(images.RUNTIMES, client=docker_client)
    assert time.monotonic() - started < 5.0
    assert all(b.cached for b in again)
    assert {b.runtime: b.image_id for b in again} == {r: b.image_id for r, b in built_images.items()}
    for b in again:
        assert b.tag == images.image_tag(b.runtime)
        assert docker_client.images.get(b.tag).id == b.image_id


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize("runtime", images.RUNTIMES)
def test_images_carry_oci_labels_with_their_spec_meaning(runtime, built_images, docker_client):
    import re

    from orchestrator import __version__

    labels = docker_client.images.get(built_images[runtime].tag).labels
    oci = {k[len("org.opencontainers.image."):]: v for k, v in labels.items()
           if k.startswith("org.opencontainers.image.")}
    assert oci["title"] == f"iocfleet IOC ({runtime})" and oci["version"] == __version__
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", oci["created"])  # RFC 3339
    assert oci["base.name"] == built_images[runtime].base == labels["org.iocfleet.image.base"]
    assert not {"source", "revision", "base.digest"} & set(oci)
