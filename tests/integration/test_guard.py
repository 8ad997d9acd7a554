"""The data plane's guards against real interfaces (docs/security.md, *The forwarding
path*): frames for an attached interface's own host are not forwarded; a TAP valed made
with a locked MAC takes frames from that MAC only. Root and namespaces; skipped
otherwise."""

from __future__ import annotations

import subprocess
import sys
import time

from tests.conftest import ROOT, Valed, start_valed, stop_valed
from tests.integration.conftest import PREFIX, Host, sh
from tests.integration.test_switching import count_frames, counted
from vale.client import ClientError


def valed_in(ns: str, tmp_path) -> Valed:
    """valed inside namespace ns (its interfaces, addresses and routes are that
    namespace's, never the test machine's), answering on a socket in tmp_path."""
    return start_valed(str(tmp_path / "valed.sock"), tmp_path / "valed.log", tmp_path,
                       wrap=("ip", "netns", "exec", ns))


def valectl(daemon: Valed, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
    """This tree's cli/valectl.py (vale.cli may be installed from another checkout)."""
    result = subprocess.run([sys.executable, "-m", "cli.valectl", "--socket",
                             daemon.socket, *argv], capture_output=True, text=True, timeout=60,
                            cwd=ROOT)
    if check and result.returncode != 0:
        raise AssertionError(f"valectl {' '.join(argv)}: {result.stderr.strip()}")
    return result


def test_frames_for_the_attached_interfaces_host_are_not_forwarded(make_host, tmp_path):
    """The switch's namespace holds an address on the interface it attaches for host a:
    a's frames to that interface's MAC (PACKET_HOST) go to that host's stack, which
    answers a's pings, and are counted `host` instead of flooding to b."""
    ns = f"{PREFIX}h900"
    a, b = make_host(1), make_host(2)
    sh("ip", "netns", "add", ns)
    daemon = None
    try:
        for host in (a, b):
            sh("ip", "link", "set", host.port, "netns", ns)
            sh("ip", "-n", ns, "link", "set", host.port, "up")
        sh("ip", "-n", ns, "addr", "add", "198.18.250.1/16", "dev", a.port)
        port_mac = sh("ip", "netns", "exec", ns, "cat",
                      f"/sys/class/net/{a.port}/address").stdout.strip()
        daemon = valed_in(ns, tmp_path)
        daemon.attach(a, b)
        assert a.ping(Host(ns, a.port, "198.18.250.1", port_mac))     # the host answers
        watch = count_frames(b, 3)
        a.raw("send", "eth0", port_mac, a.mac, "20", "100")
        assert counted(watch) == []                     # before: flooded to b
        stats = daemon.port_stats(a)
        assert stats["drops"]["host"] >= 20             # and the pings' requests
        assert a.ping(b)                                # the switch still switches
    finally:
        if daemon is not None:
            stop_valed(daemon)
        sh("ip", "netns", "del", ns, check=False)


def test_a_tap_made_with_a_locked_mac_takes_that_mac_only(valed):
    ns, tap, mac = f"{PREFIX}h901", f"{PREFIX}t001", "02:00:00:00:77:01"
    other = f"{PREFIX}p902"
    sh("ip", "netns", "add", ns)
    try:
        valectl(valed, "create", tap, "--tap", "--netns", ns, "--address", "198.18.1.9/16",
                "--mac", mac, "--lock-mac")
        assert sh("ip", "netns", "exec", ns, "cat",
                  f"/sys/class/net/{tap}/address").stdout.strip() == mac
        info = valed("info", port=f"vale0:{tap}")
        assert info["settings"]["allowed_macs"] == [mac]
        valed("create", name=other, kind="veth")         # someone to flood to
        for src in (mac, "02:00:00:00:77:02"):
            sh("ip", "netns", "exec", ns, sys.executable, "-m", "tests.integration.rawnet",
               "send", tap, "ff:ff:ff:ff:ff:ff", src, "10", "100", cwd=ROOT)
        deadline = time.monotonic() + 5
        while valed.port_stats(Host(ns, tap, "", ""))["drops"]["spoofed"] < 10:
            assert time.monotonic() < deadline, valed.port_stats(Host(ns, tap, "", ""))
            time.sleep(0.05)
        assert valed.port_stats(Host(ns, tap, "", ""))["drops"]["spoofed"] == 10
        assert mac in {e["mac"] for e in valed("fdb_show", switch="vale0")}
        refused = valectl(valed, "create", f"{PREFIX}t002", "--tap", "--persistent",
                          "--lock-mac", check=False)
        assert refused.returncode != 0 and "mac" in refused.stderr
    finally:
        for name in (tap, other):
            try:
                valed("remove", name=name)
            except ClientError:
                pass
        sh("ip", "netns", "del", ns, check=False)


def test_a_udp_fragmentation_offload_frame_does_not_wedge_a_port(make_host, tmp_path):
    """A VM writes one GSO-type-3 frame into its TAP: the kernel leaves a slot of the
    packet socket's ring claimed for good and drops all that follows. valed finds the
    ring stuck (drops while nothing arrives), makes it again, and counts rx_stuck; the
    port receives again."""
    ns, tap = f"{PREFIX}h903", f"{PREFIX}t003"
    b = make_host(2, ipv6=False)
    sh("ip", "netns", "add", ns)
    daemon = writer = None
    try:
        sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
        sh("ip", "link", "set", b.port, "netns", ns)
        sh("ip", "-n", ns, "link", "set", b.port, "up")
        writer = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m",
                                   "tests.integration.rawnet", "tap", tap],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  cwd=ROOT)
        assert writer.stdin is not None and writer.stdout is not None
        assert writer.stdout.readline().strip() == "ready"

        def vm(line: str) -> None:
            writer.stdin.write(line + "\n")
            writer.stdin.flush()
            assert writer.stdout.readline().strip() == "ok"

        daemon = valed_in(ns, tmp_path)
        daemon("attach", port=f"vale0:{tap}", settings={})
        daemon.attach(b)
        src = "02:00:00:00:88:01"
        watch = count_frames(b, 2)
        vm(f"plain ff:ff:ff:ff:ff:ff {src} 5")
        assert len(counted(watch)) == 5
        vm(f"ufo {b.mac} {src}")
        vm(f"plain ff:ff:ff:ff:ff:ff {src} 5")          # stuck: the kernel drops them
        deadline = time.monotonic() + 10
        while True:                                     # until valed made the ring again
            watch = count_frames(b, 0.5)
            vm(f"plain ff:ff:ff:ff:ff:ff {src} 5")
            if len(counted(watch)) == 5:
                break
            assert time.monotonic() < deadline, "the port never received again"
        info = daemon("info", port=f"vale0:{tap}")
        assert info["state"] == "up" and info["settings"]["rx_resets"] >= 1
        assert not info["settings"]["rx_stuck"]
        assert info["counters"]["drops"]["rx_stuck"] >= 1     # the UFO frame, and after
        assert "receive ring was stuck" in daemon.log.read_text()
    finally:
        if writer is not None:
            writer.kill()
            writer.wait()
        if daemon is not None:
            stop_valed(daemon)
        sh("ip", "netns", "del", ns, check=False)


def test_two_ports_taking_a_mac_in_turn_leave_it_with_its_owner(valed, make_host):
    """The hijack of issue 14: two attacker hosts send the victim's source MAC in turn
    until the move damping trips. The victim keeps its MAC and its traffic; the attackers'
    frames are what is dropped."""
    victim, x1, x2, peer = (make_host(i, ipv6=False) for i in range(1, 5))
    valed.attach(victim, x1, x2, peer)
    assert peer.ping(victim)
    for i in range(8):
        (x1, x2)[i % 2].raw("send", "eth0", peer.mac, victim.mac, "1", "60")
    fdb = {e["mac"]: e["port"] for e in valed("fdb_show", switch="vale0")}
    assert fdb[victim.mac] == victim.port
    banned = sum(valed.port_stats(x)["drops"]["learn_banned"] for x in (x1, x2))
    assert banned >= 3
    sh("ip", "-n", peer.ns, "neigh", "flush", "all")
    assert peer.ping(victim)                            # before: the attacker had it
