"""Interface ports on the core itself, without valed: a packet port's receive ring driven
by hand (the kernel fills it while nobody reads, then batches are taken one at a time), a
port that is down, a TAP whose device goes away, an SCTP frame whose sender left its
checksum to the device, the transmit ring for short frames. Needs root (see conftest)."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from tests.frames import frame, mac
from tests.integration.conftest import PREFIX, Host, sh
from tests.test_offload import build_sctp, sctp_checksum_ok
from vale._fastpath import SwitchCore
from vale.names import mac_to_key
from vale.switch import Switch
from vale.tap import open_tap

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


def captured(host: Host, send: Callable[[], object], script: str, *args: str) -> str:
    """Run capture SCRIPT in HOST; once it says "ready", call SEND; return the line the
    script prints next."""
    capture = host.popen(sys.executable, "-c", script, *args, stdout=subprocess.PIPE,
                         text=True)
    try:
        assert capture.stdout.readline().strip() == "ready"
        send()
        return capture.stdout.readline().strip()
    finally:
        capture.kill()
        capture.wait()


@contextlib.contextmanager
def switch_between(a: Host, b: Host, name: str) -> Iterator[Switch]:
    """A started switch NAME with A's and B's ports; stopped afterwards."""
    sw = Switch(name)
    try:
        sw.attach(a.port)
        sw.attach(b.port)
        sw.start()
        yield sw
    finally:
        sw.stop()


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


def test_an_idle_ring_is_one_block_and_grows_to_rx_frames_at_a_burst(make_host):
    """rx_frames_idle: 1 MiB (15 slots) while frames come one at a time; a take that finds
    a burst (4 or more) makes the ring rx_frames big (two blocks for 16), losing nothing."""
    a = make_host(1, ipv6=False)
    core = SwitchCore(batch=256)
    src = core.add_packet_port(socket.if_nametoindex(a.port), rx_frames=16, rx_idle_frames=1)
    dst = core.add_port(tx_slots=1024)
    info = core.port_info(src)
    assert (info["rx_frames"], info["rx_frames_max"], info["rx_ring_bytes"]) == (15, 30, 1 << 20)
    for k in range(3):                      # one at a time: it stays small
        send_numbered(a, k, 1)
        assert core.forward(src) == 1
    assert core.port_info(src)["rx_frames"] == 15
    send_numbered(a, 100, 6)                # a burst
    assert core.forward(src) == 6
    assert core.port_info(src)["rx_frames"] == 30
    send_numbered(a, 200, 25)               # now it holds them all
    assert core.forward(src) == 25
    assert numbers(core.drain(dst)) == [0, 1, 2, *range(100, 106), *range(200, 225)]
    assert core.snapshot()["ports"][src]["drops"]["ring_full"] == 0


def test_the_benchmark_driver_refuses_a_packet_port(make_host):
    """It rewinds an in-memory ring; on a packet port it used to loop for ever, holding
    the switch's lock."""
    a = make_host(1, ipv6=False)
    core = SwitchCore()
    src = core.add_packet_port(socket.if_nametoindex(a.port))
    with pytest.raises(ValueError, match="in-memory"):
        core.bench_forward(src, 10)


def test_unicast_for_a_port_that_is_down_is_dropped_and_counted(make_host):
    """A static entry keeps pointing at a port whose link failed: what is sent to it is
    a tx_error there, not lost without a trace."""
    a = make_host(1, ipv6=False)
    core = SwitchCore()
    port = core.add_packet_port(socket.if_nametoindex(a.port))
    src = core.add_port()
    core.fdb_add(mac_to_key(a.mac), port)          # static
    core.set_port(port, up=False)
    core.inject(src, [frame(a.mac, mac(1)), frame(a.mac, mac(1), tag=2)])
    assert core.forward(src) == 2
    assert core.snapshot()["ports"][port]["drops"]["tx_error"] == 2


def test_a_tap_whose_device_is_deleted_goes_down_and_the_others_go_on(make_host):
    a, b = make_host(1, ipv6=False), make_host(2, ipv6=False)
    name = f"{PREFIX}t001"
    sw = Switch("vale6")
    try:
        sw.attach(a.port)
        sw.attach(b.port)
        sw.attach_tap(name, open_tap(name))
        sh("ip", "link", "set", name, "up")
        sw.start()
        assert a.ping(b)
        sh("ip", "link", "del", name)
        deadline = time.monotonic() + 5
        while sw.port_info(name)["up"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not sw.port_info(name)["up"]
        assert sw.port_info(a.port)["up"] and sw.port_info(b.port)["up"]
        assert a.ping(b)
    finally:
        sw.stop()
        subprocess.run(["ip", "link", "del", name], capture_output=True)


SEND_WITH_HEADER = """
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
s.setsockopt(263, 15, 1)                # SOL_PACKET, PACKET_VNET_HDR
s.bind(("eth0", 0))
s.send(bytes.fromhex(sys.argv[1]))
"""

CAPTURE_SCTP = """
import socket, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind(("eth0", 0))
s.settimeout(0.2)
print("ready", flush=True)
end = time.monotonic() + 5
while time.monotonic() < end:
    try:
        data, addr = s.recvfrom(65536)
    except TimeoutError:
        continue
    if addr[2] != socket.PACKET_OUTGOING and len(data) > 34 and data[23] == 132:
        print(data.hex(), flush=True)
        break
"""


def test_an_sctp_frame_with_its_checksum_left_to_the_device_arrives_checksummed(make_host):
    """Linux hands over SCTP with a partial checksum (csum_offset 8, a CRC32c) when the
    device offers SCTP checksumming, as veth does. vale used to drop such frames as
    bad_offload; it completes the CRC32c and they arrive whole."""
    a, b = make_host(1, ipv6=False), make_host(2, ipv6=False)
    with switch_between(a, b, "vale5") as sw:
        assert a.ping(b)                        # both MACs learned
        sctp = build_sctp(src=socket.inet_aton(a.ip), dst=socket.inet_aton(b.ip))
        frame = (bytes.fromhex(b.mac.replace(":", "")) + bytes.fromhex(a.mac.replace(":", ""))
                 + sctp.frame[12:])
        got = bytes.fromhex(captured(
            b, lambda: a.run(sys.executable, "-c", SEND_WITH_HEADER, (sctp.vnet + frame).hex()),
            CAPTURE_SCTP))
        assert got[12:sctp.l4 + 8] == frame[12:sctp.l4 + 8]
        assert got[sctp.l4 + 12:] == frame[sctp.l4 + 12:]
        assert sctp_checksum_ok(got[sctp.l4:])
        assert sw.stats()["ports"][a.port]["drops"]["bad_offload"] == 0


CAPTURE_TAGGED = """
import json, socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x88b5))
s.setsockopt(socket.SOL_SOCKET, 33, 32 << 20)     # SO_RCVBUFFORCE: a burst fits
s.bind(("eth0", 0))
s.settimeout(0.2)
want, got = int(sys.argv[1]), []
print("ready", flush=True)
end = time.monotonic() + 10
while len(got) < want and time.monotonic() < end:
    try:
        data = s.recv(65536)
    except TimeoutError:
        continue
    got.append([int.from_bytes(data[14:18], "big"), len(data)])
print(json.dumps(got), flush=True)
"""


def capture_tagged(host: Host, count: int, send: Callable[[], object]) -> list[list[int]]:
    """Start a capture of COUNT frames of ethertype 0x88b5 in HOST, call SEND, and return
    the [tag, length] of each frame that arrived, in order."""
    return json.loads(captured(host, send, CAPTURE_TAGGED, str(count)))


def test_short_frames_go_through_the_tx_ring_and_keep_their_place(make_host):
    """A batch of short frames (700 of 60 and 1514 bytes) goes out through the port's
    256-slot TX ring, going round it more than twice; a batch with a longer frame in it
    goes by sendmmsg, all of it. Every frame arrives once, in the order sent, and the
    counters add up."""
    a = make_host(1, mtu=9000, ipv6=False)
    core = SwitchCore(batch=1024)
    port = core.add_packet_port(socket.if_nametoindex(a.port), mtu=9000)
    src = core.add_port(rx_slots=1024, slot_size=4096)
    assert core.port_info(port)["tx_frames"] == 256
    short = [1514 if i % 3 == 0 else 60 for i in range(700)]
    mixed = [3000 if i % 7 == 3 else size for i, size in enumerate(short[:300])]

    for sizes in (short, mixed):
        ring_before = core.snapshot()["ports"][port]["tx_ring_packets"]
        assert core.inject(src, [frame(a.mac, mac(1), size, tag=i)
                                 for i, size in enumerate(sizes)]) == len(sizes)
        got = capture_tagged(a, len(sizes), lambda: core.forward(src))
        assert got == [[i, size] for i, size in enumerate(sizes)]
        through_ring = core.snapshot()["ports"][port]["tx_ring_packets"] - ring_before
        if sizes is short:
            # The first 256 find the ring empty; the rest, slots the receiver freed, or
            # sendmmsg if it has not freed them yet.
            assert through_ring >= 256
        else:
            assert through_ring == 0
    counters = core.snapshot()["ports"][port]
    assert counters["tx_packets"] == len(short) + len(mixed)
    assert counters["tx_bytes"] == sum(short) + sum(mixed)
    assert not any(counters["drops"].values())


def test_a_busy_tx_ring_hands_the_rest_of_the_batch_to_sendmmsg(make_host):
    """A NIC frees a TX ring slot only when its frame is on the wire. When the slot at the
    ring's head is still in flight after what was marked has been handed over, that frame
    and the rest of the batch for that port go by sendmmsg, after the ones in the ring.
    Once the slot is free the ring is used again from there, which is where the kernel
    looks too: had the two heads drifted apart, the kernel would send nothing and the
    port would give up its ring."""
    a = make_host(1, ipv6=False)
    core = SwitchCore(batch=1024)
    port = core.add_packet_port(socket.if_nametoindex(a.port))
    src = core.add_port()
    assert core.port_info(port)["tx_frames"] == 256
    core._hold_tx_slot(port, 10, True)

    def through_ring(tags: list[int]) -> int:
        before = core.snapshot()["ports"][port]["tx_ring_packets"]
        core.inject(src, [frame(a.mac, mac(1), tag=t) for t in tags])
        got = capture_tagged(a, len(tags), lambda: core.forward(src))
        assert [tag for tag, _ in got] == tags
        return core.snapshot()["ports"][port]["tx_ring_packets"] - before

    assert through_ring(list(range(40))) == 10
    core._hold_tx_slot(port, 0, False)
    assert through_ring(list(range(100, 120))) == 20
    assert core.port_info(port)["tx_frames"] == 256     # the ring was not given up
    counters = core.snapshot()["ports"][port]
    assert counters["tx_packets"] == 60
    assert not any(counters["drops"].values())
    with pytest.raises(ValueError, match="no packet socket"):
        core._hold_tx_slot(src, 0, True)


def test_frames_the_kernel_refuses_are_counted_and_the_ring_goes_on(make_host):
    """With the link down the kernel takes none of the marked frames: they are counted as
    tx_error and taken back. The next ones go out, and only they: had the ring's head
    and the kernel's drifted apart, nothing, or the old frames too, would arrive."""
    a = make_host(1, ipv6=False)
    core = SwitchCore()
    port = core.add_packet_port(socket.if_nametoindex(a.port))
    src = core.add_port()
    sh("ip", "link", "set", a.port, "down")
    core.inject(src, [frame(a.mac, mac(1), tag=i) for i in range(5)])
    assert core.forward(src) == 5
    counters = core.snapshot()["ports"][port]
    assert counters["drops"]["tx_error"] == 5
    assert counters["tx_packets"] == 0

    sh("ip", "link", "set", a.port, "up")
    core.inject(src, [frame(a.mac, mac(1), tag=i) for i in range(10, 15)])
    got = capture_tagged(a, 5, lambda: core.forward(src))
    assert [tag for tag, _ in got] == [10, 11, 12, 13, 14]
    assert core.snapshot()["ports"][port]["tx_packets"] == 5


SEND_TAGGED = """
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
dst, src = bytes.fromhex(sys.argv[1]), bytes.fromhex(sys.argv[2])
for seq in range(5):
    s.send(dst + src + b"\\x81\\x00\\x00\\x07\\x88\\xb5" + seq.to_bytes(4, "big") + bytes(42))
"""

CAPTURE_VLAN = """
import json, socket, struct, time
# ETH_P_ALL: sockets bound to one protocol get frames after the kernel has dropped a tag
# no VLAN device wanted.
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.setsockopt(263, 8, 1)                 # SOL_PACKET, PACKET_AUXDATA: the tag taken off
s.bind(("eth0", 0))
s.settimeout(0.2)
got = []
print("ready", flush=True)
end = time.monotonic() + 5
while len(got) < 5 and time.monotonic() < end:
    try:
        data, anc, _, _ = s.recvmsg(65536, 256)
    except TimeoutError:
        continue
    if data[12:14] != b"\\x88\\xb5":
        continue
    status, _, _, _, _, tci, tpid = struct.unpack("IIIHHHH", anc[0][2][:20])
    got.append([int.from_bytes(data[14:18], "big"), len(data),
                tci if status & 0x10 else None, tpid])
print(json.dumps(got), flush=True)
"""


def test_vlan_frames_get_their_tag_back_in_the_tx_ring(make_host):
    """A packet socket gets VLAN frames with the tag taken off (Linux's receive path
    does that, reporting it in the ring slot's header); the switch puts it back on the
    way out, here into TX ring slots. B's kernel takes it off again and reports it."""
    a, b = make_host(1, ipv6=False), make_host(2, ipv6=False)
    with switch_between(a, b, "vale7") as sw:
        got = json.loads(captured(
            b, lambda: a.run(sys.executable, "-c", SEND_TAGGED, b.mac.replace(":", ""),
                             a.mac.replace(":", "")),
            CAPTURE_VLAN))
        assert got == [[seq, 60, 7, 0x8100] for seq in range(5)]
        assert sw.stats()["ports"][b.port]["tx_ring_packets"] == 5
