"""Messages with file descriptors on a non-blocking Unix socket, on the event loop: what
the vhost-user and memif protocols share."""

from __future__ import annotations

import array
import asyncio
import contextlib
import os
import socket


def listen(path: str, kind: int, owner: int | None, group: int | None) -> socket.socket:
    """A non-blocking Unix socket listening on `path` (made anew), mode 0660, given to
    owner and group (None: root's)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, kind | socket.SOCK_CLOEXEC)
    try:
        sock.bind(path)
        os.chmod(path, 0o660)
        if owner is not None or group is not None:
            os.chown(path, -1 if owner is None else owner, -1 if group is None else group)
        sock.listen(4)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


async def readable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    """Until sock has something to read (or its peer closed it)."""
    future = loop.create_future()
    loop.add_reader(sock.fileno(), lambda: future.done() or future.set_result(None))
    try:
        await future
    finally:
        loop.remove_reader(sock.fileno())


def received_fds(ancillary: list[tuple[int, int, bytes]]) -> list[int]:
    """The file descriptors an SCM_RIGHTS message of recvmsg carried (now the caller's)."""
    fds = array.array("i")
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
    return list(fds)


def close_fds(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
