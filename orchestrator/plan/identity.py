"""What a fleet's IOCs and repeater are called wherever they run: labels, container names, images, users.

One definition for both backends and every exporter, so `status`, `down` and `up` find an exported
container as their own, and a plan hashes the same whoever launches it. Pure: image tags come in as a
function (`images.catalog.image_tag` at run time, an `ImageInfo` when exporting).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from typing import Callable

from orchestrator.plan.model import PlannedIOC

LABEL_FLEET = "org.iocfleet.fleet"
LABEL_IOC = "org.iocfleet.ioc"
LABEL_PLAN = "org.iocfleet.plan"
LABEL_ROLE = "org.iocfleet.role"
LABEL_RUNTIME = "org.iocfleet.runtime"
LABEL_HOST = "org.iocfleet.host"  # the host of a multi-host fleet (exports)
LABEL_MEMBERS = "org.iocfleet.members"  # a pack's IOCs, space separated (issue 14)

# One UID for every IOC container: Linux admits a socket to a SO_REUSEPORT group only if its owner's
# UID matches the group's (rule R2), so IOCs sharing port 5064 must all run as the same user.
IOC_UID = 10064
IOC_USER = f"{IOC_UID}:{IOC_UID}"

# The fleet's CA repeater (R12): caproto's, one per host.
REPEATER = "ca-repeater"  # its instance and service name
REPEATER_ROLE = "repeater"
REPEATER_RUNTIME = "caproto"
REPEATER_PLAN = "repeater"  # its plan label: it has no plan to hash
REPEATER_MODULE = "caproto.commandline.repeater"


def container_name(fleet: str, name: str) -> str:
    """The container of IOC (or repeater) `name` of `fleet`."""
    return f"iocfleet-{fleet}-{name}"


def image_ref(ioc: PlannedIOC, tag_of: Callable[[str], str]) -> str:
    """The image an IOC runs: its own `image` if set (always for the `image` runtime), else `tag_of(runtime)`."""
    if ioc.runtime == "image" or ioc.image:
        return str(ioc.image or "")
    return tag_of(ioc.runtime)


def plan_hash(ioc: PlannedIOC, image: str | None) -> str:
    """The `org.iocfleet.plan` label: a digest of everything that, when changed, means the IOC must be
    recreated (its plan and the image it runs)."""
    data = {**ioc.to_dict(), "limits": asdict(ioc.limits), "image_ref": image}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def ioc_labels(fleet: str, ioc: PlannedIOC, digest: str, host: str | None = None) -> dict[str, str]:
    """The labels of an IOC's container: found by fleet and name, compared by plan hash."""
    labels = {LABEL_FLEET: fleet, LABEL_IOC: ioc.name, LABEL_PLAN: digest, LABEL_ROLE: "ioc",
              LABEL_RUNTIME: ioc.runtime}
    if ioc.members:
        labels[LABEL_MEMBERS] = " ".join(ioc.members)
    if host:
        labels[LABEL_HOST] = host
    return labels


def repeater_labels(fleet: str, host: str | None = None) -> dict[str, str]:
    """The labels of a fleet's repeater container."""
    labels = {LABEL_FLEET: fleet, LABEL_IOC: REPEATER, LABEL_PLAN: REPEATER_PLAN, LABEL_ROLE: REPEATER_ROLE,
              LABEL_RUNTIME: REPEATER_RUNTIME}
    if host:
        labels[LABEL_HOST] = host
    return labels


def repeater_env(port: int) -> dict[str, str]:
    """The repeater's environment: the port it holds."""
    return {"EPICS_CA_REPEATER_PORT": str(port)}


def repeater_argv(python: str = "python3") -> list[str]:
    """The repeater's command line (`python` is the interpreter: python3 in an image, ours for a process)."""
    return [python, "-m", REPEATER_MODULE]
