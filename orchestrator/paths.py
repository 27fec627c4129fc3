"""Where iocfleet keeps files on this host: the state root, from XDG_STATE_HOME or HOME.

A bottom-layer module (a pure function of the environment) because both the fleet file's checks (a mount
must not expose the state directory) and `run` (locks, logs, state files) need the same answer.
"""

from __future__ import annotations

import os
from pathlib import Path

from orchestrator.errors import UsageError


def state_root(environ=None) -> Path:
    """$XDG_STATE_HOME/iocfleet (default ~/.local/state/iocfleet). A relative XDG_STATE_HOME (the XDG spec
    says to ignore it) or an empty or relative HOME is refused rather than resolved against the current
    directory or `/`."""
    return xdg_dir("XDG_STATE_HOME", (".local", "state"), environ) / "iocfleet"


def xdg_dir(variable: str, under_home: tuple[str, ...], environ=None) -> Path:
    """$VARIABLE, else ~/under_home: never relative, never under an empty HOME or `/` (issue 13, class 10)."""
    env = os.environ if environ is None else environ
    xdg = env.get(variable, "")
    if xdg:
        if not os.path.isabs(xdg):
            raise UsageError(f"{variable}={xdg!r} is not an absolute path", variable,
                             f"set it to an absolute directory, or unset it to use ~/{'/'.join(under_home)}")
        return Path(xdg)
    home = env.get("HOME", "")
    if not home or not os.path.isabs(home) or home == "/":
        raise UsageError(f"HOME={home!r} is not a home directory, so there is no place for "
                         f"{'state' if 'STATE' in variable else 'the cache'}", "HOME",
                         f"set HOME to your home directory, or {variable} to an absolute directory")
    return Path(home).joinpath(*under_home)
