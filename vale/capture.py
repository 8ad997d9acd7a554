"""Captures for `valectl capture`: the daemon drains each switch's capture ring and hands
each client the frames of the port and direction it asked for. A client that reads slowly
loses frames, never the data plane, and never grows valed: what waits for clients is
bounded in bytes, per client and for all together (CaptureBudget, valed's
--capture-client-bytes and --capture-total-bytes); what is lost is counted."""

from __future__ import annotations

import asyncio
import base64
import collections
from dataclasses import dataclass, field
from typing import Any

from vale.switch import Switch

POLL_SECONDS = 0.02
# What a queued frame costs beyond its bytes: its tuple, the bytes object's header, the
# stamp and length, the deque's slot (measured: about 150 bytes on CPython 3.11).
RECORD_OVERHEAD = 160

Record = tuple[int, int, str, bytes]       # stamp, original length, direction, bytes kept


@dataclass(eq=False)
class Subscriber:
    port: str
    rx: bool
    tx: bool
    frames: collections.deque[Record] = field(default_factory=collections.deque)
    queued: int = 0             # bytes in frames, as CaptureBudget counts them
    lost: int = 0               # frames its queue had no room for
    ring_lost_at_start: tuple[int, int] = (0, 0)
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def pop(self, budget: CaptureBudget) -> Record:
        """The oldest frame queued, its bytes given back to the budget."""
        record = self.frames.popleft()
        budget.release(self, record_size(record))
        return record


def record_size(record: Record) -> int:
    return len(record[3]) + RECORD_OVERHEAD


class CaptureBudget:
    """Bytes queued for capture clients: at most `per_client` for one, `total` for all of
    them (every switch's) together."""

    def __init__(self, per_client: int, total: int) -> None:
        self.per_client = per_client
        self.total = total
        self.used = 0

    def take(self, sub: Subscriber, size: int) -> bool:
        """Room for `size` more bytes for sub? Taken if so."""
        if sub.queued + size > self.per_client or self.used + size > self.total:
            return False
        sub.queued += size
        self.used += size
        return True

    def release(self, sub: Subscriber, size: int) -> None:
        sub.queued -= size
        self.used -= size

    def release_all(self, sub: Subscriber) -> None:
        """A capture that ended: what it still had queued is freed."""
        self.used -= sub.queued
        sub.queued = 0
        sub.frames.clear()


class CaptureHub:
    """The captures running on one switch."""

    def __init__(self, sw: Switch, budget: CaptureBudget) -> None:
        self.sw = sw
        self.budget = budget
        self.subs: set[Subscriber] = set()
        self.task: asyncio.Task[None] | None = None

    def add(self, sub: Subscriber) -> None:
        sub.ring_lost_at_start = self.sw.capture_lost(sub.port)
        self.subs.add(sub)
        self._apply(sub.port)
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._poll())

    def remove(self, sub: Subscriber) -> int:
        """Stop sub; returns the frames the capture ring lost for it."""
        self.subs.discard(sub)
        self.budget.release_all(sub)
        lost = 0
        try:
            now = self.sw.capture_lost(sub.port)
            lost = ((now[0] - sub.ring_lost_at_start[0]) if sub.rx else 0) + \
                   ((now[1] - sub.ring_lost_at_start[1]) if sub.tx else 0)
            self._apply(sub.port)
        except ValueError:                  # the port went meanwhile
            pass
        return lost

    def _apply(self, port: str) -> None:
        rx = any(s.rx for s in self.subs if s.port == port)
        tx = any(s.tx for s in self.subs if s.port == port)
        self.sw.set_capture(port, rx=rx, tx=tx)

    async def _poll(self) -> None:
        try:
            while self.subs:
                for port, direction, stamp, length, data in self.sw.capture_drain():
                    size = len(data) + RECORD_OVERHEAD
                    for sub in self.subs:
                        if sub.port != port or not (sub.rx if direction == "rx" else sub.tx):
                            continue
                        if self.budget.take(sub, size):
                            sub.frames.append((stamp, length, direction, data))
                            sub.ready.set()
                        else:
                            sub.lost += 1
                            self.sw.capture_queue_lost(port)
                await asyncio.sleep(POLL_SECONDS)
        finally:
            self.task = None


def frame_message(stamp: int, length: int, direction: str, data: bytes) -> dict[str, Any]:
    return {"t": stamp, "len": length, "dir": direction, "data": base64.b64encode(data).decode()}
