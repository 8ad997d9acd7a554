"""Captures for `valectl capture`: the daemon drains each switch's capture ring and hands
each client the frames of the port and direction it asked for. A client that reads slowly
loses frames (its queue is bounded), never the data plane; what is lost is counted."""

from __future__ import annotations

import asyncio
import base64
import collections
from dataclasses import dataclass, field
from typing import Any

from vale.switch import Switch

POLL_SECONDS = 0.02
QUEUE_FRAMES = 20000


@dataclass(eq=False)
class Subscriber:
    port: str
    rx: bool
    tx: bool
    frames: collections.deque = field(default_factory=collections.deque)
    lost: int = 0               # frames the client's queue had no room for
    ring_lost_at_start: tuple[int, int] = (0, 0)
    ready: asyncio.Event = field(default_factory=asyncio.Event)


class CaptureHub:
    """The captures running on one switch."""

    def __init__(self, sw: Switch) -> None:
        self.sw = sw
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
                    for sub in self.subs:
                        if sub.port != port or not (sub.rx if direction == "rx" else sub.tx):
                            continue
                        if len(sub.frames) >= QUEUE_FRAMES:
                            sub.lost += 1
                        else:
                            sub.frames.append((stamp, length, direction, data))
                            sub.ready.set()
                await asyncio.sleep(POLL_SECONDS)
        finally:
            self.task = None


def frame_message(stamp: int, length: int, direction: str, data: bytes) -> dict[str, Any]:
    return {"t": stamp, "len": length, "dir": direction, "data": base64.b64encode(data).decode()}
