"""TAP devices: opened through /dev/net/tun with the ioctls of linux/if_tun.h.

A daemon-owned TAP (`open_tap`) stays open in the daemon and is a port read and written
through its fd; it vanishes when the fd closes (when the daemon stops or removes it). A
persistent TAP (`make_persistent_tap`) outlives the daemon, belongs to a user and group, and
is for a VM to open (QEMU -netdev tap,ifname=NAME,script=no); the switch attaches it as an
ordinary interface.
"""

from __future__ import annotations

import fcntl
import os
import struct

from vale.names import check_port_name

TUN_DEVICE = "/dev/net/tun"
TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
TUNSETOWNER = 0x400454CC
TUNSETGROUP = 0x400454CE
TUNSETOFFLOAD = 0x400454D0
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
TUN_F_TSO_ECN = 0x08
TUN_F_USO4 = 0x20
TUN_F_USO6 = 0x40


def _ifreq(name: str, flags: int) -> bytes:
    return struct.pack("16sH22x", name.encode(), flags)


def _set_iff(fd: int, name: str, flags: int) -> None:
    fcntl.ioctl(fd, TUNSETIFF, _ifreq(name, flags))


def open_tap(name: str) -> int:
    """Create TAP `name` held by the returned non-blocking fd, with virtio-net headers and
    checksum and segmentation offloads on, so the host stack hands over GSO frames whole."""
    check_port_name(name)
    fd = os.open(TUN_DEVICE, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        _set_iff(fd, name, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)
        offloads = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN
        try:
            fcntl.ioctl(fd, TUNSETOFFLOAD, offloads | TUN_F_USO4 | TUN_F_USO6)
        except OSError:                     # kernels before 6.2 know no USO
            fcntl.ioctl(fd, TUNSETOFFLOAD, offloads)
    except BaseException:
        os.close(fd)
        raise
    return fd


def make_persistent_tap(name: str, owner: int | None = None, group: int | None = None) -> None:
    """Create a persistent TAP `name` that user `owner` / group `group` may open."""
    check_port_name(name)
    fd = os.open(TUN_DEVICE, os.O_RDWR | os.O_CLOEXEC)
    try:
        _set_iff(fd, name, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)
        if owner is not None:
            fcntl.ioctl(fd, TUNSETOWNER, owner)
        if group is not None:
            fcntl.ioctl(fd, TUNSETGROUP, group)
        fcntl.ioctl(fd, TUNSETPERSIST, 1)
    finally:
        os.close(fd)


def remove_persistent_tap(name: str) -> None:
    check_port_name(name)
    fd = os.open(TUN_DEVICE, os.O_RDWR | os.O_CLOEXEC)
    try:
        _set_iff(fd, name, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)
        fcntl.ioctl(fd, TUNSETPERSIST, 0)
    finally:
        os.close(fd)
