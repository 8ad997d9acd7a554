"""Limits against a live valed: a capture client that stops reading while full-size frames
pour through the port it captures costs valed its bytes (--capture-client-bytes), not
more; the frames it could not take are counted. Root, namespaces; skipped otherwise."""

from __future__ import annotations

import json
import socket
import sys
import time

from tests.conftest import start_valed, stop_valed
from tests.integration.conftest import finish

CLIENT_BYTES = 2 << 20
SENDER = """
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
frame = bytes.fromhex("ffffffffffff" + sys.argv[1].replace(":", "") + "88b5") + bytes(1486)
sent, end = 0, time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    try:
        s.send(frame)
        sent += 1
    except OSError:
        time.sleep(0.001)
print(sent)
"""


def rss(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_a_capture_client_that_stops_reading_costs_valed_its_bytes_only(tmp_path, make_host):
    a, b = make_host(1, ipv6=False), make_host(2, ipv6=False)
    daemon = start_valed(str(tmp_path / "v.sock"), tmp_path / "valed.log",
                         extra=("--capture-client-bytes", str(CLIENT_BYTES)))
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        daemon.attach(a, b)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect(daemon.socket)
        client.sendall(json.dumps({"op": "capture", "args": {"port": f"vale0:{a.port}",
                                                            "direction": "rx"}}).encode()
                       + b"\n")
        reader = client.makefile("rb")
        assert json.loads(reader.readline())["ok"]
        time.sleep(0.3)
        before = rss(daemon.proc.pid)
        sender = a.popen(sys.executable, "-c", SENDER, a.mac, "4", stdout=-1, text=True)
        peak = before
        while sender.poll() is None:            # the client reads nothing meanwhile
            peak = max(peak, rss(daemon.proc.pid))
            time.sleep(0.1)
        out, _ = finish(sender, 10)
        sent = int(out)
        time.sleep(0.3)
        peak = max(peak, rss(daemon.proc.pid))
        # 4 s of 1500-byte frames is far more than the client's bytes (before the limit,
        # its queue and socket buffer grew by ~50 MiB); valed's own heap may move by a few
        # MiB on top of the queue.
        assert sent * 1500 > 10 * CLIENT_BYTES, sent
        assert peak - before < CLIENT_BYTES + (8 << 20), (before, peak)
        client.sendall(b"stop\n")
        done = None
        while done is None:
            line = reader.readline()
            assert line, "valed closed the capture without its summary"
            message = json.loads(line)
            done = message if message.get("done") else None
        assert done["lost"] > 0 and done["frames"] > 0, done
        assert daemon("list")                   # and it serves on
    finally:
        client.close()
        stop_valed(daemon)
