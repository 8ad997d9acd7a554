"""The kernel fast path of one switch: known unicast between its interface ports forwarded
by a BPF program at tc ingress (vale/bpf/fastpath.bpf.c, loaded by vale._bpf), the rest
going up to vale's packet sockets, which listen on each port's upcall device instead of
the port's interface (a socket there would see every redirected frame too).

vale stays the switch: this module keeps the program's maps a copy of the part of vale's
MAC table that sits on fast-path ports (from the core's journal of changes), tells the
program which ports may take it (none of vale's rules that the program does not apply
is in force on them: Switch asks the core, kernel_path_blockers), hands the last-seen
times the program records back to the core's ageing, and adds the program's counters to
vale's. A frame the program is not sure of goes up, so vale decides it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

try:
    from vale import _bpf
    UNAVAILABLE = ""
except ImportError as exc:                   # built with VALE_BPF=0, or no libbpf here
    _bpf = None                              # type: ignore[assignment]
    UNAVAILABLE = f"vale was built without it ({exc})"

from vale import netlink

log = logging.getLogger("vale.kernel")

MODES = ("auto", "tcx", "clsact")           # how the program is attached at tc ingress
# The upcall devices' program goes in a clsact filter whatever the port's mode: the device
# is vale's own (no other tc user to share it with), and a filter attaches without the RCU
# grace period a tcx link costs (15 ms, a quarter of what attaching a port took).
UPCALL_MODE = "clsact"
REFRESH_S = 1.0                             # last-seen times go to the ageing this often,
REFRESH_MAX_S = 10.0                        # or a tenth of the ageing time, up to this
RESYNC_S = 1.0                              # a lost journal is made good at most this often
VLAN_SHIFT = 48                             # table keys above it are tagged: slow path
UPCALL_PREFIX = "vale-up"                   # + the port interface's index in hex


def upcall_name(ifindex: int) -> str:
    """The name of the upcall device of the interface with index ifindex."""
    return f"{UPCALL_PREFIX}{ifindex:x}"


@dataclass
class _Port:
    ifindex: int
    mtu: int
    peer: bool                              # a veth whose peer is in another namespace
    mode: str                               # tcx or clsact, as attached
    upcall: int                             # the upcall device's index
    flags: int = 0                          # _bpf.PORT_RX | PORT_TX while nothing blocks it


class KernelPath:
    """The fast path of the switch `switch`. OSError when it cannot be loaded (no BPF
    permission, an old kernel, a verifier refusal): the switch then goes without."""

    def __init__(self, switch: str, *, macs: int) -> None:
        if _bpf is None:
            raise OSError(UNAVAILABLE)
        pins, macs = _bpf.pin_dir(switch), min(macs, _bpf.MAX_MACS)
        _bpf.ensure_bpffs()
        os.makedirs(pins, mode=0o700, exist_ok=True)
        lock = _lock(pins)
        if lock is None:
            raise OSError(errno.EBUSY, f"another valed runs a switch {switch} with its fast "
                                       f"path ({pins})")
        try:
            self._dp = _load(switch, pins, macs)
        except BaseException:
            with contextlib.suppress(OSError):
                os.rmdir(pins)              # made here and empty: nothing is left behind
            os.close(lock)
            raise
        self._lock = lock
        self._ports: dict[int, _Port] = {}
        # What an earlier valed left pinned (killed, or crashed): its ports by ifindex and
        # their MACs, adopted by the ports attached again, removed for the rest.
        self._inherited = self._dp.ports()
        self._inherited_macs = self._dp.sources() if self._inherited else {}
        self._adopted: dict[int, list[int]] = {}
        self._refreshed = time.monotonic_ns()
        self._next_resync = 0.0
        self._full = 0                      # entries the maps had no room for
        self.resync_pending = True

    # -- ports --------------------------------------------------------------------------

    def prepare(self, ifindex: int, mode: str = "auto") -> tuple[str, int]:
        """The kernel side of a port to come: the program attached to the interface, and
        its upcall device made, so the port's packet socket can be opened there at once
        (not moved there later: a grace period saved). (attach mode, upcall device's
        index), for add_port; unprepare() takes it away again."""
        if mode not in MODES:
            raise ValueError(f"fastpath mode takes {', '.join(MODES)}, not {mode!r}")
        attached = self._dp.attach(ifindex, mode)
        try:
            return attached, self._make_upcall(ifindex)
        except BaseException:
            self._dp.detach(ifindex)
            raise

    def unprepare(self, ifindex: int, prepared: tuple[str, int]) -> None:
        self._remove_upcall(ifindex, prepared[1])
        self._dp.detach(ifindex)

    def add_port(self, index: int, ifindex: int, *, mtu: int, peer: bool,
                 mode: str = "auto", prepared: tuple[str, int] | None = None) -> int:
        """Attach the program to the interface, and make its upcall device (or take what
        prepare() made): from then on every frame the program does not forward goes up
        there. The caller moves vale's packet socket of the port onto that device (the
        index returned) unless it was opened there, and the port takes the fast path
        once flags() allows it. peer: a veth whose far end is in another namespace
        (frames go straight in there)."""
        attached, upcall = prepared or self.prepare(ifindex, mode)
        try:
            self._dp.clear_stats(index)
            self._dp.set_port(ifindex, index, 0, upcall)
        except BaseException:
            self.unprepare(ifindex, (attached, upcall))
            raise
        self._ports[index] = _Port(ifindex, mtu, peer, attached, upcall)
        self.resync_pending = True
        earlier = self._inherited.pop(ifindex, None)
        if earlier is not None:
            self._adopted[index] = [key for key, (port, _) in self._inherited_macs.items()
                                    if port == earlier[0]]
        return upcall

    def _make_upcall(self, ifindex: int) -> int:
        """The interface's upcall device, made (or found) and with its program."""
        name = upcall_name(ifindex)
        upcall = netlink.make_upcall(name, ifindex)
        try:
            self._dp.attach(upcall, UPCALL_MODE, upcall=True)
        except BaseException:
            netlink.delete_link(name)
            raise
        return upcall

    def _remove_upcall(self, ifindex: int, upcall: int) -> None:
        """Take the upcall device of interface ifindex away, if it is still there."""
        self._dp.detach(upcall)
        _remove_upcall_device(ifindex, upcall)

    @property
    def sources_fd(self) -> int:
        """The map of known sources, for the core to remove a moved MAC from at once."""
        return self._dp.sources_fd

    def adopted(self, index: int) -> list[int]:
        """The MACs an earlier valed's fast path knew on this port's interface (once): for
        the core to learn, so known unicast goes on flowing across a restart."""
        return self._adopted.pop(index, [])

    def drop_inherited(self) -> int:
        """Take away what an earlier valed attached to interfaces no port has taken again
        (their entries go with the next full read of the table); how many."""
        gone = list(self._inherited.items())
        for ifindex, (_, _, upcall) in gone:
            self._dp.delete_port(ifindex)
            self._dp.detach(ifindex)
            self._remove_upcall(ifindex, upcall)
        self._inherited.clear()
        self._inherited_macs.clear()
        self.resync_pending = True
        return len(gone)

    def upcall(self, index: int) -> int | None:
        """The index of the port's upcall device, where its packet socket belongs."""
        port = self._ports.get(index)
        return port.upcall if port else None

    def hold(self, index: int) -> int | None:
        """First step of taking the port off: no frame takes the fast path from or to
        it (all go up). Returns its interface's index, for the caller to move the
        packet socket back onto, before remove_port()."""
        self.flags(index, False)
        port = self._ports.get(index)
        return port.ifindex if port else None

    def remove_port(self, index: int) -> None:
        """Take the port off the fast path: its entries first, so no frame is redirected
        to it or taken from it meanwhile; then the program and the upcall device. Its
        socket should be back on its interface (hold())."""
        port = self._ports.pop(index, None)
        if port is None:
            return
        try:
            self._dp.delete_port(port.ifindex)
            self._dp.forget_port(index)
            self._dp.detach(port.ifindex)
        except OSError as exc:              # the interface went, and its program with it
            log.warning("port %d: the fast path went with its interface: %s", index, exc)
        self._remove_upcall(port.ifindex, port.upcall)

    def reattach(self, indexes: Iterable[int]) -> dict[int, int]:
        """Of these ports: attach the program again where it went while the port kept its
        entry (a tc filter or qdisc removed by hand), and make an upcall device that went
        again. Returns {port: upcall device} of the ports whose upcall device is new: the
        caller moves their sockets onto it."""
        remade = {}
        for index in indexes:
            port = self._ports.get(index)
            if port is None:
                continue
            if self._dp.attached(port.ifindex) is None:
                log.warning("port %d: its fast path program was taken away (by hand?): "
                            "attached again", index)
                port.mode = self._dp.attach(port.ifindex, port.mode)
            if _index_of(upcall_name(port.ifindex)) != port.upcall:
                log.warning("port %d: its upcall device %s went (by hand?): made again",
                            index, upcall_name(port.ifindex))
                port.upcall = remade[index] = self._make_upcall(port.ifindex)
                self._dp.set_port(port.ifindex, index, port.flags, port.upcall)
            elif self._dp.attached(port.upcall) is None:
                self._dp.attach(port.upcall, UPCALL_MODE, upcall=True)
        return remade

    def set_mtu(self, index: int, mtu: int) -> None:
        if index in self._ports and self._ports[index].mtu != mtu:
            self._ports[index].mtu = mtu
            self.resync_pending = True       # every destination entry of it carries it

    def ports(self) -> list[int]:
        return list(self._ports)

    def mode(self, index: int) -> str | None:
        port = self._ports.get(index)
        return port.mode if port else None

    def flags(self, index: int, open_: bool) -> None:
        """Let the port's frames take the fast path (and frames be redirected to it), or
        not: open_ False while one of vale's rules that the program does not apply is in
        force on it."""
        port = self._ports.get(index)
        flags = (_bpf.PORT_RX | _bpf.PORT_TX) if open_ else 0
        if port is not None and port.flags != flags:
            self._dp.set_port(port.ifindex, index, flags, port.upcall)
            port.flags = flags

    # -- the MAC table's copy ----------------------------------------------------------

    def apply(self, core: Any) -> int:
        """Bring the maps up to date with the core's journal; when it lost changes (or a
        port has just come), read the whole table anew too, at most every RESYNC_S.
        Returns how many entries were written."""
        if not core.fdb_changed and not self.resync_pending:
            return 0
        lost, changes = core.fdb_changes()
        for key, index in changes:
            self._put(key, index)
        self.resync_pending |= lost
        if self.resync_pending and time.monotonic() >= self._next_resync:
            return len(changes) + self._resync(core)
        return len(changes)

    def _put(self, key: int, index: int | None) -> None:
        port = self._ports.get(index) if index is not None else None
        if port is None or key >> VLAN_SHIFT:
            self._dp.delete_src(key)
            self._dp.delete_dst(key)
            return
        try:
            self._dp.set_src(key, index)
            self._dp.set_dst(key, index, port.ifindex, port.mtu,
                             _bpf.DST_PEER if port.peer else 0)
        except OSError:                     # a full map: this MAC keeps the slow path
            self._full += 1
            self._dp.delete_src(key)
            self._dp.delete_dst(key)

    def _resync(self, core: Any) -> int:
        self.resync_pending = False
        self._next_resync = time.monotonic() + RESYNC_S
        wanted = {key: index for key, index, _static, _age in core.fdb_entries()
                  if index in self._ports and not key >> VLAN_SHIFT}
        sources = self._dp.sources()
        for key in set(sources) | set(self._dp.destinations()):
            if key not in wanted:
                self._dp.delete_src(key)
                self._dp.delete_dst(key)
        self._full = 0
        for key, index in wanted.items():
            self._put(key, index)
        return len(wanted)

    def refresh(self, core: Any) -> int:
        """Hand the core's ageing the sources the program has seen since the last call,
        so MACs whose frames never reach vale are not forgotten; how many."""
        since, self._refreshed = self._refreshed, time.monotonic_ns()
        seen: dict[int, list[int]] = {}
        for key, (index, last_seen) in self._dp.sources().items():
            if last_seen >= since:
                seen.setdefault(index, []).append(key)
        return sum(core.fdb_seen(index, keys) for index, keys in seen.items()
                   if index in self._ports)

    # -- counters ----------------------------------------------------------------------

    def counters(self) -> dict[int, dict[str, Any]]:
        """{port index: rx/tx packets and bytes, drops by reason} the program counted."""
        return {index: self._dp.port_stats(index) for index in self._ports}

    @property
    def full(self) -> int:
        """Table entries the maps had no room for when last written (they take the slow
        path)."""
        return self._full

    def passed(self) -> dict[str, int]:
        return self._dp.passed()

    def close(self, *, remove: bool) -> None:
        """remove: take every attachment and pinned map away (a clean stop); else leave
        them, so known unicast keeps flowing until valed is back."""
        for index in list(self._ports) if remove else []:
            self.remove_port(index)
        if remove:
            self._dp.remove()
        else:
            self._dp.close()
        os.close(self._lock)


def _lock(pins: str) -> int | None:
    """An fd holding the lock of a switch's pin directory (flock: a live valed holds it
    while it runs the switch's fast path; the kernel lets go when it dies), or None when
    another process holds it (or the directory went meanwhile)."""
    try:
        fd = os.open(pins, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _load(switch: str, pins: str, macs: int) -> Any:
    """The switch's Datapath, from its pins; pins an earlier valed laid out otherwise (or
    sized otherwise) are taken away first: its programs stop, and this one's take over
    once the ports are attached."""
    assert _bpf is not None
    try:
        return _bpf.Datapath(pins, macs=macs)
    except OSError as exc:
        # libbpf refuses pinned maps of another layout with EINVAL; anything else (no
        # object, no permission) is this valed's to report.
        if exc.errno != errno.EINVAL or not os.listdir(pins):
            raise
        log.warning("%s: the fast path an earlier valed left pinned in %s does not fit "
                    "(%s): taken away", switch, pins, exc)
    for ifindex in _bpf.remove_stale(pins):
        _remove_upcall_device(ifindex)
    os.makedirs(pins, mode=0o700, exist_ok=True)
    return _bpf.Datapath(pins, macs=macs)


def remove_left_behind(keep: set[str]) -> list[str]:
    """Remove the fast paths an earlier valed left pinned for switches not in `keep`
    (killed before it could take them away): their programs stop forwarding. Returns the
    switches whose fast path went."""
    if _bpf is None or not os.path.isdir(_bpf.PIN_ROOT):
        return []
    gone = []
    for switch in sorted(os.listdir(_bpf.PIN_ROOT)):
        lock = _lock(_bpf.pin_dir(switch)) if switch not in keep else None
        if lock is None:                    # kept, or another valed's
            continue
        try:
            try:
                dp = _bpf.Datapath(_bpf.pin_dir(switch))
            except OSError:                 # laid out otherwise: by an older valed
                for ifindex in _bpf.remove_stale(_bpf.pin_dir(switch)):
                    _remove_upcall_device(ifindex)
            else:
                upcalls = {ifindex: entry[2] for ifindex, entry in dp.ports().items()}
                dp.remove()
                for ifindex, upcall in upcalls.items():
                    _remove_upcall_device(ifindex, upcall)
        finally:
            os.close(lock)
        gone.append(switch)
    return gone


def _index_of(name: str) -> int | None:
    """The index of interface `name` here, or None: one ioctl, cheap enough to ask every
    second for every port."""
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return None


def _remove_upcall_device(ifindex: int, upcall: int | None = None) -> None:
    """Delete the upcall device of the interface with index ifindex, if there is one (and
    it has index upcall, when given)."""
    name = upcall_name(ifindex)
    if upcall is None or _index_of(name) == upcall:
        netlink.delete_link(name)
