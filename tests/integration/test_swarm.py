"""The exported stack file on a single-node swarm: every PV readable with the plan's client settings.

The swarm advertises (and listens, and carries data) only on an address of an interface this test creates
(a veth pair, or a dummy where the kernel has it) in a free /24 of 198.18.0.0/15; its address pool is
another such /24. The fleet itself is planned on `lo`. Teardown always runs: stack removed, swarm left,
networks swarm created (docker_gwbridge, ingress) removed, the interface deleted.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import subprocess
import time
import uuid
from dataclasses import dataclass

import pytest

from labnet import LOCK_PATH, free_subnet, ip, used_networks
from orchestrator.export import stack_yaml
from test_compose import (check_every_pv_readable, containers_of, free_base_port, lo_plan,
                          remove_fleet_containers, wait_healthy)

IFACE, PEER = "iocfl-sw0", "iocfl-sw1"
SWARM_NETWORKS = ("docker_gwbridge", "ingress")
GONE_TIMEOUT_S = 60.0


def docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


@dataclass(frozen=True)
class SwarmNet:
    address: str  # the swarm's advertise/listen/data-path address
    pool: str  # the default address pool (one /24) for swarm-scope networks


def _make_interface() -> str:
    """A dummy interface if the kernel has the type, else a veth pair (its peer end stays down-free)."""
    made = ip("link", "add", IFACE, "type", "dummy", check=False)
    if made.returncode == 0:
        return "dummy"
    made = ip("link", "add", IFACE, "type", "veth", "peer", "name", PEER, check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot create a test interface: {made.stderr.strip()}")
    ip("link", "set", PEER, "up")
    return "veth"


@contextlib.contextmanager
def swarm_interface():
    """The test's interface with the first free /24; the pool is the next free /24. Always deleted."""
    if os.geteuid() != 0:
        pytest.skip("creating an interface needs root")
    if ip("link", "show", IFACE, check=False).returncode == 0:
        pytest.skip(f"{IFACE} exists already (another run?)")
    try:
        with open(LOCK_PATH, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            used = used_networks()
            net = free_subnet(used)
            pool = free_subnet(used + [net])
            _make_interface()
            address = str(next(net.hosts()))
            # Added under the lock, so the next lab allocation sees the route and picks another /24.
            ip("addr", "add", f"{address}/{net.prefixlen}", "dev", IFACE)
            ip("link", "set", IFACE, "up")
        assert not any(ipaddress.IPv4Network(pool).overlaps(u) for u in used_networks())
        yield SwarmNet(address, str(pool))
    finally:
        if ip("link", "show", IFACE, check=False).returncode == 0:
            ip("link", "del", IFACE, check=False)  # deletes the veth peer too


@contextlib.contextmanager
def single_node_swarm(net: SwarmNet):
    """`docker swarm init` on the test address; yields the node's hostname; always leaves and cleans up."""
    state = docker("info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip()
    if state not in ("inactive", ""):
        pytest.skip(f"the engine is already in a swarm ({state}); not ours to leave")
    before = set(docker("network", "ls", "--format", "{{.Name}}").stdout.split())
    try:
        init = docker("swarm", "init", "--advertise-addr", net.address, "--listen-addr", f"{net.address}:2377",
                      "--data-path-addr", net.address, "--default-addr-pool", net.pool,
                      "--default-addr-pool-mask-length", "24", timeout=120)
        if init.returncode != 0:
            pytest.skip(f"the engine refuses swarm: {init.stderr.strip()}")
        yield docker("info", "--format", "{{.Name}}").stdout.strip()
    finally:
        docker("swarm", "leave", "--force", timeout=120)
        after = set(docker("network", "ls", "--format", "{{.Name}}").stdout.split())
        for name in SWARM_NETWORKS:
            if name in after - before:
                docker("network", "rm", name)


def wait_gone(client, fleet_name: str) -> None:
    deadline = time.monotonic() + GONE_TIMEOUT_S
    while containers_of(client, fleet_name) and time.monotonic() < deadline:
        time.sleep(1.0)


@pytest.mark.docker
@pytest.mark.slow
def test_stack_deploy_serves_every_pv_and_stack_rm_removes_it(docker_client, ioc_images, tmp_path):
    suffix = uuid.uuid4().hex[:8]
    name, stack = f"swtest-{suffix}", f"iocflsw{suffix}"
    fleet, plan = lo_plan(name, free_base_port())
    with swarm_interface() as net, single_node_swarm(net) as node:
        path = tmp_path / "stack.yaml"
        path.write_text(stack_yaml(plan, fleet, ioc_images, node=node))
        try:
            deploy = docker("stack", "deploy", "-c", str(path), stack, timeout=180)
            assert deploy.returncode == 0, deploy.stderr
            wait_healthy(docker_client, name, {i.name for i in plan.iocs})
            for container in containers_of(docker_client, name):
                host_config = container.attrs["HostConfig"]
                assert host_config["NetworkMode"] == "host" and host_config["ReadonlyRootfs"] is True
            check_every_pv_readable(plan)
            removed = docker("stack", "rm", stack)
            assert removed.returncode == 0, removed.stderr
            wait_gone(docker_client, name)
            assert containers_of(docker_client, name) == []
        finally:
            docker("stack", "rm", stack)
            wait_gone(docker_client, name)
            remove_fleet_containers(docker_client, name)
    assert ip("link", "show", IFACE, check=False).returncode != 0
    assert docker("info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip() == "inactive"
