"""The settings users change, each defined once: name, type and range, default, scope, help.

The API validates `set`, `attach` and `create` with this table, Switch maps each setting
onto the core's keyword, the state file is checked against it, valectl prints it, and the
settings section of docs/operations.md is rendered from it (markdown_table). Adding a
setting is one entry in SETTINGS (and the core taking its keyword).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from vale import limits
from vale._fastpath import (
    BPDU_MODES,
    DEFAULT_BATCH,
    DEFAULT_RX_FRAMES,
    DEFAULT_SPIN_US,
    LOOKUP_NAMES,
    MAX_ALLOWED_MACS,
    MAX_BATCH,
    MAX_BUSY_POLL_US,
    MAX_FDB_CAPACITY,
    MAX_MOVE_LIMIT,
    MAX_RX_FRAMES,
    MAX_SECONDS,
    MAX_STORM_RATE,
    MAX_VLAN,
    MIN_RX_FRAMES,
    check_vlan,
)
from vale.names import key_to_mac, mac_to_key

MAX_CPUS = 8192                             # Linux's own limit (CONFIG_NR_CPUS at most)
AUTO_CPU = "auto"                           # cpus: one CPU chosen by valed (the default)
FASTPATH_MODES = ("on", "off", "tcx", "clsact")

Scope = Literal["switch", "port", "attach", "both"]


class SettingError(ValueError):
    """A value a setting does not take; the message names the setting."""


class Kind(Protocol):
    """A setting's type: parses what users type (text) or a JSON value."""

    def parse(self, name: str, value: Any) -> Any: ...

    def describe(self) -> str: ...

    def show(self, value: Any) -> str: ...


class Flag:
    TRUE = ("on", "true", "yes", "1")
    FALSE = ("off", "false", "no", "0")

    def parse(self, name: str, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        text = str(value).lower()
        if text in self.TRUE:
            return True
        if text in self.FALSE:
            return False
        raise SettingError(f"{name} takes on or off, not {value!r}")

    def describe(self) -> str:
        return "on or off"

    def show(self, value: Any) -> str:
        return "on" if value else "off"


@dataclass(frozen=True)
class Integer:
    low: int
    high: int

    def parse(self, name: str, value: Any) -> int:
        number: Any = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        elif isinstance(value, str):
            try:
                number = int(value.strip())
            except ValueError:
                pass
        if number is None or not self.low <= number <= self.high:
            raise SettingError(f"{name} takes an integer from {self.low} to {self.high}, "
                               f"not {value!r}")
        return number

    def describe(self) -> str:
        return f"integer {self.low}-{self.high}"

    def show(self, value: Any) -> str:
        return str(value)


@dataclass(frozen=True)
class Seconds:
    high: float

    def parse(self, name: str, value: Any) -> float:
        seconds = math.nan
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            try:
                seconds = float(value)
            except (ValueError, OverflowError):     # OverflowError: an int past any float
                pass
        if not 0 <= seconds <= self.high:           # NaN fails this too
            raise SettingError(f"{name} takes a number of seconds from 0 to {self.high:.0f}, "
                               f"not {value!r}")
        return seconds

    def describe(self) -> str:
        return f"seconds 0-{self.high:.0f}"

    def show(self, value: Any) -> str:
        return f"{value:g}"


class CpuList:
    """'0,2-3' -> [0, 2, 3]; '' or 'all' -> [] (no pinning); 'auto': one CPU valed
    chooses. A list of CPU numbers (JSON, the state file) is taken as it is."""

    def parse(self, name: str, value: Any) -> list[int] | str:
        if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool)
                                           and 0 <= v < MAX_CPUS for v in value):
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
            raise SettingError(f"{name} takes CPU numbers like 0,2-3 (each below {MAX_CPUS}, "
                               f"ranges low-high), all or {AUTO_CPU}, not {value!r}") from None
        return cpus

    def describe(self) -> str:
        return f"{AUTO_CPU}, all, or CPUs like 0,2-3"

    def show(self, value: Any) -> str:
        return value if isinstance(value, str) else ",".join(map(str, value)) or "all"


class Vlan:
    """A port's VLAN membership: 'none', 'access:N' or 'trunk:N,M,...' (N in 1..MAX_VLAN);
    canonical form back (trunk VLANs sorted, no repeats)."""

    def parse(self, name: str, value: Any) -> str:
        text = value.strip().lower() if isinstance(value, str) else ""
        mode, _, ids = text.partition(":")
        try:
            vlans = sorted({int(v) for v in ids.split(",")}) if ids else []
        except ValueError:
            vlans = [0]
        good = all(1 <= v <= MAX_VLAN for v in vlans) and (
            (mode == "none" and not ids) or (mode == "access" and len(vlans) == 1)
            or (mode == "trunk" and vlans))
        if not good:
            raise SettingError(f"{name} takes none, access:N or trunk:N,M,... (N from 1 to "
                               f"{MAX_VLAN}), not {value!r}")
        return mode if mode == "none" else f"{mode}:{','.join(map(str, vlans))}"

    def describe(self) -> str:
        return f"none, access:N or trunk:N,M,... (N 1-{MAX_VLAN})"

    def show(self, value: Any) -> str:
        return str(value)


def vlan_for_core(text: str) -> str | tuple[str, Any]:
    """The vlan setting ('none', 'access:10', 'trunk:10,20') as the core takes it."""
    mode, _, ids = text.partition(":")
    if mode == "access":
        return mode, int(ids)
    if mode == "trunk":
        return mode, [int(v) for v in ids.split(",")]
    return mode


def merge_vlan(now: tuple[str, int], changes: Mapping[str, Any]) -> tuple[str, int]:
    """A port's (vlan, native) after `changes`: a new vlan comes with its own native (0
    when not given); a native alone keeps the vlan. SettingError when the core would
    refuse the two together (a native on a port without a mode, one differing from an
    access port's VLAN), so that nothing refused is ever kept for later."""
    if "vlan" in changes:
        vlan, native = changes["vlan"], changes.get("native", 0)
    else:
        vlan, native = now[0], changes.get("native", now[1])
    try:
        check_vlan(vlan_for_core(vlan), native)
    except ValueError as exc:
        raise SettingError(f"vlan={vlan} native={native}: {exc}") from None
    return vlan, native


class MacList:
    """Unicast MAC addresses: 'M,M,...' or a JSON list of them; '' or 'any': none (a
    port with none takes any source). Canonical form back: lower case, sorted, no
    repeats."""

    def parse(self, name: str, value: Any) -> list[str]:
        if isinstance(value, str):
            text = value.strip().lower()
            value = [] if text in ("", "any") else [m.strip() for m in text.split(",")]
        if not isinstance(value, list):
            raise SettingError(f"{name} takes MAC addresses like 02:00:00:00:00:01,"
                               f"02:00:00:00:00:02 or any, not {value!r}")
        try:
            keys = {mac_to_key(mac) for mac in value}
        except ValueError as exc:
            raise SettingError(f"{name}: {exc}") from None
        if any(key & 1 for key in keys):
            raise SettingError(f"{name} takes unicast MACs only (a source is never a group)")
        if len(keys) > MAX_ALLOWED_MACS:
            raise SettingError(f"{name} takes at most {MAX_ALLOWED_MACS} MACs")
        return sorted(key_to_mac(key) for key in keys)

    def describe(self) -> str:
        return "MACs like 02:00:00:00:00:01,02:00:00:00:00:02, or any"

    def show(self, value: Any) -> str:
        return ",".join(value) or "any"


@dataclass(frozen=True)
class Choice:
    values: tuple[str, ...]

    def parse(self, name: str, value: Any) -> str:
        if value not in self.values:
            raise SettingError(f"{name} takes {' or '.join(self.values)}, not {value!r}")
        return str(value)

    def describe(self) -> str:
        return " or ".join(self.values)

    def show(self, value: Any) -> str:
        return str(value)


@dataclass(frozen=True)
class Setting:
    name: str
    scope: Scope        # switch-wide; per port (set at attach or later); at attach only;
                        # both switch-wide and per port (a port's own applies within it)
    kind: Kind
    default: Any
    help: str
    core: str | None    # the core's keyword for it; None: Switch applies it itself

    def parse(self, value: Any) -> Any:
        return self.kind.parse(self.name, value)


SETTINGS: tuple[Setting, ...] = (
    Setting("ageing", "switch", Seconds(MAX_SECONDS), 300.0,
            "a learned MAC is forgotten after this long without a frame from it (0: never)",
            "ageing"),
    Setting("fdb_capacity", "switch", Integer(1, MAX_FDB_CAPACITY), 65536,
            "entries the MAC table holds; shrinking it evicts learned entries; at most "
            f"valed's --max-fdb-capacity ({limits.BY_OPTION['max-fdb-capacity'].default} "
            "unless set)", "capacity"),
    Setting("batch", "switch", Integer(1, MAX_BATCH), DEFAULT_BATCH,
            "most frames taken from one port in one go", "batch"),
    Setting("move_limit", "switch", Integer(0, MAX_MOVE_LIMIT), 4,
            "moves between ports a MAC may make within move_window before it is banned "
            "(0: no limit)", "move_limit"),
    Setting("move_window", "switch", Seconds(MAX_SECONDS), 10.0,
            "the window move_limit counts in", "move_window"),
    Setting("ban", "switch", Seconds(MAX_SECONDS), 60.0,
            "how long a MAC that moved too often is not learned", "ban"),
    Setting("busy_poll_us", "switch", Integer(0, MAX_BUSY_POLL_US), DEFAULT_SPIN_US,
            "microseconds the forwarding thread keeps polling after a frame before it "
            "sleeps (0: never spins)", "busy_poll_us"),
    Setting("cpus", "switch", CpuList(), AUTO_CPU,
            "where the forwarding thread runs: one CPU valed chooses, any CPU, or these",
            None),
    Setting("lookup", "switch", Choice(LOOKUP_NAMES), LOOKUP_NAMES[0],
            "how frames find their ports: learning (learn sources, forward known unicast, "
            "flood the rest) or hub (learn nothing, flood every frame within its VLAN); a "
            "change forgets what was learned", "lookup"),
    Setting("loop_probe", "switch", Seconds(MAX_SECONDS), 0.5,
            "seconds between the loop guard's probes out of every port; a port a probe "
            "comes back through closes a loop and is blocked (0: no probes)", None),
    Setting("loop_hold", "switch", Seconds(MAX_SECONDS), 30.0,
            "how long the loop guard blocks a port that closed a loop; then it is let "
            "through again, and blocked again if the loop is still there", "loop_hold"),
    Setting("fastpath", "both", Choice(FASTPATH_MODES), FASTPATH_MODES[0],
            "the kernel fast path: known unicast between interface ports forwarded by a BPF "
            "program at tc ingress (on: tcx where the kernel has it, else clsact; tcx or "
            "clsact: only that way; off: every frame through vale); on a switch for all its "
            "ports, on a port for that one", None),
    Setting("learning", "port", Flag(), True,
            "learn the source MACs of the frames the port sends in", "learning"),
    Setting("flood", "port", Flag(), True, "send the port unknown unicast", "flood"),
    Setting("learn_limit", "port", Integer(0, MAX_FDB_CAPACITY), 0,
            "most MACs learned on the port (0: no limit)", "learn_limit"),
    Setting("offloads", "port", Flag(), True,
            "hand the port offloaded frames (GSO, partial checksums) as they are; off: "
            "segment and checksum them first", "vnet"),
    Setting("vlan", "port", Vlan(), "none",
            "802.1Q: none (tags carried as they come), access:N (VLAN N, untagged on the "
            "wire) or trunk:N,M,... (those VLANs tagged); a change forgets what the port "
            "learned", None),
    Setting("native", "port", Integer(0, MAX_VLAN), 0,
            "a trunk's VLAN for untagged frames, sent untagged (0: untagged frames are "
            "dropped)", None),
    Setting("storm_broadcast", "port", Integer(0, MAX_STORM_RATE), 0,
            "broadcast frames a second the port may send in (storm control; 0: no limit)",
            None),
    Setting("storm_multicast", "port", Integer(0, MAX_STORM_RATE), 0,
            "multicast frames a second the port may send in (0: no limit)", None),
    Setting("storm_unknown", "port", Integer(0, MAX_STORM_RATE), 0,
            "unknown-unicast frames a second the port may send in (0: no limit)", None),
    Setting("allowed_macs", "port", MacList(), [],
            "the source MACs the port may send from; frames from others are dropped "
            "(spoofed) before they are learned (any: no check)", None),
    Setting("sticky", "port", Integer(0, MAX_ALLOWED_MACS), 0,
            "the port may send from at most this many sources: its allowed_macs, then the "
            "first others it sends from, kept while the port lives (0: off)", None),
    Setting("bpdu", "port", Choice(BPDU_MODES), BPDU_MODES[0],
            "spanning-tree BPDUs (to 01:80:c2:00:00:00) the port sends in: forward, drop "
            "(counted bpdu), or guard (dropped, and the port blocked: every frame from it "
            "dropped until bpdu is set again)", None),
    Setting("rx_frames", "attach", Integer(MIN_RX_FRAMES, MAX_RX_FRAMES), DEFAULT_RX_FRAMES,
            "frames in an interface port's receive ring, rounded up to whole blocks of 15; "
            "given at attach; at most valed's --max-rx-frames "
            f"({limits.BY_OPTION['max-rx-frames'].default} unless set)", "rx_frames"),
    Setting("rx_frames_idle", "attach", Integer(0, MAX_RX_FRAMES), 0,
            "frames an interface port's receive ring starts with, rounded up to blocks of 15 "
            "(1 MiB each): it grows to rx_frames at the first burst of 4 frames; for "
            "switches of many mostly idle ports. A first burst longer than it loses what "
            "does not fit (ring_full). 0: rx_frames from the start", "rx_idle_frames"),
)
BY_NAME: Mapping[str, Setting] = {s.name: s for s in SETTINGS}

# What each scope takes: a port is given attach-only settings when it is attached.
SCOPES: Mapping[str, tuple[Scope, ...]] = {
    "switch": ("switch", "both"), "port": ("port", "both"),
    "attach": ("port", "attach", "both")}


def of_scope(scope: str) -> dict[str, Setting]:
    """The settings a target of `scope` (switch, port, attach) takes, by name."""
    return {s.name: s for s in SETTINGS if s.scope in SCOPES[scope]}


def parse(scope: str, raw: Any) -> dict[str, Any]:
    """Check and convert settings given for `scope`; SettingError names the first bad one."""
    if not isinstance(raw, dict):
        raise SettingError("settings must be a JSON object")
    known = of_scope(scope)
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise SettingError(f"unknown setting {unknown[0]!r}; known: {', '.join(sorted(known))}")
    parsed = {name: known[name].parse(value) for name, value in raw.items()}
    if scope == "attach" and ("vlan" in parsed or "native" in parsed):
        merge_vlan(("none", 0), parsed)         # a new port: the two must go together
    return parsed


def core_args(scope: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Settings by name -> the core's keywords (offloads is vnet there). Settings Switch
    applies itself (core None) are left out."""
    known = of_scope(scope)
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise SettingError(f"unknown {scope} setting(s): {', '.join(unknown)}; "
                           f"known: {', '.join(sorted(known))}")
    return {known[name].core: value for name, value in settings.items()
            if known[name].core is not None}


def names_from_core(values: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse for what the core reports: its keywords renamed to the settings'."""
    names = {s.core: s.name for s in SETTINGS if s.core is not None}
    return {names.get(key, key): value for key, value in values.items()}


def describe(setting: Setting) -> str:
    """One line: type and range, default."""
    return f"{setting.kind.describe()}, default {setting.kind.show(setting.default)}"


SCOPE_TITLES = {"switch": "switch (vale0)", "port": "port (vale0:PORT)",
                "attach": "port, at attach only", "both": "switch or port"}


def markdown_table() -> str:
    """The settings table of docs/operations.md."""
    rows = ["| setting | on | takes | default | what it does |",
            "| --- | --- | --- | --- | --- |"]
    rows += [f"| `{s.name}` | {SCOPE_TITLES[s.scope]} | {s.kind.describe()} | "
             f"{s.kind.show(s.default)} | {s.help} |" for s in SETTINGS]
    return "\n".join(rows) + "\n"


DOC_BEGIN = "<!-- settings table: rendered from vale/settings.py (python -m vale.settings " \
            "docs/operations.md); a test checks it -->\n"
DOC_END = "<!-- end of settings table -->\n"


def with_table(text: str) -> str:
    """`text` (a Markdown page) with the table between the markers rendered anew."""
    head, begin, rest = text.partition(DOC_BEGIN)
    _, end, tail = rest.partition(DOC_END)
    if not begin or not end:
        raise ValueError("no settings table markers in the page")
    return head + DOC_BEGIN + markdown_table() + DOC_END + tail


if __name__ == "__main__":
    import sys
    from pathlib import Path
    if len(sys.argv) > 1:
        page = Path(sys.argv[1])
        page.write_text(with_table(page.read_text()))
    else:
        print(markdown_table(), end="")
