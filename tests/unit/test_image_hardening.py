"""`image` IOCs are hardened like iocfleet's own by default (issue 15): non-root unless `user:`, no
capabilities, no-new-privileges, read-only root with a /tmp tmpfs unless `read_only: false`. Pure."""

from __future__ import annotations

import pytest

from hosts import host
from orchestrator.errors import SpecError
from orchestrator.images.build import IOC_UID, container_hardening
from orchestrator.plan import planner
from orchestrator.run.backends.docker import run_kwargs
from orchestrator import spec


def planned(**ioc):
    data = {"fleet": "h", "network": {"interface": "lo"},
            "iocs": [{"name": "cam", "runtime": "image", "image": "reg/ioc:1", "prefix": "H:", **ioc}]}
    (p,) = planner.plan(spec.from_dict(data), host()).iocs
    return p


def test_image_ioc_defaults_to_the_full_hardening_and_the_shared_ioc_uid():
    kw = run_kwargs("h", planned(), "hash")
    hard = container_hardening("caproto")
    assert kw["user"] == f"{IOC_UID}:{IOC_UID}"
    assert kw["read_only"] is True and kw["tmpfs"] == hard["tmpfs"]
    assert kw["cap_drop"] == ["ALL"] and kw["security_opt"] == ["no-new-privileges"]


def test_user_and_read_only_false_are_the_only_ways_out():
    kw = run_kwargs("h", planned(user="1000:1000", read_only=False), "hash")
    assert kw["user"] == "1000:1000"
    assert "read_only" not in kw and "tmpfs" not in kw
    assert kw["cap_drop"] == ["ALL"] and kw["security_opt"] == ["no-new-privileges"]  # never relaxed
    assert planned(read_only=False).to_dict()["read_only"] is False


def test_read_only_must_be_a_boolean_and_is_named_with_its_fix():
    with pytest.raises(SpecError) as err:
        planned(read_only="no")
    line = err.value.problems[0]
    assert "iocs[0].read_only" in line and "true or false" in line and "read_only: false" in line
