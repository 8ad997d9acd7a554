"""The desired configuration: typed records, checked on load, saved atomically on every
change, read at start.

On disk one JSON document (version 1): switches with their settings, ports with theirs,
static FDB entries and mirrors, and the interfaces the daemon created. A file that cannot
be taken as a whole (not JSON, or JSON of the wrong shape or with values out of range) is
moved aside with one log line saying why, and the daemon starts empty rather than
crash-looping.
"""

from __future__ import annotations

import ipaddress
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
from vale.names import (
    check_address,
    check_netns_name,
    check_port_name,
    check_switch_name,
    key_to_mac,
    mac_to_key,
)

log = logging.getLogger("vale.state")

DEFAULT_STATE_DIR = "/var/lib/vale"
STATE_FILE = "state.json"
VERSION = 1
DIRECTIONS = ("rx", "tx", "both")
# The fields an interface record of each kind has, beyond kind and switch.
KIND_FIELDS = {"veth": ("peer", "netns", "address"), "tap": ("netns", "address", "mac"),
               "persistent_tap": ("owner", "group"),
               "vhost_user": ("path", "mode", "owner", "group"),
               "memif": ("path", "iface_id", "secret", "owner", "group"),
               "vxlan": ("vni", "remote", "local", "dstport")}
VHOST_MODES = ("server", "client")     # vale listens on path, or connects to it
MEMIF_MAX_ID = 0xFFFFFFFF
MEMIF_MAX_SECRET = 23                   # bytes: the protocol's 24, ending in a zero
VXLAN_MAX_VNI = (1 << 24) - 1
VXLAN_PORT = 4789                       # IANA's


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
    owner: str | None = None    # persistent_tap, vhost_user: who may open it
    group: str | None = None
    path: str | None = None     # vhost_user, memif: its socket
    mode: str | None = None     # vhost_user: a VHOST_MODES
    iface_id: int | None = None     # memif: the interface id a program gives
    secret: str | None = None   # memif: what a program must give, if set
    vni: int | None = None      # vxlan: its network identifier
    remote: str | None = None   # vxlan: the far end's address
    local: str | None = None    # vxlan: this end's (None: the route's)
    dstport: int | None = None  # vxlan: the UDP port

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


# -- the loader: JSON in, records out, or StateError naming the field and why ----------
#
# Every field is checked: its type, its range (settings through vale.settings' table), the
# names (switches, ports, namespaces, users), MACs and addresses, and that the records
# agree with each other as the API keeps them (a static entry or a mirror names a port of
# its switch, a port is on one switch only, no mirror chains, no veth with its own peer on
# the same switch). Unknown keys are errors, not ignored: valed writes this file whole, so
# an unknown key is a hand edit gone wrong or a file from a newer vale, and reading the
# rest would quietly drop configuration. What the machine may refuse although the file is
# well formed (a CPU it lacks, a namespace gone after a reboot, a user deleted) is left to
# the restore, which logs it and starts the rest.

MAX_DEPTH = 6               # containers: state.switches.S.ports.P.allowed_macs is the deepest
MAX_MESSAGE = 400           # a log line's reason, not a copy of a huge value


class StateError(ValueError):
    """What is wrong with a state document; `where` names the field
    (switches.vale0.ports.p1.vlan)."""

    def __init__(self, where: str, why: str) -> None:
        why = why if len(why) <= MAX_MESSAGE else why[:MAX_MESSAGE] + "..."
        super().__init__(f"{where}: {why}")
        self.where = where


T = TypeVar("T")


def _key(key: Any) -> str:
    """A key as a path shows it: as it is, unless it would garble the log line."""
    text = str(key)
    return text if text and text.isprintable() and len(text) <= 64 else repr(text)[:66]


def _check_depth(doc: Any) -> None:
    """StateError for containers nested deeper than any document valed writes: the rest
    of the loader, and whatever logs a value, then never recurses far."""
    stack = [(doc, "", 1)]
    while stack:
        value, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise StateError(where, f"nested deeper than a state document goes ({MAX_DEPTH} "
                                    "levels)")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(item, (dict, list)):
                inner = f"{where}[{key}]" if isinstance(value, list) else \
                    f"{where}.{_key(key)}" if where else _key(key)
                stack.append((item, inner, depth + 1))


def _object(where: str, value: Any, required: tuple[str, ...],
            optional: tuple[str, ...] = ()) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise StateError(where, f"an object expected, not {type(value).__name__}")
    missing = [key for key in required if key not in value]
    unknown = sorted(_key(key) for key in set(value) - set(required) - set(optional))
    if missing or unknown:
        raise StateError(where, "; ".join(
            ([f"missing {', '.join(missing)}"] if missing else [])
            + ([f"unknown {', '.join(unknown)}"] if unknown else [])))
    return value


def _map(where: str, value: Any, check_key: Callable[[str], Any],
         load: Callable[[str, Any], T]) -> dict[str, T]:
    if not isinstance(value, dict):
        raise StateError(where, f"an object expected, not {type(value).__name__}")
    out: dict[str, T] = {}
    for key, item in value.items():
        try:
            check_key(key)
        except ValueError as exc:
            raise StateError(f"{where}.{_key(key)}", str(exc)) from None
        out[key] = load(f"{where}.{_key(key)}", item)
    return out


def _text(where: str, value: Any, optional: bool = True) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise StateError(where, f"a string expected, not {type(value).__name__}")
    return value


def _checked(where: str, value: Any, check: Callable[[str], Any]) -> str | None:
    """An optional string that `check` (raising ValueError) takes."""
    text = _text(where, value)
    if text is not None:
        try:
            check(text)
        except ValueError as exc:
            raise StateError(where, str(exc)) from None
    return text


def _settings(where: str, value: Any, scope: str) -> dict[str, Any]:
    """Settings of `scope`, each checked by its entry in vale.settings, by its own path."""
    if not isinstance(value, dict):
        raise StateError(where, f"an object expected, not {type(value).__name__}")
    known = settings.of_scope(scope)
    parsed: dict[str, Any] = {}
    for name, raw in value.items():
        if name not in known:
            raise StateError(f"{where}.{_key(name)}", "unknown setting; known: "
                             + ", ".join(sorted(known)))
        try:
            parsed[name] = known[name].parse(raw)
        except ValueError as exc:
            raise StateError(f"{where}.{name}", str(exc)) from None
    if scope == "attach" and ("vlan" in parsed or "native" in parsed):
        try:
            settings.merge_vlan(("none", 0), parsed)   # a port's vlan and native go together
        except ValueError as exc:
            raise StateError(f"{where}.{'native' if 'native' in parsed else 'vlan'}",
                             str(exc)) from None
    return parsed


def _port(where: str, value: Any) -> Port:
    return Port(_settings(where, value, "attach"))


def _mirror(where: str, value: Any) -> Mirror:
    doc = _object(where, value, ("to", "direction"))
    to = _checked(f"{where}.to", doc["to"], check_port_name)
    if to is None:
        raise StateError(f"{where}.to", "a port name expected, not null")
    if doc["direction"] not in DIRECTIONS:
        raise StateError(f"{where}.direction", f"rx, tx or both, not {doc['direction']!r}")
    return Mirror(to, doc["direction"])


def _switch(where: str, value: Any) -> SwitchConfig:
    doc = _object(where, value, ("settings", "ports", "fdb"), ("mirrors",))
    ports = _map(f"{where}.ports", doc["ports"], check_port_name, _port)
    fdb: dict[str, str] = {}
    for name, port in _map(f"{where}.fdb", doc["fdb"], parse_static,
                           lambda w, port: _checked(w, port, check_port_name)).items():
        canonical = static_name(*parse_static(name))    # as the API names them
        if port is None or port not in ports:
            raise StateError(f"{where}.fdb.{name}", f"not a port of the switch: {port!r}")
        if canonical in fdb:
            raise StateError(f"{where}.fdb.{name}", f"the same entry as {canonical}, twice")
        fdb[canonical] = port
    mirrors = _map(f"{where}.mirrors", doc.get("mirrors", {}), check_port_name, _mirror)
    for source, rule in mirrors.items():
        if source not in ports or rule.to not in ports:
            raise StateError(f"{where}.mirrors.{source}",
                             f"{source if source not in ports else rule.to} is not a port "
                             "of the switch")
        if rule.to == source or rule.to in mirrors:
            raise StateError(f"{where}.mirrors.{source}.to",
                             f"{rule.to} is mirrored itself: a mirror loop")
    return SwitchConfig(settings=_settings(f"{where}.settings", doc["settings"], "switch"),
                        ports=ports, fdb=fdb, mirrors=mirrors)


def static_name(mac: str, vlan: int) -> str:
    """How the state file names a static entry: its MAC, with @VLAN unless VLAN 0."""
    return f"{mac}@{vlan}" if vlan else mac


def parse_static(name: str) -> tuple[str, int]:
    """static_name's inverse: (the MAC as key_to_mac writes it, VLAN); ValueError for a
    bad one."""
    mac, at, vlan = name.partition("@")
    key = mac_to_key(mac)
    number = int(vlan) if at and vlan.isascii() and vlan.isdigit() and len(vlan) <= 4 \
        else (0 if not at else -1)
    if key == 0 or key & 1 or not 0 <= number <= MAX_VLAN:
        raise ValueError(f"a static entry needs a unicast, non-zero MAC and a VLAN of 0 to "
                         f"{MAX_VLAN}, not {name}")
    return key_to_mac(key), number


def unicast_mac(mac: str) -> str:
    """A MAC an interface can have (unicast, not zero), as key_to_mac writes it."""
    key = mac_to_key(mac)
    if key == 0 or key & 1:
        raise ValueError(f"{mac} is not a unicast address an interface can have")
    return key_to_mac(key)


def check_account(name: str) -> str:
    """A user or group as a persistent TAP's owner names it: a name /etc/passwd can hold,
    or a number. Whether it exists is asked when the TAP is made."""
    if not name or len(name) > 256 or not name.isprintable() or ":" in name \
            or any(c.isspace() for c in name):
        raise ValueError(f"not a user or group: {name!r}")
    return name


def _interface(where: str, value: Any) -> Interface:
    kind = value.get("kind") if isinstance(value, dict) else None
    if not isinstance(kind, str) or kind not in KIND_FIELDS:
        raise StateError(f"{where}.kind" if isinstance(value, dict) else where,
                         f"kind must be one of {', '.join(KIND_FIELDS)}")
    doc = _object(where, value, ("kind", "switch"), KIND_FIELDS[kind])
    record = Interface(kind, str(_checked(f"{where}.switch", doc["switch"], check_switch_name)))
    if kind == "vxlan":
        return _vxlan(where, doc, record)
    if kind in ("veth", "tap"):
        record.netns = _checked(f"{where}.netns", doc.get("netns"), check_netns_name)
        record.address = _checked(f"{where}.address", doc.get("address"), check_address)
    if kind == "veth":
        record.peer = _checked(f"{where}.peer", doc.get("peer"), check_port_name)
        if record.peer is None:
            raise StateError(f"{where}.peer", "a veth needs its peer's name")
    elif kind == "tap":
        mac = _checked(f"{where}.mac", doc.get("mac"), unicast_mac)
        record.mac = None if mac is None else unicast_mac(mac)
        if record.address is not None and record.netns is None:
            raise StateError(f"{where}.address", "a TAP gets its address in its namespace, "
                                                 "and it has none")
    else:
        record.owner = _checked(f"{where}.owner", doc.get("owner"), check_account)
        record.group = _checked(f"{where}.group", doc.get("group"), check_account)
    if kind == "vhost_user":
        record.path = _checked(f"{where}.path", doc.get("path"), check_socket_path)
        record.mode = _checked(f"{where}.mode", doc.get("mode"), check_vhost_mode)
        if record.path is None or record.mode is None:
            raise StateError(where, "a vhost-user port needs its socket's path and mode")
    if kind == "memif":
        record.path = _checked(f"{where}.path", doc.get("path"), check_socket_path)
        record.secret = _checked(f"{where}.secret", doc.get("secret"), check_memif_secret)
        iface_id = doc.get("iface_id")
        if record.path is None or not isinstance(iface_id, int) or isinstance(iface_id, bool):
            raise StateError(where, "a memif port needs its socket's path and its id")
        try:
            record.iface_id = check_memif_id(iface_id)
        except ValueError as exc:
            raise StateError(f"{where}.iface_id", str(exc)) from None
    return record


def check_socket_path(path: str) -> str:
    """A Unix socket's path: absolute, normalised, and short enough for sun_path."""
    if (not isinstance(path, str) or not path.startswith("/") or len(path.encode()) > 107
            or not path.isprintable() or os.path.normpath(path) != path):
        raise ValueError(f"not an absolute socket path of at most 107 bytes: {path!r}")
    return path


def check_vhost_mode(mode: str) -> str:
    if mode not in VHOST_MODES:
        raise ValueError(f"a vhost-user mode is {' or '.join(VHOST_MODES)}, not {mode!r}")
    return mode


def _vxlan(where: str, doc: dict[str, Any], record: Interface) -> Interface:
    record.remote = _checked(f"{where}.remote", doc.get("remote"), check_ip)
    record.local = _checked(f"{where}.local", doc.get("local"), check_ip)
    for key, check in (("vni", check_vni), ("dstport", check_udp_port)):
        value = doc.get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise StateError(f"{where}.{key}", "a number")
        try:
            setattr(record, key, check(value))
        except ValueError as exc:
            raise StateError(f"{where}.{key}", str(exc)) from None
    if record.remote is None:
        raise StateError(where, "a VXLAN port needs its remote address")
    return record


def check_vni(vni: int) -> int:
    if not 0 < vni <= VXLAN_MAX_VNI:
        raise ValueError(f"a VNI is 1 to {VXLAN_MAX_VNI}, not {vni}")
    return vni


def check_udp_port(port: int) -> int:
    if not 0 < port <= 0xFFFF:
        raise ValueError(f"a UDP port is 1 to 65535, not {port}")
    return port


def check_ip(text: str) -> str:
    """An IPv4 or IPv6 address, unicast."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"not an IP address: {text!r}") from None
    if address.is_multicast or address.is_unspecified:
        raise ValueError(f"not a unicast address: {text}")
    return str(address)


def check_memif_id(iface_id: int) -> int:
    if not 0 <= iface_id <= MEMIF_MAX_ID:
        raise ValueError(f"a memif id is 0 to {MEMIF_MAX_ID}, not {iface_id}")
    return iface_id


def check_memif_secret(secret: str) -> str:
    if not secret.isprintable() or not 0 < len(secret.encode()) <= MEMIF_MAX_SECRET:
        raise ValueError(f"a memif secret is 1 to {MEMIF_MAX_SECRET} printable bytes")
    return secret


def _check_references(state: State) -> None:
    """The records agree with each other as the API keeps them."""
    seen: dict[str, str] = {}
    for switch, config in state.switches.items():
        for port in config.ports:
            if port in seen:
                raise StateError(f"switches.{switch}.ports.{port}",
                                 f"also a port of {seen[port]}: one interface, one switch")
            seen[port] = switch
    for name, record in state.interfaces.items():
        where = f"interfaces.{_key(name)}"
        if record.kind == "veth" and record.peer == name:
            raise StateError(f"{where}.peer", "a veth's peer cannot have its own name")
        if name in seen and seen[name] != record.switch:
            raise StateError(f"{where}.switch", f"{record.switch}, but it is a port of "
                                                f"{seen[name]}")
        if record.kind == "veth" and record.netns is None:
            if seen.get(record.peer or "") == record.switch:
                raise StateError(f"{where}.peer", f"{record.peer} is a port of "
                                 f"{record.switch} too: a veth and its own peer on one "
                                 "switch are a loop")
            if record.peer in state.interfaces:
                raise StateError(f"{where}.peer", f"{record.peer} is an interface of its "
                                                  "own here")


def load_state(doc: Any) -> State:
    """A decoded document as records; StateError names the field that is wrong, and why.
    Nothing else is raised, whatever the document (tests/test_state.py fuzzes it)."""
    top = _object("state", doc, ("version", "switches", "interfaces"))
    _check_depth(top)
    if type(top["version"]) is not int or top["version"] != VERSION:
        raise StateError("version", f"not a version {VERSION} state document: "
                                    f"{top['version']!r}")
    state = State(switches=_map("switches", top["switches"], check_switch_name, _switch),
                  interfaces=_map("interfaces", top["interfaces"], check_port_name,
                                  _interface))
    _check_references(state)
    return state


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
            doc = json.loads(raw)
        except (ValueError, RecursionError) as exc:   # RecursionError: nested too deep
            self._set_aside(StateError("state", f"not JSON: {exc or 'nested too deep'}"))
            return State()
        try:
            return load_state(doc)
        except StateError as exc:
            self._set_aside(exc)
        except Exception as exc:        # a bug in the loader: still no crash loop
            log.exception("the state loader failed")
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
