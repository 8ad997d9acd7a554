"""vhost-user ports with a real front end: DPDK's testpmd with a net_virtio_user device
attached to a port valed made (`valectl create NAME --vhost-user`). testpmd answers a
veth host's ARP and pings (icmpecho), and two testpmds exchange frames through vale.
Needs root, dpdk-testpmd (Debian dpdk-dev) and 2 MiB huge pages; skipped otherwise."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import start_valed, stop_valed
from tests.integration.conftest import PREFIX

TESTPMD = shutil.which("dpdk-testpmd")

pytestmark = pytest.mark.skipif(TESTPMD is None, reason="needs dpdk-testpmd (Debian dpdk-dev)")


class Pmd:
    """One dpdk-testpmd with a virtio-user port on a vhost-user socket, forwarding in
    `mode` until stopped; its log says what it counted."""

    def __init__(self, socket_path: str, mode: str, name: str, huge_dir: str,
                 log: Path, *extra: str, server: bool = False) -> None:
        self.log = log
        listen = ",server=1" if server else ""
        self.proc = subprocess.Popen(
            [TESTPMD, "-l", "0,1", "--no-pci", "--huge-dir", huge_dir, "-m", "256",
             "--single-file-segments", "--file-prefix", f"{PREFIX}{name}",
             f"--vdev=net_virtio_user0,path={socket_path},queues=1,queue_size=256{listen}",
             "--", f"--forward-mode={mode}", "--nb-cores=1", "--total-num-mbufs=8192",
             "--stats-period=1", *extra],
            stdin=subprocess.DEVNULL, stdout=log.open("w"), stderr=subprocess.STDOUT)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(2)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.log.read_text(errors="replace")

    def totals(self) -> tuple[int, int]:
        """(RX, TX) packets of its port, from the forward statistics it printed last."""
        text = self.stop()
        rx = re.findall(r"RX-packets:\s+(\d+)", text)
        tx = re.findall(r"TX-packets:\s+(\d+)", text)
        return (int(rx[-1]), int(tx[-1])) if rx and tx else (0, 0)


def wait_connected(valed, port: str, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        info = valed("info", port=f"vale0:{port}")
        queues = info["settings"]["queues"]
        if queues["rx"]["started"] and queues["tx"]["started"]:
            return info
        if time.monotonic() > deadline:
            raise AssertionError(f"{port}: the front end did not set its rings up: {info}")
        time.sleep(0.2)


def test_a_host_on_a_veth_pings_testpmd_over_vhost_user(valed, make_host, huge_pages,
                                                      tmp_path):
    host = make_host(1)
    valed.attach(host)
    sock = str(tmp_path / "vm1.sock")
    valed.ctl("create", "vm1", "--vhost-user", "--path", sock)
    pmd = Pmd(sock, "icmpecho", "a", huge_pages, tmp_path / "testpmd.log")
    try:
        wait_connected(valed, "vm1")
        ping = host.run("ping", "-c", "5", "-i", "0.2", "-W", "2", "198.18.7.7", check=False)
        assert " 0% packet loss" in ping.stdout, ping.stdout + pmd.stop()
    finally:
        pmd.stop()
    stats = valed("stats", target="vale0:vm1")[0]["ports"]["vm1"]
    assert stats["rx_packets"] >= 6 and stats["tx_packets"] >= 6      # ARP and 5 pings
    assert stats["drops"]["bad_descriptor"] == 0


def test_two_testpmds_exchange_frames_through_vale(valed, huge_pages, tmp_path):
    socks = [str(tmp_path / f"vm{k}.sock") for k in (1, 2)]
    for k, sock in enumerate(socks, 1):
        valed.ctl("create", f"vm{k}", "--vhost-user", "--path", sock)
    receiver = Pmd(socks[1], "rxonly", "rx", huge_pages, tmp_path / "rx.log")
    sender = None
    try:
        wait_connected(valed, "vm2")
        sender = Pmd(socks[0], "txonly", "tx", huge_pages, tmp_path / "tx.log",
                         "--eth-peer=0,02:00:00:00:00:02", "--txpkts=64")
        wait_connected(valed, "vm1")
        time.sleep(3)
    finally:
        if sender is not None:
            sent = sender.totals()[1]
        got = receiver.totals()[0]
    stats = valed("stats", target="vale0")[0]["ports"]
    assert sent > 1000 and got > 1000, (sent, got)
    assert stats["vm1"]["rx_packets"] >= got
    assert stats["vm2"]["tx_packets"] >= got             # testpmd took what vale gave it
    assert stats["vm1"]["drops"]["bad_descriptor"] == stats["vm2"]["drops"]["bad_descriptor"] == 0


def test_vale_as_client_reconnects_to_testpmd_after_a_restart(make_host, huge_pages,
                                                            tmp_path):
    """Client mode (Open vSwitch's dpdkvhostuserclient): testpmd listens (server=1),
    valed connects; killed and started again, valed connects again by itself and a host's
    pings to testpmd's icmpecho are answered again."""
    sock, log = str(tmp_path / "valed.sock"), tmp_path / "valed.log"
    vsock = str(tmp_path / "vm1.sock")
    host = make_host(1)
    pmd = Pmd(vsock, "icmpecho", "c", huge_pages, tmp_path / "testpmd.log", server=True)
    daemon = start_valed(sock, log)
    try:
        daemon.attach(host)
        daemon.ctl("create", "vm1", "--vhost-user", "--mode", "client", "--path", vsock)
        wait_connected(daemon, "vm1")
        assert host.run("ping", "-c", "2", "-W", "2", "198.18.7.7", check=False).returncode == 0
        daemon.proc.kill()
        daemon.proc.wait()
        daemon = start_valed(sock, log)
        wait_connected(daemon, "vm1")
        ping = host.run("ping", "-c", "3", "-W", "2", "198.18.7.7", check=False)
        assert " 0% packet loss" in ping.stdout, ping.stdout + log.read_text()[-2000:]
    finally:
        stop_valed(daemon)
        pmd.stop()
