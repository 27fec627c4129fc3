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
    env = os.environ if environ is None else environ
    xdg = env.get("XDG_STATE_HOME", "")
    if xdg:
        if not os.path.isabs(xdg):
            raise UsageError(f"XDG_STATE_HOME={xdg!r} is not an absolute path", "XDG_STATE_HOME",
                             "set it to an absolute directory, or unset it to use ~/.local/state")
        return Path(xdg) / "iocfleet"
    home = env.get("HOME", "")
    if not home or not os.path.isabs(home) or home == "/":
        raise UsageError(f"HOME={home!r} is not a home directory, so there is no place for state", "HOME",
                         "set HOME to your home directory, or XDG_STATE_HOME to an absolute directory")
    return Path(home) / ".local" / "state" / "iocfleet"
