"""The kernel fast path on real interfaces, without valed: two hosts in namespaces of their
own, their veth peers in a third, the switch's, where the programs are attached and the
maps filled by hand, as the switch will. Known unicast must be redirected and counted
frame for frame; what vale must see (unknown source or destination) must reach a packet
socket on the port's upcall device, and nothing else must; the upcall device's own stack
must see nothing; too-long frames are dropped and counted; GSO frames go whole when their
segments fit; tcx and clsact both; pins outlive the process that made them; detach
leaves nothing behind.

The switch's namespace is entered with setns (vale.netlink), not `ip netns exec`, which
remounts /sys and would hide the pins in bpffs. Everything is named vbpf<pid>...; the
namespaces and the pins go afterwards, also when a test fails, and so do those of
earlier runs whose process is gone."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import finish, process_alive, sh
from vale.names import mac_to_key
from vale.netlink import _entered

_bpf = pytest.importorskip("vale._bpf", reason="built without the fast path (VALE_BPF=0)")

ROOT = Path(__file__).resolve().parents[2]
PREFIX = f"vbpf{os.getpid()}"
_OURS = re.compile(r"^vbpf(\d+)[sab]$")
MAC_A, MAC_B = "02:00:00:00:b1:0a", "02:00:00:00:b1:0b"
IP_A, IP_B = "198.18.0.1", "198.18.0.2"
PORT_A, PORT_B = 1, 2                   # the switch's port indexes of the two ports
ICMP_FRAME = 14 + 20 + 8 + 56           # a default ping's frame
ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_VNET_HDR = 15
PACKET_STATISTICS = 6
PACKET_IGNORE_OUTGOING = 23
SO_RCVBUFFORCE = 33


def remove_leftovers() -> None:
    """Namespaces and pins of earlier runs whose process is gone."""
    for line in sh("ip", "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = _OURS.match(name)
        if m and not process_alive(int(m.group(1))):
            sh("ip", "netns", "del", name, check=False)
    if os.path.isdir(_bpf.PIN_ROOT):
        for name in os.listdir(_bpf.PIN_ROOT):
            m = re.match(r"^vbpf(\d+)", name)
            if m and not process_alive(int(m.group(1))):
                shutil.rmtree(os.path.join(_bpf.PIN_ROOT, name), ignore_errors=True)


@dataclass
class Net:
    switch: str             # the switch's namespace: the ports p1 and p2
    a: str                  # host A's namespace, behind p1
    b: str                  # host B's, behind p2
    p1: int                 # the ports' ifindexes, in the switch's namespace
    p2: int
    u1: int                 # p1's upcall device (a TAP), there too
    pins: str

    def ping(self, count: int = 10, size: int = 56, wait: float = 2) -> bool:
        """count pings from A to B (exactly: no -w, which sends on until its deadline);
        True when every reply came. Pings expected to fail wait less for their replies."""
        return sh("ip", "netns", "exec", self.a, "ping", "-q", "-c", str(count), "-i", "0.02",
                  "-s", str(size), "-M", "do", "-W", str(wait), IP_B,
                  check=False).returncode == 0

    def tc(self, *args: str) -> str:
        return sh("tc", "-n", self.switch, *args, check=False).stdout


def _ifindex(ns: str, name: str) -> int:
    return json.loads(sh("ip", "-n", ns, "-j", "link", "show", "dev", name).stdout)[0][
        "ifindex"]


@pytest.fixture
def net() -> Iterator[Net]:
    remove_leftovers()
    s, a, b = f"{PREFIX}s", f"{PREFIX}a", f"{PREFIX}b"
    pins = _bpf.pin_dir(f"{PREFIX}t")
    try:
        for ns in (s, a, b):
            sh("ip", "netns", "add", ns)
            # No IPv6 chatter (neighbour discovery, MLD): frame counts stay exact.
            sh("ip", "netns", "exec", ns, "sysctl", "-qw",
               "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        for port, host, ns, mac, ip, peer_ip, peer_mac in (
                ("vbpfp1", "vbpfh1", a, MAC_A, IP_A, IP_B, MAC_B),
                ("vbpfp2", "vbpfh2", b, MAC_B, IP_B, IP_A, MAC_A)):
            sh("ip", "-n", s, "link", "add", port, "type", "veth", "peer", "name", host,
               "netns", ns)
            sh("ip", "-n", s, "link", "set", port, "up")
            sh("ip", "-n", ns, "link", "set", host, "address", mac, "up")
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", host)
            # No ARP: nothing here floods broadcasts; the fast path carries unicast only.
            sh("ip", "-n", ns, "neigh", "add", peer_ip, "lladdr", peer_mac, "dev", host,
               "nud", "permanent")
        sh("ip", "-n", s, "tuntap", "add", "dev", "vbpfu1", "mode", "tap")
        sh("ip", "-n", s, "link", "set", "vbpfu1", "up")
        yield Net(s, a, b, _ifindex(s, "vbpfp1"), _ifindex(s, "vbpfp2"),
                  _ifindex(s, "vbpfu1"), pins)
    finally:
        for ns in (s, a, b):
            sh("ip", "netns", "del", ns, check=False)
        shutil.rmtree(pins, ignore_errors=True)


SETUP = """
import sys
from vale import _bpf
from vale.names import mac_to_key
pins, mode, p1, p2, u1, flags = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:7])
d = _bpf.Datapath(pins)
d.attach(u1, mode, upcall=True)
for ifindex, port, upcall in ((p1, 1, u1), (p2, 2, 0)):
    d.attach(ifindex, mode)
    d.clear_stats(port)
    d.set_port(ifindex, port, upcall=upcall)
for mac, port, ifindex in ((sys.argv[7], 1, p1), (sys.argv[8], 2, p2)):
    d.set_src(mac_to_key(mac), port)
    d.set_dst(mac_to_key(mac), port, ifindex, 1500, flags)
d.close()
"""


def setup_in_another_process(net: Net, mode: str, flags: int) -> None:
    """Load, attach and fill the maps from a process that then exits: what the test
    finds afterwards lives on in pins and the kernel only."""
    proc = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{net.switch}", sys.executable, "-c", SETUP, net.pins,
         mode, str(net.p1), str(net.p2), str(net.u1), str(flags), MAC_A, MAC_B],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, err = finish(proc, 60)
    assert proc.returncode == 0, err


class Tap:
    """A packet socket on an interface in the switch's namespace, as vale opens one
    (outgoing frames ignored), with virtio-net headers, to see GSO frames' segment size.
    For every protocol (a tap: it sees frames before tc ingress), or for IPv4 only (as
    the interface's stack: after tc ingress)."""

    def __init__(self, ifname: str, protocol: int = ETH_P_ALL) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(protocol))
        self.sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        self.sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
        self.sock.bind((ifname, protocol))
        self.sock.setblocking(False)
        self.drain()

    def drain(self) -> list[tuple[int, bytes]]:
        """What arrived since the last call, between A and B: (gso_size, frame)."""
        frames = []
        while True:
            try:
                data = self.sock.recv(1 << 17)
            except BlockingIOError:
                break
            gso_type, gso_size = data[1], struct.unpack_from("<H", data, 4)[0]
            frame = data[10:]
            macs = {frame[0:6].hex(":"), frame[6:12].hex(":")}
            if macs == {MAC_A, MAC_B}:
                frames.append((gso_size if gso_type else 0, frame))
        return frames

    def dropped(self) -> int:
        return struct.unpack("II", self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))[1]

    def close(self) -> None:
        self.sock.close()


def wire_frames(frames: list[tuple[int, bytes]]) -> int:
    """The frames on the wire these make: a GSO frame its segments (IPv4 and TCP here)."""
    total = 0
    for gso_size, frame in frames:
        if not gso_size:
            total += 1
            continue
        headers = 14 + (frame[14] & 0xF) * 4
        headers += (frame[headers + 12] >> 4) * 4
        total += -(-(len(frame) - headers) // gso_size)
    return total


SERVER = """
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("{ip}", 5201))
s.listen(1)
print("ready", flush=True)
s.settimeout({timeout})
c, _ = s.accept()
c.settimeout({timeout})
n = 0
while b := c.recv(1 << 16):
    n += len(b)
print(n)
"""

# The client waits for the server's close before it goes, so every frame of the transfer
# has passed when it returns; a client that gives up resets the connection (SO_LINGER 0)
# rather than leave its data to be sent again later, into the next count.
CLIENT = """
import socket, struct
s = socket.create_connection(("{ip}", 5201), timeout={timeout})
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.sendall(b"x" * {nbytes})
s.shutdown(socket.SHUT_WR)
assert s.recv(1) == b""
"""


def tcp_transfer(net: Net, nbytes: int, timeout: float) -> bool:
    """nbytes from A to B over TCP; whether all arrived within timeout."""
    server = subprocess.Popen(
        ["ip", "netns", "exec", net.b, sys.executable, "-c",
         SERVER.format(ip=IP_B, timeout=timeout)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "ready"
        client = sh("ip", "netns", "exec", net.a, sys.executable, "-c",
                    CLIENT.format(ip=IP_B, timeout=timeout, nbytes=nbytes),
                    check=False, timeout=timeout + 10)
        out, _ = finish(server, timeout + 10)
        return client.returncode == 0 and out.strip() == str(nbytes)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()


def counts(d: _bpf.Datapath) -> dict:
    return {"a": d.port_stats(PORT_A), "b": d.port_stats(PORT_B), "passed": d.passed()}


def grew(before: dict, after: dict) -> dict:
    """What each counter gained, flattened: a.rx_packets, b.drops.mtu, passed.gso..."""
    out = {}

    def walk(prefix: str, x: dict, y: dict) -> None:
        for k in y:
            if isinstance(y[k], dict):
                walk(f"{prefix}{k}.", x[k], y[k])
            elif y[k] != x[k]:
                out[f"{prefix}{k}"] = y[k] - x[k]
    walk("", before, after)
    return out


@pytest.mark.parametrize("peer", [True, False], ids=["redirect_peer", "redirect"])
@pytest.mark.parametrize("mode", ["tcx", "clsact"])
def test_fast_path(net, mode, peer):
    flags = _bpf.DST_PEER if peer else 0
    setup_in_another_process(net, mode, flags)
    a, b = mac_to_key(MAC_A), mac_to_key(MAC_B)

    with _entered(net.switch):
        # A new loader finds the attachments and the maps the other process left.
        d = _bpf.Datapath(net.pins)
        assert d.attached(net.p1) == mode and d.attached(net.p2) == mode
        assert d.attachments() == {net.p1: mode, net.p2: mode, net.u1: mode}
        assert d.ports() == {net.p1: (PORT_A, 3, net.u1), net.p2: (PORT_B, 3, 0)}
        assert d.dst(b) == (PORT_B, net.p2, 1500, flags)
        # vale's socket (on the upcall device), one on the port (which sees every frame
        # before tc does), and the upcall device's stack.
        filtered, raw, stack = Tap("vbpfu1"), Tap("vbpfp1"), Tap("vbpfu1", 0x0800)
    try:
        # Known unicast: every frame redirected, counted once each way, and none of them
        # reaches vale's socket, though a socket on the port sees them all.
        d.set_src(a, PORT_A, last_seen_ns=0)
        before = counts(d)
        assert net.ping(10)
        assert grew(before, counts(d)) == {
            "a.rx_packets": 10, "a.rx_bytes": 10 * ICMP_FRAME, "a.tx_packets": 10,
            "a.tx_bytes": 10 * ICMP_FRAME, "b.rx_packets": 10, "b.rx_bytes": 10 * ICMP_FRAME,
            "b.tx_packets": 10, "b.tx_bytes": 10 * ICMP_FRAME}
        assert len(raw.drain()) == 10
        assert filtered.drain() == []
        assert time.monotonic_ns() - 10**10 < d.src(a)[1] <= time.monotonic_ns()

        # An unknown destination, an unknown source, a moved source: up to vale's socket
        # (which nobody reads here, so the pings fail), and not counted as forwarded.
        for undo, reason in ((lambda: d.delete_dst(b), "dst_unknown"),
                             (lambda: d.delete_src(a), "src_unknown"),
                             (lambda: d.set_src(a, PORT_B), "src_moved")):
            undo()
            before = counts(d)
            assert not net.ping(3, wait=0.3)
            assert grew(before, counts(d)) == {f"passed.{reason}": 3}
            assert len(filtered.drain()) == 3
            assert len(raw.drain()) == 3
            assert stack.drain() == []
            d.set_src(a, PORT_A)
            d.set_dst(b, PORT_B, net.p2, 1500, flags)

        # The destination's MTU: MTU + 18 goes, a byte more is dropped and counted there,
        # and the dropped frames are not vale's either.
        d.set_dst(b, PORT_B, net.p2, 1000, flags)
        before = counts(d)
        assert net.ping(3, size=1018 - 42)
        assert not net.ping(3, size=1019 - 42, wait=0.3)
        grown = grew(before, counts(d))
        assert grown["b.drops.mtu"] == 3 and grown["a.rx_packets"] == 6
        assert grown["b.tx_packets"] == 3 and "passed.gso" not in grown
        assert filtered.drain() == [] and len(raw.drain()) == 6

        # Own port: B's MAC on A's port drops A's frames to it, counted on A.
        d.set_dst(b, PORT_A, net.p1, 1500, flags)
        before = counts(d)
        assert not net.ping(3, wait=0.3)
        assert grew(before, counts(d)) == {"a.rx_packets": 3, "a.rx_bytes": 3 * ICMP_FRAME,
                                           "a.drops.own_port": 3}
        assert filtered.drain() == [] and len(raw.drain()) == 3
        d.set_dst(b, PORT_B, net.p2, 1500, flags)

        # TCP: GSO frames go whole and count as the frames they make on a wire.
        before = counts(d)
        assert tcp_transfer(net, 1 << 20, timeout=20)
        sent = raw.drain()
        assert raw.dropped() == 0
        assert any(gso for gso, _ in sent), "no GSO frame seen: nothing to check"
        grown = grew(before, counts(d))
        assert grown["a.rx_packets"] == wire_frames(sent) == grown["b.tx_packets"]
        assert grown["a.rx_bytes"] == sum(len(f) for _, f in sent)
        assert not any(k.startswith("passed.") or ".drops." in k for k in grown)
        assert filtered.drain() == []

        # Segments longer than the destination takes: a GSO frame goes up (vale decides
        # those), a plain frame is dropped.
        d.set_dst(b, PORT_B, net.p2, 1400, flags)
        before = counts(d)
        assert not tcp_transfer(net, 1 << 20, timeout=2)
        grown = grew(before, counts(d))
        up = filtered.drain()
        assert grown.get("passed.gso", 0) >= 1
        assert len([f for gso, f in up if gso]) == grown["passed.gso"]
        raw.drain()
        d.set_dst(b, PORT_B, net.p2, 1500, flags)

        # The other way of attaching, then back: each takes over from the other.
        other = "clsact" if mode == "tcx" else "tcx"
        with _entered(net.switch):
            assert d.attach(net.p1, other) == other
            assert d.attached(net.p1) == other
            assert d.attachments() == {net.p1: other, net.p2: mode, net.u1: mode}
            before = counts(d)
            assert net.ping(3)
            assert grew(before, counts(d))["a.rx_packets"] == 3
            assert filtered.drain() == [] and len(raw.drain()) == 3
            d.attach(net.p1, mode)
            assert d.attachments() == {net.p1: mode, net.p2: mode, net.u1: mode}

        # Without its program the upcall device's stack would see what goes up: what
        # the check above relies on.
        d.delete_dst(b)
        with _entered(net.switch):
            assert d.detach(net.u1)
        assert not net.ping(3, wait=0.3)
        assert len(filtered.drain()) == 3 and len(stack.drain()) == 3
        assert len(raw.drain()) == 3
        d.set_dst(b, PORT_B, net.p2, 1500, flags)

        # Detach leaves nothing: no link, no filter, no qdisc, no pin, no port entry, so
        # frames stay on the port, where a socket on the port has them.
        with _entered(net.switch):
            for ifindex in (net.p1, net.p2):
                assert d.detach(ifindex, remove_qdisc=True)
                assert d.attached(ifindex) is None
                assert not d.detach(ifindex)
        assert d.attachments() == {}
        for dev in ("vbpfp1", "vbpfp2"):
            assert "clsact" not in net.tc("qdisc", "show", "dev", dev)
            assert net.tc("filter", "show", "dev", dev, "ingress").strip() == ""
        assert d.ports() == {}
        before = counts(d)
        assert not net.ping(3, wait=0.3)
        assert grew(before, counts(d)) == {}
        assert filtered.drain() == [] and len(raw.drain()) == 3

        d.remove()
        assert not os.path.exists(net.pins)
    finally:
        filtered.close()
        raw.close()
        stack.close()
        d.close()


def test_attach_auto_and_failures(net):
    """"auto" takes tcx where the kernel has it (Linux 6.6+: here); an interface that
    is not there is an OSError naming the step, whatever the mode, leaving nothing."""
    with _entered(net.switch):
        d = _bpf.Datapath(net.pins)
        try:
            assert d.attach(net.p1) == "tcx"
            assert d.attachments() == {net.p1: "tcx"}
            for mode in ("auto", *_bpf.MODES):
                with pytest.raises(OSError, match="interface 999999") as exc:
                    d.attach(999999, mode)
                assert exc.value.errno in (19, 22)      # ENODEV, EINVAL
            with pytest.raises(ValueError):
                d.attach(net.p1, "xdp")
            assert d.attachments() == {net.p1: "tcx"}
        finally:
            d.remove()
