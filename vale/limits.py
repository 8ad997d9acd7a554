"""What one valed may be made to hold, whoever asks: switches, MAC table entries, receive
ring frames, capture backlog. Each limit has a default that keeps a valed with every
switch and capture at its limit inside the unit's MemoryMax=, and a valed option to
change it (`valed --max-switches ...`).

The settings table (vale.settings) keeps the ranges the core can take; these are the
daemon's own, lower, and the API checks them on top: a request over one is refused (code
`invalid`, the message naming the option) and changes nothing. A saved configuration over
a limit lowered since is not refused (it was the operator's): the restore logs it and
runs it within the limit.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from vale._fastpath import MAX_FDB_CAPACITY, MAX_RX_FRAMES, MIN_RX_FRAMES

MIB = 1 << 20


class LimitError(ValueError):
    """A request over one of the daemon's limits; the message names the valed option.
    A ValueError: the API answers it as `invalid`, as any value refused."""


@dataclass(frozen=True)
class Limit:
    option: str         # the valed option, without its dashes
    low: int
    high: int
    default: int
    help: str


# The forwarding threads, MAC tables and capture queues these allow fit in the unit's
# MemoryMax=1G with room to spare: 32 switches x 262,144 entries x 88 bytes is 704 MiB
# at worst; captures 64 MiB. Receive rings are kernel memory (not counted there): 1024
# frames is 69 MiB a port (the default 256: 18 MiB).
LIMITS: tuple[Limit, ...] = (
    Limit("max-switches", 1, 4096, 32,
          "switches valed runs (each a forwarding thread and a MAC table)"),
    Limit("max-fdb-capacity", 1, MAX_FDB_CAPACITY, 262144,
          "largest fdb_capacity a switch may be given (88 bytes an entry)"),
    Limit("max-rx-frames", MIN_RX_FRAMES, MAX_RX_FRAMES, 1024,
          "largest rx_frames a port may be given (64 KiB of kernel memory a frame)"),
    Limit("capture-client-bytes", 64 << 10, 1 << 30, 8 * MIB,
          "bytes of frames queued for one capture client that reads slowly; beyond, its "
          "frames are lost and counted"),
    Limit("capture-total-bytes", 64 << 10, 1 << 32, 64 * MIB,
          "bytes of frames queued for all capture clients together"),
)
BY_OPTION: Mapping[str, Limit] = {limit.option: limit for limit in LIMITS}


@dataclass(frozen=True)
class Limits:
    switches: int = BY_OPTION["max-switches"].default
    fdb_capacity: int = BY_OPTION["max-fdb-capacity"].default
    rx_frames: int = BY_OPTION["max-rx-frames"].default
    capture_client_bytes: int = BY_OPTION["capture-client-bytes"].default
    capture_total_bytes: int = BY_OPTION["capture-total-bytes"].default

    def __post_init__(self) -> None:
        for f, limit in zip(fields(self), LIMITS, strict=True):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) \
                    or not limit.low <= value <= limit.high:
                raise ValueError(f"--{limit.option} takes {limit.low} to {limit.high}, "
                                 f"not {value!r}")

    def check_switch_settings(self, changes: Mapping[str, Any]) -> None:
        """LimitError for switch settings over a limit (parsed by vale.settings)."""
        capacity = changes.get("fdb_capacity")
        if capacity is not None and capacity > self.fdb_capacity:
            raise LimitError(f"fdb_capacity={capacity} is over this valed's limit of "
                             f"{self.fdb_capacity} (valed --max-fdb-capacity)")

    def check_port_settings(self, changes: Mapping[str, Any]) -> None:
        frames = changes.get("rx_frames")
        if frames is not None and frames > self.rx_frames:
            raise LimitError(f"rx_frames={frames} is over this valed's limit of "
                             f"{self.rx_frames} (valed --max-rx-frames)")

    def check_new_switch(self, switches: int) -> None:
        """LimitError when a switch cannot be added to `switches` of them."""
        if switches >= self.switches:
            raise LimitError(f"valed runs at most {self.switches} switches (valed "
                             "--max-switches); detach a switch's ports to free one")

    def within(self, what: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Saved settings (`what`: switch or port) brought within the limits, at restore;
        the caller logs what changed."""
        capped = dict(changes)
        if what == "switch" and capped.get("fdb_capacity", 0) > self.fdb_capacity:
            capped["fdb_capacity"] = self.fdb_capacity
        if what == "port" and capped.get("rx_frames", 0) > self.rx_frames:
            capped["rx_frames"] = self.rx_frames
        return capped


def add_options(parser: argparse.ArgumentParser) -> None:
    """The limits as valed options."""
    group = parser.add_argument_group("resources: what any client may make valed hold "
                                      "(docs/security.md)")
    for limit in LIMITS:
        group.add_argument(f"--{limit.option}", type=int, default=limit.default,
                           metavar="N", help=f"{limit.help} ({limit.low}-{limit.high}, "
                           f"default {limit.default})")


def from_options(args: argparse.Namespace) -> Limits:
    """Limits from parsed options; ValueError names a bad one."""
    return Limits(*(getattr(args, limit.option.replace("-", "_")) for limit in LIMITS))
