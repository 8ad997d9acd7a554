"""Seeing what the switch does: captures read back by tcpdump and tshark hold exactly the
frames sent; mirrors deliver copies and leave the mirrored traffic unchanged; valectl top
shows the load. Root, namespaces, tcpdump/tshark; skipped otherwise."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT
from tests.integration.conftest import finish
from tests.integration.test_switching import count_frames, counted


def capture(valed, port: str, *argv: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "vale.cli.valectl", "--socket", valed.socket,
                             "capture", port, *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=ROOT)
    time.sleep(0.5)                     # subscribed before the traffic starts
    return proc


@pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark")
def test_a_capture_file_holds_exactly_the_frames_sent(valed, make_host, tmp_path):
    a, b = make_host(1, ipv6=False), make_host(2, ipv6=False)
    valed.attach(a, b)
    valed("set", target="vale0", settings={"loop_probe": 0})   # the test's frames only
    b.raw("send", "eth0", "ff:ff:ff:ff:ff:ff", b.mac, "1", "60")       # learn b
    pcap = tmp_path / "b.pcap"
    cap = capture(valed, f"vale0:{b.port}", "-w", str(pcap), "-c", "25", "--direction", "tx")
    a.raw("send", "eth0", b.mac, a.mac, "25", "333")
    _, err = finish(cap, 30)
    assert cap.returncode == 0 and "25 frames captured, 0 lost" in err.decode()
    fields = subprocess.run(["tshark", "-r", str(pcap), "-T", "fields", "-e", "eth.src",
                             "-e", "eth.dst", "-e", "frame.len"], capture_output=True,
                            text=True, check=True).stdout.split("\n")
    assert [f for f in fields if f] == [f"{a.mac}\t{b.mac}\t333"] * 25


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="needs tcpdump")
def test_capture_to_stdout_feeds_tcpdump(valed, make_host):
    a, b = make_host(1, ipv6=False), make_host(2, ipv6=False)
    valed.attach(a, b)
    ctl = f"{sys.executable} -m vale.cli.valectl --socket {valed.socket}"
    pipe = subprocess.Popen(f"{ctl} capture vale0:{a.port} --direction rx | "
                            "tcpdump -nr - -c 5 ether proto 0x88b5",
                            shell=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            cwd=ROOT, text=True)
    time.sleep(1)
    a.raw("send", "eth0", "02:00:00:00:00:77", a.mac, "5", "100")
    out, _ = finish(pipe, 30)
    assert out.count("ethertype Unknown (0x88b5)") == 5 or out.count("0x88b5") == 5, out


def test_capturing_a_port_that_does_not_exist_is_refused(valed, make_host, tmp_path):
    a = make_host(1)
    valed.attach(a)
    result = valed.ctl("capture", "vale0:nosuch0", check=False)
    assert result.returncode == 1 and result.stderr == "valectl: no port vale0:nosuch0\n"
    unwritable = valed.ctl("capture", f"vale0:{a.port}", "-w", "/proc/vale.pcap", check=False)
    assert unwritable.returncode == 1 and "cannot write /proc/vale.pcap" in unwritable.stderr


def test_a_mirror_gets_copies_and_the_mirrored_traffic_is_unchanged(valed, make_host):
    a, b, m = (make_host(i, ipv6=False) for i in (1, 2, 3))
    valed.attach(a, b, m)
    b.raw("send", "eth0", "ff:ff:ff:ff:ff:ff", b.mac, "1", "60")       # learn b
    valed.ctl("mirror", "add", "vale0", "--from", a.port, "--to", m.port, "--direction", "rx")
    at_b, at_m = count_frames(b, 3), count_frames(m, 3)
    a.raw("send", "eth0", b.mac, a.mac, "30", "200")
    assert counted(at_b) == [200] * 30                  # unchanged for b
    assert counted(at_m) == [200] * 30                  # and copied to m
    rules = json.loads(valed.ctl("mirror", "show", "vale0", "--json").stdout)
    assert rules == [{"from": a.port, "to": m.port, "direction": "rx"}]
    valed.ctl("mirror", "del", "vale0")
    at_b, at_m = count_frames(b, 2), count_frames(m, 2)
    a.raw("send", "eth0", b.mac, a.mac, "5", "200")
    assert counted(at_b) == [200] * 5                   # sent, and seen where they went
    assert counted(at_m) == []


def test_mirrors_to_self_and_loops_are_refused_and_change_nothing(valed, make_host):
    a, b, m = (make_host(i) for i in (1, 2, 3))
    valed.attach(a, b, m)
    valed.ctl("mirror", "add", "vale0", "--from", a.port, "--to", m.port)
    for argv, words in [
        (("--from", a.port, "--to", a.port), "itself"),
        (("--from", m.port, "--to", b.port), "mirror loop"),
        (("--from", b.port, "--to", a.port), "mirror loop"),
        (("--from", "nosuch0", "--to", b.port), "no port"),
    ]:
        result = valed.ctl("mirror", "add", "vale0", *argv, check=False)
        assert result.returncode == 1 and words in result.stderr, result.stderr
    assert valed("mirror_show", switch="vale0") == [
        {"from": a.port, "to": m.port, "direction": "both"}]


def test_mirrors_are_saved_and_restored(tmp_path, make_host):
    from tests.conftest import start_valed, stop_valed
    a, m = make_host(1), make_host(2)
    daemon = start_valed(str(tmp_path / "v.sock"), tmp_path / "valed.log")
    try:
        daemon.attach(a, m)
        daemon("mirror_add", switch="vale0", to=m.port, direction="tx", **{"from": [a.port]})
        daemon.proc.kill()
        daemon.proc.wait()
        daemon = start_valed(str(tmp_path / "v.sock"), tmp_path / "valed.log")
        assert daemon("mirror_show", switch="vale0") == [
            {"from": a.port, "to": m.port, "direction": "tx"}]
    finally:
        stop_valed(daemon)


def test_top_shows_the_busy_port_first(valed, make_host):
    a, b, c = (make_host(i) for i in (1, 2, 3))
    valed.attach(a, b, c)
    assert a.ping(b)
    # For 2 s (a count may be done before top looks: the fast path answers in microseconds)
    flood = a.popen("ping", "-f", "-w", "2", "-q", b.ip, stdout=subprocess.DEVNULL)
    try:
        out = valed.ctl("top", "--interval", "0.5", "--count", "1").stdout
    finally:
        flood.wait(60)
    rows = [line.split() for line in out.splitlines()[2:]]
    assert rows[0][0] in (f"vale0:{a.port}", f"vale0:{b.port}")
    assert float(rows[0][1]) > 100 and rows[-1][0] == f"vale0:{c.port}"


def test_captures_work_again_after_the_switch_is_made_anew(valed, make_host, tmp_path):
    """Detaching a switch's last port removes it; attaching makes a new one, and a
    capture then went to the old, empty switch and was refused."""
    a, b = make_host(1, ipv6=False), make_host(2, ipv6=False)
    for turn in range(2):
        valed.attach(a, b)
        valed("set", target="vale0", settings={"loop_probe": 0})   # the test's frames only
        b.raw("send", "eth0", "ff:ff:ff:ff:ff:ff", b.mac, "1", "60")       # learn b
        cap = capture(valed, f"vale0:{b.port}", "-w", str(tmp_path / f"{turn}.pcap"),
                      "-c", "5", "--direction", "tx")
        a.raw("send", "eth0", b.mac, a.mac, "5", "100")
        _, err = finish(cap, 30)
        assert cap.returncode == 0 and "5 frames captured" in err.decode(), (turn, err)
        for host in (a, b):
            valed("detach", port=f"vale0:{host.port}")
        assert valed("list") == []


def test_a_capture_whose_reader_stops_early_ends_quietly(valed, make_host):
    """`valectl capture ... | head` while frames keep coming: exit 0, no traceback."""
    a, b = make_host(1, ipv6=False), make_host(2, ipv6=False)
    valed.attach(a, b)
    flood = a.popen("ping", "-f", "-s", "1400", "-w", "20", b.ip, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL)
    try:
        ctl = f"{sys.executable} -m vale.cli.valectl --socket {valed.socket}"
        result = subprocess.run(["bash", "-c", f"{ctl} capture vale0:{a.port} | head -c 30 "
                                 "> /dev/null; echo ${PIPESTATUS[0]}"], capture_output=True,
                                text=True, timeout=30, cwd=ROOT)
    finally:
        flood.kill()
        flood.wait()
    assert result.stdout.strip() == "0", result.stderr
    assert "Exception" not in result.stderr and "Error" not in result.stderr, result.stderr
