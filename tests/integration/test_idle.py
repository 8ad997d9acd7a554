"""An idle valed costs next to nothing: with two ports attached, after traffic has come and
gone, the daemon (its loop, housekeeping and the forwarding thread with its default spin)
takes under 1% of a CPU over 10 s. Needs root and namespaces (see conftest)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.conftest import start_valed, stop_valed

IDLE_SECONDS = 10


def cpu_seconds(pid: int) -> float:
    """User and system time of every thread of the process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_an_idle_valed_with_two_ports_uses_under_one_percent_of_a_cpu(tmp_path, make_host):
    daemon = start_valed(str(tmp_path / "v.sock"), tmp_path / "valed.log")
    try:
        a, b = make_host(1, ipv6=False), make_host(2, ipv6=False)
        daemon.attach(a, b)
        assert a.ping(b, count=20)      # the thread has seen traffic: it spins after frames
        time.sleep(1.5)                 # the last spin and epoll's one-second wait are over
        before, start = cpu_seconds(daemon.proc.pid), time.monotonic()
        time.sleep(IDLE_SECONDS)
        used = cpu_seconds(daemon.proc.pid) - before
        share = used / (time.monotonic() - start)
        assert share < 0.01, f"valed used {share:.2%} of a CPU while idle"
    finally:
        stop_valed(daemon)


def test_switch_info_says_where_the_forwarding_thread_runs(tmp_path, make_host):
    daemon = start_valed(str(tmp_path / "v.sock"), tmp_path / "valed.log")
    try:
        a, b = make_host(1, ipv6=False), make_host(2, ipv6=False)
        daemon.attach(a, b)
        mine = sorted(os.sched_getaffinity(daemon.proc.pid))
        info = daemon("info", port="vale0")
        assert info["ports"] == sorted([a.port, b.port])
        assert info["settings"]["busy_poll_us"] == 50 and info["settings"]["cpus"] == "auto"
        assert (info["thread_cpus"], info["thread_cpu"]) == ([mine[-1]], mine[-1])
        daemon("set", target="vale0", settings={"cpus": "all"})
        info = daemon("info", port="vale0")
        assert (info["thread_cpus"], info["thread_cpu"]) == (mine, None if len(mine) > 1
                                                             else mine[0])
        daemon("set", target="vale0", settings={"cpus": str(mine[0])})
        info = daemon("info", port="vale0")
        assert (info["thread_cpus"], info["thread_cpu"]) == ([mine[0]], mine[0])
        assert info["settings"]["cpus"] == [mine[0]]
        shown = daemon.ctl("info", "vale0").stdout.splitlines()
        assert shown[0].split() == ["vale0", "thread", "on", "CPU(s)", str(mine[0]), "ports:",
                                    *sorted([a.port, b.port])]
        assert f"  cpus: [{mine[0]}]" in shown and "  busy_poll_us: 50" in shown
    finally:
        stop_valed(daemon)
