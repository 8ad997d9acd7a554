"""A learning switch with named ports, on top of the Cython core (vale._fastpath).

The core works with port indexes and 48-bit MAC keys; this class owns the names, the
parsing of what users type and the shape of what they get back. Any object with the
methods of vale.core.CoreProtocol can serve as the core for in-memory ports: the tests run
the same suite against the Cython core and a pure-Python reference model. Nothing else
calls the core.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from vale._fastpath import DROP_REASONS, FRAME_SLACK, KEY_MAC_MASK, SwitchCore
from vale.kernel import REFRESH_MAX_S, REFRESH_S, KernelPath
from vale.names import check_port_name, check_switch_name, key_to_mac, mac_to_key
from vale.netlink import veth_peer_elsewhere
from vale.ports import interface_index, interface_mtu
from vale.settings import AUTO_CPU, BY_NAME, core_args, merge_vlan, names_from_core, vlan_for_core

__all__ = ["AUTO_CPU", "DROP_REASONS", "FRAME_SLACK", "FdbEntry", "MemifRings", "Switch",
           "VhostRings"]

_MEMORY_RINGS = frozenset({"rx_slots", "tx_slots", "slot_size"})   # add_port's own
_STORM = ("storm_broadcast", "storm_multicast", "storm_unknown")    # the core takes one tuple
_GUARDS = ("sticky", "bpdu")                # set_port's alone: the constructors lack them
_KERNEL_DROPS = {"own_port": "own_port", "mtu": "too_big"}     # the program's: vale's names
FLAGS_S = 0.25                              # ports' fast-path flags follow vale's rules this often
log = logging.getLogger("vale.switch")
NO_VLAN = ("none", 0)                       # a port's (vlan, native) until set
_auto_placed: Counter[int] = Counter()  # CPU -> forwarding threads placed there by AUTO_CPU


@dataclass(frozen=True, slots=True)
class FdbEntry:
    mac: str
    vlan: int           # 0: the untagged frames of ports without a VLAN mode
    port: str
    static: bool
    age: float          # seconds since a frame last came from this MAC


def fdb_key(mac: str, vlan: int = 0) -> int:
    return mac_to_key(mac) | vlan << 48


class PortRings:
    """A shared-memory port's handle on the core, for its protocol: nothing reaches the
    port's index once it is detached."""

    def __init__(self, core: SwitchCore, index: int) -> None:
        self._core: SwitchCore | None = core
        self._index = index

    def _live(self) -> SwitchCore:
        if self._core is None:
            raise ValueError("the port is gone")
        return self._core

    def detach(self) -> None:
        """The port is being removed: nothing more reaches its index (a new port may
        take it)."""
        self._core = None


class VhostRings(PortRings):
    """A vhost-user port's memory and rings in the core, for vale.vhost (its Rings)."""

    def features(self, features: int, **decoded: bool) -> None:
        self._live().vhost_features(self._index, features, **decoded)

    def memory(self, regions: list[tuple[int, int, int, int, int]]) -> None:
        self._live().vhost_memory(self._index, regions)

    def ring(self, queue: int, **setup: Any) -> bool:
        return bool(self._live().vhost_ring(self._index, queue, **setup))

    def stop(self, queue: int) -> int:
        return int(self._live().vhost_stop(self._index, queue))

    def reset(self) -> None:
        if self._core is not None:
            self._core.vhost_reset(self._index)


class MemifRings(PortRings):
    """A memif port's memory and rings in the core, for vale.memif (its Rings)."""

    def connect(self, regions: list[tuple[int, int]],
                rings: list[tuple[bool, int, int, int, int]]) -> None:
        self._live().memif_connect(self._index, regions, rings)

    def disconnect(self) -> None:
        if self._core is not None:
            self._core.memif_disconnect(self._index)

    def refused(self) -> None:
        if self._core is not None:
            self._core.memif_refused(self._index)

    def stopped(self) -> str | None:
        return None if self._core is None else self._core.memif_stopped(self._index)


class Switch:
    """One switch (vale0, vale1, ...) and its ports, by name."""

    __slots__ = (
        "_auto_cpu",
        "_capture_queue_lost",
        "_core",
        "_cpus",
        "_fastpath",
        "_ifindex",
        "_index",
        "_kernel",
        "_kernel_blockers",
        "_kernel_digest",
        "_kernel_dirty",
        "_kernel_kept",
        "_kernel_why",
        "_loop_probe",
        "_names",
        "_next_flags",
        "_next_probe",
        "_next_refresh",
        "_probe_rx",
        "_thread",
        "_vlan",
        "name",
    )

    def __init__(self, name: str = "vale0", *, manual_clock: bool = False,
                 core_class: type = SwitchCore, **settings: Any) -> None:
        """Settings: the switch settings of vale.settings, by name; the others start at
        their defaults (the table's, which the core's own defaults match)."""
        self.name = check_switch_name(name)
        core_args("switch", settings)                       # names known?
        capacity = settings.pop("fdb_capacity", BY_NAME["fdb_capacity"].default)
        self._core = core_class(capacity=capacity, manual_clock=manual_clock)
        self._index: dict[str, int] = {}
        self._names: dict[int, str] = {}
        self._ifindex: dict[str, int] = {}     # interface ports: name -> ifindex at attach
        self._vlan: dict[int, tuple[str, int]] = {}     # port index -> (vlan, native) as set
        self._thread: threading.Thread | None = None
        self._cpus: list[int] | str = AUTO_CPU      # or the CPUs; [] is every CPU
        self._auto_cpu: int | None = None           # the CPU AUTO_CPU chose, while running
        self._loop_probe: float = BY_NAME["loop_probe"].default
        self._next_probe = 0.0                      # time.monotonic() of the next probes
        self._fastpath: dict[int | None, str] = {None: BY_NAME["fastpath"].default}  # None:
        self._kernel: KernelPath | None = None      # the switch's; port index: the port's
        self._kernel_why: dict[int | None, str] = {}    # why not, for the switch or a port
        self._kernel_dirty = False                  # flags to follow vale's rules at once
        self._kernel_blockers: dict[int, list[str]] = {}    # as the flags last followed
        self._kernel_kept: dict[int, dict[str, Any]] = {}   # counts of fast paths gone
        self._next_flags = self._next_refresh = 0.0
        self._kernel_digest = 0
        self._probe_rx = 0
        self._capture_queue_lost: dict[int, int] = {}   # port index -> copies lost in valed
        if settings:
            self.configure(**settings)

    # -- ports ---------------------------------------------------------------------------

    def add_port(self, name: str, **settings: Any) -> int:
        """Add a port with in-memory rings; settings: rx_slots, tx_slots, slot_size and
        the port settings. Returns its index."""
        check_port_name(name)
        if name in self._index:
            raise ValueError(f"{self.name}:{name} already exists")
        rings = {key: settings.pop(key) for key in _MEMORY_RINGS & set(settings)}
        index = self._core.add_port(**rings, **core_args("port", settings))
        return self._added(name, index, settings)

    def _added(self, name: str, index: int, settings: dict[str, Any]) -> int:
        """Name a port the core just made, and give it the settings its constructor does
        not take (VLANs, storm control); one the core refuses takes the port away again."""
        try:
            self._apply(index, settings)
        except BaseException:
            self._core.remove_port(index)
            raise
        self._index[name] = index
        self._names[index] = name
        return index

    def _apply(self, index: int, settings: dict[str, Any], **core: Any) -> None:
        """One set_port: `core` (the core's own keywords) and the VLAN, storm and guard
        settings given, each pair merged with what the port has (vale.settings.merge_vlan;
        storm rates not given stay as they are)."""
        vlan = None
        if "vlan" in settings or "native" in settings:
            vlan = merge_vlan(self._vlan.get(index, NO_VLAN), settings)
            core.update(vlan=vlan_for_core(vlan[0]), native=vlan[1])
        if "allowed_macs" in settings:
            core["allowed_macs"] = [mac_to_key(mac) for mac in settings["allowed_macs"]]
        core.update({key: settings[key] for key in _GUARDS if key in settings})
        if any(key in settings for key in _STORM):
            now = self._core.port_info(index)["storm"]
            core["storm"] = tuple(settings.get(key, rate)
                                  for key, rate in zip(_STORM, now, strict=True))
        if core:
            self._core.set_port(index, **core)
        if vlan is not None:
            self._vlan[index] = vlan
        if "fastpath" in settings:
            self._fastpath[index] = settings["fastpath"]
        self._kernel_dirty = True

    def attach(self, ifname: str, **settings: Any) -> int:
        """Attach a Linux interface as port `ifname`; settings: the port settings and
        rx_frames. Raises NoSuchInterface, ValueError, OSError."""
        check_port_name(ifname)
        if ifname in self._index:
            raise ValueError(f"{self.name}:{ifname} already exists")
        args = core_args("attach", settings)
        ifindex = interface_index(ifname)
        prepared = self._kernel_prepare(ifindex, settings.get("fastpath", "on"))
        try:
            index = self._core.add_packet_port(ifindex, mtu=interface_mtu(ifname),
                                               receive_on=prepared[1] if prepared else 0,
                                               **args)
        except BaseException:
            if prepared is not None and self._kernel is not None:
                self._kernel.unprepare(ifindex, prepared)
            raise
        self._added(ifname, index, settings)
        self._ifindex[ifname] = ifindex
        self._kernel_follow({index: prepared} if prepared else None)
        return index

    def attach_tap(self, name: str, fd: int, **settings: Any) -> int:
        """Take an open TAP fd (vale.tap.open_tap) as port `name`: on success the switch
        holds it (the core closes it when the port goes); when this raises, the fd is
        still the caller's. Settings: the port settings (a TAP has no ring to size)."""
        check_port_name(name)
        if name in self._index:
            raise ValueError(f"{self.name}:{name} already exists")
        own = os.dup(fd)        # the core's copy: a port taken away again closes it
        try:
            index = self._core.add_tap_port(own, **core_args("port", settings))
        except BaseException:
            os.close(own)
            raise
        self._added(name, index, settings)
        os.close(fd)
        return index

    def add_vhost_port(self, name: str, **settings: Any) -> int:
        """Add a vhost-user port whose rings the protocol sets up (vhost_rings); settings:
        the port settings (offloads follow what the guest takes)."""
        check_port_name(name)
        if name in self._index:
            raise ValueError(f"{self.name}:{name} already exists")
        args = core_args("port", settings)
        args.pop("vnet", None)
        index = self._core.add_vhost_port(**args)
        return self._added(name, index, settings)

    def vhost_rings(self, name: str) -> VhostRings:
        """What the vhost-user protocol changes in the core for port `name`."""
        return VhostRings(self._core, self.port_index(name))

    def add_memif_port(self, name: str, **settings: Any) -> int:
        """Add a memif port whose rings a program brings (memif_rings); settings: the port
        settings."""
        check_port_name(name)
        if name in self._index:
            raise ValueError(f"{self.name}:{name} already exists")
        args = core_args("port", settings)
        args.pop("vnet", None)
        index = self._core.add_memif_port(**args)
        return self._added(name, index, settings)

    def memif_rings(self, name: str) -> MemifRings:
        """What the memif protocol changes in the core for port `name`."""
        return MemifRings(self._core, self.port_index(name))

    def ifindex(self, name: str) -> int | None:
        """The interface index a port was attached with (None: an in-memory or TAP port,
        whose device may live in another namespace)."""
        return self._ifindex.get(name)

    def remove_port(self, name: str) -> None:
        index = self.port_index(name)
        if self._kernel is not None:
            self._kernel.remove_port(index)     # first: its upcall device goes with it
        self._fastpath.pop(index, None)
        self._kernel_why.pop(index, None)
        self._kernel_kept.pop(index, None)
        self._capture_queue_lost.pop(index, None)
        self._core.remove_port(index)
        if self._kernel is not None and not self._kernel.ports():
            self.close_kernel()
        self._vlan.pop(index, None)
        del self._index[name]
        del self._names[index]
        self._ifindex.pop(name, None)

    def port_index(self, name: str) -> int:
        try:
            return self._index[name]
        except (KeyError, TypeError):
            raise ValueError(f"no port {name!r} on {self.name}") from None

    def ports(self) -> list[str]:
        return sorted(self._index, key=self._index.__getitem__)

    def set_port(self, name: str, **settings: Any) -> None:
        """Change port settings (vale.settings, scope port)."""
        self._apply(self.port_index(name), settings, **core_args("port", settings))
        if "fastpath" in settings:
            self._kernel_follow()

    def port_info(self, name: str) -> dict[str, Any]:
        """Geometry, state and settings (by the settings' names) of a port."""
        info = names_from_core(self._core.port_info(self.port_index(name)))
        info["name"] = name
        info["vlan"], info["native"] = self._vlan.get(info["index"], NO_VLAN)
        info.update(zip(_STORM, info.pop("storm"), strict=True))
        info["allowed_macs"] = [key_to_mac(key) for key in info["allowed_macs"]]
        info["sticky_macs"] = [key_to_mac(key) for key in info["sticky_macs"]]
        del info["vlans"]
        info["fastpath"] = self._fastpath.get(info["index"], BY_NAME["fastpath"].default)
        info["fastpath_state"] = self._kernel_state(info["index"], name)
        return info

    def port_link(self, name: str, *, mtu: int | None = None, up: bool | None = None) -> None:
        """Follow an interface port's link: its new MTU; up=True puts a port that was
        put down back into forwarding, up=False takes it out (its link went down)."""
        self._core.set_port(self.port_index(name), mtu=mtu, up=up)
        if mtu is not None and self._kernel is not None:
            self._kernel.set_mtu(self.port_index(name), mtu)
        self._kernel_dirty = True

    def set_mirror(self, source: str, *, rx_to: str | None = None,
                   tx_to: str | None = None) -> None:
        """Copy what port `source` receives to port rx_to, what it sends to tx_to (None: no
        mirror). The caller rules out loops."""
        self._core.set_mirror(self.port_index(source),
                              rx_to=None if rx_to is None else self.port_index(rx_to),
                              tx_to=None if tx_to is None else self.port_index(tx_to))
        self._kernel_dirty = True

    # -- captures ------------------------------------------------------------------------

    def set_capture(self, port: str, *, rx: bool, tx: bool) -> None:
        """Copy the port's received (rx) and sent (tx) frames to the capture ring."""
        self._core.set_capture(self.port_index(port), rx=rx, tx=tx)
        self._kernel_dirty = True

    def capture_lost(self, port: str) -> tuple[int, int]:
        """Copies the capture ring had no room for, (received, sent), since the port came."""
        return self._core.capture_lost(self.port_index(port))

    def capture_queue_lost(self, port: str) -> None:
        """Count a copy of the port's frames that a capture client had no room for in
        valed (its queue full: --capture-client-bytes, --capture-total-bytes); stats()
        adds these to what the capture ring lost, as capture_lost."""
        index = self.port_index(port)
        self._capture_queue_lost[index] = self._capture_queue_lost.get(index, 0) + 1

    def capture_drain(self) -> list[tuple[str, str, int, int, bytes]]:
        """Captured frames, oldest first: (port, 'rx' or 'tx', CLOCK_REALTIME ns, original
        length, the bytes kept); frames of a port gone meanwhile are left out."""
        return [(self._names[index], direction, stamp, length, data)
                for index, direction, stamp, length, data in self._core.capture_drain()
                if index in self._names]

    # -- frames --------------------------------------------------------------------------

    def inject(self, port: str, frames: Iterable[bytes]) -> int:
        return self._core.inject(self.port_index(port), frames)

    def drain(self, port: str, limit: int | None = None) -> list[bytes]:
        return self._core.drain(self.port_index(port), limit)

    def forward(self, port: str) -> int:
        return self._core.forward(self.port_index(port))

    def forward_all(self) -> int:
        return self._core.forward_all()

    # -- the MAC table -------------------------------------------------------------------

    def fdb_show(self, port: str | None = None, vlan: int | None = None) -> list[FdbEntry]:
        """The entries (of one port, of one VLAN), by VLAN then MAC."""
        return sorted((e for page in self.fdb_pages(port, vlan) for e in page),
                      key=lambda e: (e.vlan, e.mac))

    def fdb_pages(self, port: str | None = None,
                  vlan: int | None = None) -> Iterator[list[FdbEntry]]:
        """The entries (of one port, of one VLAN) in table order, a page for each of the
        core's chunks: between two pages the forwarding thread has the table, and a
        caller may serve others (a million entries are 500 pages)."""
        only = None if port is None else self.port_index(port)
        start: int | None = 0
        while start is not None:
            chunk, start = self._core.fdb_chunk(start)
            yield [FdbEntry(key_to_mac(key & KEY_MAC_MASK), key >> 48, self._names[index],
                            static, age)
                   for key, index, static, age in chunk
                   if (only is None or index == only) and (vlan is None or key >> 48 == vlan)
                   and index in self._names]

    def fdb_lookup(self, mac: str, vlan: int = 0) -> str | None:
        index = self._core.fdb_lookup(fdb_key(mac, vlan))
        return None if index is None else self._names[index]

    def fdb_add(self, mac: str, port: str, vlan: int = 0) -> None:
        """A static entry: never ages, never moves."""
        self._core.fdb_add(fdb_key(mac, vlan), self.port_index(port))

    def fdb_del(self, mac: str, vlan: int = 0) -> None:
        if not self._core.fdb_del(fdb_key(mac, vlan)):
            where = f" in VLAN {vlan}" if vlan else ""
            raise ValueError(f"{mac} is not in the FDB of {self.name}{where}")

    def fdb_flush(self, port: str | None = None, *, statics: bool = False) -> int:
        return self._core.fdb_flush(None if port is None else self.port_index(port),
                                    statics=statics)

    # -- settings, clock, counters -------------------------------------------------------

    def configure(self, **settings: Any) -> None:
        """Change switch settings (vale.settings, scope switch); cpus is applied here,
        fdb_capacity by resizing, the rest by the core's configure."""
        args = core_args("switch", settings)
        # All or nothing: what can be refused is checked before anything changes (resizing
        # evicts entries; the core's configure checks all its values first).
        cpus = self._check_cpus(settings["cpus"]) if "cpus" in settings else False
        if "loop_probe" in settings:
            self._loop_probe = BY_NAME["loop_probe"].parse(settings["loop_probe"])
        fastpath = BY_NAME["fastpath"].parse(settings.get("fastpath", self._fastpath[None]))
        capacity = args.pop(BY_NAME["fdb_capacity"].core, None)
        if capacity is not None:
            self._core.check_capacity(capacity)
        if args:
            self._core.configure(**args)
        if capacity is not None:
            self._core.set_capacity(capacity)
        if cpus is not False:
            self._pin(cpus)
        if fastpath != self._fastpath[None]:
            self._fastpath[None] = fastpath
            self._kernel_follow()
        self._kernel_dirty = True
        self._next_refresh = 0.0            # at the next sync, and then as the ageing says

    def send_loop_probes(self, now: float) -> int:
        """When loop_probe seconds have passed since the last ones (now: time.monotonic()),
        the loop guard's probe out of every port that is up and not blocked; how many.
        Not while the switch has taken no frame since the last ones: a loop storms only
        once a frame goes round, and the first frame brings the probes at the next call
        (the daemon calls every 0.1 s). 1,024 idle ports cost no probes."""
        if not self._loop_probe or now < self._next_probe:
            return 0
        first = not self._next_probe            # a new switch: its first probes one
        rx = self._core.rx_frames
        if not first and rx == self._probe_rx:
            return 0
        self._probe_rx = rx
        self._next_probe = now + self._loop_probe   # interval from now
        if first:
            return 0
        return self._core.send_loop_probes()

    def set_time(self, seconds: float) -> None:
        self._core.set_time(seconds)

    @property
    def now(self) -> float:
        return self._core.now

    # -- the forwarding thread -----------------------------------------------------------

    def start(self) -> None:
        """Start the forwarding thread (interface ports are forwarded only while it runs)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._core.run, args=(f"vale:{self.name}",),
                                        name=f"vale-{self.name}", daemon=True)
        self._thread.start()
        self._apply_cpus(self._cpus)
        self._kernel_follow()

    def stop(self) -> None:
        if self._thread is None:
            return
        self.close_kernel()             # the kernel forwards only while the switch does
        self._core.stop()
        self._thread.join()
        self._thread = None
        self._release_auto_cpu()

    def set_cpus(self, cpus: Iterable[int] | str | None) -> None:
        """Pin the forwarding thread to these CPUs; AUTO_CPU: to one CPU valed chooses;
        None or empty: no pinning."""
        self._pin(self._check_cpus(cpus))

    @staticmethod
    def _check_cpus(cpus: Iterable[int] | str | None) -> list[int] | str:
        if cpus == AUTO_CPU:
            return AUTO_CPU
        if isinstance(cpus, str):
            raise ValueError(f"cpus takes CPU numbers or {AUTO_CPU!r}, not {cpus!r}")
        wanted = sorted(set(cpus)) if cpus else []
        available = os.sched_getaffinity(0)
        bad = [c for c in wanted if not isinstance(c, int) or c not in available]
        if bad:
            raise ValueError(f"no such CPU(s) for this process: {bad}; "
                             f"available: {sorted(available)}")
        return wanted

    def _pin(self, wanted: list[int] | str) -> None:
        if self._thread is not None:
            self._apply_cpus(wanted)        # first: a refusal changes nothing
        self._cpus = wanted

    def _apply_cpus(self, wanted: list[int] | str) -> None:
        """Pin the running thread (measured: docs/performance.md, *Spinning, pinning and
        batch size*); the placement count follows only once the kernel has taken it."""
        assert self._thread is not None and self._thread.native_id is not None
        if wanted == AUTO_CPU:
            cpu = self._choose_cpu() if self._auto_cpu is None else self._auto_cpu
            os.sched_setaffinity(self._thread.native_id, {cpu})
            if self._auto_cpu is None:
                self._auto_cpu = cpu
                _auto_placed[cpu] += 1
        else:
            os.sched_setaffinity(self._thread.native_id,
                                 set(wanted) or os.sched_getaffinity(0))
            self._release_auto_cpu()

    @staticmethod
    def _choose_cpu() -> int:
        """The CPU with the fewest threads placed there by AUTO_CPU (threads pinned by hand
        are the operator's to place), the highest of those: CPU 0 takes most of a machine's
        interrupts and housekeeping."""
        return min(os.sched_getaffinity(0), key=lambda cpu: (_auto_placed[cpu], -cpu))

    def _release_auto_cpu(self) -> None:
        if self._auto_cpu is not None:
            _auto_placed[self._auto_cpu] -= 1
            self._auto_cpu = None

    @property
    def cpus(self) -> list[int] | str:
        """AUTO_CPU, or the CPUs the thread is pinned to ([]: not pinned)."""
        return self._cpus

    @property
    def journal_fd(self) -> int:
        """Readable when the MAC table has changes for the kernel fast path: kernel_sync()."""
        return self._core.journal_fd

    @property
    def notify_fd(self) -> int:
        """Readable when the thread has put a port down; clear_notify() then port_info()."""
        return self._core.notify_fd

    def clear_notify(self) -> None:
        self._core.clear_notify()

    @property
    def loops(self) -> int:
        """Forwarding-loop rounds so far: a watchdog sees progress here."""
        return self._core.loops

    def poll_kernel_drops(self) -> list[str]:
        """Count the frames the kernel rings of interface ports had no room for; returns
        the ports whose receive ring was found stuck (made again, or rx_stuck)."""
        return [self._names[index] for index, dropped in self._core.poll_kernel_drops().items()
                if dropped < 0 and index in self._names]

    @property
    def thread_cpus(self) -> list[int] | None:
        """The CPUs the forwarding thread may run on now (None: no thread)."""
        if self._thread is None or self._thread.native_id is None:
            return None
        return sorted(os.sched_getaffinity(self._thread.native_id))

    def stats(self) -> dict[str, Any]:
        """Every counter, ports by name; what the kernel fast path forwarded is in them
        too, and on its own as fastpath_rx_packets and fastpath_tx_packets."""
        snap = self._core.snapshot()
        snap["settings"]["loop_probe"] = self._loop_probe
        snap["settings"]["fastpath"] = self._fastpath[None]
        live = self._kernel.counters() if self._kernel is not None else {}
        for index, counters in snap["ports"].items():
            fast = _kernel_sum(live.get(index), self._kernel_kept.get(index))
            counters["fastpath_rx_packets"] = fast["rx_packets"]
            counters["fastpath_tx_packets"] = fast["tx_packets"]
            counters["capture_lost"] += self._capture_queue_lost.get(index, 0)
            for key in ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes"):
                counters[key] += fast[key]
            for reason, count in fast["drops"].items():
                counters["drops"][_KERNEL_DROPS[reason]] += count
        snap["ports"] = {self._names[i]: counters for i, counters in snap["ports"].items()}
        snap["switch"] = self.name
        if self._kernel is not None:
            snap["fastpath"] = {"passed": self._kernel.passed(), "map_full": self._kernel.full}
        return snap

    # -- the kernel fast path (vale.kernel) ----------------------------------------------

    def _kernel_mode(self, index: int) -> str | None:
        """How the port's fast path should be attached (auto, tcx, clsact), or None."""
        if self._names[index] not in self._ifindex:
            return None
        return _fastpath_mode(self._fastpath[None], self._fastpath.get(index, "on"))

    def _kernel_prepare(self, ifindex: int, port_mode: str) -> tuple[str, int] | None:
        """For an interface about to be attached with the fast path on: its kernel side
        first (KernelPath.prepare), so the port's socket is opened on the upcall device.
        None when the port will not have it, or it cannot be had now (_kernel_follow
        then tries the usual way, and says why)."""
        mode = _fastpath_mode(self._fastpath[None], port_mode)
        if self._thread is None or mode is None:
            return None
        try:
            return self._kernel_open().prepare(ifindex, mode)
        except OSError:
            return None

    def _kernel_leave(self, index: int) -> None:
        """Take the port off the fast path, keeping what the kernel counted for it."""
        assert self._kernel is not None
        self._kernel_kept[index] = _kernel_sum(self._kernel_kept.get(index),
                                               self._kernel.counters().get(index))
        ifindex = self._kernel.hold(index)
        if ifindex is not None:
            try:
                self._core.port_receive_from(index, ifindex)
            except OSError as exc:          # the interface went: the port goes with it
                log.info("%s:%s: its socket stays where it was: %s", self.name,
                         self._names[index], exc)
        self._kernel.remove_port(index)

    def _kernel_follow(self, prepared: dict[int, tuple[str, int]] | None = None) -> None:
        """Attach or take away each interface port's fast path as the settings want
        (none while the forwarding thread is stopped); a fast path that cannot be had is
        logged, and info says why (the port goes on through its packet socket).
        prepared: {port: what KernelPath.prepare made for it}."""
        if self._thread is None:
            return
        for index, name in list(self._names.items()):
            want = self._kernel_mode(index)
            have = self._kernel.mode(index) if self._kernel is not None else None
            if have is not None and (want is None or want not in ("auto", have)):
                self._kernel_leave(index)
                have = None
            if want is not None and have is None:
                self._kernel_attach(index, name, want, (prepared or {}).get(index))
                if self._kernel is not None:
                    self._core.fdb_learn(index, self._kernel.adopted(index))
        if self._kernel is not None and not self._kernel.ports():
            self.close_kernel()
        self._core.journal_ports(self._kernel.ports() if self._kernel is not None else ())
        self._kernel_dirty = True

    def _kernel_open(self) -> KernelPath:
        """The switch's kernel fast path, loaded when it has none yet; OSError."""
        if self._kernel is None:
            try:
                self._kernel = KernelPath(self.name,
                                          macs=self._core.snapshot()["fdb"]["capacity"])
            except OSError as exc:
                self._kernel_why[None] = str(exc)
                raise
            self._kernel_why.pop(None, None)
            self._core.set_kernel_sources(self._kernel.sources_fd)
        return self._kernel

    def _kernel_attach(self, index: int, name: str, mode: str,
                       prepared: tuple[str, int] | None = None) -> None:
        self._kernel_why.pop(index, None)
        try:
            kernel = self._kernel_open()
            mtu = self._core.port_info(index)["max_frame"] - FRAME_SLACK
            upcall = kernel.add_port(index, self._ifindex[name], mtu=mtu,
                                     peer=veth_peer_elsewhere(name), mode=mode,
                                     prepared=prepared)
            if prepared is None:        # the socket is still on the port's interface
                try:
                    self._core.port_receive_from(index, upcall)
                except OSError:
                    kernel.remove_port(index)
                    raise
        except OSError as exc:
            if self._kernel is not None:
                self._kernel_why[index] = str(exc)
            log.warning("%s:%s: no kernel fast path, every frame goes through vale: %s",
                        self.name, name, exc)

    def _kernel_state(self, index: int, name: str) -> str:
        """What info shows: the attach mode while the fast path is active, else why not."""
        if name not in self._ifindex:
            return "not an interface port"
        if self._kernel_mode(index) is None:
            return "off"
        if self._thread is None:
            return "stopped"
        why = self._kernel_why.get(index) or self._kernel_why.get(None)
        if why:
            return f"unavailable: {why}"
        mode = self._kernel.mode(index) if self._kernel is not None else None
        blockers = self._kernel_blockers.get(index, [])
        if mode is None:
            return "unavailable"
        return f"{mode}, held back: {', '.join(blockers)}" if blockers else mode

    def kernel_sync(self, now: float | None = None) -> None:
        """Keep the fast path's maps a copy of vale's table and its ports' flags in step
        with vale's rules, and give the ageing what the kernel forwarded: the daemon calls
        this when journal_fd says the table changed, after each request, and every 0.25 s;
        now: time.monotonic()."""
        if self._kernel is None:
            return
        now = time.monotonic() if now is None else now
        if self._kernel_dirty or now >= self._next_flags:
            self._next_flags = now + FLAGS_S
            digest = self._core.kernel_path_digest()
            if self._kernel_dirty or digest != self._kernel_digest:
                self._kernel_dirty = False
                self._kernel_digest = digest
                self._kernel_blockers = self._core.kernel_path_blockers()
                for index in self._kernel.ports():
                    self._kernel.flags(index, not self._kernel_blockers.get(index, ["gone"]))
        self._kernel.apply(self._core)
        if now >= self._next_refresh:
            # What the kernel forwarded ages a tenth of the ageing time late at most.
            self._next_refresh = now + min(max(self._core.ageing / 10, REFRESH_S),
                                           REFRESH_MAX_S)
            self._kernel.refresh(self._core)

    def kernel_check(self, ports: Iterable[str]) -> None:
        """Put back what of these ports' fast path went from the kernel meanwhile (a
        program or upcall device taken away by hand); the daemon asks for a few ports
        each second, in turn."""
        if self._kernel is None:
            return
        indexes = [self._index[port] for port in ports if port in self._index]
        for index, upcall in self._kernel.reattach(indexes).items():
            self._core.port_receive_from(index, upcall)

    def kernel_restored(self) -> None:
        """valed has restored what it had: take away what an earlier valed's fast path
        left that no port of this switch took back."""
        if self._kernel is not None:
            self._kernel.drop_inherited()

    @property
    def kernel_active(self) -> bool:
        """Whether the switch has a kernel fast path (on some port) now."""
        return self._kernel is not None

    def close_kernel(self, *, remove: bool = True) -> None:
        """Take the fast path away (remove), or leave it in the kernel, pinned, for the
        next valed (known unicast flows meanwhile)."""
        if self._kernel is not None:
            self._core.set_kernel_sources(-1)       # first: its fd closes with it
            for index in self._kernel.ports() if remove else ():
                self._kernel_leave(index)
            self._kernel.close(remove=remove)
            self._kernel = None
        self._core.journal_ports(())



def _fastpath_mode(switch: str, port: str) -> str | None:
    """How a port's fast path is attached (auto, tcx, clsact) given the switch's and the
    port's fastpath settings, or None (off)."""
    if switch == "off" or port == "off":
        return None
    mode = port if port != "on" else switch
    return "auto" if mode == "on" else mode


def _kernel_sum(*counts: dict[str, Any] | None) -> dict[str, Any]:
    """The fast path's counters of a port (as vale._bpf gives them) added up."""
    total: dict[str, Any] = {"rx_packets": 0, "rx_bytes": 0, "tx_packets": 0, "tx_bytes": 0,
                             "drops": dict.fromkeys(_KERNEL_DROPS, 0)}
    for count in filter(None, counts):
        for key in ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes"):
            total[key] += count[key]
        for reason, n in count["drops"].items():
            total["drops"][reason] += n
    return total
