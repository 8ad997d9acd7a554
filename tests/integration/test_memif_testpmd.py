"""memif ports with a real program: DPDK's testpmd with a net_memif device (role=client)
on a port valed made (`valectl create NAME --memif`). testpmd answers a veth host's ARP
and pings (icmpecho); two testpmds exchange frames through vale, and so do testpmd and
a Python program (vale.app); a testpmd with the wrong secret is refused. Needs root,
dpdk-testpmd (Debian dpdk-dev) and 2 MiB huge pages; skipped otherwise."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from cli.pkttools import udp_frame
from tests.integration.conftest import PREFIX
from vale.app import open_port

TESTPMD = shutil.which("dpdk-testpmd")
PMD_MAC = "02:00:00:00:00:99"

pytestmark = pytest.mark.skipif(TESTPMD is None, reason="needs dpdk-testpmd (Debian dpdk-dev)")


class MemifPmd:
    """One dpdk-testpmd with a memif client port on a vale port's socket, forwarding in
    `mode` until stopped; its log says what it counted."""

    def __init__(self, socket_path: str, mode: str, name: str, huge_dir: str, log: Path,
                 *extra: str, devargs: str = "") -> None:
        self.log = log
        self.proc = subprocess.Popen(
            [TESTPMD, "-l", "0,1", "--no-pci", "--huge-dir", huge_dir, "-m", "256",
             "--single-file-segments", "--file-prefix", f"{PREFIX}{name}",
             f"--vdev=net_memif0,role=client,socket={socket_path},socket-abstract=no"
             f"{devargs}", "--", f"--forward-mode={mode}", "--nb-cores=1",
             "--total-num-mbufs=8192", "--stats-period=1", *extra],
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
        if info["settings"]["connected"]:
            return info
        if time.monotonic() > deadline:
            raise AssertionError(f"{port}: the program did not connect: {info}")
        time.sleep(0.2)


def test_a_host_on_a_veth_pings_testpmd_over_memif(valed, make_host, huge_pages, tmp_path):
    host = make_host(1)
    valed.attach(host)
    sock = str(tmp_path / "app1.sock")
    valed.ctl("create", "app1", "--memif", "--path", sock)
    pmd = MemifPmd(sock, "icmpecho", "a", huge_pages, tmp_path / "testpmd.log")
    try:
        wait_connected(valed, "app1")
        ping = host.run("ping", "-c", "5", "-i", "0.2", "-W", "2", "198.18.7.7", check=False)
        assert " 0% packet loss" in ping.stdout, ping.stdout + pmd.stop()
    finally:
        pmd.stop()
    stats = valed("stats", target="vale0:app1")[0]["ports"]["app1"]
    assert stats["rx_packets"] >= 6 and stats["tx_packets"] >= 6      # ARP and 5 pings
    assert stats["drops"]["bad_descriptor"] == 0


def test_two_testpmds_exchange_frames_over_memif(valed, huge_pages, tmp_path):
    socks = [str(tmp_path / f"app{k}.sock") for k in (1, 2)]
    for k, sock in enumerate(socks, 1):
        valed.ctl("create", f"app{k}", "--memif", "--path", sock, "--id", str(k))
    receiver = MemifPmd(socks[1], "rxonly", "rx", huge_pages, tmp_path / "rx.log",
                        devargs=",id=2")
    sender = None
    try:
        wait_connected(valed, "app2")
        sender = MemifPmd(socks[0], "txonly", "tx", huge_pages, tmp_path / "tx.log",
                          "--eth-peer=0,02:00:00:00:00:02", "--txpkts=64", devargs=",id=1")
        wait_connected(valed, "app1")
        time.sleep(3)
    finally:
        sent = sender.totals()[1] if sender is not None else 0
        got = receiver.totals()[0]
    stats = valed("stats", target="vale0")[0]["ports"]
    assert sent > 1000 and got > 1000, (sent, got)
    assert stats["app1"]["rx_packets"] >= got
    assert stats["app2"]["tx_packets"] >= got             # testpmd took what vale gave it
    assert stats["app1"]["drops"]["bad_descriptor"] == 0
    assert stats["app2"]["drops"]["bad_descriptor"] == 0


def test_a_testpmd_with_the_wrong_secret_is_refused(valed, huge_pages, tmp_path):
    sock = str(tmp_path / "app1.sock")
    valed.ctl("create", "app1", "--memif", "--path", sock, "--secret", "right")
    pmd = MemifPmd(sock, "rxonly", "s", huge_pages, tmp_path / "testpmd.log",
                   devargs=",secret=wrong")
    try:
        deadline = time.monotonic() + 20
        while valed("info", port="vale0:app1")["settings"]["refused"] == 0:
            assert time.monotonic() < deadline, pmd.stop()
            time.sleep(0.2)
    finally:
        pmd.stop()
    assert "incorrect secret; disconnected" in valed.log.read_text()
    assert not valed("info", port="vale0:app1")["settings"]["connected"]


def test_a_program_and_testpmd_exchange_frames_through_vale(valed, huge_pages, tmp_path):
    """A Python program (vale.app) sends 10,000 frames to testpmd's MAC; testpmd (macswap)
    sends each back: counted at both ends, none lost."""
    total, window = 10_000, 256
    socks = [str(tmp_path / f"app{k}.sock") for k in (1, 2)]
    for k, sock in enumerate(socks, 1):
        valed.ctl("create", f"app{k}", "--memif", "--path", sock)
    valed.ctl("set", "vale0", "loop_probe=0")
    pmd = MemifPmd(socks[1], "macswap", "m", huge_pages, tmp_path / "testpmd.log",
                   devargs=f",mac={PMD_MAC}")
    got = 0
    try:
        wait_connected(valed, "app2")
        with open_port(socks[0]) as port:
            frame = udp_frame(60, src="02:00:00:00:00:01", dst=PMD_MAC)
            sent, deadline = 0, time.monotonic() + 30
            while got < total:
                if sent < total and sent - got < window:
                    sent += port.send_copies(frame, min(window - (sent - got), total - sent))
                got += port.drain(timeout=0.0 if sent < total else 0.5)[0]
                assert time.monotonic() < deadline, (sent, got, pmd.stop()[-2000:])
    finally:
        rx, tx = pmd.totals()
    assert got == total and rx == tx == total
    stats = valed("stats", target="vale0")[0]["ports"]
    assert stats["app2"]["tx_packets"] == stats["app2"]["rx_packets"] == total
