"""Raw Ethernet frames from inside a test host, run with `ip netns exec NS python -m ...`:

  send IFACE DST_MAC SRC_MAC COUNT SIZE [ETHERTYPE]   send COUNT frames of SIZE bytes
  count IFACE ETHERTYPE SECONDS                       count frames seen: print "ready" once
                                                      listening, then "N SIZE,SIZE..."
"""

from __future__ import annotations

import socket
import sys
import time

ETH_P_ALL = 0x0003
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


if __name__ == "__main__":
    cmd, *rest = sys.argv[1:]
    if cmd == "send":
        send(rest[0], rest[1], rest[2], int(rest[3]), int(rest[4]),
             int(rest[5], 0) if len(rest) > 5 else TEST_ETHERTYPE)
    elif cmd == "count":
        count(rest[0], int(rest[1], 0), float(rest[2]))
    else:
        sys.exit(__doc__)
