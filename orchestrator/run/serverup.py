"""Evidence that an IOC's CA server is up, for IOCs whose PVs iocfleet does not know (`readiness: server`).

A CA server answers a search for a name it does not serve with silence, so a probe cannot tell "up"
from "down". What CA does give:
- the server's TCP listener (on the planned port when the plan fixes one, R9), seen in the IOC's own
  processes through the backend: exact, but needs the right to inspect them (root, or the same user);
- the beacons it sends to the fleet's beacon address (R11), which the CA repeater forwards to every
  client registered with it. A beacon carries the server's TCP port but not who sent it, so beacons are
  used only when the listener cannot be seen: where the plan fixes the IOC's TCP port (single,
  distinct-ports) a beacon with that port names it exactly; on a shared port only by elimination: once
  every IOC with PVs has been located by search, a server that started beaconing recently (low beacon
  ids) and is none of them is the IOC still waiting (with several such IOCs, as many new servers).
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Sequence

from orchestrator.plan.model import Plan

NEW_SERVER_BEACONS = 40  # a server whose first beacon seen has an id below this started within ~10 minutes


class BeaconWatch:
    """Registered with the CA repeater on this host; collects the beacons it forwards."""

    def __init__(self, repeater_port: int, host: str = "127.0.0.1") -> None:
        import caproto

        self._caproto = caproto
        self._broadcaster = caproto.Broadcaster(our_role=caproto.CLIENT)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((host, 0))
        self._sock.setblocking(False)
        self._repeater = (host, repeater_port)
        self.first_ids: dict[tuple[str, int], int] = {}  # (address, tcp port) -> first beacon id seen
        self._register()

    def _register(self) -> None:
        request = self._caproto.RepeaterRegisterRequest(self._sock.getsockname()[0])
        try:
            self._sock.sendto(bytes(request), self._repeater)
        except OSError:
            pass  # no repeater (yet): registering again on the next poll

    def poll(self, window: float = 0.05) -> dict[tuple[str, int], int]:
        """Read what arrived (waiting up to `window`); the servers seen so far with their first beacon id."""
        import select

        self._register()  # cheap and idempotent: survives a repeater that started after us
        ready, _, _ = select.select([self._sock], [], [], window)
        while ready:
            try:
                data, addr = self._sock.recvfrom(65536)
            except BlockingIOError:
                break
            try:
                commands = self._broadcaster.recv(data, addr)
            except Exception:  # noqa: BLE001 - a malformed datagram is not evidence
                continue
            for command in commands:
                if isinstance(command, self._caproto.Beacon):
                    key = (command.address_string if hasattr(command, "address_string") else command.address,
                           command.server_port)
                    self.first_ids.setdefault(key, command.beacon_id)
        return dict(self.first_ids)

    def close(self) -> None:
        self._sock.close()


def new_servers(first_ids: dict[tuple[str, int], int], known: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
    """Servers that started beaconing recently and are none of the `known` ones (matched by TCP port)."""
    known_ports = {port for _, port in known}
    return sorted(s for s, first in first_ids.items() if first < NEW_SERVER_BEACONS and s[1] not in known_ports)


def inspectable(pid: int | None) -> bool:
    """Whether this process may list the sockets of `pid` (so "no listener" really means none)."""
    from orchestrator import host

    return host.sockets_visible(pid)


def listener_evidence(backend, plan: Plan, beacons=BeaconWatch):
    """A `server_up(names, known)` for readiness: IOC name -> how its CA server was seen to be up.

    `known` are the (address, TCP port) servers of the fleet located by search so far, and `pvs_done`
    whether every IOC with PVs is complete (beacons are attributed only then)."""
    planned = {i.name: i.tcp_port for i in plan.iocs}
    state: dict = {"watch": None}

    def server_up(names: Sequence[str], known: Iterable[tuple[str, int]] = (), pvs_done: bool = False
                  ) -> dict[str, str]:
        found, unseen = {}, []
        instances = backend.instances(plan.fleet)
        for inst in instances:
            if inst.name not in names or inst.state != "running":
                continue
            want = planned.get(inst.name)
            if inst.tcp_port is not None and (want is None or inst.tcp_port == want):
                found[inst.name] = f"server: TCP listener on port {inst.tcp_port}"
            elif inst.tcp_port is None and not inspectable(inst.pid):
                unseen.append(inst.name)  # running, but its sockets cannot be inspected from here
        if unseen:
            if state["watch"] is None:
                state["watch"] = beacons(plan.repeater.port)
            first_ids = state["watch"].poll()
            for name in list(unseen):  # a planned TCP port (single, distinct-ports) names the server exactly
                match = sorted(s for s in first_ids if planned.get(name) is not None and s[1] == planned[name])
                if match:
                    found[name] = f"server: beacon from {match[0][0]}:{match[0][1]}"
                    unseen.remove(name)
            unseen = [n for n in unseen if planned.get(n) is None]  # a planned port is matched exactly or not at all
            others = {(("", i.tcp_port)) for i in instances if i.tcp_port is not None}
            fresh = new_servers(first_ids, [*known, *others])
            if unseen and pvs_done and len(fresh) >= len(unseen):  # shared port: by elimination
                for name, (address, port) in zip(sorted(unseen), fresh):
                    found[name] = f"server: beacon from {address}:{port}"
        if state["watch"] is not None and all(n in found for n in names):
            state["watch"].close()
            state["watch"] = None
        return found

    return server_up
