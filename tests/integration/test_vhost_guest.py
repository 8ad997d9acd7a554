"""A real guest on a vhost-user port: QEMU (under TCG) boots Debian's kernel with an
initramfs of ours (tests/guest.py), whose virtio-net driver pings a host on a veth and
streams TCP to it and from it (iperf3) through vale; two guests ping and stream to each
other; and a guest keeps its network across a valed restart. Needs root,
qemu-system-x86_64 and Debian's packages (apt-get download); skipped otherwise."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests import guest
from tests.conftest import start_valed, stop_valed

QEMU = shutil.which("qemu-system-x86_64")
BOOT_TIMEOUT = 240              # TCG: a few seconds to a minute on a busy machine

pytestmark = pytest.mark.skipif(QEMU is None or shutil.which("apt-get") is None,
                                reason="needs qemu-system-x86_64 and apt-get (Debian)")


@pytest.fixture(scope="module")
def images():
    try:
        return guest.build()
    except (subprocess.CalledProcessError, OSError) as exc:
        pytest.skip(f"cannot build the guest from Debian's packages: {exc}")


def cpu_seconds(pid: int) -> float:
    """User and system time of all of a process's threads so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def boot(images, sock: str, mac: str, ip: str, run: str, log) -> subprocess.Popen:
    kernel, initrd = images
    return subprocess.Popen(guest.qemu_command(kernel, initrd, sock, mac, ip, run),
                            stdin=subprocess.DEVNULL, stdout=log.open("w"),
                            stderr=subprocess.STDOUT)


def finish(proc: subprocess.Popen, log, timeout: float = BOOT_TIMEOUT) -> str:
    """Wait for the guest to power off; its console output."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    text = log.read_text(errors="replace")
    assert "VALE-GUEST-DONE" in text, text[-3000:]
    return text


def test_a_guest_pings_and_streams_both_ways_to_a_veth_host(valed, make_host, images,
                                                            tmp_path):
    """The guest's TCP stream leaves in TSO frames (the host's offload), the host's comes
    in as GSO frames into the guest's mergeable buffers (the guest's)."""
    host = make_host(1)
    valed.attach(host)
    sock = str(tmp_path / "vm1.sock")
    valed.ctl("create", "vm1", "--vhost-user", "--path", sock)
    server = host.popen("iperf3", "-s", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        log = tmp_path / "guest.log"
        proc = boot(images, sock, "52:54:00:00:01:01", "198.18.9.1/16",
                    f"ping+-c+3+-W+5+{host.ip}+&&+iperf3+-c+{host.ip}+-t+2"
                    f"+&&+iperf3+-c+{host.ip}+-t+2+-R", log)
        text = finish(proc, log)
    finally:
        server.kill()
        server.wait()
    assert " 0% packet loss" in text, text[-3000:]
    assert "VALE-GUEST-DONE 0" in text, text[-3000:]      # both iperf3 runs to their end
    assert text.count("receiver") == 2, text[-3000:]
    stats = valed("stats", target="vale0:vm1")[0]["ports"]["vm1"]
    assert stats["rx_packets"] > 100 and stats["tx_packets"] > 10
    assert stats["drops"]["bad_descriptor"] == 0


def test_two_guests_ping_and_stream_and_an_idle_one_costs_no_cpu(valed, images, tmp_path):
    socks = [str(tmp_path / f"vm{k}.sock") for k in (1, 2)]
    for k, sock in enumerate(socks, 1):
        valed.ctl("create", f"vm{k}", "--vhost-user", "--path", sock)
    logs = [tmp_path / f"guest{k}.log" for k in (1, 2)]
    # The second guest answers the first's pings and serves its iperf3, then idles.
    second = boot(images, socks[1], "52:54:00:00:02:02", "198.18.9.2/16",
                  "iperf3+-s+-1+&&+sleep+90", logs[1])
    try:
        deadline = time.monotonic() + BOOT_TIMEOUT
        while "VALE-GUEST-UP" not in logs[1].read_text(errors="replace"):
            assert time.monotonic() < deadline and second.poll() is None, \
                logs[1].read_text(errors="replace")[-3000:]
            time.sleep(0.5)
        first = boot(images, socks[0], "52:54:00:00:01:01", "198.18.9.1/16",
                     "ping+-c+3+-W+5+198.18.9.2+&&+iperf3+-c+198.18.9.2+-t+2", logs[0])
        text = finish(first, logs[0])
        # A quiet vhost-user port (the second guest, idle) costs valed no CPU: its thread
        # sleeps until the guest kicks.
        time.sleep(1)                               # the second guest's iperf3 winds down
        before = cpu_seconds(valed.proc.pid)
        time.sleep(5)
        idle = cpu_seconds(valed.proc.pid) - before
    finally:
        second.kill()
        second.wait()
    assert " 0% packet loss" in text, text[-3000:]
    assert "VALE-GUEST-DONE 0" in text and "receiver" in text, text[-3000:]
    assert idle < 0.1, f"valed used {idle:.2f} s of CPU in 5 s beside an idle guest"


def replies(text: str) -> list[int]:
    return [int(seq) for seq in re.findall(r"seq=(\d+)", text)]


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_guest_keeps_its_network_across_a_valed_restart(make_host, images, tmp_path, how):
    """valed stopped (or killed) and started again while a guest pings a host: the ports
    come back from the state file, QEMU reconnects, the pings go on; no guest reboot."""
    sock, log = str(tmp_path / "valed.sock"), tmp_path / "valed.log"
    daemon = start_valed(sock, log)
    host = make_host(1)
    try:
        daemon.attach(host)
        vsock = str(tmp_path / "vm1.sock")
        daemon.ctl("create", "vm1", "--vhost-user", "--path", vsock)
        console = tmp_path / "guest.log"
        proc = boot(images, vsock, "52:54:00:00:01:01", "198.18.9.1/16",
                    f"ping+-c+90+-i+0.5+-W+1+{host.ip}", console)
        deadline = time.monotonic() + BOOT_TIMEOUT
        while len(replies(console.read_text(errors="replace"))) < 3:
            assert time.monotonic() < deadline and proc.poll() is None, \
                console.read_text(errors="replace")[-3000:]
            time.sleep(0.5)
        if how == "SIGTERM":
            stop_valed(daemon)
        else:
            daemon.proc.kill()
            daemon.proc.wait()
        last = max(replies(console.read_text(errors="replace")))
        daemon = start_valed(sock, log)
        text = finish(proc, console)
    finally:
        stop_valed(daemon)
    after = [seq for seq in replies(text) if seq > last + 1]
    assert len(after) >= 10, text[-3000:]           # the pings went on after the restart
    assert "VALE-GUEST-UP" in text and text.count("VALE-GUEST-UP") == 1     # no reboot
