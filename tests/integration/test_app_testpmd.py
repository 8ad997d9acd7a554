"""vale.app against a real memif server: DPDK's testpmd with a net_memif device in
role=server, forwarding in io mode on its one port, so every frame the client sends
comes back to it. Needs root, dpdk-testpmd (Debian dpdk-dev) and 2 MiB huge pages;
skipped otherwise."""

from __future__ import annotations

import contextlib
import os
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest

from cli.pkttools import COUNTER_AT, udp_frame
from tests.integration.conftest import PREFIX
from vale.app import Port, open_port

TESTPMD = shutil.which("dpdk-testpmd")

pytestmark = pytest.mark.skipif(TESTPMD is None, reason="needs dpdk-testpmd (Debian dpdk-dev)")

FRAMES = 10_000
WINDOW = 512                # frames in flight at most: testpmd drops what finds our ring full


class MemifPmd:
    """One dpdk-testpmd whose port 0 is a memif server on a socket file; stopped by its
    PID.

    DPDK 22.11 listens from the device's probe, before testpmd configures and starts the
    port: a client connecting then is refused ("ID not found") or, worse, gets a session
    whose S2C ring testpmd never fills (its queues are made again after the handshake).
    So testpmd listens on a name of its own, and the socket gets the client's name (a
    rename) only once testpmd forwards."""

    def __init__(self, socket_path: str, huge_dir: str, log: Path, mode: str = "io") -> None:
        self.log = log
        starting = socket_path + ".starting"
        for stale in (socket_path, starting):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(stale)
        self.proc = subprocess.Popen(
            [TESTPMD, "-l", "0,1", "--no-pci", "--huge-dir", huge_dir, "-m", "256",
             "--file-prefix", f"{PREFIX}memif",
             f"--vdev=net_memif0,role=server,socket={starting},socket-abstract=no",
             "--", f"--forward-mode={mode}", "--nb-cores=1", "--total-num-mbufs=8192",
             "--stats-period=1"],
            stdin=subprocess.DEVNULL, stdout=log.open("w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while "start packet forwarding" not in log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"testpmd did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.05)
        os.rename(starting, socket_path)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(2)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.log.read_text(errors="replace")


def echo(port: Port, frames: list[bytes], timeout: float = 10) -> list[bytes]:
    """Sends frames, at most WINDOW in flight, and returns what came back, copied."""
    back: list[bytes] = []
    sent = 0
    deadline = time.monotonic() + timeout
    while len(back) < len(frames) and time.monotonic() < deadline:
        if sent < len(frames) and sent - len(back) < WINDOW:
            sent += port.send(frames[sent:min(len(frames), len(back) + WINDOW)])
        back += [bytes(f) for f in port.receive_batch(timeout=0.01)]
    return back


def numbered(count: int) -> list[bytes]:
    """Frames numbered at COUNTER_AT; every 100th is 3000 bytes: a chain both ways
    (testpmd's mbufs and our buffers hold 2048)."""
    small, big = udp_frame(60), udp_frame(3000)
    out = []
    for k in range(count):
        f = bytearray(big if k % 100 == 99 else small)
        struct.pack_into("!I", f, COUNTER_AT, k)
        out.append(bytes(f))
    return out


def test_frames_sent_to_testpmd_all_come_back(huge_pages, tmp_path):
    path = str(tmp_path / "memif.sock")
    pmd = MemifPmd(path, huge_pages, tmp_path / "testpmd.log")
    try:
        frames = numbered(FRAMES)
        with open_port(path) as port:
            back = echo(port, frames)
            counters = port.counters
    finally:
        log = pmd.stop()
    assert len(back) == FRAMES, log[-2000:]
    assert sorted(back) == sorted(frames)
    assert counters["tx_frames"] == counters["rx_frames"] == FRAMES
    assert counters["tx_bytes"] == counters["rx_bytes"] == sum(map(len, frames))
    assert counters["bad_descriptors"] == 0
    assert counters["kicks"] == 0           # testpmd polls: it masked its interrupts


def test_the_port_connects_again_after_testpmd_restarts(huge_pages, tmp_path):
    path = str(tmp_path / "memif.sock")
    pmd = MemifPmd(path, huge_pages, tmp_path / "testpmd1.log")
    try:
        with open_port(path) as port:
            assert len(echo(port, numbered(100))) == 100
            pmd.stop()
            deadline = time.monotonic() + 5
            while port.connected and time.monotonic() < deadline:
                port.receive_batch(timeout=0.1)
            assert not port.connected
            pmd = MemifPmd(path, huge_pages, tmp_path / "testpmd2.log")
            deadline = time.monotonic() + 10
            while not port.connected and time.monotonic() < deadline:
                port.receive_batch(timeout=0.1)
            assert port.connected
            back = echo(port, numbered(1000))
            assert len(back) == 1000
            assert port.counters["reconnects"] == 1
    finally:
        pmd.stop()
