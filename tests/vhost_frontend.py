"""A vhost-user front end written for the tests: it plays the guest's virtio-net driver
and QEMU at once, over a socket to vale.vhost, with the guest's memory in a memfd. It
follows the rules by default, and lets a test break any of them (descriptor indexes,
chains, addresses, ring indexes, messages), as a hostile guest would.
"""

from __future__ import annotations

import array
import mmap
import os
import socket
import struct

from vale import vhost

MEMORY = 4 << 20                # the guest's RAM
GPA_BASE = 0x100000             # where it starts in guest physical addresses
UVA_BASE = 0x7F1234000000       # and in the front end's (QEMU's) own address space
NUM = 256                       # entries per queue
BUFFER = 2048                   # bytes per buffer the driver posts
RINGS_AT = (0x0000, 0x8000)     # each queue's desc table; avail +0x1000, used +0x2000
BUFFERS_AT = (0x10000, 0x10000 + NUM * BUFFER)
HEADER = 12                     # virtio-net header with num_buffers (VERSION_1)
F_NEXT, F_WRITE, F_INDIRECT = 1, 2, 4
DESC = struct.Struct("<QIHH")


class FrontEnd:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = os.memfd_create("vale-test-guest")
        os.ftruncate(self.fd, MEMORY)
        self.mem = mmap.mmap(self.fd, MEMORY)
        self.kick = [os.eventfd(0, os.EFD_NONBLOCK) for _ in range(2)]
        self.call = [os.eventfd(0, os.EFD_NONBLOCK) for _ in range(2)]
        self.avail_idx = [0, 0]
        self.used_seen = [0, 0]
        self.next_tx = 0

    def close(self) -> None:
        self.sock.close()
        self.mem.close()
        for fd in (self.fd, *self.kick, *self.call):
            os.close(fd)

    # -- messages -------------------------------------------------------------------------

    def send(self, request: int, payload: bytes = b"", fds: list[int] | None = None, *,
             need_reply: bool = False, version: int = vhost.VERSION) -> None:
        flags = version | (vhost.FLAG_NEED_REPLY if need_reply else 0)
        data = vhost.HEADER.pack(request, flags, len(payload)) + payload
        ancillary = []
        if fds:
            ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
        self.sock.sendmsg([data], ancillary)

    def reply(self) -> bytes:
        head = self._exactly(vhost.HEADER.size)
        _request, flags, size = vhost.HEADER.unpack(head)
        assert flags & vhost.FLAG_REPLY
        return self._exactly(size)

    def ack(self, request: int, payload: bytes = b"", fds: list[int] | None = None) -> int:
        """Send with NEED_REPLY and return the back end's answer (0: done)."""
        self.send(request, payload, fds, need_reply=True)
        return vhost.U64.unpack(self.reply())[0]

    def _exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("the back end closed the connection")
            data += chunk
        return data

    def ring_addresses(self, q: int) -> tuple[int, int, int]:
        base = UVA_BASE + RINGS_AT[q]
        return base, base + 0x1000, base + 0x2000      # desc, avail, used

    def negotiate(self, features: int | None = None) -> None:
        """What QEMU sends when the guest's driver starts, up to enabled rings."""
        self.send(vhost.GET_FEATURES)
        offered = vhost.U64.unpack(self.reply())[0]
        self.send(vhost.GET_PROTOCOL_FEATURES)
        protocol = vhost.U64.unpack(self.reply())[0]
        self.send(vhost.SET_PROTOCOL_FEATURES, vhost.U64.pack(protocol))
        self.send(vhost.SET_OWNER)
        wanted = offered if features is None else features
        assert self.ack(vhost.SET_FEATURES, vhost.U64.pack(wanted)) == 0
        table = vhost.MEM_TABLE_HEAD.pack(1, 0) + vhost.MEM_REGION.pack(
            GPA_BASE, MEMORY, UVA_BASE, 0)
        assert self.ack(vhost.SET_MEM_TABLE, table, [self.fd]) == 0
        for q in range(2):
            desc, avail, used = self.ring_addresses(q)
            assert self.ack(vhost.SET_VRING_NUM, vhost.VRING_STATE.pack(q, NUM)) == 0
            assert self.ack(vhost.SET_VRING_BASE, vhost.VRING_STATE.pack(q, 0)) == 0
            assert self.ack(vhost.SET_VRING_ADDR,
                            vhost.VRING_ADDR.pack(q, 0, desc, used, avail, 0)) == 0
            assert self.ack(vhost.SET_VRING_KICK, vhost.U64.pack(q), [self.kick[q]]) == 0
            assert self.ack(vhost.SET_VRING_CALL, vhost.U64.pack(q), [self.call[q]]) == 0
            assert self.ack(vhost.SET_VRING_ENABLE, vhost.VRING_STATE.pack(q, 1)) == 0

    # -- the driver ---------------------------------------------------------------------

    def set_desc(self, q: int, i: int, gpa: int, length: int, flags: int, nxt: int = 0) -> None:
        DESC.pack_into(self.mem, RINGS_AT[q] + 16 * i, gpa, length, flags, nxt)

    def publish(self, q: int, heads: list[int], *, jump: int = 0) -> None:
        avail = RINGS_AT[q] + 0x1000
        for head in heads:
            struct.pack_into("<H", self.mem, avail + 4 + 2 * (self.avail_idx[q] % NUM), head)
            self.avail_idx[q] += 1
        self.avail_idx[q] = (self.avail_idx[q] + jump) & 0xFFFF
        struct.pack_into("<H", self.mem, avail + 2, self.avail_idx[q])
        os.eventfd_write(self.kick[q], 1)

    def used(self, q: int) -> list[tuple[int, int]]:
        """Used entries not yet seen: (id, len)."""
        used = RINGS_AT[q] + 0x2000
        idx = struct.unpack_from("<H", self.mem, used + 2)[0]
        out = []
        while self.used_seen[q] != idx:
            at = used + 4 + 8 * (self.used_seen[q] % NUM)
            out.append(struct.unpack_from("<II", self.mem, at))
            self.used_seen[q] = (self.used_seen[q] + 1) & 0xFFFF
        return out

    def buffer_gpa(self, q: int, i: int) -> int:
        return GPA_BASE + BUFFERS_AT[q] + i * BUFFER

    def post_receive(self, count: int) -> None:
        """Give the back end count receive buffers (queue 0), one descriptor each."""
        for i in range(count):
            self.set_desc(0, i, self.buffer_gpa(0, i), BUFFER, F_WRITE)
        self.publish(0, list(range(count)))

    def received(self) -> list[tuple[bytes, bytes]]:
        """(virtio-net header, frame) of each frame the back end put (one buffer each)."""
        out = []
        for head, length in self.used(0):
            at = BUFFERS_AT[0] + head * BUFFER
            data = bytes(self.mem[at:at + length])
            out.append((data[:HEADER], data[HEADER:]))
        return out

    def transmit(self, frames: list[bytes], header: bytes = bytes(HEADER)) -> list[int]:
        """Send frames on queue 1, each a header and a frame in one descriptor."""
        heads = []
        for frame in frames:
            i = self.next_tx % NUM
            self.next_tx += 1
            at = BUFFERS_AT[1] + i * BUFFER
            data = header + frame
            self.mem[at:at + len(data)] = data
            self.set_desc(1, i, self.buffer_gpa(1, i), len(data), 0)
            heads.append(i)
        self.publish(1, heads)
        return heads
