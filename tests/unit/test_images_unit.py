"""Pure parts of the IOC images: the IOC description, the simulations, tags, apt sources, wheel names."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.images import build as images
from orchestrator.images import ImageBuildError
from orchestrator.images import debian
from orchestrator.images import inputs
from orchestrator.images import wheelhouse

sys.path.insert(0, str(images.ioc_images_root() / "common"))

from iocfleet_ioc import report, sim  # noqa: E402
from iocfleet_ioc.spec import IocSpecError, load_ioc, parse_ioc  # noqa: E402


def ioc(*pvs, prefix="IMGTEST:U:"):
    return json.dumps({"name": "u", "prefix": prefix, "pvs": list(pvs)})


# --- the IOC description -------------------------------------------------------------------------

def test_a_full_description_parses_with_defaults_and_normalised_values():
    spec = parse_ioc(ioc(
        {"name": "T", "type": "float", "value": 2},
        {"name": "N", "type": "int"},
        {"name": "S", "type": "str", "value": None},
        {"name": "E", "type": "enum", "value": "b", "enum_strings": ["a", "b"]},
        {"name": "W", "type": "float", "count": 3, "value": [1, 2, 3], "sim": "sine", "rate_hz": 5},
        {"name": "Z", "type": "int", "count": 4},
    ))
    t, n, s, e, w, z = spec.pvs
    assert (t.value, t.count, t.sim, t.rate_hz, t.writable) == (2.0, 1, None, 1.0, True)
    assert (n.value, s.value, e.value) == (0, "", 1)
    assert w.value == (1.0, 2.0, 3.0) and not w.writable and w.is_array
    assert z.value == (0, 0, 0, 0)
    assert spec.pv_names()[-2:] == ["IMGTEST:U:HEARTBEAT", "IMGTEST:U:UPTIME"]


@pytest.mark.parametrize("pv, fragment", [
    ({"name": "A", "type": "complex"}, "type 'complex' must be one of"),
    ({"name": "A", "type": "str", "count": 2}, "supported for float and int only"),
    ({"name": "A", "type": "float", "sim": "square"}, "sim 'square'"),
    ({"name": "A", "type": "str", "sim": "counter"}, "not available for type str"),
    ({"name": "A", "type": "enum", "enum_strings": []}, "needs 1 to 16 enum_strings"),
    ({"name": "A", "type": "enum", "enum_strings": ["x"] * 17}, "needs 1 to 16"),
    ({"name": "A", "type": "enum", "enum_strings": ["a"], "value": "b"}, "must be one of enum_strings"),
    ({"name": "A", "type": "int", "value": 2**31}, "32-bit integer"),
    ({"name": "A", "type": "int", "value": 1.5}, "32-bit integer"),
    ({"name": "A", "type": "float", "value": "hot"}, "finite number"),
    ({"name": "A", "type": "float", "count": 3, "value": [1, 2]}, "2 elements, count is 3"),
    ({"name": "A", "type": "float", "rate_hz": 0}, "rate_hz 0"),
    ({"name": "A", "type": "str", "value": "x" * 40}, "at most 39"),
    ({"name": "A", "type": "float", "unit": "K"}, "unknown key 'unit'"),
    ({"name": "HEARTBEAT", "type": "int"}, "served by every IOC"),
    ({"name": "A B", "type": "int"}, "PV name characters"),
    ({"name": "X" * 60, "type": "int"}, "longer than 59"),
])
def test_each_bad_pv_is_refused_with_a_message_naming_it(pv, fragment):
    with pytest.raises(IocSpecError) as caught:
        parse_ioc(ioc(pv))
    assert fragment in str(caught.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(IocSpecError) as caught:
        parse_ioc(ioc({"name": "A", "type": "nope"}, {"name": "A", "type": "int"}, {"name": "A", "type": "int"}))
    assert len(caught.value.problems) == 2
    assert "declared twice" in caught.value.problems[1]


@pytest.mark.parametrize("text, fragment", [
    ("{", "not valid JSON"), ("[]", "must be a JSON object"), ('{"prefix": "X:"}', "name: must be"),
    ('{"name": "a", "pvs": {}}', "pvs: must be a list"), ('{"name": "a", "extra": 1}', "unknown key 'extra'"),
])
def test_bad_documents_are_refused(text, fragment):
    with pytest.raises(IocSpecError, match=fragment):
        parse_ioc(text)


def test_the_description_comes_from_the_environment_or_a_file(tmp_path):
    text = ioc({"name": "A", "type": "int", "value": 3})
    assert load_ioc({"IOCFLEET_IOC": text}).pvs[0].value == 3
    path = tmp_path / "ioc.json"
    path.write_text(text)
    assert load_ioc({"IOCFLEET_IOC_FILE": str(path)}).pvs[0].name == "A"
    with pytest.raises(IocSpecError, match="neither IOCFLEET_IOC nor IOCFLEET_IOC_FILE"):
        load_ioc({})
    with pytest.raises(IocSpecError, match="No such file"):
        load_ioc({"IOCFLEET_IOC_FILE": str(tmp_path / "missing.json")})


def test_large_arrays_raise_max_array_bytes_only_when_unset():
    spec = parse_ioc(ioc({"name": "W", "type": "float", "count": 10000}))
    env: dict[str, str] = {}
    assert report.ensure_array_bytes(spec, env) is None and int(env["EPICS_CA_MAX_ARRAY_BYTES"]) >= 80000
    env = {"EPICS_CA_MAX_ARRAY_BYTES": "16384"}
    assert "below" in report.ensure_array_bytes(spec, env) and env["EPICS_CA_MAX_ARRAY_BYTES"] == "16384"


@given(st.lists(st.sampled_from(["float", "int", "str", "enum"]), max_size=12), st.integers(1, 64))
@settings(max_examples=200, deadline=None)
def test_generated_valid_descriptions_parse(types, count):
    pvs = []
    for i, kind in enumerate(types):
        pv = {"name": f"P{i}", "type": kind}
        if kind == "enum":
            pv["enum_strings"] = ["a", "b"]
        if kind in ("float", "int"):
            pv["count"] = count
        pvs.append(pv)
    spec = parse_ioc(ioc(*pvs))
    assert len(spec.pv_names()) == len(types) + 2


# --- simulations ---------------------------------------------------------------------------------

def _pv(**kw):
    base = {"name": "X", "type": "float"}
    base.update(kw)
    return parse_ioc(ioc(base)).pvs[0]


def test_sine_is_bounded_and_periodic():
    pv = _pv(sim="sine", value=5.0)
    rng = np.random.default_rng(0)
    samples = [sim.value_for(pv, t, 0, rng) for t in np.linspace(0, 20, 101)]
    assert all(4.0 <= s <= 6.0 for s in samples)
    assert sim.value_for(pv, 1.0, 0, rng) == pytest.approx(sim.value_for(pv, 1.0 + sim.PERIOD_S, 0, rng))


def test_ramp_and_counter_arrays_are_phase_shifted():
    ramp = sim.value_for(_pv(sim="ramp", count=4), 0.0, 0, np.random.default_rng(0))
    assert list(ramp) == pytest.approx([0.0, 25.0, 50.0, 75.0])
    counter = sim.value_for(_pv(type="int", sim="counter", count=3, value=[10, 10, 10]), 0.0, 5,
                            np.random.default_rng(0))
    assert counter.dtype == np.int32 and list(counter) == [15, 16, 17]


def test_noise_is_reproducible_with_a_seed_and_enum_counter_wraps():
    pv = _pv(sim="noise", count=1000)
    a = sim.value_for(pv, 0.0, 0, np.random.default_rng(42))
    b = sim.value_for(pv, 0.0, 0, np.random.default_rng(42))
    assert np.array_equal(a, b) and abs(float(np.mean(a))) < 0.2
    enum = parse_ioc(ioc({"name": "E", "type": "enum", "sim": "counter", "enum_strings": ["a", "b", "c"]})).pvs[0]
    assert [sim.value_for(enum, 0.0, tick, None) for tick in range(5)] == [0, 1, 2, 0, 1]


def test_scalar_sim_values_are_plain_python_numbers():
    value = sim.value_for(_pv(type="int", sim="counter"), 0.0, 3, np.random.default_rng(0))
    assert type(value) is int and value == 3


# --- tags and inputs -----------------------------------------------------------------------------

def test_tags_follow_the_sources_and_the_base(tmp_path):
    root = tmp_path / "ioc_images"
    shutil.copytree(images.ioc_images_root(), root, ignore=shutil.ignore_patterns("__pycache__"))
    before = inputs.source_tag(root, "caproto")
    assert before.startswith("iocfleet/ioc-caproto:") and len(before.split(":")[1]) == 12
    assert inputs.source_tag(root, "caproto") == before
    assert inputs.content_tag(root, "caproto", "sha256:" + "a" * 64) != inputs.content_tag(root, "caproto", "sha256:" + "b" * 64)
    (root / "common" / "iocfleet_ioc" / "__pycache__").mkdir()
    (root / "common" / "iocfleet_ioc" / "__pycache__" / "x.pyc").write_bytes(b"junk")
    assert inputs.source_tag(root, "caproto") == before
    softioc_before = inputs.source_tag(root, "softioc")
    with open(root / "caproto" / "requirements.txt", "a") as handle:
        handle.write("# touched\n")
    assert inputs.source_tag(root, "caproto") != before
    assert inputs.source_tag(root, "softioc") == softioc_before
    (root / "common" / "iocfleet_ioc" / "sim.py").write_text("# changed\n")
    assert inputs.source_tag(root, "softioc") != softioc_before


def test_digest_separates_names_from_contents():
    assert inputs.digest([("a", b"bc")]) != inputs.digest([("ab", b"c")])
    assert inputs.digest([("a", b""), ("b", b"")]) != inputs.digest([("a", b"b")])


def test_image_tag_matches_the_checkout_and_programs_exist():
    for runtime in images.RUNTIMES:
        assert images.image_tag(runtime) == inputs.source_tag(images.ioc_images_root(), runtime)
        assert images.program_path(runtime).is_file()
        assert images.program_argv(runtime, "/usr/bin/python3") == ["/usr/bin/python3", str(images.program_path(runtime))]
    with pytest.raises(images.UsageError):
        images.image_tag("epics-base")


def test_lock_files_are_exact_pins():
    root = images.ioc_images_root()
    for runtime in images.RUNTIMES:
        pins = inputs.requirements(root / runtime / "requirements.txt")
        assert pins and all(version for _, version in pins)
        assert any(inputs.canonical(name) == "numpy" for name, _ in pins)


def test_hardening_runs_as_one_uid_without_capabilities():
    for runtime in images.RUNTIMES:
        kwargs = images.container_hardening(runtime)
        assert kwargs["user"] == f"{images.IOC_UID}:{images.IOC_UID}"
        assert kwargs["read_only"] is True and "/tmp" in kwargs["tmpfs"]
        assert kwargs["cap_drop"] == ["ALL"] and kwargs["security_opt"] == ["no-new-privileges"]


# --- the Debian base -----------------------------------------------------------------------------

DEB822 = """Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main

Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
"""


def test_mirror_lines_come_from_deb822_and_one_line_sources():
    lines = debian.mirror_lines({"/etc/apt/sources.list.d/debian.sources": DEB822,
                                 "/etc/apt/sources.list": "deb [arch=amd64] http://m.example/debian bookworm main contrib\n"
                                                          "deb http://archive.ubuntu.com/ubuntu jammy main\n"})
    assert lines[0].split()[2] == "bookworm"
    assert "deb http://deb.debian.org/debian bookworm-updates main" in lines
    assert "deb http://deb.debian.org/debian-security bookworm-security main" in lines
    assert "deb http://m.example/debian bookworm main contrib" in lines
    assert not any("jammy" in line for line in lines)
    assert debian.mirror_lines({}) == ["deb http://deb.debian.org/debian bookworm main"]


def test_only_proxy_and_validity_apt_options_are_passed_through():
    dump = ('Acquire::http::Proxy "http://proxy:3128";\nAcquire::https::Proxy::deb.debian.org "DIRECT";\n'
            'Acquire::Check-Valid-Until "false";\nAcquire::Languages "";\nDir::Etc "etc/apt/";\n')
    assert debian.apt_options(dump) == ['Acquire::http::Proxy "http://proxy:3128"',
                                        'Acquire::https::Proxy::deb.debian.org "DIRECT"',
                                        'Acquire::Check-Valid-Until "false"']


def test_mmdebstrap_command_and_base_tag():
    argv = debian.mmdebstrap_argv(Path("/t/root.tar"), ["deb http://m/debian bookworm main"], ['A "b"'])
    assert argv[:3] == ["mmdebstrap", "--variant=minbase", "--include=python3"]
    assert argv[-3:] == ["bookworm", "/t/root.tar", "deb http://m/debian bookworm main"]
    assert '--aptopt=A "b"' in argv
    assert debian.base_tag().startswith("iocfleet/base:bookworm-") and debian.base_tag() == debian.base_tag()


# --- the wheelhouse ------------------------------------------------------------------------------

def test_wheel_names_are_matched_to_pins(tmp_path):
    for name in ("numpy-2.2.6-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
                 "setuptools_dso-2.12.4-py2.py3-none-any.whl", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    found, missing = wheelhouse.wheels_for(tmp_path, [("numpy", "2.2.6"), ("setuptools-dso", "2.12.4"),
                                                      ("caproto", "1.3.0")])
    assert [p.name.split("-")[0] for p in found] == ["numpy", "setuptools_dso"]
    assert missing == [("caproto", "1.3.0")]


def test_offline_with_missing_wheels_says_how_to_fetch_them(tmp_path):
    with pytest.raises(ImageBuildError) as caught:
        wheelhouse.ensure_wheels(tmp_path, [("caproto", "1.3.0")], offline=True)
    assert "wheelhouse step" in str(caught.value) and "pip download" in caught.value.fix
    assert "caproto==1.3.0" in caught.value.fix


def test_download_command_targets_the_image_python():
    argv = wheelhouse.download_argv(Path("/w"), [("numpy", "2.2.6")], "python3")
    assert argv[:4] == ["python3", "-m", "pip", "download"]
    assert "--only-binary=:all:" in argv and "--no-deps" in argv
    assert argv[argv.index("--python-version") + 1] == "3.11" and argv[-1] == "numpy==2.2.6"


def test_a_missing_mmdebstrap_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH where no mmdebstrap exists
    with pytest.raises(ImageBuildError) as caught:
        debian.bootstrap(tmp_path / "x.tar", ["deb http://m/debian bookworm main"], [])
    assert "apt-get install -y mmdebstrap" in caught.value.fix
