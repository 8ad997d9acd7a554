"""The kernel fast path's program alone between two ports, for bench/e2e.py: what its
redirect costs without vale, with and without a packet socket on each port.

    python bench/kernel_bare.py [--tap] PORT_A MAC_A PORT_B MAC_B

Run inside the switch's namespace (bench/e2e.py does, with `ip netns exec`): loads
vale/bpf/fastpath.bpf.o with its maps pinned in a directory of its own, attaches the tc
program to both ports (tcx), fills the maps by hand (A's MAC on A, B's on B: known unicast
both ways), and with --tap opens a packet socket on each port, as vale's were before they
moved to upcall devices, with the cheapest filter there is (classic BPF, "drop"): what a
socket on a fast-path port costs at the least. Prints "kernel_bare: ready", then waits
for SIGTERM or SIGINT, and takes it all away.
"""

from __future__ import annotations

import argparse
import ctypes
import signal
import socket
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vale import _bpf
from vale.names import mac_to_key

ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


DROP_ALL = (ctypes.c_uint64 * 1)(0x06)      # one sock_filter: BPF_RET | BPF_K, k = 0


def drop_everything(sock: socket.socket) -> None:
    """A classic BPF filter that keeps no frame."""
    prog = _SockFprog(1, ctypes.addressof(DROP_ALL))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(prog))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tap", action="store_true")
    parser.add_argument("port_a")
    parser.add_argument("mac_a")
    parser.add_argument("port_b")
    parser.add_argument("mac_b")
    args = parser.parse_args()
    _bpf.ensure_bpffs()
    pins = tempfile.mkdtemp(prefix="kernel-bare-", dir=_bpf.BPFFS)
    dp = _bpf.Datapath(pins)
    sockets = []
    try:
        ports = [(socket.if_nametoindex(args.port_a), args.mac_a),
                 (socket.if_nametoindex(args.port_b), args.mac_b)]
        for index, (ifindex, mac) in enumerate(ports):
            dp.attach(ifindex, "tcx")
            dp.set_port(ifindex, index)
            dp.set_src(mac_to_key(mac), index)
            dp.set_dst(mac_to_key(mac), index, ifindex, 1500, _bpf.DST_PEER)
            if args.tap:
                sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
                sock.bind((socket.if_indextoname(ifindex), 0))
                drop_everything(sock)
                sockets.append(sock)
        print("kernel_bare: ready", flush=True)
        signal.sigwait({signal.SIGTERM, signal.SIGINT})
    finally:
        for sock in sockets:
            sock.close()
        dp.remove()


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    main()
