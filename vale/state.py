"""The desired configuration: typed records, checked on load, saved atomically on every
change, read at start.

On disk one JSON document (version 1): switches with their settings, ports with theirs,
static FDB entries and mirrors, and the interfaces the daemon created. A file that cannot
be taken as a whole (not JSON, or JSON of the wrong shape or with values out of range) is
moved aside with one log line saying why, and the daemon starts empty rather than
crash-looping.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from vale import settings
from vale._fastpath import MAX_VLAN
from vale.names import check_port_name, check_switch_name, key_to_mac, mac_to_key

log = logging.getLogger("vale.state")

DEFAULT_STATE_DIR = "/var/lib/vale"
STATE_FILE = "state.json"
VERSION = 1
DIRECTIONS = ("rx", "tx", "both")
# The fields an interface record of each kind has, beyond kind and switch.
KIND_FIELDS = {"veth": ("peer", "netns", "address"), "tap": ("netns", "address", "mac"),
               "persistent_tap": ("owner", "group")}


@dataclass
class Mirror:
    to: str                     # the port that gets the copies
    direction: str              # rx, tx or both


@dataclass
class Port:
    settings: dict[str, Any] = field(default_factory=dict)     # as set, by name


@dataclass
class SwitchConfig:
    settings: dict[str, Any] = field(default_factory=dict)     # as set, by name
    ports: dict[str, Port] = field(default_factory=dict)       # in attach order
    fdb: dict[str, str] = field(default_factory=dict)          # static: MAC[@VLAN] -> port
    mirrors: dict[str, Mirror] = field(default_factory=dict)   # source port -> its mirror


@dataclass
class Interface:
    """An interface valed created (valectl create), made again at start."""
    kind: str                   # a key of KIND_FIELDS
    switch: str
    peer: str | None = None     # veth: the far end
    netns: str | None = None    # veth: the peer's namespace; tap: the TAP's
    address: str | None = None
    mac: str | None = None      # tap: made again with the MAC it had
    owner: str | None = None    # persistent_tap: who may open it
    group: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "switch": self.switch,
                **{key: getattr(self, key) for key in KIND_FIELDS[self.kind]}}


@dataclass
class State:
    switches: dict[str, SwitchConfig] = field(default_factory=dict)
    interfaces: dict[str, Interface] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The document as saved (insertion order: ports keep theirs)."""
        return {
            "version": VERSION,
            "switches": {name: {"settings": dict(sw.settings),
                                "ports": {p: dict(port.settings) for p, port in sw.ports.items()},
                                "fdb": dict(sw.fdb),
                                "mirrors": {s: {"to": m.to, "direction": m.direction}
                                            for s, m in sw.mirrors.items()}}
                         for name, sw in self.switches.items()},
            "interfaces": {name: i.to_json() for name, i in self.interfaces.items()},
        }


# -- the loader: JSON in, records out, or StateError saying where and why ----------------

class StateError(ValueError):
    pass


T = TypeVar("T")


def _object(where: str, value: Any, required: tuple[str, ...],
            optional: tuple[str, ...] = ()) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise StateError(f"{where}: an object expected, not {type(value).__name__}")
    missing = [key for key in required if key not in value]
    unknown = sorted(set(value) - set(required) - set(optional))
    if missing or unknown:
        raise StateError(f"{where}: " + "; ".join(
            ([f"missing {', '.join(missing)}"] if missing else [])
            + ([f"unknown {', '.join(map(str, unknown))}"] if unknown else [])))
    return value


def _map(where: str, value: Any, check_key: Callable[[str], Any],
         load: Callable[[str, Any], T]) -> dict[str, T]:
    if not isinstance(value, dict):
        raise StateError(f"{where}: an object expected, not {type(value).__name__}")
    out: dict[str, T] = {}
    for key, item in value.items():
        try:
            check_key(key)
        except ValueError as exc:
            raise StateError(f"{where}: {exc}") from None
        out[key] = load(f"{where}.{key}", item)
    return out


def _text(where: str, value: Any, optional: bool = True) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise StateError(f"{where}: a string expected, not {value!r}")
    return value


def _settings(scope: str) -> Callable[[str, Any], dict[str, Any]]:
    def load(where: str, value: Any) -> dict[str, Any]:
        try:
            return settings.parse(scope, value)
        except ValueError as exc:
            raise StateError(f"{where}: {exc}") from None
    return load


def _port(where: str, value: Any) -> Port:
    return Port(_settings("attach")(where, value))


def _mirror(where: str, value: Any) -> Mirror:
    doc = _object(where, value, ("to", "direction"))
    to = _text(f"{where}.to", doc["to"], optional=False)
    if doc["direction"] not in DIRECTIONS:
        raise StateError(f"{where}.direction: rx, tx or both, not {doc['direction']!r}")
    assert to is not None
    return Mirror(to, doc["direction"])


def _switch(where: str, value: Any) -> SwitchConfig:
    doc = _object(where, value, ("settings", "ports", "fdb"), ("mirrors",))
    return SwitchConfig(
        settings=_settings("switch")(f"{where}.settings", doc["settings"]),
        ports=_map(f"{where}.ports", doc["ports"], check_port_name, _port),
        fdb={static_name(*parse_static(name)): port for name, port in  # as the API names them
             _map(f"{where}.fdb", doc["fdb"], _static_mac,
                  lambda w, port: str(_text(w, port, optional=False))).items()},
        mirrors=_map(f"{where}.mirrors", doc.get("mirrors", {}), check_port_name, _mirror))


def static_name(mac: str, vlan: int) -> str:
    """How the state file names a static entry: its MAC, with @VLAN unless VLAN 0."""
    return f"{mac}@{vlan}" if vlan else mac


def parse_static(name: str) -> tuple[str, int]:
    """static_name's inverse: (the MAC as key_to_mac writes it, VLAN); ValueError for a
    bad one."""
    mac, at, vlan = name.partition("@")
    key = mac_to_key(mac)
    number = int(vlan) if at and vlan.isdigit() else (0 if not at else -1)
    if key == 0 or key & 1 or not 0 <= number <= MAX_VLAN:
        raise ValueError(f"a static entry needs a unicast, non-zero MAC and a VLAN of 0 to "
                         f"{MAX_VLAN}, not {name}")
    return key_to_mac(key), number


def _static_mac(name: str) -> None:
    parse_static(name)


def _interface(where: str, value: Any) -> Interface:
    kind = value.get("kind") if isinstance(value, dict) else None
    if kind not in KIND_FIELDS:
        raise StateError(f"{where}: kind must be one of {', '.join(KIND_FIELDS)}")
    doc = _object(where, value, ("kind", "switch"), KIND_FIELDS[kind])
    try:
        check_switch_name(doc["switch"])
        if kind == "veth":
            check_port_name(doc.get("peer"))
    except ValueError as exc:
        raise StateError(f"{where}: {exc}") from None
    return Interface(kind, doc["switch"], **{key: _text(f"{where}.{key}", doc.get(key))
                                             for key in KIND_FIELDS[kind]})


def load_state(doc: Any) -> State:
    """A decoded document as records; StateError says what is wrong, and where."""
    top = _object("state", doc, ("version", "switches", "interfaces"))
    if top["version"] != VERSION:
        raise StateError(f"not a version {VERSION} state document")
    return State(switches=_map("switches", top["switches"], check_switch_name, _switch),
                 interfaces=_map("interfaces", top["interfaces"], check_port_name,
                                 _interface))


class StateFile:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)
        self.path = self.dir / STATE_FILE

    def load(self) -> State:
        """The saved configuration; an empty one when there is none or it is unusable."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return State()
        try:
            return load_state(json.loads(raw))
        except (ValueError, RecursionError) as exc:   # RecursionError: nested too deep
            self._set_aside(exc)
            return State()

    def _set_aside(self, why: Exception) -> None:
        aside = self.path.with_name(f"{STATE_FILE}.corrupt-{int(time.time())}")
        try:
            os.replace(self.path, aside)
        except OSError as exc:
            log.error("state file %s is unusable (%s) and cannot be moved aside (%s); "
                      "starting empty", self.path, why, exc.strerror or exc)
            return
        log.error("state file %s is unusable (%s): moved to %s; starting empty",
                  self.path, why, aside)

    def save(self, state: State) -> None:
        """Write, fsync, rename over the old file, fsync the directory: after a crash the
        file is the old version or the new one, never a mix."""
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
        data = json.dumps(state.to_json(), indent=1).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
        try:
            try:
                view = memoryview(data)
                while view:                 # a short write (a full disk) is not the end
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        dirfd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)
