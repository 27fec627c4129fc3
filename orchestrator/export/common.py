"""What every exporter says the same way: image, user, hardening, health check, YAML.

Names, labels and the plan hash are `plan.identity`'s, as the backends use them. Pure: image tags and
hardening come in as an `ImageInfo` (from `orchestrator.images.catalog` by default, or given by tests),
so the same plan always exports the same text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping

from orchestrator.images.catalog import RUNTIMES as BUILT_RUNTIMES
from orchestrator.images.catalog import TMPFS, container_hardening, image_tag
from orchestrator.plan import identity
from orchestrator.plan.identity import (IOC_UID, LABEL_FLEET, LABEL_HOST, LABEL_IOC, LABEL_PLAN, LABEL_ROLE,
                                        LABEL_RUNTIME, REPEATER, plan_hash)
from orchestrator.plan.model import Plan, PlannedIOC

__all__ = ["LABEL_FLEET", "LABEL_HOST", "LABEL_IOC", "LABEL_PLAN", "LABEL_ROLE", "LABEL_RUNTIME", "plan_hash",
           "ImageInfo", "CAPROTO_HEALTH", "LIBCA_HEALTH", "REPEATER_ARGV"]

# Health checks read the IOC's liveness PV (iocStats `NAME:UPTIME`, else the old `<prefix>UPTIME`) over CA
# from inside the IOC's container, with the container's own (planned) EPICS_CA_* settings, as a string
# (any PV reads as DBR_STRING). No `$` anywhere: compose and swarm would interpolate it.
# caproto: its sync client; repeater=False so a health check never spawns a repeater (R12). It names
# the client with getpass.getuser(), which fails for a UID without a passwd entry (IOC_UID): set USER.
CAPROTO_HEALTH = ("import os, sys; os.environ.setdefault('USER', 'iocfleet'); "
                  "from caproto.sync.client import read; read(sys.argv[1], timeout=3, repeater=False)")
# softioc: libca from epicscorelibs (the image has no caproto); 1 is ECA_NORMAL, 0 is DBR_STRING.
LIBCA_HEALTH = (
    "import ctypes, sys; from epicscorelibs.path import get_lib; ca = ctypes.CDLL(get_lib('ca')); "
    "ca.ca_pend_io.argtypes = [ctypes.c_double]; chid = ctypes.c_void_p(); value = ctypes.create_string_buffer(40); "
    "ok = ca.ca_context_create(0) == 1 "
    "and ca.ca_create_channel(sys.argv[1].encode(), None, None, 0, ctypes.byref(chid)) == 1 "
    "and ca.ca_pend_io(3.0) == 1 and ca.ca_array_get(0, 1, chid, value) == 1 "
    "and ca.ca_pend_io(3.0) == 1; sys.exit(0 if ok else 1)"
)
HEALTH_SNIPPETS = {"caproto": CAPROTO_HEALTH, "softioc": LIBCA_HEALTH}
# The repeater is caproto's; it exits 0 when another repeater already holds the port (one per host).
REPEATER_ARGV = (*identity.repeater_argv(), "--quiet")


@dataclass(frozen=True)
class ImageInfo:
    """The image tag and the container hardening of each built runtime (caproto, softioc)."""

    tags: Mapping[str, str]
    hardening: Mapping[str, dict] = field(default_factory=dict)
    uid: int = IOC_UID

    @classmethod
    def from_images(cls) -> "ImageInfo":
        """Tags and hardening as `orchestrator.images.catalog` defines them (reads ioc_images/, no Docker call)."""
        return cls({r: image_tag(r) for r in BUILT_RUNTIMES}, {r: container_hardening(r) for r in BUILT_RUNTIMES},
                   IOC_UID)

    def tag(self, runtime: str) -> str:
        return self.tags[runtime]

    def hardening_of(self, runtime: str) -> dict:
        """Hardening of a built runtime; `image` IOCs get what any CA server tolerates (no caps, no setuid)."""
        if runtime in self.hardening:
            return dict(self.hardening[runtime])
        # `image` IOCs are hardened like ours (non-root via user_of, read-only root, /tmp tmpfs) unless
        # the fleet file says `read_only: false` (see ioc_hardening)
        return {"read_only": True, "tmpfs": {"/tmp": "rw,nosuid,nodev,noexec,size=16m,mode=1777"},
                "cap_drop": ["ALL"], "security_opt": ["no-new-privileges"]}


def ioc_hardening(ioc: PlannedIOC, info: ImageInfo) -> dict:
    """The hardening of one IOC: its runtime's, without the read-only root when `read_only: false`."""
    hardening = info.hardening_of(ioc.runtime)
    if not ioc.read_only:
        hardening.pop("read_only", None)
        hardening.pop("tmpfs", None)
    return hardening


def image_of(ioc: PlannedIOC, info: ImageInfo) -> str:
    """The image an IOC runs (`identity.image_ref` with the exported tags: its own `image` if set, always for
    the `image` runtime, else its runtime's). Refuses IOCs that need host files or container options an
    export does not carry (real IOCs)."""
    _refuse_uncarried(ioc)
    return identity.image_ref(ioc, info.tag)


def _refuse_uncarried(ioc: PlannedIOC) -> None:
    """An exported IOC would run without its mounts, databases or group code: refuse instead (exit 2)."""
    from orchestrator.errors import UsageError

    used = [name for name, value in (("mounts", ioc.mounts), ("db", ioc.db),
                                     ("python_path", ioc.group and ioc.group.python_path),
                                     ("entrypoint", ioc.entrypoint), ("workdir", ioc.workdir),
                                     ("stdin_open", ioc.stdin_open)) if value]
    if used:
        raise UsageError(f"IOC {ioc.name} uses {', '.join(used)}, which exports do not carry yet",
                         f"iocs[{ioc.declared_as}]", "run it with `iocfleet up`, or build an image that holds "
                         "its files and settings (docs/real-iocs.md)")


def user_of(ioc: PlannedIOC, info: ImageInfo) -> str:
    """The IOC's `user`, else the hardening's user, else the shared IOC UID (R2: one UID per port group)."""
    if ioc.user:
        return str(ioc.user)
    return str(info.hardening_of(ioc.runtime).get("user") or f"{info.uid}:{info.uid}")


def health_argv(ioc: PlannedIOC) -> list[str] | None:
    """The command that exits 0 when the IOC answers a CA read of its liveness PV (iocStats UPTIME);
    None for `image` IOCs (their image may have neither python3 nor a CA client)."""
    snippet = HEALTH_SNIPPETS.get(ioc.runtime)
    if snippet is None or not ioc.builtin:  # only iocfleet's own programs serve HEARTBEAT
        return None
    return ["python3", "-c", snippet, ioc.liveness_pv]


# Timing shared by the docker backend's healthcheck, compose/swarm healthchecks and Kubernetes probes.
HEALTH_INTERVAL_S, HEALTH_TIMEOUT_S, HEALTH_RETRIES, HEALTH_START_S = 10, 5, 3, 15


def labels_of(plan: Plan, ioc: PlannedIOC, digest: str, host: str | None = None) -> dict[str, str]:
    """The labels the docker backend puts on an IOC container (plus the host of a multi-host fleet)."""
    return identity.ioc_labels(plan.fleet, ioc, digest, host)


def free_service_name(plan: Plan, name: str) -> str:
    """`name`, prefixed with `iocfleet-` until it is no IOC's and no pack's name (a service of its own)."""
    taken = {i.name for i in plan.iocs} | {u.name for u in plan.units()}
    while name in taken:
        name = "iocfleet-" + name
    return name


def repeater_name(plan: Plan) -> str:
    """The repeater's service name, never the name of one of the fleet's IOCs or packs."""
    return free_service_name(plan, REPEATER)


def repeater_env(plan: Plan) -> dict[str, str]:
    return identity.repeater_env(plan.repeater.port)


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

