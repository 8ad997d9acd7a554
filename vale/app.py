"""Ports for programs: a memif client. A program connects to a memif socket (vale's, or
any memif 2.0 server: DPDK's net_memif, VPP) and sends and receives Ethernet frames
through rings in memory it shares with the server, with no system call per frame. This
module owns the control protocol (the handshake on a SOCK_SEQPACKET socket, the
server's DISCONNECT, reconnecting); the rings and the frame loops are vale._app's.

    from vale.app import open_port
    with open_port("/run/vale/memif/app1.sock", id=0, secret=None) as port:
        for batch in port.receive(timeout=1.0):   # lists of memoryviews into the rings
            ...
        port.send([frame1, frame2])               # one kick per batch

Receiving:
- `port.receive(timeout=None, max_frames=256)` yields batches, each a non-empty list of
  frames, as they come, and stops when none came for `timeout` seconds (None: never).
  A frame is a read-only memoryview into the ring's buffer (a frame the server chained
  over several buffers is copied into one bytes object). A batch is valid until the next
  one is asked for (the next receive, receive_batch or drain), or `port.release()`: then
  its buffers go back to the server, which may overwrite them. Keep `bytes(frame)` to
  keep a frame.
- `port.receive_batch(timeout=0.0)`: one batch, [] when nothing came in time.
- `port.drain(timeout=0.0)`: takes whatever came and gives it straight back, counting:
  (frames, bytes). For counting at line rate.
Waiting sleeps in poll() (the GIL released) on the ring's eventfd and the control
socket, after looking for `busy_poll` seconds without sleeping (open_port's option).

Sending:
- `port.send(frames)` copies frames (bytes-like) into the ring in order while they fit,
  publishes them at once and kicks the server once, and returns how many it queued: the
  caller offers the rest again later.
- `port.send_copies(frame, count, counter_at=-1, counter=0)`: `count` copies of one frame,
  each with a 32-bit counter (network order) at byte `counter_at`. For traffic generators.

`port.counters` is a dict: rx/tx frames and bytes, tx_no_room (frames send() handed
back: the ring was full, or the port was between connections), bad_descriptors (frames
the server described wrongly: dropped), kicks, reconnects.

The server going away (EOF: say valed restarted) is no error: a thread of the port's
connects again, with fresh memory, right away and then every RECONNECT_S until it is
back; meanwhile send() queues nothing (tx_no_room) and receive waits. The port notices
EOF while it waits for frames, or at its next call (send looks every CONTROL_CHECK_S).
A DISCONNECT the server sends raises Disconnected, with its reason, from the call that
finds it (from open_port during the handshake); the port then goes on connecting again
as above. A server refusing a new connection (say "ID not found" from a valed that has
not made the port again yet) is tried again too: `port.last_refusal` says why. One
thread may receive while another sends; two threads must not do the same at once.
"""

from __future__ import annotations

import array
import contextlib
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator, Sequence

from vale._app import COUNTERS, Rings
from vale.memif import (
    ACK,
    ADD_REGION,
    ADD_RING,
    BODY,
    CONNECT,
    CONNECTED,
    DISCONNECT,
    DISCONNECT_MSG,
    HELLO,
    HELLO_MSG,
    INIT,
    INIT_MSG,
    MESSAGE_SIZE,
    MODE_ETHERNET,
    NAME_MSG,
    REGION_MSG,
    RING_FLAG_C2S,
    RING_MSG,
    SECRET_SIZE,
    VERSION,
    disconnect_message,
    message,
)
from vale.unixmsg import close_fds, received_fds

__all__ = ["Disconnected", "MemifError", "Port", "open_port"]

Buffer = bytes | bytearray | memoryview

# The messages' layout is vale.memif's (valed's side of the same protocol).
MESSAGE_NAMES = {ACK: "ACK", HELLO: "HELLO", INIT: "INIT", ADD_REGION: "ADD_REGION",
                 ADD_RING: "ADD_RING", CONNECT: "CONNECT", CONNECTED: "CONNECTED",
                 DISCONNECT: "DISCONNECT"}
TYPE = struct.Struct("<H")
SECRET_MAX = SECRET_SIZE - 1    # and a NUL
NAME_MAX = NAME_MSG.size - 1

RECONNECT_S = 1.0           # how often to try again after the server went away
HANDSHAKE_TIMEOUT = 5.0     # for each reply of the handshake
CONTROL_CHECK_S = 0.05      # how often send() looks at the control socket
WAIT_SLICE_S = 1.0          # the longest one sleep when waiting for ever


class MemifError(Exception):
    """The server, or the protocol, refused the connection."""


class Disconnected(MemifError):
    """The server sent DISCONNECT; `reason` is its string."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: the memif server disconnected: {reason or '(no reason)'}")
        self.reason = reason


class _Lost(ConnectionError):
    """The control connection ended (EOF) or broke: try again later."""


def address(path: str) -> str:
    """A socket path as given: "@name" is the abstract name "\\0name" (libmemif's and
    VPP's convention), anything else a file."""
    return "\0" + path[1:] if path.startswith("@") else path


def c_string(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def _field(value: str | bytes | None, most: int, what: str) -> bytes:
    raw = value.encode() if isinstance(value, str) else bytes(value or b"")
    if len(raw) > most or b"\0" in raw:
        raise ValueError(f"{what}: at most {most} bytes, no NUL")
    return raw


class Port:
    """One memif client interface: its control connection and, while connected, its
    Rings. Made by open_port()."""

    __slots__ = ("_closed", "_lock", "_next_check", "_poll", "_reconnector", "_reconnects",
                 "_refusal", "_rings", "_sock", "_totals", "_up", "buffer_size", "busy_poll",
                 "id", "log2_ring_size", "name", "path", "secret")

    def __init__(self, path: str, *, id: int = 0, secret: str | bytes | None = None,
                 name: str = "vale.app", log2_ring_size: int = 10, buffer_size: int = 2048,
                 busy_poll: float = 0.0) -> None:
        if not 0 <= id <= 0xFFFFFFFF:
            raise ValueError(f"id {id}: a 32-bit unsigned number")
        self.path = path
        self.id = id
        self.secret = _field(secret, SECRET_MAX, "secret")
        self.name = _field(name, NAME_MAX, "name")
        self.log2_ring_size = log2_ring_size
        self.buffer_size = buffer_size
        self.busy_poll = busy_poll
        self._lock = threading.Lock()       # connecting and control messages, one at a time
        self._sock: socket.socket | None = None
        self._poll = select.poll()
        self._rings: Rings | None = None
        self._totals: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._reconnects = 0
        self._reconnector: threading.Thread | None = None
        self._refusal: str | None = None            # why connecting again was refused
        self._up = threading.Event()                # set while connected, or closed
        self._next_check = 0.0
        self._closed = False

    # -- the connection ----------------------------------------------------------------------

    def connect(self) -> None:
        """The handshake; raises what stopped it (OSError, MemifError, Disconnected)."""
        with self._lock:
            if self._closed:
                raise ValueError("the port is closed")
            if self._rings is None:
                self._install(*self._handshake())

    def _install(self, sock: socket.socket, rings: Rings) -> None:
        self._sock, self._rings = sock, rings
        self._poll = select.poll()
        self._poll.register(sock, select.POLLIN)
        self._next_check = 0.0
        self._up.set()

    def _handshake(self) -> tuple[socket.socket, Rings]:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        rings = None
        try:
            sock.settimeout(HANDSHAKE_TIMEOUT)
            sock.connect(address(self.path))
            hello = self._expect(sock, HELLO)
            _name, low, high, _regions, _s2c, _c2s, log2 = HELLO_MSG.unpack_from(hello, BODY)
            if not low <= VERSION <= high:
                self._disconnect(sock, "Incompatible memif version")
                raise MemifError(f"{self.path}: the server speaks memif {low:#06x} to "
                                 f"{high:#06x}, this client {VERSION:#06x}")
            rings = Rings(min(log2, self.log2_ring_size), self.buffer_size)
            sock.sendmsg([message(INIT, INIT_MSG.pack(
                VERSION, self.id, MODE_ETHERNET, self.secret, self.name))])
            self._expect(sock, ACK)
            self._send_fd(sock, message(ADD_REGION, REGION_MSG.pack(
                0, rings.region_size)), rings.region_fd)
            self._expect(sock, ACK)
            for flags, offset, fd in ((RING_FLAG_C2S, rings.c2s_offset, rings.c2s_eventfd),
                                      (0, rings.s2c_offset, rings.s2c_eventfd)):
                self._send_fd(sock, message(ADD_RING, RING_MSG.pack(
                    flags, 0, 0, offset, rings.log2_ring_size, 0)), fd)
                self._expect(sock, ACK)
            sock.sendmsg([message(CONNECT, NAME_MSG.pack(self.name))])
            self._expect(sock, CONNECTED)
            try:
                rings.connected()
            except ValueError as exc:
                self._disconnect(sock, "Invalid ring cookie")
                raise MemifError(f"{self.path}: {exc}") from None
            sock.setblocking(False)
            return sock, rings
        except BaseException:
            if rings is not None:
                rings.close()
            sock.close()
            raise

    def _expect(self, sock: socket.socket, kind: int) -> bytes:
        data = self._receive_message(sock)
        if data is None:
            raise _Lost(f"{self.path}: the server hung up before "
                        f"{MESSAGE_NAMES[kind]}")
        got = TYPE.unpack_from(data)[0]
        if got == DISCONNECT:
            raise Disconnected(self.path, c_string(DISCONNECT_MSG.unpack_from(data, BODY)[1]))
        if got != kind:
            self._disconnect(sock, "Unexpected message")
            raise MemifError(f"{self.path}: expected {MESSAGE_NAMES[kind]} from the server, "
                             f"got {MESSAGE_NAMES.get(got, f'type {got}')}")
        return data

    def _receive_message(self, sock: socket.socket) -> bytes | None:
        """One message; None at EOF. A server never sends descriptors: any are closed."""
        data, ancillary, flags, _ = sock.recvmsg(MESSAGE_SIZE + 1,
                                                 socket.CMSG_SPACE(16 * 4))
        close_fds(received_fds(ancillary))
        if not data:
            return None
        if len(data) != MESSAGE_SIZE or flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
            self._disconnect(sock, "Invalid message size")
            raise MemifError(f"{self.path}: a control message of {len(data)} bytes, not "
                             f"{MESSAGE_SIZE}")
        return data

    @staticmethod
    def _send_fd(sock: socket.socket, data: bytes, fd: int) -> None:
        sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                               array.array("i", [fd]).tobytes())])

    @staticmethod
    def _disconnect(sock: socket.socket, reason: str) -> None:
        with contextlib.suppress(OSError):
            sock.sendmsg([disconnect_message(reason)])

    def _lost(self) -> None:
        """The connection ended: its rings stop (a thread still in them finds them dead;
        they are freed when the last user lets go), its counts are kept, and unless the
        port is closed a thread starts connecting again."""
        rings, sock = self._rings, self._sock
        self._rings = self._sock = None
        if not self._closed:
            self._up.clear()
        if rings is not None:
            rings.stop()
            for key, value in rings.counters().items():
                self._totals[key] += value
        if sock is not None:
            sock.close()
        if not self._closed and (self._reconnector is None
                                 or not self._reconnector.is_alive()):
            self._reconnector = threading.Thread(
                target=self._reconnect, name=f"memif reconnect {self.path}", daemon=True)
            self._reconnector.start()

    def _reconnect(self) -> None:
        """Tries now and then every RECONNECT_S until connected or closed. Nobody there
        (or a server going away) is no news; a refusal is kept for last_refusal."""
        while not self._closed:
            try:
                sock, rings = self._handshake()
            except MemifError as exc:
                self._refusal = str(exc)
            except OSError:
                pass
            else:
                with self._lock:
                    if not self._closed:
                        self._install(sock, rings)
                        self._reconnects += 1
                        return
                rings.close()
                sock.close()
                return
            if self._up.wait(RECONNECT_S):          # set by close()
                return

    def _check_control(self) -> None:
        """Reads what the server sent since: EOF or a broken message ends the connection,
        DISCONNECT too and raises Disconnected, anything else is ignored (as DPDK does)."""
        with self._lock:
            sock = self._sock
            if sock is None or not self._poll.poll(0):
                return
            while True:
                try:
                    data = self._receive_message(sock)
                except BlockingIOError:
                    return
                except (OSError, MemifError):
                    data = None
                if data is None:
                    self._lost()
                    return
                if TYPE.unpack_from(data)[0] == DISCONNECT:
                    self._lost()
                    raise Disconnected(self.path,
                                       c_string(DISCONNECT_MSG.unpack_from(data, BODY)[1]))

    def _current(self) -> Rings | None:
        """The rings (None between connections), after a look at the control socket
        every CONTROL_CHECK_S."""
        rings = self._rings
        if rings is not None:
            now = time.monotonic()
            if now >= self._next_check:
                self._next_check = now + CONTROL_CHECK_S
                self._check_control()
                return self._rings
            return rings
        if self._closed:
            raise ValueError("the port is closed")
        return None

    def _wait(self, rings: Rings | None, deadline: float | None) -> bool:
        """Sleeps until frames may have come, or the port connected again, or the
        deadline; False once it passed."""
        now = time.monotonic()
        left = WAIT_SLICE_S if deadline is None else min(deadline - now, WAIT_SLICE_S)
        if left <= 0:
            return False
        sock = self._sock
        if rings is None or sock is None:
            self._up.wait(left)
            return True
        if rings.wait(left, sock.fileno(), self.busy_poll) == "control":
            self._next_check = 0.0
        return True

    @property
    def connected(self) -> bool:
        return self._rings is not None

    @property
    def last_refusal(self) -> str | None:
        """Why the server last refused to connect again (its DISCONNECT), if it did."""
        return self._refusal

    # -- frames ------------------------------------------------------------------------------

    def receive_batch(self, timeout: float | None = 0.0,
                      max_frames: int = 256) -> list[memoryview | bytes]:
        """Gives the last batch back, then the frames that came (at most max_frames),
        waiting up to timeout seconds (None: until some come); [] if none did."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            rings = self._current()
            if rings is not None:
                frames = rings.receive(max_frames)
                if frames:
                    return frames
            if not self._wait(rings, deadline):
                return []

    def receive(self, timeout: float | None = None,
                max_frames: int = 256) -> Iterator[list[memoryview | bytes]]:
        """Batches as they come, until none came for timeout seconds (None: for ever).
        Each batch is valid until the next is asked for; the last is released at the end."""
        try:
            while True:
                batch = self.receive_batch(timeout, max_frames)
                if not batch:
                    return
                yield batch
        finally:
            self.release()

    def release(self) -> None:
        """Gives the last batch's buffers back to the server now."""
        rings = self._rings
        if rings is not None:
            rings.release()

    def drain(self, timeout: float | None = 0.0, max_frames: int = 4096) -> tuple[int, int]:
        """Takes what came (waiting up to timeout for something) and gives it straight
        back: (frames, bytes)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            rings = self._current()
            if rings is not None:
                got = rings.drain(max_frames)
                if got[0]:
                    return got
            if not self._wait(rings, deadline):
                return 0, 0

    def send(self, frames: Sequence[Buffer]) -> int:
        """Queues frames while they fit, publishes them with one kick: how many it queued.
        ValueError for a frame larger than the whole ring."""
        rings = self._current()
        if rings is None:
            self._totals["tx_no_room"] += len(frames)
            return 0
        return rings.send(frames)

    def send_copies(self, frame: Buffer, count: int, counter_at: int = -1,
                    counter: int = 0) -> int:
        """Queues up to count copies of frame, copy k with counter + k (32 bits, network
        order) at byte counter_at (if >= 0): how many it queued."""
        rings = self._current()
        if rings is None:
            self._totals["tx_no_room"] += count
            return 0
        return rings.send_copies(frame, count, counter_at, counter & 0xFFFFFFFF)

    @property
    def counters(self) -> dict[str, int]:
        counts = dict(self._totals)
        rings = self._rings
        if rings is not None:
            for key, value in rings.counters().items():
                counts[key] += value
        counts["reconnects"] = self._reconnects
        return counts

    # -- life cycle --------------------------------------------------------------------------

    def close(self) -> None:
        """Hangs up (the server sees EOF) and lets go of the memory and eventfds. Frames
        already received stay readable."""
        with self._lock:
            self._closed = True
            self._up.set()                          # the reconnecting thread ends
            rings = self._rings
            self._lost()
            if rings is not None:
                rings.close()

    def __enter__(self) -> Port:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "connected" if self.connected else "waiting"
        return f"<vale.app.Port {self.path} id={self.id} {state}>"


def open_port(path: str, *, id: int = 0, secret: str | bytes | None = None,
              name: str = "vale.app", log2_ring_size: int = 10, buffer_size: int = 2048,
              busy_poll: float = 0.0) -> Port:
    """Connects to the memif server at path ("@name": an abstract socket) as client
    interface `id`, with `secret` if the server wants one: a Port, connected. Raises
    OSError when nothing listens there, Disconnected when the server refuses (its reason),
    MemifError when it breaks the protocol. log2_ring_size and buffer_size are the
    rings' (the server may ask for smaller rings); busy_poll, how long a receive looks at
    an empty ring before it sleeps."""
    port = Port(path, id=id, secret=secret, name=name, log2_ring_size=log2_ring_size,
                buffer_size=buffer_size, busy_poll=busy_poll)
    port.connect()
    return port
