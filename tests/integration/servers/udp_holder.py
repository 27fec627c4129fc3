"""Hold a UDP port the way a non-CA program might: bind ADDR PORT with chosen options, print READY, wait.

Options: `none` (no reuse), `reuseaddr`, `reuseport`, `both`. Exits with status 98 on EADDRINUSE.
"""

import os
import signal
import socket
import sys


def main(addr, port, opts):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if opts in ("reuseaddr", "both"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if opts in ("reuseport", "both"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((addr, int(port)))
    except OSError as exc:
        print(f"bind {addr}:{port} failed: {exc}", file=sys.stderr, flush=True)
        sys.exit(98)
    print(f"READY {os.getpid()}", flush=True)
    signal.pause()


if __name__ == "__main__":
    main(*sys.argv[1:4])
