"""Shell completion for `iocfleet` (click's): fleet files, the names of fleets on this host, their IOC names.

Completion runs on every TAB press, so it is quick and never fails: any error completes nothing.
Fleet names come from this user's process state and, when an engine answers, docker labels (one sparse
listing, no inspect).
"""

from __future__ import annotations

import os
from pathlib import Path

from click.shell_completion import CompletionItem

FLEET_SUFFIXES = (".yaml", ".yml")


def fleet_files(incomplete: str) -> list[CompletionItem]:
    """Fleet files (*.yaml, *.yml) and directories under the path typed so far."""
    base, _, stem = incomplete.rpartition("/")
    directory = Path(base or ".") if base or not incomplete.startswith("/") else Path("/")
    out = []
    try:
        entries = sorted(directory.iterdir())
    except OSError:
        return []
    for entry in entries:
        if not entry.name.startswith(stem) or (entry.name.startswith(".") and not stem.startswith(".")):
            continue
        text = f"{base}/{entry.name}" if base else entry.name
        if entry.is_dir():
            out.append(CompletionItem(text + "/", type="dir"))
        elif entry.name.endswith(FLEET_SUFFIXES):
            out.append(CompletionItem(text, type="plain"))
    return out


def running_fleets(environ=None) -> dict[str, list[str]]:
    """{fleet name: IOC names} of the fleets on this host (process state, docker labels)."""
    from orchestrator.run.backends.docker import host_members
    from orchestrator.run.statedir import state_root

    env = os.environ if environ is None else environ
    fleets: dict[str, list[str]] = {}
    root = state_root(env) / "fleets"
    for directory in sorted(root.glob("*")) if root.is_dir() else ():
        if directory.is_dir() and not directory.name.startswith("_"):
            fleets.setdefault(directory.name, []).extend(
                p.stem for p in sorted(directory.glob("*.json")) if p.stem != "ca-repeater")
    try:
        for m in host_members():  # docker containers by label; none when no engine answers
            if m.fleet and not m.fleet.startswith("_") and m.role == "ioc":
                fleets.setdefault(m.fleet, []).append(m.name)
    except Exception:  # noqa: BLE001 - completion never fails: process fleets only
        pass
    return {name: sorted(set(filter(None, iocs))) for name, iocs in fleets.items()}


def complete_fleet(ctx, param, incomplete: str) -> list[CompletionItem]:
    """A fleet argument: running fleets' names, then fleet files."""
    try:
        names = [CompletionItem(n, help="running fleet") for n in running_fleets() if n.startswith(incomplete)]
        return names + fleet_files(incomplete)
    except Exception:  # noqa: BLE001
        return []


def complete_fleet_name(ctx, param, incomplete: str) -> list[CompletionItem]:
    """`--fleet-name`: running fleets' names only."""
    try:
        return [CompletionItem(n) for n in running_fleets() if n.startswith(incomplete)]
    except Exception:  # noqa: BLE001
        return []


def complete_ioc(ctx, param, incomplete: str) -> list[CompletionItem]:
    """An IOC argument: the IOCs of the fleet named before it (running ones, else the fleet file's)."""
    try:
        fleet = ctx.params.get("fleet") or ""
        name = fleet
        iocs: list[str] = []
        if fleet and Path(fleet).is_file():
            from orchestrator.plan.planner import expand_replicas
            from orchestrator import spec

            parsed = spec.load(fleet)
            name = parsed.name
            iocs = [n for _, n, _ in expand_replicas(parsed.iocs)]
        iocs = running_fleets().get(name) or iocs
        return [CompletionItem(i) for i in iocs if i.startswith(incomplete)]
    except Exception:  # noqa: BLE001
        return []


def script(shell: str, cli, prog: str = "iocfleet") -> str:
    """The completion script for `shell` (bash, zsh, fish) of the click group `cli`, as click generates it."""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    if cls is None:
        from orchestrator.errors import UsageError

        raise UsageError(f"no completion for shell {shell!r}", "SHELL", "use bash, zsh or fish")
    complete_var = "_" + prog.replace("-", "_").upper() + "_COMPLETE"
    return cls(cli, {}, prog, complete_var).source()
