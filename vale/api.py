"""The daemon's API: requests in, replies out, as plain dicts (JSON on the wire).

Every request is checked before anything changes; every failure becomes one ApiError with
a code and a sentence, mapped from exceptions in one place (Api.handle).
Request:  {"v": 1, "op": "attach", "args": {"port": "vale0:eth1"}}
Reply:    {"ok": true, "result": ...}  or  {"ok": false, "error": {"code": ..., "message": ...}}
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from typing import Any

from vale.names import check_switch_name, parse_port_ref
from vale.ports import NoSuchInterface, interface_state
from vale.switch import Switch

log = logging.getLogger("vale.api")

API_VERSION = 1

# Settings `set` takes, with their parser. Switch-wide and per port.
SWITCH_KEYS = {"ageing": float, "fdb_capacity": int, "batch": int, "move_limit": int,
               "move_window": float, "ban": float, "busy_poll_us": int, "cpus": "cpus"}
PORT_KEYS = {"learning": bool, "flood": bool, "learn_limit": int, "offloads": bool}
ATTACH_KEYS = {"learning": bool, "flood": bool, "learn_limit": int, "offloads": bool,
               "rx_frames": int}


class ApiError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def reply_error(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"code": code, "message": message}}


def _arg(args: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
    if name not in args:
        if default is ...:
            raise ApiError("bad_request", f"missing argument {name!r}")
        return default
    value = args[name]
    if value is None and default is not ...:
        return default
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


def parse_cpus(key: str, value: Any) -> list[int]:
    """'0,2-3' -> [0, 2, 3]; '' or 'all' -> [] (no pinning)."""
    if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool)
                                       for v in value):
        return value
    text = str(value).strip()
    if text in ("", "all"):
        return []
    cpus: list[int] = []
    try:
        for part in text.split(","):
            low, _, high = part.partition("-")
            cpus.extend(range(int(low), int(high or low) + 1))
    except ValueError:
        raise ApiError("invalid", f"{key} takes CPU numbers like 0,2-3, not {value!r}") from None
    return cpus


class Api:
    """The daemon's state: switches by name, and which switch each interface is on."""

    def __init__(self, on_switch_added: Callable[[Switch], None] | None = None,
                 on_switch_removed: Callable[[Switch], None] | None = None) -> None:
        self.switches: dict[str, Switch] = {}
        self._on_added = on_switch_added
        self._on_removed = on_switch_removed
        self._ops: dict[str, Callable[[dict[str, Any]], Any]] = {
            "version": self.op_version, "list": self.op_list, "attach": self.op_attach,
            "detach": self.op_detach, "info": self.op_info, "fdb_show": self.op_fdb_show,
            "fdb_add": self.op_fdb_add, "fdb_del": self.op_fdb_del,
            "fdb_flush": self.op_fdb_flush, "stats": self.op_stats, "set": self.op_set,
        }

    # -- dispatch, and the one place errors are mapped ------------------------------------

    def handle(self, request: Any) -> dict[str, Any]:
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
            return {"ok": True, "result": self._ops[op](args)}
        except ApiError as exc:
            return reply_error(exc.code, exc.message)
        except NoSuchInterface as exc:
            return reply_error("no_such_interface", str(exc))
        except ValueError as exc:
            return reply_error("invalid", str(exc))
        except OSError as exc:
            code = "permission" if exc.errno in (errno.EPERM, errno.EACCES) else "kernel"
            return reply_error(code, f"the kernel refused: {exc.strerror or exc}")

    # -- helpers --------------------------------------------------------------------------

    def _switch(self, name: str) -> Switch:
        check_switch_name(name)
        try:
            return self.switches[name]
        except KeyError:
            raise ApiError("not_found", f"no switch {name}") from None

    def _port(self, ref: str) -> tuple[Switch, str]:
        switch_name, port = parse_port_ref(ref)
        sw = self._switch(switch_name)
        if port not in sw.ports():
            raise ApiError("not_found", f"no port {ref}")
        return sw, port

    def owner_of(self, ifname: str) -> Switch | None:
        for sw in self.switches.values():
            if ifname in sw.ports():
                return sw
        return None

    def port_summary(self, sw: Switch, port: str) -> dict[str, Any]:
        info = sw.port_info(port)
        ifindex = sw.ifindex(port)
        state = "up" if info["up"] else "down"
        if ifindex is not None and interface_state(port, ifindex) == "missing":
            state = "missing"
        return {"switch": sw.name, "port": port, "index": info["index"],
                "kind": "interface" if info["kind"] == "packet" else info["kind"],
                "ifname": port if ifindex is not None else None, "ifindex": ifindex,
                "state": state}

    # -- operations -----------------------------------------------------------------------

    def op_version(self, args: dict[str, Any]) -> dict[str, Any]:
        from vale import __version__
        return {"api": API_VERSION, "vale": __version__}

    def op_list(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        return [self.port_summary(sw, port)
                for name in sorted(self.switches)
                for sw in [self.switches[name]] for port in sw.ports()]

    def op_attach(self, args: dict[str, Any]) -> dict[str, Any]:
        switch_name, ifname = parse_port_ref(_arg(args, "port", str))
        settings = {key: parse_setting(key, value, ATTACH_KEYS[key])
                    for key, value in _arg(args, "settings", dict, {}).items()
                    if key in ATTACH_KEYS or self._unknown(key, ATTACH_KEYS)}
        if "offloads" in settings:
            settings["vnet"] = settings.pop("offloads")
        owner = self.owner_of(ifname)
        if owner is not None:
            raise ApiError("already_attached", f"{ifname} is already attached to {owner.name}")
        sw = self.switches.get(switch_name)
        created = sw is None
        if sw is None:
            sw = Switch(switch_name)        # a switch appears on its first attach, as in VALE
        try:
            sw.attach(ifname, **settings)
        except BaseException:
            if created:
                sw.stop()
            raise
        if created:
            self.switches[switch_name] = sw
            sw.start()
            if self._on_added:
                self._on_added(sw)
        log.info("attached %s to %s", ifname, switch_name)
        return self.port_summary(sw, ifname)

    def _unknown(self, key: str, known: dict[str, Any]) -> bool:
        raise ApiError("invalid", f"unknown setting {key!r}; known: {', '.join(sorted(known))}")

    def op_detach(self, args: dict[str, Any]) -> None:
        sw, port = self._port(_arg(args, "port", str))
        sw.remove_port(port)
        log.info("detached %s from %s", port, sw.name)
        if not sw.ports():                  # and goes with its last port
            self.remove_switch(sw)

    def remove_switch(self, sw: Switch) -> None:
        sw.stop()
        for port in sw.ports():
            sw.remove_port(port)
        del self.switches[sw.name]
        if self._on_removed:
            self._on_removed(sw)

    def op_info(self, args: dict[str, Any]) -> dict[str, Any]:
        sw, port = self._port(_arg(args, "port", str))
        info = sw.port_info(port)
        info.pop("name", None)
        info["offloads"] = info.pop("vnet")
        return {**self.port_summary(sw, port), "settings": info,
                "counters": sw.stats()["ports"][port]}

    def op_fdb_show(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        sw = self._switch(_arg(args, "switch", str))
        port = _arg(args, "port", str, None)
        if port is not None and port not in sw.ports():
            raise ApiError("not_found", f"no port {sw.name}:{port}")
        return [{"mac": e.mac, "port": e.port, "static": e.static, "age": round(e.age, 3)}
                for e in sw.fdb_show(port)]

    def op_fdb_add(self, args: dict[str, Any]) -> None:
        sw, port = self._port(f"{_arg(args, 'switch', str)}:{_arg(args, 'port', str)}")
        sw.fdb_add(_arg(args, "mac", str), port)

    def op_fdb_del(self, args: dict[str, Any]) -> None:
        sw = self._switch(_arg(args, "switch", str))
        try:
            sw.fdb_del(_arg(args, "mac", str))
        except ValueError as exc:
            raise ApiError("not_found", str(exc)) from None

    def op_fdb_flush(self, args: dict[str, Any]) -> dict[str, int]:
        sw = self._switch(_arg(args, "switch", str))
        port = _arg(args, "port", str, None)
        if port is not None and port not in sw.ports():
            raise ApiError("not_found", f"no port {sw.name}:{port}")
        return {"removed": sw.fdb_flush(port, statics=_arg(args, "statics", bool, False))}

    def op_stats(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        target = _arg(args, "target", str, None)
        if target is None:
            return [self.switches[name].stats() for name in sorted(self.switches)]
        if ":" in target:
            sw, port = self._port(target)
            stats = sw.stats()
            stats["ports"] = {port: stats["ports"][port]}
            return [stats]
        return [self._switch(target).stats()]

    def op_set(self, args: dict[str, Any]) -> dict[str, Any]:
        target = _arg(args, "target", str)
        raw = _arg(args, "settings", dict)
        if not raw:
            raise ApiError("bad_request", "nothing to set")
        if ":" in target:
            sw, port = self._port(target)
            settings = {key: parse_setting(key, value, PORT_KEYS[key])
                        for key, value in raw.items()
                        if key in PORT_KEYS or self._unknown(key, PORT_KEYS)}
            if "offloads" in settings:
                settings["vnet"] = settings.pop("offloads")
            sw.set_port(port, **settings)
            return self.op_info({"port": target})["settings"]
        sw = self._switch(target)
        settings = {key: parse_setting(key, value, SWITCH_KEYS[key])
                    for key, value in raw.items()
                    if key in SWITCH_KEYS or self._unknown(key, SWITCH_KEYS)}
        sw.configure(**settings)
        return {**sw.stats()["settings"], "cpus": sw.cpus}

    # -- housekeeping, from the daemon's timer --------------------------------------------

    def housekeeping(self) -> None:
        """Count kernel ring drops; bring back ports whose link came back up."""
        for sw in list(self.switches.values()):
            sw.core.poll_kernel_drops()
            for port in sw.ports():
                ifindex = sw.ifindex(port)
                if ifindex is None or sw.port_info(port)["up"]:
                    continue
                if interface_state(port, ifindex) == "up":
                    sw.core.set_port(sw.port_index(port), up=True)
                    log.info("%s:%s is up again", sw.name, port)

    def shutdown(self) -> None:
        for sw in list(self.switches.values()):
            self.remove_switch(sw)
