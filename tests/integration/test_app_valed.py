"""vale.app against valed's own memif server: two programs on two memif ports of vale0
exchange frames through the switch, a wrong secret is refused with valed's reason, and
a program's port carries on after valed restarts (also killed mid-stream), pktgen at a
rate reaches pktcount, and ten million frames cross with none lost. Needs root (valed);
nothing else."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time

import pytest

from cli.pkttools import COUNTER_AT, udp_frame
from tests.conftest import ROOT, start_valed, stop_valed
from vale.app import Disconnected, Port, open_port

MAC1, MAC2 = "02:00:00:00:00:01", "02:00:00:00:00:02"


OURS = {bytes.fromhex(mac.replace(":", "")) for mac in (MAC1, MAC2)}


def receive_all(port: Port, count: int, timeout: float = 5) -> list[bytes]:
    """count frames the test sent (the switch's own, loop probes, are left out)."""
    got: list[bytes] = []
    for batch in port.receive(timeout=timeout):
        got += [bytes(f) for f in batch if bytes(f[6:12]) in OURS]
        if len(got) >= count:
            break
    return got


def numbered(frame: bytes, count: int) -> list[bytes]:
    out = []
    for k in range(count):
        f = bytearray(frame)
        struct.pack_into("!I", f, COUNTER_AT, k)
        out.append(bytes(f))
    return out


def test_two_programs_exchange_frames_through_vale(valed, tmp_path):
    socks = [str(tmp_path / f"app{k}.sock") for k in (1, 2)]
    valed.ctl("create", "app1", "--memif", "--path", socks[0])
    valed.ctl("create", "app2", "--memif", "--path", socks[1], "--id", "3", "--secret", "s3")
    with open_port(socks[0]) as one, open_port(socks[1], id=3, secret="s3") as two:
        flood = numbered(udp_frame(60, src=MAC1, dst="ff:ff:ff:ff:ff:ff"), 1000)
        sent = 0
        got: list[bytes] = []
        while sent < len(flood):            # no more in flight than a ring holds
            sent += one.send(flood[sent:sent + 256])
            got += receive_all(two, min(sent, len(flood)) - len(got))
        assert got == flood
        # app1's MAC is learned: a unicast answer goes to it alone, chained both ways.
        answer = udp_frame(3000, src=MAC2, dst=MAC1)
        assert two.send([answer]) == 1
        assert receive_all(one, 1) == [answer]
        c1, c2 = one.counters, two.counters
    stats = valed("stats", target="vale0")[0]["ports"]
    assert stats["app1"]["rx_packets"] == c1["tx_frames"] == 1000
    # What valed gave them, and loop probes: those after the counters were read too.
    assert stats["app2"]["tx_packets"] >= c2["rx_frames"] >= 1000
    assert stats["app1"]["tx_packets"] >= c1["rx_frames"] >= 1
    assert c1["bad_descriptors"] == c2["bad_descriptors"] == 0
    assert stats["app1"]["drops"]["bad_descriptor"] == stats["app2"]["drops"]["bad_descriptor"] == 0


def test_a_wrong_secret_is_refused_with_valeds_reason(valed, tmp_path):
    sock = str(tmp_path / "app1.sock")
    valed.ctl("create", "app1", "--memif", "--path", sock, "--secret", "right")
    with pytest.raises(Disconnected, match="incorrect secret"):
        open_port(sock, secret="wrong")
    with pytest.raises(Disconnected, match="ID not found"):
        open_port(sock, id=1, secret="right")


def test_a_program_carries_on_after_valed_restarts(tmp_path):
    sock, log = str(tmp_path / "valed.sock"), tmp_path / "valed.log"
    app_sock = str(tmp_path / "app1.sock")
    daemon = start_valed(sock, log)
    try:
        daemon.ctl("create", "app1", "--memif", "--path", app_sock)
        daemon.ctl("create", "app2", "--memif", "--path", str(tmp_path / "app2.sock"))
        with open_port(app_sock) as one, open_port(str(tmp_path / "app2.sock")) as two:
            frame = udp_frame(60, src=MAC1)
            assert one.send([frame]) == 1 and receive_all(two, 1) == [frame]
            stop_valed(daemon)
            daemon = start_valed(sock, log)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not all(
                    p.connected and p.counters["reconnects"] == 1 for p in (one, two)):
                one.receive_batch(timeout=0.1)
                two.receive_batch(timeout=0.1)
            assert one.counters["reconnects"] == two.counters["reconnects"] == 1, \
                log.read_text()[-2000:]
            assert one.send([frame]) == 1 and receive_all(two, 1) == [frame]
    finally:
        stop_valed(daemon)


def test_pktgen_at_a_rate_through_vale_to_pktcount(valed, tmp_path):
    socks = [str(tmp_path / f"app{k}.sock") for k in (1, 2)]
    for k, sock in enumerate(socks, 1):
        valed.ctl("create", f"app{k}", "--memif", "--path", sock)
    valed.ctl("set", "vale0", "loop_probe=0")          # only pktgen's frames, counted exactly
    tool = [sys.executable, "-m", "cli.pkttools"]
    counter = subprocess.Popen([*tool, "pktcount", socks[1], "--count", "5000", "--seconds",
                                "10", "--json"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10                # connected and waiting
        while not valed("info", port="vale0:app2")["settings"]["connected"]:
            assert time.monotonic() < deadline and counter.poll() is None
            time.sleep(0.05)
        gen = subprocess.run([*tool, "pktgen", socks[0], "--rate", "10000", "--count", "5000",
                              "--size", "128", "--json"], cwd=ROOT, capture_output=True,
                             text=True, timeout=30, check=True)
        counted = json.loads(counter.communicate(timeout=15)[0])
    finally:
        if counter.poll() is None:
            counter.kill()
            counter.wait()
    sent = json.loads(gen.stdout)
    assert sent["frames"] == counted["frames"] == 5000
    assert counted["bytes"] == 5000 * 128
    # Paced at 10,000 a second (the counter's ring holds 100 ms of them, for a counter
    # that a busy machine does not run for a while): never faster; slower only as much as
    # a busy machine makes it.
    assert 0.45 < sent["seconds"] < 2.0
    assert 0.45 < counted["last"] - counted["first"] < 2.0


def test_two_programs_exchange_ten_million_frames_and_lose_none(valed, tmp_path):
    """The receiver keeps up (the sender holds at most half a ring in flight), so vale
    drops nothing: every frame sent arrives, in order of its counter."""
    total, window = 10_000_000, 512
    socks = [str(tmp_path / f"app{k}.sock") for k in (1, 2)]
    for k, sock in enumerate(socks, 1):
        valed.ctl("create", f"app{k}", "--memif", "--path", sock)
    valed.ctl("set", "vale0", "loop_probe=0")
    frame = udp_frame(60, src=MAC1, dst=MAC2)
    got = 0
    with open_port(socks[0]) as one, open_port(socks[1]) as two:
        assert two.send([udp_frame(60, src=MAC2, dst=MAC1)]) == 1     # MAC2 learned
        assert len(receive_all(one, 1)) == 1
        sent = 0
        deadline = time.monotonic() + 120
        while got < total:
            if sent < total and sent - got < window:
                sent += one.send_copies(frame, min(window - (sent - got), total - sent),
                                        COUNTER_AT, sent)
            frames, _ = two.drain(timeout=0.0 if sent < total else 0.5)
            got += frames
            assert time.monotonic() < deadline, (sent, got)
        last = two.counters
    stats = valed("stats", target="vale0")[0]["ports"]
    assert got == total and stats["app1"]["rx_packets"] == total
    assert stats["app2"]["tx_packets"] == total and stats["app2"]["drops"]["ring_full"] == 0
    assert last["bad_descriptors"] == 0


def test_a_stream_resumes_after_valed_is_killed_mid_stream(tmp_path):
    """kill -9 while pktgen streams: the state file brings both ports back, both programs
    reconnect by themselves, and frames flow again; only those in flight are lost."""
    sock, log = str(tmp_path / "valed.sock"), tmp_path / "valed.log"
    socks = [str(tmp_path / f"app{k}.sock") for k in (1, 2)]
    daemon = start_valed(sock, log)
    tool = [sys.executable, "-m", "cli.pkttools"]
    gen = None
    try:
        for k, path in enumerate(socks, 1):
            daemon.ctl("create", f"app{k}", "--memif", "--path", path)
        with open_port(socks[1]) as two:
            gen = subprocess.Popen([*tool, "pktgen", socks[0], "--rate", "50000",
                                    "--seconds", "8", "--src", MAC1], cwd=ROOT,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            before = 0
            while before < 20000:
                before += two.drain(timeout=1.0)[0]
            daemon.proc.kill()
            daemon.proc.wait()
            daemon = start_valed(sock, log)
            after, deadline = 0, time.monotonic() + 15
            while after < 20000 and time.monotonic() < deadline:
                after += two.drain(timeout=0.5)[0]
            assert after >= 20000, log.read_text()[-2000:]
            assert two.counters["reconnects"] == 1
        assert gen.wait(timeout=30) == 0                 # pktgen rode it out
    finally:
        if gen is not None and gen.poll() is None:
            gen.kill()
            gen.wait()
        stop_valed(daemon)
