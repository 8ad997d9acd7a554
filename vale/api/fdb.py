"""The MAC table of a switch: show, static entries in and out, flush. Static entries are
part of the desired configuration (by static_name: MAC, or MAC@VLAN); learned ones live
only in the core."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from vale._fastpath import MAX_VLAN
from vale.api.protocol import ApiError, arg
from vale.names import key_to_mac, mac_to_key
from vale.state import static_name
from vale.switch import FdbEntry, Switch

if TYPE_CHECKING:
    from vale.api.topology import Topology


class FdbOps:
    def __init__(self, topo: Topology) -> None:
        self.topo = topo

    def ops(self) -> dict[str, Any]:
        return {"fdb_show": self.op_fdb_show, "fdb_add": self.op_fdb_add,
                "fdb_del": self.op_fdb_del, "fdb_flush": self.op_fdb_flush}

    def _target(self, args: dict[str, Any]) -> tuple[str, Switch | None]:
        switch = arg(args, "switch", str)
        self.topo.desired_switch(switch)
        return switch, self.topo.switches.get(switch)

    def _port(self, switch: str, args: dict[str, Any]) -> str | None:
        """The optional port argument, checked to be a port of the switch."""
        port = arg(args, "port", str, None)
        if port is not None:
            self.topo.desired_port(f"{switch}:{port}")
        return port

    @staticmethod
    def _vlan(args: dict[str, Any], default: int | None = 0) -> int | None:
        vlan = arg(args, "vlan", int, default)
        if vlan is not None and not 0 <= vlan <= MAX_VLAN:
            raise ApiError("invalid", f"vlan takes 0 to {MAX_VLAN}, not {vlan}")
        return vlan

    def streams(self) -> dict[str, Any]:
        """The operations whose answer is a stream of pages (the daemon's _stream)."""
        return {"fdb_stream": self.op_fdb_stream}

    def _shown(self, args: dict[str, Any]) -> tuple[Switch | None, str | None, int | None]:
        """(live switch, port, vlan) of an fdb_show or fdb_stream; the switch is None when
        there is nothing to show."""
        switch, sw = self._target(args)
        port = self._port(switch, args)
        vlan = self._vlan(args, None)
        if sw is None or (port is not None and port not in sw.ports()):
            return None, port, vlan
        return sw, port, vlan

    def op_fdb_show(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        """Every entry at once, sorted: for tables of a size to read at once (valectl
        fdb streams, fdb_stream)."""
        sw, port, vlan = self._shown(args)
        return [] if sw is None else [_entry(e) for e in sw.fdb_show(port, vlan)]

    def op_fdb_stream(self, args: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
        """fdb_show's entries in table order, a page at a time (the arguments are checked
        now, the pages read as the daemon sends them)."""
        sw, port, vlan = self._shown(args)
        pages = iter(()) if sw is None else sw.fdb_pages(port, vlan)
        return ([_entry(e) for e in page] for page in pages)

    def op_fdb_add(self, args: dict[str, Any]) -> None:
        switch, port, _ = self.topo.desired_port(f"{arg(args, 'switch', str)}:"
                                                 f"{arg(args, 'port', str)}")
        key = mac_to_key(arg(args, "mac", str))
        vlan = self._vlan(args)
        if key == 0 or key & 1:
            raise ApiError("invalid", "a static entry needs a unicast, non-zero MAC")
        mac = key_to_mac(key)
        if self.topo.live(switch, port):
            self.topo.switches[switch].fdb_add(mac, port, vlan)
        self.topo.desired.switches[switch].fdb[static_name(mac, vlan)] = port

    def op_fdb_del(self, args: dict[str, Any]) -> None:
        switch, sw = self._target(args)
        mac = key_to_mac(mac_to_key(arg(args, "mac", str)))
        vlan = self._vlan(args)
        found = self.topo.desired.switches[switch].fdb.pop(static_name(mac, vlan),
                                                            None) is not None
        if sw is not None:
            try:
                sw.fdb_del(mac, vlan)
                found = True
            except ValueError:
                pass
        if not found:
            where = f" in VLAN {vlan}" if vlan else ""
            raise ApiError("not_found", f"{mac} is not in the FDB of {switch}{where}")

    def op_fdb_flush(self, args: dict[str, Any]) -> dict[str, int]:
        switch, sw = self._target(args)
        port = self._port(switch, args)
        statics = arg(args, "statics", bool, False)
        removed = 0
        if sw is not None and (port is None or port in sw.ports()):
            removed = sw.fdb_flush(port, statics=statics)
        if statics:
            config = self.topo.desired.switches[switch]
            config.fdb = {m: p for m, p in config.fdb.items()
                          if port is not None and p != port}
        return {"removed": removed}


def _entry(e: FdbEntry) -> dict[str, Any]:
    return {"mac": e.mac, "vlan": e.vlan, "port": e.port, "static": e.static,
            "age": round(e.age, 3)}
