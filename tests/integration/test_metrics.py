"""Metrics read by a real Prometheus server: it scrapes valed, and its query API must give
back exactly the frames the test sent. Root, namespaces and Debian's prometheus; skipped
otherwise."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
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


def query_status(port: int, promql: str) -> tuple[str, list]:
    """The real server's verdict on an expression (status, result); a query it cannot
    parse answers 400 with status "error"."""
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            data = json.load(reply)
    except urllib.error.HTTPError as exc:
        data = json.load(exc)
    return data["status"], data.get("data", {}).get("result", [])


def test_the_dashboard_and_the_alerts_query_a_real_prometheus(tmp_path, make_host,
                                                              prometheus):
    """Every query of contrib/grafana/vale.json and every alert's expression, run by the
    real server on what it scraped from valed: each parses and runs, and the per-port
    throughput panels show both ports."""
    from tests.test_contrib import alert_rules, dashboard, dashboard_expressions

    metrics_port, web_port = prometheus
    daemon = start_valed(str(tmp_path / "v.sock"), tmp_path / "valed.log",
                         extra=("--metrics", f"127.0.0.1:{metrics_port}"))
    try:
        a, b = make_host(1, ipv6=False), make_host(2, ipv6=False)
        daemon.attach(a, b)
        a.raw("send", "eth0", "ff:ff:ff:ff:ff:ff", a.mac, "20", "60")
        exprs = [e.replace("[5m]", "[1m]") for e in dashboard_expressions(dashboard())]
        bits = next(e for e in exprs if e.startswith("8 * rate(vale_port_receive_bytes"))
        deadline = time.monotonic() + 30
        while len(query_status(web_port, bits)[1]) < 2:      # two scrapes of both ports
            assert time.monotonic() < deadline, query_status(web_port, bits)
            time.sleep(0.5)
        for expr in exprs + [rule["expr"] for rule in alert_rules()]:
            status, _ = query_status(web_port, expr)
            assert status == "success", expr
        assert query_status(web_port, "sum by (reason) (rate(vale_port_drops_total[5m") == (
            "error", [])
        ports = {r["metric"]["port"] for r in query_status(web_port, bits)[1]}
        assert ports == {a.port, b.port}
    finally:
        stop_valed(daemon)
