"""A minimal caproto IOC for the lab: serves the PV names given as arguments (doubles, value 0).

Everything network-related comes from the environment (EPICS_CA_SERVER_PORT, EPICS_CAS_INTF_ADDR_LIST,
beacon lists), exactly as a fleet IOC gets it. Prints one line `READY <pid>` once its sockets are bound.
"""

import os
import sys

import caproto as ca
from caproto.server import run
from caproto import ChannelDouble


async def announce(async_lib):
    print(f"READY {os.getpid()}", flush=True)


def main(names):
    pvdb = {name: ChannelDouble(value=0.0) for name in names}
    run(pvdb, interfaces=ca.get_server_address_list(), startup_hook=announce)


if __name__ == "__main__":
    main(sys.argv[1:])
