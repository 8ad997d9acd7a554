"""A packet port's receive ring driven by hand, with no forwarding thread: the kernel fills
the ring while nobody reads it, then batches are taken one at a time. Needs root (see
conftest)."""

from __future__ import annotations

import socket
import sys

import pytest

from tests.integration.conftest import Host
from vale._fastpath import SwitchCore

SEND = """
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
src, first, count = bytes.fromhex(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
for seq in range(first, first + count):
    s.send(b"\\xff" * 6 + src + b"\\x88\\xb5" + seq.to_bytes(4, "big") + bytes(42))
"""


def send_numbered(host: Host, first: int, count: int) -> None:
    """COUNT broadcast frames of 60 bytes from HOST, numbered from FIRST."""
    host.run(sys.executable, "-c", SEND, host.mac.replace(":", ""), str(first), str(count))


def numbers(frames: list[bytes]) -> list[int]:
    return [int.from_bytes(f[14:18], "big") for f in frames]


def test_a_batch_bigger_than_the_ring_takes_each_frame_once(make_host):
    """A batch (256 frames) bigger than the ring (rx_frames=16: two blocks of 15 slots) used
    to walk round the ring onto the frames it had already taken: each went out about 8
    times, and the reader's place ended up ahead of the kernel's, so later frames waited."""
    a = make_host(1, ipv6=False)
    core = SwitchCore(batch=256)
    src = core.add_packet_port(socket.if_nametoindex(a.port), rx_frames=16)
    dst = core.add_port(tx_slots=1024)
    slots = core.port_info(src)["rx_frames"]
    assert slots == 30

    send_numbered(a, 0, slots + 10)         # the last 10 find the ring full
    assert core.forward(src) == slots
    assert numbers(core.drain(dst)) == list(range(slots))
    assert core.forward(src) == 0

    send_numbered(a, 100, 5)                # where the kernel writes next is where we read
    assert core.forward(src) == 5
    assert numbers(core.drain(dst)) == [100, 101, 102, 103, 104]
    assert core.snapshot()["ports"][src]["rx_packets"] == slots + 5


def test_the_benchmark_driver_refuses_a_packet_port(make_host):
    """It rewinds an in-memory ring; on a packet port it used to loop for ever, holding
    the switch's lock."""
    a = make_host(1, ipv6=False)
    core = SwitchCore()
    src = core.add_packet_port(socket.if_nametoindex(a.port))
    with pytest.raises(ValueError, match="in-memory"):
        core.bench_forward(src, 10)
