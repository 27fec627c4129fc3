"""What every exporter says the same way: image, user, hardening, labels, plan hash, restart, health check.

Pure: image tags and hardening come in as an `ImageInfo` (built from `orchestrator.images.build` by default, or
given by tests), so the same plan always exports the same text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping

from orchestrator.plan.model import Plan, PlannedIOC

LABEL_FLEET = "org.iocfleet.fleet"
LABEL_IOC = "org.iocfleet.ioc"
LABEL_PLAN = "org.iocfleet.plan"
LABEL_ROLE = "org.iocfleet.role"
LABEL_RUNTIME = "org.iocfleet.runtime"
LABEL_HOST = "org.iocfleet.host"
REPEATER_SERVICE = "ca-repeater"
BUILT_RUNTIMES = ("caproto", "softioc")

# Health checks read `<prefix>HEARTBEAT` over CA from inside the IOC's container, with the container's
# own (planned) EPICS_CA_* settings. No `$` anywhere: compose and swarm would interpolate it.
# caproto: its sync client; repeater=False so a health check never spawns a repeater (R12). It names
# the client with getpass.getuser(), which fails for a UID without a passwd entry (IOC_UID): set USER.
CAPROTO_HEALTH = ("import os, sys; os.environ.setdefault('USER', 'iocfleet'); "
                  "from caproto.sync.client import read; read(sys.argv[1], timeout=3, repeater=False)")
# softioc: libca from epicscorelibs (the image has no caproto); 1 is ECA_NORMAL, 5 is DBR_LONG.
LIBCA_HEALTH = (
    "import ctypes, sys; from epicscorelibs.path import get_lib; ca = ctypes.CDLL(get_lib('ca')); "
    "ca.ca_pend_io.argtypes = [ctypes.c_double]; chid = ctypes.c_void_p(); value = ctypes.c_long(); "
    "ok = ca.ca_context_create(0) == 1 "
    "and ca.ca_create_channel(sys.argv[1].encode(), None, None, 0, ctypes.byref(chid)) == 1 "
    "and ca.ca_pend_io(3.0) == 1 and ca.ca_array_get(5, 1, chid, ctypes.byref(value)) == 1 "
    "and ca.ca_pend_io(3.0) == 1; sys.exit(0 if ok else 1)"
)
HEALTH_SNIPPETS = {"caproto": CAPROTO_HEALTH, "softioc": LIBCA_HEALTH}
# The repeater is caproto's; it exits 0 when another repeater already holds the port (one per host).
REPEATER_ARGV = ("python3", "-m", "caproto.commandline.repeater", "--quiet")


@dataclass(frozen=True)
class ImageInfo:
    """The image tag and the container hardening of each built runtime (caproto, softioc)."""

    tags: Mapping[str, str]
    hardening: Mapping[str, dict] = field(default_factory=dict)
    uid: int = 10064  # images.IOC_UID

    @classmethod
    def from_images(cls) -> "ImageInfo":
        """Tags and hardening as `orchestrator.images.build` defines them (reads ioc_images/, no Docker call)."""
        from orchestrator.images import build as images

        return cls({r: images.image_tag(r) for r in BUILT_RUNTIMES},
                   {r: images.container_hardening(r) for r in BUILT_RUNTIMES}, images.IOC_UID)

    def tag(self, runtime: str) -> str:
        return self.tags[runtime]

    def hardening_of(self, runtime: str) -> dict:
        """Hardening of a built runtime; `image` IOCs get what any CA server tolerates (no caps, no setuid)."""
        if runtime in self.hardening:
            return dict(self.hardening[runtime])
        if runtime in BUILT_RUNTIMES:
            return {"read_only": True, "tmpfs": {"/tmp": "rw,nosuid,nodev,noexec,size=16m,mode=1777"},
                    "cap_drop": ["ALL"], "security_opt": ["no-new-privileges"]}
        return {"cap_drop": ["ALL"], "security_opt": ["no-new-privileges"]}


def image_of(ioc: PlannedIOC, info: ImageInfo) -> str:
    """The image an IOC runs: its own `image` if set (always for the `image` runtime), else its runtime's.

    Same rule as the docker backend's `image_ref`, so exported and launched IOCs carry the same plan hash.
    """
    if ioc.runtime == "image" or ioc.image:
        return str(ioc.image or "")
    return info.tag(ioc.runtime)


def user_of(ioc: PlannedIOC, info: ImageInfo) -> str:
    """The IOC's `user`, else the hardening's user, else the shared IOC UID (R2: one UID per port group)."""
    if ioc.user:
        return str(ioc.user)
    return str(info.hardening_of(ioc.runtime).get("user") or f"{info.uid}:{info.uid}")


def restart_of(ioc: PlannedIOC, restarts: Mapping[str, str]) -> str:
    """The restart policy of the fleet-file IOC this one came from (default on-failure)."""
    own = getattr(ioc, "restart", None)
    return own or restarts.get(ioc.declared_as, "on-failure")


def restarts_of(fleet) -> dict[str, str]:
    """Restart policy per fleet-file IOC name (PlannedIOC does not carry it yet)."""
    if fleet is None:
        return {}
    return {i.name: i.restart for i in fleet.iocs}


def health_argv(ioc: PlannedIOC) -> list[str] | None:
    """The command that exits 0 when the IOC answers a CA read of its HEARTBEAT; None for `image` IOCs."""
    snippet = HEALTH_SNIPPETS.get(ioc.runtime)
    if snippet is None:
        return None
    return ["python3", "-c", snippet, ioc.prefix + "HEARTBEAT"]


def plan_hash(ioc: PlannedIOC, image: str) -> str:
    """The `org.iocfleet.plan` label: the docker backend's digest, so `iocfleet status` and `up` treat an
    exported IOC whose plan is unchanged as up to date."""
    from orchestrator.run.backends import plan_hash as backend_plan_hash

    return backend_plan_hash(ioc, image)


def labels_of(plan: Plan, ioc: PlannedIOC, digest: str, host: str | None = None) -> dict[str, str]:
    """The labels the docker backend puts on an IOC container (plus the host of a multi-host fleet)."""
    labels = {LABEL_FLEET: plan.fleet, LABEL_IOC: ioc.name, LABEL_PLAN: digest, LABEL_ROLE: "ioc",
              LABEL_RUNTIME: ioc.runtime}
    if host:
        labels[LABEL_HOST] = host
    return labels


def repeater_labels(plan: Plan, host: str | None = None) -> dict[str, str]:
    """The labels the docker backend puts on a fleet's repeater container."""
    labels = {LABEL_FLEET: plan.fleet, LABEL_IOC: REPEATER_SERVICE, LABEL_PLAN: "repeater", LABEL_ROLE: "repeater",
              LABEL_RUNTIME: "caproto"}
    if host:
        labels[LABEL_HOST] = host
    return labels


def repeater_name(plan: Plan) -> str:
    """The repeater's service name, never the name of one of the fleet's IOCs."""
    taken = {i.name for i in plan.iocs}
    name = REPEATER_SERVICE
    while name in taken:
        name = "iocfleet-" + name
    return name


def repeater_env(plan: Plan) -> dict[str, str]:
    return {"EPICS_CA_REPEATER_PORT": str(plan.repeater.port)}


def wants_repeater(plan: Plan) -> bool:
    """The fleet runs its own repeater when the plan says so (R12); `host` means one already runs."""
    return plan.repeater.provider == "fleet"


def escape_dollars(value):
    """Escape `$` for compose/stack interpolation in every string of a nested structure (keys untouched)."""
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, dict):
        return {k: escape_dollars(v) for k, v in value.items()}
    if isinstance(value, list):
        return [escape_dollars(v) for v in value]
    return value


def _dumper():
    import yaml

    class NoAliasDumper(yaml.SafeDumper):
        """Writes a mapping shared by two places twice instead of as an anchor and alias."""

        def ignore_aliases(self, data) -> bool:
            return True

    return NoAliasDumper


def to_yaml(data, header: str = "") -> str:
    """Deterministic YAML: insertion order kept, long strings never folded, no anchors."""
    import yaml

    text = yaml.dump(data, Dumper=_dumper(), sort_keys=False, default_flow_style=False, width=1 << 20,
                     allow_unicode=True)
    return header + text


def to_yaml_documents(documents: list, header: str = "") -> str:
    import yaml

    text = yaml.dump_all(documents, Dumper=_dumper(), sort_keys=False, default_flow_style=False, width=1 << 20,
                         allow_unicode=True, explicit_start=True)
    return header + text


def header_lines(plan: Plan, what: str) -> str:
    """A comment header naming the fleet, strategy and the client settings that reach it."""
    env = " ".join(f"{k}={v!r}" if " " in v else f"{k}={v}" for k, v in plan.client_env)
    return (f"# {what} exported by iocfleet from the plan of fleet {plan.fleet!r} "
            f"(strategy {plan.strategy}, interface {plan.interface}).\n"
            f"# Clients reach every IOC with: {env}\n")


MEMORY_RE = re.compile(r"^([0-9]+)([bkmg]?)$", re.IGNORECASE)


def k8s_quantity(memory: str) -> str:
    """Docker's memory notation (256m = 256 MiB) as a Kubernetes quantity (256Mi)."""
    match = MEMORY_RE.fullmatch(memory)
    if not match:
        raise ValueError(f"not a docker memory size: {memory!r}")
    number, unit = match.groups()
    return number + {"": "", "b": "", "k": "Ki", "m": "Mi", "g": "Gi"}[unit.lower()]

