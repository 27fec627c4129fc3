"""The caproto program running a pack (IOCFLEET_PACK), for the lab: prints `READY <pid>` once every
member printed its serving line, and copies those lines to $PACK_SERVING_FILE, so the truth matrix can
attribute the sockets of one pid to its members (each member's line lists its own sockets). The
program's own output goes to stderr: the lab's reader wants READY as the first line on stdout.
"""

import json
import os
import runpy
import sys
from pathlib import Path

PROGRAM = Path(__file__).resolve().parents[3] / "ioc_images" / "caproto" / "ioc.py"


class ServingWatch:
    """stdout, watched: serving lines are copied to a file; READY follows the last member's."""

    def __init__(self, out, log, members: int, path: str) -> None:
        self.out, self.log, self.left, self.path, self.pending = out, log, members, path, ""

    def write(self, text: str) -> int:
        self.log.write(text)
        self.pending += text
        while "\n" in self.pending:
            line, self.pending = self.pending.split("\n", 1)
            if "iocfleet-ioc[caproto]: serving" in line:
                with open(self.path, "a", encoding="utf-8") as handle:
                    handle.write(line + "\n")
                self.left -= 1
                if self.left == 0:
                    self.out.write(f"READY {os.getpid()}\n")
                    self.out.flush()
        return len(text)

    def flush(self) -> None:
        self.log.flush()


if __name__ == "__main__":
    members = len(json.loads(os.environ["IOCFLEET_PACK"])["members"])
    sys.stdout = ServingWatch(sys.stdout, sys.stderr, members, os.environ["PACK_SERVING_FILE"])
    sys.argv = [str(PROGRAM)]
    runpy.run_path(str(PROGRAM), run_name="__main__")
