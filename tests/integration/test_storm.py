"""Storm control between real hosts: one host floods broadcasts as fast as it can while two
others keep talking; its port lets 1000 a second through (and a bucket of a tenth of a
second's worth), drops the rest as `storm`, and the talkers do not notice. Needs root;
skipped otherwise (see conftest)."""

from __future__ import annotations

import re
import subprocess
import sys
import time

from tests.integration.conftest import Host, finish
from tests.integration.test_vlan import transfer

RATE = 1000             # broadcasts a second
BURST = RATE // 10      # what a full bucket lets through at once
FLOOD_SECONDS = 2.0


def tally(host: Host, seconds: float) -> subprocess.Popen:
    """Start counting the test frames arriving at HOST; .communicate() gives 'N'."""
    proc = host.popen(sys.executable, "-m", "tests.integration.rawnet", "tally", "eth0",
                      "0x88b5", str(seconds), stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_a_broadcast_flood_is_cut_to_its_rate_and_the_others_keep_talking(valed, make_host):
    flooder, x, y = (make_host(i, ipv6=False) for i in (1, 2, 3))
    valed.attach(flooder, x, y)
    valed.ctl("set", f"vale0:{flooder.port}", f"storm_broadcast={RATE}")
    assert x.ping(y)
    procs = [tally(x, FLOOD_SECONDS + 3), tally(y, FLOOD_SECONDS + 3)]
    try:
        procs.append(flooder.popen(sys.executable, "-m", "tests.integration.rawnet", "flood",
                                   "eth0", flooder.mac, str(FLOOD_SECONDS),
                                   stdout=subprocess.PIPE, text=True))
        pings = x.run("ping", "-c", "20", "-i", "0.05", "-W", "1", "-q", y.ip, check=False)
        transfer(x, y, size=4 << 20)
        transfer(y, x, size=4 << 20, seed=2)
        at_x, at_y, flooded = (finish(proc, FLOOD_SECONDS + 10)[0] for proc in procs)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    sent, seconds = int(flooded.split()[0]), float(flooded.split()[1])
    at_x, at_y = int(at_x), int(at_y)

    loss = re.search(r"(\d+(?:\.\d+)?)% packet loss", pings.stdout)
    assert pings.returncode == 0 and loss is not None and float(loss.group(1)) <= 10, \
        pings.stdout
    # Every frame sent is counted where the flooder's port took it in: forwarded, dropped
    # as `storm`, or found the receive ring full (the kernel's count, read now and then).
    deadline = time.monotonic() + 3
    while True:
        port = valed.port_stats(flooder)
        drops = port["drops"]
        if port["rx_packets"] + drops["ring_full"] == sent or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert port["rx_packets"] + drops["ring_full"] == sent, (sent, port)
    assert sent > 20 * RATE * seconds, f"only {sent} frames in {seconds:.2f} s: no flood"
    storm = drops["storm"]
    passed = port["rx_packets"] - storm
    # What passed the limit reached both others, and no more than the rate and the bucket
    # allow (the switch's clock may run a little past the flooder's: the ring's backlog).
    assert at_x == at_y == passed, f"x got {at_x}, y {at_y}, the switch passed {passed}"
    assert 0.5 * RATE * seconds <= passed <= RATE * (seconds + 0.5) + BURST, \
        f"{passed} broadcasts passed in {seconds:.2f} s"
    assert port["flood_packets"] == passed
    # So the storm drops are the rest: what came in, less rate * time and the bucket.
    assert storm >= port["rx_packets"] - (RATE * (seconds + 0.5) + BURST) > 0
    assert f"storm={storm}" in valed.ctl("stats", f"vale0:{flooder.port}").stdout
    for host in (x, y):
        assert not any(valed.port_stats(host)["drops"].values())
