"""Looking at the forwarding thread from outside: its name, and how often it goes round."""

from __future__ import annotations

import os
import time
from pathlib import Path

from vale.switch import Switch


def thread_names() -> list[str]:
    tasks = Path(f"/proc/{os.getpid()}/task")
    return [(t / "comm").read_text().strip() for t in tasks.iterdir()]


def rounds_per_second(sw: Switch, seconds: float) -> float:
    """Forwarding-loop rounds per second over SECONDS: about 1 while it sleeps in epoll,
    hundreds of thousands while it polls."""
    before, start = sw.core.loops, time.monotonic()
    time.sleep(seconds)
    return (sw.core.loops - before) / (time.monotonic() - start)
