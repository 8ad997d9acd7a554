# Batched forwarding: take a batch of frames from one source, learn and look them all
# up, chain them per destination keeping their order, then hand each frame once to each
# destination, never waiting for room: what does not fit is dropped and counted. Runs
# without the GIL and touches no Python object.

cdef enum:
    NO_FRAME = 0xFFFF           # end of a per-destination frame list
    PREFETCH_AHEAD = 16         # frames between a cell's prefetch and its lookup
    VLAN_HLEN = 4


cdef inline void batch_record(vale_switch *sw, uint32_t n) noexcept nogil:
    cdef uint32_t bucket = 0
    while (<uint32_t>1 << bucket) < n:
        bucket += 1
    sw.batch_hist[bucket] += 1
    sw.batches += 1
    sw.batch_frames += n


cdef inline void chain(vale_switch *sw, uint16_t *head, uint16_t *tail, uint16_t i) noexcept nogil:
    sw.next_frame[i] = NO_FRAME
    if head[0] == NO_FRAME:
        head[0] = i
    else:
        sw.next_frame[tail[0]] = i
    tail[0] = i


cdef inline void vnet_for_output(vale_vnet *out, const vale_vnet *vnet, bint tagged) noexcept nogil:
    """The header to send with a frame: its own (offsets moved past a re-inserted VLAN
    tag) or, for a plain frame, all zeroes."""
    if vnet == NULL:
        memset(out, 0, sizeof(vale_vnet))
        return
    out[0] = vnet[0]
    if tagged:
        if out.flags & VNET_NEEDS_CSUM:
            out.csum_start += VLAN_HLEN
        if out.hdr_len:
            out.hdr_len += VLAN_HLEN


cdef inline void vlan_tag(uint8_t *tag, const vale_desc *d) noexcept nogil:
    tag[0] = d.vlan_tpid >> 8
    tag[1] = d.vlan_tpid & 0xFF
    tag[2] = d.vlan_tci >> 8
    tag[3] = d.vlan_tci & 0xFF


cdef inline void copy_tagged(char *out, const char *data, uint32_t length,
                             const vale_desc *d) noexcept nogil:
    """Copy a frame whose VLAN tag the kernel took off, with the tag back after the MACs."""
    memcpy(out, data, 12)
    vlan_tag(<uint8_t *>out + 12, d)
    memcpy(out + 12 + VLAN_HLEN, data + 12, length - 12)


cdef void flush_packet(vale_switch *sw, vale_port *dst, uint32_t n) noexcept nogil:
    """Send the n messages queued in sw.tx_msgs on dst's socket (or TAP), without
    blocking."""
    cdef uint32_t sent = 0, j
    cdef int r, e
    if dst.kind == PORT_TAP:
        flush_tap(sw, dst, n)
        return
    while sent < n:
        r = sendmmsg(dst.fd, &sw.tx_msgs[sent], n - sent, MSG_DONTWAIT)
        if r > 0:
            for j in range(sent, sent + <uint32_t>r):
                dst.c.tx_packets += 1
                dst.c.tx_bytes += sw.tx_msgs[j].msg_len - VNET_HDR_LEN
            sent += r
            continue
        e = errno
        if e == EINTR:
            continue
        if e == EAGAIN or e == ENOBUFS:
            dst.c.drops[DROP_RING_FULL] += n - sent     # the interface's queue is full
            return
        if e == EMSGSIZE:
            dst.c.drops[DROP_TOO_BIG] += 1
        elif e == ENXIO or e == ENETDOWN or e == ENODEV:
            dst.c.drops[DROP_TX_ERROR] += n - sent      # gone: the thread notices via epoll
            return
        else:
            dst.c.drops[DROP_TX_ERROR] += 1
        sent += 1


cdef uint32_t put_frame(vale_switch *sw, vale_port *dst, const char *data, uint32_t length,
                        const vale_vnet *vnet, const vale_desc *d, uint32_t queued,
                        bint padded, bint *use_ring) noexcept nogil:
    """Hand one frame to dst: into its TX ring (an in-memory port's, or a packet port's
    for short frames), or queued as a sendmmsg message.
    vnet is the frame's offload header (NULL: a plain frame). use_ring: whether a packet
    port's TX ring may be used; cleared when the ring is busy, so the rest of the batch
    goes by sendmmsg rather than each frame trying the ring again, a system call each.
    Returns the number of messages queued for a packet port."""
    cdef bint tagged = d.flags & FRAME_VLAN
    cdef uint32_t wire = length + (VLAN_HLEN if tagged else 0)
    cdef vale_ring *ring
    cdef vale_slot *slot
    cdef uint32_t idx
    cdef iovec *iov
    cdef mmsghdr *m
    if (vnet == NULL or vnet.gso_type == VNET_GSO_NONE) and vale_unlikely(wire > dst.max_frame):
        dst.c.drops[DROP_TOO_BIG] += 1
        return queued
    if dst.kind == PORT_MEMORY:
        ring = &dst.tx
        if vale_unlikely(wire > ring.slot_size):    # a GSO frame bigger than a slot
            dst.c.drops[DROP_TOO_BIG] += 1
            return queued
        if vale_unlikely(ring_space(ring) == 0):
            dst.c.drops[DROP_RING_FULL] += 1
            return queued
        idx = ring.head & ring.mask
        slot = &ring.slots[idx]
        if tagged:
            copy_tagged(ring.buf + slot.off, data, length, d)
        elif padded:
            copy_frame(ring.buf + slot.off, data, length)
        else:
            memcpy(ring.buf + slot.off, data, length)
        slot.len = wire
        slot.flags = FRAME_VNET if vnet != NULL else 0
        if vnet != NULL:
            vnet_for_output(&ring.vnets[idx], vnet, tagged)
        ring.head += 1
        dst.c.tx_packets += 1
        dst.c.tx_bytes += wire
        return queued
    if dst.kind == PORT_PACKET:
        # Short frames into the port's TX ring, the rest as messages; each kind is handed
        # over before a frame of the other is queued, so the order holds.
        if use_ring[0] and dst.ptx.map != NULL and fits_tx_ring(vnet, wire):
            if queued:
                flush_packet(sw, dst, queued)
                queued = 0
            if packet_tx_put(dst, data, length, wire, vnet, d):
                return 0
            use_ring[0] = False
        if dst.tx_pending:
            packet_tx_kick(dst)
    # A packet or TAP port: one message, the header first (both take one with every frame).
    vnet_for_output(&sw.tx_vnet[queued], vnet, tagged)
    iov = &sw.tx_iov[4 * queued]
    iov[0].iov_base = &sw.tx_vnet[queued]
    iov[0].iov_len = VNET_HDR_LEN
    m = &sw.tx_msgs[queued]
    m.msg_hdr.msg_iov = iov
    if tagged:
        vlan_tag(sw.tx_tag[queued], d)
        iov[1].iov_base = <void *>data
        iov[1].iov_len = 12
        iov[2].iov_base = sw.tx_tag[queued]
        iov[2].iov_len = VLAN_HLEN
        iov[3].iov_base = <void *>(data + 12)
        iov[3].iov_len = length - 12
        m.msg_hdr.msg_iovlen = 4
    else:
        iov[1].iov_base = <void *>data
        iov[1].iov_len = length
        m.msg_hdr.msg_iovlen = 2
    queued += 1
    if queued == VALE_MAX_BATCH:
        flush_packet(sw, dst, queued)
        queued = 0
    return queued


cdef uint32_t soft_offload(vale_switch *sw, const vale_desc *d) noexcept nogil:
    """Make plain frames of an offloaded one, for a port that takes no virtio-net
    header: segment a GSO frame, or complete a partial checksum, into sw.soft_buf, a
    frame every sw.soft_stride bytes. Returns the number of frames made, 0 when the frame
    cannot be made plain."""
    cdef int n
    sw.soft_stride = SOFT_STRIDE
    if d.vnet.gso_type != VNET_GSO_NONE:
        # Room to the measure of the segments: a small MSS makes many short ones. A
        # gso_size near 16 KiB or over makes segments longer than the most room, which
        # segmenting refuses.
        if d.vnet.gso_size + SOFT_HEADROOM < SOFT_STRIDE:
            sw.soft_stride = round64(d.vnet.gso_size + SOFT_HEADROOM)
        n = offload_segment(&d.vnet, d.data, d.len, sw.soft_buf, sw.soft_stride,
                            min(<uint32_t>VALE_MAX_SEGMENTS, SOFT_BUF_SIZE // sw.soft_stride),
                            sw.soft_lens)
        return <uint32_t>n if n > 0 else 0
    if d.len > SOFT_BUF_SIZE:
        return 0
    memcpy(sw.soft_buf, d.data, d.len)
    if offload_checksum(sw.soft_buf, d.len, &d.vnet) != 0:
        return 0
    sw.soft_lens[0] = d.len
    return 1


cdef bint ring_batch(const vale_switch *sw, uint16_t u, uint16_t b) noexcept nogil:
    """Whether all the frames of lists u and b can go through a packet port's TX ring
    (short, no GSO). One that cannot sends the whole batch for the port by sendmmsg:
    switching ways between frames would cost a system call each time."""
    cdef const vale_desc *d
    while u != NO_FRAME or b != NO_FRAME:
        if u != NO_FRAME:
            d = &sw.descs[u]
            u = sw.next_frame[u]
        else:
            d = &sw.descs[b]
            b = sw.next_frame[b]
        if not fits_tx_ring(&d.vnet if d.flags & FRAME_VNET else NULL,
                            d.len + (VLAN_HLEN if d.flags & FRAME_VLAN else 0)):
            return False
    return True


cdef void deliver(vale_switch *sw, vale_port *dst, uint16_t u, uint16_t b,
                  bint padded, bint flood) noexcept nogil:
    """Hand dst the frames of unicast list u and flood list b, merged in batch order;
    unknown unicast among the floods only if `flood` (the flag of the port the frames are
    for: dst's own, or the port dst mirrors)."""
    cdef uint16_t i
    cdef uint32_t queued = 0, k, nseg
    cdef vale_desc *d
    cdef bint packet = dst.kind != PORT_MEMORY      # sends through a file descriptor
    cdef vale_ring *ring = &dst.tx
    cdef vale_slot *slot
    # The common case, plain frames into an in-memory ring, keeps its state in locals.
    cdef uint32_t head = ring.head, space = ring_space(ring), max_len = dst.max_frame
    cdef uint64_t packets = 0, nbytes = 0, full = 0, big = 0
    cdef bint capture = dst.capture & CAPTURE_TX
    cdef bint ring_ok = dst.kind == PORT_PACKET and dst.ptx.map != NULL and ring_batch(sw, u, b)
    while u != NO_FRAME or b != NO_FRAME:
        if b != NO_FRAME and (u == NO_FRAME or b < u):
            i = b
            b = sw.next_frame[b]
            if not flood and (sw.descs[i].flags & FRAME_UNKNOWN_UNICAST):
                continue
        else:
            i = u
            u = sw.next_frame[u]
        d = &sw.descs[i]
        if vale_likely(not packet and not (d.flags & (FRAME_VNET | FRAME_VLAN))):
            if vale_unlikely(d.len > max_len):
                big += 1
                continue
            if vale_unlikely(space == 0):
                full += 1
                continue
            slot = &ring.slots[head & ring.mask]
            slot.len = d.len
            slot.flags = 0
            if padded:
                copy_frame(ring.buf + slot.off, d.data, d.len)
            else:
                memcpy(ring.buf + slot.off, d.data, d.len)
            head += 1
            space -= 1
            packets += 1
            nbytes += d.len
            if vale_unlikely(capture):
                capture_frame(sw, dst, d.data, d.len, 1)
            continue
        # Everything else goes through put_frame, which keeps the ring's own state.
        ring.head = head
        if vale_unlikely(capture):
            capture_frame(sw, dst, d.data, d.len, 1)
        if (d.flags & FRAME_VNET) and not dst.vnet:
            if packet and queued:
                flush_packet(sw, dst, queued)
                queued = 0
            nseg = soft_offload(sw, d)
            if nseg == 0:
                dst.c.drops[DROP_BAD_OFFLOAD] += 1
            for k in range(nseg):
                queued = put_frame(sw, dst, sw.soft_buf + k * sw.soft_stride, sw.soft_lens[k],
                                   NULL, d, queued, True, &ring_ok)
            if packet and queued:
                flush_packet(sw, dst, queued)
                queued = 0
        else:
            queued = put_frame(sw, dst, d.data, d.len,
                               &d.vnet if d.flags & FRAME_VNET else NULL, d, queued, padded,
                               &ring_ok)
        head = ring.head
        space = ring_space(ring)
    ring.head = head
    dst.c.tx_packets += packets
    dst.c.tx_bytes += nbytes
    dst.c.drops[DROP_RING_FULL] += full
    dst.c.drops[DROP_TOO_BIG] += big
    if packet and queued:
        flush_packet(sw, dst, queued)
    if dst.tx_pending:
        packet_tx_kick(dst)


cdef uint32_t chain_length(const vale_switch *sw, uint16_t i) noexcept nogil:
    cdef uint32_t n = 0
    while i != NO_FRAME:
        n += 1
        i = sw.next_frame[i]
    return n


cdef uint32_t forward_batch(vale_switch *sw, vale_port *src, uint32_t n, uint32_t src_max,
                            bint padded) noexcept nogil:
    """Forward sw.descs[0:n], received on src. src_max is the longest frame the source
    can hold; a longer length is a lie and the frame is dropped. padded: each frame may
    be read in whole 64-byte chunks."""
    cdef vale_fdb *t = &sw.fdb
    cdef vale_desc *d
    cdef uint32_t i, k
    cdef uint16_t port, pi
    cdef uint64_t dkey, skey
    cdef int reason
    cdef uint64_t nbytes = 0, floods = 0
    cdef uint64_t drops[N_DROP_REASONS]
    cdef bint learning = src.learning and src.up    # down: its MACs were just forgotten
    cdef vale_port *dst

    if not sw.manual_clock:
        sw.now_ms = monotonic_ms()
    fdb_expire(sw)
    memset(drops, 0, sizeof(drops))
    if vale_unlikely(sw.capturing):
        sw.cap_now = realtime_ns()
        if src.capture & CAPTURE_RX:
            capture_received(sw, src, n, src_max)

    # Pass 1: destination keys. Pass 2 prefetches the cell of the frame PREFETCH_AHEAD
    # places on, so its lookups find cells in cache even in a table far larger than the
    # caches, without more misses in flight than the memory system can track.
    for i in range(n):
        d = &sw.descs[i]
        sw.dkeys[i] = load_mac(d.data) if d.len >= VALE_ETH_HLEN else 0
    for i in range(min(n, PREFETCH_AHEAD)):
        fdb_prefetch(t, sw.dkeys[i])

    # Pass 2: in batch order, learn the source, then look up the destination.
    for k in range(sw.nactive):
        sw.list_head[sw.active[k]] = NO_FRAME
    sw.flood_head = NO_FRAME
    sw.flood_tail = NO_FRAME
    for i in range(n):
        if i + PREFETCH_AHEAD < n:
            fdb_prefetch(t, sw.dkeys[i + PREFETCH_AHEAD])
        d = &sw.descs[i]
        d.flags &= ~(<uint32_t>FRAME_UNKNOWN_UNICAST)
        if vale_unlikely(d.len > src_max):
            drops[DROP_TOO_BIG] += 1
            continue
        nbytes += d.len
        if vale_unlikely(d.len < VALE_ETH_HLEN):
            drops[DROP_RUNT] += 1
            continue
        if vale_unlikely(d.flags & FRAME_BAD):
            drops[DROP_BAD_OFFLOAD] += 1
            continue
        if learning:
            skey = load_mac(d.data + 6)
            if not mac_is_group(skey) and skey != 0:
                reason = fdb_learn(sw, src, skey)
                if vale_unlikely(reason >= 0):
                    drops[reason] += 1
                    continue
        dkey = sw.dkeys[i]
        if mac_is_group(dkey):
            floods += 1
            chain(sw, &sw.flood_head, &sw.flood_tail, <uint16_t>i)
            continue
        port = fdb_lookup_port(t, dkey)
        if vale_likely(port != VALE_NO_PORT):
            if vale_unlikely(port == src.index):
                drops[DROP_OWN_PORT] += 1
            else:
                chain(sw, &sw.list_head[port], &sw.list_tail[port], <uint16_t>i)
        else:
            d.flags |= FRAME_UNKNOWN_UNICAST
            floods += 1
            chain(sw, &sw.flood_head, &sw.flood_tail, <uint16_t>i)

    # Pass 3: every other port that is up and has frames for it gets them, in order; a
    # port's transmit mirror gets the same frames. Unicast for a port that is down (a
    # static entry, or one learned just before) is dropped there and counted.
    for k in range(sw.nactive):
        pi = sw.active[k]
        dst = sw.ports[pi]
        if pi != src.index and dst.up and (sw.list_head[pi] != NO_FRAME
                                           or sw.flood_head != NO_FRAME):
            deliver(sw, dst, sw.list_head[pi], sw.flood_head, padded, dst.flood)
            if vale_unlikely(dst.mirror_tx != VALE_NO_PORT):
                mirror_sent(sw, src, dst, sw.list_head[pi], sw.flood_head, padded)
        elif vale_unlikely(not dst.up and sw.list_head[pi] != NO_FRAME):
            dst.c.drops[DROP_TX_ERROR] += chain_length(sw, sw.list_head[pi])
    if vale_unlikely(src.mirror_rx != VALE_NO_PORT):
        mirror_received(sw, src, n, src_max, padded)

    src.c.rx_packets += n
    src.c.rx_bytes += nbytes
    src.c.flood_packets += floods
    for i in range(N_DROP_REASONS):
        src.c.drops[i] += drops[i]
    batch_record(sw, n)
    return n


cdef uint32_t forward_ring(vale_switch *sw, vale_port *src) noexcept nogil:
    """Forward one batch from src's in-memory RX ring; returns the number of frames taken."""
    cdef vale_ring *rx = &src.rx
    cdef uint32_t n = ring_count(rx)
    cdef uint32_t i, idx
    cdef vale_slot *slot
    cdef vale_desc *d
    if n == 0:
        return 0
    if n > sw.batch:
        n = sw.batch
    for i in range(n):
        idx = (rx.tail + i) & rx.mask
        slot = &rx.slots[idx]
        d = &sw.descs[i]
        d.data = rx.buf + slot.off
        d.len = slot.len
        d.flags = slot.flags & FRAME_VNET
        if vale_unlikely(d.flags):
            d.vnet = rx.vnets[idx]
            if d.len <= rx.slot_size:
                d.flags = settle_vnet(d)
    forward_batch(sw, src, n, rx.slot_size, True)
    rx.tail += n
    return n


cdef void mirror_sent(vale_switch *sw, vale_port *src, vale_port *dst, uint16_t u, uint16_t b,
                      bint padded) noexcept nogil:
    """Hand dst's transmit mirror the frames just offered to dst."""
    cdef vale_port *m = sw.ports[dst.mirror_tx]
    if m != NULL and m.up and m != src and m != dst:
        deliver(sw, m, u, b, padded, dst.flood)


cdef bint memory_failed(vale_port *p, uint32_t events) noexcept nogil:
    """An in-memory port has no device to fail."""
    return False


cdef void memory_close(vale_port *p) noexcept nogil:
    """Its rings are all it has: port_free frees them."""
    pass
