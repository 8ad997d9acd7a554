"""A memif client of the tests' own, in plain Python: it brings a memfd region with its
two rings and their buffers (the layout DPDK's net_memif makes), says what the protocol
says, and can break any rule of it: lie in a descriptor, skip a message, send garbage."""

from __future__ import annotations

import mmap
import os
import socket
import struct

from vale import memif

LOG2 = 8
SLOTS = 1 << LOG2
BUFFER = 2048
RING = 128 + 16 * SLOTS                 # a ring's header and descriptors
C2S, S2C = 0, 1                         # the rings, at RING * ring
BUFFERS = 2 * RING                      # where the buffers start: SLOTS per ring
SIZE = BUFFERS + 2 * SLOTS * BUFFER
DESC = struct.Struct("<HHIII")          # flags, region, length, offset, metadata


class Client:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = os.memfd_create("vale-test-memif")
        os.ftruncate(self.fd, SIZE)
        self.mem = mmap.mmap(self.fd, SIZE)
        self.events = [os.eventfd(0, os.EFD_NONBLOCK) for _ in (C2S, S2C)]
        self.tail_seen = 0              # S2C: frames read so far
        for ring in (C2S, S2C):
            struct.pack_into("<I", self.mem, RING * ring, memif.COOKIE)
            for slot in range(SLOTS):
                self.set_desc(ring, slot, 0, 0, BUFFER, self.buffer(ring, slot))

    # -- the control socket -------------------------------------------------------------

    def send(self, kind: int, body: bytes = b"", fd: int | None = None) -> None:
        data = memif.message(kind, body)
        if fd is None:
            self.sock.send(data)
        else:
            self.sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                        struct.pack("i", fd))])

    def recv(self) -> tuple[int, bytes]:
        data = self.sock.recv(memif.MESSAGE_SIZE)
        if not data:
            return 0, b""
        return struct.unpack_from("<H", data)[0], data

    def expect(self, kind: int) -> bytes:
        got, data = self.recv()
        assert got == kind, (got, self.reason(data) if got == memif.DISCONNECT else data)
        return data

    @staticmethod
    def reason(data: bytes) -> str:
        return memif.DISCONNECT_MSG.unpack_from(data, memif.BODY)[1].rstrip(b"\0").decode()

    def connect(self, iface_id: int = 0, secret: bytes = b"") -> None:
        self.expect(memif.HELLO)
        self.send(memif.INIT, memif.INIT_MSG.pack(memif.VERSION, iface_id, 0, secret, b"test"))
        self.expect(memif.ACK)
        self.send(memif.ADD_REGION, memif.REGION_MSG.pack(0, SIZE), self.fd)
        self.expect(memif.ACK)
        for ring in (C2S, S2C):
            self.send(memif.ADD_RING, memif.RING_MSG.pack(
                memif.RING_FLAG_C2S if ring == C2S else 0, 0, 0, RING * ring, LOG2, 0),
                self.events[ring])
            self.expect(memif.ACK)
        self.send(memif.CONNECT, memif.NAME_MSG.pack(b"test"))
        self.expect(memif.CONNECTED)
        self.tail_seen = 0

    def close(self) -> None:
        self.sock.close()
        self.mem.close()
        for fd in (self.fd, *self.events):
            os.close(fd)

    # -- the rings ----------------------------------------------------------------------

    def buffer(self, ring: int, slot: int) -> int:
        return BUFFERS + (ring * SLOTS + slot) * BUFFER

    def set_desc(self, ring: int, slot: int, flags: int, region: int, length: int,
                 offset: int) -> None:
        DESC.pack_into(self.mem, RING * ring + 128 + 16 * (slot % SLOTS), flags, region,
                       length, offset, 0)

    def desc(self, ring: int, slot: int) -> tuple[int, int, int, int, int]:
        return DESC.unpack_from(self.mem, RING * ring + 128 + 16 * (slot % SLOTS))

    def head(self, ring: int) -> int:
        return struct.unpack_from("<H", self.mem, RING * ring + 6)[0]

    def set_head(self, ring: int, value: int) -> None:
        struct.pack_into("<H", self.mem, RING * ring + 6, value & 0xFFFF)

    def tail(self, ring: int) -> int:
        return struct.unpack_from("<H", self.mem, RING * ring + 64)[0]

    def flags(self, ring: int) -> int:
        return struct.unpack_from("<H", self.mem, RING * ring + 4)[0]

    def transmit(self, frames: list[bytes]) -> None:
        """Frames into the C2S ring, each in as many buffers as it takes; head moves once."""
        slot = self.head(C2S)
        for data in frames:
            pieces = [data[k:k + BUFFER] for k in range(0, len(data), BUFFER)] or [b""]
            for k, piece in enumerate(pieces):
                offset = self.buffer(C2S, slot % SLOTS)
                self.mem[offset:offset + len(piece)] = piece
                self.set_desc(C2S, slot, 1 if k < len(pieces) - 1 else 0, 0, len(piece),
                              offset)
                slot += 1
        self.set_head(C2S, slot)

    def post(self, n: int) -> None:
        """n empty buffers on the S2C ring."""
        slot = self.head(S2C)
        for k in range(n):
            self.set_desc(S2C, slot + k, 0, 0, BUFFER, self.buffer(S2C, (slot + k) % SLOTS))
        self.set_head(S2C, slot + n)

    def received(self) -> list[bytes]:
        """The frames valed put in the S2C ring since last asked."""
        frames, data = [], b""
        tail = self.tail(S2C)
        while self.tail_seen != tail:
            flags, _, length, offset, _ = self.desc(S2C, self.tail_seen)
            data += bytes(self.mem[offset:offset + length])
            self.tail_seen = (self.tail_seen + 1) & 0xFFFF
            if not flags & 1:
                frames.append(data)
                data = b""
        return frames
