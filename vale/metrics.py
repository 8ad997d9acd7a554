"""Prometheus metrics: a collector that reads counter snapshots at scrape time (nothing
per frame happens in Python), and a small HTTP endpoint in the daemon's own loop.

Every metric name is defined here, once. Labels: switch, port, reason, kind, ifname; never
one series per MAC address.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

if TYPE_CHECKING:
    from vale.api import Api

log = logging.getLogger("vale.metrics")

DEFAULT_ADDRESS = "127.0.0.1:9466"
MAX_HEADER = 8192
MAX_SCRAPES = 16                # connections open at once; more get 503

# name: (help, what it reads)
PORT_COUNTERS = {
    "vale_port_receive_packets": ("Frames the switch took from the port", "rx_packets"),
    "vale_port_receive_bytes": ("Bytes of the frames taken from the port", "rx_bytes"),
    "vale_port_transmit_packets": ("Frames the switch handed to the port", "tx_packets"),
    "vale_port_transmit_bytes": ("Bytes of the frames handed to the port", "tx_bytes"),
    "vale_port_flood_packets": ("Frames received on the port that were flooded",
                                "flood_packets"),
    "vale_port_transmit_ring_packets": ("Frames handed to an interface port through its TX "
                                        "ring (short ones; the rest go by sendmmsg)",
                                        "tx_ring_packets"),
    "vale_port_fastpath_receive_packets": ("Of the frames taken from the port, those the "
                                           "kernel fast path forwarded (wire frames)",
                                           "fastpath_rx_packets"),
    "vale_port_fastpath_transmit_packets": ("Of the frames handed to the port, those the "
                                            "kernel fast path forwarded (wire frames)",
                                            "fastpath_tx_packets"),
    "vale_port_capture_lost_packets": ("Copies of the port's frames a capture lost (the "
                                       "capture ring, or a client's queue in valed, full)",
                                       "capture_lost"),
}
FDB_COUNTERS = {
    "vale_fdb_learned": ("MAC addresses learned", "learned"),
    "vale_fdb_moved": ("Learned MAC addresses seen moving to another port", "moved"),
    "vale_fdb_expired": ("Entries removed by ageing", "expired"),
    "vale_fdb_evicted": ("Entries evicted to make room", "evicted"),
}


class SwitchCollector:
    """Everything the switches count, from one snapshot per switch per scrape."""

    def __init__(self, api: Api) -> None:
        self.api = api

    def describe(self) -> list[Metric]:
        return []               # no collect at registration time

    def _vlan(self, switch: str, port: str) -> str:
        """A port's vlan setting: live, or as configured while it is missing."""
        sw = self.api.switches.get(switch)
        if sw is not None and port in sw.ports():
            return str(sw.port_info(port)["vlan"])
        return str(self.api.desired.switches[switch].ports[port].settings.get("vlan", "none"))

    def collect(self) -> Iterator[Metric]:
        port_labels = ["switch", "port"]
        counters = {name: CounterMetricFamily(name, text, labels=port_labels)
                    for name, (text, _) in PORT_COUNTERS.items()}
        drops = CounterMetricFamily("vale_port_drops", "Frames dropped, by reason",
                                    labels=["switch", "port", "reason"])
        up = GaugeMetricFamily("vale_port_up", "1 when the port forwards, 0 when it is down, "
                               "its interface is missing or it cannot receive (rx_stuck)",
                               labels=port_labels)
        info = GaugeMetricFamily("vale_port_info", "The port's kind, interface and VLANs "
                                 "(none, access:N or trunk:N,M,...)",
                                 labels=["switch", "port", "kind", "ifname", "vlan"])
        entries = GaugeMetricFamily("vale_fdb_entries", "Entries in the MAC table",
                                    labels=["switch"])
        capacity = GaugeMetricFamily("vale_fdb_capacity", "Entries the MAC table can hold",
                                     labels=["switch"])
        fdb = {name: CounterMetricFamily(name, text, labels=["switch"])
               for name, (text, _) in FDB_COUNTERS.items()}
        batches = CounterMetricFamily("vale_switch_batches", "Batches forwarded",
                                      labels=["switch"])
        loops = CounterMetricFamily("vale_switch_loops", "Forwarding-loop rounds",
                                    labels=["switch"])
        sizes = HistogramMetricFamily("vale_switch_batch_size", "Frames per batch",
                                      labels=["switch"])
        for summary in self.api.op_list({}):
            switch, port = summary["switch"], summary["port"]
            up.add_metric([switch, port], 1.0 if summary["state"] == "up" else 0.0)
            info.add_metric([switch, port, summary["kind"], port, self._vlan(switch, port)], 1.0)
        for name, sw in list(self.api.switches.items()):
            snap = sw.stats()
            for port, c in snap["ports"].items():
                for metric, (_, key) in PORT_COUNTERS.items():
                    counters[metric].add_metric([name, port], c[key])
                for reason, count in c["drops"].items():
                    drops.add_metric([name, port, reason], count)
            entries.add_metric([name], snap["fdb"]["entries"])
            capacity.add_metric([name], snap["fdb"]["capacity"])
            for metric, (_, key) in FDB_COUNTERS.items():
                fdb[metric].add_metric([name], snap["fdb"][key])
            batches.add_metric([name], snap["batches"])
            loops.add_metric([name], snap["loops"])
            cumulative, buckets = 0, []
            for bound, count in zip(BUCKET_BOUNDS, snap["batch_hist"], strict=True):
                cumulative += count
                buckets.append((str(bound), cumulative))
            buckets.append(("+Inf", cumulative))
            sizes.add_metric([name], buckets, sum_value=snap["batch_frames"])
        yield from counters.values()
        yield drops
        yield up
        yield info
        yield entries
        yield capacity
        yield from fdb.values()
        yield batches
        yield loops
        yield sizes


def _bounds() -> tuple[int, ...]:
    from vale._fastpath import HIST_BOUNDS
    return HIST_BOUNDS


BUCKET_BOUNDS = _bounds()


def registry_for(api: Api) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SwitchCollector(api))
    ProcessCollector(registry=registry)         # process_* from /proc, at scrape time
    return registry


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not HOST:PORT: {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


async def serve_metrics(api: Api, address: str) -> asyncio.AbstractServer:
    """GET /metrics on address, answered in the daemon's loop."""
    registry = registry_for(api)
    host, port = parse_address(address)
    open_scrapes = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal open_scrapes
        if open_scrapes >= MAX_SCRAPES:     # descriptors are the switch's first
            writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                         b"Connection: close\r\n\r\n")
            writer.close()
            return
        open_scrapes += 1
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            method, path, *_ = [*head.split(b"\r\n", 1)[0].decode("latin-1").split(" "), ""]
            if method != "GET":
                status, body, kind = "405 Method Not Allowed", b"GET only\n", "text/plain"
            elif path.split("?")[0] == "/metrics":
                status, body, kind = "200 OK", generate_latest(registry), CONTENT_TYPE_LATEST
            else:
                status, body, kind = "404 Not Found", b"see /metrics\n", "text/plain"
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: "
                         f"{len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                ConnectionError, ValueError):
            pass
        finally:
            open_scrapes -= 1
            writer.close()

    server = await asyncio.start_server(handle, host, port, limit=MAX_HEADER)
    log.info("metrics on http://%s:%d/metrics", host, port)
    return server
