"""Where iocfleet keeps files on this host: the state root, from XDG_STATE_HOME or HOME.

A bottom-layer module (a pure function of the environment) because both the fleet file's checks (a mount
must not expose the state directory) and `run` (locks, logs, state files) need the same answer.
"""

from __future__ import annotations

import os
from pathlib import Path


def state_root(environ=None) -> Path:
    """$XDG_STATE_HOME/iocfleet (default ~/.local/state/iocfleet)."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "iocfleet"
