"""A learning switch with named ports, on top of the Cython core (vale._fastpath).

The core works with port indexes and 48-bit MAC keys; this class owns the names, the
parsing of what users type and the shape of what they get back. Any object with the
SwitchCore interface can serve as the core: the tests run the same suite against the
Cython core and a pure-Python reference model.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from vale._fastpath import DROP_REASONS, SwitchCore
from vale.names import check_port_name, check_switch_name, key_to_mac, mac_to_key
from vale.ports import interface_index, interface_mtu

__all__ = ["AUTO_CPU", "DROP_REASONS", "FdbEntry", "Switch"]

_PORT_SETTINGS = frozenset({"learning", "flood", "learn_limit", "vnet"})
_SWITCH_SETTINGS = frozenset({"fdb_capacity", "ageing", "batch", "move_limit", "move_window",
                              "ban", "busy_poll_us", "cpus"})
AUTO_CPU = "auto"                   # cpus: one CPU chosen by valed (the default)
_auto_placed: Counter[int] = Counter()  # CPU -> forwarding threads placed there by AUTO_CPU


@dataclass(frozen=True, slots=True)
class FdbEntry:
    mac: str
    port: str
    static: bool
    age: float          # seconds since a frame last came from this MAC


class Switch:
    """One switch (vale0, vale1, ...) and its ports, by name."""

    __slots__ = ("_auto_cpu", "_core", "_cpus", "_ifindex", "_index", "_names", "_thread",
                 "name")

    def __init__(self, name: str = "vale0", *, fdb_capacity: int = 65536, ageing: float = 300,
                 batch: int = 256, move_limit: int = 4, move_window: float = 10, ban: float = 60,
                 manual_clock: bool = False, core_class: type = SwitchCore) -> None:
        self.name = check_switch_name(name)
        self._core = core_class(capacity=fdb_capacity, ageing=ageing, batch=batch,
                                manual_clock=manual_clock, move_limit=move_limit,
                                move_window=move_window, ban=ban)
        self._index: dict[str, int] = {}
        self._names: dict[int, str] = {}
        self._ifindex: dict[str, int] = {}     # interface ports: name -> ifindex at attach
        self._thread: threading.Thread | None = None
        self._cpus: list[int] | str = AUTO_CPU      # or the CPUs; [] is every CPU
        self._auto_cpu: int | None = None           # the CPU AUTO_CPU chose, while running

    @property
    def core(self) -> Any:
        return self._core

    # -- ports ---------------------------------------------------------------------------

    def add_port(self, name: str, **settings: Any) -> int:
        """Add a port; settings: rx_slots, tx_slots, slot_size, learning, flood,
        learn_limit. Returns its index."""
        check_port_name(name)
        if name in self._index:
            raise ValueError(f"{self.name}:{name} already exists")
        index = self._core.add_port(**settings)
        self._index[name] = index
        self._names[index] = name
        return index

    def attach(self, ifname: str, **settings: Any) -> int:
        """Attach a Linux interface as port `ifname`; settings: learning, flood,
        learn_limit, vnet, rx_frames. Raises NoSuchInterface, ValueError, OSError."""
        check_port_name(ifname)
        if ifname in self._index:
            raise ValueError(f"{self.name}:{ifname} already exists")
        ifindex = interface_index(ifname)
        index = self._core.add_packet_port(ifindex, mtu=interface_mtu(ifname), **settings)
        self._index[ifname] = index
        self._names[index] = ifname
        self._ifindex[ifname] = ifindex
        return index

    def attach_tap(self, name: str, fd: int, **settings: Any) -> int:
        """Take an open TAP fd (vale.tap.open_tap) as port `name`; the core closes the fd
        when the port goes. Settings as for attach, but for rx_frames."""
        check_port_name(name)
        if name in self._index:
            raise ValueError(f"{self.name}:{name} already exists")
        index = self._core.add_tap_port(fd, **settings)
        self._index[name] = index
        self._names[index] = name
        return index

    def ifindex(self, name: str) -> int | None:
        """The interface index a port was attached with (None: an in-memory or TAP port,
        whose device may live in another namespace)."""
        return self._ifindex.get(name)

    def remove_port(self, name: str) -> None:
        index = self.port_index(name)
        self._core.remove_port(index)
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
        """Port settings: learning, flood, learn_limit, vnet (offloads pass through)."""
        unknown = set(settings) - _PORT_SETTINGS
        if unknown:
            raise ValueError(f"unknown port setting(s): {', '.join(sorted(unknown))}; "
                             f"known: {', '.join(sorted(_PORT_SETTINGS))}")
        self._core.set_port(self.port_index(name), **settings)

    def port_info(self, name: str) -> dict[str, Any]:
        info = self._core.port_info(self.port_index(name))
        info["name"] = name
        return info

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

    def fdb_show(self, port: str | None = None) -> list[FdbEntry]:
        only = None if port is None else self.port_index(port)
        return sorted(
            (FdbEntry(key_to_mac(key), self._names[index], static, age)
             for key, index, static, age in self._core.fdb_entries()
             if only is None or index == only),
            key=lambda e: e.mac,
        )

    def fdb_lookup(self, mac: str) -> str | None:
        index = self._core.fdb_lookup(mac_to_key(mac))
        return None if index is None else self._names[index]

    def fdb_add(self, mac: str, port: str) -> None:
        """A static entry: never ages, never moves."""
        self._core.fdb_add(mac_to_key(mac), self.port_index(port))

    def fdb_del(self, mac: str) -> None:
        if not self._core.fdb_del(mac_to_key(mac)):
            raise ValueError(f"{mac} is not in the FDB of {self.name}")

    def fdb_flush(self, port: str | None = None, *, statics: bool = False) -> int:
        return self._core.fdb_flush(None if port is None else self.port_index(port),
                                    statics=statics)

    # -- settings, clock, counters -------------------------------------------------------

    def configure(self, **settings: Any) -> None:
        """Switch settings: fdb_capacity, ageing (s, 0 = never), batch, move_limit,
        move_window (s), ban (s), busy_poll_us, cpus (the forwarding thread's CPUs, or
        AUTO_CPU)."""
        unknown = set(settings) - _SWITCH_SETTINGS
        if unknown:
            raise ValueError(f"unknown switch setting(s): {', '.join(sorted(unknown))}; "
                             f"known: {', '.join(sorted(_SWITCH_SETTINGS))}")
        # All or nothing: what can be refused is checked before anything changes (resizing
        # evicts entries; the core's configure checks all its values first).
        cpus = self._check_cpus(settings.pop("cpus")) if "cpus" in settings else False
        capacity = settings.pop("fdb_capacity", None)
        if capacity is not None:
            self._core.check_capacity(capacity)
        if settings:
            self._core.configure(**settings)
        if capacity is not None:
            self._core.set_capacity(capacity)
        if cpus is not False:
            self._pin(cpus)

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

    def stop(self) -> None:
        if self._thread is None:
            return
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
    def thread_cpus(self) -> list[int] | None:
        """The CPUs the forwarding thread may run on now (None: no thread)."""
        if self._thread is None or self._thread.native_id is None:
            return None
        return sorted(os.sched_getaffinity(self._thread.native_id))

    def stats(self) -> dict[str, Any]:
        """Every counter, ports by name."""
        snap = self._core.snapshot()
        snap["ports"] = {self._names[i]: counters for i, counters in snap["ports"].items()}
        snap["switch"] = self.name
        return snap
