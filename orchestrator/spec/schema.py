"""JSON Schema of the fleet file, for editors (`iocfleet schema > fleet.schema.json`).

Built from the same constants the validator uses, so the two cannot drift on keys, choices or ranges.
The validator stays the authority: it also checks what a schema cannot say well (duplicate names across
IOCs, PV name length with the prefix, values that must fit a PV's type).
"""

from __future__ import annotations

from orchestrator.spec import model as spec
from orchestrator.spec import pvs as specpvs
from orchestrator.spec import real
from orchestrator.spec import validate as specrules
from orchestrator.spec.fields import NAME_RE


def _name_schema() -> dict:
    return {"type": "string", "pattern": NAME_RE.pattern}


def _closed(properties: dict, required: tuple[str, ...] = (), description: str = "") -> dict:
    out = {"type": "object", "additionalProperties": False, "properties": properties}
    if required:
        out["required"] = list(required)
    if description:
        out["description"] = description
    return out


def fleet_schema() -> dict:
    """The JSON Schema (draft 2020-12) of a fleet file."""
    pv_name = {"type": "string", "pattern": specpvs.PV_CHARS.pattern, "maxLength": specpvs.PV_NAME_MAX}
    pv = _closed({
        "name": {**pv_name, "description": "PV name after the IOC prefix"},
        "type": {"enum": list(spec.PV_TYPES), "default": "float"},
        "value": {"description": "initial value matching `type` (a list for arrays)"},
        "count": {"type": "integer", "minimum": 1, "maximum": specpvs.MAX_COUNT, "default": 1},
        "sim": {"enum": list(spec.SIMULATIONS), "description": "simulated value (float/int only)"},
        "rate_hz": {"type": "number", "exclusiveMinimum": 0, "maximum": specpvs.MAX_RATE_HZ, "default": 1},
        "enum_strings": {"type": "array", "minItems": 1, "maxItems": specpvs.ENUM_MAX_STRINGS,
                         "items": {"type": "string", "maxLength": specpvs.ENUM_STRING_MAX}},
        "writable": {"type": "boolean", "default": True},
    }, ("name",), "a process variable the IOC serves")
    ioc = _closed({
        "name": _name_schema(),
        "runtime": {"enum": list(spec.RUNTIMES), "default": "caproto"},
        "prefix": {"type": "string", "minLength": 1, "description": "PV prefix; may contain {i} for replicas"},
        "replicas": {"type": "integer", "minimum": 1, "maximum": specrules.MAX_REPLICAS, "default": 1},
        "pvs": {"type": "array", "items": {"oneOf": [pv, pv_name]}},
        "image": {"type": "string", "minLength": 1},
        "command": {"type": "array", "items": {"type": "string"}, "description": "argv, never a shell string"},
        "env": {"type": "object", "propertyNames": {"pattern": specrules.ENV_KEY_RE.pattern,
                                                     "not": {"enum": list(specrules.PLAN_OWNED_ENV)}},
                "additionalProperties": {"type": ["string", "number"]}},
        "user": {"type": ["string", "integer"]},
        "read_only": {"type": "boolean", "default": True,
                      "description": "read-only root filesystem with a /tmp tmpfs (containers); false for images "
                                     "that write elsewhere"},
        "limits": _closed({"memory": {"type": "string", "pattern": specrules.MEMORY_RE.pattern},
                           "pids": {"type": "integer", "minimum": 16, "maximum": 65536}}),
        "restart": {"enum": list(spec.RESTART_POLICIES), "default": "on-failure"},
        "host": {"type": "string"},
        # real IOCs (docs/real-iocs.md)
        "readiness": {"enum": list(spec.READINESS),
                      "description": "pvs: read every PV; server: its CA server is up; none: do not wait"},
        "entrypoint": {"type": "array", "minItems": 1, "items": {"type": "string"}, "description": "image only"},
        "workdir": {"type": "string", "pattern": "^/", "description": "image only"},
        "mounts": {"type": "array", "items": _closed({
            "source": {"type": "string", "minLength": 1, "description": "host path, relative to the fleet file"},
            "target": {"type": "string", "pattern": "^/"},
            "read_only": {"type": "boolean", "default": True}}, ("source", "target"))},
        "stdin_open": {"type": "boolean", "default": False, "description": "image only"},
        "db": {"type": "array", "description": "softioc only: EPICS databases loaded before iocInit",
               "items": {"oneOf": [{"type": "string"}, _closed({
                   "file": {"type": "string", "minLength": 1},
                   "macros": {"type": "object", "additionalProperties": {"type": ["string", "number"]}}},
                   ("file",))]}},
        "module": {"type": "string", "pattern": real.MODULE_RE.pattern,
                   "description": "caproto only: your PVGroup, package.module:Class"},
        "python_path": {"type": "string", "description": "folder the module is importable from"},
        "kwargs": {"type": "object", "description": "keyword arguments of the PVGroup"},
        "iocstats": {"oneOf": [{"type": "string", "minLength": 1, "pattern": r"^[A-Za-z0-9_\-:\[\]<>;.{}]*[^:]$"},
                               {"const": False}],
                     "description": "iocStats IOC name (NAME:HEARTBEAT, NAME:UPTIME, ...); default: the prefix "
                                    "without its trailing ':'; false: no iocStats PVs"},
    }, ("name", "prefix"), "one IOC (or a set of replicas)")
    network = _closed({
        "interface": {"type": "string", "default": "auto", "maxLength": 15},
        "strategy": {"enum": list(spec.STRATEGIES), "default": "auto"},
        "base_port": {"type": "integer", "minimum": 1024, "maximum": 65535 - specrules.MAX_REPLICAS, "default": 5064},
        "clients": {"enum": list(spec.CLIENT_PLACES), "default": "auto"},
        "fanout": {"enum": list(spec.FANOUTS), "default": "none"},
    })
    host = _closed({"name": _name_schema(), "interface": {"type": "string", "maxLength": 15},
                    "address": {"type": "string", "description": "IPv4 CIDR, e.g. 10.0.1.5/24"}}, ("name",))
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "iocfleet fleet file",
        **_closed({"fleet": _name_schema(), "network": network, "hosts": {"type": "array", "items": host},
                   "iocs": {"type": "array", "minItems": 1, "items": ioc},
                   "pack": {"oneOf": [{"type": "boolean"},
                                      {"type": "integer", "minimum": 1, "maximum": spec.PACK_SIZE_MAX}],
                            "default": False,
                            "description": "run caproto IOCs packed, many in one process (true, or a pack size)"},
                   "pack_size": {"type": "integer", "minimum": 1, "maximum": spec.PACK_SIZE_MAX,
                                 "default": spec.PACK_SIZE_DEFAULT}}, ("fleet", "iocs")),
    }
