"""A generic IOC: load every .db of /epics/ioc/config (macros from IOC_MACROS), iocInit, then serve.

Network settings are the EPICS_* variables the fleet plan gives every IOC (EPICS base reads them).
"""

import glob
import os
import sys

from softioc import asyncio_dispatcher, softioc

config = sys.argv[1] if len(sys.argv) > 1 else "/epics/ioc/config"
macros = os.environ.get("IOC_MACROS") or None
files = sorted(glob.glob(os.path.join(config, "*.db")))
for path in files:
    softioc.dbLoadDatabase(os.path.basename(path), config, macros)
softioc.iocInit(asyncio_dispatcher.AsyncioDispatcher(), enable_pva=False)
print(f"generic-ioc: loaded {len(files)} database(s) from {config}", flush=True)
if os.environ.get("IOC_SHELL") == "interactive":
    softioc.interactive_ioc(globals())  # a shell on stdin, as many IOCs run: it ends at EOF (see stdin_open)
else:
    softioc.non_interactive_ioc()
