"""The caproto IOC program listens on its TCP port as soon as it binds it (no start-up race)."""

from __future__ import annotations

import asyncio
import importlib.util
import sys

import pytest
from caproto.asyncio.server import Context
from caproto.asyncio.utils import _create_bound_tcp_socket

from orchestrator.images.catalog import program_path
from ports import free_port


@pytest.fixture(scope="module")
def program():
    path = program_path("caproto")
    spec = importlib.util.spec_from_file_location("iocfleet_caproto_program", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent.parent / "common"))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent.parent / "common"))
    return module


def bind_twice(first_cls, second_cls, port: int, monkeypatch) -> tuple[int, int]:
    """Two servers bind their TCP sockets one after the other, before either runs its accept loop."""
    monkeypatch.setenv("EPICS_CA_SERVER_PORT", str(port))
    monkeypatch.setenv("EPICS_CAS_INTF_ADDR_LIST", "127.0.0.1")

    async def bind_both():
        first = first_cls({}, interfaces=["127.0.0.1"])
        second = second_cls({}, interfaces=["127.0.0.1"])
        p1, s1 = await first._bind_tcp_sockets_with_consistent_port_number(_create_bound_tcp_socket)
        p2, s2 = await second._bind_tcp_sockets_with_consistent_port_number(_create_bound_tcp_socket)
        for sock in (*s1.values(), *s2.values()):
            sock.close()
        return p1, p2

    return asyncio.run(bind_both())


def test_plain_caproto_lets_two_servers_bind_one_tcp_port(monkeypatch):
    """The defect the program works around: bind succeeds twice, the later listen() would fail."""
    port = free_port(34000, 34998, "127.0.0.1")
    assert bind_twice(Context, Context, port, monkeypatch) == (port, port)


def test_listening_context_makes_the_second_server_take_another_port(program, monkeypatch):
    port = free_port(34000, 34998, "127.0.0.1")
    first, second = bind_twice(program.ListeningContext, program.ListeningContext, port, monkeypatch)
    assert first == port and second != port
