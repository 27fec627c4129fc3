"""Real-IOC servers for the lab (issue 12), each serving `T:owner` and `T:shared`.

`db NAME SHARED`: iocfleet's softioc program (ioc_images/softioc/ioc.py) loading a .db with macros
through IOCFLEET_DB, as a fleet's `db:` IOC runs. `image NAME SHARED`: the program of the example
epics-containers image (examples/real/ioc-image/start.py) loading its config folder with IOC_MACROS.
Prints `READY <pid>` (the IOC's pid) once the IOC said it serves, then waits for it.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
DB = 'record(ao, "$(P)$(OWNER)") {\n  field(VAL, "1")\n}\nrecord(calc, "$(P)$(SHARED)") {\n  field(INPA, "$(P)$(OWNER) CP")\n  field(CALC, "A")\n}\n'


def main(mode, name, shared):
    prefix, owner = name.split(":", 1)[0] + ":", name.split(":", 1)[1]
    shared_short = shared.split(":", 1)[1]
    folder = Path(tempfile.mkdtemp(prefix="realsrv"))
    (folder / "ioc.db").write_text(DB)
    macros = {"P": prefix, "OWNER": owner, "SHARED": shared_short}
    env = dict(os.environ)
    if mode == "db":
        env["IOCFLEET_IOC"] = json.dumps({"name": owner, "prefix": f"{prefix}{owner}:IOC:", "pvs": []})
        env["IOCFLEET_DB"] = json.dumps([{"file": str(folder / "ioc.db"), "macros": macros}])
        argv = [sys.executable, str(REPO / "ioc_images" / "softioc" / "ioc.py")]
        ready = "serving"
    else:
        env["IOC_MACROS"] = ",".join(f"{k}={v}" for k, v in macros.items())
        argv = [sys.executable, str(REPO / "examples" / "real" / "ioc-image" / "start.py"), str(folder)]
        ready = "generic-ioc: loaded"
    child = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    signal.signal(signal.SIGTERM, lambda *a: child.terminate())
    for line in child.stdout:
        if ready in line:
            print(f"READY {child.pid}", flush=True)
            break
    for _ in child.stdout:
        pass
    sys.exit(child.wait())


if __name__ == "__main__":
    main(*sys.argv[1:4])
