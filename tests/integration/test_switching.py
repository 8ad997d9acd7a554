"""vale between real hosts: namespaces on veth pairs, valed attaching the root-side ends.
Needs root; skipped otherwise (see conftest)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from tests.integration.conftest import Host, finish, sh
from vale.demo import iperf3_gbps

TEST_ETHERTYPE = "0x88b5"


def run_iperf(client: Host, server: Host, seconds: float = 3) -> float:
    srv = server.popen("iperf3", "-s", "-1", "-p", "5201", stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            r = client.run("iperf3", "-c", server.ip, "-t", str(seconds), "-J", "-p", "5201",
                           check=False, timeout=seconds + 30)
            gbps = iperf3_gbps(r.stdout) if r.returncode == 0 else None
            if gbps is not None:
                return gbps
            time.sleep(0.1)
        raise AssertionError(f"iperf3 failed: {r.stdout[-500:]}")
    finally:
        try:
            srv.wait(timeout=5)
        except subprocess.TimeoutExpired:
            srv.kill()                  # the client never finished a test with it
            srv.wait()


class Load:
    """One TCP stream client -> server in the background, already flowing when made: the
    server's eth0 has taken in over 10 MB since the start."""

    def __init__(self, client: Host, server: Host, seconds: float) -> None:
        self._result: dict[str, float] = {}
        self._thread = threading.Thread(
            target=lambda: self._result.update(gbps=run_iperf(client, server, seconds)))
        start = server.stat("rx_bytes")
        self._thread.start()
        deadline = time.monotonic() + 10
        while server.stat("rx_bytes") - start < 10_000_000:
            assert time.monotonic() < deadline and self._thread.is_alive(), "no load"
            time.sleep(0.05)

    def gbps(self) -> float:
        """Wait for the stream to end; its Gbit/s."""
        self._thread.join()
        return self._result["gbps"]


def count_frames(host: Host, seconds: float) -> subprocess.Popen:
    """Start counting test frames arriving at host; .communicate() gives 'N sizes'."""
    proc = host.popen(sys.executable, "-m", "tests.integration.rawnet", "count", "eth0",
                      TEST_ETHERTYPE, str(seconds), stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def counted(proc: subprocess.Popen) -> list[int]:
    out, _ = finish(proc, 30)
    n, _, sizes = out.strip().partition(" ")
    return [int(s) for s in sizes.split(",") if s] if int(n) else []


def test_ping_both_ways_and_learning(valed, make_host):
    a, b = make_host(1), make_host(2)
    valed.attach(a, b)
    assert a.ping(b) and b.ping(a)
    fdb = {e["mac"]: e["port"] for e in valed("fdb_show", switch="vale0")}
    assert fdb[a.mac] == a.port and fdb[b.mac] == b.port
    shown = valed.ctl("fdb", "vale0").stdout
    assert a.mac in shown and b.mac in shown


def test_unknown_unicast_floods_known_goes_only_to_its_port(valed, make_host):
    a, b, c = make_host(1), make_host(2), make_host(3)
    valed.attach(a, b, c)
    assert a.ping(b)                                    # a and b are learned
    watch_b, watch_c = count_frames(b, 3), count_frames(c, 3)
    a.raw("send", "eth0", b.mac, a.mac, "20", "100")
    assert len(counted(watch_b)) == 20
    assert counted(watch_c) == []                       # known unicast: not to c
    unknown = "02:00:00:aa:bb:cc"
    watch_b, watch_c = count_frames(b, 3), count_frames(c, 3)
    a.raw("send", "eth0", unknown, a.mac, "20", "100")
    assert len(counted(watch_b)) == 20 and len(counted(watch_c)) == 20   # flooded


@pytest.mark.parametrize("mode", ["offloads", "host-tx-off", "port-offloads-off",
                                  "receiver-offloads-off"])
def test_tcp_passes_with_offloads_on_and_off(valed, make_host, mode):
    a, b = make_host(1), make_host(2)
    valed.attach(a, offloads=(mode != "port-offloads-off"))
    valed.attach(b, offloads=mode not in ("port-offloads-off", "receiver-offloads-off"))
    if mode == "host-tx-off":
        for h in (a, b):
            h.run("ethtool", "-K", "eth0", "tx", "off")
    before = valed.port_stats(b)["tx_packets"]
    gbps = run_iperf(a, b, seconds=2)
    assert gbps > 0.2, f"{mode}: {gbps:.2f} Gbit/s"
    for host in (a, b):             # a lying header counts where it came in; a frame that
        assert valed.port_stats(host)["drops"]["bad_offload"] == 0  # cannot be cut, at b
    if mode == "receiver-offloads-off":     # a's GSO frames were cut into MTU frames for b
        sent = valed.port_stats(b)["tx_packets"] - before
        assert sent > valed.port_stats(a)["rx_packets"] * 2, "no software segmentation?"


def test_frames_of_60_1514_and_9000_bytes(valed, make_host):
    a, b = make_host(1, mtu=9000), make_host(2, mtu=9000)
    valed.attach(a, b)
    assert a.ping(b)
    for size in (60, 1514, 9014):
        watch = count_frames(b, 3)
        a.raw("send", "eth0", b.mac, a.mac, "10", str(size))
        assert counted(watch) == [size] * 10
    assert a.ping(b, size=8972)                          # a 9000-byte IP packet, DF set


def test_frames_too_big_for_the_destination_are_dropped_and_counted(valed, make_host):
    a, b = make_host(1, mtu=9000), make_host(2, mtu=1500)
    valed.attach(a, b)
    assert a.ping(b)
    watch = count_frames(b, 3)
    a.raw("send", "eth0", b.mac, a.mac, "5", "4000")    # fits a's MTU, not b's
    a.raw("send", "eth0", b.mac, a.mac, "5", "1514")    # fits both
    assert counted(watch) == [1514] * 5
    assert valed.port_stats(b)["drops"]["too_big"] == 5


def test_runts_cannot_be_sent_through_veth_and_the_shortest_frame_passes(valed, make_host):
    """The kernel refuses Ethernet frames shorter than their header on a packet socket
    (dev_validate_header) and on TAP, so no runt reaches an interface port: the runt rule
    is tested on in-memory ports (tests/test_rules.py). Here: the refusal, and a frame of
    exactly 14 bytes going through."""
    a, b = make_host(1), make_host(2)
    valed.attach(a, b)
    assert a.ping(b)
    refused = a.run(sys.executable, "-m", "tests.integration.rawnet", "send", "eth0", b.mac,
                    a.mac, "1", "10", check=False)
    assert refused.returncode != 0 and "Invalid argument" in refused.stderr
    watch = count_frames(b, 3)
    a.raw("send", "eth0", b.mac, a.mac, "3", "14")
    assert counted(watch) == [14] * 3
    assert valed.port_stats(a)["drops"]["runt"] == 0


def test_detach_and_reattach_under_load(valed, make_host):
    a, b, c = make_host(1), make_host(2), make_host(3)
    valed.attach(a, b, c)
    assert a.ping(b)
    load = Load(a, b, seconds=4)
    rounds, end = 0, time.monotonic() + 2          # all along the load, not in a blink
    while time.monotonic() < end or rounds < 10:
        valed("detach", port=f"vale0:{c.port}")
        valed("attach", port=f"vale0:{c.port}")
        rounds += 1
    assert load.gbps() > 0.2
    assert c.ping(a)                                    # c works again afterwards


def test_interface_deleted_under_load(valed, make_host):
    a, b, c = make_host(1), make_host(2), make_host(3)
    valed.attach(a, b, c)
    assert a.ping(c)
    load = Load(a, b, seconds=3)
    sh("ip", "link", "del", c.port)
    assert load.gbps() > 0.2
    ports = {p["port"]: p["state"] for p in valed("list")}
    assert ports[c.port] == "missing"
    assert a.ping(b)
    assert c.port in valed.ctl("list").stdout


def test_32_hosts_all_reach_each_other(valed, make_host):
    hosts = [make_host(i) for i in range(1, 33)]
    valed.attach(*hosts)
    targets = " ".join(h.ip for h in hosts)
    procs = [h.popen("sh", "-c", f"for ip in {targets}; do ping -c1 -W2 -q $ip >/dev/null "
                     f"|| echo FAIL $ip; done", stdout=subprocess.PIPE, text=True)
             for h in hosts]
    failures = [line for p in procs for line in finish(p, 300)[0].splitlines()]
    assert failures == []
    assert len(valed("fdb_show", switch="vale0")) == 32


def test_bad_requests_change_nothing(valed, make_host):
    a = make_host(1)
    valed.attach(a)
    before = valed("list")
    for argv, message in [
        (("attach", "vale0:nonexist0"), "no interface"),
        (("attach", f"vale1:{a.port}"), "already attached"),
        (("detach", "vale0:nonexist0"), "no port"),
        (("set", "vale0", "ageing=soon"), "number"),
        (("fdb", "vale0", "add", "zz:zz", a.port), "MAC"),
    ]:
        result = valed.ctl(*argv, check=False)
        assert result.returncode == 1
        assert message in result.stderr and result.stderr.count("\n") == 1
    assert valed("list") == before
