"""A minimal DNS server for tests: answers A queries for names given as NAME=IPV4 arguments, NXDOMAIN
for every other name, no answer for other query types. Listens on 127.0.0.1:53 (inside a test's
network namespace, never on the host), prints `READY PID` once bound."""

from __future__ import annotations

import os
import socket
import struct
import sys


def answer(query: bytes, table: dict[str, str]) -> bytes:
    ident, _flags, qdcount = struct.unpack("!HHH", query[:6])
    labels, offset = [], 12
    while query[offset]:
        length = query[offset]
        labels.append(query[offset + 1:offset + 1 + length].decode().lower())
        offset += 1 + length
    qtype, _qclass = struct.unpack("!HH", query[offset + 1:offset + 5])
    question = query[12:offset + 5]
    name = ".".join(labels)
    if name not in table:
        return struct.pack("!HHHHHH", ident, 0x8183, 1, 0, 0, 0) + question  # NXDOMAIN
    if qtype != 1:
        return struct.pack("!HHHHHH", ident, 0x8180, 1, 0, 0, 0) + question  # name exists, no such record
    record = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton(table[name])
    return struct.pack("!HHHHHH", ident, 0x8180, 1, 1, 0, 0) + question + record


def main() -> None:
    table = dict(arg.split("=", 1) for arg in sys.argv[1:])
    table = {k.lower().rstrip("."): v for k, v in table.items()}
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 53))
    print(f"READY {os.getpid()}", flush=True)
    while True:
        data, peer = sock.recvfrom(512)
        try:
            sock.sendto(answer(data, table), peer)
        except (IndexError, struct.error):
            continue


if __name__ == "__main__":
    main()
