"""A CA client's and a CA server's network settings, read from an EPICS_CA_* / EPICS_CAS_* mapping.

Pure: the environment is a mapping passed in. Malformed values raise `UsageError` with one line that
names the variable and the bad entry. The two runtimes read some variables differently; where they do,
the functions here say which one they follow (and the docstrings say why):

- caproto: `EPICS_CA_AUTO_ADDR_LIST` counts as yes only when it is "yes" (any case), and an *empty*
  `EPICS_CA_ADDR_LIST` means "broadcast on every interface" even with AUTO=NO. Beacons go to
  255.255.255.255 unless `EPICS_CAS_BEACON_ADDR_LIST` is set and `EPICS_CAS_AUTO_BEACON_ADDR_LIST` is
  not "yes" (caproto/_utils.py: get_address_list, get_beacon_address_list).
- EPICS base (libca, rsrv): a value containing "no" or "NO" means no; anything else, yes. rsrv takes
  `EPICS_CAS_AUTO_BEACON_ADDR_LIST`, falling back to `EPICS_CA_AUTO_ADDR_LIST` (default YES), and then
  beacons to every interface's broadcast.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Mapping

from orchestrator.errors import UsageError
from orchestrator.hostmodel import CA_REPEATER_PORT, CA_SERVER_PORT

Address = tuple[str, int]

_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_NUMERIC = re.compile(r"^[0-9.]+$")


@dataclass(frozen=True)
class Entry:
    """One address-list entry: host (IPv4 or a name) and port, as written."""

    host: str
    port: int
    text: str

    @property
    def is_ip(self) -> bool:
        return host_is_ip(self.host)

    def to_dict(self) -> dict:
        return {"host": self.host, "port": self.port}


@dataclass(frozen=True)
class ClientSettings:
    """What a CA client searches: its address list, whether it adds interface broadcasts, its ports."""

    entries: tuple[Entry, ...]
    auto_addr_list: bool
    server_port: int = CA_SERVER_PORT
    repeater_port: int = CA_REPEATER_PORT
    name_servers: tuple[Entry, ...] = ()
    source: str = "environment"  # where the settings came from, for the report

    def addr_list_text(self) -> str:
        return " ".join(e.text for e in self.entries)

    def to_dict(self) -> dict:
        return {"addr_list": [e.to_dict() for e in self.entries], "auto_addr_list": self.auto_addr_list,
                "server_port": self.server_port, "repeater_port": self.repeater_port,
                "name_servers": [e.to_dict() for e in self.name_servers], "source": self.source}


def client_settings(environ: Mapping[str, str], source: str = "environment") -> ClientSettings:
    """The client settings in `environ` (only EPICS_CA_* keys are read); UsageError on a malformed value."""
    server_port = port_value(environ, "EPICS_CA_SERVER_PORT", CA_SERVER_PORT)
    return ClientSettings(
        entries=addr_list(environ.get("EPICS_CA_ADDR_LIST", ""), server_port, "EPICS_CA_ADDR_LIST"),
        auto_addr_list=yes_no(environ, "EPICS_CA_AUTO_ADDR_LIST", True),
        server_port=server_port,
        repeater_port=port_value(environ, "EPICS_CA_REPEATER_PORT", CA_REPEATER_PORT),
        name_servers=addr_list(environ.get("EPICS_CA_NAME_SERVERS", ""), server_port, "EPICS_CA_NAME_SERVERS"),
        source=source,
    )


def destinations(environ: Mapping[str, str]) -> list[tuple[str, int]]:
    """Where a client with these settings sends its searches: EPICS_CA_ADDR_LIST as (host, port) pairs."""
    return [(e.host, e.port) for e in client_settings(environ).entries]


def yes_no(environ: Mapping[str, str], variable: str, default: bool) -> bool:
    """A strict YES/NO value (any case); unset or empty gives `default`.

    Stricter than both runtimes on purpose: libca reads "No" as yes and caproto reads "TRUE" as no, so
    anything but yes/no is an error here rather than a silent surprise.
    """
    value = environ.get(variable, "").strip()
    if not value:
        return default
    if value.lower() in ("yes", "no"):
        return value.lower() == "yes"
    raise UsageError(f"{variable}={value!r} is not YES or NO", variable, f"set {variable}=YES or {variable}=NO")


def _digits(text: str, most: int = 5) -> bool:
    """ASCII digits only: `str.isdigit` also accepts `²`, which `int()` then refuses (issue 13, class 7)."""
    return 0 < len(text) <= most and text.isascii() and text.isdigit()


def port_value(environ: Mapping[str, str], variable: str, default: int) -> int:
    value = environ.get(variable, "").strip()
    if not value:
        return default
    if not _digits(value) or not 1 <= int(value) <= 65535:
        raise UsageError(f"{variable}={value!r} is not a port number", variable, "use a number from 1 to 65535")
    return int(value)


def addr_list(text: str, default_port: int, variable: str = "EPICS_CA_ADDR_LIST") -> tuple[Entry, ...]:
    """Parse a whitespace-separated `host[:port]` list; the first bad entry raises UsageError naming it."""
    return tuple(parse_entry(item, default_port, variable) for item in text.split())


def parse_entry(item: str, default_port: int, variable: str = "EPICS_CA_ADDR_LIST") -> Entry:
    host, sep, port_text = item.partition(":")
    problem = _entry_problem(host, sep, port_text, item)
    if problem:
        raise UsageError(f"{variable} entry {item!r} {problem}", variable,
                         "write entries as host[:port] separated by spaces, e.g. 198.51.100.255 10.0.0.5:5070")
    return Entry(host, int(port_text) if sep else default_port, item)


def _entry_problem(host: str, sep: str, port_text: str, item: str) -> str | None:
    if "," in item or ";" in item:
        return "contains a comma or semicolon (entries are separated by spaces)"
    if item.count(":") > 1 or item.startswith("["):
        return "is an IPv6 address (Channel Access searches IPv4 addresses only)"
    if sep and (not _digits(port_text) or not 1 <= int(port_text) <= 65535):
        return f"has port {port_text!r}, not a number from 1 to 65535"
    if not host:
        return "has no host"
    if _NUMERIC.fullmatch(host):
        parts = host.split(".")
        if len(parts) != 4 or not all(_digits(p, 3) and int(p) <= 255 for p in parts):
            return "is not a dotted IPv4 address (four numbers 0-255)"
        return None
    if not _HOSTNAME.fullmatch(host):
        return "is neither an IPv4 address nor a host name"
    return None


# -- servers ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BeaconSettings:
    """Where a server's beacons go: automatic targets on or off, the explicit list, and why."""

    auto: bool
    targets: tuple[str, ...]  # explicit EPICS_CAS_BEACON_ADDR_LIST entries
    auto_targets: str  # in words: "255.255.255.255" or "every interface's broadcast"
    reason: str


def beacon_settings(runtime: str, environ: Mapping[str, str]) -> BeaconSettings:
    """How a server of `runtime` with `environ` chooses beacon targets (R11), following each runtime's code."""
    explicit = tuple(environ.get("EPICS_CAS_BEACON_ADDR_LIST", "").split())
    auto_var = environ.get("EPICS_CAS_AUTO_BEACON_ADDR_LIST", "")
    if runtime == "caproto":
        if not explicit:
            return BeaconSettings(True, (), "255.255.255.255",
                                  "EPICS_CAS_BEACON_ADDR_LIST is empty, so caproto adds 255.255.255.255"
                                  + ("" if auto_var else " (EPICS_CAS_AUTO_BEACON_ADDR_LIST unset)"))
        if not auto_var or auto_var.lower() == "yes":
            return BeaconSettings(True, explicit, "255.255.255.255",
                                  f"EPICS_CAS_AUTO_BEACON_ADDR_LIST is {auto_var or 'unset (default YES)'}")
        return BeaconSettings(False, explicit, "", f"EPICS_CAS_AUTO_BEACON_ADDR_LIST={auto_var}")
    # EPICS base rsrv (softioc and anything else that speaks CA like EPICS base)
    if auto_var:
        value, why = auto_var, f"EPICS_CAS_AUTO_BEACON_ADDR_LIST={auto_var}"
    else:
        fallback = environ.get("EPICS_CA_AUTO_ADDR_LIST", "")
        value = fallback or "YES"
        why = ("EPICS_CAS_AUTO_BEACON_ADDR_LIST unset, falling back to "
               + (f"EPICS_CA_AUTO_ADDR_LIST={fallback}" if fallback else "EPICS_CA_AUTO_ADDR_LIST (default YES)"))
    auto = not ("no" in value or "NO" in value)
    return BeaconSettings(auto, explicit, "every interface's broadcast" if auto else "", why)


def host_is_ip(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
        return True
    except ValueError:
        return False
