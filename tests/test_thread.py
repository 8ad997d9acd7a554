"""The forwarding thread: named for top and perf, and gone after stop()."""

from __future__ import annotations

import time

from tests.threads import rounds_per_second, thread_names
from vale.switch import Switch


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


def test_an_idle_thread_sleeps_even_with_busy_polling_set():
    """busy_poll_us spins after frames, never while nothing comes (see the integration
    test for the spinning itself: it needs an interface and root)."""
    sw = Switch("vale7")
    sw.start()
    try:
        time.sleep(0.1)
        assert rounds_per_second(sw, 0.3) < 10        # asleep in epoll (1 s timeout)
        sw.configure(busy_poll_us=1_000_000)
        time.sleep(1.1)                               # the wait in progress ends
        assert rounds_per_second(sw, 1.2) < 10
    finally:
        sw.stop()
