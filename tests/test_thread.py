"""The forwarding thread: named for top and perf, and gone after stop()."""

from __future__ import annotations

import os
import time
from pathlib import Path

from vale.switch import Switch


def thread_names() -> list[str]:
    tasks = Path(f"/proc/{os.getpid()}/task")
    return [(t / "comm").read_text().strip() for t in tasks.iterdir()]


def test_the_forwarding_thread_is_named_after_its_switch_and_ends_with_stop():
    sw = Switch("vale7")
    assert "vale:vale7" not in thread_names()
    sw.start()
    try:
        deadline = time.monotonic() + 5     # the thread names itself as it starts
        while "vale:vale7" not in thread_names() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert thread_names().count("vale:vale7") == 1
    finally:
        sw.stop()
    assert "vale:vale7" not in thread_names()
