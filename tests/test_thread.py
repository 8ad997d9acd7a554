"""The forwarding thread: named for top and perf, and gone after stop()."""

from __future__ import annotations

import os
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
    # join() returns once the thread is done with Python; the kernel lets go of the task a
    # moment later (on another CPU, now that the thread is pinned).
    deadline = time.monotonic() + 5
    while "vale:vale7" in thread_names() and time.monotonic() < deadline:
        time.sleep(0.01)
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


def test_threads_placed_automatically_take_a_cpu_each_until_every_cpu_has_one():
    """cpus=auto (the default) pins each switch's thread to one CPU, the one with the
    fewest threads placed so far; a stopped switch gives its CPU back. (Which CPU wins a tie,
    the highest, a fresh valed shows: tests/integration/test_idle.py.)"""
    cpus = sorted(os.sched_getaffinity(0))
    switches = [Switch(f"vale{i}") for i in range(len(cpus))]
    try:
        for sw in switches:
            sw.start()
        placed = [sw.thread_cpus for sw in switches]
        assert sorted(placed) == [[c] for c in cpus]
        # The lowest CPU: were it not given back, the tie would go to a higher one.
        lowest = min(switches, key=lambda sw: sw.thread_cpus)
        freed = lowest.thread_cpus
        lowest.stop()
        extra = Switch("vale9")
        extra.start()
        try:
            assert extra.thread_cpus == freed
        finally:
            extra.stop()
    finally:
        for sw in switches:
            sw.stop()


def test_a_thread_pinned_by_hand_or_not_at_all_keeps_to_that():
    cpus = sorted(os.sched_getaffinity(0))
    sw = Switch("vale7")
    sw.start()
    try:
        sw.set_cpus([cpus[0]])
        assert (sw.cpus, sw.thread_cpus) == ([cpus[0]], [cpus[0]])
        sw.set_cpus([])                             # not pinned: every CPU of the process
        assert (sw.cpus, sw.thread_cpus) == ([], cpus)
        sw.set_cpus("auto")
        assert sw.cpus == "auto" and len(sw.thread_cpus) == 1
    finally:
        sw.stop()
