"""The wire protocol: the request envelope, its version, arguments, and the one place
exceptions become error replies.

Request:  {"v": 1, "op": "attach", "args": {"port": "vale0:eth1"}}
Reply:    {"ok": true, "result": ...}  or  {"ok": false, "error": {"code": ..., "message": ...}}
"""

from __future__ import annotations

import errno
from collections.abc import Collection
from typing import Any

from vale.ports import NoSuchInterface
from vale.state import DIRECTIONS

API_VERSION = 1


class ApiError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def reply_error(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"code": code, "message": message}}


def error_reply(exc: Exception) -> dict[str, Any] | None:
    """The error reply for an exception a request may raise; None for one that is a bug."""
    if isinstance(exc, ApiError):
        return reply_error(exc.code, exc.message)
    if isinstance(exc, NoSuchInterface):
        return reply_error("no_such_interface", str(exc))
    if isinstance(exc, ValueError):         # vale.settings.SettingError among them
        return reply_error("invalid", str(exc))
    if isinstance(exc, OSError):
        code = "permission" if exc.errno in (errno.EPERM, errno.EACCES) else "kernel"
        return reply_error(code, f"the kernel refused: {exc.strerror or exc}")
    return None


def parse_request(request: Any, ops: Collection[str]) -> tuple[str, dict[str, Any]]:
    """(op, args) of a decoded request, or ApiError."""
    if not isinstance(request, dict):
        raise ApiError("bad_request", "a request is a JSON object")
    version = request.get("v", API_VERSION)
    if version != API_VERSION:
        raise ApiError("bad_request", f"API version {version!r} is not spoken here "
                       f"(this daemon speaks {API_VERSION})")
    op = request.get("op")
    if not isinstance(op, str) or op not in ops:
        raise ApiError("unknown_op", f"unknown operation {op!r}; known: "
                       f"{', '.join(sorted(ops))}")
    return op, request_args(request)


def request_args(request: dict[str, Any]) -> dict[str, Any]:
    args = request.get("args", {})
    if not isinstance(args, dict):
        raise ApiError("bad_request", "args must be a JSON object")
    return args


def arg(args: dict[str, Any], name: str, kind: type | tuple[type, ...],
        default: Any = ...) -> Any:
    """Argument `name` of type `kind`; without a default it must be there."""
    if name not in args or (args[name] is None and default is not ...):
        if default is ...:
            raise ApiError("bad_request", f"missing argument {name!r}")
        return default
    value = args[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ApiError("bad_request", f"argument {name!r} has the wrong type")
    return value


def check_direction(direction: str) -> str:
    if direction not in DIRECTIONS:
        raise ApiError("invalid", f"direction is rx, tx or both, not {direction!r}")
    return direction
