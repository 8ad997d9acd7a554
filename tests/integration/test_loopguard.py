"""The loop guard between real interfaces: two ports of vale0 joined behind the switch by a
Linux bridge (STP off) in a namespace of their own, so one broadcast circles for ever.
Turned on, the loop guard ends the storm within a second, blocks one of the two ports,
and the hosts on the other ports keep talking. Needs root; skipped otherwise (see
conftest)."""

from __future__ import annotations

import time

from tests.integration.conftest import PREFIX, Host, sh

BROADCAST = "ff:ff:ff:ff:ff:ff"
PROBE_EVERY = 0.2       # seconds: loop_probe while the guard is on
QUIET = 0.3


def make_loop(make_host) -> tuple[Host, str]:
    """A host whose eth0 and a second veth (whose root end is returned) sit on one bridge
    in its namespace: frames into either root end come out of the other."""
    loop = make_host(9, ipv6=False)
    second = f"{PREFIX}p010"
    sh("ip", "link", "add", second, "type", "veth", "peer", "name", "eth1", "netns", loop.ns)
    sh("ip", "link", "set", second, "up")
    for cmd in (("addr", "flush", "dev", "eth0"),
                ("link", "add", "br0", "type", "bridge", "stp_state", "0"),
                ("link", "set", "eth0", "master", "br0"),
                ("link", "set", "eth1", "master", "br0"),
                ("link", "set", "eth1", "up"), ("link", "set", "br0", "up")):
        sh("ip", "-n", loop.ns, *cmd)
    return loop, second


def sent_to(valed, host: Host) -> int:
    return valed.port_stats(host)["tx_packets"]


def states(valed) -> dict[str, str]:
    return {row["port"]: row["state"] for row in valed("list")}


def test_a_broadcast_loop_is_cut_within_a_second_and_the_rest_keeps_talking(valed,
                                                                            make_host):
    x, y = make_host(1, ipv6=False), make_host(2, ipv6=False)
    loop, second = make_loop(make_host)
    valed.attach(x, y)
    valed.ctl("set", "vale0", "loop_probe=0")           # the guard off: let the storm be
    valed("attach", port=f"vale0:{loop.port}", settings={})
    valed("attach", port=f"vale0:{second}", settings={})
    x.raw("send", "eth0", BROADCAST, x.mac, "1", "60")
    time.sleep(0.5)
    before = sent_to(valed, y)
    time.sleep(0.5)
    storm = sent_to(valed, y) - before
    assert storm > 1000, f"no storm: {storm} copies of one broadcast reached y in 0.5 s"

    # On: over when y gets no more than the guard's own probes (one per PROBE_EVERY) for
    # QUIET seconds; the storm sent it thousands in that time.
    valed.ctl("set", "vale0", f"loop_probe={PROBE_EVERY}")
    start = time.monotonic()
    seen = [(start, sent_to(valed, y))]
    over = 0.0
    while not over and time.monotonic() - start < 5:
        time.sleep(0.05)
        seen.append((time.monotonic(), sent_to(valed, y)))
        for when, count in seen:
            if seen[-1][0] - when >= QUIET:
                if seen[-1][1] - count <= QUIET / PROBE_EVERY + 1:
                    over = when
                    break
        seen = [(w, c) for w, c in seen if seen[-1][0] - w <= QUIET]
    assert over, "the storm goes on 5 s after the loop guard was turned on"
    assert over - start < 1.0, f"the storm lasted {over - start:.2f} s with the guard on"

    blocked = [port for port, state in states(valed).items() if state == "blocked"]
    assert blocked == [second], states(valed)       # the higher index of the two
    assert valed("stats", target=f"vale0:{second}")[0]["ports"][second]["drops"]["loop"] > 0
    assert x.ping(y) and y.ping(x)
    assert "closes a loop" in valed.log.read_text()
    assert "blocked" in valed.ctl("list").stdout
