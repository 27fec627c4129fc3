"""Conventions other tools expect: client settings in their formats, exit statuses, env variables, labels,
host-name resolution like libca's, and the pytest helpers (scope, runtimes, apply_env)."""

from __future__ import annotations

import configparser
import json
import os
import socket
from datetime import datetime, timezone

import click
import pytest
from click.testing import CliRunner

from orchestrator.ca import env as caenv
from orchestrator.ca import formats
from orchestrator.cli import _Group, cli
from orchestrator.doctor.gather import resolve
from orchestrator.errors import Terminated, UsageError
from orchestrator.images.labels import image_labels
from orchestrator.pytest_plugin import fleet_fixture, over_runtimes
from orchestrator.run.fleet import Fleet, with_runtime
from orchestrator import spec as specs

ENV = {"EPICS_CA_AUTO_ADDR_LIST": "NO", "EPICS_CA_ADDR_LIST": "127.255.255.255 10.0.0.5:5070",
       "EPICS_CA_SERVER_PORT": "5064"}


def test_shell_and_dotenv_round_trip_through_their_readers(tmp_path):
    import subprocess

    script = formats.shell(ENV) + '\nprintf "%s|%s" "$EPICS_CA_ADDR_LIST" "$EPICS_CA_AUTO_ADDR_LIST"'
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout
    assert out == "127.255.255.255 10.0.0.5:5070|NO"
    lines = formats.dotenv(ENV).splitlines()
    # docker's --env-file takes everything after the first `=` literally
    assert dict(line.split("=", 1) for line in lines) == ENV
    assert json.loads(formats.render(ENV, "json")) == ENV


def test_dotenv_refuses_a_value_it_cannot_write_unquoted():
    with pytest.raises(UsageError, match="EPICS_CA_ADDR_LIST"):
        formats.dotenv({"EPICS_CA_ADDR_LIST": " 127.0.0.1"})


def test_phoebus_settings_use_the_jca_preference_names():
    text = formats.phoebus(ENV, "demo")
    parser = configparser.ConfigParser(delimiters=("=",), comment_prefixes=("#",))
    parser.optionxform = str
    parser.read_string("[settings]\n" + text)
    prefs = dict(parser["settings"])
    assert prefs == {"org.phoebus.pv/default": "ca",
                     "org.phoebus.pv.ca/addr_list": "127.255.255.255 10.0.0.5:5070",
                     "org.phoebus.pv.ca/auto_addr_list": "false",
                     "org.phoebus.pv.ca/server_port": "5064"}
    assert "auto_addr_list=true" in formats.phoebus({"EPICS_CA_AUTO_ADDR_LIST": "YES"})
    with pytest.raises(UsageError):
        formats.render(ENV, "xml")


def test_env_command_formats(tmp_path):
    path = tmp_path / "f.yaml"
    path.write_text("fleet: envf\nnetwork: {interface: lo}\niocs:\n  - {name: a, runtime: caproto, prefix: 'E:'}\n")
    runner = CliRunner()
    shell = runner.invoke(cli, ["env", str(path)])
    assert shell.exit_code == 0 and "export EPICS_CA_ADDR_LIST=" in shell.output
    as_json = json.loads(runner.invoke(cli, ["env", str(path), "--format", "json"]).output)
    assert as_json["EPICS_CA_AUTO_ADDR_LIST"] == "NO"
    assert json.loads(runner.invoke(cli, ["env", str(path), "--json"]).output) == as_json
    dotenv = runner.invoke(cli, ["env", str(path), "--format", "dotenv"]).output
    assert dict(line.split("=", 1) for line in dotenv.splitlines()) == as_json
    phoebus = runner.invoke(cli, ["env", str(path), "--format", "phoebus"]).output
    assert f"org.phoebus.pv.ca/addr_list={as_json['EPICS_CA_ADDR_LIST']}" in phoebus
    assert runner.invoke(cli, ["env", str(path), "--format", "yaml"]).exit_code == 2


def test_sigterm_exits_143_and_ctrl_c_130():
    @click.group(cls=_Group)
    def root():
        pass

    @root.command()
    def term():
        raise Terminated

    @root.command()
    def intr():
        raise KeyboardInterrupt

    runner = CliRunner()
    assert runner.invoke(root, ["term"]).exit_code == 143
    assert runner.invoke(root, ["intr"]).exit_code == 130


def test_the_cli_reads_iocfleet_backend_like_the_plugin(tmp_path):
    runner = CliRunner()
    bad = runner.invoke(cli, ["status", "--fleet-name", "x", "--json"], env={"IOCFLEET_BACKEND": "podman"})
    assert bad.exit_code == 2 and "IOCFLEET_BACKEND" in bad.output
    ok = runner.invoke(cli, ["status", "--fleet-name", "nothing-here", "--json"],
                       env={"IOCFLEET_BACKEND": "process", "XDG_STATE_HOME": str(tmp_path)})
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["backend"] == "process"


def test_oci_labels_carry_what_their_keys_mean():
    labels = image_labels("softioc", "abc123", "python:3.11-slim", "sha256:" + "1" * 64, ["softioc-4.7.2.whl"],
                          "0.1.0", datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    oci = {k.split("org.opencontainers.image.")[1]: v for k, v in labels.items()
           if k.startswith("org.opencontainers.image.")}
    assert oci["created"] == "2026-01-02T03:04:05Z"
    assert oci["base.name"] == "python:3.11-slim"
    assert oci["version"] == "0.1.0" and "softioc" in oci["title"]
    # keys whose meaning we cannot fill are absent, not filled with something else
    assert not {"source", "revision", "base.digest", "licenses"} & set(oci)
    assert labels["org.iocfleet.image.base-id"].startswith("sha256:")


def test_host_names_resolve_like_libca_with_dns_and_timeouts():
    settings = caenv.client_settings({"EPICS_CA_ADDR_LIST": "ioc1.example.org 10.0.0.7:5070 slow.example.org "
                                                            "gone.example.org ioc1.example.org:6000"})
    asked = []

    def lookup(name):
        asked.append(name)
        if name == "slow.example.org":
            import time
            time.sleep(2)
        if name == "gone.example.org":
            raise socket.gaierror(-2, "Name or service not known")
        return "192.0.2.10"

    dests, unresolved = resolve(settings, lookup, timeout=0.5)
    assert dests == [("192.0.2.10", 5064), ("10.0.0.7", 5070), ("192.0.2.10", 6000)]
    assert unresolved == ["slow.example.org", "gone.example.org"]
    assert sorted(asked) == ["gone.example.org", "ioc1.example.org", "slow.example.org"]  # each name once


def test_the_system_resolver_is_the_default():
    settings = caenv.client_settings({"EPICS_CA_ADDR_LIST": "localhost:5999"})
    dests, unresolved = resolve(settings)
    assert unresolved == [] and dests[0][1] == 5999 and dests[0][0].startswith("127.")


def test_with_runtime_switches_built_in_iocs_only():
    fleet = specs.from_dict({"fleet": "rt", "iocs": [
        {"name": "a", "runtime": "caproto", "prefix": "A:"},
        {"name": "b", "runtime": "image", "prefix": "B:", "image": "x:1", "command": ["run"]}]})
    assert [i.runtime for i in with_runtime(fleet, "softioc").iocs] == ["softioc", "image"]
    assert with_runtime(fleet, None) is fleet
    with pytest.raises(UsageError):
        with_runtime(fleet, "pcas")


def test_runtime_and_scope_helpers_refuse_unknown_values():
    mark = over_runtimes()
    assert mark.args == ("ca_runtime", ("caproto", "softioc"))
    with pytest.raises(ValueError):
        over_runtimes("pcas")
    with pytest.raises(ValueError):
        fleet_fixture("f.yaml", scope="class")
    with pytest.raises(ValueError):
        fleet_fixture("f.yaml", runtimes=("epics",))


class _Result:
    client_env = {"EPICS_CA_ADDR_LIST": "127.255.255.255", "EPICS_CA_AUTO_ADDR_LIST": "NO"}
    findings = ()


def test_apply_env_sets_the_fleet_settings_and_clears_other_ca_variables():
    fleet = Fleet(specs.from_dict({"fleet": "e", "iocs": [{"name": "a", "runtime": "caproto", "prefix": "A:"}]}),
                  None, _Result())
    before = dict(os.environ)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EPICS_CA_NAME_SERVERS", "10.9.9.9")
        mp.setenv("EPICS_CA_ADDR_LIST", "10.0.0.1")
        assert fleet.apply_env(mp) == _Result.client_env
        assert os.environ["EPICS_CA_ADDR_LIST"] == "127.255.255.255"
        assert "EPICS_CA_NAME_SERVERS" not in os.environ
    assert dict(os.environ) == before
