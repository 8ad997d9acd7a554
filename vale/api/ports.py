"""Ports and switches as users see them: list, attach, detach, info, stats, set."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vale import settings
from vale.api.protocol import ApiError, arg
from vale.names import parse_port_ref
from vale.ports import interface_index

if TYPE_CHECKING:
    from vale.api.topology import Topology

log = logging.getLogger("vale.api")


def default_route_interfaces() -> set[str]:
    """Interfaces carrying a default route (IPv4 or IPv6) in this namespace."""
    names: set[str] = set()
    try:
        for line in Path("/proc/net/route").read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) > 2 and fields[1] == "00000000" and fields[7] == "00000000":
                names.add(fields[0])
        for line in Path("/proc/net/ipv6_route").read_text().splitlines():
            fields = line.split()
            if len(fields) == 10 and fields[0] == "0" * 32 and fields[1] == "00":
                names.add(fields[9])
    except OSError:
        pass
    names.discard("lo")
    return names


class PortOps:
    def __init__(self, topo: Topology) -> None:
        self.topo = topo

    def ops(self) -> dict[str, Any]:
        return {"list": self.op_list, "attach": self.op_attach, "detach": self.op_detach,
                "info": self.op_info, "stats": self.op_stats, "set": self.op_set}

    def op_list(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        switches = self.topo.desired.switches
        return [self.topo.port_summary(name, port)
                for name in sorted(switches) for port in switches[name].ports]

    def op_attach(self, args: dict[str, Any]) -> dict[str, Any] | list[dict[str, Any]]:
        """Attach an interface (port: "vale0:IF"), or several in one request (ports: a
        list, every one checked before any is attached; if the kernel refuses one, those
        attached before it are detached again)."""
        port_settings = settings.parse("attach", arg(args, "settings", dict, {}))
        force = arg(args, "force", bool, False)
        many = arg(args, "ports", list, None)
        if many is None:
            refs = [parse_port_ref(arg(args, "port", str))]
        elif "port" in args or not many or not all(isinstance(r, str) for r in many):
            raise ApiError("bad_request", "give port, or ports: a list of port references")
        else:
            refs = [parse_port_ref(r) for r in many]
        names = [ifname for _, ifname in refs]
        if len(set(names)) != len(names):
            raise ApiError("invalid", "an interface is named twice")
        for switch in dict.fromkeys(switch for switch, _ in refs):
            self.topo.check_new_port(switch, port_settings)
        for switch, ifname in refs:
            self._check_attach(switch, ifname, port_settings, force)
        done: list[tuple[str, str]] = []
        try:
            for switch, ifname in refs:
                self.topo.add_port(switch, ifname, port_settings)
                done.append((switch, ifname))
        except BaseException:
            for switch, ifname in reversed(done):
                self.topo.remove_port(switch, ifname)
            raise
        log.info("attached %s", ", ".join(f"{ifname} to {switch}" for switch, ifname in refs))
        summaries = [self.topo.port_summary(switch, ifname) for switch, ifname in refs]
        return summaries if many is not None else summaries[0]

    def _check_attach(self, switch: str, ifname: str, port_settings: dict[str, Any],
                      force: bool) -> None:
        owner = self.topo.owner_of(ifname)
        if owner is not None:
            raise ApiError("already_attached", f"{ifname} is already attached to {owner}")
        if ifname in self.topo.desired.interfaces:
            raise ApiError("invalid", f"{ifname} was made by valed; it is attached where "
                           "it was created")
        interface_index(ifname)             # exists?
        self.topo.check_not_own_peer(switch, ifname)
        if ifname in default_route_interfaces() and not force:
            raise ApiError("refused", f"{ifname} carries this host's default route: attaching "
                           "it would cut the host off its network. Use --force if you mean it")

    def op_detach(self, args: dict[str, Any]) -> None:
        switch, port, _ = self.topo.desired_port(arg(args, "port", str))
        if port in self.topo.desired.interfaces:
            raise ApiError("invalid", f"{port} was made by valed: remove it with "
                           f"valectl remove {port}")
        self.topo.remove_port(switch, port)
        log.info("detached %s from %s", port, switch)

    def op_info(self, args: dict[str, Any]) -> dict[str, Any]:
        ref = arg(args, "port", str)
        if ":" not in ref:
            return self.switch_info(ref)
        switch, port, desired = self.topo.desired_port(ref)
        summary = self.topo.port_summary(switch, port)
        made = self.topo.desired.interfaces.get(port)
        created = None if made is None else made.to_json()
        if not self.topo.live(switch, port):
            return {**summary, "settings": dict(desired.settings), "counters": None,
                    "created": created}
        sw = self.topo.switches[switch]
        info = sw.port_info(port)
        info.pop("name", None)
        return {**summary, "settings": info, "counters": sw.stats()["ports"][port],
                "created": created}

    def switch_info(self, switch: str) -> dict[str, Any]:
        """A switch's settings, where its forwarding thread runs, and its ports."""
        config = self.topo.desired_switch(switch)
        info: dict[str, Any] = {"switch": switch, "settings": dict(config.settings),
                                "thread_cpus": None, "thread_cpu": None,
                                "ports": sorted(config.ports)}
        sw = self.topo.switches.get(switch)
        if sw is not None:
            stats = sw.stats()
            info["settings"] = {**stats["settings"], "cpus": sw.cpus,
                                "fdb_capacity": stats["fdb"]["capacity"]}
            cpus = sw.thread_cpus
            info["thread_cpus"] = cpus
            info["thread_cpu"] = cpus[0] if cpus is not None and len(cpus) == 1 else None
        return info

    def op_stats(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        target = arg(args, "target", str, None)
        switches = self.topo.switches
        if target is None:
            return [switches[name].stats() for name in sorted(switches)]
        if ":" in target:
            switch, port, _ = self.topo.desired_port(target)
            if not self.topo.live(switch, port):
                raise ApiError("not_found", f"{target} is missing: no counters")
            stats = switches[switch].stats()
            stats["ports"] = {port: stats["ports"][port]}
            return [stats]
        self.topo.desired_switch(target)
        if target not in switches:
            raise ApiError("not_found", f"{target} is not running (over valed "
                           "--max-switches): no counters")
        return [switches[target].stats()]

    def op_set(self, args: dict[str, Any]) -> dict[str, Any]:
        """Change settings of a switch or a port (vale.settings); a missing port's are
        checked now and kept for when its interface returns."""
        target = arg(args, "target", str)
        raw = arg(args, "settings", dict)
        if not raw:
            raise ApiError("bad_request", "nothing to set")
        if ":" in target:
            switch, port, desired = self.topo.desired_port(target)
            changes = settings.parse("port", raw)
            if "vlan" in changes or "native" in changes:    # kept as a consistent pair
                changes["vlan"], changes["native"] = settings.merge_vlan(
                    (desired.settings.get("vlan", "none"), desired.settings.get("native", 0)),
                    changes)
            if self.topo.live(switch, port):
                self.topo.switches[switch].set_port(port, **changes)
            desired.settings.update(changes)
            return self.op_info({"port": target})["settings"]
        config = self.topo.desired_switch(target)
        changes = settings.parse("switch", raw)
        self.topo.limits.check_switch_settings(changes)
        sw = self.topo.switches.get(target)     # not running: over --max-switches at start
        if sw is not None:
            sw.configure(**changes)
        config.settings.update(changes)
        return self.switch_info(target)["settings"]
