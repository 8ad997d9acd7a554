"""The kernel fast path through valed: known unicast between interface ports forwarded in
the kernel, counted once, and everything vale decides (learning, moves, ageing, mirrors,
MTU drops) still decided as without it. Hosts without IPv6, loop probes off: the frames
counted are the test's own."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import start_valed, stop_valed
from tests.integration.conftest import Host, sh
from vale.kernel import upcall_name

SENT = 400
SYNC_S = 1.5        # a table change reaches the kernel's maps within a second (RESYNC_S)
PINS = Path("/sys/fs/bpf/vale/vale0")

pytestmark = pytest.mark.skipif(not Path("/sys/fs/bpf").exists(), reason="no bpffs here")


def state(valed, host: Host) -> str:
    return valed("info", port=f"vale0:{host.port}")["settings"]["fastpath_state"]


def tally(host: Host, seconds: float) -> subprocess.Popen:
    """Count the test frames arriving at host; .communicate() gives 'N'."""
    proc = host.popen(sys.executable, "-m", "tests.integration.rawnet", "tally", "eth0",
                      "0x88b5", str(seconds), stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def received(proc: subprocess.Popen) -> int:
    return int(proc.communicate(timeout=60)[0].strip())


def learned(valed, *hosts: Host) -> None:
    """Each host sends one broadcast (so vale learns it); then the maps catch up."""
    for host in hosts:
        host.raw("send", "eth0", "ff:ff:ff:ff:ff:ff", host.mac, "1", "60")
    time.sleep(SYNC_S)


def stats(valed, host: Host) -> dict:
    return valed.port_stats(host)


def switch_pair(valed, make_host, mode: str = "on", third: bool = False) -> list[Host]:
    hosts = [make_host(i, ipv6=False) for i in range(1, 4 if third else 3)]
    valed.attach(*hosts)
    valed("set", target="vale0", settings={"loop_probe": 0, "fastpath": mode})
    return hosts


@pytest.mark.parametrize("mode", ["tcx", "clsact"])
def test_known_unicast_goes_through_the_kernel_once_and_is_counted(valed, make_host, mode):
    a, b = switch_pair(valed, make_host, mode)
    assert state(valed, a) == state(valed, b) == mode
    learned(valed, a, b)
    counting = tally(b, 3)
    a.raw("send", "eth0", b.mac, a.mac, str(SENT), "100")
    assert received(counting) == SENT                   # not twice: vale's socket skipped them
    sa, sb = stats(valed, a), stats(valed, b)
    assert sa["fastpath_rx_packets"] == SENT and sb["fastpath_tx_packets"] == SENT
    assert sa["rx_packets"] == SENT + 1 and sb["tx_packets"] == SENT + 1    # + a's broadcast
    assert sa["rx_bytes"] == SENT * 100 + 60
    # Off: the same frames through vale, once, and the kernel's counts stay where they were.
    valed("set", target="vale0", settings={"fastpath": "off"})
    assert state(valed, a) == "off"
    counting = tally(b, 3)
    a.raw("send", "eth0", b.mac, a.mac, str(SENT), "100")
    assert received(counting) == SENT
    sa, sb = stats(valed, a), stats(valed, b)
    assert sa["fastpath_rx_packets"] == SENT and sa["rx_packets"] == 2 * SENT + 1
    assert sb["tx_packets"] == 2 * SENT + 1
    assert not PINS.exists()                            # off took everything away


def test_a_move_is_learned_by_vale_and_followed_by_the_kernel(valed, make_host):
    a, b, c = switch_pair(valed, make_host, third=True)
    learned(valed, a, b, c)
    c.raw("send", "eth0", "ff:ff:ff:ff:ff:ff", a.mac, "1", "60")     # a's MAC now behind c
    time.sleep(SYNC_S)
    assert {e["mac"]: e["port"] for e in valed("fdb_show", switch="vale0")}[a.mac] == c.port
    at_a, at_c = tally(a, 3), tally(c, 3)
    b.raw("send", "eth0", a.mac, b.mac, str(SENT), "100")
    assert (received(at_a), received(at_c)) == (0, SENT)
    assert stats(valed, c)["fastpath_tx_packets"] == SENT


def test_mac_addresses_the_kernel_forwards_for_do_not_age(valed, make_host):
    a, b = switch_pair(valed, make_host)
    valed("set", target="vale0", settings={"ageing": 2})
    assert a.ping(b, count=1)
    time.sleep(SYNC_S)
    pinging = a.popen("ping", "-q", "-i", "0.2", "-w", "5", b.ip, stdout=subprocess.DEVNULL)
    pinging.wait(timeout=30)
    macs = {e["mac"] for e in valed("fdb_show", switch="vale0")}
    assert macs == {a.mac, b.mac}                       # 5 s of traffic with ageing 2 s
    assert stats(valed, a)["fastpath_rx_packets"] >= 20
    time.sleep(3.5)                                     # quiet: they age, in vale and kernel
    assert valed("fdb_show", switch="vale0") == []
    counting = tally(b, 3)
    a.raw("send", "eth0", b.mac, a.mac, "10", "100")    # unknown again: flooded by vale
    assert received(counting) == 10
    assert stats(valed, a)["flood_packets"] >= 10


def test_a_mirrored_port_goes_through_vale_so_the_mirror_sees_every_frame(valed, make_host):
    a, b, m = switch_pair(valed, make_host, third=True)
    learned(valed, a, b)
    valed.ctl("mirror", "add", "vale0", "--from", a.port, "--to", m.port, "--direction", "rx")
    time.sleep(SYNC_S)
    assert state(valed, a) == "tcx, held back: mirror"
    assert state(valed, m) == "tcx, held back: mirror target"
    at_b, at_m = tally(b, 3), tally(m, 3)
    a.raw("send", "eth0", b.mac, a.mac, str(SENT), "100")
    assert (received(at_b), received(at_m)) == (SENT, SENT)
    assert stats(valed, a)["fastpath_rx_packets"] == 0
    valed.ctl("mirror", "del", "vale0")
    time.sleep(SYNC_S)
    assert state(valed, a) == "tcx"


def test_frames_beyond_the_destination_mtu_are_dropped_and_counted(valed, make_host):
    a, b = switch_pair(valed, make_host)
    sh("ip", "link", "set", b.port, "mtu", "1000")      # the port follows its interface
    learned(valed, a, b)
    counting = tally(b, 3)
    a.raw("send", "eth0", b.mac, a.mac, "50", "1018")   # MTU + 18: fits
    a.raw("send", "eth0", b.mac, a.mac, "30", "1019")   # one byte more: dropped
    assert received(counting) == 50
    sb = stats(valed, b)
    assert sb["drops"]["too_big"] == 30 and sb["fastpath_tx_packets"] == 50


def upcall_device(host: Host) -> str:
    return upcall_name(socket.if_nametoindex(host.port))


def receives_on(valed, host: Host) -> int:
    return valed("info", port=f"vale0:{host.port}")["settings"]["rx_ifindex"]


def test_detaching_takes_the_program_its_maps_and_upcall_device_away(valed, make_host):
    a, b = switch_pair(valed, make_host, "clsact")
    assert PINS.is_dir()
    assert "vale" in sh("tc", "filter", "show", "dev", a.port, "ingress").stdout
    # vale's socket of the port listens on its upcall device, which drops what it got.
    up = upcall_device(a)
    assert receives_on(valed, a) == socket.if_nametoindex(up)
    assert "vale" in sh("tc", "filter", "show", "dev", up, "ingress").stdout
    valed("set", target=f"vale0:{a.port}", settings={"fastpath": "off"})
    assert receives_on(valed, a) == socket.if_nametoindex(a.port)
    assert not Path(f"/sys/class/net/{up}").exists()
    assert a.ping(b)                                    # through vale's socket on a.port
    valed("set", target=f"vale0:{a.port}", settings={"fastpath": "on"})
    assert receives_on(valed, a) == socket.if_nametoindex(up)
    valed("detach", port=f"vale0:{a.port}")
    assert "vale" not in sh("tc", "filter", "show", "dev", a.port, "ingress").stdout
    assert not Path(f"/sys/class/net/{up}").exists()
    assert PINS.is_dir()                                # b still has it
    valed("detach", port=f"vale0:{b.port}")
    assert not PINS.exists()
    assert not Path(f"/sys/class/net/{upcall_device(b)}").exists()


def test_an_upcall_device_deleted_by_hand_is_made_again(valed, make_host):
    a, b = switch_pair(valed, make_host)
    learned(valed, a, b)
    sh("ip", "link", "del", upcall_device(a))
    time.sleep(SYNC_S)                                  # valed notices within a second
    assert receives_on(valed, a) == socket.if_nametoindex(upcall_device(a))
    assert a.ping(b)            # ARP's broadcasts go up to vale through the new device
    counting = tally(b, 3)
    a.raw("send", "eth0", b.mac, a.mac, str(SENT), "100")
    assert received(counting) == SENT


def test_a_port_whose_link_goes_down_is_taken_out_and_back(valed, make_host):
    """Its socket listens on the upcall device, which does not go down with the link:
    valed follows the link from netlink."""
    a, b = switch_pair(valed, make_host)
    sh("ip", "link", "set", a.port, "down")
    deadline = time.monotonic() + 5
    while valed("info", port=f"vale0:{a.port}")["settings"]["up"]:
        assert time.monotonic() < deadline, "valed did not see the link go down"
        time.sleep(0.1)
    sh("ip", "link", "set", a.port, "up")
    deadline = time.monotonic() + 5
    while not valed("info", port=f"vale0:{a.port}")["settings"]["up"]:
        assert time.monotonic() < deadline, "valed did not see the link come back"
        time.sleep(0.1)
    assert a.ping(b)


def test_known_unicast_flows_while_valed_is_killed_and_restarted(tmp_path, make_host):
    """kill -9 leaves the fast path pinned: known unicast goes on in the kernel; the valed
    that comes back takes the ports and their MACs again, and a clean stop then removes it
    all."""
    daemon = start_valed(str(tmp_path / "valed.sock"), tmp_path / "valed.log")
    try:
        a, b = switch_pair(daemon, make_host)
        learned(daemon, a, b)
        daemon.proc.kill()
        daemon.proc.wait()
        counting = tally(b, 3)
        a.raw("send", "eth0", b.mac, a.mac, str(SENT), "100")
        assert received(counting) == SENT               # no valed: the kernel forwards them
        daemon = start_valed(daemon.socket, tmp_path / "valed.log")
        macs = {e["mac"]: e["port"] for e in daemon("fdb_show", switch="vale0")}
        assert macs == {a.mac: a.port, b.mac: b.port}   # learned back from the kernel's maps
        time.sleep(SYNC_S)
        counting = tally(b, 3)
        a.raw("send", "eth0", b.mac, a.mac, str(SENT), "100")
        assert received(counting) == SENT               # once: the new socket is upcall's
        assert stats(daemon, a)["fastpath_rx_packets"] == SENT
    finally:
        stop_valed(daemon)
    assert not PINS.exists()
    assert not Path(f"/sys/class/net/{upcall_device(a)}").exists()


def test_a_fast_path_that_cannot_be_loaded_is_reported_and_the_port_works(make_host,
                                                                          monkeypatch):
    from vale import _bpf
    from vale.switch import Switch
    monkeypatch.setattr(_bpf, "OBJECT", "/nonexistent/fastpath.bpf.o")
    a, b = make_host(1, ipv6=False), make_host(2, ipv6=False)
    sw = Switch("vale9")
    try:
        sw.attach(a.port)
        sw.attach(b.port)
        sw.start()
        assert sw.port_info(a.port)["fastpath_state"].startswith(
            "unavailable: [Errno 2] no BPF object /nonexistent/fastpath.bpf.o")
        assert a.ping(b)                                # through vale's packet sockets
        assert sw.stats()["ports"][a.port]["fastpath_rx_packets"] == 0
    finally:
        sw.stop()
    assert not Path("/sys/fs/bpf/vale/vale9").exists()


def test_macs_beyond_a_full_map_take_the_slow_path_and_are_counted(make_host):
    """The maps are sized by the table when the fast path starts; a table grown later can
    hold more than they do: the rest goes through vale."""
    from vale.switch import Switch
    hosts = [make_host(i, ipv6=False) for i in (1, 2, 3)]
    sw = Switch("vale8", fdb_capacity=2, loop_probe=0)
    try:
        for host in hosts:
            sw.attach(host.port)
        sw.start()
        sw.configure(fdb_capacity=100)
        for host in hosts:
            host.raw("send", "eth0", "ff:ff:ff:ff:ff:ff", host.mac, "1", "60")
        time.sleep(0.3)
        sw.kernel_sync()
        assert sw.stats()["fastpath"]["map_full"] == 1
        assert hosts[0].ping(hosts[1]) and hosts[0].ping(hosts[2]) and hosts[1].ping(hosts[2])
    finally:
        sw.stop()


def test_a_program_taken_away_by_hand_is_attached_again(valed, make_host):
    a, b = switch_pair(valed, make_host, "clsact")
    learned(valed, a, b)
    sh("tc", "qdisc", "del", "dev", a.port, "clsact")      # someone tidies up
    time.sleep(SYNC_S)                                      # valed notices within a second
    assert "vale" in sh("tc", "filter", "show", "dev", a.port, "ingress").stdout
    counting = tally(b, 3)
    a.raw("send", "eth0", b.mac, a.mac, str(SENT), "100")
    assert received(counting) == SENT
    assert stats(valed, a)["fastpath_rx_packets"] == SENT


def test_a_fast_path_pinned_with_another_layout_is_taken_away_and_made_anew(make_host):
    """An earlier valed's maps laid out otherwise cannot be reused: its programs are
    detached, its pins and upcall devices removed, and the new fast path loads."""
    import shutil

    from vale import _bpf
    from vale.kernel import KernelPath
    a = make_host(1, ipv6=False)
    ifindex = socket.if_nametoindex(a.port)
    switch = f"vstale{os.getpid()}"
    pins = _bpf.pin_dir(switch)
    def links() -> set[int]:
        return {link["id"] for link in json.loads(sh("bpftool", "-j", "link", "show").stdout)}

    try:
        before = links()
        old = KernelPath(switch, macs=1024)
        old.add_port(1, ifindex, mtu=1500, peer=True)
        old.close(remove=False)                         # as a kill -9 leaves it
        assert Path(f"/sys/class/net/{upcall_name(ifindex)}").exists()
        left = links() - before
        assert len(left) == 1               # the port's (the upcall's is a clsact filter)
        os.unlink(f"{pins}/vale_ports")                 # an older layout of vale_ports
        sh("bpftool", "map", "create", f"{pins}/vale_ports", "type", "hash", "key", "4",
           "value", "8", "entries", "256", "name", "vale_ports")
        with pytest.raises(OSError):
            _bpf.Datapath(pins, macs=1024)
        new = KernelPath(switch, macs=1024)
        try:
            assert not links() & left
            assert not Path(f"/sys/class/net/{upcall_name(ifindex)}").exists()
            new.add_port(1, ifindex, mtu=1500, peer=True)
            assert len(links() - before) == 1
        finally:
            new.close(remove=True)
        assert not Path(pins).exists()
    finally:
        shutil.rmtree(pins, ignore_errors=True)


def test_a_switch_fast_path_another_valed_runs_is_left_alone(make_host):
    """Pins are locked by the valed that runs them: a second one (another instance, a
    test's) neither takes them over nor removes them as left behind."""
    from vale import _bpf, kernel
    switch = f"vbusy{os.getpid()}"
    first = kernel.KernelPath(switch, macs=1024)
    try:
        with pytest.raises(OSError, match="another valed runs a switch"):
            kernel.KernelPath(switch, macs=1024)
        assert switch not in kernel.remove_left_behind(set())
        assert Path(_bpf.pin_dir(switch)).is_dir()
    finally:
        first.close(remove=False)                       # as a killed valed leaves it
    assert switch in kernel.remove_left_behind(set())   # now nobody's: taken away
    assert not Path(_bpf.pin_dir(switch)).exists()
