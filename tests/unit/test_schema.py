"""The fleet file's JSON Schema agrees with the validator on good files and on unknown keys."""

from __future__ import annotations

import json

import jsonschema
import yaml
from click.testing import CliRunner

from orchestrator.cli import cli
from orchestrator.spec.schema import fleet_schema


def test_schema_command_prints_a_valid_draft_2020_12_schema():
    result = CliRunner().invoke(cli, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.output)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema == fleet_schema()


def test_examples_validate_against_the_schema():
    validator = jsonschema.Draft202012Validator(fleet_schema())
    for path in ("examples/demo.yaml", "examples/ci_suite/fleet.yaml", "examples/real/fleet.yaml"):
        errors = list(validator.iter_errors(yaml.safe_load(open(path))))
        assert errors == [], (path, [e.message for e in errors])


def test_schema_refuses_what_the_validator_refuses():
    validator = jsonschema.Draft202012Validator(fleet_schema())
    bad = [
        {"fleet": "x", "iocs": [{"name": "a", "prefix": "A:", "colour": "blue"}]},
        {"fleet": "x", "iocs": [{"name": "a b", "prefix": "A:"}]},
        {"fleet": "x", "iocs": [{"name": "a", "prefix": "A:", "runtime": "epics"}]},
        {"fleet": "x", "iocs": [{"name": "a", "prefix": "A:", "pvs": [{"name": "MY PV"}]}]},
        {"fleet": "x", "iocs": [{"name": "a", "prefix": "A:", "env": {"EPICS_CAS_INTF_ADDR_LIST": "1.2.3.4"}}]},
        {"fleet": "x", "iocs": []},
        {"iocs": [{"name": "a", "prefix": "A:"}]},
    ]
    for data in bad:
        assert list(validator.iter_errors(data)), data
