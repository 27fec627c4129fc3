"""The compose export: one host-network service per IOC carrying the plan's environment, labels and confinement."""

from __future__ import annotations

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from hosts import LO, host
from orchestrator.images import build as images
from orchestrator.plan import planner
from orchestrator import spec
from orchestrator.export import ImageInfo, compose_dict, compose_yaml, plan_hash
from orchestrator.export.common import CAPROTO_HEALTH, LIBCA_HEALTH, LABEL_FLEET, LABEL_IOC, LABEL_PLAN

INFO = ImageInfo({"caproto": "iocfleet/ioc-caproto:test", "softioc": "iocfleet/ioc-softioc:test"},
                 {r: images.container_hardening(r) for r in ("caproto", "softioc")}, images.IOC_UID)
SERVER_KEYS = ("EPICS_CAS_AUTO_BEACON_ADDR_LIST", "EPICS_CAS_BEACON_ADDR_LIST", "EPICS_CAS_INTF_ADDR_LIST",
               "EPICS_CA_SERVER_PORT", "EPICS_CAS_SERVER_PORT", "EPICS_CA_AUTO_ADDR_LIST", "EPICS_CA_ADDR_LIST")


def fleet(iocs=None, **network):
    network = {"interface": "lo", "base_port": 29500, **network}
    iocs = iocs or [
        {"name": "cp", "runtime": "caproto", "prefix": "T:CP:", "restart": "always",
         "limits": {"memory": "128m", "pids": 64}, "pvs": [{"name": "X"}]},
        {"name": "si", "runtime": "softioc", "prefix": "T:SI:", "restart": "no", "pvs": [{"name": "N", "type": "int"}]},
        {"name": "cam", "runtime": "image", "image": "registry.example/cam:1.0", "command": ["/ioc/st.cmd"],
         "prefix": "T:CAM:", "user": "1000:1000"},
    ]
    return spec.from_dict({"fleet": "t", "network": network, "iocs": iocs})


def export(f, snapshot=None, **kw):
    p = planner.plan(f, snapshot or host(), **kw)
    return p, compose_dict(p, f, INFO)


def unescape(value):
    return value.replace("$$", "$")


def test_one_host_network_service_per_ioc_plus_the_repeater_first():
    p, doc = export(fleet())
    assert list(doc) == ["name", "services"] and doc["name"] == "t"
    assert list(doc["services"]) == ["ca-repeater", "cp", "si", "cam"]
    for name in ("cp", "si", "cam"):
        assert doc["services"][name]["network_mode"] == "host"
        assert doc["services"][name]["depends_on"] == ["ca-repeater"]
    rep = doc["services"]["ca-repeater"]
    assert rep["network_mode"] == "host" and rep["environment"] == {"EPICS_CA_REPEATER_PORT": "5065"}
    assert rep["entrypoint"][:3] == ["python3", "-m", "caproto.commandline.repeater"]
    assert rep["labels"]["org.iocfleet.role"] == "repeater" and rep["labels"]["org.iocfleet.ioc"] == "ca-repeater"


def test_every_service_carries_the_plans_environment_with_explicit_lists():
    p, doc = export(fleet())
    for ioc in p.iocs:
        env = {k: unescape(v) for k, v in doc["services"][ioc.name]["environment"].items()}
        assert env == ioc.env_dict()
        assert all(key in env for key in SERVER_KEYS)
        assert env["EPICS_CAS_AUTO_BEACON_ADDR_LIST"] == "NO"
        assert env["EPICS_CAS_BEACON_ADDR_LIST"] == "127.255.255.255"
        assert env["EPICS_CA_AUTO_ADDR_LIST"] == "NO"
        assert env["EPICS_CA_ADDR_LIST"] == "127.255.255.255"


def test_distinct_ports_give_each_service_its_own_port_and_the_full_client_list():
    p, doc = export(fleet(strategy="distinct-ports"))
    ports = [doc["services"][i.name]["environment"]["EPICS_CA_SERVER_PORT"] for i in p.iocs]
    assert ports == ["29500", "29501", "29502"]
    for ioc in p.iocs:
        assert doc["services"][ioc.name]["environment"]["EPICS_CA_ADDR_LIST"] == \
            "127.0.0.1:29500 127.0.0.1:29501 127.0.0.1:29502"


def test_labels_name_fleet_ioc_and_a_plan_hash_that_follows_the_config():
    p, doc = export(fleet())
    labels = doc["services"]["cp"]["labels"]
    assert labels[LABEL_FLEET] == "t" and labels[LABEL_IOC] == "cp"
    assert labels[LABEL_PLAN] == plan_hash(p.ioc("cp"), "iocfleet/ioc-caproto:test")
    assert (labels["org.iocfleet.role"], labels["org.iocfleet.runtime"]) == ("ioc", "caproto")
    _, same = export(fleet())
    _, moved = export(fleet(base_port=29600))
    assert same["services"]["cp"]["labels"][LABEL_PLAN] == labels[LABEL_PLAN]
    assert moved["services"]["cp"]["labels"][LABEL_PLAN] != labels[LABEL_PLAN]
    digests = {doc["services"][i.name]["labels"][LABEL_PLAN] for i in p.iocs}
    assert len(digests) == len(p.iocs)


def test_images_users_restart_and_limits():
    _, doc = export(fleet())
    cp, si, cam = (doc["services"][n] for n in ("cp", "si", "cam"))
    assert (cp["image"], si["image"], cam["image"]) == (
        "iocfleet/ioc-caproto:test", "iocfleet/ioc-softioc:test", "registry.example/cam:1.0")
    assert cp["user"] == si["user"] == f"{images.IOC_UID}:{images.IOC_UID}"
    assert cam["user"] == "1000:1000"
    assert (cp["restart"], si["restart"], cam["restart"]) == ("always", "no", "on-failure:5")  # up's cap
    assert "command" not in cp and cam["command"] == ["/ioc/st.cmd"]
    assert (cp["mem_limit"], cp["pids_limit"]) == ("128m", 64)
    assert "mem_limit" not in si


def test_built_runtimes_get_the_images_hardening_and_image_iocs_a_safe_subset():
    _, doc = export(fleet())
    for name, runtime in (("cp", "caproto"), ("si", "softioc")):
        hard = images.container_hardening(runtime)
        service = doc["services"][name]
        assert service["read_only"] is True
        assert service["cap_drop"] == hard["cap_drop"]
        assert service["security_opt"] == hard["security_opt"]
        assert service["tmpfs"] == [f"{k}:{v}" for k, v in hard["tmpfs"].items()]
    cam = doc["services"]["cam"]  # `image` IOCs are hardened like ours unless `read_only: false` (issue 15)
    assert cam["read_only"] is True and cam["cap_drop"] == ["ALL"] and cam["tmpfs"] == service["tmpfs"]


def test_health_checks_read_heartbeat_over_ca_with_the_runtimes_client():
    _, doc = export(fleet())
    assert doc["services"]["cp"]["healthcheck"]["test"] == ["CMD", "python3", "-c", CAPROTO_HEALTH, "T:CP:UPTIME"]
    assert doc["services"]["si"]["healthcheck"]["test"] == ["CMD", "python3", "-c", LIBCA_HEALTH, "T:SI:UPTIME"]
    assert "healthcheck" not in doc["services"]["cam"]
    assert "$" not in CAPROTO_HEALTH + LIBCA_HEALTH  # compose would interpolate it
    assert "repeater=False" in CAPROTO_HEALTH  # a health check never spawns a repeater (R12)


def test_dollar_signs_are_escaped_so_compose_does_not_interpolate_them():
    f = fleet([{"name": "a", "runtime": "caproto", "prefix": "T:A:",
                "pvs": [{"name": "S", "type": "str", "value": "cost $HOME"}], "env": {"NOTE": "${X}"}}])
    p, doc = export(f)
    env = doc["services"]["a"]["environment"]
    assert env["NOTE"] == "$${X}"
    assert "cost $$HOME" in env["IOCFLEET_IOC"]


def test_repeater_left_out_on_request():
    f = fleet()
    p = planner.plan(f, host())
    doc = compose_dict(p, f, INFO, repeater=False)
    assert "ca-repeater" not in doc["services"]
    assert all("depends_on" not in s for s in doc["services"].values())


def test_repeater_name_never_collides_with_an_ioc():
    f = fleet([{"name": "ca-repeater", "runtime": "caproto", "prefix": "T:R:"}])
    _, doc = export(f)
    assert list(doc["services"]) == ["iocfleet-ca-repeater", "ca-repeater"]


def test_yaml_is_deterministic_and_round_trips():
    f = fleet()
    p = planner.plan(f, host())
    text = compose_yaml(p, f, INFO)
    assert text == compose_yaml(planner.plan(f, host()), f, INFO)
    assert yaml.safe_load(text) == compose_dict(p, f, INFO)
    assert text.startswith("# Compose file exported by iocfleet")
    assert "EPICS_CA_ADDR_LIST=127.255.255.255" in text.splitlines()[1]
    assert "&id" not in text


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 8), strategy=st.sampled_from(["auto", "shared-port", "distinct-ports", "single"]),
       runtimes=st.lists(st.sampled_from(["caproto", "softioc"]), min_size=8, max_size=8),
       on_eth=st.booleans())
def test_every_exported_ioc_has_explicit_beacon_and_search_lists(n, strategy, runtimes, on_eth):
    if strategy == "single":
        n = 1
    iocs = [{"name": f"i{k}", "runtime": runtimes[k], "prefix": f"P{k}:"} for k in range(n)]
    f = fleet(iocs, strategy=strategy, interface="eth1" if on_eth else "lo")
    p, doc = export(f)
    assert len(doc["services"]) == n + 1
    for ioc in p.iocs:
        env = doc["services"][ioc.name]["environment"]
        assert env["EPICS_CAS_AUTO_BEACON_ADDR_LIST"] == "NO" and env["EPICS_CAS_BEACON_ADDR_LIST"].strip()
        assert env["EPICS_CA_AUTO_ADDR_LIST"] == "NO" and env["EPICS_CA_ADDR_LIST"].strip()
        assert doc["services"][ioc.name]["network_mode"] == "host"


def test_loopback_only_host_is_enough_to_export():
    from orchestrator.hostmodel import HostSnapshot

    p, doc = export(fleet(), HostSnapshot((LO,), None, ()))
    assert p.interface == "lo" and set(doc["services"]) == {"ca-repeater", "cp", "si", "cam"}


def test_plan_label_matches_what_the_docker_backend_puts_on_launched_iocs():
    from orchestrator.run.backends import plan_hash as backend_plan_hash

    p, doc = export(fleet())
    for ioc in p.iocs:
        image = doc["services"][ioc.name]["image"]
        assert doc["services"][ioc.name]["labels"][LABEL_PLAN] == backend_plan_hash(ioc, image)
