"""The vhost-user protocol (QEMU's docs/interop/vhost-user.rst), the back end's side, for
one port: messages on a Unix socket set up the guest's memory and rings, which the
forwarding thread then serves (vale/vhost.pxi). Runs on the daemon's event loop, off the
forwarding thread; every message is handled in order and each change reaches the core
through `Rings` (Switch.vhost_rings), under the core's lock.

Either valed listens (server mode, the default: QEMU connects with `reconnect=N`) or it
connects to a socket QEMU listens on (client mode, QEMU's `server=on`), and then connects
again after the front end or valed went away, so a restarted valed never needs a guest
reboot. A front end that sends what the protocol does not allow is logged and
disconnected; the port stays, and takes the next connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

from vale.unixmsg import close_fds, listen, readable, received_fds

log = logging.getLogger("vale.vhost")

# Requests (front end to back end) a net back end serves.
GET_FEATURES = 1
SET_FEATURES = 2
SET_OWNER = 3
RESET_OWNER = 4
SET_MEM_TABLE = 5
SET_LOG_BASE = 6
SET_LOG_FD = 7
SET_VRING_NUM = 8
SET_VRING_ADDR = 9
SET_VRING_BASE = 10
GET_VRING_BASE = 11
SET_VRING_KICK = 12
SET_VRING_CALL = 13
SET_VRING_ERR = 14
GET_PROTOCOL_FEATURES = 15
SET_PROTOCOL_FEATURES = 16
GET_QUEUE_NUM = 17
SET_VRING_ENABLE = 18

VERSION = 1
FLAG_REPLY = 1 << 2
FLAG_NEED_REPLY = 1 << 3
HEADER = struct.Struct("<III")
MAX_PAYLOAD = 4096              # the largest message a net back end gets is ~270 bytes
MAX_FDS = 8
VRING_INDEX_MASK = 0xFF
VRING_NOFD = 1 << 8

# Feature bits (virtio 1.1, 5.1.3; vhost-user).
F_CSUM = 0
F_GUEST_CSUM = 1
F_GUEST_TSO4 = 7
F_GUEST_TSO6 = 8
F_GUEST_ECN = 9
F_HOST_TSO4 = 11
F_HOST_TSO6 = 12
F_HOST_ECN = 13
F_MRG_RXBUF = 15
F_INDIRECT_DESC = 28
F_EVENT_IDX = 29
F_PROTOCOL_FEATURES = 30
F_VERSION_1 = 32
OFFERED = sum(1 << bit for bit in (
    F_CSUM, F_GUEST_CSUM, F_GUEST_TSO4, F_GUEST_TSO6, F_GUEST_ECN, F_HOST_TSO4, F_HOST_TSO6,
    F_HOST_ECN, F_MRG_RXBUF, F_INDIRECT_DESC, F_EVENT_IDX, F_PROTOCOL_FEATURES, F_VERSION_1))
GUEST_OFFLOADS = sum(1 << bit for bit in (F_GUEST_CSUM, F_GUEST_TSO4, F_GUEST_TSO6, F_GUEST_ECN))

PF_REPLY_ACK = 3
PROTOCOL_OFFERED = 1 << PF_REPLY_ACK

SOCKET_DIR = "/run/vale/vhost"  # where a port's socket is unless its path says otherwise
QUEUES = 2                      # one receive and one transmit queue
RECONNECT_S = 1.0               # client mode: how often to try the front end's socket

VRING_STATE = struct.Struct("<II")
VRING_ADDR = struct.Struct("<IIQQQQ")
MEM_TABLE_HEAD = struct.Struct("<II")
MEM_REGION = struct.Struct("<QQQQ")
U64 = struct.Struct("<Q")


def socket_path(port: str) -> str:
    """The socket of a vhost-user port made without a path."""
    return f"{SOCKET_DIR}/{port}.sock"


class ProtocolError(Exception):
    """The front end sent what the protocol does not allow: it is disconnected."""


class Rings(Protocol):
    """What the protocol changes in the core, for one port (Switch.vhost_rings)."""

    def features(self, features: int, **decoded: bool) -> None: ...
    def memory(self, regions: list[tuple[int, int, int, int, int]]) -> None: ...
    def ring(self, queue: int, **setup: object) -> bool: ...
    def stop(self, queue: int) -> int: ...
    def reset(self) -> None: ...
    def detach(self) -> None: ...


@dataclass
class Message:
    request: int
    flags: int
    payload: bytes
    fds: list[int]

    @property
    def need_reply(self) -> bool:
        return bool(self.flags & FLAG_NEED_REPLY)


class Connection:
    """One front end's session: reads messages in order, applies them, replies."""

    def __init__(self, sock: socket.socket, rings: Rings, name: str) -> None:
        self.sock = sock
        self.rings = rings
        self.name = name
        self.features = 0
        self.protocol_features = 0

    async def serve(self) -> None:
        """Until the front end goes away or breaks the protocol."""
        loop = asyncio.get_running_loop()
        self.sock.setblocking(False)
        try:
            while True:
                message = await self._read(loop)
                if message is None:
                    log.info("vhost-user %s: the front end disconnected", self.name)
                    return
                try:
                    reply = self._handle(message)
                except ValueError as e:
                    close_fds(message.fds)
                    if not self._acked(message):
                        raise ProtocolError(str(e)) from e
                    log.warning("vhost-user %s: request %d refused: %s", self.name,
                                message.request, e)
                    await self._reply(loop, message, U64.pack(1))
                    continue
                if reply is not None:
                    await self._reply(loop, message, reply)
                elif self._acked(message):
                    await self._reply(loop, message, U64.pack(0))
        except ProtocolError as e:
            log.warning("vhost-user %s: disconnected: %s", self.name, e)
        except OSError as e:
            log.warning("vhost-user %s: disconnected: %s", self.name, e)
        finally:
            self.rings.reset()
            self.sock.close()

    def _acked(self, message: Message) -> bool:
        return message.need_reply and bool(self.protocol_features & (1 << PF_REPLY_ACK))

    # -- the wire ---------------------------------------------------------------------

    async def _recv(self, loop: asyncio.AbstractEventLoop, size: int,
                    fds: list[int] | None) -> bytes:
        data = b""
        while len(data) < size:
            await readable(loop, self.sock)
            try:
                if fds is not None and not data:
                    chunk, ancillary, _flags, _addr = self.sock.recvmsg(
                        size, socket.CMSG_SPACE(MAX_FDS * 4))
                    fds.extend(received_fds(ancillary))
                else:
                    chunk = self.sock.recv(size - len(data))
            except (BlockingIOError, InterruptedError):
                continue
            if not chunk:
                if data:
                    raise ProtocolError("a message cut short")
                return b""
            data += chunk
        return data

    async def _read(self, loop: asyncio.AbstractEventLoop) -> Message | None:
        fds: list[int] = []
        head = await self._recv(loop, HEADER.size, fds)
        if not head:
            close_fds(fds)
            return None
        request, flags, size = HEADER.unpack(head)
        if flags & 3 != VERSION:
            close_fds(fds)
            raise ProtocolError(f"version {flags & 3}, not {VERSION} (garbage?)")
        if size > MAX_PAYLOAD:
            close_fds(fds)
            raise ProtocolError(f"a payload of {size} bytes (garbage?)")
        payload = await self._recv(loop, size, None) if size else b""
        if size and len(payload) != size:
            close_fds(fds)
            raise ProtocolError("a message cut short")
        return Message(request, flags, payload, fds)

    async def _reply(self, loop: asyncio.AbstractEventLoop, message: Message,
                     payload: bytes) -> None:
        data = HEADER.pack(message.request, VERSION | FLAG_REPLY, len(payload)) + payload
        await loop.sock_sendall(self.sock, data)

    # -- the requests -------------------------------------------------------------------

    def _handle(self, m: Message) -> bytes | None:
        """Apply one request; its reply's payload, or None. ValueError: refused."""
        handler = self._HANDLERS.get(m.request)
        if handler is None:
            raise ValueError(f"request {m.request} is not served")
        return handler(self, m)

    def _expect(self, m: Message, size: int, fds: int = 0) -> None:
        if len(m.payload) < size:
            raise ValueError(f"request {m.request}: a payload of {len(m.payload)} bytes, "
                             f"{size} needed")
        if len(m.fds) != fds:
            raise ValueError(f"request {m.request}: {len(m.fds)} file descriptors, not {fds}")

    def _get_features(self, m: Message) -> bytes:
        return U64.pack(OFFERED)

    def _taken(self, m: Message, offered: int, what: str) -> int:
        """The u64 of a SET_*FEATURES: bits the back end offered only."""
        self._expect(m, U64.size)
        (features,) = U64.unpack_from(m.payload)
        if features & ~offered:
            raise ValueError(f"{what} {features & ~offered:#x} were not offered")
        return int(features)

    def _set_features(self, m: Message) -> None:
        self.features = features = self._taken(m, OFFERED, "features")

        def has(bit: int) -> bool:
            return bool(features & (1 << bit))
        self.rings.features(features, event_idx=has(F_EVENT_IDX),
                            indirect=has(F_INDIRECT_DESC), mergeable=has(F_MRG_RXBUF),
                            version_1=has(F_VERSION_1),
                            offloads=features & GUEST_OFFLOADS == GUEST_OFFLOADS,
                            guest_ufo=False)
        if not has(F_PROTOCOL_FEATURES):      # rings are enabled as they start
            for queue in range(QUEUES):
                self.rings.ring(queue, enabled=True)

    def _no_payload(self, m: Message) -> None:
        close_fds(m.fds)

    def _reset_owner(self, m: Message) -> None:
        self.rings.reset()

    def _get_protocol_features(self, m: Message) -> bytes:
        return U64.pack(PROTOCOL_OFFERED)

    def _set_protocol_features(self, m: Message) -> None:
        self.protocol_features = self._taken(m, PROTOCOL_OFFERED, "protocol features")

    def _get_queue_num(self, m: Message) -> bytes:
        return U64.pack(QUEUES // 2)

    def _set_mem_table(self, m: Message) -> None:
        self._expect(m, MEM_TABLE_HEAD.size, len(m.fds))
        count, _ = MEM_TABLE_HEAD.unpack_from(m.payload)
        if not 0 < count <= MAX_FDS or len(m.fds) != count:
            raise ValueError(f"a memory table of {count} regions with {len(m.fds)} fds")
        if len(m.payload) < MEM_TABLE_HEAD.size + count * MEM_REGION.size:
            raise ValueError("a memory table cut short")
        regions = []
        for k in range(count):
            gpa, size, uva, offset = MEM_REGION.unpack_from(
                m.payload, MEM_TABLE_HEAD.size + k * MEM_REGION.size)
            regions.append((gpa, size, uva, offset, m.fds[k]))
        try:
            self.rings.memory(regions)
        except OSError as e:
            raise ValueError(str(e)) from e
        finally:
            close_fds(m.fds)      # the mappings keep the memory

    def _state(self, m: Message) -> tuple[int, int]:
        self._expect(m, VRING_STATE.size)
        index, num = VRING_STATE.unpack_from(m.payload)
        if index >= QUEUES:
            raise ValueError(f"queue {index} out of range: vale serves one queue pair")
        return index, num

    def _set_vring_num(self, m: Message) -> None:
        index, num = self._state(m)
        self.rings.ring(index, num=num)

    def _set_vring_base(self, m: Message) -> None:
        index, num = self._state(m)
        self.rings.ring(index, base=num)

    def _get_vring_base(self, m: Message) -> bytes:
        index, _ = self._state(m)
        return VRING_STATE.pack(index, self.rings.stop(index))

    def _set_vring_enable(self, m: Message) -> None:
        index, num = self._state(m)
        self.rings.ring(index, enabled=bool(num))

    def _set_vring_addr(self, m: Message) -> None:
        self._expect(m, VRING_ADDR.size)
        index, _flags, desc, used, avail, _log = VRING_ADDR.unpack_from(m.payload)
        if index >= QUEUES:
            raise ValueError(f"queue {index} out of range: vale serves one queue pair")
        self.rings.ring(index, addr=(desc, avail, used))

    def _vring_fd(self, m: Message) -> tuple[int, int]:
        """(queue, fd or -1) of a SET_VRING_KICK/CALL/ERR."""
        self._expect(m, U64.size, len(m.fds))
        (value,) = U64.unpack_from(m.payload)
        index = value & VRING_INDEX_MASK
        nofd = bool(value & VRING_NOFD)
        if len(m.fds) != (0 if nofd else 1) or index >= QUEUES:
            raise ValueError(f"queue {index}: {len(m.fds)} fds with no-fd {nofd}")
        return index, -1 if nofd else m.fds[0]

    def _set_vring_kick(self, m: Message) -> None:
        index, fd = self._vring_fd(m)
        self.rings.ring(index, kick=fd)
        if not self.features & (1 << F_PROTOCOL_FEATURES):
            self.rings.ring(index, enabled=True)

    def _set_vring_call(self, m: Message) -> None:
        index, fd = self._vring_fd(m)
        self.rings.ring(index, call=fd)

    def _set_vring_err(self, m: Message) -> None:
        self._vring_fd(m)
        close_fds(m.fds)

    _HANDLERS: ClassVar[dict[int, Callable[[Connection, Message], bytes | None]]] = {
        GET_FEATURES: _get_features,
        SET_FEATURES: _set_features,
        SET_OWNER: _no_payload,
        RESET_OWNER: _reset_owner,
        SET_MEM_TABLE: _set_mem_table,
        SET_VRING_NUM: _set_vring_num,
        SET_VRING_ADDR: _set_vring_addr,
        SET_VRING_BASE: _set_vring_base,
        GET_VRING_BASE: _get_vring_base,
        SET_VRING_KICK: _set_vring_kick,
        SET_VRING_CALL: _set_vring_call,
        SET_VRING_ERR: _set_vring_err,
        GET_PROTOCOL_FEATURES: _get_protocol_features,
        SET_PROTOCOL_FEATURES: _set_protocol_features,
        GET_QUEUE_NUM: _get_queue_num,
        SET_VRING_ENABLE: _set_vring_enable,
    }


class Endpoint:
    """A vhost-user port's socket: listens (server mode) or connects and reconnects
    (client mode), one front end at a time."""

    def __init__(self, path: str, rings: Rings, name: str, *, client: bool = False,
                 owner: int | None = None, group: int | None = None) -> None:
        self.path = path
        self.rings = rings
        self.name = name
        self.client = client
        self.owner = owner
        self.group = group
        self._task: asyncio.Task[None] | None = None
        self._listener: socket.socket | None = None

    def start(self) -> None:
        if self.client:
            self._task = asyncio.get_running_loop().create_task(self._connect_loop())
        else:
            self._listen()
            self._task = asyncio.get_running_loop().create_task(self._accept_loop())

    def close(self) -> None:
        """Stop serving (the port is going): its socket goes too in server mode."""
        self.rings.detach()
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    def _listen(self) -> None:
        self._listener = listen(self.path, socket.SOCK_STREAM, self.owner, self.group)

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._listener is not None
        while True:
            conn, _ = await loop.sock_accept(self._listener)
            log.info("vhost-user %s: a front end connected", self.name)
            await Connection(conn, self.rings, self.name).serve()

    async def _connect_loop(self) -> None:
        loop = asyncio.get_running_loop()
        said = False
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, self.path)
            except OSError as e:
                sock.close()
                if not said:
                    log.info("vhost-user %s: waiting for %s (%s)", self.name, self.path,
                             e.strerror)
                    said = True
                await asyncio.sleep(RECONNECT_S)
                continue
            said = False
            log.info("vhost-user %s: connected to %s", self.name, self.path)
            await Connection(sock, self.rings, self.name).serve()
            await asyncio.sleep(RECONNECT_S)
