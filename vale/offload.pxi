# Offloads: checks of virtio-net headers, checksum completion and software segmentation
# of GSO frames for ports that do not take virtio-net headers.
#
# Every byte here comes from a sender we do not trust, so each offset is checked against
# the frame's length before it is used, and nothing is read or written outside the frame
# and the output area whatever the header says. Frames sit at any alignment: fields are
# read byte by byte (network order) or through memcpy, never through cast pointers.
#
# Checksums are summed in host order over whole 16-bit words at even offsets, the RFC 1071
# way: the folded sum, stored back through memcpy, is right on either byte order, so no
# byte swapping is needed anywhere, and the pseudo-headers are summed as bytes too.

cdef enum:
    VALE_ETYPE_IPV4 = 0x0800
    VALE_ETYPE_IPV6 = 0x86DD
    VALE_ETYPE_8021Q = 0x8100
    VALE_ETYPE_8021AD = 0x88A8
    VALE_MAX_TAGS = 2                   # 802.1ad outer + 802.1Q inner
    VALE_TAG_LEN = 4
    VALE_IPV4_HLEN = 20
    VALE_IPV6_HLEN = 40
    VALE_IP_MAX_LEN = 65535             # the 16-bit IPv4 total / IPv6 payload length
    VALE_IPV4_MF = 0x2000               # more fragments
    VALE_IPV4_FRAG_OFFSET = 0x1FFF      # in 8-byte units
    VALE_IPOPT_EOL = 0
    VALE_IPOPT_NOP = 1
    VALE_IPOPT_COPIED = 0x80            # the option goes into every fragment
    VALE_PROTO_TCP = 6
    VALE_PROTO_UDP = 17
    VALE_TCP_HLEN = 20
    VALE_UDP_HLEN = 8
    VALE_TCP_CSUM_OFFSET = 16           # offsetof(struct tcphdr, check)
    VALE_UDP_CSUM_OFFSET = 6            # offsetof(struct udphdr, check)
    VALE_SCTP_CSUM_OFFSET = 8           # offsetof(struct sctphdr, checksum): a CRC32c
    VALE_CRC32C_POLY = 0x82F63B78       # Castagnoli, bit-reversed
    VALE_TCP_FIN = 0x01
    VALE_TCP_PSH = 0x08
    VALE_TCP_CWR = 0x80


# Where the headers of a GSO frame are, found by parsing it (hdr_len is never trusted).
ctypedef struct vale_l34:
    uint32_t l3                 # the IP header
    uint32_t l4                 # the TCP or UDP header
    uint32_t hlen               # all the headers: the payload starts here
    uint8_t ipv                 # 4 or 6
    uint8_t proto               # VALE_PROTO_TCP or VALE_PROTO_UDP


# ---- byte access and checksums -------------------------------------------------------

cdef inline uint16_t load_be16(const char *p) noexcept nogil:
    cdef const uint8_t *b = <const uint8_t *>p
    return <uint16_t>((<uint16_t>b[0] << 8) | b[1])


cdef inline uint32_t load_be32(const char *p) noexcept nogil:
    cdef const uint8_t *b = <const uint8_t *>p
    return (<uint32_t>b[0] << 24) | (<uint32_t>b[1] << 16) | (<uint32_t>b[2] << 8) | b[3]


cdef inline void store_be16(char *p, uint32_t v) noexcept nogil:
    p[0] = <char>((v >> 8) & 0xFF)
    p[1] = <char>(v & 0xFF)


cdef inline void store_be32(char *p, uint32_t v) noexcept nogil:
    p[0] = <char>(v >> 24)
    p[1] = <char>((v >> 16) & 0xFF)
    p[2] = <char>((v >> 8) & 0xFF)
    p[3] = <char>(v & 0xFF)


cdef inline uint64_t csum_add(uint64_t acc, const char *p, uint32_t n) noexcept nogil:
    """Add n bytes at p to a ones-complement sum kept in host order; p must sit at an even
    offset from where the checksummed data starts. 64-bit words with an end-around carry
    (2^16 - 1 divides 2^64 - 1, so the sum folds down to the same 16 bits), in four
    independent chains so the adds overlap: about twice as fast as 32-bit words."""
    cdef uint64_t s0 = acc, s1 = 0, s2 = 0, s3 = 0, w0, w1, w2, w3
    cdef uint32_t w = 0
    cdef uint16_t last = 0
    while n >= 32:
        memcpy(&w0, p, 8)
        memcpy(&w1, p + 8, 8)
        memcpy(&w2, p + 16, 8)
        memcpy(&w3, p + 24, 8)
        s0 += w0
        s0 += s0 < w0
        s1 += w1
        s1 += s1 < w1
        s2 += w2
        s2 += s2 < w2
        s3 += w3
        s3 += s3 < w3
        p += 32
        n -= 32
    while n >= 8:
        memcpy(&w0, p, 8)
        s0 += w0
        s0 += s0 < w0
        p += 8
        n -= 8
    # The 32-bit halves add up to less than 2^35: no carry can be lost from here on.
    s0 = (<uint64_t><uint32_t>s0 + (s0 >> 32) + <uint32_t>s1 + (s1 >> 32)
          + <uint32_t>s2 + (s2 >> 32) + <uint32_t>s3 + (s3 >> 32))
    if n >= 4:
        memcpy(&w, p, 4)
        s0 += w
        p += 4
        n -= 4
    if n >= 2:
        memcpy(&last, p, 2)
        s0 += last
        p += 2
        n -= 2
    if n:
        # An odd last byte is the first byte of a word padded with zero.
        last = 0
        memcpy(&last, p, 1)
        s0 += last
    return s0


cdef inline uint16_t csum_fold(uint64_t s) noexcept nogil:
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return <uint16_t>s


cdef inline void csum_store(char *field, uint64_t s, bint udp) noexcept nogil:
    """Store the complement of sum s; a UDP checksum of 0 means "none", so it goes as
    0xFFFF (the same value in ones-complement)."""
    cdef uint16_t c = <uint16_t>~csum_fold(s)
    if udp and c == 0:
        c = 0xFFFF
    memcpy(field, &c, 2)


cdef inline uint64_t pseudo_sum(const char *ip, uint8_t ipv, uint8_t proto,
                                uint32_t l4_len) noexcept nogil:
    """The sum of the IPv4 or IPv6 pseudo-header. Length and protocol are laid out as the
    IPv6 one has them (32-bit length, 3 zero bytes, next header); that sums the same as
    IPv4's zero, protocol, 16-bit length."""
    cdef char tail[8]
    store_be32(tail, l4_len)
    tail[4] = 0
    tail[5] = 0
    tail[6] = 0
    tail[7] = <char>proto
    if ipv == 4:
        return csum_add(csum_add(0, ip + 12, 8), tail, 8)
    return csum_add(csum_add(0, ip + 8, 32), tail, 8)


cdef inline void ipv4_header_csum(char *ip, uint32_t ihl) noexcept nogil:
    ip[10] = 0
    ip[11] = 0
    csum_store(ip + 10, csum_add(0, ip, ihl), False)


# ---- parsing and checking ------------------------------------------------------------

cdef int parse_l34(const char *frame, uint32_t length, vale_l34 *g) noexcept nogil:
    """Find the IP and TCP/UDP headers of an Ethernet frame with up to two VLAN tags.
    Returns 0, or -1 unless it is an unfragmented IPv4 packet or an IPv6 packet without
    extension headers carrying TCP or UDP, all headers whole, and some payload after them."""
    cdef const uint8_t *b = <const uint8_t *>frame
    cdef uint32_t off = 12, ihl, doff
    cdef uint16_t etype
    cdef int tags = 0
    if length < VALE_ETH_HLEN:
        return -1
    etype = load_be16(frame + off)
    while etype == VALE_ETYPE_8021Q or etype == VALE_ETYPE_8021AD:
        if tags == VALE_MAX_TAGS:
            return -1
        tags += 1
        off += VALE_TAG_LEN
        if off + 2 > length:
            return -1
        etype = load_be16(frame + off)
    off += 2
    g.l3 = off
    if etype == VALE_ETYPE_IPV4:
        if off + VALE_IPV4_HLEN > length or (b[off] >> 4) != 4:
            return -1
        ihl = (b[off] & 0x0F) * 4
        if ihl < VALE_IPV4_HLEN or off + ihl > length:
            return -1
        # Only the first fragment has an L4 header, and a GSO frame is never a fragment.
        if load_be16(frame + off + 6) & (VALE_IPV4_MF | VALE_IPV4_FRAG_OFFSET):
            return -1
        g.ipv = 4
        g.proto = b[off + 9]
        g.l4 = off + ihl
    elif etype == VALE_ETYPE_IPV6:
        if off + VALE_IPV6_HLEN > length or (b[off] >> 4) != 6:
            return -1
        g.ipv = 6
        g.proto = b[off + 6]
        g.l4 = off + VALE_IPV6_HLEN
    else:
        return -1
    if g.proto == VALE_PROTO_TCP:
        if g.l4 + VALE_TCP_HLEN > length:
            return -1
        doff = (b[g.l4 + 12] >> 4) * 4
        if doff < VALE_TCP_HLEN or g.l4 + doff > length:
            return -1
        g.hlen = g.l4 + doff
    elif g.proto == VALE_PROTO_UDP:
        if g.l4 + VALE_UDP_HLEN > length:
            return -1
        g.hlen = g.l4 + VALE_UDP_HLEN
    else:
        return -1
    if g.hlen >= length:
        return -1
    return 0


cdef inline bint csum_fits(const vale_vnet *h, uint32_t length) noexcept nogil:
    """A partial checksum's field lies inside the frame and is a UDP, TCP or SCTP one."""
    if h.csum_offset == VALE_SCTP_CSUM_OFFSET:
        return <uint32_t>h.csum_start + h.csum_offset + 4 <= length
    if h.csum_offset != VALE_UDP_CSUM_OFFSET and h.csum_offset != VALE_TCP_CSUM_OFFSET:
        return False
    return <uint32_t>h.csum_start + h.csum_offset + 2 <= length


cdef int vnet_parse(const vale_vnet *h, const char *frame, uint32_t length,
                    vale_l34 *g) noexcept nogil:
    """vnet_check, also telling where the headers of a GSO frame are (g is set only for a
    GSO frame)."""
    cdef uint8_t gso = h.gso_type & ~VNET_GSO_ECN
    cdef bint tcp
    if h.gso_type == VNET_GSO_NONE:
        if h.flags & VNET_NEEDS_CSUM and not csum_fits(h, length):
            return -1
        return 0
    # A GSO frame (ECN alone is not one: the kernel refuses it too).
    if not (h.flags & VNET_NEEDS_CSUM) or h.gso_size == 0 or not csum_fits(h, length):
        return -1
    if parse_l34(frame, length, g) != 0:
        return -1
    tcp = g.proto == VALE_PROTO_TCP
    if gso == VNET_GSO_TCPV4:
        if not (tcp and g.ipv == 4):
            return -1
    elif gso == VNET_GSO_TCPV6:
        if not (tcp and g.ipv == 6):
            return -1
    elif gso == VNET_GSO_UDP:
        if tcp or g.ipv != 4:
            return -1
    elif gso == VNET_GSO_UDP_L4:
        if tcp:
            return -1
    else:
        return -1
    # The partial checksum must be the L4 one: a kernel receiving the frame takes
    # csum_start as the transport header and would cut the frame from there.
    if h.csum_start != g.l4:
        return -1
    if h.csum_offset != (VALE_TCP_CSUM_OFFSET if tcp else VALE_UDP_CSUM_OFFSET):
        return -1
    return 0


cdef int vnet_check(const vale_vnet *h, const char *frame, uint32_t length) noexcept nogil:
    """0 when the virtio-net header is consistent with its frame, -1 when it lies: an
    unknown GSO type, a checksum field outside the frame, or a GSO frame that is not
    what its type says (or has no room for a segment's payload)."""
    cdef vale_l34 g
    return vnet_parse(h, frame, length, &g)


# ---- checksum completion -------------------------------------------------------------

cdef int offload_checksum(char *frame, uint32_t length, const vale_vnet *h) noexcept nogil:
    """Complete a partial checksum in place: the field at csum_start + csum_offset holds
    the pseudo-header sum, and the checksum covers everything from csum_start to the end
    of the frame. Returns 0 (also when there is nothing to do), -1 when the offsets do not
    fit the frame."""
    cdef uint32_t start = h.csum_start
    cdef uint32_t field = start + h.csum_offset
    if not (h.flags & VNET_NEEDS_CSUM):
        return 0
    if h.csum_offset == VALE_SCTP_CSUM_OFFSET:
        return sctp_checksum(frame, length, start)
    if field + 2 > length:
        return -1
    csum_store(frame + field, csum_add(0, frame + start, length - start),
               h.csum_offset == VALE_UDP_CSUM_OFFSET)
    return 0


cdef uint32_t CRC32C_TABLE[256]


cdef void crc32c_init() noexcept nogil:
    cdef uint32_t i, k, c
    for i in range(256):
        c = i
        for k in range(8):
            c = (c >> 1) ^ (VALE_CRC32C_POLY if c & 1 else 0)
        CRC32C_TABLE[i] = c


crc32c_init()


cdef uint32_t crc32c(const char *p, uint32_t n) noexcept nogil:
    """CRC-32C (Castagnoli) of n bytes, as SCTP uses it: a byte at a time, from a table.
    SCTP frames are small and rare enough that this is no bottleneck."""
    cdef uint32_t crc = ~(<uint32_t>0), i
    for i in range(n):
        crc = CRC32C_TABLE[(crc ^ <uint8_t>p[i]) & 0xFF] ^ (crc >> 8)
    return ~crc


cdef int sctp_checksum(char *frame, uint32_t length, uint32_t start) noexcept nogil:
    """Fill in the CRC32c of the SCTP packet at start (RFC 4960 appendix B: over the
    whole packet with the field at zero, stored as Linux does, least significant byte
    first). Returns -1 when the field does not fit the frame."""
    cdef uint32_t field = start + VALE_SCTP_CSUM_OFFSET, crc
    if field + 4 > length:
        return -1
    memset(frame + field, 0, 4)
    crc = crc32c(frame + start, length - start)
    frame[field] = <char>(crc & 0xFF)
    frame[field + 1] = <char>((crc >> 8) & 0xFF)
    frame[field + 2] = <char>((crc >> 16) & 0xFF)
    frame[field + 3] = <char>(crc >> 24)
    return 0


cdef uint32_t settle_vnet(vale_desc *d) noexcept nogil:
    """The flags of a frame that came with a virtio-net header asking for GSO or for a
    checksum: FRAME_VNET, with FRAME_BAD when the header lies. An SCTP frame's partial
    checksum is completed here, and the frame goes on as a plain one: the kernel marks
    an SCTP partial checksum as a CRC32c (csum_not_inet), a mark no virtio-net header
    carries, so a destination kernel would fill the field with an Internet checksum."""
    if vnet_check(&d.vnet, d.data, d.len) != 0:
        return FRAME_VNET | FRAME_BAD
    if d.vnet.gso_type == VNET_GSO_NONE and d.vnet.csum_offset == VALE_SCTP_CSUM_OFFSET:
        sctp_checksum(d.data, d.len, d.vnet.csum_start)
        memset(&d.vnet, 0, sizeof(d.vnet))
        return 0
    return FRAME_VNET


# ---- software segmentation -----------------------------------------------------------

cdef inline void set_ip_lengths(char *o, const vale_l34 *g, uint32_t seg_len,
                                uint32_t ip_id) noexcept nogil:
    """One segment's IP header: its length, and for IPv4 its id and header checksum."""
    cdef char *ip = o + g.l3
    if g.ipv == 4:
        store_be16(ip + 2, seg_len - g.l3)
        store_be16(ip + 4, ip_id)
        ipv4_header_csum(ip, g.l4 - g.l3)
    else:
        store_be16(ip + 4, seg_len - g.l3 - VALE_IPV6_HLEN)


cdef int segment_l4(const vale_vnet *h, const vale_l34 *g, const char *frame,
                    uint32_t length, char *out, uint32_t out_stride, uint32_t max_segments,
                    uint32_t *seg_lens) noexcept nogil:
    """TCP segmentation (TSO) and UDP segmentation (USO): every segment gets a copy of the
    headers, up to gso_size payload bytes, and its own lengths and checksums."""
    cdef uint32_t mss = h.gso_size
    cdef uint32_t payload = length - g.hlen
    cdef uint32_t nseg = payload / mss + (1 if payload % mss else 0)
    cdef uint32_t longest = g.hlen + (mss if mss < payload else payload)
    cdef uint32_t i, sent = 0, chunk, seg_len, seq = 0, ip_id = 0
    cdef uint8_t tcp_flags = 0, f
    cdef bint tcp = g.proto == VALE_PROTO_TCP
    cdef char *o
    cdef char *l4
    if nseg > max_segments or longest > out_stride:
        return -1
    # The first segment is the longest: if its IP length fits 16 bits, all do.
    if longest - g.l3 - (0 if g.ipv == 4 else VALE_IPV6_HLEN) > VALE_IP_MAX_LEN:
        return -1
    if g.ipv == 4:
        ip_id = load_be16(frame + g.l3 + 4)
    if tcp:
        seq = load_be32(frame + g.l4 + 4)
        tcp_flags = <uint8_t>frame[g.l4 + 13]
    for i in range(nseg):
        o = out + <size_t>i * out_stride
        chunk = payload - sent
        if chunk > mss:
            chunk = mss
        seg_len = g.hlen + chunk
        memcpy(o, frame, g.hlen)
        memcpy(o + g.hlen, frame + g.hlen + sent, chunk)
        set_ip_lengths(o, g, seg_len, (ip_id + i) & 0xFFFF)
        l4 = o + g.l4
        if tcp:
            store_be32(l4 + 4, seq + sent)
            # CWR answers an ECN echo once; FIN and PSH end the whole send.
            f = tcp_flags
            if i:
                f &= ~VALE_TCP_CWR
            if i + 1 < nseg:
                f &= ~(VALE_TCP_FIN | VALE_TCP_PSH)
            l4[13] = <char>f
            l4[16] = 0
            l4[17] = 0
            csum_store(l4 + 16, pseudo_sum(o + g.l3, g.ipv, VALE_PROTO_TCP, seg_len - g.l4)
                       + csum_add(0, l4, seg_len - g.l4), False)
        else:
            store_be16(l4 + 4, seg_len - g.l4)
            l4[6] = 0
            l4[7] = 0
            csum_store(l4 + 6, pseudo_sum(o + g.l3, g.ipv, VALE_PROTO_UDP, seg_len - g.l4)
                       + csum_add(0, l4, seg_len - g.l4), True)
        seg_lens[i] = seg_len
        sent += chunk
    return <int>nseg


cdef void ipv4_options_for_fragment(char *ip, uint32_t ihl) noexcept nogil:
    """Options without the copied bit belong to the first fragment only (RFC 791); later
    fragments get NOPs in their place, so every header keeps its length (the kernel's
    ip_options_fragment). A malformed option is taken to run to the end of the header."""
    cdef uint32_t i = VALE_IPV4_HLEN, opt_len
    cdef uint8_t kind
    while i < ihl:
        kind = <uint8_t>ip[i]
        if kind == VALE_IPOPT_EOL:
            break
        if kind == VALE_IPOPT_NOP:
            i += 1
            continue
        opt_len = <uint8_t>ip[i + 1] if i + 1 < ihl else 0
        if opt_len < 2 or opt_len > ihl - i:
            opt_len = ihl - i
        if not (kind & VALE_IPOPT_COPIED):
            memset(ip + i, VALE_IPOPT_NOP, opt_len)
        i += opt_len


cdef int segment_ufo(const vale_vnet *h, const vale_l34 *g, const char *frame,
                     uint32_t length, char *out, uint32_t out_stride, uint32_t max_segments,
                     uint32_t *seg_lens) noexcept nogil:
    """UDP fragmentation (UFO, IPv4): the datagram, its checksum completed over all of it,
    cut into IPv4 fragments that carry multiples of 8 bytes, all with the same IP id."""
    cdef uint32_t ihl = g.l4 - g.l3
    cdef uint32_t dlen = length - g.l4          # UDP header and payload
    cdef uint32_t frag = dlen, nfrag = 1, i, sent = 0, chunk, seg_len
    cdef uint16_t frag_off
    cdef char udp[8]
    cdef char *o
    cdef char *ip
    if ihl + dlen > VALE_IP_MAX_LEN:
        return -1
    if dlen > h.gso_size:
        frag = h.gso_size & ~<uint32_t>7
        if frag == 0:
            return -1
        nfrag = dlen / frag + (1 if dlen % frag else 0)
    if nfrag > max_segments or g.l4 + frag > out_stride:
        return -1
    # The UDP header as the first fragment will carry it: its length, and the checksum
    # over the whole datagram, which no later fragment can carry a share of.
    memcpy(udp, frame + g.l4, 8)
    store_be16(udp + 4, dlen)
    udp[6] = 0
    udp[7] = 0
    csum_store(udp + 6, pseudo_sum(frame + g.l3, 4, VALE_PROTO_UDP, dlen)
               + csum_add(csum_add(0, udp, 8), frame + g.l4 + 8, dlen - 8), True)
    for i in range(nfrag):
        o = out + <size_t>i * out_stride
        chunk = dlen - sent
        if chunk > frag:
            chunk = frag
        seg_len = g.l4 + chunk
        memcpy(o, frame, g.l4)
        memcpy(o + g.l4, frame + g.l4 + sent, chunk)
        ip = o + g.l3
        if i == 0:
            memcpy(o + g.l4, udp, 8)        # chunk >= 8: frag is a non-zero multiple of 8
        else:
            ipv4_options_for_fragment(ip, ihl)
        if nfrag > 1:
            # The whole field is rewritten: a fragment cannot keep DF.
            frag_off = <uint16_t>(sent >> 3)
            if i + 1 < nfrag:
                frag_off |= VALE_IPV4_MF
            store_be16(ip + 6, frag_off)
        store_be16(ip + 2, ihl + chunk)
        ipv4_header_csum(ip, ihl)
        seg_lens[i] = seg_len
        sent += chunk
    return <int>nfrag


cdef int offload_segment(const vale_vnet *h, const char *frame, uint32_t length, char *out,
                         uint32_t out_stride, uint32_t max_segments,
                         uint32_t *seg_lens) noexcept nogil:
    """Software GSO: write the frames a GSO frame stands for, each a whole Ethernet frame
    with every checksum done, at out + i * out_stride, its length in seg_lens[i]. Returns
    the number of frames, or -1 when the header lies, more than max_segments frames would
    be needed, or one would be longer than out_stride. A frame without GSO comes out as
    it is, its checksum completed."""
    cdef vale_l34 g
    cdef uint8_t gso = h.gso_type & ~VNET_GSO_ECN
    if max_segments == 0 or vnet_parse(h, frame, length, &g) != 0:
        return -1
    if h.gso_type == VNET_GSO_NONE:
        if length > out_stride:
            return -1
        memcpy(out, frame, length)
        if offload_checksum(out, length, h) != 0:
            return -1
        seg_lens[0] = length
        return 1
    if gso == VNET_GSO_UDP:
        return segment_ufo(h, &g, frame, length, out, out_stride, max_segments, seg_lens)
    return segment_l4(h, &g, frame, length, out, out_stride, max_segments, seg_lens)


# ---- test hooks ----------------------------------------------------------------------
# Not API: tests/test_offload.py drives the C functions above through these. Each frame is
# copied to end exactly where an inaccessible page begins, and the output area too, so a
# read or write past the end faults instead of passing unnoticed.

cdef extern from "<sys/mman.h>" nogil:
    void *guard_mmap "mmap"(void *addr, size_t length, int prot, int flags, int fd, long off)
    int guard_munmap "munmap"(void *addr, size_t length)
    int guard_mprotect "mprotect"(void *addr, size_t length, int prot)
    int GUARD_PROT_NONE "PROT_NONE"
    int GUARD_PROT_RW "(PROT_READ | PROT_WRITE)"
    int GUARD_MAP_ANON "(MAP_PRIVATE | MAP_ANONYMOUS)"
    void *GUARD_MAP_FAILED "MAP_FAILED"

cdef extern from "<unistd.h>" nogil:
    long guard_sysconf "sysconf"(int name)
    int GUARD_SC_PAGESIZE "_SC_PAGESIZE"


ctypedef struct guarded_area:
    char *base
    size_t map_len
    char *data                  # n bytes, the last one right before the guard page


cdef int guarded_alloc(guarded_area *a, size_t n) except -1:
    cdef size_t page = <size_t>guard_sysconf(GUARD_SC_PAGESIZE)
    cdef size_t span = (n + page - 1) // page * page
    a.map_len = span + page
    a.base = <char *>guard_mmap(NULL, a.map_len, GUARD_PROT_RW, GUARD_MAP_ANON, -1, 0)
    if a.base == <char *>GUARD_MAP_FAILED:
        a.base = NULL
        raise MemoryError(f"cannot map {a.map_len} bytes")
    if guard_mprotect(a.base + span, page, GUARD_PROT_NONE) != 0:
        guard_munmap(a.base, a.map_len)
        a.base = NULL
        raise OSError("mprotect failed")
    a.data = a.base + span - n
    return 0


cdef void guarded_free(guarded_area *a) noexcept:
    if a.base != NULL:
        guard_munmap(a.base, a.map_len)
        a.base = NULL


cdef int vnet_from_bytes(vale_vnet *h, bytes vnet10) except -1:
    if PyBytes_GET_SIZE(vnet10) != VNET_HDR_LEN:
        raise ValueError(f"a virtio-net header is {VNET_HDR_LEN} bytes, not {len(vnet10)}")
    memcpy(h, PyBytes_AS_STRING(vnet10), VNET_HDR_LEN)
    return 0


def _vnet_check(bytes vnet10 not None, bytes frame not None):
    """Test hook: vnet_check() on a copy of frame. True when the header is consistent."""
    cdef vale_vnet h
    cdef guarded_area f
    cdef uint32_t n = <uint32_t>PyBytes_GET_SIZE(frame)
    cdef int r
    vnet_from_bytes(&h, vnet10)
    guarded_alloc(&f, n)
    try:
        memcpy(f.data, PyBytes_AS_STRING(frame), n)
        with nogil:
            r = vnet_check(&h, f.data, n)
        return r == 0
    finally:
        guarded_free(&f)


def _checksum(bytes vnet10 not None, bytes frame not None):
    """Test hook: offload_checksum() on a copy of frame; the frame with its checksum
    completed. ValueError when the offsets do not fit."""
    cdef vale_vnet h
    cdef guarded_area f
    cdef uint32_t n = <uint32_t>PyBytes_GET_SIZE(frame)
    cdef int r
    vnet_from_bytes(&h, vnet10)
    guarded_alloc(&f, n)
    try:
        memcpy(f.data, PyBytes_AS_STRING(frame), n)
        with nogil:
            r = offload_checksum(f.data, n, &h)
        if r != 0:
            raise ValueError("the checksum offsets do not fit the frame")
        return PyBytes_FromStringAndSize(f.data, n)
    finally:
        guarded_free(&f)


def _segment(bytes vnet10 not None, bytes frame not None, stride=None, max_segments=128):
    """Test hook: offload_segment() of frame into max_segments slots (128 by default,
    which keeps the area small; forwarding allows up to VALE_MAX_SEGMENTS) of stride
    bytes (by default as long as the frame, which no segment exceeds); the list of
    segments. ValueError when the frame cannot be segmented."""
    cdef vale_vnet h
    cdef guarded_area f, o, lens
    cdef uint32_t n = <uint32_t>PyBytes_GET_SIZE(frame)
    cdef uint32_t c_stride, c_max, i
    cdef uint32_t *seg_lens
    cdef int r
    vnet_from_bytes(&h, vnet10)
    if stride is None:
        stride = max(n, 1)
    if not 1 <= stride <= 1 << 20:
        raise ValueError(f"stride must be between 1 and {1 << 20}, not {stride}")
    if not 1 <= max_segments <= VALE_MAX_SEGMENTS:
        raise ValueError(f"max_segments must be between 1 and {VALE_MAX_SEGMENTS}")
    c_stride = stride
    c_max = max_segments
    f.base = o.base = lens.base = NULL
    try:
        guarded_alloc(&f, n)
        guarded_alloc(&o, <size_t>c_max * c_stride)
        guarded_alloc(&lens, c_max * sizeof(uint32_t))
        memcpy(f.data, PyBytes_AS_STRING(frame), n)
        seg_lens = <uint32_t *>lens.data
        with nogil:
            r = offload_segment(&h, f.data, n, o.data, c_stride, c_max, seg_lens)
        if r < 0:
            raise ValueError("the frame cannot be segmented")
        if <uint32_t>r > c_max:
            raise AssertionError(f"{r} segments, more than the {c_max} allowed")
        for i in range(<uint32_t>r):
            if seg_lens[i] > c_stride:
                raise AssertionError(f"segment {i} is {seg_lens[i]} bytes, past the stride")
        return [PyBytes_FromStringAndSize(o.data + <size_t>i * c_stride, seg_lens[i])
                for i in range(<uint32_t>r)]
    finally:
        guarded_free(&lens)
        guarded_free(&o)
        guarded_free(&f)
