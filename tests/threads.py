"""Looking at the forwarding thread from outside: its name, and how often it goes round."""

from __future__ import annotations

import os
import time
from pathlib import Path

from vale.switch import Switch


def thread_names() -> list[str]:
    names = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            names.append((task / "comm").read_text().strip())
        except (FileNotFoundError, ProcessLookupError):
            pass                            # a thread that ended meanwhile
    return names


def rounds_per_second(sw: Switch, seconds: float) -> float:
    """Forwarding-loop rounds per second over SECONDS: about 1 while it sleeps in epoll,
    hundreds of thousands while it polls."""
    before, start = sw.loops, time.monotonic()
    time.sleep(seconds)
    return (sw.loops - before) / (time.monotonic() - start)
