"""The fleet file: its types (`model`), reading it (`load`: YAML with line numbers from `yamlsource`),
validation (`validate`, `pvs`, `fields`) and the JSON Schema (`schema`). The bottom layer: imports nothing
of iocfleet but `errors`, `paths` (a mount must not expose the state directory) and `ca.env`'s parser
of EPICS_* values (an IOC's `env` is checked as the runtimes will read it).

`from orchestrator import spec` gives the whole face: `spec.load(path)`, `spec.parse(text)`,
`spec.from_dict(data)` and the types (`spec.FleetSpec`, ...).
"""

from orchestrator.spec.load import from_dict, load, parse
from orchestrator.spec.model import (CLIENT_PLACES, PV_TYPES, RESTART_POLICIES, RUNTIMES, SIMULATIONS, STANDARD_PVS,
                                     STRATEGIES, FleetSpec, HostSpec, IOCSpec, Limits, NetworkSpec, PVSpec)

__all__ = ["load", "parse", "from_dict", "CLIENT_PLACES", "PV_TYPES", "RESTART_POLICIES", "RUNTIMES", "SIMULATIONS",
           "STANDARD_PVS", "STRATEGIES", "FleetSpec", "HostSpec", "IOCSpec", "Limits", "NetworkSpec", "PVSpec"]
