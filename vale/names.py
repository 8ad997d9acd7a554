"""Parsing and checking of the names users type: MAC addresses, switch names, port
names and `switch:port` references. The one place these rules live."""

from __future__ import annotations

import ipaddress
import os
import re

__all__ = [
    "check_address",
    "check_netns_name",
    "check_port_name",
    "check_switch_name",
    "key_to_mac",
    "mac_to_key",
    "parse_port_ref",
    "random_mac",
]

_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}([:-])[0-9a-fA-F]{2}(\1[0-9a-fA-F]{2}){4}$")
_SWITCH_RE = re.compile(r"^vale[A-Za-z0-9_]{1,11}$")
IFNAMSIZ = 16  # Linux interface names: at most 15 bytes and a NUL


def mac_to_key(mac: str) -> int:
    """'02:00:00:00:00:01' (or with dashes) -> the 48-bit key the data plane uses
    (byte 0 in the low bits, so bit 0 is the group bit)."""
    if not isinstance(mac, str) or not _MAC_RE.match(mac):
        raise ValueError(f"not a MAC address: {mac!r} "
                         "(expected six hex pairs like 02:00:00:00:00:01)")
    return int.from_bytes(bytes.fromhex(mac.replace("-", "").replace(":", "")), "little")


def key_to_mac(key: int) -> str:
    return ":".join(f"{b:02x}" for b in key.to_bytes(6, "little"))


def random_mac() -> str:
    """A random locally administered unicast MAC, as Linux gives a new TAP."""
    first, rest = os.urandom(1)[0], os.urandom(5)
    return ":".join(f"{b:02x}" for b in bytes([(first & 0xFE) | 0x02]) + rest)


def check_switch_name(name: str) -> str:
    """Switch names are 'vale' and 1-11 letters, digits or underscores: vale0, vale_lab."""
    if not isinstance(name, str) or not _SWITCH_RE.match(name):
        raise ValueError(f"not a switch name: {name!r} (expected vale followed by letters or "
                         "digits, like vale0)")
    return name


def check_port_name(name: str) -> str:
    """Port names are Linux interface names: 1-15 bytes, no '/', ':', white space or NUL,
    not '.' or '..'."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"not a port name: {name!r}")
    if len(name.encode()) >= IFNAMSIZ:
        raise ValueError(f"port name {name!r} is longer than {IFNAMSIZ - 1} bytes")
    if name in (".", "..") or any(c in name for c in "/:\0") or any(c.isspace() for c in name):
        raise ValueError(f"not a port name: {name!r} (no '/', ':' or white space)")
    return name


def parse_port_ref(ref: str) -> tuple[str, str]:
    """'vale0:eth1' -> ('vale0', 'eth1')."""
    if not isinstance(ref, str) or ref.count(":") != 1:
        raise ValueError(f"not a port reference: {ref!r} (expected SWITCH:PORT, like vale0:eth1)")
    switch, port = ref.split(":")
    return check_switch_name(switch), check_port_name(port)


def check_netns_name(name: str) -> str:
    """A name `ip netns add` could have made (a file under /run/netns); whether it exists
    is vale.netlink.check_netns's question."""
    if not isinstance(name, str) or not name or "/" in name or "\0" in name \
            or name in (".", "..") or len(name.encode()) > 255:
        raise ValueError(f"not a namespace name: {name!r}")
    return name


def check_address(cidr: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    """An address with its prefix length, '198.18.0.1/24' or '2001:db8::1/64'."""
    try:
        address = ipaddress.ip_interface(cidr)
    except (TypeError, ValueError):
        raise ValueError(f"not an address with a prefix length: {cidr!r} "
                         "(like 198.18.0.1/24)") from None
    if "/" not in str(cidr):
        raise ValueError(f"give the prefix length too: {cidr}/24, for example")
    return address
