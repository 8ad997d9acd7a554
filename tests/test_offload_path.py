"""Offloaded frames through the switch: passed through with their header to ports that
take one, segmented and checksummed for ports that do not, dropped and counted when the
header lies. In-memory ports, so no root is needed."""

from __future__ import annotations

from tests.test_offload import (
    GSO_TCPV4,
    NEEDS_CSUM,
    build,
    build_sctp,
    check_segments,
    sctp_checksum_ok,
    unpack_vnet,
    vnet,
)
from vale._fastpath import SwitchCore


def switch(*vnets: bool) -> tuple[SwitchCore, list[int]]:
    core = SwitchCore()
    ports = [core.add_port(slot_size=65536 + 1024, rx_slots=64, tx_slots=128, vnet=v)
             for v in vnets]
    return core, ports


def test_gso_frame_passes_whole_to_a_port_that_takes_headers():
    core, (a, b) = switch(True, True)
    big = build(payload=bytes(range(256)) * 200, gso_size=1448)
    core.inject(a, [big.frame], [big.vnet])
    core.forward_all()
    assert core.drain(b, with_vnet=True) == [(big.vnet, big.frame)]


def test_gso_frame_is_segmented_for_a_port_without_offloads():
    core, (a, b, c) = switch(True, False, True)
    big = build(payload=bytes(range(256)) * 200, gso_size=1448)      # 51,200 bytes
    core.inject(a, [big.frame], [big.vnet])
    core.forward_all()
    out = core.drain(b, with_vnet=True)
    assert len(out) == 36 and all(v is None for v, _ in out)
    check_segments(big.vnet, big.frame, [f for _, f in out])        # sums, seq, flags
    assert core.drain(c, with_vnet=True) == [(big.vnet, big.frame)]  # c takes it whole
    counters = core.snapshot()["ports"]
    assert counters[b]["tx_packets"] == 36 and counters[c]["tx_packets"] == 1


def test_a_small_mss_makes_hundreds_of_segments():
    """An MSS of 88 (Linux's least) cuts 60,000 bytes into 682 segments; the room for
    segments is measured to them (it was 128 slots of 16 KiB, and such frames were
    dropped as bad_offload)."""
    core = SwitchCore()
    a = core.add_port(slot_size=65536 + 1024, rx_slots=64, vnet=True)
    b = core.add_port(tx_slots=1024)
    big = build(payload=bytes(range(250)) * 240, gso_size=88)
    core.inject(a, [big.frame], [big.vnet])
    core.forward_all()
    out = core.drain(b)
    assert len(out) == 682
    check_segments(big.vnet, big.frame, out)
    counters = core.snapshot()["ports"][b]
    assert counters["tx_packets"] == 682 and not any(counters["drops"].values())


def test_segments_stop_at_1024():
    """An MSS of 64 on the longest IPv4 frame makes 1024 segments, the most there is
    room for; an MSS of 63 would make 1040, and the frame is dropped and counted."""
    core = SwitchCore()
    a = core.add_port(slot_size=65536 + 1024, rx_slots=64, vnet=True)
    b = core.add_port(tx_slots=2048)
    at_64 = build(payload=bytes(range(251)) * 260 + bytes(213), gso_size=64)
    at_63 = build(payload=bytes(range(251)) * 260 + bytes(213), gso_size=63)
    core.inject(a, [at_64.frame, at_63.frame], [at_64.vnet, at_63.vnet])
    core.forward_all()
    out = core.drain(b)
    assert len(out) == 1024
    check_segments(at_64.vnet, at_64.frame, out)
    assert core.snapshot()["ports"][b]["drops"]["bad_offload"] == 1


def test_partial_checksum_is_completed_for_a_port_without_offloads():
    core, (a, b) = switch(True, False)
    small = build(payload=b"hello" * 40)
    partial = vnet(NEEDS_CSUM, 0, 0, 0, *unpack_vnet(small.vnet)[4:])
    core.inject(a, [small.frame], [partial])
    core.forward_all()
    [(header, frame)] = core.drain(b, with_vnet=True)
    assert header is None and len(frame) == len(small.frame)
    check_segments(vnet(NEEDS_CSUM, GSO_TCPV4, 0, 1448, *unpack_vnet(small.vnet)[4:]),
                   small.frame, [frame])


def test_lying_headers_are_dropped_and_counted():
    core, (a, b) = switch(True, True)
    good = build(payload=b"x" * 3000, gso_size=1000)
    flags, gso, hdr_len, size, start, offset = unpack_vnet(good.vnet)
    lies = [
        vnet(flags, 9, hdr_len, size, start, offset),                 # no such GSO type
        vnet(flags, gso, hdr_len, 0, start, offset),                  # gso_size 0
        vnet(flags, gso, hdr_len, size, 5000, offset),                # checksum past the end
        vnet(0, gso, hdr_len, size, start, offset),                   # GSO without checksum
        vnet(flags, 4, hdr_len, size, start, offset),                 # TCPv6 on an IPv4 frame
    ]
    core.inject(a, [good.frame] * (len(lies) + 1), [*lies, good.vnet])
    core.forward_all()
    assert core.drain(b, with_vnet=True) == [(good.vnet, good.frame)]
    counters = core.snapshot()["ports"][a]
    assert counters["drops"]["bad_offload"] == len(lies)
    assert counters["rx_packets"] == len(lies) + 1


def test_a_gso_frame_that_cannot_be_segmented_is_counted_at_the_destination():
    core, (a, b) = switch(True, False)
    # Valid headers, but 65,000 bytes cut 1 byte at a time would need far too many pieces.
    huge = build(payload=b"y" * 60000, gso_size=1)
    core.inject(a, [huge.frame], [huge.vnet])
    core.forward_all()
    assert core.drain(b) == []
    assert core.snapshot()["ports"][b]["drops"]["bad_offload"] == 1


def test_header_on_a_plain_frame_port_is_all_zero_when_asked():
    core, (a, b) = switch(False, True)
    plain = build(payload=b"z" * 100).frame
    core.inject(a, [plain])
    core.forward_all()
    assert core.drain(b, with_vnet=True) == [(None, plain)]


def test_sctp_partial_checksum_is_completed_for_every_port():
    """No virtio-net header can say that a partial checksum is SCTP's CRC32c (the kernel's
    csum_not_inet), so a kernel given one would fill in an Internet checksum: the switch
    completes it on receipt and sends a plain frame everywhere."""
    core, (a, b, c) = switch(True, True, False)
    sctp = build_sctp()
    core.inject(a, [sctp.frame], [sctp.vnet])
    core.forward_all()
    for port in (b, c):
        [(header, frame)] = core.drain(port, with_vnet=True)
        assert header is None and len(frame) == len(sctp.frame)
        assert sctp_checksum_ok(frame[sctp.l4:])
    assert core.snapshot()["ports"][a]["drops"]["bad_offload"] == 0
