"""The memif protocol (DPDK's net_memif, libmemif, VPP; version 2.0), the server's side,
for one port: 128-byte messages on a Unix SOCK_SEQPACKET socket bring the program's
memory and rings, which the forwarding thread then serves (vale/memif.pxi). Runs on the
daemon's event loop, off the forwarding thread.

valed listens; a program connects, and the exchange goes in lock step: valed says HELLO,
the program INIT (its interface id, mode and secret), ADD_REGION for each region (a memfd
with it), ADD_RING for each ring (its eventfd with it), CONNECT; valed ACKs each and ends
with CONNECTED. A program that breaks the protocol, or later its rings, gets DISCONNECT
with the reason, and a log line; the port stays, and takes the next program.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
from dataclasses import dataclass, field
from typing import Protocol

from vale.unixmsg import close_fds, listen, readable, received_fds

log = logging.getLogger("vale.memif")

ACK, HELLO, INIT, ADD_REGION, ADD_RING, CONNECT, CONNECTED, DISCONNECT = range(1, 9)
MESSAGE_SIZE = 128
VERSION = 0x0200
COOKIE = 0x3E31F20             # at the start of each ring (vale/memif.pxi checks it)
MODE_ETHERNET = 0
SECRET_SIZE = 24
MAX_REGIONS = 16                # as the core maps them
MAX_LOG2_RING = 14
RING_FLAG_C2S = 1
SETUP_S = 5.0                   # a program has this long from HELLO to CONNECT
WATCH_S = 0.5                   # how often a connected program's rings are looked at

# Each message: its type (u16), then these fields (packed), then zeros to MESSAGE_SIZE.
HELLO_MSG = struct.Struct("<32sHHHHHB")     # name, versions, highest region, s2c, c2s ring
INIT_MSG = struct.Struct("<HIB24s32s")      # version, id, mode, secret, name
REGION_MSG = struct.Struct("<HQ")           # index, size
RING_MSG = struct.Struct("<HHHIBH")         # flags, index, region, offset, log2 size, private
NAME_MSG = struct.Struct("<32s")            # CONNECT, CONNECTED: an interface's name
DISCONNECT_MSG = struct.Struct("<I96s")     # code, reason
BODY = 2                                    # where the fields start


def socket_path(port: str) -> str:
    """Where a memif port's socket is when no path is given."""
    return f"/run/vale/memif/{port}.sock"


def message(kind: int, body: bytes = b"") -> bytes:
    return (struct.pack("<H", kind) + body).ljust(MESSAGE_SIZE, b"\0")


def disconnect_message(reason: str) -> bytes:
    return message(DISCONNECT, DISCONNECT_MSG.pack(0, reason.encode()[:95]))


class Refused(Exception):
    """What the program did wrong: the reason its DISCONNECT carries."""


class Rings(Protocol):
    """What the protocol changes in the core for its port (Switch.memif_rings)."""

    def connect(self, regions: list[tuple[int, int]],
                rings: list[tuple[bool, int, int, int, int]]) -> None: ...
    def disconnect(self) -> None: ...
    def refused(self) -> None: ...
    def stopped(self) -> str | None: ...
    def detach(self) -> None: ...


@dataclass
class Setup:
    """What a program brought so far."""
    regions: list[tuple[int, int]] = field(default_factory=list)     # (fd, size)
    rings: list[tuple[bool, int, int, int, int]] = field(default_factory=list)
    inited: bool = False

    def close(self) -> None:
        close_fds([fd for fd, _ in self.regions] + [ring[4] for ring in self.rings])
        self.regions.clear()
        self.rings.clear()


class Connection:
    """One program on the port's socket, from HELLO to its going."""

    def __init__(self, sock: socket.socket, rings: Rings, name: str, iface_id: int,
                 secret: str | None) -> None:
        self.sock = sock
        self.rings = rings
        self.name = name
        self.iface_id = iface_id
        self.secret = secret

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        setup = Setup()
        try:
            await loop.sock_sendall(self.sock, message(HELLO, HELLO_MSG.pack(
                b"vale", VERSION, VERSION, MAX_REGIONS - 1, 0, 0, MAX_LOG2_RING)))
            async with asyncio.timeout(SETUP_S):
                while not await self._setup_step(loop, setup):
                    pass
            connected = True
        except Refused as e:
            await self._refuse(loop, str(e))
            connected = False
        except TimeoutError:
            await self._refuse(loop, "setup not finished in time")
            connected = False
        except OSError as e:
            log.info("memif %s: the program went away during setup (%s)", self.name, e)
            connected = False
        finally:
            setup.close()               # the core has what it took (mapped, or the eventfds)
        if not connected:
            self.sock.close()
            return
        log.info("memif %s: a program connected", self.name)
        try:
            await self._watch(loop)
        finally:
            self.rings.disconnect()
            self.sock.close()

    async def _setup_step(self, loop: asyncio.AbstractEventLoop, setup: Setup) -> bool:
        """Take one message of the setup; True when the program is connected."""
        kind, body, fds = await self._recv(loop)
        try:
            if kind == INIT and not setup.inited:
                self._init(body)
                setup.inited = True
            elif kind == ADD_REGION and setup.inited and not setup.rings:
                self._add_region(body, fds, setup)
                fds = []
            elif kind == ADD_RING and setup.regions:
                self._add_ring(body, fds, setup)
                fds = []
            elif kind == CONNECT and len(setup.rings) == 2:
                try:
                    # The core takes the eventfds whatever happens; the region fds stay ours.
                    rings, setup.rings = setup.rings, []
                    self.rings.connect(setup.regions, rings)
                except (ValueError, OSError) as e:
                    raise Refused(str(e)) from None
                await loop.sock_sendall(self.sock, message(CONNECTED, NAME_MSG.pack(b"vale")))
                return True
            elif kind == DISCONNECT:
                raise OSError(f"it said: {self._reason(body)}")
            else:
                raise Refused(f"unexpected message {kind} in setup")
        finally:
            close_fds(fds)
        await loop.sock_sendall(self.sock, message(ACK))
        return False

    def _init(self, body: bytes) -> None:
        version, iface_id, mode, secret, _ = INIT_MSG.unpack_from(body, BODY)
        if version != VERSION:
            raise Refused(f"incompatible memif version {version >> 8}.{version & 0xFF}")
        if iface_id != self.iface_id:
            raise Refused(f"ID not found: this port's id is {self.iface_id}")
        if mode != MODE_ETHERNET:
            raise Refused("only ethernet mode supported")
        given = secret.split(b"\0", 1)[0].decode(errors="replace")
        if self.secret and given != self.secret:
            raise Refused("incorrect secret" if given else "secret required")

    @staticmethod
    def _add_region(body: bytes, fds: list[int], setup: Setup) -> None:
        index, size = REGION_MSG.unpack_from(body, BODY)
        if len(fds) != 1:
            raise Refused("missing region fd")
        if index != len(setup.regions) or index >= MAX_REGIONS:
            raise Refused(f"invalid region index {index}")
        setup.regions.append((fds[0], size))

    @staticmethod
    def _add_ring(body: bytes, fds: list[int], setup: Setup) -> None:
        flags, index, region, offset, log2, private = RING_MSG.unpack_from(body, BODY)
        if len(fds) != 1:
            raise Refused("missing interrupt fd")
        c2s = bool(flags & RING_FLAG_C2S)
        if index != 0 or any(ring[0] == c2s for ring in setup.rings):
            raise Refused(f"invalid ring index {index}: vale serves one ring each way")
        if region >= len(setup.regions):
            raise Refused(f"a ring in region {region}, which was not added")
        if private:
            raise Refused("private ring headers are not supported")
        setup.rings.append((c2s, region, offset, log2, fds[0]))

    async def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Until the program goes (EOF or DISCONNECT), or breaks its rings."""
        while True:
            try:
                async with asyncio.timeout(WATCH_S):
                    kind, body, fds = await self._recv(loop)
            except TimeoutError:
                what = self.rings.stopped()
                if what is not None:
                    await self._refuse(loop, f"bad descriptor: {what}")
                    return
                continue
            except (OSError, Refused) as e:
                log.info("memif %s: the program went away (%s)", self.name, e)
                return
            close_fds(fds)
            if kind == DISCONNECT:
                log.info("memif %s: the program disconnected: %s", self.name,
                         self._reason(body))
                return
            # Anything else once connected is ignored, as the peers do.

    async def _recv(self, loop: asyncio.AbstractEventLoop) -> tuple[int, bytes, list[int]]:
        while True:
            try:
                data, ancillary, _, _ = self.sock.recvmsg(MESSAGE_SIZE + 1,
                                                          socket.CMSG_SPACE(4 * 4))
                break
            except (BlockingIOError, InterruptedError):
                await readable(loop, self.sock)
        fds = received_fds(ancillary)
        if len(data) != MESSAGE_SIZE:
            close_fds(fds)
            if not data:
                raise OSError("the socket closed")
            raise Refused(f"invalid message size {len(data)}")
        return struct.unpack_from("<H", data)[0], data, fds

    @staticmethod
    def _reason(body: bytes) -> str:
        return DISCONNECT_MSG.unpack_from(body, BODY)[1].split(b"\0", 1)[0].decode(
            errors="replace")

    async def _refuse(self, loop: asyncio.AbstractEventLoop, reason: str) -> None:
        log.warning("memif %s: %s; disconnected", self.name, reason)
        self.rings.refused()
        with contextlib.suppress(OSError):
            await loop.sock_sendall(self.sock, disconnect_message(reason))


class Endpoint:
    """A memif port's socket: valed listens, and serves one program at a time (a second
    is told the port is taken)."""

    def __init__(self, path: str, rings: Rings, name: str, *, iface_id: int = 0,
                 secret: str | None = None, owner: int | None = None,
                 group: int | None = None) -> None:
        self.path = path
        self.rings = rings
        self.name = name
        self.iface_id = iface_id
        self.secret = secret
        self.owner = owner
        self.group = group
        self._listener: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None
        self._serving: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._listener = listen(self.path, socket.SOCK_SEQPACKET, self.owner, self.group)
        self._task = asyncio.get_running_loop().create_task(self._accept_loop())

    def close(self) -> None:
        """Stop serving (the port is going): the program is cut off, the socket goes."""
        self.rings.detach()
        for task in (self._task, self._serving):
            if task is not None:
                task.cancel()
        self._task = self._serving = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._listener is not None
        while True:
            conn, _ = await loop.sock_accept(self._listener)
            conn.setblocking(False)
            if self._serving is not None and not self._serving.done():
                log.warning("memif %s: a second program refused: already connected", self.name)
                self.rings.refused()
                with contextlib.suppress(OSError):
                    conn.send(disconnect_message("already connected"))
                conn.close()
                continue
            connection = Connection(conn, self.rings, self.name, self.iface_id, self.secret)
            self._serving = loop.create_task(connection.serve())
