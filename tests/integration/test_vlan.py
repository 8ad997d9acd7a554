"""802.1Q VLANs between real hosts: two switches of one valed, vale0 and vale1, joined by a
trunk (a veth pair, one end on each, both trunk:10,20), and on each an access host in
VLAN 10 and one in VLAN 20 (A10, A20 on vale0; B10, B20 on vale1), all four in one IP
subnet, so only the switch keeps the VLANs apart. Every host captures all it receives.
Needs root; skipped otherwise (see conftest)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Valed
from tests.integration.conftest import PREFIX, Host, finish, sh
from tests.integration.test_switching import run_iperf

BROADCAST = "ff:ff:ff:ff:ff:ff"
TEST_ETHERTYPE = 0x88B5
ARP = 0x0806


class Watcher:
    """Captures of every frame arriving at some hosts' eth0 (rawnet watch), from when
    made until stop(); killed at the end of the test whatever happens."""

    def __init__(self) -> None:
        self._procs: dict[str, subprocess.Popen] = {}

    def start(self, *hosts: Host) -> None:
        for host in hosts:
            proc = host.popen(sys.executable, "-m", "tests.integration.rawnet", "watch",
                              "eth0", stdout=subprocess.PIPE, text=True)
            self._procs[host.ns] = proc
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"

    def stop(self, host: Host) -> list[tuple[str, str, int, int | None, int, int]]:
        """What arrived at HOST: (src, dst, ethertype, vlan or None, length, count) each."""
        proc = self._procs.pop(host.ns)
        proc.send_signal(signal.SIGTERM)
        out, _ = finish(proc, 10)
        return [tuple(row) for row in json.loads(out)]

    def close(self) -> None:
        for proc in self._procs.values():
            proc.kill()
            proc.wait()


@pytest.fixture
def watcher() -> Iterator[Watcher]:
    w = Watcher()
    yield w
    w.close()


def frames_from(seen, src: str, ethertype: int | None = None, dst: str | None = None,
                length: int | None = None) -> int:
    return sum(n for s, d, e, _, size, n in seen
               if s == src and (ethertype is None or e == ethertype)
               and (dst is None or d == dst) and (length is None or size == length))


class Tcpdump:
    """tcpdump of the frames arriving at an interface of the root namespace (a trunk end:
    ours) into a file, read back with -e, a line a frame. Arriving only: the switch's own
    sends bypass the qdisc, so taps may not see them, and where they do they would be
    counted twice."""

    def __init__(self, iface: str, path: Path) -> None:
        self.path = path
        self.proc = subprocess.Popen(["tcpdump", "-i", iface, "-Q", "in", "-U", "-Z", "root",
                                      "--immediate-mode", "-w", str(path)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        assert self.proc.stderr is not None
        for line in self.proc.stderr:           # "listening on IFACE, ..." once capturing
            if "listening on" in line:
                break
        else:
            raise AssertionError(f"tcpdump did not start: {finish(self.proc, 5)}")

    def stop(self) -> list[str]:
        self.proc.send_signal(signal.SIGINT)
        finish(self.proc, 10)
        out = sh("tcpdump", "-r", str(self.path), "-e", "-nn").stdout
        return [line for line in out.splitlines() if line[:1].isdigit()]   # no hex dumps

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Trunked:
    valed: Valed
    a10: Host
    a20: Host
    b10: Host
    b20: Host
    t0: str             # the trunk's end on vale0
    t1: str             # and on vale1

    @property
    def hosts(self) -> list[Host]:
        return [self.a10, self.a20, self.b10, self.b20]

    def vlan_of(self, host: Host) -> int:
        return 10 if host in (self.a10, self.b10) else 20

    def trunk_stats(self, switch: str) -> dict:
        port = self.t0 if switch == "vale0" else self.t1
        return self.valed("stats", target=f"{switch}:{port}")[0]["ports"][port]


@pytest.fixture
def trunk_ends() -> Iterator[tuple[str, str]]:
    """A veth pair in the root namespace, named ours, without IPv6 (the kernel would send
    untagged neighbour discovery into the trunk); deleted afterwards."""
    ends = (f"{PREFIX}p901", f"{PREFIX}p902")
    sh("ip", "link", "add", ends[0], "type", "veth", "peer", "name", ends[1])
    try:
        for end in ends:
            sh("sysctl", "-qw", f"net.ipv6.conf.{end}.disable_ipv6=1", check=False)
            sh("ip", "link", "set", end, "up")
        yield ends
    finally:
        sh("ip", "link", "del", ends[0], check=False)


def set_vlan(valed: Valed, switch: str, port: str, *assignments: str) -> None:
    valed.ctl("set", f"{switch}:{port}", *assignments)


@pytest.fixture
def trunked(valed, make_host, trunk_ends) -> Trunked:
    a10, a20, b10, b20 = (make_host(i, ipv6=False) for i in range(1, 5))
    t0, t1 = trunk_ends
    valed.attach(a10, a20)
    valed.attach(b10, b20, switch="vale1")
    valed("attach", port=f"vale0:{t0}")
    valed("attach", port=f"vale1:{t1}")
    for switch in ("vale0", "vale1"):      # captures see the test's frames only
        valed("set", target=switch, settings={"loop_probe": 0})
    for switch, host, vlan in (("vale0", a10, 10), ("vale0", a20, 20), ("vale1", b10, 10),
                               ("vale1", b20, 20)):
        set_vlan(valed, switch, host.port, f"vlan=access:{vlan}")
    set_vlan(valed, "vale0", t0, "vlan=trunk:10,20")
    set_vlan(valed, "vale1", t1, "vlan=trunk:10,20")
    return Trunked(valed, a10, a20, b10, b20, t0, t1)


def root_side_mac(host: Host) -> str:
    """The MAC of HOST's veth peer, the switch's port: the root namespace's own frames
    (IPv6 neighbour discovery) come from it straight to the host, not through the switch."""
    return Path(f"/sys/class/net/{host.port}/address").read_text().strip()


def unreachable(a: Host, b: Host) -> bool:
    return not a.ping(b, count=2, timeout=1)


def test_each_vlan_reaches_its_own_hosts_across_the_trunk_and_no_other(trunked, watcher,
                                                                       tmp_path):
    net = trunked
    watcher.start(*net.hosts)
    dumps = [Tcpdump(net.t0, tmp_path / "t0.pcap")]
    try:
        dumps.append(Tcpdump(net.t1, tmp_path / "t1.pcap"))
        assert net.a10.ping(net.b10) and net.b10.ping(net.a10)
        assert net.a20.ping(net.b20) and net.b20.ping(net.a20)
        # Same subnet, other VLAN: the ARP request is never answered.
        assert unreachable(net.a10, net.b20)
        assert unreachable(net.a10, net.a20)
        assert unreachable(net.b20, net.b10)
        # Counted frames: broadcast from each VLAN, known unicast across the trunk, and
        # unicast to a MAC known only in the other VLAN (unknown in this one: flooded).
        net.a10.raw("send", "eth0", BROADCAST, net.a10.mac, "20", "100")
        net.a20.raw("send", "eth0", BROADCAST, net.a20.mac, "15", "100")
        net.b10.raw("send", "eth0", net.a10.mac, net.b10.mac, "12", "1514")
        net.a10.raw("send", "eth0", net.b20.mac, net.a10.mac, "7", "60")
        seen = {h.ns: watcher.stop(h) for h in net.hosts}
        trunk = [line for dump in dumps for line in dump.stop()]
    finally:
        for dump in dumps:
            dump.close()

    for host in net.hosts:
        got = seen[host.ns]
        others = {h.mac for h in net.hosts if net.vlan_of(h) != net.vlan_of(host)}
        assert [row for row in got if row[0] in others] == [], \
            f"{host.ns} (VLAN {net.vlan_of(host)}) got frames of the other VLAN"
        assert [row for row in got if row[3] is not None] == [], \
            f"{host.ns} on an access port got tagged frames"
    a10, a20, b10, b20 = (seen[h.ns] for h in net.hosts)
    # A10's ARP requests (for B10, B20 and A20) reached B10 only.
    assert frames_from(b10, net.a10.mac, ARP, BROADCAST) >= 3
    assert frames_from(b20, net.a10.mac, ARP) == frames_from(a20, net.a10.mac, ARP) == 0
    # What was sent is what arrived, where it should.
    assert frames_from(b10, net.a10.mac, TEST_ETHERTYPE, BROADCAST) == 20
    assert frames_from(b20, net.a20.mac, TEST_ETHERTYPE, BROADCAST) == 15
    assert frames_from(a10, net.b10.mac, TEST_ETHERTYPE) == 12
    assert frames_from(b10, net.a10.mac, TEST_ETHERTYPE, net.b20.mac) == 7
    assert frames_from(b20, net.a10.mac) == 0

    # The trunk: every frame on it tagged, with 10 or 20, and the counted ones there once.
    assert trunk, "nothing captured on the trunk"
    untagged = [line for line in trunk if "802.1Q" not in line]
    assert untagged == [], f"untagged frames on the trunk: {untagged[:3]}"
    vlans = {int(m.group(1)) for line in trunk for m in [re.search(r"vlan (\d+),", line)] if m}
    assert vlans == {10, 20}

    def on_trunk(src: str, dst: str, vlan: int) -> int:
        return sum(1 for line in trunk if line.split()[1] == src and f"> {dst}," in line
                   and f"vlan {vlan}," in line and "0x88b5" in line)
    assert on_trunk(net.a10.mac, BROADCAST, 10) == 20
    assert on_trunk(net.a20.mac, BROADCAST, 20) == 15
    assert on_trunk(net.b10.mac, net.a10.mac, 10) == 12
    assert on_trunk(net.a10.mac, net.b20.mac, 10) == 7
    for switch in ("vale0", "vale1"):
        drops = net.trunk_stats(switch)["drops"]
        assert not any(drops.values()), f"{switch}'s trunk dropped {drops}"


def fdb_lines(valed: Valed, switch: str, vlan: int) -> set[tuple[str, str, str]]:
    """`valectl fdb SWITCH --vlan N`: (VLAN, MAC, PORT) of each entry."""
    out = valed.ctl("fdb", switch, "--vlan", str(vlan)).stdout.splitlines()
    assert out[0].split()[:3] == ["VLAN", "MAC", "PORT"]
    return {tuple(line.split()[:3]) for line in out[1:]}


def test_the_mac_table_is_kept_by_vlan(trunked):
    net = trunked
    assert net.a10.ping(net.b10) and net.a20.ping(net.b20)
    assert fdb_lines(net.valed, "vale0", 10) == {("10", net.a10.mac, net.a10.port),
                                                 ("10", net.b10.mac, net.t0)}
    assert fdb_lines(net.valed, "vale0", 20) == {("20", net.a20.mac, net.a20.port),
                                                 ("20", net.b20.mac, net.t0)}
    assert fdb_lines(net.valed, "vale1", 10) == {("10", net.a10.mac, net.t1),
                                                 ("10", net.b10.mac, net.b10.port)}
    assert fdb_lines(net.valed, "vale0", 30) == set()
    every = {(e["vlan"], e["mac"]) for e in net.valed("fdb_show", switch="vale1")}
    assert every == {(10, net.a10.mac), (10, net.b10.mac), (20, net.a20.mac),
                     (20, net.b20.mac)}


SINK = """
import hashlib, socket, sys
srv = socket.create_server((sys.argv[1], 5301))
print("ready", flush=True)
conn, _ = srv.accept()
h, n = hashlib.sha256(), 0
while data := conn.recv(1 << 20):
    h.update(data)
    n += len(data)
print(n, h.hexdigest(), flush=True)
"""

SOURCE = """
import hashlib, random, socket, sys
data = random.Random(int(sys.argv[3])).randbytes(int(sys.argv[2]))
with socket.create_connection((sys.argv[1], 5301), timeout=20) as s:
    s.sendall(data)
print(len(data), hashlib.sha256(data).hexdigest(), flush=True)
"""


def transfer(src: Host, dst: Host, size: int = 8 << 20, seed: int = 1) -> None:
    """SIZE bytes of TCP from SRC to DST; they arrive whole and unchanged."""
    sink = dst.popen(sys.executable, "-c", SINK, dst.ip, stdout=subprocess.PIPE, text=True)
    try:
        assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
        sent = src.run(sys.executable, "-c", SOURCE, dst.ip, str(size), str(seed),
                       timeout=30).stdout.strip()
        got, _ = finish(sink, 30)
        assert got.strip() == sent, f"{src.ns} -> {dst.ns}: sent {sent}, got {got.strip()}"
    finally:
        if sink.poll() is None:
            sink.kill()
            sink.wait()


def test_tcp_across_the_trunk_in_vlan_10(trunked):
    """TCP's GSO super-frames leave the trunk tagged through sendmmsg: they arrive whole,
    and they are bigger on the trunk than any one frame."""
    net = trunked
    assert net.a10.ping(net.b10)
    before = net.trunk_stats("vale0")
    transfer(net.a10, net.b10)
    transfer(net.b10, net.a10, seed=2)
    gbps = run_iperf(net.a10, net.b10, seconds=2)
    assert gbps > 0.2, f"{gbps:.2f} Gbit/s"
    after = net.trunk_stats("vale0")
    packets = after["tx_packets"] - before["tx_packets"]
    size = (after["tx_bytes"] - before["tx_bytes"]) / packets
    assert size > 3000, f"{packets} frames of {size:.0f} bytes on average: no super-frames"
    for switch in ("vale0", "vale1"):
        for port in (net.t0 if switch == "vale0" else net.t1,
                     (net.a10 if switch == "vale0" else net.b10).port):
            drops = net.valed("stats", target=f"{switch}:{port}")[0]["ports"][port]["drops"]
            assert not any(drops.values()), f"{switch}:{port} dropped {drops}"
    assert unreachable(net.a20, net.b10)


def vlan_subinterface(host: Host, vlan: int) -> None:
    """Move HOST's address from eth0 to eth0.VLAN, a VLAN device on it: the kernel tags
    what it sends and takes the tag off what it receives (out of band, on veth). Skips
    the test where the kernel has no VLAN devices (8021q)."""
    made = host.run("ip", "link", "add", "link", "eth0", "name", f"eth0.{vlan}", "type",
                    "vlan", "id", str(vlan), check=False)
    if made.returncode != 0:
        pytest.skip(f"this kernel makes no VLAN devices (8021q): {made.stderr.strip()}")
    host.run("ip", "addr", "flush", "dev", "eth0")
    host.run("ip", "addr", "add", f"{host.ip}/16", "dev", f"eth0.{vlan}")
    host.run("ip", "link", "set", f"eth0.{vlan}", "up")


def test_a_vlan_subinterface_on_a_trunk_port_reaches_its_vlan(trunked, make_host, watcher):
    """Host T on a trunk port of vale1 talks through eth0.10. What it sends reaches the
    switch with the tag taken off by the kernel (tp_vlan_tci); the switch puts it back on
    the inter-switch trunk and takes it off for the access hosts; what it gets back
    leaves T's port tagged, short frames through the TX ring, TCP's super-frames through
    sendmmsg."""
    net = trunked
    t = make_host(5, ipv6=False)
    vlan_subinterface(t, 10)
    net.valed.attach(t, switch="vale1")
    set_vlan(net.valed, "vale1", t.port, "vlan=trunk:10,20")
    watcher.start(t, net.a20, net.b20)
    assert t.ping(net.a10) and t.ping(net.b10)
    assert t.ping(net.a10, size=1400) and net.a10.ping(t, size=1468)
    assert unreachable(t, net.a20) and unreachable(t, net.b20)
    transfer(t, net.a10)
    transfer(net.b10, t, seed=3)
    got_t = watcher.stop(t)
    got_20 = watcher.stop(net.a20) + watcher.stop(net.b20)
    assert frames_from(got_20, t.mac) == 0
    untagged = [row for row in got_t if row[3] != 10 and row[0] != root_side_mac(t)]
    assert untagged == [], f"T got frames not tagged with VLAN 10: {untagged}"
    assert frames_from(got_t, net.a10.mac) > 100 and frames_from(got_t, net.b10.mac) > 100
    port = net.valed.port_stats(t, switch="vale1")
    assert not any(port["drops"].values()), port["drops"]
    assert port["tx_ring_packets"] > 0
    assert net.valed.port_stats(net.a10)["drops"]["bad_offload"] == 0
    assert ("10", t.mac, net.t0) in fdb_lines(net.valed, "vale0", 10)


def test_a_host_on_a_trunk_port_sends_and_gets_its_vlans_tagged(trunked, make_host,
                                                                watcher):
    """Host T on a trunk port sends tagged frames from a raw socket (the kernel takes the
    tag off before the switch sees them: tp_vlan_tci) and gets its VLANs' frames tagged,
    short ones through the TX ring, long ones (4000 bytes, J10 and T on MTU 9000)
    through sendmmsg. Needs no VLAN devices."""
    net = trunked
    t, j10 = make_host(5, mtu=9000, ipv6=False), make_host(6, mtu=9000, ipv6=False)
    net.valed.attach(t, j10, switch="vale1")
    set_vlan(net.valed, "vale1", t.port, "vlan=trunk:10,20")
    set_vlan(net.valed, "vale1", j10.port, "vlan=access:10")
    watcher.start(t, j10, *net.hosts)
    t.raw("send-tagged", "eth0", BROADCAST, t.mac, "4", "64", "10")       # T learned in 10
    ring_before = net.valed.port_stats(t, switch="vale1")["tx_ring_packets"]
    for size, count in ((60, 10), (1514, 10), (4000, 5)):
        j10.raw("send", "eth0", t.mac, j10.mac, str(count), str(size))
    net.b20.raw("send", "eth0", t.mac, net.b20.mac, "6", "100")     # unknown in 20: flood
    net.a20.raw("send", "eth0", t.mac, net.a20.mac, "3", "100")     # across the trunk
    seen = {h.ns: watcher.stop(h) for h in (t, j10, *net.hosts)}
    got_t = seen[t.ns]
    for size, count in ((60, 10), (1514, 10), (4000, 5)):
        assert frames_from(got_t, j10.mac, TEST_ETHERTYPE, t.mac, size) == count, size
    assert frames_from(got_t, net.b20.mac, TEST_ETHERTYPE, t.mac, 100) == 6
    assert frames_from(got_t, net.a20.mac, TEST_ETHERTYPE, t.mac, 100) == 3
    tags = {(row[0], row[3]) for row in got_t if row[0] != root_side_mac(t)}
    assert tags == {(j10.mac, 10), (net.b20.mac, 20), (net.a20.mac, 20)}, tags
    for host in (j10, net.a10, net.b10):
        assert frames_from(seen[host.ns], t.mac, TEST_ETHERTYPE, BROADCAST, 60) == 4
    assert frames_from(seen[net.b20.ns], t.mac) == frames_from(seen[net.a20.ns], t.mac) == 0
    assert frames_from(seen[net.b10.ns], net.b20.mac) == 0        # the flood stayed in 20
    assert all(row[3] is None for h in (j10, *net.hosts) for row in seen[h.ns])
    port = net.valed.port_stats(t, switch="vale1")
    assert port["tx_ring_packets"] - ring_before >= 20 + 6 + 3
    assert port["tx_packets"] == 10 + 10 + 5 + 6 + 3
    assert not any(port["drops"].values()), port["drops"]


def test_frames_of_a_vlan_a_port_does_not_carry_are_dropped_and_counted(trunked, make_host,
                                                                       watcher):
    net = trunked
    t = make_host(5, ipv6=False)
    net.valed.attach(t, switch="vale1")
    set_vlan(net.valed, "vale1", t.port, "vlan=trunk:10,20")
    watcher.start(*net.hosts)
    t.raw("send-tagged", "eth0", BROADCAST, t.mac, "25", "64", "30")     # not carried
    t.raw("send-tagged", "eth0", BROADCAST, t.mac, "5", "64", "4095")    # reserved
    t.raw("send", "eth0", BROADCAST, t.mac, "10", "60")        # untagged, and no native
    t.raw("send-tagged", "eth0", BROADCAST, t.mac, "8", "64", "10")      # carried
    t.raw("send-tagged", "eth0", BROADCAST, t.mac, "6", "1518", "20")    # carried
    seen = {h.ns: watcher.stop(h) for h in net.hosts}
    a10, a20, b10, b20 = (seen[h.ns] for h in net.hosts)
    assert frames_from(a10, t.mac) == frames_from(b10, t.mac) == 8
    assert frames_from(a20, t.mac) == frames_from(b20, t.mac) == 6
    assert all(row[3] is None for got in seen.values() for row in got)
    assert net.valed.port_stats(t, switch="vale1")["drops"]["vlan"] == 25 + 5 + 10
    assert net.valed.port_stats(t, switch="vale1")["rx_packets"] == 25 + 5 + 10 + 8 + 6
    shown = net.valed.ctl("stats", f"vale1:{t.port}").stdout
    assert "vlan=40" in shown, shown
    info = net.valed.ctl("info", f"vale1:{t.port}").stdout
    assert "drops vlan: 40" in info and "trunk:10,20" in info, info
    # With a native VLAN the trunk takes untagged frames into it and sends it untagged:
    # T's eth0, untagged, is then in VLAN 20.
    set_vlan(net.valed, "vale1", t.port, "native=20")
    watcher.start(t, net.a20, net.a10)
    t.raw("send", "eth0", BROADCAST, t.mac, "9", "60")
    assert net.a20.ping(t) and t.ping(net.b20)
    assert unreachable(t, net.a10)
    got_t, got_a20, got_a10 = watcher.stop(t), watcher.stop(net.a20), watcher.stop(net.a10)
    assert frames_from(got_a20, t.mac, TEST_ETHERTYPE) == 9
    assert frames_from(got_a10, t.mac) == 0
    assert [row for row in got_t if row[0] in (net.a20.mac, net.b20.mac)
            and row[3] is not None] == []
    assert net.valed.port_stats(t, switch="vale1")["drops"]["vlan"] == 40
