"""Export a fleet file: read it, inspect this host once, plan every host, render. The one I/O step.

`export_file` is what `iocfleet export compose|swarm|k8s` calls; everything after the snapshot is the pure
exporters of this package.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import UsageError
from orchestrator.hostmodel import HostSnapshot
from orchestrator.findings import Finding
from orchestrator.plan.model import Plan
from orchestrator import spec
from orchestrator.export.common import ImageInfo
from orchestrator.export.compose import compose_yaml
from orchestrator.export.k8s import manifests_yaml
from orchestrator.export.swarm import stack_yaml
from orchestrator.plan import conflicts, multihost
from orchestrator.plan.onhost import inspect_host

KINDS = ("compose", "swarm", "k8s", "bob", "pydm")
DISPLAY_KINDS = ("bob", "pydm")


@dataclass(frozen=True)
class Exported:
    """The exported text, the plans it was made from (by host) and the findings of this host's plan."""

    kind: str
    text: str
    plans: dict[str, Plan]
    findings: tuple[Finding, ...]
    files: dict[str, str] | None = None  # display kinds: {file name: text} of a directory

    def to_dict(self) -> dict:
        data = {"kind": self.kind, "plans": {h: p.to_dict() for h, p in self.plans.items()},
                "findings": [f.to_dict() for f in self.findings]}
        if self.files is not None:
            data["files"] = sorted(self.files)
        return data


def export_file(kind: str, path: str | Path, *, strategy: str | None = None, interface: str | None = None,
                host: str | None = None, node: str | None = None, namespace: str | None = None,
                repeater: bool = True, snapshot: HostSnapshot | None = None,
                images: ImageInfo | None = None, flavor: str = "plain", stopped: tuple[str, ...] = (),
                compose_v1: bool = False) -> Exported:
    """Export the fleet file at `path` as `kind` (compose, swarm or k8s).

    compose and swarm describe one host: the fleet's only host, or `host`. k8s describes every host.
    `node` is this machine's node name (default: its hostname); `snapshot` replaces inspecting it.
    """
    if kind not in KINDS:
        raise UsageError(f"unknown export kind {kind!r}", fix=f"use one of {', '.join(KINDS)}")
    fleet = spec.load(path)
    if snapshot is None:
        snapshot = inspect_host(fleet)
    if node is None:
        import socket

        node = socket.gethostname()
    remote_names = {h.name for h in fleet.hosts if h.address}
    if node in remote_names and any(i.host is None or i.host not in remote_names for i in fleet.iocs):
        # This machine's IOCs would be filed under a remote host's name and then replaced by its IOCs.
        raise UsageError(f"--node {node!r} is the name of a declared remote host, not of this machine", "--node",
                         "give this machine's node name, or declare this machine in `hosts:` without an address")
    # The file runs later, maybe elsewhere: plan as if no repeater held UDP 5065 here now, so the export
    # always carries the fleet's repeater (which exits 0 where one already runs, R12). The check below
    # still sees this host as it is.
    unheld = dataclasses.replace(snapshot, ca_ports=())
    plans = multihost.plan_hosts(fleet, unheld, local_name=node, strategy=strategy, interface=interface)
    info = images or ImageInfo.from_images()
    local = next((p for name, p in plans.items() if not _declared_remote(fleet, name)), None)
    findings = tuple(conflicts.check(local, snapshot)) if local is not None else ()
    if kind in DISPLAY_KINDS:
        from orchestrator.export.bob import bob_files
        from orchestrator.export.pydm import pydm_files

        files = bob_files(plans) if kind == "bob" else pydm_files(plans)
        return Exported(kind, "", plans, findings, files)
    if kind == "k8s":
        text = manifests_yaml(plans, fleet, info, repeater, namespace, flavor=flavor, stopped=stopped)
        return Exported(kind, text, plans, findings)
    chosen = _one_host(plans, host, str(path))
    if kind == "compose":
        text = compose_yaml(plans[chosen], fleet, info, repeater, host=chosen, v1=compose_v1)
    else:
        text = stack_yaml(plans[chosen], fleet, info, repeater, node=chosen)
    return Exported(kind, text, {chosen: plans[chosen]}, findings if plans[chosen] is local else ())


def _declared_remote(fleet, name: str) -> bool:
    return any(h.name == name and h.address for h in fleet.hosts)


def _one_host(plans: dict[str, Plan], host: str | None, source: str) -> str:
    if host is not None:
        if host not in plans:
            raise UsageError(f"no IOCs planned on host {host!r}", where=source,
                             fix=f"use one of: {', '.join(plans) or 'none'}")
        return host
    if len(plans) != 1:
        raise UsageError(f"the fleet spans {len(plans)} hosts ({', '.join(plans)})", where=source,
                         fix="export one with --host NAME, or all of them with `iocfleet export k8s`")
    return next(iter(plans))
