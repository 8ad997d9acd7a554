"""Busy-polling on real interfaces: the forwarding thread spins after frames, sleeps once
they stop, and gives its CPU way to another thread that wants it. Needs root and two CPUs
(see conftest)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from tests.integration.conftest import Host, finish
from tests.threads import rounds_per_second
from vale.switch import Switch

pytestmark = pytest.mark.skipif((os.cpu_count() or 1) < 2,
                                reason="needs two CPUs: one for the thread, one for the test")
THREAD_CPU = (os.cpu_count() or 2) - 1      # the forwarding thread's; the test keeps off it
HOG = (f"import os\nos.sched_setaffinity(0, {{{THREAD_CPU}}})\nprint('ready', flush=True)\n"
       "while True:\n    pass\n")


def trickle(src: Host, dst: Host, seconds: float) -> subprocess.Popen:
    """100 pings a second from CPU 0, so frames keep coming."""
    return subprocess.Popen(["taskset", "-c", "0", "ip", "netns", "exec", src.ns, "ping",
                             "-q", "-i", "0.01", "-w", str(seconds), dst.ip],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def loss_percent(pings: subprocess.Popen) -> float:
    out, _ = finish(pings, 30)
    m = re.search(r"([\d.]+)% packet loss", out)
    assert m is not None, out
    return float(m.group(1))


def test_busy_poll_spins_after_frames_sleeps_after_them_and_gives_way(make_host):
    a, b = make_host(1, ipv6=False), make_host(2, ipv6=False)
    mine = os.sched_getaffinity(0)
    sw = Switch("vale7")
    try:
        sw.configure(busy_poll_us=1_000_000)
        sw.attach(a.port)
        sw.attach(b.port)
        sw.set_cpus([THREAD_CPU])
        sw.start()
        os.sched_setaffinity(0, {0})        # this thread (and what it starts) keeps off it
        time.sleep(1.2)
        assert rounds_per_second(sw, 0.5) < 10        # no frames yet: asleep
        pings = trickle(a, b, 2)
        time.sleep(0.3)
        alone = rounds_per_second(sw, 0.5)            # spinning between frames
        assert loss_percent(pings) < 5
        assert alone > 10_000
        time.sleep(1.2)
        assert rounds_per_second(sw, 0.5) < 10        # a second after the last frame: asleep

        hog = subprocess.Popen([sys.executable, "-c", HOG], stdout=subprocess.PIPE, text=True)
        try:
            assert hog.stdout is not None and hog.stdout.readline().strip() == "ready"
            pings = trickle(a, b, 2)
            time.sleep(0.3)
            shared = rounds_per_second(sw, 0.5)
            assert loss_percent(pings) < 5            # still forwarding, every frame
        finally:
            hog.kill()
            hog.wait()
        # Not giving way, it would take half the CPU and make half the rounds.
        assert shared < alone * 0.3, (shared, alone)
    finally:
        sw.stop()
        for port in sw.ports():
            sw.remove_port(port)
        os.sched_setaffinity(0, mine)
