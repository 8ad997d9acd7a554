"""vhost-user ports against a front end of the tests' own (tests/vhost_frontend.py): the
protocol, frames both ways, and a guest or client that breaks the rules. No privileges:
the guest's memory is a memfd, the socket a socketpair, the switch driven by hand."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from tests.vhost_frontend import (
    BUFFER,
    F_INDIRECT,
    F_NEXT,
    F_WRITE,
    GPA_BASE,
    HEADER,
    MEMORY,
    NUM,
    UVA_BASE,
    FrontEnd,
)
from vale import vhost
from vale.switch import Switch

BROADCAST = b"\xff" * 6
GUEST_MAC = bytes.fromhex("525400000001")
HOST_MAC = bytes.fromhex("020000000002")


def frame(dst: bytes, src: bytes, size: int = 60, fill: int = 0) -> bytes:
    return dst + src + b"\x08\x00" + bytes([fill & 0xFF]) * (size - 14)


class Bench:
    """A switch with a vhost-user port `vm1` served over a socketpair, and memory ports
    p0 and p1."""

    def __init__(self) -> None:
        self.sw = Switch("vale0", manual_clock=True)
        self.sw.add_port("p0", slot_size=4096)
        self.sw.add_port("p1", slot_size=4096)
        self.sw.add_vhost_port("vm1")
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.connect()

    def connect(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.session = asyncio.run_coroutine_threadsafe(
            vhost.Connection(ours, self.sw.vhost_rings("vm1"), "vm1").serve(), self.loop)
        self.fe = FrontEnd(theirs)

    def ended(self) -> bool:
        """Whether the back end ended the session (it closed its end)."""
        self.session.result(timeout=5)
        return True

    def close(self) -> None:
        self.fe.close()
        self.session.result(timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()

    def info(self) -> dict:
        return self.sw.port_info("vm1")

    def counters(self, port: str = "vm1") -> dict:
        return self.sw.stats()["ports"][port]

    def drops(self, port: str = "vm1") -> dict[str, int]:
        return self.counters(port)["drops"]


@pytest.fixture
def bench() -> Iterator[Bench]:
    b = Bench()
    yield b
    b.close()


def test_frames_the_guest_sends_reach_the_other_ports(bench: Bench) -> None:
    bench.fe.negotiate()
    frames = [frame(BROADCAST, GUEST_MAC, 60 + k, k) for k in range(5)]
    heads = bench.fe.transmit(frames)
    assert bench.sw.forward("vm1") == 5
    assert bench.sw.drain("p0") == frames
    assert bench.sw.drain("p1") == frames
    assert [head for head, _ in bench.fe.used(1)] == heads      # buffers given back
    assert bench.sw.fdb_lookup("52:54:00:00:00:01") == "vm1"


def test_frames_for_the_guest_arrive_with_a_header_in_its_buffers(bench: Bench) -> None:
    bench.fe.negotiate()
    bench.fe.post_receive(8)
    frames = [frame(GUEST_MAC, HOST_MAC, 60, 1), frame(GUEST_MAC, HOST_MAC, 1514, 2)]
    bench.sw.inject("p0", frames)
    bench.sw.forward("p0")
    got = bench.fe.received()
    assert [f for _, f in got] == frames
    for header, _ in got:
        assert header[:10] == bytes(10)                     # no offload asked
        assert struct.unpack_from("<H", header, 10)[0] == 1     # num_buffers
    assert bench.counters()["tx_packets"] == 2


def test_a_frame_longer_than_a_buffer_spans_merged_buffers(bench: Bench) -> None:
    bench.fe.negotiate()
    bench.fe.post_receive(4)
    big = frame(GUEST_MAC, HOST_MAC, 3000, 7)
    bench.sw.inject("p0", [big])
    bench.sw.forward("p0")
    used = bench.fe.used(0)
    assert [length for _, length in used] == [BUFFER, HEADER + len(big) - BUFFER]
    first = bytes(bench.fe.mem[0x10000:0x10000 + BUFFER])
    assert struct.unpack_from("<H", first, 10)[0] == 2
    second = bytes(bench.fe.mem[0x10000 + BUFFER:0x10000 + BUFFER + used[1][1]])
    assert first[HEADER:] + second == big


def test_frames_for_a_guest_without_buffers_are_counted_ring_full(bench: Bench) -> None:
    bench.fe.negotiate()
    bench.sw.inject("p0", [frame(GUEST_MAC, HOST_MAC)] * 3)
    bench.sw.forward("p0")
    assert bench.drops()["ring_full"] == 3
    bench.fe.post_receive(2)                  # buffers now: the next frames go in
    bench.sw.inject("p0", [frame(GUEST_MAC, HOST_MAC)] * 3)
    bench.sw.forward("p0")
    assert len(bench.fe.received()) == 2
    assert bench.drops()["ring_full"] == 4


def test_without_mergeable_buffers_a_frame_takes_one_chain_and_a_10_byte_header(
        bench: Bench) -> None:
    bench.fe.negotiate(1 << vhost.F_PROTOCOL_FEATURES)
    info = bench.info()
    assert info["header"] == 10
    bench.fe.post_receive(2)
    bench.sw.inject("p0", [frame(GUEST_MAC, HOST_MAC, 100), frame(GUEST_MAC, HOST_MAC, 3000)])
    bench.sw.forward("p0")
    used = bench.fe.used(0)
    assert [length for _, length in used] == [110]
    assert bench.drops()["too_big"] == 1


def test_an_idle_transmit_queue_asks_the_guest_for_a_kick(bench: Bench) -> None:
    bench.fe.negotiate()
    assert bench.sw.forward("vm1") == 0
    used = 0x8000 + 0x2000
    avail_event = struct.unpack_from("<H", bench.fe.mem, used + 4 + 8 * NUM)[0]
    assert avail_event == 0                   # the guest's next frame (avail index 0)
    bench.fe.transmit([frame(BROADCAST, GUEST_MAC)] * 3)
    assert bench.sw.forward("vm1") == 3
    assert bench.sw.forward("vm1") == 0
    assert struct.unpack_from("<H", bench.fe.mem, used + 4 + 8 * NUM)[0] == 3


# ---- a guest that breaks the rules -----------------------------------------------------

def _index_out_of_range(fe: FrontEnd) -> None:
    fe.publish(1, [NUM + 5])


def _chain_that_loops(fe: FrontEnd) -> None:
    fe.set_desc(1, 0, fe.buffer_gpa(1, 0), 64, F_NEXT, 1)
    fe.set_desc(1, 1, fe.buffer_gpa(1, 1), 64, F_NEXT, 0)
    fe.publish(1, [0])


def _buffer_outside_memory(fe: FrontEnd) -> None:
    fe.set_desc(1, 0, GPA_BASE + MEMORY - 10, 100, 0)
    fe.publish(1, [0])


def _buffer_below_memory(fe: FrontEnd) -> None:
    fe.set_desc(1, 0, 0x1000, 100, 0)
    fe.publish(1, [0])


def _avail_index_jumps(fe: FrontEnd) -> None:
    fe.publish(1, [], jump=NUM + 1)


def _writable_buffer_to_send(fe: FrontEnd) -> None:
    fe.set_desc(1, 0, fe.buffer_gpa(1, 0), 64, F_WRITE)
    fe.publish(1, [0])


def _indirect_table_outside_memory(fe: FrontEnd) -> None:
    fe.set_desc(1, 0, GPA_BASE + MEMORY + 4096, 64, F_INDIRECT)
    fe.publish(1, [0])


def _indirect_table_of_odd_length(fe: FrontEnd) -> None:
    fe.set_desc(1, 0, fe.buffer_gpa(1, 0), 20, F_INDIRECT)
    fe.publish(1, [0])


def _nested_indirect_table(fe: FrontEnd) -> None:
    table = fe.buffer_gpa(1, 4)
    fe.mem[table - GPA_BASE:table - GPA_BASE + 16] = struct.pack("<QIHH", table, 16, F_INDIRECT, 0)
    fe.set_desc(1, 0, table, 16, F_INDIRECT)
    fe.publish(1, [0])


def _chain_over_64k(fe: FrontEnd) -> None:
    for i in range(40):
        fe.set_desc(1, i, fe.buffer_gpa(1, 0), 2048, F_NEXT, i + 1)
    fe.set_desc(1, 40, fe.buffer_gpa(1, 0), 2048, 0)
    fe.publish(1, [0])


HOSTILE_TX = [_index_out_of_range, _chain_that_loops, _buffer_outside_memory,
              _buffer_below_memory, _avail_index_jumps, _writable_buffer_to_send,
              _indirect_table_outside_memory, _indirect_table_of_odd_length,
              _nested_indirect_table, _chain_over_64k]


@pytest.mark.parametrize("attack", HOSTILE_TX, ids=lambda f: f.__name__.strip("_"))
def test_a_transmit_queue_breaking_a_rule_stops_the_port_and_is_counted(
        bench: Bench, attack) -> None:
    bench.fe.negotiate()
    attack(bench.fe)
    bench.sw.forward("vm1")
    info = bench.info()
    assert bench.drops()["bad_descriptor"] == 1
    assert info["broken"] == 1 and info["broke"]
    assert not info["queues"]["tx"]["started"] and not info["queues"]["rx"]["started"]
    assert bench.sw.drain("p0") == []
    bench.fe.transmit([frame(BROADCAST, GUEST_MAC)])      # stopped: nothing more taken
    assert bench.sw.forward("vm1") == 0
    # The rest of the switch forwards as before.
    bench.sw.inject("p0", [frame(BROADCAST, HOST_MAC)])
    bench.sw.forward("p0")
    assert bench.sw.drain("p1") == [frame(BROADCAST, HOST_MAC)]


def _readable_receive_buffer(fe: FrontEnd) -> None:
    fe.set_desc(0, 0, fe.buffer_gpa(0, 0), BUFFER, 0)
    fe.publish(0, [0])


def _receive_buffer_outside_memory(fe: FrontEnd) -> None:
    fe.set_desc(0, 0, GPA_BASE + MEMORY - 100, BUFFER, F_WRITE)
    fe.publish(0, [0])


def _receive_buffer_shorter_than_the_header(fe: FrontEnd) -> None:
    fe.set_desc(0, 0, fe.buffer_gpa(0, 0), 4, F_WRITE)
    fe.publish(0, [0])


def _receive_chain_that_loops(fe: FrontEnd) -> None:
    fe.set_desc(0, 0, fe.buffer_gpa(0, 0), 12, F_WRITE | F_NEXT, 1)
    fe.set_desc(0, 1, fe.buffer_gpa(0, 1), 4, F_WRITE | F_NEXT, 1)
    fe.publish(0, [0])


@pytest.mark.parametrize("attack", [_readable_receive_buffer, _receive_buffer_outside_memory,
                                    _receive_buffer_shorter_than_the_header,
                                    _receive_chain_that_loops],
                         ids=lambda f: f.__name__.strip("_"))
def test_a_receive_queue_breaking_a_rule_stops_the_port_and_is_counted(
        bench: Bench, attack) -> None:
    bench.fe.negotiate(bench_features_without_mergeable()
                       if attack is _receive_chain_that_loops else None)
    attack(bench.fe)
    bench.sw.inject("p0", [frame(GUEST_MAC, HOST_MAC, 1514)])
    bench.sw.forward("p0")
    assert bench.drops()["bad_descriptor"] == 1
    assert bench.counters()["tx_packets"] == 0
    assert bench.fe.used(0) == []             # nothing published
    bench.sw.drain("p1")
    bench.sw.inject("p0", [frame(BROADCAST, HOST_MAC)])
    bench.sw.forward("p0")
    assert bench.sw.drain("p1") == [frame(BROADCAST, HOST_MAC)]


def bench_features_without_mergeable() -> int:
    return vhost.OFFERED & ~(1 << vhost.F_MRG_RXBUF)


def test_a_stopped_port_serves_again_once_the_front_end_sets_its_rings_up(bench: Bench) -> None:
    bench.fe.negotiate()
    _index_out_of_range(bench.fe)
    bench.sw.forward("vm1")
    assert bench.info()["broken"] == 1
    bench.fe.close()
    bench.ended()
    bench.connect()                           # a new session (a guest reset, a reconnect)
    bench.fe.negotiate()
    bench.fe.transmit([frame(BROADCAST, GUEST_MAC)])
    assert bench.sw.forward("vm1") == 1


def test_random_rings_never_crash_the_switch(bench: Bench) -> None:
    """Fuzz: descriptor tables and avail rings of random bytes, round after round; every
    round either forwards frames or stops the rings and counts it."""
    rng = random.Random(20261202)
    for _round in range(300):
        bench.fe.negotiate()
        for q in (0, 1):
            table = 0x8000 * q
            bench.fe.mem[table:table + 16 * NUM] = rng.randbytes(16 * NUM)
            for _ in range(rng.randrange(8)):     # some plausible descriptors among them
                bench.fe.set_desc(q, rng.randrange(NUM),
                                  GPA_BASE + rng.randrange(MEMORY + 8192) - 4096,
                                  rng.choice((0, 12, 64, 2048, 70000)),
                                  rng.randrange(8), rng.randrange(NUM + 4))
            heads = [rng.randrange(NUM + 8) for _ in range(rng.randrange(1, 6))]
            bench.fe.publish(q, heads, jump=rng.choice((0, 0, 0, 1, NUM)))
        bench.sw.inject("p0", [frame(GUEST_MAC, HOST_MAC, rng.randrange(60, 3000))])
        bench.sw.forward("p0")
        bench.sw.forward("vm1")
        bench.sw.drain("p0")
        bench.sw.drain("p1")
        for q in (0, 1):
            bench.fe.used(q)
            bench.fe.avail_idx[q] = 0
            bench.fe.used_seen[q] = 0
            bench.fe.mem[0x8000 * q + 0x1000:0x8000 * q + 0x3000] = bytes(0x2000)
    info = bench.info()
    assert info["broken"] > 100               # most random rings break a rule
    assert bench.drops()["bad_descriptor"] == info["broken"]
    bench.sw.inject("p0", [frame(BROADCAST, HOST_MAC)])
    bench.sw.forward("p0")
    assert bench.sw.drain("p1") == [frame(BROADCAST, HOST_MAC)]


# ---- a client that breaks the protocol -------------------------------------------------

def _negotiated_protocol(fe: FrontEnd) -> None:
    fe.send(vhost.GET_PROTOCOL_FEATURES)
    fe.send(vhost.SET_PROTOCOL_FEATURES, vhost.U64.pack(vhost.U64.unpack(fe.reply())[0]))


@pytest.mark.parametrize("request_, payload", [
    (vhost.SET_VRING_NUM, vhost.VRING_STATE.pack(5, 256)),                  # no queue 5
    (vhost.SET_VRING_NUM, vhost.VRING_STATE.pack(0, 300)),                  # not 2^n
    (vhost.SET_VRING_NUM, vhost.VRING_STATE.pack(0, 65536)),
    (vhost.SET_VRING_BASE, vhost.VRING_STATE.pack(0, 70000)),
    (vhost.SET_FEATURES, vhost.U64.pack(1 << 40)),                          # not offered
    (vhost.SET_PROTOCOL_FEATURES, vhost.U64.pack(1 << 20)),
    (vhost.SET_VRING_NUM, b"\x00"),                                         # cut short
    (99, b""),                                                              # unknown
])
def test_a_bad_request_gets_an_error_reply_and_changes_nothing(
        bench: Bench, request_: int, payload: bytes) -> None:
    _negotiated_protocol(bench.fe)
    before = bench.info()["queues"]
    assert bench.fe.ack(request_, payload) == 1
    assert bench.info()["queues"] == before
    bench.fe.negotiate()                      # the session goes on
    bench.fe.transmit([frame(BROADCAST, GUEST_MAC)])
    assert bench.sw.forward("vm1") == 1


def _table(*regions: tuple[int, int, int, int]) -> bytes:
    return vhost.MEM_TABLE_HEAD.pack(len(regions), 0) + b"".join(
        vhost.MEM_REGION.pack(*r) for r in regions)


def test_a_memory_table_with_overlapping_regions_is_refused(bench: Bench) -> None:
    _negotiated_protocol(bench.fe)
    table = _table((GPA_BASE, MEMORY, UVA_BASE, 0), (GPA_BASE + 4096, 4096, UVA_BASE, 0))
    assert bench.fe.ack(vhost.SET_MEM_TABLE, table, [bench.fe.fd, bench.fe.fd]) == 1
    assert bench.info()["regions"] == 0


def test_memory_that_cannot_be_mapped_is_refused_with_a_reason(bench: Bench,
                                                              caplog) -> None:
    _negotiated_protocol(bench.fe)
    read_end, write_end = os.pipe()
    try:
        assert bench.fe.ack(vhost.SET_MEM_TABLE, _table((GPA_BASE, MEMORY, UVA_BASE, 0)),
                            [read_end]) == 1
    finally:
        os.close(read_end)
        os.close(write_end)
    assert bench.info()["regions"] == 0
    assert "share=on" in caplog.text          # says what to do


def test_a_ring_outside_guest_memory_is_refused(bench: Bench) -> None:
    _negotiated_protocol(bench.fe)
    assert bench.fe.ack(vhost.SET_MEM_TABLE, _table((GPA_BASE, MEMORY, UVA_BASE, 0)),
                        [bench.fe.fd]) == 0
    assert bench.fe.ack(vhost.SET_VRING_NUM, vhost.VRING_STATE.pack(1, NUM)) == 0
    far = UVA_BASE + MEMORY + 0x1000
    assert bench.fe.ack(vhost.SET_VRING_ADDR,
                        vhost.VRING_ADDR.pack(1, 0, far, far, far, 0)) == 1
    assert not bench.info()["queues"]["tx"]["started"]


@pytest.mark.parametrize("garbage", [
    b"\x00" * 12,                                           # version 0
    vhost.HEADER.pack(1, 2, 0),                             # version 2
    vhost.HEADER.pack(5, 1, 1 << 20),                       # a payload of 1 MiB
    vhost.HEADER.pack(1, 1, 8) + b"\x01",                   # cut short, then gone
])
def test_garbage_ends_the_session_and_the_port_takes_the_next(bench: Bench,
                                                             garbage: bytes) -> None:
    bench.fe.negotiate()
    bench.fe.sock.sendall(garbage)
    if garbage.endswith(b"\x01"):
        bench.fe.sock.shutdown(socket.SHUT_WR)
    assert bench.ended()
    assert bench.info()["regions"] == 0       # its memory let go
    assert not bench.info()["queues"]["tx"]["started"]
    bench.fe.close()
    bench.connect()
    bench.fe.negotiate()
    bench.fe.transmit([frame(BROADCAST, GUEST_MAC)])
    assert bench.sw.forward("vm1") == 1


def test_a_client_gone_mid_setup_leaves_the_port_reset(bench: Bench) -> None:
    _negotiated_protocol(bench.fe)
    assert bench.fe.ack(vhost.SET_MEM_TABLE, _table((GPA_BASE, MEMORY, UVA_BASE, 0)),
                        [bench.fe.fd]) == 0
    assert bench.info()["regions"] == 1
    bench.fe.sock.close()
    assert bench.ended()
    assert bench.info()["regions"] == 0


def test_a_queue_set_up_interrupts_the_guest_once(bench: Bench) -> None:
    """A guest left waiting by an earlier valed (or before a reconnect) looks again."""
    bench.fe.negotiate()
    for q in (0, 1):
        assert os.eventfd_read(bench.fe.call[q]) >= 1


def test_a_frame_in_an_indirect_table_of_header_and_data_is_taken(bench: Bench) -> None:
    """The guest's driver may put a frame's header and data in two buffers listed in an
    indirect table (INDIRECT_DESC): taken (copied in) as one frame."""
    bench.fe.negotiate()
    sent = frame(BROADCAST, GUEST_MAC, 200, 9)
    header_at, data_at, table_at = (bench.fe.buffer_gpa(1, k) for k in (10, 11, 12))
    bench.fe.mem[header_at - GPA_BASE:header_at - GPA_BASE + HEADER] = bytes(HEADER)
    bench.fe.mem[data_at - GPA_BASE:data_at - GPA_BASE + len(sent)] = sent
    table = struct.pack("<QIHH", header_at, HEADER, F_NEXT, 1) + \
        struct.pack("<QIHH", data_at, len(sent), 0, 0)
    bench.fe.mem[table_at - GPA_BASE:table_at - GPA_BASE + len(table)] = table
    bench.fe.set_desc(1, 3, table_at, len(table), F_INDIRECT)
    bench.fe.publish(1, [3])
    assert bench.sw.forward("vm1") == 1
    assert bench.sw.drain("p0") == [sent]
    assert bench.fe.used(1) == [(3, 0)]
