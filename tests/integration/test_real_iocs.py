"""Real IOCs next to a built-in one on one shared port (issue 12): a .db softioc, a user PVGroup and an
image laid out the epics-containers way, on the real engine and as local processes; pyepics reads and
writes through exactly the printed client settings; the doctor sees each IOC's reach."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cli_run import base_env, iocfleet, iocfleet_json, pyepics_read

pytestmark = [pytest.mark.slow]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "real"
BACKENDS = [pytest.param("docker", marks=pytest.mark.docker), "process"]

PYEPICS_PUT = r"""
import json, sys, time
import epics
name, value = sys.argv[1], json.loads(sys.argv[2])
ok = epics.caput(name, value, wait=True, timeout=10.0)
print(json.dumps(bool(ok)))
"""


def pyepics_put(name: str, value, client_env: dict[str, str]) -> None:
    proc = subprocess.run([sys.executable, "-c", PYEPICS_PUT, name, json.dumps(value)], env=base_env(**client_env),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr[-2000:]


def read_until(names: list[str], client_env: dict, done, attempts: int = 20) -> dict:
    """Read `names` until `done(values)` holds (a CP link or putter propagates asynchronously)."""
    for _ in range(attempts):
        values = pyepics_read(names, client_env)
        if done(values):
            return values
    return values


@pytest.fixture(scope="session")
def generic_ioc_image(ioc_images, docker_client):
    """examples/real/ioc-image built FROM iocfleet's softioc image, tagged by content; removed at the end."""
    from orchestrator.images.build import image_tag

    base = image_tag("softioc")
    digest = hashlib.sha256((base + (EXAMPLE / "ioc-image" / "Dockerfile").read_text()
                             + (EXAMPLE / "ioc-image" / "start.py").read_text()).encode()).hexdigest()[:12]
    tag = f"iocfleet-test/generic-ioc:{digest}"
    docker_client.images.build(path=str(EXAMPLE / "ioc-image"), tag=tag, buildargs={"BASE": base},
                               network_mode="none", rm=True)
    yield tag
    subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, timeout=120)


def real_fleet(tmp_path: Path, name: str, port: int, image: str | None) -> Path:
    """The example fleet copied next to its files; readable by the IOC containers' user."""
    root = tmp_path / "real"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("__pycache__"))
    for path in [tmp_path, root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    data = yaml.safe_load((root / "fleet.yaml").read_text())
    data["fleet"], data["network"]["base_port"] = name, port
    data["iocs"] = [i for i in data["iocs"] if i["runtime"] != "image" or image]
    for ioc in data["iocs"]:
        if ioc["runtime"] == "image":
            ioc["image"] = image
    (root / "fleet.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return root / "fleet.yaml"


@pytest.mark.parametrize("backend", BACKENDS)
def test_real_iocs_come_up_beside_a_builtin_one_and_answer_pyepics(request, tmp_path, state, teardown, backend):
    image = request.getfixturevalue("generic_ioc_image") if backend == "docker" else None
    fleet = f"real-{backend}"
    path = real_fleet(tmp_path, fleet, 24364 if backend == "docker" else 24366, image)
    teardown.append((fleet, backend))
    plan = iocfleet_json("plan", str(path), state=state)
    names = {i["name"]: i["pvs"] for i in plan["iocs"]}
    assert names["shutter"] == ["RL:SH:COUNT", "RL:SH:OPEN", "RL:SH:STATE"]
    assert "RL:M1:RBV" in names["motor"] and "RL:M1:READBACK" in names["motor"]
    if image:
        assert names["generic"] == ["RL:G:TEMP", "RL:G:TEMP_F"]  # no HEARTBEAT/UPTIME for an image

    result = iocfleet_json("up", str(path), "--backend", backend, "--timeout", "120", state=state)
    assert result["ready"] is True and len({i["tcp_port"] for i in result["iocs"]}) == len(result["iocs"])
    assert {i["name"]: i["pvs_ready"] for i in result["iocs"]} == {k: len(v) for k, v in names.items()}
    client_env = result["client_env"]
    assert client_env == plan["client_env"] and client_env["EPICS_CA_ADDR_LIST"] == "127.255.255.255"

    values = pyepics_read([n for pvs in names.values() for n in pvs], client_env)
    assert not [n for n, v in values.items() if v is None], values
    assert values["RL:M1:RBV"] == pytest.approx((0 + 1) * 2) and len(values["RL:M1:TRACE"]) in (0, 64)

    pyepics_put("RL:M1:VAL", 5.0, client_env)  # .db: VAL -CP-> OFFSET -CP-> RBV
    got = read_until(["RL:M1:OFFSET", "RL:M1:RBV"], client_env, lambda v: v["RL:M1:RBV"] == pytest.approx(12.0))
    assert got == {"RL:M1:OFFSET": pytest.approx(6.0), "RL:M1:RBV": pytest.approx(12.0)}

    pyepics_put("RL:SH:OPEN", 1, client_env)  # the user's putter
    got = read_until(["RL:SH:STATE", "RL:SH:COUNT"], client_env, lambda v: v["RL:SH:COUNT"] == 1)
    assert got == {"RL:SH:STATE": "front-end open", "RL:SH:COUNT": 1}

    if image:  # the container got exactly the fleet file's entrypoint, command, workdir, stdin and mounts
        inspect = json.loads(subprocess.run(["docker", "inspect", f"iocfleet-{fleet}-generic"], capture_output=True,
                                            text=True, check=True, timeout=60).stdout)[0]
        assert inspect["Config"]["Entrypoint"] == ["python3", "/epics/ioc/start.py"]
        assert inspect["Config"]["Cmd"] == ["/epics/ioc/config"] and inspect["Config"]["WorkingDir"] == "/epics/ioc"
        assert inspect["Config"]["OpenStdin"] is True
        assert [(m["Destination"], m["RW"]) for m in inspect["Mounts"]] == [("/epics/ioc/config", False)]
        motor = json.loads(subprocess.run(["docker", "inspect", f"iocfleet-{fleet}-motor"], capture_output=True,
                                          text=True, check=True, timeout=60).stdout)[0]
        assert [(m["Destination"], m["RW"]) for m in motor["Mounts"]] == [("/iocfleet/db/0", False)]
        pyepics_put("RL:G:TEMP", 100.0, client_env)
        got = read_until(["RL:G:TEMP_F"], client_env, lambda v: v["RL:G:TEMP_F"] == pytest.approx(212.0))
        assert got["RL:G:TEMP_F"] == pytest.approx(212.0)

    doctor = iocfleet("doctor", "--fleet", str(path), "--backend", backend, "--repeat", "5", "--json",
                      state=state, input_env=client_env)
    report = json.loads(doctor.stdout)
    assert doctor.returncode == 0, report["findings"]
    reach = {i["name"]: i["reach"] for p in report["paths"] for i in p["iocs"]}
    assert reach == {name: 1.0 for name in names}, reach

    down = iocfleet_json("down", str(path), "--backend", backend, state=state)
    assert set(down["removed"]) >= set(names)


@pytest.mark.docker
def test_an_image_ioc_without_pvs_is_ready_when_its_server_listens(tmp_path, state, teardown, generic_ioc_image):
    fleet = "real-server"
    path = real_fleet(tmp_path, fleet, 24368, generic_ioc_image)
    data = yaml.safe_load(path.read_text())
    data["iocs"] = [i for i in data["iocs"] if i["name"] in ("builtin", "generic")]
    del data["iocs"][1]["pvs"]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    teardown.append((fleet, "docker"))
    result = iocfleet_json("up", str(path), "--backend", "docker", "--timeout", "120", state=state)
    generic = next(i for i in result["iocs"] if i["name"] == "generic")
    assert result["ready"] and generic["readiness"] == "server", result
    assert generic["ready_by"] == f"server: TCP listener on port {generic['tcp_port']}"
    values = pyepics_read(["RL:G:TEMP"], result["client_env"])  # it was really up
    assert values["RL:G:TEMP"] == pytest.approx(21.5)
    status = {i["name"]: i for i in iocfleet_json("status", str(path), "--backend", "docker", state=state)["iocs"]}
    assert status["generic"]["readiness"] == "server" and status["generic"]["ready"] is True
    assert status["generic"]["ready_by"] == f"server: TCP listener on port {generic['tcp_port']}"
    assert status["builtin"]["ready_by"] == "3/3 PVs read"
    text = iocfleet("status", str(path), "--backend", "docker", state=state, check=True).stdout
    assert "READY BY" in text and "server: TCP listener on port" in text
    doctor = iocfleet("doctor", "--fleet", str(path), "--backend", "docker", "--repeat", "5", "--json",
                      state=state, input_env=result["client_env"])
    report = json.loads(doctor.stdout)
    assert {i["name"]: i["reach"] for p in report["paths"] for i in p["iocs"]} == {"builtin": 1.0}
    assert any(n.startswith("reach not measured for generic: no PV names known") for n in report["notes"])


def test_a_db_record_that_is_also_a_declared_pv_is_refused_before_launch(tmp_path, state, teardown):
    path = real_fleet(tmp_path, "real-dup", 24370, None)
    data = yaml.safe_load(path.read_text())
    data["iocs"][0]["prefix"] = "RL:M1:"
    data["iocs"][0]["pvs"] = [{"name": "RBV"}]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    teardown.append(("real-dup", "process"))
    check = iocfleet("check", str(path), "--json", state=state)
    codes = [f["code"] for f in json.loads(check.stdout)["findings"] if f["severity"] == "error"]
    assert check.returncode == 1 and codes == ["duplicate-pv"], check.stdout
    up = iocfleet("up", str(path), "--backend", "process", state=state)
    assert up.returncode == 3 and "duplicate-pv" in up.stderr and "RL:M1:RBV" in up.stderr, up.stderr
    assert iocfleet_json("status", "real-dup", "--backend", "process", state=state)["iocs"] == []


@pytest.mark.docker
def test_the_issue_image_is_ready_on_exactly_its_pvs_and_a_missing_one_times_out_clearly(tmp_path, state, teardown,
                                                                                       generic_ioc_image):
    """The report of issue 12: an image serving HBY:F:A, B and C (declared) never became ready, because
    readiness also waited for HEARTBEAT and UPTIME; the timeout said `exit code None`."""
    config = tmp_path / "config"
    config.mkdir(parents=True)
    config.joinpath("ioc.db").write_text("".join(f'record(ai, "HBY:F:{x}")\n' for x in "ABC"))
    for path in (tmp_path, config, config / "ioc.db"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    ioc = {"name": "hby", "runtime": "image", "image": generic_ioc_image, "prefix": "HBY:F:", "pvs": ["A", "B", "C"],
           "mounts": [{"source": "config", "target": "/epics/ioc/config"}]}
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump({"fleet": "real-hby", "network": {"interface": "lo", "base_port": 24372},
                                    "iocs": [ioc]}))
    teardown.append(("real-hby", "docker"))
    result = iocfleet_json("up", str(path), "--backend", "docker", "--timeout", "120", state=state)
    assert result["ready"] and result["iocs"][0]["pvs_ready"] == result["iocs"][0]["pvs_total"] == 3
    assert iocfleet_json("down", str(path), "--backend", "docker", state=state)["removed"]

    ioc["pvs"] = ["A", "B", "C", "D"]  # D is not served: a real timeout, told plainly
    path.write_text(yaml.safe_dump({"fleet": "real-hby", "network": {"interface": "lo", "base_port": 24372},
                                    "iocs": [ioc]}))
    proc = iocfleet("up", str(path), "--backend", "docker", "--timeout", "8", state=state)
    assert proc.returncode == 5, proc.stderr
    assert "hby (running): 1 of 4 PVs never answered: HBY:F:D" in proc.stderr and "None" not in proc.stderr
    assert not [i for i in iocfleet_json("status", "real-hby", "--backend", "docker", state=state)["iocs"]
                if i["role"] == "ioc"]  # rolled back


class BlindBackend:
    """The process backend as an unprivileged user sees containers of another user: no sockets visible."""

    def __init__(self, inner):
        self._inner = inner
        self.name, self.ioc_uid = inner.name, inner.ioc_uid

    def instances(self, fleet=None, details=True):
        import dataclasses

        return [dataclasses.replace(i, tcp_port=None, pid=None) for i in self._inner.instances(fleet, details)]

    def __getattr__(self, attr):
        return getattr(self._inner, attr)


def test_a_server_ioc_whose_sockets_cannot_be_seen_is_ready_by_its_beacon(tmp_path, state, monkeypatch):
    """readiness: server falls back to the beacons the CA repeater forwards (R11, R12) when the IOC's
    listener cannot be inspected; with a planned TCP port (distinct ports; a lone loopback IOC would share
    the port) the beacon names it exactly."""
    from orchestrator.plan.onhost import plan_spec
    from orchestrator.run import lifecycle
    from orchestrator.run.backends.process import ProcessBackend
    from orchestrator import spec

    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    fleet = spec.from_dict({"fleet": "real-beacon", "network": {"interface": "lo", "base_port": 24374,
                                                                "strategy": "distinct-ports"},
                            "iocs": [{"name": "grp", "runtime": "caproto", "prefix": "RB:", "readiness": "server",
                                      "module": "caproto.ioc_examples.simple:SimpleIOC"}]})
    backend = BlindBackend(ProcessBackend())
    planned = plan_spec(fleet, ioc_uid=backend.ioc_uid)
    assert planned.plan.ioc("grp").tcp_port == 24374
    try:
        result = lifecycle.up(planned, backend, timeout=60)
        (item,) = result.report.iocs
        assert result.ready and item.mode == "server"
        assert item.evidence in ("server: beacon from 127.0.0.1:24374", "server: beacon from 0.0.0.0:24374"), item
        values = pyepics_read(["RB:A"], result.client_env)  # it really serves
        assert values["RB:A"] == 1
    finally:
        lifecycle.down(backend, "real-beacon")


def test_a_server_ioc_that_never_listens_times_out_naming_it(tmp_path, state, teardown):
    """A `readiness: server` IOC whose CA server never comes up is a timeout (exit 5), not a success."""
    path = tmp_path / "fleet.yaml"
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "silent.py").write_text(
        "import time\nfrom caproto.server import PVGroup, pvproperty\n"
        "class Silent(PVGroup):\n    X = pvproperty(value=1)\n"
        "    def __init__(self, *a, **k):\n        super().__init__(*a, **k)\n"
        "        import os\n        if os.environ.get('IOCFLEET_GROUP'):\n            time.sleep(3600)\n")
    path.write_text(yaml.safe_dump({"fleet": "real-silent", "network": {"interface": "lo", "base_port": 24376},
                                    "iocs": [{"name": "quiet", "runtime": "caproto", "readiness": "server",
                                              "module": "silent:Silent", "python_path": "user"}]}))
    teardown.append(("real-silent", "process"))
    proc = iocfleet("up", str(path), "--backend", "process", "--timeout", "6", state=state)
    assert proc.returncode == 5, proc.stderr
    assert "quiet (running): readiness server: no CA server seen" in proc.stderr, proc.stderr


@pytest.mark.docker
def test_stdin_open_keeps_an_interactive_ioc_shell_alive(tmp_path, state, teardown, generic_ioc_image):
    """An IOC whose shell reads stdin ends at EOF: without `stdin_open` it exits right after iocInit (`up`
    may or may not have read its PV by then), with it it serves and stays."""
    import time

    config = tmp_path / "config"
    config.mkdir(parents=True)
    config.joinpath("ioc.db").write_text('record(ai, "STDIN:A") {\n  field(VAL, "7")\n  field(PINI, "YES")\n}\n')
    for path in (tmp_path, config, config / "ioc.db"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    path = tmp_path / "fleet.yaml"
    teardown.append(("real-stdin", "docker"))

    def up(stdin_open: bool):
        ioc = {"name": "shell", "runtime": "image", "image": generic_ioc_image, "pvs": ["STDIN:A"], "restart": "no",
               "env": {"IOC_SHELL": "interactive"}, "stdin_open": stdin_open,
               "mounts": [{"source": "config", "target": "/epics/ioc/config"}]}
        path.write_text(yaml.safe_dump({"fleet": "real-stdin", "network": {"interface": "lo", "base_port": 24380},
                                        "iocs": [ioc]}))
        return iocfleet("up", str(path), "--backend", "docker", "--timeout", "60", "--json", "--keep-on-failure",
                        state=state)

    def state_after(seconds: float) -> str:
        deadline, state_now = time.monotonic() + seconds, "missing"
        while time.monotonic() < deadline:
            shells = [i for i in iocfleet_json("status", "real-stdin", "--backend", "docker", state=state)["iocs"]
                      if i["name"] == "shell"]
            state_now = shells[0]["state"] if shells else "missing"
            if state_now == "exited":
                break
            time.sleep(1)
        return state_now

    closed = up(False)
    assert closed.returncode in (0, 5), closed.stderr
    assert state_after(30) == "exited"  # its shell saw EOF

    kept = up(True)
    result = json.loads(kept.stdout)
    assert kept.returncode == 0 and result["ready"], kept.stderr
    assert pyepics_read(["STDIN:A"], result["client_env"])["STDIN:A"] == pytest.approx(7.0)
    assert state_after(10) == "running"  # the same program, still serving with stdin open
