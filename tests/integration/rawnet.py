"""Raw Ethernet frames from inside a test host, run with `ip netns exec NS python -m ...`:

  send IFACE DST_MAC SRC_MAC COUNT SIZE [ETHERTYPE]   send COUNT frames of SIZE bytes
  count IFACE ETHERTYPE SECONDS                       count frames seen: print "ready" once
                                                      listening, then "N SIZE,SIZE..."
  send-tagged IFACE DST SRC COUNT SIZE VLAN           as send, with an 802.1Q tag of VLAN
                                                      in the data (SIZE counts the tag)
  watch IFACE                                         every frame seen until SIGTERM: print
                                                      "ready", then a JSON list of [src, dst,
                                                      ethertype, vlan or null, length, count]
  tally IFACE ETHERTYPE SECONDS                       as count, but only that ethertype reaches
                                                      the socket (with a big buffer): other
                                                      traffic cannot crowd it out; print "N"
  flood IFACE SRC SECONDS                             broadcast 60-byte test frames as fast
                                                      as it can: print "SENT ELAPSED"
  tap IFACE                                           make TAP IFACE (virtio-net headers on),
                                                      up; print "ready", then write what
                                                      stdin asks, as a VM would: "plain DST
                                                      SRC N" (test frames), "ufo DST SRC" (one
                                                      UDP datagram, GSO type 3); "ok" each
"""

from __future__ import annotations

import json
import signal
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
ETH_P_8021Q = 0x8100
TEST_ETHERTYPE = 0x88B5       # IEEE local experimental


def frame(dst: str, src: str, size: int, ethertype: int = TEST_ETHERTYPE) -> bytes:
    head = bytes.fromhex(dst.replace(":", "")) + bytes.fromhex(src.replace(":", ""))
    head += ethertype.to_bytes(2, "big")
    return (head + bytes(range(256)) * 300)[:size]


def send(iface: str, dst: str, src: str, count: int, size: int,
         ethertype: int = TEST_ETHERTYPE) -> None:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    data = frame(dst, src, size, ethertype)
    for _ in range(count):
        s.send(data)
        time.sleep(0.0005)


def count(iface: str, ethertype: int, seconds: float) -> None:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((iface, 0))
    s.settimeout(0.05)
    print("ready", flush=True)              # bound: from now on nothing is missed
    sizes = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            data, addr = s.recvfrom(65536)
        except TimeoutError:
            continue
        if addr[2] == socket.PACKET_OUTGOING:
            continue
        if len(data) >= 14 and int.from_bytes(data[12:14], "big") == ethertype:
            sizes.append(len(data))
    print(len(sizes), ",".join(map(str, sizes)), flush=True)


def send_tagged(iface: str, dst: str, src: str, count: int, size: int, vlan: int) -> None:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    untagged = frame(dst, src, size - 4)
    data = untagged[:12] + struct.pack("!HH", ETH_P_8021Q, vlan) + untagged[12:]
    for _ in range(count):
        s.send(data)
        time.sleep(0.0005)


SOL_PACKET, PACKET_AUXDATA = 263, 8
TP_STATUS_VLAN_VALID = 0x10


def watch(iface: str) -> None:
    """Frames arriving at iface, by source, destination, ethertype, VLAN (a tag the
    kernel took off, PACKET_AUXDATA, or one still in the data) and length untagged."""
    stop = False

    def on_term(signum, frame) -> None:
        nonlocal stop
        stop = True
    signal.signal(signal.SIGTERM, on_term)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)        # SO_RCVBUFFORCE
    s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    s.bind((iface, 0))
    s.settimeout(0.05)
    print("ready", flush=True)
    seen: dict[tuple, int] = {}
    while not stop:
        try:
            data, anc, _, addr = s.recvmsg(65536, 256)
        except TimeoutError:
            continue
        if addr[2] == socket.PACKET_OUTGOING or len(data) < 14:
            continue
        vlan = None
        for level, kind, value in anc:
            if level == SOL_PACKET and kind == PACKET_AUXDATA:
                status, _, _, _, _, tci, _ = struct.unpack("IIIHHHH", value[:20])
                if status & TP_STATUS_VLAN_VALID:
                    vlan = tci & 0xFFF
        ethertype = int.from_bytes(data[12:14], "big")
        length = len(data)
        if vlan is None and ethertype == ETH_P_8021Q and len(data) >= 18:
            vlan = int.from_bytes(data[14:16], "big") & 0xFFF
            ethertype = int.from_bytes(data[16:18], "big")
            length -= 4
        key = (data[6:12].hex(":"), data[0:6].hex(":"), ethertype, vlan, length)
        seen[key] = seen.get(key, 0) + 1
    print(json.dumps([[*key, n] for key, n in seen.items()]), flush=True)


def tally(iface: str, ethertype: int, seconds: float) -> None:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ethertype))
    s.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)       # SO_RCVBUFFORCE
    s.bind((iface, 0))
    s.settimeout(0.05)
    print("ready", flush=True)
    n, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            _, addr = s.recvfrom(65536)
        except TimeoutError:
            continue
        if addr[2] != socket.PACKET_OUTGOING:
            n += 1
    print(n, flush=True)


def flood(iface: str, src: str, seconds: float) -> None:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    data = frame("ff:ff:ff:ff:ff:ff", src, 60)
    sent, start = 0, time.monotonic()
    end = start + seconds
    while True:
        for _ in range(100):
            try:
                s.send(data)
                sent += 1
            except BlockingIOError:
                pass
        if time.monotonic() >= end:
            break
    print(sent, time.monotonic() - start, flush=True)


def udp_ipv4(payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", 1000, 2000, 8 + len(payload), 0) + payload
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                       bytes([198, 18, 0, 1]), bytes([198, 18, 0, 2])) + udp


def tap(iface: str) -> None:
    import fcntl
    import os
    import subprocess
    tunsetiff, iff_tap, iff_no_pi, iff_vnet_hdr = 0x400454CA, 0x2, 0x1000, 0x4000
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, tunsetiff, struct.pack("16sH", iface.encode(),
                                           iff_tap | iff_no_pi | iff_vnet_hdr))
    subprocess.run(["ip", "link", "set", iface, "up"], check=True)
    print("ready", flush=True)
    for line in sys.stdin:
        cmd, dst, src, *n = line.split()
        if cmd == "plain":
            for _ in range(int(n[0])):
                os.write(fd, bytes(10) + frame(dst, src, 100))
                time.sleep(0.0005)
        elif cmd == "ufo":      # needs a checksum, GSO UDP, headers 42 bytes, 1400 a piece
            vnet = struct.pack("<BBHHHH", 1, 3, 42, 1400, 34, 6)
            os.write(fd, vnet + frame(dst, src, 14, 0x0800) + udp_ipv4(bytes(3000)))
        print("ok", flush=True)


if __name__ == "__main__":
    cmd, *rest = sys.argv[1:]
    if cmd == "send":
        send(rest[0], rest[1], rest[2], int(rest[3]), int(rest[4]),
             int(rest[5], 0) if len(rest) > 5 else TEST_ETHERTYPE)
    elif cmd == "count":
        count(rest[0], int(rest[1], 0), float(rest[2]))
    elif cmd == "send-tagged":
        send_tagged(rest[0], rest[1], rest[2], int(rest[3]), int(rest[4]), int(rest[5]))
    elif cmd == "watch":
        watch(rest[0])
    elif cmd == "tally":
        tally(rest[0], int(rest[1], 0), float(rest[2]))
    elif cmd == "flood":
        flood(rest[0], rest[1], float(rest[2]))
    elif cmd == "tap":
        tap(rest[0])
    else:
        sys.exit(__doc__)
