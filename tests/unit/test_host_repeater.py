"""The host's one CA repeater (run/repeater.py): decisions with a fake backend and a made-up UDP 5065."""

from __future__ import annotations

import pytest

from orchestrator.run import repeater
from orchestrator.run.backends import Instance


class FakeBackend:
    name = "docker"

    def __init__(self):
        self.started = []

    def start_repeater(self, fleet, port):
        self.started.append((fleet, port))
        return Instance(fleet, "ca-repeater", "repeater", "caproto", "running", "repeater", container="c0ffee")


@pytest.fixture
def host(tmp_path, monkeypatch):
    held: list[int] = []
    stopped: list[dict] = []
    monkeypatch.setattr(repeater, "holder_pids", lambda port=5065: list(held))
    monkeypatch.setattr(repeater, "_stop", lambda record: stopped.append(record))
    env = {"IOCFLEET_HOST_DIR": str(tmp_path / "host")}
    return held, stopped, env


def test_an_existing_repeater_is_used_and_never_recorded(host):
    held, stopped, env = host
    held.append(4242)
    backend = FakeBackend()
    decided = repeater.ensure(backend, "a", environ=env)
    assert decided["provider"] == "existing" and backend.started == []
    assert repeater.read_record(env) is None
    assert repeater.release(env, running_fleets=set) is False and stopped == []  # never one it did not start


def test_none_held_starts_one_records_it_and_the_last_fleet_stops_it(host, monkeypatch):
    held, stopped, env = host
    backend = FakeBackend()
    monkeypatch.setattr(repeater, "_wait_bound", lambda port: held.append(999))
    decided = repeater.ensure(backend, "a", environ=env)
    assert decided["started"] and backend.started == [(repeater.HOST_FLEET, 5065)]
    record = repeater.read_record(env)
    assert record["started_by"] == "a" and record["container"] == "c0ffee" and record["backend"] == "docker"
    assert repeater.ensure(backend, "b", environ=env)["provider"] == "existing"  # b uses a's
    assert len(backend.started) == 1
    assert repeater.release(env, running_fleets=lambda: {"b"}) is False and stopped == []  # b still runs
    assert repeater.release(env, running_fleets=set) is True
    assert [r["container"] for r in stopped] == ["c0ffee"] and repeater.read_record(env) is None


def test_the_record_and_lock_are_per_network_namespace(host):
    _, _, env = host
    assert repeater.record_path(env).name == f"repeater-{repeater.netns_id()}.json"
    assert repeater.netns_id() != "?"


def test_the_host_view_skips_containers_that_vanish_between_listing_and_inspect():
    import docker

    from orchestrator.run.backends.docker import host_members

    class Listed:
        def __init__(self, id_):
            self.id = id_

    class API:
        def inspect_container(self, id_):
            if id_ == "gone":  # another worker's `down` removed it after the listing
                raise docker.errors.NotFound("no such container")
            if id_ == "hiccup":
                raise docker.errors.APIError("engine busy")
            return {"Id": id_, "Config": {"Labels": {"org.iocfleet.fleet": "f", "org.iocfleet.ioc": "a",
                                                     "org.iocfleet.role": "ioc", "org.iocfleet.runtime": "caproto"},
                                          "Env": ["EPICS_CA_ADDR_LIST=127.255.255.255", "X=a=b"], "User": "10064"},
                    "State": {"Status": "running", "Pid": 0}}

    class Client:
        api = API()

        class containers:  # noqa: N801 - mimics docker-py's attribute
            @staticmethod
            def list(all, filters, sparse):
                assert sparse and all and filters == {"label": "org.iocfleet.fleet"}
                return [Listed("gone"), Listed("kept"), Listed("hiccup")]

    (m,) = host_members(Client())
    assert (m.fleet, m.name, m.backend, m.state, m.pid) == ("f", "a", "docker", "running", None)
    assert m.env == {"EPICS_CA_ADDR_LIST": "127.255.255.255", "X": "a=b"}
