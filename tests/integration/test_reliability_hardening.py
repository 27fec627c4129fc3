"""IOC containers are confined by default, and nothing from the fleet file reaches a shell or an extra Docker
option (docs/reliability.md). Checked on real containers with `docker inspect` and /proc."""

from __future__ import annotations

import json
import subprocess

import pytest

from cli_run import iocfleet, iocfleet_json, labelled_containers, write_fleet

pytestmark = [pytest.mark.slow]

HOSTILE = "$(touch /tmp/relhard-pwned); `id` ; echo x"


def inspect(container: str) -> dict:
    out = subprocess.run(["docker", "inspect", container], capture_output=True, text=True, check=True, timeout=60)
    return json.loads(out.stdout)[0]


@pytest.mark.docker
def test_ioc_containers_are_hardened_by_default_and_env_values_stay_literal(tmp_path, state):
    fleet = "relhard"
    iocs = [
        {"name": "cp", "runtime": "caproto", "prefix": "RELHARD:CP:", "pvs": ["V"],
         "limits": {"memory": "96m", "pids": 64}, "env": {"REL_HOSTILE": HOSTILE}},
        {"name": "si", "runtime": "softioc", "prefix": "RELHARD:SI:", "pvs": ["V"],
         "limits": {"memory": "128m", "pids": 128}},
    ]
    path = write_fleet(tmp_path / "fleet.yaml", fleet, iocs, base_port=31210)
    try:
        result = iocfleet_json("up", str(path), "--backend", "docker", "--timeout", "120", state=state)
        assert result["ready"] is True
        users = set()
        for item in result["iocs"]:
            info = inspect(item["container"])
            host = info["HostConfig"]
            users.add(info["Config"]["User"])
            assert info["Config"]["User"] not in ("", "0", "root", "0:0")
            assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
            assert "no-new-privileges" in host["SecurityOpt"]
            assert host["ReadonlyRootfs"] is True
            assert set(host["Tmpfs"]) == {"/tmp"} and "noexec" in host["Tmpfs"]["/tmp"]
            assert host["Privileged"] is False and host["NetworkMode"] == "host"
            assert not host["Binds"] and not info["Mounts"] or all(m["Type"] == "tmpfs" for m in info["Mounts"])
            limits = {"cp": (96 * 2**20, 64), "si": (128 * 2**20, 128)}[item["name"]]
            assert (host["Memory"], host["PidsLimit"]) == limits
            # the IOC runs as that user inside: the container's processes are not root on the host
            import psutil

            init = psutil.Process(info["State"]["Pid"])
            uids = {p.uids().real for p in (init, *init.children(recursive=True))}
            assert uids == {10064}, uids
        assert users == {"10064:10064"}  # one UID for the fleet (R2)
        env = inspect(next(i["container"] for i in result["iocs"] if i["name"] == "cp"))["Config"]["Env"]
        assert f"REL_HOSTILE={HOSTILE}" in env  # passed as a value, never through a shell
        assert not any(a in ("sh", "/bin/sh", "-c") for a in inspect(result["iocs"][0]["container"])["Path"].split())
        probe = subprocess.run(["docker", "exec", result["iocs"][0]["container"], "python3", "-c",
                                "import os; print(os.path.exists('/tmp/relhard-pwned'))"],
                               capture_output=True, text=True, timeout=60)
        assert probe.stdout.strip() == "False"
    finally:
        iocfleet("down", "--fleet-name", fleet, "--backend", "docker", state=state)
    assert labelled_containers(fleet) == []


def test_process_backend_passes_env_values_literally_and_drops_the_callers_epics_settings(tmp_path, state):
    import psutil

    fleet = "relliteral"
    iocs = [{"name": "p", "runtime": "caproto", "prefix": "RELLIT:", "pvs": ["V"], "env": {"REL_HOSTILE": HOSTILE}}]
    path = write_fleet(tmp_path / "fleet.yaml", fleet, iocs, base_port=31220)
    caller = {"EPICS_CAS_INTF_ADDR_LIST": "192.0.2.2", "EPICS_CAS_BEACON_ADDR_LIST": "192.0.2.255"}
    try:
        result = iocfleet_json("up", str(path), "--backend", "process", "--timeout", "60", state=state,
                               input_env=caller)
        assert result["ready"] is True
        environ = psutil.Process(result["iocs"][0]["pid"]).environ()
        assert environ["REL_HOSTILE"] == HOSTILE
        assert environ["EPICS_CAS_BEACON_ADDR_LIST"] == "127.255.255.255"
        assert environ["EPICS_CAS_AUTO_BEACON_ADDR_LIST"] == "NO"
        assert "192.0.2" not in json.dumps({k: v for k, v in environ.items() if k.startswith("EPICS_")})
        import os

        assert not os.path.exists("/tmp/relhard-pwned")
    finally:
        iocfleet("down", "--fleet-name", fleet, "--backend", "process", state=state)


def test_run_kwargs_never_leave_the_allow_list_whatever_the_fleet_file_says():
    from orchestrator import spec
    from orchestrator.run.backends.docker import ALLOWED_RUN_KEYS, run_kwargs
    from orchestrator.plan.onhost import plan_spec
    from orchestrator.hostmodel import HostSnapshot
    from orchestrator import host

    fleet = spec.from_dict({"fleet": "relkw", "network": {"interface": "lo", "base_port": 31230}, "iocs": [
        {"name": "a", "runtime": "image", "image": "site/ioc:1", "prefix": "RELKW:A:", "command": ["/ioc/st.cmd", "; rm -rf /", "$(id)"],
         "user": "10064", "env": {"X": HOSTILE}, "limits": {"memory": "64m", "pids": 32}, "restart": "always"},
        {"name": "b", "runtime": "caproto", "prefix": "RELKW:B:", "pvs": ["V"]},
    ]})
    planned = plan_spec(fleet, snapshot=HostSnapshot(host.interfaces(), None))
    for item in planned.plan.iocs:
        kwargs = run_kwargs("relkw", item, "hash")
        assert set(kwargs) <= ALLOWED_RUN_KEYS
        assert kwargs["network_mode"] == "host" and kwargs["cap_drop"] == ["ALL"]
        assert kwargs["security_opt"] == ["no-new-privileges"]
        if item.runtime == "image":
            assert kwargs["command"] == ["/ioc/st.cmd", "; rm -rf /", "$(id)"]  # an argv list, not a shell line
            assert kwargs["environment"]["X"] == HOSTILE
