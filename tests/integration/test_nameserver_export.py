"""The compose export of a name-server fleet (R15), run by the real docker-compose on loopback: the
ca-nameserver service answers for every IOC, and libca reads every PV with exactly the plan's settings."""

from __future__ import annotations

import time
import uuid

import pytest

from orchestrator.ca.probe import search
from orchestrator.export import compose_yaml
from orchestrator.hostmodel import loopback_only_snapshot
from orchestrator.plan import planner
from orchestrator import spec
from ports import free_port, is_free
from test_compose import compose, containers_of, needs_compose, read_with_client_env, remove_fleet_containers

pytestmark = [pytest.mark.slow, pytest.mark.docker]


@needs_compose
def test_compose_export_with_a_name_server_serves_every_pv(docker_client, ioc_images, tmp_path):
    suffix = uuid.uuid4().hex[:8]
    name, project = f"nsexp-{suffix}", f"iocflns{suffix}"
    base = next(p for p in (free_port(29000, 29998) for _ in range(50)) if is_free(p + 2))
    iocs = [{"name": f"e{i}", "runtime": "softioc" if i == 0 else "caproto", "prefix": f"NSEXP:{i}:",
             "pvs": [{"name": "V", "value": float(i)}]} for i in range(3)]
    fleet = spec.from_dict({"fleet": name, "network": {"interface": "lo", "strategy": "name-server",
                                                       "base_port": base}, "iocs": iocs})
    plan = planner.plan(fleet, loopback_only_snapshot(), interface="lo")
    assert plan.client_env_dict()["EPICS_CA_NAME_SERVERS"] == f"127.0.0.1:{base + 2}"
    path = tmp_path / "compose.yaml"
    path.write_text(compose_yaml(plan, fleet, ioc_images, v1=True))  # the installed docker-compose is 1.29
    names = [n for ioc in plan.iocs for n in ioc.pv_names]
    try:
        up = compose(project, path, "--profile", "iocs", "up", "-d")  # every IOC has the profile `iocs`
        assert up.returncode == 0, up.stderr
        assert any(c.labels.get("org.iocfleet.role") == "nameserver" for c in containers_of(docker_client, name))
        deadline = time.monotonic() + 120
        while True:  # until the name server answers for every name (the IOCs are still starting)
            found = search(names, [("127.0.0.1", base + 2)], timeout=1.0)
            if {r.name for r in found.replies} == set(names) or time.monotonic() > deadline:
                break
        assert {r.name for r in found.replies} == set(names)
        values = read_with_client_env(plan, names)
        assert {n: values[n] for n in names if n.endswith(":V")} == {f"NSEXP:{i}:V": float(i) for i in range(3)}
        assert all(values[n] is not None for n in names)
    finally:
        compose(project, path, "--profile", "iocs", "down", "--timeout", "5", "--remove-orphans")
        remove_fleet_containers(docker_client, name)
    assert containers_of(docker_client, name) == []
