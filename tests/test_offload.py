"""Offloads (vale/offload.pxi): virtio-net header checks, checksum completion and software
segmentation, driven through the module's test hooks with frames built here by hand and
checked with a slow checksum written apart from the C one.

The hooks copy every frame to end where an inaccessible page begins (the output area too),
so a read or write past an end crashes the test run instead of passing unnoticed.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vale._fastpath import _checksum, _segment, _vnet_check

NEEDS_CSUM, DATA_VALID = 1, 2
GSO_NONE, GSO_TCPV4, GSO_UDP, GSO_TCPV6, GSO_UDP_L4, GSO_ECN = 0, 1, 3, 4, 5, 0x80
FIN, SYN, PSH, ACK, ECE, CWR = 0x01, 0x02, 0x08, 0x10, 0x40, 0x80
TCP, UDP = 6, 17
MAX_SEGMENTS = 128              # the room _segment gives by default
SOFT_STRIDE = 16384             # the forwarding path's most room per segment
SOFT_BUF_SIZE = 2 << 20         # and its room for all the segments of one frame
SOFT_HEADROOM = 512
FORWARDING_MAX_SEGMENTS = 1024


def forwarding_shape(v: bytes) -> tuple[int, int]:
    """The room the forwarding path gives a frame's segments (vale/bridge.pxi:
    soft_offload): a stride to the measure of gso_size, up to 1024 of them in 2 MiB."""
    stride = min(SOFT_STRIDE, (unpack_vnet(v)[3] + SOFT_HEADROOM + 63) // 64 * 64)
    return stride, min(FORWARDING_MAX_SEGMENTS, SOFT_BUF_SIZE // stride)

MACS = bytes.fromhex("020000000002" "020000000001")
SRC4, DST4 = bytes([192, 0, 2, 1]), bytes([198, 51, 100, 7])
SRC6 = bytes.fromhex("20010db8000000000000000000000001")
DST6 = bytes.fromhex("20010db8000000000000000000000abc")


# ---- an independent, slow checksum ----------------------------------------------------

def ones_sum(data: bytes) -> int:
    """The 16-bit ones-complement sum of data (RFC 1071), one word at a time."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def ones_add(a: int, b: int) -> int:
    s = a + b
    return (s & 0xFFFF) + (s >> 16)


def pseudo_header(ipv: int, src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    if ipv == 4:
        return src + dst + struct.pack("!BBH", 0, proto, length)
    return src + dst + struct.pack("!I3xB", length, proto)


def l4_checksum_ok(ipv: int, ip: bytes, l4: bytes, proto: int) -> bool:
    src, dst = (ip[12:16], ip[16:20]) if ipv == 4 else (ip[8:24], ip[24:40])
    if proto == UDP and l4[6:8] == b"\0\0":
        return False                # zero is "no checksum": never what we must produce
    return ones_sum(pseudo_header(ipv, src, dst, proto, len(l4)) + l4) == 0xFFFF


def be16(b: bytes, off: int) -> int:
    return (b[off] << 8) | b[off + 1]


def be32(b: bytes, off: int) -> int:
    return struct.unpack_from("!I", b, off)[0]


# ---- building frames -------------------------------------------------------------------

def vnet(flags=0, gso_type=GSO_NONE, hdr_len=0, gso_size=0, csum_start=0, csum_offset=0):
    return struct.pack("<BBHHHH", flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)


def unpack_vnet(v: bytes) -> tuple[int, int, int, int, int, int]:
    return struct.unpack("<BBHHHH", v)


@dataclass
class Built:
    frame: bytes
    vnet: bytes
    l3: int
    l4: int
    hlen: int
    ipv: int
    proto: int

    @property
    def payload(self) -> bytes:
        return self.frame[self.hlen:]


def build(ipv=4, proto=TCP, payload=b"x" * 100, gso_type=None, gso_size=1448, tags=(),
          ip_options=b"", tcp_options=b"", seq=1000, tcp_flags=ACK, ip_id=0x1234,
          frag_field=0x4000) -> Built:
    """A frame as a Linux sender hands it over with an offload: the L4 checksum field
    holding the pseudo-header sum, the virtio-net header pointing at it."""
    eth = MACS + b"".join(struct.pack("!HH", tpid, 100 + i) for i, tpid in enumerate(tags))
    eth += struct.pack("!H", 0x0800 if ipv == 4 else 0x86DD)
    if proto == TCP:
        l4 = struct.pack("!HHIIBBHHH", 40000, 443, seq, 0xA0B0C0D0,
                         (5 + len(tcp_options) // 4) << 4, tcp_flags, 501, 0, 0) + tcp_options
    else:
        l4 = struct.pack("!HHHH", 5353, 4789, (8 + len(payload)) & 0xFFFF, 0)
    l4_len = len(l4) + len(payload)
    if ipv == 4:
        ihl = 20 + len(ip_options)
        ip = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl // 4, 0, (ihl + l4_len) & 0xFFFF, ip_id,
                         frag_field, 64, proto, 0, SRC4, DST4) + ip_options
        ip = ip[:10] + struct.pack("!H", 0xFFFF - ones_sum(ip)) + ip[12:]
        src, dst = SRC4, DST4
    else:
        ip = struct.pack("!IHBB16s16s", 6 << 28, l4_len & 0xFFFF, proto, 64, SRC6, DST6)
        src, dst = SRC6, DST6
    csum_offset = 16 if proto == TCP else 6
    partial = ones_sum(pseudo_header(ipv, src, dst, proto, l4_len & 0xFFFF))
    l4 = l4[:csum_offset] + struct.pack("!H", partial) + l4[csum_offset + 2:]
    l3 = len(eth)
    frame = eth + ip + l4 + payload
    if gso_type is None:
        gso_type = ({(4, TCP): GSO_TCPV4, (6, TCP): GSO_TCPV6}.get((ipv, proto), GSO_UDP_L4))
    hlen = l3 + len(ip) + len(l4)
    v = vnet(NEEDS_CSUM, gso_type, hlen, gso_size, l3 + len(ip), csum_offset)
    return Built(frame, v, l3, l3 + len(ip), hlen, ipv, proto)


def pattern(n: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(n)


# ---- a model of the rules, to hold the C code to -------------------------------------

@dataclass(frozen=True)
class Headers:
    l3: int
    l4: int
    hlen: int
    ipv: int
    proto: int


def parse(frame: bytes) -> Headers | None:
    """Ethernet (up to two VLAN tags), unfragmented IPv4 or IPv6 without extension
    headers, TCP or UDP, whole headers and at least one byte of payload."""
    n = len(frame)
    if n < 14:
        return None
    off, tags = 12, 0
    etype = be16(frame, off)
    while etype in (0x8100, 0x88A8):
        if tags == 2:
            return None
        tags += 1
        off += 4
        if off + 2 > n:
            return None
        etype = be16(frame, off)
    l3 = off + 2
    if etype == 0x0800:
        if l3 + 20 > n or frame[l3] >> 4 != 4:
            return None
        ihl = (frame[l3] & 15) * 4
        if ihl < 20 or l3 + ihl > n or be16(frame, l3 + 6) & 0x3FFF:
            return None
        ipv, proto, l4 = 4, frame[l3 + 9], l3 + ihl
    elif etype == 0x86DD:
        if l3 + 40 > n or frame[l3] >> 4 != 6:
            return None
        ipv, proto, l4 = 6, frame[l3 + 6], l3 + 40
    else:
        return None
    if proto == TCP:
        if l4 + 20 > n or frame[l4 + 12] >> 4 < 5 or l4 + (frame[l4 + 12] >> 4) * 4 > n:
            return None
        hlen = l4 + (frame[l4 + 12] >> 4) * 4
    elif proto == UDP:
        if l4 + 8 > n:
            return None
        hlen = l4 + 8
    else:
        return None
    return Headers(l3, l4, hlen, ipv, proto) if hlen < n else None


SCTP, SCTP_CSUM_OFFSET = 132, 8


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
        table.append(c)
    return table


CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the reference the core's SCTP checksums are held to."""
    crc = 0xFFFFFFFF
    for b in data:
        crc = CRC32C_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def sctp_checksum_ok(packet: bytes) -> bool:
    """An SCTP packet's checksum field (least significant byte first, as Linux stores
    it) holds the CRC32c of the packet with that field at zero."""
    zeroed = packet[:8] + bytes(4) + packet[12:]
    return int.from_bytes(packet[8:12], "little") == crc32c(zeroed)


def build_sctp(payload: bytes = b"sctp data" * 10, src: bytes = SRC4,
               dst: bytes = DST4) -> Built:
    """An IPv4 SCTP packet (one DATA chunk) as Linux hands it over when the device
    computes SCTP's CRC32c: the field at zero, the header asking for the checksum."""
    chunk = struct.pack("!BBHIHHI", 0, 3, 16 + len(payload), 1, 0, 0, 0) + payload
    l4 = struct.pack("!HHII", 5000, 5001, 0x01020304, 0) + chunk
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0x4000, 64, SCTP, 0,
                     src, dst)
    ip = ip[:10] + struct.pack("!H", 0xFFFF - ones_sum(ip)) + ip[12:]
    frame = MACS + b"\x08\x00" + ip + l4
    v = vnet(NEEDS_CSUM, GSO_NONE, 0, 0, 34, SCTP_CSUM_OFFSET)
    return Built(frame, v, 14, 34, 34 + 12, 4, SCTP)


GSO_WANTS = {GSO_TCPV4: {(4, TCP)}, GSO_TCPV6: {(6, TCP)}, GSO_UDP: {(4, UDP)},
             GSO_UDP_L4: {(4, UDP), (6, UDP)}}


def model_check(v: bytes, frame: bytes) -> bool:
    flags, gso_type, _, gso_size, start, offset = unpack_vnet(v)
    fits = ((offset in (6, 16) and start + offset + 2 <= len(frame))
            or (offset == SCTP_CSUM_OFFSET and start + offset + 4 <= len(frame)))
    if gso_type == GSO_NONE:
        return not flags & NEEDS_CSUM or fits
    if not flags & NEEDS_CSUM or gso_size == 0 or not fits:
        return False
    hd = parse(frame)
    wants = GSO_WANTS.get(gso_type & ~GSO_ECN)
    if hd is None or wants is None or (hd.ipv, hd.proto) not in wants:
        return False
    return start == hd.l4 and offset == (16 if hd.proto == TCP else 6)


def model_segment_count(v: bytes, frame: bytes, stride: int, max_segments: int) -> int | None:
    """How many frames offload_segment must make, or None when it must refuse."""
    if not model_check(v, frame):
        return None
    _, gso_type, _, gso_size, _, _ = unpack_vnet(v)
    if gso_type == GSO_NONE:
        return 1 if len(frame) <= stride else None
    hd = parse(frame)
    assert hd is not None
    if gso_type & ~GSO_ECN == GSO_UDP:
        dlen = len(frame) - hd.l4
        if hd.l4 - hd.l3 + dlen > 65535:
            return None
        frag = dlen if dlen <= gso_size else gso_size & ~7
        if frag == 0:
            return None
        count = -(-dlen // frag)
        return count if count <= max_segments and hd.l4 + frag <= stride else None
    payload = len(frame) - hd.hlen
    count = -(-payload // gso_size)
    longest = hd.hlen + min(gso_size, payload)
    ip_len = longest - hd.l3 - (40 if hd.ipv == 6 else 0)
    return count if count <= max_segments and longest <= stride and ip_len <= 65535 else None


# ---- checking what segmentation made -------------------------------------------------

def check_l4_segments(v: bytes, frame: bytes, segs: list[bytes]) -> None:
    """TSO/USO output: headers copied and fixed up, checksums valid, payload in order."""
    hd = parse(frame)
    assert hd is not None
    mss = unpack_vnet(v)[3]
    payload = frame[hd.hlen:]
    assert len(segs) == -(-len(payload) // mss)
    ip_id = be16(frame, hd.l3 + 4)
    sent = 0
    for i, seg in enumerate(segs):
        last = i == len(segs) - 1
        chunk = seg[hd.hlen:]
        assert len(chunk) == (len(payload) - sent if last else mss)
        assert seg[:hd.l3] == frame[:hd.l3]
        ip = seg[hd.l3:hd.l4]
        if hd.ipv == 4:
            assert be16(ip, 2) == len(seg) - hd.l3
            assert be16(ip, 4) == (ip_id + i) & 0xFFFF
            assert ones_sum(ip) == 0xFFFF
            assert ip[:2] + ip[6:10] + ip[12:] == frame[hd.l3:hd.l3 + 2] + \
                frame[hd.l3 + 6:hd.l3 + 10] + frame[hd.l3 + 12:hd.l4]
        else:
            assert be16(ip, 4) == len(seg) - hd.l3 - 40
            assert ip[:4] + ip[6:] == frame[hd.l3:hd.l3 + 4] + frame[hd.l3 + 6:hd.l4]
        l4 = seg[hd.l4:]
        assert l4_checksum_ok(hd.ipv, ip, l4, hd.proto)
        if hd.proto == TCP:
            assert be32(l4, 4) == (be32(frame, hd.l4 + 4) + sent) & 0xFFFFFFFF
            flags = frame[hd.l4 + 13]
            if i:
                flags &= ~CWR
            if not last:
                flags &= ~(FIN | PSH)
            assert l4[13] == flags
            orig = frame[hd.l4:hd.hlen]
            assert l4[:4] + l4[8:13] + l4[14:16] + l4[18:hd.hlen - hd.l4] == \
                orig[:4] + orig[8:13] + orig[14:16] + orig[18:]
        else:
            assert be16(l4, 4) == len(l4)
            assert l4[:4] == frame[hd.l4:hd.l4 + 4]
        sent += len(chunk)
    assert b"".join(seg[hd.hlen:] for seg in segs) == payload


def strip_uncopied(options: bytes) -> bytes:
    """IPv4 options as a later fragment carries them: uncopied ones turned into NOPs."""
    out, i = bytearray(options), 0
    while i < len(out):
        kind = out[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        size = out[i + 1] if i + 1 < len(out) else 0
        if size < 2 or size > len(out) - i:
            size = len(out) - i
        if not kind & 0x80:
            out[i:i + size] = b"\1" * size
        i += size
    return bytes(out)


def check_ufo_fragments(v: bytes, frame: bytes, frags: list[bytes]) -> None:
    """UFO output: IPv4 fragments that reassemble into the datagram, checksum complete."""
    hd = parse(frame)
    assert hd is not None
    gso_size = unpack_vnet(v)[3]
    ihl = hd.l4 - hd.l3
    dlen = len(frame) - hd.l4
    frag = dlen if dlen <= gso_size else gso_size & ~7
    assert len(frags) == -(-dlen // frag)
    data = b""
    for i, seg in enumerate(frags):
        last = i == len(frags) - 1
        ip = seg[hd.l3:hd.l4]
        chunk = seg[hd.l4:]
        assert seg[:hd.l3] == frame[:hd.l3]
        assert be16(ip, 2) == ihl + len(chunk)
        assert ip[4:6] == frame[hd.l3 + 4:hd.l3 + 6]       # one id for all fragments
        assert ones_sum(ip) == 0xFFFF
        if len(frags) == 1:
            assert ip[6:8] == frame[hd.l3 + 6:hd.l3 + 8]
        else:
            assert be16(ip, 6) == (len(data) // 8) | (0 if last else 0x2000)
            if not last:
                assert len(chunk) == frag and len(chunk) % 8 == 0
        options = frame[hd.l3 + 20:hd.l4]
        assert ip[20:] == (options if i == 0 else strip_uncopied(options))
        data += chunk
    assert len(data) == dlen
    assert data[:4] == frame[hd.l4:hd.l4 + 4]
    assert be16(data, 4) == dlen
    assert data[8:] == frame[hd.l4 + 8:]
    assert l4_checksum_ok(4, frame[hd.l3:hd.l4], data, UDP)


def check_segments(v: bytes, frame: bytes, segs: list[bytes]) -> None:
    gso_type = unpack_vnet(v)[1] & ~GSO_ECN
    if gso_type == GSO_UDP:
        check_ufo_fragments(v, frame, segs)
    elif gso_type != GSO_NONE:
        check_l4_segments(v, frame, segs)


# ---- segmentation ----------------------------------------------------------------------

def test_tcpv4_64k_into_46_segments():
    # 65,536 bytes with timestamps: 66 bytes of headers, 65,470 of payload, 45 * 1448 + 310.
    b = build(4, TCP, payload=pattern(65536 - 66), tcp_options=b"\1\1\x08\x0a" + bytes(8),
              seq=0xFFFFF000, ip_id=0xFFF0, tcp_flags=ACK | PSH | FIN | CWR,
              gso_type=GSO_TCPV4 | GSO_ECN)
    assert len(b.frame) == 65536 and _vnet_check(b.vnet, b.frame)
    segs = _segment(b.vnet, b.frame)
    assert len(segs) == 46
    assert [len(s) for s in segs] == [66 + 1448] * 45 + [66 + 310]
    check_l4_segments(b.vnet, b.frame, segs)
    flags = [s[b.l4 + 13] for s in segs]
    assert flags[0] == ACK | CWR
    assert set(flags[1:-1]) == {ACK}
    assert flags[-1] == ACK | PSH | FIN
    seqs = [be32(s, b.l4 + 4) for s in segs]
    assert all((seqs[i + 1] - seqs[i]) & 0xFFFFFFFF == 1448 for i in range(45))
    assert seqs[0] == 0xFFFFF000 and seqs[-1] < 0x10000      # it wrapped
    assert [be16(s, b.l3 + 4) for s in segs] == [(0xFFF0 + i) & 0xFFFF for i in range(46)]


def test_tcpv4_in_the_forwarding_stride():
    b = build(4, TCP, payload=pattern(60000), gso_size=1448)
    stride, max_segments = forwarding_shape(b.vnet)
    assert stride == 1984
    segs = _segment(b.vnet, b.frame, stride=stride, max_segments=max_segments)
    check_l4_segments(b.vnet, b.frame, segs)


@pytest.mark.parametrize("tags", [(), (0x8100,), (0x88A8, 0x8100)])
def test_tcpv6(tags):
    b = build(6, TCP, payload=pattern(30001, 2), gso_size=1440, tags=tags,
              tcp_flags=ACK | PSH)
    assert _vnet_check(b.vnet, b.frame)
    segs = _segment(b.vnet, b.frame)
    assert len(segs) == 21
    check_l4_segments(b.vnet, b.frame, segs)
    assert [s[b.l4 + 13] for s in segs] == [ACK] * 20 + [ACK | PSH]


def test_tcpv4_ip_options_and_vlan():
    b = build(4, TCP, payload=pattern(5000, 3), gso_size=1000, tags=(0x8100,),
              ip_options=b"\x94\x04\0\0" + b"\1\1\1\0")
    segs = _segment(b.vnet, b.frame)
    assert len(segs) == 5
    check_l4_segments(b.vnet, b.frame, segs)


def test_hdr_len_is_not_trusted():
    b = build(4, TCP, payload=pattern(4000), gso_size=1000)
    for hdr_len in (0, 1, 30, 60000):
        v = b.vnet[:2] + struct.pack("<H", hdr_len) + b.vnet[4:]
        assert _vnet_check(v, b.frame)
        assert _segment(v, b.frame) == _segment(b.vnet, b.frame)


@pytest.mark.parametrize("ipv", [4, 6])
def test_udp_segmentation(ipv):
    b = build(ipv, UDP, payload=pattern(10000, 4), gso_size=1400, ip_id=0xFFFF)
    assert _vnet_check(b.vnet, b.frame)
    segs = _segment(b.vnet, b.frame)
    assert [len(s) - b.hlen for s in segs] == [1400] * 7 + [200]
    check_l4_segments(b.vnet, b.frame, segs)


def test_udp_zero_checksum_goes_as_ffff():
    # Choose the payload's last word so that the checksum comes out 0.
    header = struct.pack("!HHHH", 5353, 4789, 108, 0)
    partial = ones_sum(pseudo_header(6, SRC6, DST6, UDP, 108) + header + bytes(100))
    b = build(6, UDP, payload=bytes(98) + struct.pack("!H", 0xFFFF - partial), gso_size=1000)
    (seg,) = _segment(b.vnet, b.frame)
    assert seg[b.l4 + 6:b.l4 + 8] == b"\xff\xff"
    assert l4_checksum_ok(6, seg[b.l3:b.l4], seg[b.l4:], UDP)
    v = vnet(NEEDS_CSUM, GSO_NONE, 0, 0, b.l4, 6)
    assert _checksum(v, b.frame)[b.l4 + 6:b.l4 + 8] == b"\xff\xff"


@pytest.mark.parametrize("gso_size", [1480, 1473, 8, 9, 65535])
def test_ufo_fragments(gso_size):
    size = 20000 if gso_size > 100 else 2000
    b = build(4, UDP, payload=pattern(size, 5), gso_size=gso_size, gso_type=GSO_UDP)
    assert _vnet_check(b.vnet, b.frame)
    frags = _segment(b.vnet, b.frame, max_segments=512)
    check_ufo_fragments(b.vnet, b.frame, frags)
    if gso_size == 1473:
        assert {len(f) - b.l4 for f in frags[:-1]} == {1472}
    if gso_size == 65535:
        assert len(frags) == 1


def test_ufo_options_only_copied_ones_in_later_fragments():
    # Router alert (copied) then a timestamp option (not copied) and end of list.
    options = b"\x94\x04\0\0" + b"\x44\x08\x05\0" + bytes(4) + b"\0" * 4
    b = build(4, UDP, payload=pattern(3000, 6), gso_size=1000, gso_type=GSO_UDP,
              ip_options=options)
    frags = _segment(b.vnet, b.frame)
    assert len(frags) == 4
    check_ufo_fragments(b.vnet, b.frame, frags)
    assert frags[1][b.l3 + 20:b.l4] == b"\x94\x04\0\0" + b"\1" * 8 + b"\0" * 4


def test_one_segment_gets_its_checksum():
    for ipv, proto in ((4, TCP), (6, TCP), (4, UDP), (6, UDP)):
        b = build(ipv, proto, payload=pattern(999), gso_size=1448)
        (seg,) = _segment(b.vnet, b.frame)
        assert len(seg) == len(b.frame)
        assert seg[:b.l4] == b.frame[:b.l4]
        assert l4_checksum_ok(ipv, seg[b.l3:b.l4], seg[b.l4:], proto)
    b = build(4, UDP, payload=pattern(999), gso_size=1448, gso_type=GSO_UDP)
    (seg,) = _segment(b.vnet, b.frame)
    assert seg[:b.l4] == b.frame[:b.l4]
    check_ufo_fragments(b.vnet, b.frame, [seg])


def test_segment_without_gso_completes_the_checksum():
    b = build(4, TCP, payload=pattern(700))
    v = vnet(NEEDS_CSUM, GSO_NONE, 0, 0, b.l4, 16)
    assert _segment(v, b.frame) == [_checksum(v, b.frame)]


def test_segment_refusals():
    b = build(4, TCP, payload=pattern(129 * 100), gso_size=100)
    with pytest.raises(ValueError):
        _segment(b.vnet, b.frame, max_segments=128)
    assert len(_segment(b.vnet, b.frame, max_segments=129)) == 129
    b = build(4, TCP, payload=pattern(40000), gso_size=16384)
    with pytest.raises(ValueError):
        _segment(b.vnet, b.frame, stride=SOFT_STRIDE)
    assert len(_segment(b.vnet, b.frame, stride=SOFT_STRIDE + b.hlen)) == 3
    # A segment whose IPv4 total length would not fit 16 bits.
    b = build(4, TCP, payload=pattern(65535), gso_size=65535)
    with pytest.raises(ValueError):
        _segment(b.vnet, b.frame)
    # UFO with a gso_size under 8 has no fragment size.
    b = build(4, UDP, payload=pattern(100), gso_size=7, gso_type=GSO_UDP)
    with pytest.raises(ValueError):
        _segment(b.vnet, b.frame)
    b = build(4, TCP, gso_type=GSO_TCPV6)
    with pytest.raises(ValueError):
        _segment(b.vnet, b.frame)


# ---- checksum completion ---------------------------------------------------------------

@pytest.mark.parametrize(("ipv", "proto", "size"),
                         [(4, TCP, 1000), (4, TCP, 1001), (6, TCP, 7), (4, UDP, 1),
                          (6, UDP, 1499), (6, TCP, 65000)])
def test_checksum_completion(ipv, proto, size):
    b = build(ipv, proto, payload=pattern(size, size))
    _, _, _, _, start, offset = unpack_vnet(b.vnet)
    v = vnet(NEEDS_CSUM, GSO_NONE, 0, 0, start, offset)
    done = _checksum(v, b.frame)
    field = start + offset
    assert done[:field] == b.frame[:field] and done[field + 2:] == b.frame[field + 2:]
    assert l4_checksum_ok(ipv, done[b.l3:b.l4], done[b.l4:], proto)


def test_checksum_odd_start_and_nothing_to_do():
    frame = pattern(301, 9)
    v = vnet(NEEDS_CSUM, GSO_NONE, 0, 0, 33, 16)
    done = _checksum(v, frame)
    assert ones_add(ones_sum(done[33:]), be16(frame, 49)) == 0xFFFF
    assert _checksum(vnet(DATA_VALID), frame) == frame
    assert _checksum(vnet(), b"") == b""


def test_checksum_every_short_length_and_start():
    # Every tail of the word loops (8, 4, 2, 1 bytes left) from every start, odd ones too.
    data = pattern(160, 11)
    for start in range(12):
        for offset in (6, 16):
            for end in range(start + offset + 2, start + 100):
                done = _checksum(vnet(NEEDS_CSUM, 0, 0, 0, start, offset), data[:end])
                field = start + offset
                assert ones_add(ones_sum(done[start:]), be16(data, field)) == 0xFFFF


def test_checksum_offsets_past_the_end():
    frame = pattern(100)
    assert _checksum(vnet(NEEDS_CSUM, 0, 0, 0, 82, 16), frame)
    for start, offset in ((83, 16), (100, 6), (65535, 65535), (0, 100)):
        with pytest.raises(ValueError):
            _checksum(vnet(NEEDS_CSUM, 0, 0, 0, start, offset), frame)


def test_hooks_want_a_ten_byte_header():
    for hook in (_vnet_check, _checksum, _segment):
        with pytest.raises(ValueError):
            hook(b"\0" * 9, b"")
        with pytest.raises(TypeError):
            hook(None, b"")


# ---- header checks ---------------------------------------------------------------------

GOOD = [
    build(4, TCP), build(6, TCP), build(4, UDP), build(6, UDP),
    build(4, UDP, gso_type=GSO_UDP), build(4, TCP, gso_type=GSO_TCPV4 | GSO_ECN),
    build(6, TCP, tags=(0x88A8, 0x8100), tcp_options=bytes(40)),
    build(4, TCP, ip_options=bytes(40), payload=b"x"),
]


@pytest.mark.parametrize("b", GOOD)
def test_vnet_check_accepts(b):
    assert _vnet_check(b.vnet, b.frame)
    check_segments(b.vnet, b.frame, _segment(b.vnet, b.frame))


def test_vnet_check_accepts_plain_and_partial_checksum_frames():
    assert _vnet_check(vnet(), b"")
    assert _vnet_check(vnet(), pattern(70000))
    assert _vnet_check(vnet(DATA_VALID), b"\0" * 20)
    arp = MACS + b"\x08\x06" + bytes(28)
    assert _vnet_check(vnet(NEEDS_CSUM, 0, 0, 0, 14, 16), arp)     # only the offsets matter
    assert _vnet_check(vnet(0, 0, 0, 1448, 0, 0), arp)              # GSO fields unused


def with_vnet(b: Built, **changes) -> bytes:
    fields = dict(zip(("flags", "gso_type", "hdr_len", "gso_size", "csum_start",
                       "csum_offset"), unpack_vnet(b.vnet), strict=True))
    fields.update(changes)
    return vnet(**fields)


def lies() -> list[tuple[str, bytes, bytes]]:
    t4, t6, u4, u6 = build(4, TCP), build(6, TCP), build(4, UDP), build(6, UDP)
    out = [
        ("tcpv4 on ipv6", with_vnet(t6, gso_type=GSO_TCPV4), t6.frame),
        ("tcpv6 on ipv4", with_vnet(t4, gso_type=GSO_TCPV6), t4.frame),
        ("ufo on ipv6", with_vnet(u6, gso_type=GSO_UDP), u6.frame),
        ("tcp type on udp", with_vnet(u4, gso_type=GSO_TCPV4, csum_offset=16), u4.frame),
        ("udp type on tcp", with_vnet(t4, gso_type=GSO_UDP_L4, csum_offset=6), t4.frame),
        ("type 2", with_vnet(t4, gso_type=2), t4.frame),
        ("type 6", with_vnet(t4, gso_type=6), t4.frame),
        ("ecn alone", with_vnet(t4, gso_type=GSO_ECN), t4.frame),
        ("gso_size 0", with_vnet(t4, gso_size=0), t4.frame),
        ("gso without needs_csum", with_vnet(t4, flags=DATA_VALID), t4.frame),
        ("csum offset 7", with_vnet(t4, csum_offset=7), t4.frame),
        ("csum field past the end", vnet(NEEDS_CSUM, 0, 0, 0, len(t4.frame) - 17, 16),
         t4.frame),
        ("csum start past the end", vnet(NEEDS_CSUM, 0, 0, 0, 65535, 6), t4.frame),
        ("csum start not at l4", with_vnet(t4, csum_start=t4.l4 + 2), t4.frame),
        ("udp offset on tcp", with_vnet(t4, csum_offset=6), t4.frame),
        ("gso on arp", t4.vnet, MACS + b"\x08\x06" + t4.frame[14:]),
        ("gso on a raw frame", t4.vnet, pattern(1500)),
        ("no payload", t4.vnet, t4.frame[:t4.hlen]),
        ("three vlan tags", build(4, TCP, tags=(0x88A8, 0x8100, 0x8100)).vnet,
         build(4, TCP, tags=(0x88A8, 0x8100, 0x8100)).frame),
    ]
    f = bytearray(t4.frame)
    f[14] = 0x44                                    # ihl 4
    out.append(("ihl 4", t4.vnet, bytes(f)))
    f = bytearray(t4.frame)
    f[14] = 0x65                                    # version 6 in an IPv4 ethertype
    out.append(("ip version", t4.vnet, bytes(f)))
    f = bytearray(t4.frame)
    f[14] = 0x4F                                    # ihl 15: 60 bytes, past the frame
    out.append(("ihl past the end", with_vnet(t4, csum_start=14 + 60), bytes(f[:14 + 59])))
    f = bytearray(t4.frame)
    f[t4.l4 + 12] = 0x40                            # doff 4
    out.append(("doff 4", t4.vnet, bytes(f)))
    f = bytearray(t4.frame)
    f[t4.l4 + 12] = 0xF0                            # doff 15: 60 bytes, past the frame
    out.append(("doff past the end", t4.vnet, bytes(f[:t4.l4 + 59])))
    for frag in (0x2000, 0x0001):
        out.append((f"fragment {frag:#x}", build(4, TCP, frag_field=frag).vnet,
                    build(4, TCP, frag_field=frag).frame))
    f = bytearray(t6.frame)
    f[t6.l3 + 6] = 0                                # hop-by-hop options header
    out.append(("ipv6 extension header", t6.vnet, bytes(f)))
    f = bytearray(t4.frame)
    f[t4.l3 + 9] = 1                                # ICMP
    out.append(("not tcp or udp", t4.vnet, bytes(f)))
    return out


@pytest.mark.parametrize(("why", "v", "frame"), lies(), ids=[x[0] for x in lies()])
def test_vnet_check_rejects(why, v, frame):
    assert not _vnet_check(v, frame)
    assert not model_check(v, frame)
    with pytest.raises(ValueError):
        _segment(v, frame)


@pytest.mark.parametrize("b", GOOD[:5])
def test_vnet_check_rejects_every_truncation(b):
    for n in range(b.hlen + 1):
        assert not _vnet_check(b.vnet, b.frame[:n]), n
        with pytest.raises(ValueError):
            _segment(b.vnet, b.frame[:n])


# ---- random input ----------------------------------------------------------------------

GSO_SIZES = st.one_of(st.sampled_from([0, 1, 7, 8, 9, 536, 1448, 9000, 16000, 65535]),
                      st.integers(0, 0xFFFF))


@st.composite
def built_frames(draw) -> tuple[bytes, bytes]:
    """Frames built right, then often damaged a little: they get past the first checks
    and into segmentation."""
    ipv = draw(st.sampled_from([4, 6]))
    proto = draw(st.sampled_from([TCP, UDP]))
    size = draw(st.one_of(st.integers(0, 3000), st.integers(0, 70000)))
    segments = draw(st.integers(1, MAX_SEGMENTS + 2))
    gso_size = min(max(-(-size // segments), 1), 0xFFFF)
    fitting = [t for t, wants in GSO_WANTS.items() if (ipv, proto) in wants]
    b = build(ipv, proto, payload=pattern(size, draw(st.integers(0, 1000))),
              gso_size=draw(st.one_of(GSO_SIZES, st.just(gso_size))),
              gso_type=draw(st.one_of(st.sampled_from(fitting), st.sampled_from(fitting),
                                      st.sampled_from([*GSO_WANTS, GSO_TCPV4 | GSO_ECN]))),
              tags=draw(st.sampled_from([(), (0x8100,), (0x88A8, 0x8100)])),
              ip_options=draw(st.sampled_from([b"", b"\x94\x04\0\0", b"\x07\x07\x04" + bytes(5)])),
              tcp_options=draw(st.sampled_from([b"", b"\1\1\x08\x0a" + bytes(8)])),
              seq=draw(st.integers(0, 0xFFFFFFFF)), ip_id=draw(st.integers(0, 0xFFFF)),
              tcp_flags=draw(st.integers(0, 255)))
    frame, v = bytearray(b.frame), b.vnet
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2, 3]))):   # damage a few header bytes
        if frame:
            at = draw(st.integers(0, min(len(frame), 160) - 1))
            frame[at] = draw(st.integers(0, 255))
    if draw(st.integers(0, 3)) == 0:
        frame = frame[:draw(st.integers(0, len(frame)))]
    if draw(st.integers(0, 3)) == 0:
        field = draw(st.sampled_from(["flags", "gso_type", "gso_size", "csum_start",
                                      "csum_offset"]))
        v = with_vnet(b, **{field: draw(st.integers(0, 255 if field in ("flags", "gso_type")
                                                    else 0xFFFF))})
    return v, bytes(frame)


@st.composite
def random_frames(draw) -> tuple[bytes, bytes]:
    size = draw(st.one_of(st.integers(0, 200), st.integers(0, 70000)))
    frame = pattern(size, draw(st.integers(0, 2**32 - 1)))
    v = draw(st.one_of(
        st.binary(min_size=10, max_size=10),
        st.builds(vnet, st.sampled_from([0, NEEDS_CSUM, NEEDS_CSUM | DATA_VALID]),
                  st.sampled_from([0, 1, 3, 4, 5, 0x81, 0x85]), st.integers(0, 0xFFFF),
                  GSO_SIZES, st.integers(0, 0xFFFF), st.sampled_from([6, 8, 16, 0xFFFF]))))
    return v, frame


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(built_frames(), random_frames()),
       st.sampled_from([(None, MAX_SEGMENTS)] * 3 + ["forwarding", (100, 4)]))
def test_random_input(case, out_shape):
    v, frame = case
    stride, max_segments = forwarding_shape(v) if out_shape == "forwarding" else out_shape
    ok = _vnet_check(v, frame)
    assert ok == model_check(v, frame)

    flags, _, _, _, start, offset = unpack_vnet(v)
    width = 4 if offset == SCTP_CSUM_OFFSET else 2
    try:
        done = _checksum(v, frame)
    except ValueError:
        assert flags & NEEDS_CSUM and start + offset + width > len(frame)
    else:
        if flags & NEEDS_CSUM and offset == SCTP_CSUM_OFFSET:
            field = start + offset
            assert done[:field] == frame[:field] and done[field + 4:] == frame[field + 4:]
            assert sctp_checksum_ok(done[start:])
        elif flags & NEEDS_CSUM:
            field = start + offset
            assert done[:field] == frame[:field] and done[field + 2:] == frame[field + 2:]
            if offset % 2 == 0:     # a word of the checksummed data, as it must be
                assert ones_add(ones_sum(done[start:]), be16(frame, field)) == 0xFFFF
        else:
            assert done == frame

    expected = model_segment_count(v, frame, stride or max(len(frame), 1), max_segments)
    try:
        segs = _segment(v, frame, stride=stride, max_segments=max_segments)
    except ValueError:
        assert expected is None
    else:
        assert len(segs) == expected
        check_segments(v, frame, segs)
        if unpack_vnet(v)[1] == GSO_NONE:
            assert segs == [done]


def test_the_crc32c_reference_gives_the_standard_check_value():
    assert crc32c(b"123456789") == 0xE3069283


def test_sctp_partial_checksum_is_completed_with_crc32c():
    b = build_sctp()
    assert _vnet_check(b.vnet, b.frame)
    done = _checksum(b.vnet, b.frame)
    assert done[:b.l4 + 8] == b.frame[:b.l4 + 8] and done[b.l4 + 12:] == b.frame[b.l4 + 12:]
    assert sctp_checksum_ok(done[b.l4:])
    assert not sctp_checksum_ok(b.frame[b.l4:])


def test_sctp_cannot_be_a_gso_frame():
    b = build_sctp()
    assert not _vnet_check(vnet(NEEDS_CSUM, GSO_UDP_L4, 0, 100, 34, SCTP_CSUM_OFFSET), b.frame)
    assert not _vnet_check(vnet(NEEDS_CSUM, GSO_NONE, 0, 0, len(b.frame) - 11,
                                SCTP_CSUM_OFFSET), b.frame)     # its field past the end
