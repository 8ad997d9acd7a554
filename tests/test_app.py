"""vale.app, the memif client for programs, against a memif server written here: it
does the handshake, checks the client's region and rings against the spec (memif 2.0 as
DPDK 22.11 lays it out), sends frames through the S2C ring, reads the C2S ring, and
breaks rules when told to, as a hostile server would. No privileges: a socket in a
temporary directory, memory in a memfd."""

from __future__ import annotations

import fcntl
import json
import mmap
import os
import random
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.pkttools import pktcount, pktgen, udp_frame
from vale import app

# The spec's numbers, written out here rather than taken from vale.app.
MSG = 128
ACK, HELLO, INIT, ADD_REGION, ADD_RING, CONNECT, CONNECTED, DISCONNECT = range(1, 9)
COOKIE = 0x3E31F20
MASK_INT = 1
NEXT = 1
HEADER, DESC = 128, 16
DESC_FMT = struct.Struct("<HHIII")          # flags, region, length, offset, metadata


def msg(kind: int, body: bytes = b"") -> bytes:
    return (struct.pack("<H", kind) + body).ljust(MSG, b"\0")


def hello(low: int = 0x0200, high: int = 0x0200, log2: int = 14) -> bytes:
    return msg(HELLO, struct.pack("<32sHHHHHB", b"test server", low, high, 255, 255, 255,
                                  log2))


def disconnect(reason: str) -> bytes:
    return msg(DISCONNECT, struct.pack("<I96s", 0, reason.encode()))


def frame(size: int, fill: int) -> bytes:
    head = bytes.fromhex("ffffffffffff020000000001") + b"\x08\x00"
    return head + bytes((fill + k) & 0xFF for k in range(size - len(head)))


class Ring:
    """One ring of the client's region as the server sees it."""

    def __init__(self, mem: mmap.mmap, offset: int, log2: int) -> None:
        self.mem, self.at, self.size = mem, offset, 1 << log2

    def _u16(self, at: int) -> int:
        return struct.unpack_from("<H", self.mem, self.at + at)[0]

    def _set16(self, at: int, value: int) -> None:
        struct.pack_into("<H", self.mem, self.at + at, value & 0xFFFF)

    cookie = property(lambda self: struct.unpack_from("<I", self.mem, self.at)[0])
    flags = property(lambda self: self._u16(4), lambda self, v: self._set16(4, v))
    head = property(lambda self: self._u16(6), lambda self, v: self._set16(6, v))
    tail = property(lambda self: self._u16(64), lambda self, v: self._set16(64, v))

    def desc(self, index: int) -> tuple[int, int, int, int, int]:
        return DESC_FMT.unpack_from(self.mem, self.at + HEADER + DESC * (index % self.size))

    def set_desc(self, index: int, flags: int, region: int, length: int, offset: int) -> None:
        DESC_FMT.pack_into(self.mem, self.at + HEADER + DESC * (index % self.size),
                           flags, region, length, offset, 0)


class Server:
    """A memif server for one client at a time. serve() runs the handshake in a thread
    (the client's open_port blocks in its own); hostile knobs: `hello` (what HELLO says),
    `refuse` (a message type and a reason: DISCONNECT instead of that reply)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.listener.bind(path)
        self.listener.listen(1)
        self.conn: socket.socket | None = None
        self.fds: list[int] = []
        self.messages: dict[int, list[bytes]] = {}
        self.mem: mmap.mmap | None = None
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None

    def serve(self, hello: bytes = hello(), refuse: tuple[int, str] | None = None,
              polling: bool = False) -> Server:
        def run() -> None:
            try:
                self._handshake(hello, refuse, polling)
            except BaseException as exc:
                self.error = exc
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        return self

    def done(self) -> None:
        assert self.thread is not None
        self.thread.join(timeout=10)
        if self.error is not None:
            raise self.error

    def _recv(self) -> tuple[int, bytes, list[int]]:
        assert self.conn is not None
        data, fds, _flags, _ = socket.recv_fds(self.conn, MSG, 1)
        if not data:
            raise EOFError("the client hung up")
        assert len(data) == MSG, len(data)
        kind = struct.unpack_from("<H", data)[0]
        self.messages.setdefault(kind, []).append(data)
        self.fds += fds
        return kind, data, fds

    def _handshake(self, hello: bytes, refuse: tuple[int, str] | None, polling: bool) -> None:
        self.conn, _ = self.listener.accept()
        self.conn.settimeout(5)
        self.conn.send(hello)
        for expected in (INIT, ADD_REGION, ADD_RING, ADD_RING, CONNECT):
            kind, _, fds = self._recv()
            if kind == DISCONNECT:
                return
            assert kind == expected, (kind, expected)
            assert len(fds) == (1 if kind in (ADD_REGION, ADD_RING) else 0)
            if refuse is not None and refuse[0] == kind:
                self.conn.send(disconnect(refuse[1]))
                return
            if kind == CONNECT:
                self._map(polling)
                self.conn.send(msg(CONNECTED, struct.pack("<32s", b"memif0")))
            else:
                self.conn.send(msg(ACK))

    def _map(self, polling: bool) -> None:
        region = self.messages[ADD_REGION][-1]
        self.region_index, self.region_size = struct.unpack_from("<HQ", region, 2)
        self.region_fd = self.fds[-3]
        self.mem = mmap.mmap(self.region_fd, self.region_size)
        rings = {}
        for data, fd in zip(self.messages[ADD_RING][-2:], self.fds[-2:], strict=True):
            flags, index, reg, offset, log2, private = struct.unpack_from("<HHHIBH", data, 2)
            rings[flags] = (index, reg, offset, log2, private, fd)
        self.ring_setup = rings
        self.log2 = rings[1][3]
        self.c2s = Ring(self.mem, rings[1][2], self.log2)
        self.s2c = Ring(self.mem, rings[0][2], self.log2)
        self.c2s_fd, self.s2c_fd = rings[1][5], rings[0][5]
        for ring in (self.c2s, self.s2c):       # as the DPDK server does on CONNECT
            ring.head = ring.tail = 0
        self.c2s.flags = MASK_INT if polling else 0
        self.last_head = 0

    # -- the server's side of the rings -------------------------------------------------------

    def transmit(self, frames: list[bytes], kick: bool = True) -> int:
        """Frames into the S2C ring as the spec says: capacity from each posted length,
        NEXT on all but a frame's last descriptor, tail once, a kick unless masked."""
        slot, sent = self.s2c.tail, 0
        for data in frames:
            free = (self.s2c.head - slot) & 0xFFFF
            pieces, at = [], 0
            while not pieces or at < len(data):
                if len(pieces) == free:                 # no room for all of it
                    return self._publish(slot, sent, kick)
                index = slot + len(pieces)
                _flags, region, capacity, offset, _ = self.s2c.desc(index)
                pieces.append((index, region, offset, data[at:at + capacity]))
                at += capacity
            for k, (index, region, offset, chunk) in enumerate(pieces):
                self.mem[offset:offset + len(chunk)] = chunk
                self.s2c.set_desc(index, NEXT if k < len(pieces) - 1 else 0, region,
                                  len(chunk), offset)
            slot += len(pieces)
            sent += 1
        return self._publish(slot, sent, kick)

    def _publish(self, slot: int, sent: int, kick: bool) -> int:
        self.s2c.tail = slot
        if kick and not self.s2c.flags & MASK_INT:
            os.eventfd_write(self.s2c_fd, 1)
        return sent

    def received(self) -> list[bytes]:
        """Frames the client queued in the C2S ring since the last call; tail follows."""
        frames, current, head = [], b"", self.c2s.head
        slot = self.last_head
        while slot != head:
            flags, region, length, offset, _ = self.c2s.desc(slot)
            assert region == 0
            current += self.mem[offset:offset + length]
            slot = (slot + 1) & 0xFFFF
            if not flags & NEXT:
                frames.append(current)
                current = b""
        self.last_head = slot
        self.c2s.tail = slot
        return frames

    def kicks(self) -> int:
        try:
            return os.eventfd_read(self.c2s_fd)
        except BlockingIOError:
            return 0

    def hang_up(self) -> None:
        """The server goes away: EOF on the control socket, nobody listening."""
        if self.conn is not None:
            self.conn.close()
        self.listener.close()
        os.unlink(self.path)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.listener.close()
        if self.mem is not None:
            self.mem.close()
        for fd in self.fds:
            os.close(fd)
        self.fds = []


@pytest.fixture
def sock_path(tmp_path: Path) -> str:
    return str(tmp_path / "memif.sock")


@pytest.fixture
def server(sock_path: str) -> Iterator[Server]:
    s = Server(sock_path)
    yield s
    s.close()


@pytest.fixture
def port(server: Server, sock_path: str) -> Iterator[app.Port]:
    server.serve()
    p = app.open_port(sock_path, id=7, secret="s3cret", name="tester")
    server.done()
    yield p
    p.close()


def test_the_handshake_sends_what_the_spec_says(server: Server, port: app.Port) -> None:
    version, ident, mode, secret, name = struct.unpack_from("<HIB24s32s",
                                                            server.messages[INIT][0], 2)
    assert (version, ident, mode) == (0x0200, 7, 0)
    assert secret.rstrip(b"\0") == b"s3cret" and name.rstrip(b"\0") == b"tester"
    assert struct.unpack_from("<32s", server.messages[CONNECT][0], 2)[0].rstrip(b"\0") == \
        b"tester"
    assert server.region_index == 0
    assert fcntl.fcntl(server.region_fd, fcntl.F_GET_SEALS) & fcntl.F_SEAL_SHRINK
    assert os.fstat(server.region_fd).st_size == server.region_size
    for fd in (server.c2s_fd, server.s2c_fd):
        assert os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[eventfd]"
        assert os.get_blocking(fd) is False
    assert port.connected and port.counters["reconnects"] == 0


def test_the_region_holds_the_rings_then_the_buffers(server: Server, port: app.Port) -> None:
    r, b = 1 << 10, 2048
    stride = HEADER + DESC * r
    assert server.ring_setup == {1: (0, 0, 0, 10, 0, server.c2s_fd),
                                 0: (0, 0, stride, 10, 0, server.s2c_fd)}
    assert server.region_size == 2 * stride + 2 * r * b == 4227328
    base = 2 * stride
    for ring, first in ((server.c2s, 0), (server.s2c, r)):
        assert ring.cookie == COOKIE
        for j in (0, 1, r - 1):
            flags, region, length, offset, _ = ring.desc(j)
            assert (flags, region, length, offset) == (0, 0, b, base + (first + j) * b)
    # After CONNECTED: the client posted every S2C buffer and polls (no kicks wanted).
    assert (server.s2c.head, server.s2c.tail, server.s2c.flags) == (r, 0, MASK_INT)
    assert (server.c2s.head, server.c2s.tail) == (0, 0)


def test_the_client_takes_the_smaller_ring_the_server_offers(server: Server,
                                                            sock_path: str) -> None:
    server.serve(hello=hello(log2=6))
    with app.open_port(sock_path) as p:
        server.done()
        assert server.log2 == 6
        assert server.region_size == 2 * (HEADER + DESC * 64) + 2 * 64 * 2048
        assert server.s2c.head == 64
        assert p.connected


def test_frames_from_the_server_arrive_as_views_and_buffers_go_back(server: Server,
                                                                   port: app.Port) -> None:
    frames = [frame(60, 1), frame(1514, 2), frame(5000, 3)]       # the last spans 3
    assert server.transmit(frames) == 3
    got = port.receive_batch(timeout=1.0)
    assert [bytes(f) for f in got] == frames
    assert isinstance(got[0], memoryview) and got[0].readonly
    assert isinstance(got[2], bytes)
    assert server.s2c.head == 1024                   # nothing given back yet
    port.release()
    assert server.s2c.head == 1024 + 5               # five slots posted again
    assert server.s2c.desc(0)[:3] == (0, 0, 2048)
    c = port.counters
    assert (c["rx_frames"], c["rx_bytes"], c["bad_descriptors"]) == (3, 60 + 1514 + 5000, 0)


def test_receive_yields_batches_until_idle_and_the_ring_wraps(server: Server,
                                                              port: app.Port) -> None:
    seen = []
    for round_ in range(5):                       # 5 x 600 frames through 1024 slots
        assert server.transmit([frame(64, round_)] * 600) == 600
        for batch in port.receive(timeout=0.05):
            seen += [bytes(f) for f in batch]
    assert len(seen) == 3000 and seen[-1] == frame(64, 4)
    assert server.s2c.head == (server.s2c.tail + 1024) & 0xFFFF


def test_receive_sleeps_until_the_server_kicks(server: Server, port: app.Port) -> None:
    def later() -> None:
        time.sleep(0.3)
        assert server.s2c.flags & MASK_INT == 0      # asleep: it wants a kick
        server.transmit([frame(60, 9)])
    thread = threading.Thread(target=later)
    thread.start()
    start = time.monotonic()
    got = port.receive_batch(timeout=5.0)
    waited = time.monotonic() - start
    thread.join()
    assert [bytes(f) for f in got] == [frame(60, 9)]
    assert 0.2 < waited < 2.0
    assert server.s2c.flags & MASK_INT                # awake: polls again
    assert port.receive_batch(timeout=0.1) == []


def test_frames_to_the_server_one_kick_per_batch(server: Server, port: app.Port) -> None:
    frames = [frame(60, 1), frame(2048, 2), frame(2049, 3), frame(9000, 4)]
    assert port.send(frames) == 4
    assert server.c2s.head == 1 + 1 + 2 + 5
    assert server.received() == frames
    assert server.kicks() == 1
    server.c2s.flags = MASK_INT                       # the server polls: no kicks
    assert port.send([frame(60, 5)]) == 1
    assert server.kicks() == 0
    assert server.received() == [frame(60, 5)]
    # A chain's descriptors: NEXT on all but the last, lengths as written.
    flags = [server.c2s.desc(j)[0] for j in range(2, 4)]
    lengths = [server.c2s.desc(j)[2] for j in range(2, 4)]
    assert flags == [NEXT, 0] and lengths == [2048, 1]
    c = port.counters
    assert (c["tx_frames"], c["tx_bytes"], c["kicks"]) == (5, 60 + 2048 + 2049 + 9000 + 60, 1)


def test_a_full_ring_queues_what_fits_and_counts_the_rest(server: Server,
                                                          sock_path: str) -> None:
    server.serve(hello=hello(log2=4))
    with app.open_port(sock_path) as p:
        server.done()
        assert p.send([frame(60, k) for k in range(20)]) == 16
        assert p.send([frame(3000, 0)]) == 0
        assert p.counters["tx_no_room"] == 5
        assert len(server.received()) == 16
        assert p.send([frame(3000, 1), frame(60, 2)]) == 2
        assert server.received() == [frame(3000, 1), frame(60, 2)]
        with pytest.raises(ValueError, match="longer than the ring"):
            p.send([frame(60, 3), frame(16 * 2048 + 1, 4)])
        assert server.received() == [frame(60, 3)]


def test_send_copies_numbers_each_copy(server: Server, port: app.Port) -> None:
    template = frame(60, 0)
    assert port.send_copies(template, 100, counter_at=42, counter=0xFFFFFFF0) == 100
    got = server.received()
    assert len(got) == 100
    for k, f in enumerate(got):
        assert f[:42] == template[:42] and f[46:] == template[46:]
        assert struct.unpack_from(">I", f, 42)[0] == (0xFFFFFFF0 + k) & 0xFFFFFFFF
    assert server.kicks() == 1


def test_drain_counts_and_gives_back(server: Server, port: app.Port) -> None:
    server.transmit([frame(100, 0)] * 1000)
    assert port.drain(timeout=1.0) == (1000, 100_000)
    assert server.s2c.head == (server.s2c.tail + 1024) & 0xFFFF
    assert port.drain(timeout=0.05) == (0, 0)


# -- a hostile server ---------------------------------------------------------------------------


@pytest.mark.parametrize("lie", ["length", "offset", "offset_wraps", "region"])
def test_a_lying_descriptor_is_counted_and_its_frame_dropped(server: Server, port: app.Port,
                                                             lie: str) -> None:
    server.transmit([frame(60, 1), frame(60, 2), frame(60, 3)])
    flags, region, _, offset, _ = server.s2c.desc(1)
    bad = {"length": (region, 2049, offset),
           "offset": (region, 60, server.region_size - 59),
           "offset_wraps": (region, 60, 0xFFFFFFF0),
           "region": (1, 60, offset)}[lie]
    server.s2c.set_desc(1, flags, *bad)
    got = port.receive_batch(timeout=1.0)
    assert [bytes(f) for f in got] == [frame(60, 1), frame(60, 3)]
    assert port.counters["bad_descriptors"] == 1
    port.release()
    # The slot was posted again as the client first made it.
    assert server.s2c.desc(1)[:4] == (0, 0, 2048, 2 * (HEADER + DESC * 1024) + 1025 * 2048)
    assert server.transmit([frame(70, 4)]) == 1
    assert [bytes(f) for f in port.receive_batch(timeout=1.0)] == [frame(70, 4)]


def test_a_tail_beyond_the_posted_buffers_is_cut_back(server: Server, port: app.Port) -> None:
    server.transmit([frame(60, 1)])
    server.s2c.tail = 3000                          # 2999 more than it had buffers for
    got = port.receive_batch(timeout=1.0)
    assert len(got) <= 1024
    assert port.counters["bad_descriptors"] >= 1


def test_a_chain_cut_off_at_the_tail_is_dropped(server: Server, port: app.Port) -> None:
    server.transmit([frame(60, 1), frame(60, 2)])
    _, region, length, offset, _ = server.s2c.desc(1)
    server.s2c.set_desc(1, NEXT, region, length, offset)
    assert [bytes(f) for f in port.receive_batch(timeout=1.0)] == [frame(60, 1)]
    assert port.counters["bad_descriptors"] == 1


def test_random_rings_never_crash_the_client(server: Server, port: app.Port) -> None:
    rng = random.Random(17)
    for _ in range(300):
        for j in rng.sample(range(1024), 8):
            server.s2c.set_desc(j, rng.getrandbits(16), rng.choice([0, 0, 1]),
                                rng.choice([0, 60, 2048, 2049, rng.getrandbits(32)]),
                                rng.choice([rng.getrandbits(32),
                                            rng.randrange(server.region_size)]))
        server.s2c.tail = rng.getrandbits(16)
        for f in port.receive_batch(timeout=0):
            assert len(f) <= 1024 * 2048
            bytes(f)
        port.drain()
    assert port.counters["bad_descriptors"] > 0


def test_a_hello_of_another_version_is_refused_clearly(server: Server, sock_path: str) -> None:
    server.serve(hello=hello(0x0100, 0x0100))
    with pytest.raises(app.MemifError, match="speaks memif 0x0100 to 0x0100"):
        app.open_port(sock_path)
    server.done()
    reason = struct.unpack_from("<I96s", server.messages[DISCONNECT][0], 2)[1]
    assert reason.rstrip(b"\0") == b"Incompatible memif version"


@pytest.mark.parametrize("at", [INIT, ADD_REGION, ADD_RING, CONNECT])
def test_a_disconnect_in_the_handshake_carries_its_reason(server: Server, sock_path: str,
                                                          at: int) -> None:
    server.serve(refuse=(at, "Incorrect secret"))
    with pytest.raises(app.Disconnected, match="Incorrect secret") as caught:
        app.open_port(sock_path, secret="wrong")
    assert caught.value.reason == "Incorrect secret"
    server.done()


def test_a_disconnect_later_raises_from_the_next_call(server: Server, port: app.Port) -> None:
    assert server.conn is not None
    server.conn.send(disconnect("interface deleted"))
    with pytest.raises(app.Disconnected, match="interface deleted"):
        port.receive_batch(timeout=2.0)
    assert not port.connected
    assert port.send([frame(60, 0)]) == 0


def test_nothing_listening_is_an_oserror(sock_path: str) -> None:
    with pytest.raises(FileNotFoundError):
        app.open_port(sock_path)


def test_the_client_reconnects_when_a_server_listens_again(server: Server, port: app.Port,
                                                           sock_path: str) -> None:
    assert port.send([frame(60, 1)]) == 1
    server.transmit([frame(60, 2)])
    assert len(port.receive_batch(timeout=1.0)) == 1
    old_region = os.fstat(server.region_fd).st_ino
    server.hang_up()
    # While nobody listens: nothing goes, nothing comes, no error.
    assert port.receive_batch(timeout=0.3) == []
    assert not port.connected
    assert port.send([frame(60, 3)]) == 0
    again = Server(sock_path)
    try:
        again.serve()
        deadline = time.monotonic() + 5
        while not port.connected and time.monotonic() < deadline:
            port.receive_batch(timeout=0.1)
        again.done()
        assert port.connected
        assert os.fstat(again.region_fd).st_ino != old_region       # fresh memory
        assert (again.s2c.head, again.s2c.tail) == (1024, 0)
        assert port.send([frame(60, 4)]) == 1
        assert again.received() == [frame(60, 4)]
        again.transmit([frame(60, 5)])
        assert [bytes(f) for f in port.receive_batch(timeout=1.0)] == [frame(60, 5)]
        c = port.counters
        assert c["reconnects"] == 1
        assert (c["tx_frames"], c["rx_frames"], c["tx_no_room"]) == (2, 2, 1)
    finally:
        again.close()


def test_a_server_refusing_at_first_is_tried_again(server: Server, port: app.Port,
                                                    sock_path: str) -> None:
    """valed back before the port is: "ID not found", then a connection a second on."""
    server.hang_up()
    assert port.receive_batch(timeout=0.2) == [] and not port.connected
    again = Server(sock_path)
    try:
        again.serve(refuse=(INIT, "ID not found"))
        again.done()
        again.serve()
        deadline = time.monotonic() + 5
        while not port.connected and time.monotonic() < deadline:
            port.receive_batch(timeout=0.1)
        again.done()
        assert port.connected and port.counters["reconnects"] == 1
        assert port.last_refusal is not None and "ID not found" in port.last_refusal
    finally:
        again.close()


def test_abstract_socket_names_start_with_an_at(tmp_path: Path) -> None:
    name = f"@vale-test-{os.getpid()}-{random.getrandbits(32):x}"
    server = Server("\0" + name[1:])
    try:
        server.serve()
        with app.open_port(name) as p:
            server.done()
            assert p.connected
    finally:
        server.close()


def test_close_hangs_up_and_lets_go_of_the_memory(server: Server, port: app.Port) -> None:
    server.transmit([frame(60, 1)])
    view = port.receive_batch(timeout=1.0)[0]
    fds_before = len(os.listdir("/proc/self/fd"))
    port.close()
    assert server.conn is not None and server.conn.recv(MSG) == b""     # EOF
    # Its socket, 2 eventfds and the memfd are closed; the mapping stays while a view does.
    assert len(os.listdir("/proc/self/fd")) == fds_before - 4
    assert bytes(view) == frame(60, 1)
    with pytest.raises(ValueError, match="closed"):
        port.send([b"x"])


# -- pktgen and pktcount -------------------------------------------------------------------------


def test_udp_frame_is_valid_ipv4_udp() -> None:
    f = udp_frame(60)
    assert len(f) == 60 and f[12:14] == b"\x08\x00"
    total = sum(struct.unpack("!10H", f[14:34]))
    assert (total & 0xFFFF) + (total >> 16) == 0xFFFF          # header checksum holds
    assert struct.unpack_from("!H", f, 16)[0] == 46            # IPv4 total length
    assert f[26:30] == bytes([198, 18, 0, 1]) and f[30:34] == bytes([198, 19, 0, 1])
    assert struct.unpack_from("!HHHH", f, 34) == (1234, 4321, 26, 0)


def test_pktgen_sends_numbered_frames(server: Server, sock_path: str) -> None:
    server.serve()
    result = CliRunner().invoke(pktgen, [sock_path, "--count", "1000", "--size", "64",
                                         "--dst", "02:00:00:00:00:02", "--json"])
    server.done()
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["frames"] == 1000
    got = server.received()
    assert len(got) == 1000 and all(len(f) == 64 for f in got)
    assert got[0][:6] == bytes.fromhex("020000000002")
    assert [struct.unpack_from("!I", f, 42)[0] for f in got] == list(range(1000))


def test_pktcount_counts_what_arrives(server: Server, sock_path: str) -> None:
    server.serve()

    def send() -> None:
        server.done()
        time.sleep(0.2)
        for _ in range(3):
            server.transmit([frame(100, 0)] * 500)
            time.sleep(0.05)
    thread = threading.Thread(target=send)
    thread.start()
    result = CliRunner().invoke(pktcount, [sock_path, "--count", "1500", "--seconds", "5",
                                           "--json"])
    thread.join()
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert (out["frames"], out["bytes"]) == (1500, 150_000)
    assert 0 < out["first"] <= out["last"] < 5


def test_pktgen_says_when_nothing_listens(sock_path: str) -> None:
    result = CliRunner().invoke(pktgen, [sock_path, "--count", "1"])
    assert result.exit_code == 1
    assert f"no memif socket at {sock_path}" in result.output
