"""Metrics read by a real Prometheus server: it scrapes valed, and its query API must give
back exactly the frames the test sent. Root, namespaces and Debian's prometheus; skipped
otherwise."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from tests.conftest import start_valed, stop_valed

pytestmark = pytest.mark.skipif(shutil.which("prometheus") is None,
                                reason="needs Debian's prometheus")
SENT = 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def query(port: int, promql: str) -> dict[str, float]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=10) as reply:
        data = json.load(reply)
    return {r["metric"].get("port", ""): float(r["value"][1]) for r in data["data"]["result"]}


@pytest.fixture
def prometheus(tmp_path):
    """Prometheus scraping 127.0.0.1:<metrics port> every second; yields both ports."""
    metrics_port, web_port = free_port(), free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(f"""global:
  scrape_interval: 1s
scrape_configs:
  - job_name: vale
    static_configs:
      - targets: ["127.0.0.1:{metrics_port}"]
""")
    proc = subprocess.Popen(["prometheus", f"--config.file={config}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{web_port}"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{web_port}/-/ready", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, "prometheus did not get ready"
                time.sleep(0.2)
        yield metrics_port, web_port
    finally:
        proc.terminate()
        proc.wait(20)


def test_prometheus_sees_exactly_the_frames_sent(tmp_path, make_host, prometheus):
    metrics_port, web_port = prometheus
    daemon = start_valed(str(tmp_path / "v.sock"), tmp_path / "valed.log",
                         extra=("--metrics", f"127.0.0.1:{metrics_port}"))
    try:
        a, b = make_host(1, ipv6=False), make_host(2, ipv6=False)
        for host in (a, b):
            subprocess.run(["sysctl", "-qw", f"net.ipv6.conf.{host.port}.disable_ipv6=1"],
                           check=True)
        daemon.attach(a, b)
        # Only the test's frames, all through vale: its TX ring is counted below.
        daemon("set", target="vale0", settings={"loop_probe": 0, "fastpath": "off"})
        b.raw("send", "eth0", "ff:ff:ff:ff:ff:ff", b.mac, "1", "60")   # b is learned
        a.raw("send", "eth0", b.mac, a.mac, str(SENT), "100")        # known unicast to b
        deadline = time.monotonic() + 30
        while True:
            received = query(web_port, "vale_port_receive_packets_total")
            sent = query(web_port, "vale_port_transmit_packets_total")
            if received.get(a.port) == SENT and sent.get(b.port) == SENT:
                break
            assert time.monotonic() < deadline, (received, sent)
            time.sleep(0.5)
        assert received == {a.port: SENT, b.port: 1}
        assert sent == {a.port: 1, b.port: SENT}
        rx_bytes = query(web_port, "vale_port_receive_bytes_total")
        assert rx_bytes[a.port] == SENT * 100
        up = query(web_port, "vale_port_up")
        assert up == {a.port: 1.0, b.port: 1.0}
        drops = query(web_port, "sum by (port) (vale_port_drops_total)")
        assert drops == {a.port: 0.0, b.port: 0.0}
        assert query(web_port, "vale_fdb_entries") == {"": 2.0}
        # Short frames leave through the TX ring; the first 256 always find a free slot.
        ring = query(web_port, "vale_port_transmit_ring_packets_total")
        assert 256 <= ring[b.port] <= SENT and ring[a.port] == 1
    finally:
        stop_valed(daemon)
