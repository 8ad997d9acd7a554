"""Talking to valed: one JSON request, one reply, over its Unix socket."""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

DEFAULT_SOCKET = "/run/vale/valed.sock"


class ClientError(Exception):
    """The daemon said no, or could not be reached. `code` as in vale.api."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def socket_path(path: str | None = None) -> str:
    return path or os.environ.get("VALE_SOCKET", DEFAULT_SOCKET)


def _connect(sock: socket.socket, where: str) -> None:
    """Connect; a full listen queue (EAGAIN on a Unix socket) is worth a few retries."""
    for attempt in range(50):
        try:
            sock.connect(where)
            return
        except BlockingIOError:
            time.sleep(0.01 * (attempt + 1))
    sock.connect(where)


def open_stream(op: str, args: dict[str, Any], *, path: str | None = None) -> socket.socket:
    """Connect and send a request whose answer is a stream of lines (capture)."""
    where = socket_path(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        _connect(sock, where)
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        raise ClientError("not_running",
                          f"valed is not running (nothing listens on {where})") from None
    except PermissionError:
        sock.close()
        raise ClientError("permission",
                          f"permission denied on {where} (are you in its group?)") from None
    sock.sendall(json.dumps({"v": 1, "op": op, "args": args}).encode() + b"\n")
    return sock


def stream(op: str, args: dict[str, Any] | None = None, *, path: str | None = None,
           timeout: float = 30.0) -> Iterator[list[Any]]:
    """Send a request whose answer comes in pages (fdb_stream); yield each page as it
    comes. ClientError when it is refused, or valed stops it (the pages before came)."""
    sock = open_stream(op, args or {}, path=path)
    sock.settimeout(timeout)
    try:
        with sock.makefile("rb") as lines:
            first = _reply(lines.readline())
            if not first.get("ok"):
                error = first.get("error", {})
                raise ClientError(error.get("code", "error"), error.get("message", "refused"))
            for line in lines:
                message = _reply(line)
                if "page" in message:
                    yield message["page"]
                elif message.get("done"):
                    if "error" in message:
                        raise ClientError(message["error"]["code"], message["error"]["message"])
                    return
            raise ClientError("connect", "valed closed the connection mid-answer")
    except TimeoutError:
        raise ClientError("timeout", f"valed did not go on within {timeout:g} s") from None
    finally:
        sock.close()


def _reply(line: bytes) -> dict[str, Any]:
    if not line:
        raise ClientError("connect", "valed closed the connection without answering")
    return json.loads(line)


def call(op: str, args: dict[str, Any] | None = None, *, path: str | None = None,
         timeout: float = 30.0) -> Any:
    """Send one request; return its result or raise ClientError."""
    where = socket_path(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            _connect(sock, where)
        except (FileNotFoundError, ConnectionRefusedError):
            raise ClientError("not_running",
                              f"valed is not running (nothing listens on {where})") from None
        except PermissionError:
            raise ClientError("permission",
                              f"permission denied on {where} (are you in its group?)") from None
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ECONNREFUSED):
                raise ClientError("not_running", f"valed is not running ({where})") from None
            raise ClientError("connect", f"cannot reach valed at {where}: {exc}") from None
        try:
            sock.sendall(json.dumps({"v": 1, "op": op, "args": args or {}}).encode() + b"\n")
        except (BrokenPipeError, ConnectionResetError):
            pass            # it may have answered (busy) before it closed: read that
        try:
            with sock.makefile("rb") as stream:
                line = stream.readline()
        except ConnectionResetError:
            line = b""
    except TimeoutError:
        raise ClientError("timeout", f"valed did not answer within {timeout:g} s") from None
    finally:
        sock.close()
    reply = _reply(line)
    if not reply.get("ok"):
        error = reply.get("error", {})
        raise ClientError(error.get("code", "error"), error.get("message", "request failed"))
    return reply.get("result")
