"""memif ports against a client of the tests' own (tests/memif_client.py): the protocol,
frames both ways, and a program that breaks the rules. No privileges: the program's
memory is a memfd, the socket a socketpair, the switch driven by hand."""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from tests.memif_client import BUFFER, C2S, RING, S2C, SLOTS, Client
from vale import memif
from vale.switch import Switch

BROADCAST = b"\xff" * 6
APP_MAC = bytes.fromhex("020000000a01")
HOST_MAC = bytes.fromhex("020000000002")


def frame(dst: bytes, src: bytes, size: int = 60, fill: int = 0) -> bytes:
    return dst + src + b"\x08\x00" + bytes([fill & 0xFF]) * (size - 14)


class Bench:
    """A switch with a memif port `app1` served over a socketpair, and memory ports p0
    and p1."""

    def __init__(self, iface_id: int = 0, secret: str | None = None) -> None:
        self.sw = Switch("vale0", manual_clock=True)
        self.sw.add_port("p0", slot_size=16384)
        self.sw.add_port("p1", slot_size=16384)
        self.sw.add_memif_port("app1")
        self.iface_id, self.secret = iface_id, secret
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.client = self.start()

    def start(self) -> Client:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        theirs.settimeout(5)
        connection = memif.Connection(ours, self.sw.memif_rings("app1"), "app1",
                                      self.iface_id, self.secret)
        self.session = asyncio.run_coroutine_threadsafe(connection.serve(), self.loop)
        return Client(theirs)

    def close(self) -> None:
        self.client.close()
        self.session.result(timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()

    def info(self) -> dict:
        return self.sw.port_info("app1")

    def drops(self, port: str = "app1") -> dict[str, int]:
        return self.sw.stats()["ports"][port]["drops"]


@pytest.fixture(autouse=True)
def quick_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    """valed looks at a connected program's rings every 20 ms here, not every WATCH_S:
    the tests wait for its DISCONNECT after each broken rule."""
    monkeypatch.setattr(memif, "WATCH_S", 0.02)


@pytest.fixture
def bench() -> Iterator[Bench]:
    b = Bench()
    yield b
    b.close()


def test_frames_the_program_sends_reach_the_other_ports(bench: Bench) -> None:
    bench.client.connect()
    frames = [frame(BROADCAST, APP_MAC, 60 + k, k) for k in range(5)]
    bench.client.transmit(frames)
    assert bench.sw.forward("app1") == 5
    assert bench.sw.drain("p0") == frames
    assert bench.sw.drain("p1") == frames
    assert bench.client.tail(C2S) == 5                     # buffers given back
    assert bench.sw.fdb_lookup("02:00:00:00:0a:01") == "app1"


def test_a_frame_in_a_chain_of_buffers_is_taken_whole(bench: Bench) -> None:
    bench.client.connect()
    big = frame(BROADCAST, APP_MAC, 5000, 7)
    bench.client.transmit([big, frame(BROADCAST, APP_MAC)])
    assert bench.sw.forward("app1") == 2
    assert bench.sw.drain("p0") == [big, frame(BROADCAST, APP_MAC)]
    assert bench.client.tail(C2S) == 4                     # three buffers and one


def test_frames_for_the_program_arrive_in_its_posted_buffers(bench: Bench) -> None:
    bench.client.connect()
    bench.client.post(16)
    frames = [frame(APP_MAC, HOST_MAC, 60, 1), frame(APP_MAC, HOST_MAC, 1514, 2),
              frame(APP_MAC, HOST_MAC, 4000, 3)]
    bench.sw.inject("p0", frames)
    bench.sw.forward("p0")
    assert bench.client.received() == frames
    assert bench.client.tail(S2C) == 4                     # the 4000 bytes took two
    assert bench.sw.stats()["ports"]["app1"]["tx_packets"] == 3


def test_frames_for_a_program_without_buffers_are_counted_ring_full(bench: Bench) -> None:
    bench.client.connect()
    bench.client.post(1)
    bench.sw.inject("p0", [frame(APP_MAC, HOST_MAC, 60, k) for k in range(3)])
    bench.sw.forward("p0")
    assert len(bench.client.received()) == 1
    assert bench.drops()["ring_full"] == 2


def test_an_idle_port_asks_for_kicks_and_a_busy_one_does_not(bench: Bench) -> None:
    bench.client.connect()
    bench.client.transmit([frame(BROADCAST, APP_MAC)] * 3)
    bench.sw.forward("app1")
    assert bench.client.flags(C2S) & 1                     # frames came: no kicks
    bench.sw.forward("app1")
    assert not bench.client.flags(C2S) & 1                 # idle: kick me


def test_a_program_that_goes_away_leaves_the_port_for_the_next(bench: Bench) -> None:
    bench.client.connect()
    bench.client.close()
    bench.session.result(timeout=5)
    assert not bench.info()["connected"]
    bench.client = bench.start()
    bench.client.connect()
    bench.client.transmit([frame(BROADCAST, APP_MAC)])
    assert bench.sw.forward("app1") == 1


def test_a_trunk_memif_port_gets_frames_tagged_and_its_tags_taken(bench: Bench) -> None:
    bench.sw.set_port("app1", vlan="trunk:10")
    bench.sw.set_port("p0", vlan="access:10")
    bench.sw.set_port("p1", vlan="access:20")
    bench.client.connect()
    bench.client.post(8)
    bench.sw.inject("p0", [frame(BROADCAST, HOST_MAC)])
    bench.sw.forward("p0")
    (got,) = bench.client.received()
    assert got[12:16] == b"\x81\x00\x00\x0a"            # VLAN 10's tag put back
    assert got[:12] + got[16:] == frame(BROADCAST, HOST_MAC)
    bench.client.transmit([got])                          # back in, tagged: VLAN 10 only
    bench.sw.forward("app1")
    assert bench.sw.drain("p1") == []


def test_a_memif_port_is_mirrored_like_any_port(bench: Bench) -> None:
    bench.sw.set_mirror("app1", rx_to="p1")
    bench.sw.fdb_add("02:00:00:00:00:02", "p0")
    bench.client.connect()
    sent = frame(HOST_MAC, APP_MAC)
    bench.client.transmit([sent])
    bench.sw.forward("app1")
    assert bench.sw.drain("p0") == [sent]                 # where it goes
    assert bench.sw.drain("p1") == [sent]                 # and the mirror's copy


# ---- a program that breaks the rules of the rings ----------------------------------------

def _offset_outside_the_region(c: Client) -> None:
    c.transmit([frame(BROADCAST, APP_MAC)])
    c.set_desc(C2S, 0, 0, 0, 60, 1 << 30)


def _length_past_the_region(c: Client) -> None:
    c.transmit([frame(BROADCAST, APP_MAC)])
    c.set_desc(C2S, 0, 0, 0, 0xFFFFFFFF, c.buffer(C2S, 0))


def _region_never_added(c: Client) -> None:
    c.transmit([frame(BROADCAST, APP_MAC)])
    c.set_desc(C2S, 0, 0, 3, 60, 0)


def _chain_past_head(c: Client) -> None:
    c.transmit([frame(BROADCAST, APP_MAC)])
    c.set_desc(C2S, 0, 1, 0, 60, c.buffer(C2S, 0))        # NEXT, and nothing after it


def _head_far_ahead(c: Client) -> None:
    c.set_head(C2S, SLOTS + 5)


def _chain_over_64k(c: Client) -> None:
    c.transmit([frame(BROADCAST, APP_MAC, 70000)])


@pytest.mark.parametrize("attack", [_offset_outside_the_region, _length_past_the_region,
                                    _region_never_added, _chain_past_head, _head_far_ahead,
                                    _chain_over_64k])
def test_a_send_ring_breaking_a_rule_stops_the_port_and_is_counted(bench: Bench,
                                                                   attack) -> None:
    bench.client.connect()
    attack(bench.client)
    bench.sw.forward("app1")
    info = bench.info()
    assert bench.drops()["bad_descriptor"] == 1
    assert info["broken"] == 1 and info["broke"] and not info["connected"]
    assert bench.sw.drain("p0") == []
    # valed tells the program why and lets it go; the rest of the switch forwards on.
    data = bench.client.expect(memif.DISCONNECT)
    assert bench.client.reason(data).startswith("bad descriptor: ")
    bench.session.result(timeout=5)
    assert info["refused"] == 0 and bench.info()["refused"] == 1
    bench.sw.inject("p0", [frame(BROADCAST, HOST_MAC)])
    bench.sw.forward("p0")
    assert bench.sw.drain("p1") == [frame(BROADCAST, HOST_MAC)]


@pytest.mark.parametrize("posted", [(0, 0, BUFFER, 1 << 30), (0, 7, BUFFER, 0),
                                    (0, 0, 0, 4096), (0, 0, 1 << 31, 4096)])
def test_a_receive_buffer_breaking_a_rule_stops_the_port(bench: Bench, posted) -> None:
    bench.client.connect()
    bench.client.post(4)
    bench.client.set_desc(S2C, 0, *posted)
    bench.sw.inject("p0", [frame(APP_MAC, HOST_MAC)])
    bench.sw.forward("p0")
    assert bench.drops()["bad_descriptor"] == 1
    assert bench.client.received() == []


def test_random_rings_never_crash_the_switch(bench: Bench) -> None:
    """Fuzz: descriptors of random bytes and heads anywhere, round after round; each
    round forwards frames, or stops the rings and counts it (and the program connects
    again)."""
    rng = random.Random(20261203)
    c = bench.client
    c.connect()
    broken = 0
    for _round in range(300):
        for ring in (C2S, S2C):
            c.mem[RING * ring + 128:RING * (ring + 1)] = rng.randbytes(16 * SLOTS)
            for _ in range(rng.randrange(6)):     # some plausible descriptors among them
                c.set_desc(ring, rng.randrange(SLOTS), rng.randrange(2), rng.choice((0, 0, 1)),
                           rng.choice((0, 14, 60, BUFFER, 70000)),
                           c.buffer(ring, rng.randrange(SLOTS)) + rng.choice((0, 0, 1 << 24)))
            c.set_head(ring, c.tail(ring) + rng.choice((0, 1, 3, 17, SLOTS, SLOTS + 1)))
        bench.sw.inject("p0", [frame(APP_MAC, HOST_MAC, rng.randrange(60, 3000))])
        bench.sw.forward("p0")
        bench.sw.forward("app1")
        bench.sw.drain("p0")
        bench.sw.drain("p1")
        if not bench.info()["connected"]:
            broken += 1
            c.expect(memif.DISCONNECT)
            bench.session.result(timeout=5)
            c.close()
            c = bench.client = bench.start()
            c.connect()
    assert broken > 100                       # most random rings break a rule
    assert bench.drops()["bad_descriptor"] == bench.info()["broken"] == broken
    bench.sw.inject("p0", [frame(BROADCAST, HOST_MAC)])
    bench.sw.forward("p0")
    assert bench.sw.drain("p1") == [frame(BROADCAST, HOST_MAC)]


# ---- a program that breaks the protocol --------------------------------------------------

def _refused(bench: Bench) -> str:
    data = bench.client.expect(memif.DISCONNECT)
    bench.session.result(timeout=5)
    assert bench.info()["refused"] == 1 and not bench.info()["connected"]
    return bench.client.reason(data)


def test_a_wrong_version_is_refused(bench: Bench) -> None:
    bench.client.expect(memif.HELLO)
    bench.client.send(memif.INIT, memif.INIT_MSG.pack(0x0100, 0, 0, b"", b"old"))
    assert _refused(bench) == "incompatible memif version 1.0"


def test_a_wrong_id_is_refused(bench: Bench) -> None:
    bench.client.expect(memif.HELLO)
    bench.client.send(memif.INIT, memif.INIT_MSG.pack(memif.VERSION, 9, 0, b"", b"x"))
    assert _refused(bench).startswith("ID not found")


@pytest.mark.parametrize("given, reason", [(b"", "secret required"),
                                           (b"wrong", "incorrect secret")])
def test_a_port_with_a_secret_refuses_a_program_without_it(given, reason) -> None:
    bench = Bench(secret="s3cret")
    try:
        bench.client.expect(memif.HELLO)
        bench.client.send(memif.INIT, memif.INIT_MSG.pack(memif.VERSION, 0, 0, given, b"x"))
        assert _refused(bench) == reason
    finally:
        bench.close()


def test_the_right_secret_connects() -> None:
    bench = Bench(iface_id=7, secret="s3cret")
    try:
        bench.client.connect(iface_id=7, secret=b"s3cret")
        assert bench.info()["connected"]
    finally:
        bench.close()


def test_a_ring_outside_its_region_is_refused(bench: Bench) -> None:
    c = bench.client
    c.expect(memif.HELLO)
    c.send(memif.INIT, memif.INIT_MSG.pack(memif.VERSION, 0, 0, b"", b"x"))
    c.expect(memif.ACK)
    c.send(memif.ADD_REGION, memif.REGION_MSG.pack(0, RING), c.fd)     # too small a region
    c.expect(memif.ACK)
    for ring in (C2S, S2C):
        c.send(memif.ADD_RING, memif.RING_MSG.pack(1 - ring, 0, 0, RING * ring, 8, 0),
               c.events[ring])
        c.expect(memif.ACK)
    c.send(memif.CONNECT, memif.NAME_MSG.pack(b"x"))
    assert _refused(bench) == "a ring outside its region, or misaligned"


def test_a_ring_without_the_cookie_is_refused(bench: Bench) -> None:
    c = bench.client
    struct.pack_into("<I", c.mem, RING * S2C, 0x3E31F10)       # memif 1.0's
    c.expect(memif.HELLO)
    c.send(memif.INIT, memif.INIT_MSG.pack(memif.VERSION, 0, 0, b"", b"x"))
    c.expect(memif.ACK)
    c.send(memif.ADD_REGION, memif.REGION_MSG.pack(0, c.mem.size()), c.fd)
    c.expect(memif.ACK)
    for ring in (C2S, S2C):
        c.send(memif.ADD_RING, memif.RING_MSG.pack(1 - ring, 0, 0, RING * ring, 8, 0),
               c.events[ring])
        c.expect(memif.ACK)
    c.send(memif.CONNECT, memif.NAME_MSG.pack(b"x"))
    assert _refused(bench) == "a ring without memif's cookie"


def test_a_region_without_its_fd_is_refused(bench: Bench) -> None:
    c = bench.client
    c.expect(memif.HELLO)
    c.send(memif.INIT, memif.INIT_MSG.pack(memif.VERSION, 0, 0, b"", b"x"))
    c.expect(memif.ACK)
    c.send(memif.ADD_REGION, memif.REGION_MSG.pack(0, 4096))
    assert _refused(bench) == "missing region fd"


def test_a_second_ring_each_way_is_refused(bench: Bench) -> None:
    c = bench.client
    c.expect(memif.HELLO)
    c.send(memif.INIT, memif.INIT_MSG.pack(memif.VERSION, 0, 0, b"", b"x"))
    c.expect(memif.ACK)
    c.send(memif.ADD_REGION, memif.REGION_MSG.pack(0, c.mem.size()), c.fd)
    c.expect(memif.ACK)
    c.send(memif.ADD_RING, memif.RING_MSG.pack(1, 1, 0, 0, 8, 0), c.events[0])
    assert _refused(bench).startswith("invalid ring index 1")


@pytest.mark.parametrize("data", [b"garbage", bytes(128), b"\x06" + bytes(127)])
def test_garbage_or_a_message_out_of_turn_is_refused(bench: Bench, data: bytes) -> None:
    bench.client.expect(memif.HELLO)
    bench.client.sock.send(data)
    reason = _refused(bench)
    assert reason.startswith(("invalid message size", "unexpected message"))


def test_a_program_gone_mid_setup_leaves_the_port_for_the_next(bench: Bench) -> None:
    c = bench.client
    c.expect(memif.HELLO)
    c.send(memif.INIT, memif.INIT_MSG.pack(memif.VERSION, 0, 0, b"", b"x"))
    c.expect(memif.ACK)
    c.send(memif.ADD_REGION, memif.REGION_MSG.pack(0, c.mem.size()), c.fd)
    c.expect(memif.ACK)
    c.close()
    bench.session.result(timeout=5)
    assert not bench.info()["connected"] and bench.info()["refused"] == 0
    bench.client = bench.start()
    bench.client.connect()
    assert bench.info()["connected"]
