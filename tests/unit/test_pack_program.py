"""The pack program's parts: the follower's BPF filter on a real socket, fib_trie parsing, pack loading."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from orchestrator.images import build as images
from packs import PROGRAM, member, pack_env
from ports import free_port

sys.path.insert(0, str(images.ioc_images_root() / "common"))

from iocfleet_ioc import pack  # noqa: E402

FIB_TRIE = """\
Main:
  +-- 0.0.0.0/0 3 0 4
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 192.0.2.0/24 2 0 2
        +-- 192.0.2.0/30 2 0 2
           |-- 192.0.2.0
              /24 link UNICAST
           |-- 192.0.2.2
              /32 host LOCAL
        |-- 192.0.2.255
           /32 link BROADCAST
Local:
  +-- 0.0.0.0/0 3 0 4
        |-- 127.255.255.255
           /32 link BROADCAST
        |-- 10.9.0.255
           /32 link BROADCAST
"""


def test_fib_trie_broadcasts_are_the_link_broadcast_leaves_plus_the_limited_broadcast():
    assert pack.broadcast_addresses(FIB_TRIE) == {"127.255.255.255", "192.0.2.255", "10.9.0.255",
                                                  "255.255.255.255"}


def test_this_hosts_loopback_broadcast_is_read_from_the_kernel():
    assert "127.255.255.255" in pack.read_broadcast_addresses()


def receiver(port: int, filtered: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if filtered:
        pack.attach_filter(sock, pack.no_broadcast_program({"127.255.255.255", "192.0.2.255"}))
    sock.bind(("0.0.0.0", port))
    sock.settimeout(0.3)
    return sock


def received(sock: socket.socket) -> list[bytes]:
    out = []
    try:
        while True:
            out.append(sock.recv(100))
    except socket.timeout:
        return out


def test_follower_filter_drops_broadcast_and_keeps_unicast():
    """A broadcast reaches every socket on the port; with the filter, the follower keeps only unicast."""
    port = free_port(34000, 34998)
    plain, follower = receiver(port, False), receiver(port, True)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    try:
        sender.sendto(b"broadcast", ("127.255.255.255", port))
        assert received(follower) == [] and received(plain) == [b"broadcast"]
        for _ in range(20):  # unicast goes to one of the two (SO_REUSEPORT hash of the source port)
            fresh = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            fresh.sendto(b"unicast", ("127.0.0.1", port))
            fresh.close()
        got_follower, got_plain = received(follower), received(plain)
        assert len(got_follower) + len(got_plain) == 20 and got_follower
    finally:
        for sock in (plain, follower, sender):
            sock.close()


def test_filter_program_drops_multicast_and_each_broadcast():
    program = pack.no_broadcast_program({"10.0.0.255", "255.255.255.255"})
    # ld, jge multicast, one jeq (255.255.255.255 is covered by the multicast test), accept, drop
    assert [insn[0] for insn in program] == [0x20, 0x35, 0x15, 0x06, 0x06]
    assert program[1][1] == 2 and program[2][1] == 1  # both jump to the final drop
    assert program[-1][3] == 0 and program[-2][3] == 0xFFFFFFFF


def test_destination_read_from_pktinfo():
    payload = pack._IN_PKTINFO.pack(1, socket.inet_aton("127.0.0.1"), socket.inet_aton("127.255.255.255"))
    assert pack.destination([(socket.IPPROTO_IP, pack.IP_PKTINFO, payload)]) == "127.255.255.255"
    assert pack.is_broadcast("127.255.255.255", {"127.255.255.255"})
    assert pack.is_broadcast("239.1.2.3", set()) and not pack.is_broadcast("127.0.0.1", {"127.255.255.255"})


GOOD_ENV = {"EPICS_CA_SERVER_PORT": "5064"}


@pytest.mark.parametrize("members, needle", [
    ([member("a", GOOD_ENV, ["X"]), {"name": "b", "env": {"IOCFLEET_IOC": '{"name": "b", "pvs": 3}'}}],
     "member b: bad IOC description"),
    ([member("a", GOOD_ENV, ["X"]), member("a", GOOD_ENV, ["Y"])], "member a: name appears twice"),
    ([{"name": "c", "env": {"EPICS_CA_SERVER_PORT": 5064}}], "member c: \"env\" must be an object of string"),
    ([{"name": "d", "env": {"IOCFLEET_GROUP": "m:G"}}], "member d: a user's PVGroup"),
    ([], '"members" must be a non-empty list'),
])
def test_bad_pack_is_refused_naming_the_member(members, needle):
    with pytest.raises(pack.PackError, match=needle.replace("(", r"\(")):
        pack.load_pack({"IOCFLEET_PACK": json.dumps({"pack": "p", "members": members})})


def test_program_exits_2_naming_the_bad_member():
    members = [member("good", GOOD_ENV, ["X"]),
               {"name": "broken", "env": {"IOCFLEET_IOC": json.dumps({"name": "broken", "pvs": [{"name": "Y"}]})}}]
    done = subprocess.run([sys.executable, str(PROGRAM)], env=pack_env("p9", members), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "[pack p9] error" in done.stderr and "member broken" in done.stderr and "pvs[0] (Y)" in done.stderr


def test_program_exits_2_on_an_unreadable_pack_file(tmp_path):
    env = pack_env("p", [])
    del env["IOCFLEET_PACK"]
    env["IOCFLEET_PACK_FILE"] = str(tmp_path / "missing.json")
    done = subprocess.run([sys.executable, str(PROGRAM)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "missing.json" in done.stderr
