"""Linux interfaces as the daemon sees them: lookups by name, MTU, link state. Read from
/sys and the socket module; nothing here changes an interface."""

from __future__ import annotations

import errno
import socket
from pathlib import Path

from vale.names import check_port_name

SYS_NET = Path("/sys/class/net")
IFF_UP = 0x1


class NoSuchInterface(ValueError):
    pass


def interface_index(name: str) -> int:
    check_port_name(name)
    try:
        return socket.if_nametoindex(name)
    except OSError:
        raise NoSuchInterface(f"no interface named {name!r}") from None


def _read(name: str, attribute: str) -> str | None:
    """None when the interface is not there. Other errors (out of file descriptors, say)
    are raised: they tell nothing about the interface."""
    try:
        return (SYS_NET / name / attribute).read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno == errno.ENODEV:       # deleted while we read
            return None
        raise


def interface_mtu(name: str) -> int:
    value = _read(name, "mtu")
    if value is None:
        raise NoSuchInterface(f"no interface named {name!r}")
    return int(value)


def interface_is_up(name: str) -> bool:
    """Administratively up (IFF_UP), as `ip link set up` leaves it."""
    flags = _read(name, "flags")
    return flags is not None and bool(int(flags, 16) & IFF_UP)


def interface_state(name: str, ifindex: int) -> str:
    """'up', 'down' (exists, not up), 'missing' (gone, or another interface has taken
    the name since), or 'unknown' (/sys could not be read: nothing to act on)."""
    try:
        index = _read(name, "ifindex")
        if index is None or int(index) != ifindex:
            return "missing"
        return "up" if interface_is_up(name) else "down"
    except OSError:
        return "unknown"
