"""valed's API under bad and heavy input. No root needed: nothing here attaches."""

from __future__ import annotations

import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, start_valed, stop_valed
from vale.client import ClientError, call


def raw(valed, payload: bytes) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(valed.socket)
        s.sendall(payload)
        return json.loads(s.makefile("rb").readline())


@pytest.mark.parametrize("payload, code", [
    (b"{not json\n", "bad_request"),
    (b"\xff\xfe\x00garbage\n", "bad_request"),
    (b"[1, 2, 3]\n", "bad_request"),
    (b'{"op": "explode"}\n', "unknown_op"),
    (b'{"op": 5}\n', "unknown_op"),
    (b'{"v": 2, "op": "list"}\n', "bad_request"),
    (b'{"op": "attach", "args": []}\n', "bad_request"),
    (b'{"op": "attach", "args": {}}\n', "bad_request"),
    (b'{"op": "attach", "args": {"port": 7}}\n', "bad_request"),
    (b'{"op": "attach", "args": {"port": "vale0"}}\n', "invalid"),
    (b'{"op": "attach", "args": {"port": "vale0:no/such"}}\n', "invalid"),
    (b'{"op": "attach", "args": {"port": "vale0:nosuchif0"}}\n', "no_such_interface"),
    (b'{"op": "attach", "args": {"port": "vale0:lo", "settings": {"colour": 1}}}\n', "invalid"),
    (b'{"op": "fdb_show", "args": {"switch": "vale9"}}\n', "not_found"),
    (b'{"op": "set", "args": {"target": "vale0", "settings": {}}}\n', "bad_request"),
    (b"[" * 100000 + b"\n", "too_large"),
    (b"[" * 60000 + b"]" * 60 + b"\n", "bad_request"),        # deeply nested, under the limit
    (b'{"op": "list", "args": {"x": "' + b"a" * 70000 + b'"}}\n', "too_large"),
])
def test_bad_requests_get_an_error_reply_and_the_daemon_keeps_serving(valed, payload, code):
    reply = raw(valed, payload)
    assert reply["ok"] is False and reply["error"]["code"] == code, reply
    assert reply["error"]["message"]
    assert valed("list") == []


def test_random_bytes_never_stop_the_daemon(valed):
    for _ in range(200):
        data = os.urandom(int.from_bytes(os.urandom(2), "big") % 3000)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(valed.socket)
            s.sendall(data.replace(b"\n", b" ") + b"\n")
            s.settimeout(10)
            reply = json.loads(s.makefile("rb").readline())
            assert reply["ok"] is False
    assert valed("version")["api"] == 1


def test_many_clients_at_once(valed):
    errors: list[BaseException] = []

    def client() -> None:
        try:
            for _ in range(20):
                for _ in range(100):        # the storm below may fill valed's 256 places
                    try:
                        assert valed("list") == []
                        break
                    except ClientError as exc:
                        if exc.code != "busy":
                            raise
                        time.sleep(0.02)
                else:
                    raise AssertionError("busy for 2 s")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client) for _ in range(50)]
    for t in threads:
        t.start()
    # and thousands of connections opened and dropped without a word
    for _ in range(3000):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(valed.socket)
        s.close()
    for t in threads:
        t.join()
    assert errors == []
    assert valed("version")["api"] == 1


def test_socket_is_owner_and_group_only(valed):
    assert os.stat(valed.socket).st_mode & 0o777 == 0o660


def test_valectl_errors_are_one_line_and_nonzero(valed, tmp_path):
    result = valed.ctl("detach", "vale0:eth9", check=False)
    assert result.returncode == 1
    assert result.stderr == "valectl: no switch vale0\n"
    gone = valed.ctl("--socket", str(tmp_path / "nothing.sock"), "list", check=False)
    assert gone.returncode == 1
    assert "valed is not running" in gone.stderr and gone.stderr.count("\n") == 1


def test_client_reports_a_missing_daemon(tmp_path):
    with pytest.raises(ClientError) as info:
        call("list", path=str(tmp_path / "none.sock"))
    assert info.value.code == "not_running"


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv to try the socket as another user")
def test_a_user_outside_the_group_gets_permission_denied():
    where = Path(tempfile.mkdtemp(prefix="vale-perm-"))
    try:
        where.chmod(0o755)                          # reachable; the socket itself is 0660
        daemon = start_valed(str(where / "valed.sock"), where / "valed.log")
        try:
            result = subprocess.run(
                ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                 sys.executable, "-m", "vale.cli.valectl", "--socket", daemon.socket, "list"],
                capture_output=True, text=True, timeout=60, cwd=ROOT)
            assert result.returncode == 1
            assert result.stderr.startswith("valectl: permission denied")
            assert daemon("list") == []             # and the daemon is fine
        finally:
            stop_valed(daemon)
    finally:
        shutil.rmtree(where, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to hand the socket to a group")
def test_the_socket_goes_to_the_configured_group(tmp_path):
    import grp
    daemon = start_valed(str(tmp_path / "v.sock"), tmp_path / "valed.log",
                         extra=("--group", "nogroup"))
    try:
        assert os.stat(daemon.socket).st_gid == grp.getgrnam("nogroup").gr_gid
    finally:
        stop_valed(daemon)


def test_clients_over_the_limit_are_told_busy_and_the_daemon_goes_on(valed):
    """Each client holds a descriptor of valed's; ports and TAPs need them more."""
    from vale.daemon import MAX_CLIENTS
    held = []
    try:
        for _ in range(MAX_CLIENTS):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(valed.socket)
            held.append(s)
        deadline = time.monotonic() + 5
        while True:                         # once valed has taken them all in
            try:
                valed("list")
            except ClientError as exc:
                assert exc.code == "busy" and "256 clients" in str(exc)
                break
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        for s in held:
            s.close()
    deadline = time.monotonic() + 5
    while True:
        try:
            assert valed("list") == []
            break
        except ClientError:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_scrapes_over_the_limit_get_503_and_metrics_go_on(tmp_path):
    from vale.metrics import MAX_SCRAPES
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    daemon = start_valed(str(tmp_path / "v.sock"), tmp_path / "valed.log",
                         extra=("--metrics", f"127.0.0.1:{port}"))
    url = f"http://127.0.0.1:{port}/metrics"
    held = []
    try:
        assert b"vale_" in urllib.request.urlopen(url, timeout=5).read()
        for _ in range(MAX_SCRAPES):                # connected, saying nothing
            held.append(socket.create_connection(("127.0.0.1", port)))
        assert scrape_status(url) == 503
        for s in held:
            s.close()
        held.clear()
        assert scrape_status(url, until=200) == 200
    finally:
        for s in held:
            s.close()
        stop_valed(daemon)


def test_json_before_the_command_is_json_too(valed):
    for argv in (("--json", "stats"), ("--json", "list"), ("stats", "--json")):
        out = valed.ctl(*argv).stdout
        json.loads(out)


def scrape_status(url: str, until: int = 503) -> int:
    """GET url until it answers `until` (5 s at most); the last status."""
    deadline = time.monotonic() + 5
    while True:
        try:
            status = urllib.request.urlopen(url, timeout=5).status
        except urllib.error.HTTPError as exc:
            status = exc.code
        if status == until or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def test_valed_raises_its_open_files_limit(tmp_path):
    """Services start at 1024 open files (soft), as valed does here; each interface port
    takes two sockets, so valed raises the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard <= 1024:
        pytest.skip(f"the hard limit on open files here is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    try:
        daemon = start_valed(str(tmp_path / "valed.sock"), tmp_path / "valed.log")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        limits = Path(f"/proc/{daemon.proc.pid}/limits").read_text()
        line = next(row for row in limits.splitlines() if row.startswith("Max open files"))
        assert int(line.split()[3]) == hard
    finally:
        stop_valed(daemon)


def test_under_systemd_log_lines_carry_the_journal_priority(monkeypatch, tmp_path):
    """On the journal's stream (JOURNAL_STREAM is its device:inode), every line of a
    record starts with its priority, so `journalctl -p err` finds valed's errors;
    elsewhere stderr stays plain."""
    import logging

    from vale.daemon import JournalFormatter, stderr_is_journal

    with open(tmp_path / "stream", "w") as stream:
        st = os.fstat(stream.fileno())
        monkeypatch.setattr(sys, "stderr", stream)
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert stderr_is_journal()
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino + 1}")
        assert not stderr_is_journal()
        monkeypatch.delenv("JOURNAL_STREAM")
        assert not stderr_is_journal()
    formatter = JournalFormatter("%(levelname)s %(message)s")

    def line(level: int, message: str) -> str:
        return formatter.format(logging.LogRecord("vale", level, __file__, 1, message,
                                                  None, None))

    assert line(logging.ERROR, "a\nb") == "<3>ERROR a\n<3>b"
    assert line(logging.WARNING, "w") == "<4>WARNING w"
    assert line(logging.INFO, "i") == "<6>INFO i"


# A kernel without packet sockets or TUN, as valed's probes see one: socket(AF_PACKET)
# fails EAFNOSUPPORT, open(/dev/net/tun) ENOENT (no node) or ENODEV (no driver).
WITHOUT = """
import errno, os, socket, sys
real_socket, real_open = socket.socket, os.open
class NoPacket(real_socket):
    def __init__(self, family=-1, *args, **kw):
        if family == socket.AF_PACKET and "packet" in sys.argv[1]:
            raise OSError(errno.EAFNOSUPPORT, os.strerror(errno.EAFNOSUPPORT))
        super().__init__(family, *args, **kw)
def no_tun(path, *args, **kw):
    if path == "/dev/net/tun" and "tun" in sys.argv[1]:
        raise OSError(errno.ENODEV, os.strerror(errno.ENODEV), path)
    return real_open(path, *args, **kw)
socket.socket, os.open = NoPacket, no_tun
from vale.daemon import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("missing", ["packet", "tun", "packet+tun"])
def test_without_af_packet_or_tun_valed_says_which_in_one_line_and_exits_69(tmp_path,
                                                                           missing):
    """One error line naming what the kernel lacks, exit 69 (EX_UNAVAILABLE: the unit's
    RestartPreventExitStatus=, so no crash loop), and nothing started: no socket."""
    sock = tmp_path / "valed.sock"
    result = subprocess.run([sys.executable, "-c", WITHOUT, missing, "--foreground",
                             "--socket", str(sock), "--state-dir", str(tmp_path),
                             "--no-metrics"], capture_output=True, text=True, timeout=30,
                            cwd=ROOT, stdin=subprocess.DEVNULL)
    assert result.returncode == 69, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and " valed ERROR valed cannot run without " in lines[0], lines
    assert ("AF_PACKET (packet sockets" in lines[0]) == ("packet" in missing)
    assert ("TUN (/dev/net/tun" in lines[0]) == ("tun" in missing)
    assert not sock.exists()


def test_the_unit_does_not_restart_a_valed_the_kernel_cannot_run():
    from vale.daemon import EXIT_UNAVAILABLE
    unit = (ROOT / "systemd" / "valed.service").read_text().splitlines()
    assert f"RestartPreventExitStatus={EXIT_UNAVAILABLE}" in unit
    assert "Restart=on-failure" in unit


def test_this_kernel_has_what_valed_needs():
    from vale.daemon import missing_kernel_features
    assert missing_kernel_features() is None
