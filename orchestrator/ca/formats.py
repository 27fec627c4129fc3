"""Client settings (EPICS_CA_* variables) written in the formats the tools that read them expect.

Pure: a mapping in, text out. `shell` is for `eval`, `dotenv` for `docker run --env-file`, compose
`env_file:` and python-dotenv, `json` for programs, and `phoebus` for a Phoebus `settings.ini`
(`phoebus -settings FILE`): Phoebus's JCA client reads its own preferences
(`org.phoebus.pv.ca/addr_list`, ...), not the EPICS_CA_* environment, unless started with
`-Djca.use_env=true`.
"""

from __future__ import annotations

import json
import shlex
from typing import Mapping

from orchestrator.errors import UsageError

FORMATS = ("shell", "dotenv", "json", "phoebus")

# EPICS_CA_* variable -> Phoebus preference of the package org.phoebus.pv.ca (pv_ca_preferences.properties)
PHOEBUS_CA = {
    "EPICS_CA_ADDR_LIST": "addr_list",
    "EPICS_CA_AUTO_ADDR_LIST": "auto_addr_list",
    "EPICS_CA_MAX_ARRAY_BYTES": "max_array_bytes",
    "EPICS_CA_SERVER_PORT": "server_port",
    "EPICS_CA_REPEATER_PORT": "repeater_port",
}
PHOEBUS_PACKAGE = "org.phoebus.pv.ca"


def render(env: Mapping[str, str], fmt: str, fleet: str = "") -> str:
    """`env` in format `fmt` (one of FORMATS); UsageError for another format."""
    if fmt == "shell":
        return shell(env)
    if fmt == "dotenv":
        return dotenv(env)
    if fmt == "json":
        return json.dumps(dict(env), indent=2)
    if fmt == "phoebus":
        return phoebus(env, fleet)
    raise UsageError(f"unknown format {fmt!r}", "--format", f"use one of: {', '.join(FORMATS)}")


def shell(env: Mapping[str, str]) -> str:
    """`export NAME='value'` lines a POSIX shell can eval."""
    return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in env.items())


def dotenv(env: Mapping[str, str]) -> str:
    """`NAME=value` lines, unquoted: `docker run --env-file` takes the rest of the line literally (quotes
    would become part of the value), and compose and python-dotenv read an unquoted value to the line end."""
    for key, value in env.items():
        if "\n" in value or value != value.strip() or value.startswith(("'", '"')) or " #" in value:
            raise UsageError(f"{key}={value!r} cannot be written unquoted in a .env file", key,
                             "use --format shell or json")
    return "\n".join(f"{k}={v}" for k, v in env.items())


def phoebus(env: Mapping[str, str], fleet: str = "") -> str:
    """A Phoebus settings.ini: the CA client preferences that match `env`, and CA as the default PV type."""
    lines = [f"# Phoebus settings for fleet {fleet}".rstrip() + " (iocfleet env --format phoebus)",
             "# use: phoebus -settings THIS_FILE",
             "org.phoebus.pv/default=ca"]
    for variable, key in PHOEBUS_CA.items():
        if variable not in env:
            continue
        value = env[variable]
        if variable == "EPICS_CA_AUTO_ADDR_LIST":
            value = "false" if value.strip().lower() == "no" else "true"
        lines.append(f"{PHOEBUS_PACKAGE}/{key}={value}")
    unmapped = [v for v in env if v not in PHOEBUS_CA]
    if unmapped:
        lines.append(f"# not a Phoebus CA preference, left out: {', '.join(unmapped)}")
    return "\n".join(lines)
