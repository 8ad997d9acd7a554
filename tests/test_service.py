"""The service side: the systemd unit passes systemd-analyze verify, and valed speaks
systemd's notification protocol (READY, STOPPING, WATCHDOG) to a socket the test reads."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, start_valed
from vale import sdnotify
from vale.client import call

UNIT = ROOT / "systemd" / "valed.service"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_the_unit_passes_systemd_analyze_verify(tmp_path):
    bindir = Path(sys.executable).parent
    if not (bindir / "valed").exists():
        pytest.skip("valed is not installed beside this Python (pip install -e .)")
    unit = tmp_path / "valed.service"
    unit.write_text(UNIT.read_text().replace("/usr/sbin/valed", str(bindir / "valed"))
                    .replace("/usr/bin/valectl", str(bindir / "valectl")))
    # Documentation= names man pages, which verify looks up: this tree's, as installed
    (tmp_path / "man" / "man8").mkdir(parents=True)
    for page in ("valed.8", "valectl.8"):
        (tmp_path / "man" / "man8" / page).symlink_to(ROOT / "man" / page)
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                            text=True, timeout=60,
                            env={**os.environ, "MANPATH": str(tmp_path / "man")})
    complaints = [line for line in (result.stdout + result.stderr).splitlines()
                  if "valed.service" in line]
    assert result.returncode == 0 and complaints == [], result.stderr


def test_unit_is_notify_with_watchdog_and_narrow_capabilities():
    text = UNIT.read_text()
    for line in ("Type=notify", "Restart=on-failure", "RuntimeDirectory=vale",
                 "StateDirectory=vale", "ProtectSystem=strict", "ProtectHome=yes",
                 "NoNewPrivileges=yes", "ExecReload=", "WatchdogSec="):
        assert line in text
    bounding = next(line for line in text.splitlines()
                    if line.startswith("CapabilityBoundingSet="))
    assert set(bounding.split("=", 1)[1].split()) == {
        "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SYS_ADMIN", "CAP_CHOWN",
        "CAP_BPF"}                                  # the kernel fast path's programs


@pytest.fixture
def notify_socket(tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(15)
    yield path, sock
    sock.close()


def test_sd_notify_sends_one_datagram(notify_socket, monkeypatch):
    path, sock = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert sdnotify.notify("READY=1")
    assert sock.recv(100) == b"READY=1"
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not sdnotify.notify("READY=1")


def test_valed_says_ready_watchdog_and_stopping(notify_socket, tmp_path, monkeypatch):
    path, sock = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")      # ping every half second
    daemon = start_valed(str(tmp_path / "valed.sock"), tmp_path / "valed.log")
    try:
        messages = [sock.recv(100) for _ in range(3)]
        assert messages[0] == b"READY=1"                # only once the socket answers
        assert messages[1:] == [b"WATCHDOG=1", b"WATCHDOG=1"]
    finally:
        daemon.proc.send_signal(signal.SIGTERM)
        daemon.proc.wait(10)
    rest = []
    sock.settimeout(1)
    try:
        while True:
            rest.append(sock.recv(100))
    except TimeoutError:
        pass
    assert b"STOPPING=1" in rest
    assert daemon.proc.returncode == 0


def test_ready_comes_after_the_socket_is_up(notify_socket, tmp_path, monkeypatch):
    path, sock = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    proc = subprocess.Popen([sys.executable, "-m", "vale.daemon", "--foreground", "--socket",
                             str(tmp_path / "v.sock"), "--state-dir", str(tmp_path)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        assert sock.recv(100) == b"READY=1"
        assert call("version", path=str(tmp_path / "v.sock"), timeout=5)["api"] == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
