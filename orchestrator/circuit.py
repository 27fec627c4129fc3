"""Open one CA virtual circuit (TCP) to a server and read many channels at once.

Built on caproto's sans-I/O `VirtualCircuit`: create every channel in one burst, then read every
connected one in one burst, so a server with hundreds of PVs costs a few round trips, not hundreds.
Used by the readiness check: a PV is ready when a read over TCP returned its value.
"""

from __future__ import annotations

import selectors
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import caproto as ca

Address = tuple[str, int]


@dataclass(frozen=True)
class ReadOutcome:
    """What reading one channel gave: its value, or why not."""

    name: str
    ok: bool
    value: object = None
    error: str = ""


def read_channels(server: Address, names: Sequence[str], timeout: float = 2.0,
                  clock: Callable[[], float] = time.monotonic) -> dict[str, ReadOutcome]:
    """Connect to `server` (ip, tcp_port), create a channel per name, read each once.

    Never raises for network trouble: every name gets an outcome (a refused connection fails them all).
    """
    names = list(dict.fromkeys(names))
    deadline = clock() + timeout
    try:
        sock = socket.create_connection(server, timeout=max(0.05, timeout))
    except OSError as exc:
        return {n: ReadOutcome(n, False, error=f"connect to {server[0]}:{server[1]}: {exc.strerror or exc}") for n in names}
    circuit = ca.VirtualCircuit(our_role=ca.CLIENT, address=server, priority=0)
    circuit.our_address = sock.getsockname()
    channels = {n: ca.ClientChannel(n, circuit) for n in names}
    results: dict[str, ReadOutcome] = {}
    pending_reads: dict[int, str] = {}
    try:
        opening = [ca.VersionRequest(priority=0, version=ca.DEFAULT_PROTOCOL_VERSION),
                   ca.HostNameRequest("iocfleet"), ca.ClientNameRequest("iocfleet")]
        opening += [ch.create() for ch in channels.values()]
        sock.sendall(b"".join(circuit.send(*opening)))
        sock.setblocking(False)
        with selectors.DefaultSelector() as sel:
            sel.register(sock, selectors.EVENT_READ)
            while len(results) < len(names) and (left := deadline - clock()) > 0:
                if not sel.select(left):
                    continue
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                if not data:
                    break
                commands, _ = circuit.recv(data)
                reads = []
                for command in commands:
                    circuit.process_command(command)
                    if isinstance(command, ca.CreateChanResponse):
                        channel = next(c for c in channels.values() if c.cid == command.cid)
                        request = channel.read(notify=True)
                        pending_reads[request.ioid] = channel.name
                        reads.append(request)
                    elif isinstance(command, ca.ReadNotifyResponse) and command.ioid in pending_reads:
                        name = pending_reads.pop(command.ioid)
                        results[name] = ReadOutcome(name, True, _plain(command.data))
                    elif isinstance(command, (ca.ErrorResponse, ca.CreateChFailResponse)):
                        name = _name_of(command, channels, pending_reads)
                        if name:
                            results[name] = ReadOutcome(name, False, error=type(command).__name__)
                if reads:
                    sock.setblocking(True)
                    sock.sendall(b"".join(circuit.send(*reads)))
                    sock.setblocking(False)
    except (OSError, ca.CaprotoError) as exc:
        detail = f"{type(exc).__name__}: {exc}"
        return {**{n: ReadOutcome(n, False, error=detail) for n in names}, **results}
    finally:
        sock.close()
    for n in names:
        results.setdefault(n, ReadOutcome(n, False, error="no answer before the timeout"))
    return results


def _plain(data):
    """A JSON-friendly value: scalars as Python numbers/strings, arrays as their length-limited list."""
    try:
        values = list(data)
    except TypeError:
        return data
    values = [v.decode(errors="replace") if isinstance(v, bytes) else (v.item() if hasattr(v, "item") else v)
              for v in values]
    return values[0] if len(values) == 1 else values


def _name_of(command, channels, pending_reads) -> str | None:
    if isinstance(command, ca.CreateChFailResponse):
        return next((c.name for c in channels.values() if c.cid == command.cid), None)
    original = getattr(command, "original_request", None)
    ioid = getattr(original, "ioid", None)
    return pending_reads.pop(ioid, None) if ioid is not None else None
