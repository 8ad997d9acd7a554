"""pktgen and pktcount: netmap's pkt-gen for memif sockets, on vale.app. pktgen sends
one Ethernet+IPv4+UDP frame (198.18.0.0/15 addresses) over and over, each copy numbered
in its payload; pktcount counts and times what arrives. Both are click commands (valectl
registers them); the per-frame work is vale._app's, the per-batch work is here.

\b
  pktgen SOCKET [--size 60] [--rate PPS] [--count N] [--seconds S] [--batch 64]
  pktcount SOCKET [--seconds S] [--count N]
"""

from __future__ import annotations

import json
import struct
import sys
import time
from typing import Any, NoReturn

import click

from vale.app import MemifError, Port, open_port
from vale.names import key_to_mac, mac_to_key

ETH_HLEN = 14
IP_HLEN = 20
UDP_HLEN = 8
COUNTER_AT = ETH_HLEN + IP_HLEN + UDP_HLEN      # the copy's number: the UDP payload's start
MIN_SIZE = COUNTER_AT + 4
MAX_SIZE = ETH_HLEN + 0xFFFF                    # an IPv4 total length
SRC_IP = bytes([198, 18, 0, 1])
DST_IP = bytes([198, 19, 0, 1])
SRC_PORT, DST_PORT = 1234, 4321                 # pkt-gen's defaults
IDLE_SLEEP_S = 0.01                             # between tries while the port is down
WAIT_S = 0.2                                    # pktcount's longest single wait


def mac_bytes(mac: str) -> bytes:
    return mac_to_key(mac).to_bytes(6, "little")


def ip_checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_frame(size: int, src: str = "02:00:00:00:00:01",
              dst: str = "ff:ff:ff:ff:ff:ff") -> bytes:
    """A valid Ethernet+IPv4+UDP frame of size bytes (no FCS), 198.18.0.1:1234 to
    198.19.0.1:4321, its UDP checksum 0 (none) so numbered copies stay valid."""
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"frame size {size}: {MIN_SIZE} to {MAX_SIZE} bytes")
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, size - ETH_HLEN, 0, 0x4000, 64, 17, 0,
                     SRC_IP, DST_IP)
    ip = ip[:10] + struct.pack("!H", ip_checksum(ip)) + ip[12:]
    udp = struct.pack("!HHHH", SRC_PORT, DST_PORT, size - ETH_HLEN - IP_HLEN, 0)
    payload = bytes(k & 0xFF for k in range(size - COUNTER_AT))
    return mac_bytes(dst) + mac_bytes(src) + b"\x08\x00" + ip + udp + payload


def fail(message: str) -> NoReturn:
    click.echo(f"{message}", err=True)
    sys.exit(1)


def connect(path: str, ident: int, secret: str | None, **options: Any) -> Port:
    """open_port, with what went wrong said in one line."""
    try:
        return open_port(path, id=ident, secret=secret, name="vale pkttools", **options)
    except FileNotFoundError:
        fail(f"no memif socket at {path}")
    except ConnectionRefusedError:
        fail(f"nothing listens on {path}")
    except (OSError, MemifError) as exc:
        fail(f"{path}: {exc}")


def report(result: dict[str, Any], as_json: bool, line: str) -> None:
    click.echo(json.dumps(result, indent=2, sort_keys=True) if as_json else line)


def mac_option(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    try:
        return key_to_mac(mac_to_key(value))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


common = [
    click.argument("path", metavar="SOCKET"),
    click.option("--id", "ident", type=click.IntRange(0, 0xFFFFFFFF), default=0,
                 show_default=True, help="the memif interface id to ask for"),
    click.option("--secret", help="the interface's secret, if it has one"),
    click.option("--json", "as_json", is_flag=True, help="print JSON"),
]


def with_common(f: Any) -> Any:
    for option in reversed(common):
        f = option(f)
    return f


@click.command("pktgen")
@with_common
@click.option("--size", type=click.IntRange(MIN_SIZE, MAX_SIZE), default=60, show_default=True,
              help="frame length in bytes, without the FCS")
@click.option("--rate", type=click.FloatRange(0), default=0, show_default=True,
              help="frames per second; 0: as fast as the server takes them")
@click.option("--count", type=click.IntRange(0), default=0, help="stop after N frames")
@click.option("--seconds", type=click.FloatRange(0), default=0,
              help="stop after S seconds (with neither: at Ctrl-C)")
@click.option("--src", default="02:00:00:00:00:01", show_default=True, callback=mac_option,
              help="source MAC")
@click.option("--dst", default="ff:ff:ff:ff:ff:ff", show_default=True, callback=mac_option,
              help="destination MAC")
@click.option("--batch", type=click.IntRange(1, 1024), default=64, show_default=True,
              help="frames per kick")
def pktgen(path: str, ident: int, secret: str | None, as_json: bool, size: int, rate: float,
           count: int, seconds: float, src: str, dst: str, batch: int) -> None:
    """Send numbered copies of one UDP frame through the memif socket SOCKET."""
    template = udp_frame(size, src, dst)
    port = connect(path, ident, secret)
    sent = 0
    start = end = time.monotonic()
    try:
        while True:
            now = time.monotonic()
            if seconds and now - start >= seconds:
                break
            want = batch if not count else min(batch, count - sent)
            if want <= 0:
                break
            if rate:
                due = int((now - start) * rate) - sent
                if due <= 0:
                    pause = start + (sent + 1) / rate - now
                    if pause > 0.001:
                        time.sleep(pause)
                    continue
                want = min(want, due)
            queued = port.send_copies(template, want, COUNTER_AT, sent)
            sent += queued
            if queued:
                end = time.monotonic()
            elif not port.connected:
                time.sleep(IDLE_SLEEP_S)
    except KeyboardInterrupt:
        pass
    except MemifError as exc:
        fail(str(exc))
    finally:
        counters = port.counters
        port.close()
    elapsed = end - start
    mpps = sent / elapsed / 1e6 if elapsed > 0 else 0.0
    gbps = sent * size * 8 / elapsed / 1e9 if elapsed > 0 else 0.0
    report({"frames": sent, "bytes": sent * size, "seconds": round(elapsed, 6),
            "mpps": round(mpps, 4), "gbps": round(gbps, 4), "size": size,
            "counters": counters}, as_json,
           f"pktgen: {sent} frames of {size} bytes in {elapsed:.3f} s: {mpps:.3f} Mpps, "
           f"{gbps:.3f} Gbit/s (ring full {counters['tx_no_room']} times, "
           f"{counters['reconnects']} reconnects)")


@click.command("pktcount")
@with_common
@click.option("--seconds", type=click.FloatRange(0), default=0,
              help="stop after S seconds (with no --count either: at Ctrl-C)")
@click.option("--count", type=click.IntRange(0), default=0, help="stop after N frames")
@click.option("--busy-poll", type=click.FloatRange(0), default=0, show_default=True,
              help="microseconds to look at an empty ring before sleeping")
def pktcount(path: str, ident: int, secret: str | None, as_json: bool, seconds: float,
             count: int, busy_poll: float) -> None:
    """Count and time the frames that arrive on the memif socket SOCKET."""
    port = connect(path, ident, secret, busy_poll=busy_poll / 1e6)
    frames = nbytes = first_batch = 0
    first = last = None
    start = time.monotonic()
    try:
        while not count or frames < count:
            left = WAIT_S if not seconds else min(WAIT_S, start + seconds - time.monotonic())
            if left <= 0:
                break
            got, size = port.drain(timeout=left)
            if got:
                last = time.monotonic() - start
                if first is None:
                    first, first_batch = last, got
                frames += got
                nbytes += size
    except KeyboardInterrupt:
        pass
    except MemifError as exc:
        fail(str(exc))
    finally:
        counters = port.counters
        port.close()
    # The rate is over the time between the first batch and the last: the frames after
    # the first batch, in that time.
    span = (last - first) if first is not None and last is not None else 0.0
    mpps = (frames - first_batch) / span / 1e6 if span > 0 else 0.0
    gbps = (nbytes * (frames - first_batch) / frames) * 8 / span / 1e9 if span > 0 else 0.0
    report({"frames": frames, "bytes": nbytes, "first": first, "last": last,
            "seconds": round(span, 6), "mpps": round(mpps, 4), "gbps": round(gbps, 4),
            "counters": counters}, as_json,
           f"pktcount: {frames} frames, {nbytes} bytes"
           + (f", first at {first:.3f} s, last at {last:.3f} s: {mpps:.3f} Mpps, "
              f"{gbps:.3f} Gbit/s" if first is not None and last is not None else "")
           + (f" ({counters['bad_descriptors']} bad descriptors)"
              if counters["bad_descriptors"] else ""))


@click.group(help=__doc__)
def main() -> None:
    pass


main.add_command(pktgen)
main.add_command(pktcount)

if __name__ == "__main__":
    main()
