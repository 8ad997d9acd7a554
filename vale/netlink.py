"""Netlink, through pyroute2: making and removing the veth pairs the daemon owns, and
watching links come and go.

pyroute2's own async socket cannot run on uvloop (uvloop takes no AF_NETLINK datagram
endpoints), so: changes go through pyroute2's IPRoute in a worker thread of their own, and
the watch is a plain netlink socket in the daemon's loop whose messages pyroute2 parses.
Work inside another namespace is done by that worker thread entering it with setns(2) (a
thread's own namespace, so the rest of the daemon stays put), not by pyroute2's netns
support, which forks a helper: a forked child shares the loop's signal wake-up socket, and
its signals would reach the daemon as its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import ipaddress
import logging
import os
import socket
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute, NetlinkError
from pyroute2.netlink.rtnl.marshal import MarshalRtnl

from vale.names import check_address, check_netns_name, check_port_name
from vale.tap import make_persistent_tap

log = logging.getLogger("vale.netlink")

RTMGRP_LINK = 0x1
IFF_UP = 0x1
NETNS_DIR = Path("/run/netns")

CLONE_NEWNET = 0x40000000

_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vale-netlink")
_libc = ctypes.CDLL(None, use_errno=True)


WORKER_TIMEOUT_S = 10       # well under the unit's WatchdogSec (15 s): the loop waits


def _in_worker(fn: Callable[..., Any], *args: Any) -> Any:
    """Run fn in the netlink thread (where namespaces are entered) and wait for it. What
    the kernel refuses is an OSError, as from any other system call."""
    try:
        return _worker.submit(fn, *args).result(timeout=WORKER_TIMEOUT_S)
    except TimeoutError:
        raise OSError(errno.ETIMEDOUT, f"the kernel did not answer within "
                                       f"{WORKER_TIMEOUT_S} s") from None
    except NetlinkError as exc:
        code = exc.code if isinstance(exc.code, int) else errno.EIO
        text = exc.args[1] if len(exc.args) > 1 and exc.args[1] else os.strerror(code)
        raise OSError(code, text) from exc


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextlib.contextmanager
def _entered(netns: str | None) -> Iterator[None]:
    """Run the body (in the worker thread) inside namespace `netns`, then come back."""
    if netns is None:
        yield
        return
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(NETNS_DIR / netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)


def _index(ipr: IPRoute, name: str) -> int:
    """The index of interface `name` in the calling thread's namespace, or
    OSError(ENODEV): it may vanish at any time. One ioctl, not a dump of every link
    (pyroute2's link_lookup), which made attaching n ports cost n squared."""
    try:
        return socket.if_nametoindex(name)
    except OSError:
        raise OSError(errno.ENODEV, f"no interface {name}") from None


def check_netns(name: str) -> str:
    """A namespace made with `ip netns add` (a file under /run/netns)."""
    if not (NETNS_DIR / check_netns_name(name)).exists():
        raise ValueError(f"no network namespace {name!r} (see ip netns list)")
    return name


def create_veth(name: str, peer: str, netns: str | None, address: str | None) -> None:
    """A veth pair: `name` stays here (up), `peer` goes into `netns` (up, with `address`)."""
    check_port_name(name)
    check_port_name(peer)
    cidr = check_address(address) if address else None
    _in_worker(_create_veth, name, peer, netns, cidr)


def _create_veth(name: str, peer: str, netns: str | None, cidr: Any) -> None:
    with IPRoute() as ipr:
        peer_spec: dict[str, Any] = {"ifname": peer}
        if netns:
            peer_spec["net_ns_fd"] = netns
        ipr.link("add", ifname=name, kind="veth", peer=peer_spec)
        try:
            ipr.link("set", index=_index(ipr, name), state="up")
            _configure(peer, netns, cidr)
        except BaseException:
            ipr.link("del", index=_index(ipr, name))
            raise


def set_up_tap(name: str, netns: str | None, address: str | None, mac: str | None) -> None:
    """A TAP just made: its `mac` (None: the kernel's), moved into `netns` (None: it
    stays), up, with `address`."""
    cidr = check_address(address) if address else None
    _in_worker(_set_up_tap, name, netns, cidr, mac)


def _set_up_tap(name: str, netns: str | None, cidr: Any, mac: str | None) -> None:
    with IPRoute() as ipr:
        index = _index(ipr, name)
        if mac is not None:
            ipr.link("set", index=index, address=mac)
        if netns is not None:
            ipr.link("set", index=index, net_ns_fd=netns)
    _configure(name, netns, cidr)


def _configure(name: str, netns: str | None, cidr: Any) -> None:
    """Interface `name` in `netns` (None: here): its address, then up."""
    with _entered(netns), IPRoute() as ipr:
        index = _index(ipr, name)
        if cidr is not None:
            ipr.addr("add", index=index, address=str(cidr.ip), prefixlen=cidr.network.prefixlen)
        ipr.link("set", index=index, state="up")



VXLAN_OVERHEAD = {4: 50, 6: 70}     # outer Ethernet (14) + IP (20 or 40) + UDP (8) + VXLAN (8)
SWITCH_MTU = 1500                   # what a switch's hosts send by default


@dataclass(frozen=True)
class Vxlan:
    """A VXLAN device as made: its MTU and the underlay's, and a warning when hosts on
    the switch send frames the tunnel cannot carry."""
    mtu: int
    underlay: str
    underlay_mtu: int
    warning: str | None


def create_vxlan(name: str, vni: int, remote: str, local: str | None, dstport: int) -> Vxlan:
    """A VXLAN device `name` (VNI `vni`, unicast to `remote` over UDP `dstport`, from
    `local`), with the kernel's own learning off (vale learns), its MTU the most the
    route to `remote` carries, up. OSError when no route reaches `remote` (nothing made)."""
    check_port_name(name)
    return _in_worker(_create_vxlan, name, vni, ipaddress.ip_address(remote),
                      None if local is None else ipaddress.ip_address(local), dstport)


def _create_vxlan(name: str, vni: int, remote: Any, local: Any, dstport: int) -> Vxlan:
    with IPRoute() as ipr:
        try:
            route = ipr.route("get", dst=str(remote))[0]
        except NetlinkError as exc:
            raise OSError(exc.code, f"no route to {remote} ({os.strerror(exc.code)})") from None
        oif = route.get_attr("RTA_OIF")
        under = ipr.link("get", index=oif)[0]
        under_name, under_mtu = under.get_attr("IFLA_IFNAME"), under.get_attr("IFLA_MTU")
        mtu = under_mtu - VXLAN_OVERHEAD[remote.version]
        spec: dict[str, Any] = {"ifname": name, "kind": "vxlan", "vxlan_id": vni,
                                "vxlan_port": dstport, "vxlan_learning": 0, "mtu": mtu}
        v6 = remote.version == 6
        spec["vxlan_group6" if v6 else "vxlan_group"] = str(remote)
        if local is not None:
            spec["vxlan_local6" if local.version == 6 else "vxlan_local"] = str(local)
        ipr.link("add", **spec)
        try:
            ipr.link("set", index=_index(ipr, name), state="up")
        except BaseException:
            ipr.link("del", index=_index(ipr, name))
            raise
    warning = None
    if mtu < SWITCH_MTU:
        warning = (f"{name}: the underlay ({under_name}, MTU {under_mtu}) carries frames of "
                   f"at most {mtu} bytes of payload through VXLAN; hosts that send "
                   f"{SWITCH_MTU} lose the larger frames: give them MTU {mtu}, or the "
                   f"underlay MTU {SWITCH_MTU + VXLAN_OVERHEAD[remote.version]}")
    return Vxlan(mtu, under_name, under_mtu, warning)


def veth_peer(name: str) -> int | None:
    """The interface index of the far end of veth `name`, when that end is in this
    namespace; None for an interface that is no veth, or whose peer is in another
    namespace (IFLA_LINK_NETNSID: its index there means nothing here). OSError when
    `name` is gone."""
    veth, elsewhere, peer = _in_worker(_veth, name)
    return peer if veth and not elsewhere and peer else None


def veth_peer_elsewhere(name: str) -> bool:
    """Whether `name` is a veth whose far end is in another namespace (where a BPF
    program may send frames straight in: bpf_redirect_peer). OSError when it is gone."""
    veth, elsewhere, _ = _in_worker(_veth, name)
    return veth and elsewhere


def _veth(name: str) -> tuple[bool, bool, int]:
    """(a veth?, its peer in another namespace?, the peer's index as the kernel gives it)."""
    with IPRoute() as ipr:
        link = ipr.link("get", index=_index(ipr, name))[0]
    info = link.get_attr("IFLA_LINKINFO")
    veth = info is not None and info.get_attr("IFLA_INFO_KIND") == "veth"
    elsewhere = link.get_attr("IFLA_LINK_NETNSID") is not None
    return veth, elsewhere, int(link.get_attr("IFLA_LINK") or 0)


TAP_MAX_MTU = 65521            # the most a TAP takes
ADDR_GEN_MODE_NONE = 1          # IN6_ADDR_GEN_MODE_NONE: no IPv6 link-local address


def make_upcall(name: str, like: int) -> int:
    """The kernel fast path's upcall device `name` for interface index `like`: a
    persistent TAP that nothing opens (made, or found as an earlier valed left it), with
    like's MAC (so the frames that are the host's there are the host's here too), no IPv6
    address (it has nothing of its own to send), the largest MTU a TAP takes (a redirect
    into it checks it), up. Returns its index; OSError(EEXIST) when an interface of that
    name is something else."""
    return int(_in_worker(_make_upcall, name, like))


def _lookup(name: str) -> list[int]:
    """[index of `name`], or [] when there is none."""
    with contextlib.suppress(OSError):
        return [socket.if_nametoindex(name)]
    return []


def _make_upcall(name: str, like: int) -> int:
    with IPRoute() as ipr:
        found = _lookup(name)
        if found:
            info = ipr.link("get", index=found[0])[0].get_attr("IFLA_LINKINFO")
            if info is None or info.get_attr("IFLA_INFO_KIND") != "tun":
                raise OSError(errno.EEXIST, f"interface {name} is in the way of the fast "
                                            f"path's upcall device")
            index = int(found[0])
        else:
            make_persistent_tap(name)
            index = _index(ipr, name)
            ipr.link("set", index=index, IFLA_AF_SPEC={"attrs": [
                ["AF_INET6", {"attrs": [["IFLA_INET6_ADDR_GEN_MODE", ADDR_GEN_MODE_NONE]]}]]})
        mac = ipr.link("get", index=like)[0].get_attr("IFLA_ADDRESS")
        ipr.link("set", index=index, address=mac, mtu=TAP_MAX_MTU, state="up")
        return index


def delete_link(name: str) -> None:
    """Delete interface `name` (and a veth's peer with it); gone already is fine."""
    _in_worker(_delete, name)


def _delete(name: str) -> None:
    with IPRoute() as ipr:
        found = _lookup(name)
        if found:
            ipr.link("del", index=found[0])


@dataclass(frozen=True)
class LinkEvent:
    kind: str           # "new" (appeared or changed) or "del"
    ifname: str
    index: int
    mtu: int | None
    up: bool            # administratively up (IFF_UP)


class LinkWatcher:
    """Calls on_event(LinkEvent) for every link appearing, changing or vanishing."""

    def __init__(self, loop: asyncio.AbstractEventLoop,
                 on_event: Callable[[LinkEvent], None]) -> None:
        self._loop = loop
        self._on_event = on_event
        self._marshal = MarshalRtnl()
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK
                                   | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self._sock.bind((0, RTMGRP_LINK))
        loop.add_reader(self._sock.fileno(), self._readable)

    def close(self) -> None:
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()

    def _readable(self) -> None:
        while True:
            try:
                data = self._sock.recv(1 << 16)
            except BlockingIOError:
                return
            except OSError as exc:          # ENOBUFS: events were lost; housekeeping catches up
                log.warning("netlink watch: %s", exc)
                return
            for msg in self._marshal.parse(data):
                event = msg.get("event")
                if event not in ("RTM_NEWLINK", "RTM_DELLINK"):
                    continue
                name = msg.get_attr("IFLA_IFNAME")
                if not name:
                    continue
                try:
                    self._on_event(LinkEvent("new" if event == "RTM_NEWLINK" else "del", name,
                                             msg["index"], msg.get_attr("IFLA_MTU"),
                                             bool(msg["flags"] & IFF_UP)))
                except Exception:
                    log.exception("handling %s for %s failed", event, name)
