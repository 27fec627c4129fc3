"""One CA virtual circuit (TCP) to a server: create many channels at once, read them, write one.

Built on caproto's sans-I/O `VirtualCircuit`: every channel is created in one burst and read in one
burst, so a server with hundreds of PVs costs a few round trips. Used by the readiness check (a PV is
ready when a read returned its value) and by the test fixture's `get`/`put`.
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
    """What reading (or writing) one channel gave: its value, or why not."""

    name: str
    ok: bool
    value: object = None
    error: str = ""


def read_channels(server: Address, names: Sequence[str], timeout: float = 2.0,
                  clock: Callable[[], float] = time.monotonic) -> dict[str, ReadOutcome]:
    """Connect to `server` (ip, tcp_port), create a channel per name, read each once (enums as strings).

    Never raises for network trouble: every name gets an outcome (a refused connection fails them all).
    """
    return _session(server, list(dict.fromkeys(names)), None, timeout, clock)


def write_channel(server: Address, name: str, value, timeout: float = 2.0,
                  clock: Callable[[], float] = time.monotonic) -> ReadOutcome:
    """Write `value` to one channel with notification, then read it back."""
    return _session(server, [name], value, timeout, clock)[name]


def _session(server: Address, names: list[str], write_value, timeout: float, clock) -> dict[str, ReadOutcome]:
    deadline = clock() + timeout
    try:
        sock = socket.create_connection(server, timeout=max(0.05, timeout))
    except OSError as exc:
        reason = f"connect to {server[0]}:{server[1]}: {exc.strerror or exc}"
        return {n: ReadOutcome(n, False, error=reason) for n in names}
    circuit = ca.VirtualCircuit(our_role=ca.CLIENT, address=server, priority=0)
    circuit.our_address = sock.getsockname()
    session = _Session(sock, circuit, names, write_value)
    try:
        session.run(deadline, clock)
    except (OSError, ca.CaprotoError) as exc:
        detail = f"{type(exc).__name__}: {exc}"
        return {**{n: ReadOutcome(n, False, error=detail) for n in names}, **session.results}
    finally:
        sock.close()
    return {n: session.results.get(n, ReadOutcome(n, False, error="no answer before the timeout")) for n in names}


class _Session:
    """The exchange on one circuit: create channels, (write,) read, collect outcomes."""

    def __init__(self, sock, circuit, names, write_value) -> None:
        self.sock, self.circuit, self.write_value = sock, circuit, write_value
        self.channels = {n: ca.ClientChannel(n, circuit) for n in names}
        self.by_cid = {c.cid: c for c in self.channels.values()}
        self.reads: dict[int, str] = {}
        self.writes: dict[int, ca.ClientChannel] = {}
        self.results: dict[str, ReadOutcome] = {}

    def send(self, *commands) -> None:
        self.sock.setblocking(True)
        self.sock.sendall(b"".join(self.circuit.send(*commands)))
        self.sock.setblocking(False)

    def run(self, deadline: float, clock) -> None:
        opening = [ca.VersionRequest(priority=0, version=ca.DEFAULT_PROTOCOL_VERSION),
                   ca.HostNameRequest("iocfleet"), ca.ClientNameRequest("iocfleet")]
        self.send(*opening, *(c.create() for c in self.channels.values()))
        with selectors.DefaultSelector() as sel:
            sel.register(self.sock, selectors.EVENT_READ)
            while len(self.results) < len(self.channels) and (left := deadline - clock()) > 0:
                if not sel.select(left):
                    continue
                try:
                    data = self.sock.recv(65536)
                except BlockingIOError:
                    continue
                if not data:
                    return
                commands, _ = self.circuit.recv(data)
                replies = []
                for command in commands:
                    self.circuit.process_command(command)
                    replies += self.handle(command)
                if replies:
                    self.send(*replies)

    def handle(self, command) -> list:
        if isinstance(command, ca.CreateChanResponse):
            channel = self.by_cid[command.cid]
            if self.write_value is not None:
                request = channel.write(self._data(channel), data_type=self._type(channel, self.write_value),
                                        notify=True)
                self.writes[request.ioid] = channel
                return [request]
            return [self.read(channel)]
        if isinstance(command, ca.WriteNotifyResponse) and command.ioid in self.writes:
            channel = self.writes.pop(command.ioid)
            status = command.status
            if not getattr(status, "success", status == 1):
                self.results[channel.name] = ReadOutcome(channel.name, False,
                                                         error=f"write refused ({getattr(status, 'name', status)})")
                return []
            return [self.read(channel)]
        if isinstance(command, ca.ReadNotifyResponse) and command.ioid in self.reads:
            name = self.reads.pop(command.ioid)
            self.results[name] = ReadOutcome(name, True, _plain(command.data))
        elif isinstance(command, ca.CreateChFailResponse) and command.cid in self.by_cid:
            name = self.by_cid[command.cid].name
            self.results[name] = ReadOutcome(name, False, error="the server refused the channel")
        elif isinstance(command, ca.ErrorResponse):
            ioid = command.original_request.parameter2  # the ioid of the failed read or write
            name = self.reads.pop(ioid, None) or getattr(self.writes.pop(ioid, None), "name", None)
            if name:
                message = bytes(command.error_message).rstrip(b"\0").decode(errors="replace")
                self.results[name] = ReadOutcome(name, False, error=f"the server refused: {message}")
        return []

    def read(self, channel):
        as_string = _is_enum(channel)
        request = channel.read(data_type=ca.ChannelType.STRING if as_string else None, notify=True)
        self.reads[request.ioid] = channel.name
        return request

    def _data(self, channel):
        value = self.write_value
        if isinstance(value, (list, tuple)):
            return list(value)
        return [value]

    @staticmethod
    def _type(channel, value):
        if _is_enum(channel) and isinstance(value, (str, bytes)):
            return ca.ChannelType.STRING
        return None


def _is_enum(channel) -> bool:
    native = getattr(channel, "native_data_type", None)
    return native is not None and ca.field_types["native"][native] is ca.ChannelType.ENUM


def _plain(data):
    """A JSON-friendly value: one scalar, or a list for arrays; strings decoded."""
    try:
        values = list(data)
    except TypeError:
        return data
    values = [v.decode(errors="replace") if isinstance(v, bytes) else (v.item() if hasattr(v, "item") else v)
              for v in values]
    return values[0] if len(values) == 1 else values
