"""The daemon's API: requests in, replies out, as plain dicts (JSON on the wire).

Two layers of state. The *desired* configuration (what users asked for: switches, their
settings, ports and theirs, static FDB entries, interfaces the daemon created) is what gets
saved and restored. The *live* switches are what runs; a desired port whose interface does
not exist is `missing` and comes back by itself when the interface does.

Every request is checked before anything changes; a failed request changes neither the
configuration nor the saved state. Failures become one ApiError with a code and a sentence,
mapped from exceptions in one place (Api.handle).
Request:  {"v": 1, "op": "attach", "args": {"port": "vale0:eth1"}}
Reply:    {"ok": true, "result": ...}  or  {"ok": false, "error": {"code": ..., "message": ...}}
"""

from __future__ import annotations

import copy
import errno
import grp
import logging
import os
import pwd
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vale import netlink, tap
from vale._fastpath import MAX_FDB_CAPACITY
from vale.names import (
    check_port_name,
    check_switch_name,
    key_to_mac,
    mac_to_key,
    parse_port_ref,
    random_mac,
)
from vale.ports import NoSuchInterface, interface_index, interface_state
from vale.state import StateFile, empty, new_switch
from vale.switch import AUTO_CPU, Switch

log = logging.getLogger("vale.api")

API_VERSION = 1
RETRY_S = 5                 # a port that failed to come back is tried again after this

# Settings `set` takes, with their parser. Switch-wide and per port.
SWITCH_KEYS = {"ageing": float, "fdb_capacity": int, "batch": int, "move_limit": int,
               "move_window": float, "ban": float, "busy_poll_us": int, "cpus": "cpus"}
PORT_KEYS = {"learning": bool, "flood": bool, "learn_limit": int, "offloads": bool}
ATTACH_KEYS = {**PORT_KEYS, "rx_frames": int}


class ApiError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def reply_error(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"code": code, "message": message}}


def _arg(args: dict[str, Any], name: str, kind: type | tuple[type, ...],
         default: Any = ...) -> Any:
    if name not in args or (args[name] is None and default is not ...):
        if default is ...:
            raise ApiError("bad_request", f"missing argument {name!r}")
        return default
    value = args[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ApiError("bad_request", f"argument {name!r} has the wrong type")
    return value


def parse_setting(key: str, value: Any, parser: Any) -> Any:
    """Settings arrive as strings from the CLI or as JSON values."""
    if parser is bool:
        if isinstance(value, bool):
            return value
        text = str(value).lower()
        if text in ("on", "true", "yes", "1"):
            return True
        if text in ("off", "false", "no", "0"):
            return False
        raise ApiError("invalid", f"{key} takes on or off, not {value!r}")
    if parser == "cpus":
        return parse_cpus(key, value)
    if isinstance(value, bool):
        raise ApiError("invalid", f"{key} takes a number, not {value!r}")
    try:
        return parser(value)
    except (TypeError, ValueError):
        raise ApiError("invalid", f"{key} takes a number, not {value!r}") from None


def parse_settings(raw: Any, known: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ApiError("bad_request", "settings must be a JSON object")
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ApiError("invalid", f"unknown setting {unknown[0]!r}; known: "
                       f"{', '.join(sorted(known))}")
    return {key: parse_setting(key, value, known[key]) for key, value in raw.items()}


MAX_CPUS = 8192                             # Linux's own limit (CONFIG_NR_CPUS at most)


def parse_cpus(key: str, value: Any) -> list[int] | str:
    """'0,2-3' -> [0, 2, 3]; '' or 'all' -> [] (no pinning); 'auto': one CPU valed
    chooses (the default)."""
    if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool)
                                       for v in value):
        return value
    text = str(value).strip()
    if text == AUTO_CPU:
        return AUTO_CPU
    if text in ("", "all"):
        return []
    cpus: list[int] = []
    try:
        for part in text.split(","):
            low, dash, high = part.partition("-")
            first, last = int(low), int(high if dash else low)
            if not 0 <= first <= last < MAX_CPUS:
                raise ValueError(part)
            cpus.extend(range(first, last + 1))
    except ValueError:
        raise ApiError("invalid", f"{key} takes CPU numbers like 0,2-3 (each below "
                                  f"{MAX_CPUS}, ranges low-high), not {value!r}") from None
    return cpus


def core_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """User-facing port settings -> the Switch's names (offloads is vnet there)."""
    out = dict(settings)
    if "offloads" in out:
        out["vnet"] = out.pop("offloads")
    return out


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


class Api:
    """Desired configuration, live switches, and the operations on both."""

    def __init__(self, state: StateFile | None = None,
                 on_switch_added: Callable[[Switch], None] | None = None,
                 on_switch_removed: Callable[[Switch], None] | None = None) -> None:
        self.state = state
        self.desired: dict[str, Any] = empty()
        self.switches: dict[str, Switch] = {}
        self._on_added = on_switch_added
        self._on_removed = on_switch_removed
        self._retry_at: dict[tuple[str, str], float] = {}      # (switch, port): monotonic
        self._unsaved = ""              # why the last save failed; "" when saved
        self._ops: dict[str, Callable[[dict[str, Any]], Any]] = {
            "version": self.op_version, "list": self.op_list, "attach": self.op_attach,
            "detach": self.op_detach, "info": self.op_info, "fdb_show": self.op_fdb_show,
            "fdb_add": self.op_fdb_add, "fdb_del": self.op_fdb_del,
            "fdb_flush": self.op_fdb_flush, "stats": self.op_stats, "set": self.op_set,
            "create": self.op_create, "remove": self.op_remove, "reload": self.op_reload,
            "mirror_add": self.op_mirror_add, "mirror_del": self.op_mirror_del,
            "mirror_show": self.op_mirror_show,
        }

    # -- dispatch, and the one place errors are mapped ------------------------------------

    def handle(self, request: Any) -> dict[str, Any]:
        before = copy.deepcopy(self.desired)
        try:
            if not isinstance(request, dict):
                raise ApiError("bad_request", "a request is a JSON object")
            version = request.get("v", API_VERSION)
            if version != API_VERSION:
                raise ApiError("bad_request", f"API version {version!r} is not spoken here "
                               f"(this daemon speaks {API_VERSION})")
            op = request.get("op")
            if not isinstance(op, str) or op not in self._ops:
                raise ApiError("unknown_op", f"unknown operation {op!r}; known: "
                               f"{', '.join(sorted(self._ops))}")
            args = request.get("args", {})
            if not isinstance(args, dict):
                raise ApiError("bad_request", "args must be a JSON object")
            result = self._ops[op](args)
        except ApiError as exc:
            reply = reply_error(exc.code, exc.message)
        except NoSuchInterface as exc:
            reply = reply_error("no_such_interface", str(exc))
        except ValueError as exc:
            reply = reply_error("invalid", str(exc))
        except OSError as exc:
            code = "permission" if exc.errno in (errno.EPERM, errno.EACCES) else "kernel"
            reply = reply_error(code, f"the kernel refused: {exc.strerror or exc}")
        else:
            if self.desired != before and not self._try_save():
                return reply_error(
                    "not_saved", "done, but the configuration could not be saved "
                    f"({self._unsaved}); valed keeps trying, and the change is lost if "
                    "it stops first")
            return {"ok": True, "result": result}
        if self.desired != before:          # a failed request changes nothing
            log.error("a failed request had changed the configuration; restoring it")
            self.desired = before
        return reply

    def save(self) -> None:
        if self.state is not None:
            self.state.save(self.desired)

    def _try_save(self) -> bool:
        """Save; on failure (a full or read-only disk) remember why, for housekeeping to
        try again and for the reply to say."""
        try:
            self.save()
        except OSError as exc:
            if not self._unsaved:
                log.error("cannot save the configuration: %s", exc)
            self._unsaved = exc.strerror or str(exc)
            return False
        if self._unsaved:
            log.info("the configuration is saved again")
        self._unsaved = ""
        return True

    # -- the desired configuration --------------------------------------------------------

    def _desired_switch(self, name: str) -> dict[str, Any]:
        check_switch_name(name)
        try:
            return self.desired["switches"][name]
        except KeyError:
            raise ApiError("not_found", f"no switch {name}") from None

    def _desired_port(self, ref: str) -> tuple[str, str, dict[str, Any]]:
        switch, port = parse_port_ref(ref)
        ports = self._desired_switch(switch)["ports"]
        if port not in ports:
            raise ApiError("not_found", f"no port {ref}")
        return switch, port, ports[port]

    def owner_of(self, ifname: str) -> str | None:
        for name, sw in self.desired["switches"].items():
            if ifname in sw["ports"]:
                return name
        return None

    # -- the live switches ----------------------------------------------------------------

    def _live_switch(self, name: str) -> Switch:
        sw = self.switches.get(name)
        if sw is None:
            sw = Switch(name)
            settings = self.desired["switches"][name]["settings"]
            try:
                sw.configure(**settings)
            except (ValueError, TypeError) as exc:    # saved, and this machine refuses it
                log.error("switch %s: the saved settings are refused (%s); it runs with the "
                          "defaults until they are set again", name, exc)
            self.switches[name] = sw
            sw.start()
            if self._on_added:
                self._on_added(sw)
        return sw

    def _drop_live_switch(self, name: str) -> None:
        sw = self.switches.pop(name, None)
        if sw is None:
            return
        sw.stop()
        for port in sw.ports():
            sw.remove_port(port)
        if self._on_removed:
            self._on_removed(sw)

    def _live(self, switch: str, port: str) -> bool:
        sw = self.switches.get(switch)
        return sw is not None and port in sw.ports()

    def bring_up(self, switch: str, port: str) -> None:
        """Make desired port `port` live: attach its interface (or open its TAP), then
        put back its static FDB entries. Raises when the interface is not there."""
        config = self.desired["switches"][switch]
        settings = core_settings(config["ports"][port])
        sw = self._live_switch(switch)
        made = self.desired["interfaces"].get(port, {})
        if made.get("kind") == "tap":
            # A TAP we hold dies with us, and is made again with the MAC it had: with a
            # new one, hosts that knew it would send into the void until their neighbour
            # entries expire.
            mac = made.get("mac")           # checked at restore (_settle_tap_macs)
            fd = tap.open_tap(port)
            try:
                netlink.set_up_tap(port, made.get("netns") or None, made.get("address"), mac)
                settings.pop("rx_frames", None)
                sw.attach_tap(port, fd, **settings)
            except BaseException:
                os.close(fd)
                raise
        else:
            sw.attach(port, **settings)
        for mac, where in config["fdb"].items():
            if where == port:
                sw.fdb_add(mac, port)
        self._apply_mirrors(switch)

    def _apply_mirrors(self, switch: str) -> None:
        """Set every live mirror source of `switch` to its live destination (or none)."""
        sw = self.switches.get(switch)
        if sw is None:
            return
        mirrors = self.desired["switches"][switch].setdefault("mirrors", {})
        for source in sw.ports():
            rule = mirrors.get(source)
            target = None
            if rule is not None and rule["to"] in sw.ports():
                target = sw.port_index(rule["to"])
            rx = target if rule and rule["direction"] in ("rx", "both") else None
            tx = target if rule and rule["direction"] in ("tx", "both") else None
            sw.core.set_mirror(sw.port_index(source), rx_to=rx, tx_to=tx)

    def _take_down(self, switch: str, port: str) -> None:
        sw = self.switches.get(switch)
        if sw is not None and port in sw.ports():
            sw.remove_port(port)

    def port_summary(self, switch: str, port: str) -> dict[str, Any]:
        made = self.desired["interfaces"].get(port, {})
        kind = made.get("kind", "interface")
        summary = {"switch": switch, "port": port, "kind": kind, "index": None,
                   "ifindex": None, "state": "missing"}
        if self._live(switch, port):
            sw = self.switches[switch]
            info = sw.port_info(port)
            ifindex = sw.ifindex(port)
            state = "up" if info["up"] else "down"
            if ifindex is not None and interface_state(port, ifindex) == "missing":
                state = "missing"
            summary.update(index=info["index"], ifindex=ifindex, state=state)
        return summary

    # -- operations -----------------------------------------------------------------------

    def op_version(self, args: dict[str, Any]) -> dict[str, Any]:
        from vale import __version__
        return {"api": API_VERSION, "vale": __version__}

    def op_list(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        return [self.port_summary(name, port)
                for name in sorted(self.desired["switches"])
                for port in self.desired["switches"][name]["ports"]]

    def op_attach(self, args: dict[str, Any]) -> dict[str, Any]:
        switch, ifname = parse_port_ref(_arg(args, "port", str))
        settings = parse_settings(_arg(args, "settings", dict, {}), ATTACH_KEYS)
        force = _arg(args, "force", bool, False)
        owner = self.owner_of(ifname)
        if owner is not None:
            raise ApiError("already_attached", f"{ifname} is already attached to {owner}")
        if ifname in self.desired["interfaces"]:
            raise ApiError("invalid", f"{ifname} was made by valed; it is attached where "
                           "it was created")
        interface_index(ifname)             # exists?
        if ifname in default_route_interfaces() and not force:
            raise ApiError("refused", f"{ifname} carries this host's default route: attaching "
                           "it would cut the host off its network. Use --force if you mean it")
        self._add_port(switch, ifname, settings)
        log.info("attached %s to %s", ifname, switch)
        return self.port_summary(switch, ifname)

    def _add_port(self, switch: str, port: str, settings: dict[str, Any]) -> None:
        """Desire the port, bring it up; on failure leave no trace."""
        check_switch_name(switch)
        switches = self.desired["switches"]
        created = switch not in switches
        if created:                         # a switch appears on its first attach, as in VALE
            switches[switch] = new_switch()
        switches[switch]["ports"][port] = settings
        try:
            self.bring_up(switch, port)
        except BaseException:
            del switches[switch]["ports"][port]
            if created:
                del switches[switch]
                self._drop_live_switch(switch)
            raise

    def op_detach(self, args: dict[str, Any]) -> None:
        switch, port, _ = self._desired_port(_arg(args, "port", str))
        if port in self.desired["interfaces"]:
            raise ApiError("invalid", f"{port} was made by valed: remove it with "
                           f"valectl remove {port}")
        self._remove_port(switch, port)
        log.info("detached %s from %s", port, switch)

    def _remove_port(self, switch: str, port: str) -> None:
        self._take_down(switch, port)
        config = self.desired["switches"][switch]
        del config["ports"][port]
        config["fdb"] = {mac: p for mac, p in config["fdb"].items() if p != port}
        config["mirrors"] = {src: rule for src, rule in config.get("mirrors", {}).items()
                             if port not in (src, rule["to"])}
        self._apply_mirrors(switch)
        if not config["ports"]:             # and goes with its last port
            del self.desired["switches"][switch]
            self._drop_live_switch(switch)

    def op_info(self, args: dict[str, Any]) -> dict[str, Any]:
        ref = _arg(args, "port", str)
        if ":" not in ref:
            return self.switch_info(ref)
        switch, port, settings = self._desired_port(ref)
        summary = self.port_summary(switch, port)
        if not self._live(switch, port):
            return {**summary, "settings": settings, "counters": None,
                    "created": self.desired["interfaces"].get(port)}
        sw = self.switches[switch]
        info = sw.port_info(port)
        info.pop("name", None)
        info["offloads"] = info.pop("vnet")
        return {**summary, "settings": info, "counters": sw.stats()["ports"][port],
                "created": self.desired["interfaces"].get(port)}

    def switch_info(self, switch: str) -> dict[str, Any]:
        """A switch's settings, where its forwarding thread runs, and its ports."""
        config = self._desired_switch(switch)
        info: dict[str, Any] = {"switch": switch, "settings": dict(config["settings"]),
                                "thread_cpus": None, "thread_cpu": None,
                                "ports": sorted(config["ports"])}
        sw = self.switches.get(switch)
        if sw is not None:
            stats = sw.stats()
            info["settings"] = {**stats["settings"], "cpus": sw.cpus,
                                "fdb_capacity": stats["fdb"]["capacity"]}
            cpus = sw.thread_cpus
            info["thread_cpus"] = cpus
            info["thread_cpu"] = cpus[0] if cpus is not None and len(cpus) == 1 else None
        return info

    def _fdb_target(self, args: dict[str, Any]) -> tuple[str, Switch | None]:
        switch = _arg(args, "switch", str)
        self._desired_switch(switch)
        return switch, self.switches.get(switch)

    def op_fdb_show(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        switch, sw = self._fdb_target(args)
        port = _arg(args, "port", str, None)
        if port is not None:
            self._desired_port(f"{switch}:{port}")
        if sw is None or (port is not None and port not in sw.ports()):
            return []
        return [{"mac": e.mac, "port": e.port, "static": e.static, "age": round(e.age, 3)}
                for e in sw.fdb_show(port)]

    def op_fdb_add(self, args: dict[str, Any]) -> None:
        switch, port, _ = self._desired_port(f"{_arg(args, 'switch', str)}:"
                                             f"{_arg(args, 'port', str)}")
        mac = _arg(args, "mac", str)
        key = mac_to_key(mac)
        if key == 0 or key & 1:
            raise ApiError("invalid", "a static entry needs a unicast, non-zero MAC")
        canonical = ":".join(mac.lower().replace("-", ":").split(":"))
        if self._live(switch, port):
            self.switches[switch].fdb_add(canonical, port)
        self.desired["switches"][switch]["fdb"][canonical] = port

    def op_fdb_del(self, args: dict[str, Any]) -> None:
        switch, sw = self._fdb_target(args)
        mac = _arg(args, "mac", str)
        mac_to_key(mac)
        canonical = ":".join(mac.lower().replace("-", ":").split(":"))
        statics = self.desired["switches"][switch]["fdb"]
        found = statics.pop(canonical, None) is not None
        if sw is not None:
            try:
                sw.fdb_del(canonical)
                found = True
            except ValueError:
                pass
        if not found:
            raise ApiError("not_found", f"{canonical} is not in the FDB of {switch}")

    def op_fdb_flush(self, args: dict[str, Any]) -> dict[str, int]:
        switch, sw = self._fdb_target(args)
        port = _arg(args, "port", str, None)
        statics = _arg(args, "statics", bool, False)
        if port is not None:
            self._desired_port(f"{switch}:{port}")
        removed = 0
        if sw is not None and (port is None or port in sw.ports()):
            removed = sw.fdb_flush(port, statics=statics)
        if statics:
            config = self.desired["switches"][switch]
            config["fdb"] = {m: p for m, p in config["fdb"].items()
                             if port is not None and p != port}
        return {"removed": removed}

    def op_stats(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        target = _arg(args, "target", str, None)
        if target is None:
            return [self.switches[name].stats() for name in sorted(self.switches)]
        if ":" in target:
            switch, port, _ = self._desired_port(target)
            if not self._live(switch, port):
                raise ApiError("not_found", f"{target} is missing: no counters")
            stats = self.switches[switch].stats()
            stats["ports"] = {port: stats["ports"][port]}
            return [stats]
        self._desired_switch(target)
        return [self.switches[target].stats()]

    def op_set(self, args: dict[str, Any]) -> dict[str, Any]:
        target = _arg(args, "target", str)
        raw = _arg(args, "settings", dict)
        if not raw:
            raise ApiError("bad_request", "nothing to set")
        if ":" in target:
            switch, port, current = self._desired_port(target)
            settings = parse_settings(raw, PORT_KEYS)
            if self._live(switch, port):
                self.switches[switch].set_port(port, **core_settings(settings))
            elif not 0 <= settings.get("learn_limit", 0) <= MAX_FDB_CAPACITY:
                # Kept for when the interface returns: checked now, not refused then.
                raise ApiError("invalid", f"learn_limit must be between 0 and "
                                          f"{MAX_FDB_CAPACITY}, not {settings['learn_limit']}")
            current.update(settings)
            return self.op_info({"port": target})["settings"]
        config = self._desired_switch(target)
        settings = parse_settings(raw, SWITCH_KEYS)
        sw = self.switches[target]
        sw.configure(**settings)
        config["settings"].update(settings)
        return self.switch_info(target)["settings"]

    def op_create(self, args: dict[str, Any]) -> dict[str, Any]:
        """A TAP or a veth pair made and owned by the daemon, attached to a switch."""
        name = check_port_name(_arg(args, "name", str))
        kind = _arg(args, "kind", str)
        switch = check_switch_name(_arg(args, "switch", str, "vale0"))
        settings = parse_settings(_arg(args, "settings", dict, {}), ATTACH_KEYS)
        netns = _arg(args, "netns", str, None)
        address = _arg(args, "address", str, None)
        if kind not in ("tap", "persistent_tap", "veth"):
            raise ApiError("invalid", f"cannot create a {kind!r}: tap, persistent_tap or veth")
        if name in self.desired["interfaces"] or self.owner_of(name):
            raise ApiError("already_attached", f"{name} is already in use by valed")
        if Path("/sys/class/net", name).exists():
            raise ApiError("exists", f"an interface named {name} exists already")
        if kind == "persistent_tap" and (netns is not None or address is not None):
            raise ApiError("invalid", "a persistent TAP belongs to a VM: no namespace, no "
                                      "address")
        if kind == "tap" and address is not None and netns is None:
            raise ApiError("invalid", "a TAP gets its address in its namespace: give netns "
                                      "too (for an address on this host, make a veth)")
        if netns is not None:
            netlink.check_netns(netns)
        if address is not None:
            netlink.check_address(address)
        record: dict[str, Any] = {"kind": kind, "switch": switch}
        if kind == "veth":
            peer = check_port_name(_arg(args, "peer", str, None) or f"{name[:12]}-p")
            if Path("/sys/class/net", peer).exists() and netns is None:
                raise ApiError("exists", f"an interface named {peer} exists already")
            record.update(peer=peer, netns=netns, address=address)
            netlink.create_veth(name, peer, netns, address)
        elif kind == "persistent_tap":
            owner = _arg(args, "owner", str, None)
            group = _arg(args, "group", str, None)
            record.update(owner=owner, group=group)
            tap.make_persistent_tap(name, _uid(owner), _gid(group))
        else:
            record.update(netns=netns, address=address, mac=random_mac())
        self.desired["interfaces"][name] = record
        try:
            self._add_port(switch, name, settings)
        except BaseException:
            del self.desired["interfaces"][name]
            self._destroy(name, record)
            raise
        log.info("created %s %s on %s", kind, name, switch)
        return self.port_summary(switch, name)

    def op_remove(self, args: dict[str, Any]) -> None:
        name = check_port_name(_arg(args, "name", str))
        record = self.desired["interfaces"].get(name)
        if record is None:
            raise ApiError("refused", f"{name} was not made by valed: valectl remove deletes "
                           "only interfaces valectl create made (detach it instead)")
        switch = self.owner_of(name)
        if switch is not None:
            self._remove_port(switch, name)
        del self.desired["interfaces"][name]
        self._destroy(name, record)
        log.info("removed %s", name)

    def _destroy(self, name: str, record: dict[str, Any]) -> None:
        """Delete an interface the daemon made (a TAP it held is gone with its fd)."""
        if record["kind"] == "veth":
            netlink.delete_link(name)
        elif record["kind"] == "persistent_tap":
            tap.remove_persistent_tap(name)

    def op_reload(self, args: dict[str, Any]) -> dict[str, Any]:
        """Bring up every desired port that is missing (what ExecReload asks)."""
        self._retry_at.clear()              # asked for: try every port now
        return {"brought_up": self.reconcile()}

    def op_mirror_add(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        """Copy the traffic of ports `from` (rx, tx or both) to port `to`."""
        switch = _arg(args, "switch", str)
        config = self._desired_switch(switch)
        sources = _arg(args, "from", list)
        target = _arg(args, "to", str)
        direction = _arg(args, "direction", str, "both")
        if direction not in ("rx", "tx", "both"):
            raise ApiError("invalid", f"direction is rx, tx or both, not {direction!r}")
        if not sources or not all(isinstance(p, str) for p in sources):
            raise ApiError("bad_request", "from is a list of port names")
        for port in [*sources, target]:
            self._desired_port(f"{switch}:{port}")
        mirrors = config.setdefault("mirrors", {})
        if target in sources:
            raise ApiError("invalid", f"{switch}:{target} cannot mirror to itself")
        if target in mirrors:
            raise ApiError("mirror_loop", f"{switch}:{target} is itself mirrored: copying to it "
                           "would make a mirror loop")
        for source in sources:
            if any(rule["to"] == source for rule in mirrors.values()):
                raise ApiError("mirror_loop", f"{switch}:{source} receives a mirror: mirroring "
                               "it would make a mirror loop")
        for source in sources:
            mirrors[source] = {"to": target, "direction": direction}
        self._apply_mirrors(switch)
        return self.op_mirror_show({"switch": switch})

    def op_mirror_del(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        switch = _arg(args, "switch", str)
        config = self._desired_switch(switch)
        sources = _arg(args, "from", list, None)
        mirrors = config.setdefault("mirrors", {})
        for source in sources if sources is not None else list(mirrors):
            if not isinstance(source, str):
                raise ApiError("bad_request", "from is a list of port names")
            if source not in mirrors:
                raise ApiError("not_found", f"{switch}:{source} is not mirrored")
        for source in sources if sources is not None else list(mirrors):
            del mirrors[source]
        self._apply_mirrors(switch)
        return self.op_mirror_show({"switch": switch})

    def op_mirror_show(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        config = self._desired_switch(_arg(args, "switch", str))
        return [{"from": source, **rule} for source, rule in config.get("mirrors", {}).items()]

    def capture_target(self, args: dict[str, Any]) -> tuple[Switch, int, bool, bool]:
        """Check a capture request: (switch, port index, rx, tx)."""
        switch, port, _ = self._desired_port(_arg(args, "port", str))
        direction = _arg(args, "direction", str, "both")
        if direction not in ("rx", "tx", "both"):
            raise ApiError("invalid", f"direction is rx, tx or both, not {direction!r}")
        if not self._live(switch, port):
            raise ApiError("not_found", f"{switch}:{port} is missing: nothing to capture")
        sw = self.switches[switch]
        return sw, sw.port_index(port), direction != "tx", direction != "rx"

    # -- start, events, housekeeping ------------------------------------------------------

    def restore(self, doc: dict[str, Any]) -> None:
        """Take a saved configuration: make the interfaces again, attach what exists."""
        self.desired = doc
        if self._settle_tap_macs():
            self._try_save()
        for name, record in doc["interfaces"].items():
            try:
                if record["kind"] == "veth" and not Path("/sys/class/net", name).exists():
                    netlink.create_veth(name, record["peer"], record.get("netns"),
                                        record.get("address"))
                elif record["kind"] == "persistent_tap" and \
                        not Path("/sys/class/net", name).exists():
                    tap.make_persistent_tap(name, _uid(record.get("owner")),
                                            _gid(record.get("group")))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("cannot make %s again: %s", name, exc)
        for switch in doc["switches"]:
            try:
                self._live_switch(switch)
            except (OSError, ValueError, TypeError) as exc:
                log.error("cannot start switch %s as saved: %s", switch, exc)
        self.reconcile()

    def _settle_tap_macs(self) -> bool:
        """Every TAP of ours gets a usable MAC to be made with: records saved before MACs
        were kept have none, and a hand-edited one may be malformed, a group address or
        zero, which the kernel would refuse at every try. Returns whether any changed."""
        changed = False
        for name, record in self.desired["interfaces"].items():
            if not isinstance(record, dict) or record.get("kind") != "tap":
                continue
            mac = record.get("mac")
            try:
                key = mac_to_key(mac)
                usable = key != 0 and not key & 1
            except ValueError:
                usable = False
            if usable and mac == key_to_mac(key):
                continue
            record["mac"] = key_to_mac(key) if usable else random_mac()
            if mac is not None and not usable:
                log.error("%s: saved MAC %r is not a unicast address; it gets %s", name,
                          mac, record["mac"])
            changed = True
        return changed

    def reconcile(self) -> list[str]:
        """Bring up desired ports that are not live but whose interface exists (a
        daemon-owned TAP always can be); take down live ports whose interface is gone (and
        make a daemon-owned TAP again)."""
        brought = []
        now = time.monotonic()
        for switch, config in list(self.desired["switches"].items()):
            for port in list(config["ports"]):
                made = self.desired["interfaces"].get(port, {})
                if self._live(switch, port):
                    sw = self.switches[switch]
                    if made.get("kind") == "tap":
                        # Ours, and the core put it down: its device was deleted and the fd
                        # is dead. Let it go and make it again, below, as at start.
                        if sw.port_info(port)["up"]:
                            continue
                        self._take_down(switch, port)
                        log.warning("%s:%s: its TAP is gone; making it again", switch, port)
                    else:
                        ifindex = sw.ifindex(port)
                        if ifindex is not None and interface_state(port, ifindex) == "missing":
                            self._take_down(switch, port)
                            log.warning("%s:%s is missing: its interface is gone", switch,
                                        port)
                        continue
                if made.get("kind") != "tap" and not Path("/sys/class/net", port).exists():
                    continue
                # A failed try waits: making a TAP that then cannot move into its namespace
                # (gone after a reboot) sends link events, and each event calls this again.
                if now < self._retry_at.get((switch, port), 0):
                    continue
                try:
                    self.bring_up(switch, port)
                    self._retry_at.pop((switch, port), None)
                    brought.append(f"{switch}:{port}")
                    log.info("%s:%s is back", switch, port)
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    self._retry_at[(switch, port)] = now + RETRY_S
                    log.warning("%s:%s cannot come back yet (next try in %d s): %s",
                                switch, port, RETRY_S, exc)
        return brought

    def link_event(self, event: netlink.LinkEvent) -> None:
        """From the netlink watch: follow interfaces that vanish, return, change MTU or
        go up and down."""
        switch = self.owner_of(event.ifname)
        if switch is None:
            return
        live = self._live(switch, event.ifname)
        sw = self.switches.get(switch)
        if event.kind == "del":
            if live and sw is not None and sw.ifindex(event.ifname) == event.index:
                self._take_down(switch, event.ifname)
                log.warning("%s:%s is missing: the interface was deleted; the switch goes on "
                            "for the other ports", switch, event.ifname)
            return
        if not live:
            self.reconcile()
            return
        assert sw is not None
        if sw.ifindex(event.ifname) not in (None, event.index):
            return                          # an older incarnation; its DELLINK decides
        index = sw.port_index(event.ifname)
        info = sw.port_info(event.ifname)
        if event.mtu and info.get("max_frame") != event.mtu + 18 and info["kind"] != "memory":
            sw.core.set_port(index, mtu=event.mtu)
        if event.up and not info["up"]:
            sw.core.set_port(index, up=True)
            log.info("%s:%s is up again", switch, event.ifname)

    def housekeeping(self) -> None:
        """Every second: kernel ring drops into the counters; ports whose link came back
        up; anything the netlink watch missed."""
        for switch, sw in list(self.switches.items()):
            sw.core.poll_kernel_drops()
            for port in sw.ports():
                ifindex = sw.ifindex(port)
                if ifindex is not None and not sw.port_info(port)["up"] \
                        and interface_state(port, ifindex) == "up":
                    sw.core.set_port(sw.port_index(port), up=True)
                    log.info("%s:%s is up again", switch, port)
        self.reconcile()
        if self._unsaved:
            self._try_save()

    def shutdown(self) -> None:
        for name in list(self.switches):
            self._drop_live_switch(name)


def _uid(owner: str | None) -> int | None:
    if owner is None:
        return None
    try:
        return int(owner) if owner.isdigit() else pwd.getpwnam(owner).pw_uid
    except KeyError:
        raise ApiError("invalid", f"no user {owner!r}") from None


def _gid(group: str | None) -> int | None:
    if group is None:
        return None
    try:
        return int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise ApiError("invalid", f"no group {group!r}") from None
