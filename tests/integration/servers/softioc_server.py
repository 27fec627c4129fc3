"""A minimal pythonSoftIOC (EPICS base rsrv) IOC for the lab: one ai record per PV name given.

Network settings come from the environment (EPICS_CAS_SERVER_PORT, EPICS_CAS_INTF_ADDR_LIST, beacon
lists). pvAccess is disabled: the lab is about Channel Access. Prints `READY <pid>` after iocInit.
"""

import os
import sys
import tempfile

from softioc import asyncio_dispatcher, softioc


def main(names):
    with tempfile.NamedTemporaryFile("w", suffix=".db", delete=False) as db:
        db.write("".join(f'record(ai, "{name}") {{}}\n' for name in names))
    softioc.dbLoadDatabase(db.name)
    os.unlink(db.name)
    dispatcher = asyncio_dispatcher.AsyncioDispatcher()
    softioc.iocInit(dispatcher, enable_pva=False)
    print(f"READY {os.getpid()}", flush=True)
    softioc.non_interactive_ioc()


if __name__ == "__main__":
    main(sys.argv[1:])
