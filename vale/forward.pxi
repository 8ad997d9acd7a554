# Batched forwarding: take a batch of frames from one source, learn and look them all
# up, chain them per destination keeping their order, then copy each frame once into
# each destination ring, never waiting for room: what does not fit is dropped and
# counted. Runs without the GIL and touches no Python object.

cdef enum:
    NO_FRAME = 0xFFFF           # end of a per-destination frame list
    PREFETCH_AHEAD = 16         # frames between a cell's prefetch and its lookup


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


cdef void deliver(vale_switch *sw, vale_port *dst, uint16_t u, uint16_t b) noexcept nogil:
    """Copy the frames of unicast list u and flood list b, merged in batch order, into
    dst's TX ring."""
    cdef vale_ring *ring = &dst.tx
    cdef uint32_t space = ring_space(ring)
    cdef uint32_t head = ring.head
    cdef uint32_t max_len = ring.slot_size
    cdef uint64_t packets = 0, nbytes = 0, full = 0, big = 0
    cdef uint16_t i
    cdef vale_desc *d
    cdef vale_slot *slot
    while u != NO_FRAME or b != NO_FRAME:
        if b != NO_FRAME and (u == NO_FRAME or b < u):
            i = b
            b = sw.next_frame[b]
            if not dst.flood and (sw.descs[i].flags & FRAME_UNKNOWN_UNICAST):
                continue
        else:
            i = u
            u = sw.next_frame[u]
        d = &sw.descs[i]
        if vale_unlikely(d.len > max_len):
            big += 1
            continue
        if vale_unlikely(space == 0):
            full += 1
            continue
        slot = &ring.slots[head & ring.mask]
        slot.len = d.len
        slot.flags = d.flags & ~(<uint32_t>FRAME_UNKNOWN_UNICAST)
        copy_frame(ring.buf + slot.off, d.data, d.len)
        head += 1
        space -= 1
        packets += 1
        nbytes += d.len
    ring.head = head
    dst.c.tx_packets += packets
    dst.c.tx_bytes += nbytes
    dst.c.drops[DROP_RING_FULL] += full
    dst.c.drops[DROP_TOO_BIG] += big


cdef uint32_t forward_batch(vale_switch *sw, vale_port *src, uint32_t n,
                            uint32_t src_max) noexcept nogil:
    """Forward sw.descs[0:n], received on src. src_max is the longest frame the source
    can hold; a longer length is a lie and the frame is dropped."""
    cdef vale_fdb *t = &sw.fdb
    cdef vale_desc *d
    cdef uint32_t i, k
    cdef uint16_t port, pi
    cdef uint64_t dkey, skey
    cdef int reason
    cdef uint64_t nbytes = 0, floods = 0
    cdef uint64_t drops[N_DROP_REASONS]
    cdef bint learning = src.learning

    if not sw.manual_clock:
        sw.now_ms = monotonic_ms()
    fdb_expire(sw)
    memset(drops, 0, sizeof(drops))

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

    # Pass 3: every other port with frames for it gets them, in order.
    for k in range(sw.nactive):
        pi = sw.active[k]
        if pi != src.index and (sw.list_head[pi] != NO_FRAME or sw.flood_head != NO_FRAME):
            deliver(sw, sw.ports[pi], sw.list_head[pi], sw.flood_head)

    src.c.rx_packets += n
    src.c.rx_bytes += nbytes
    src.c.flood_packets += floods
    for i in range(N_DROP_REASONS):
        src.c.drops[i] += drops[i]
    batch_record(sw, n)
    return n


cdef uint32_t forward_ring(vale_switch *sw, vale_port *src) noexcept nogil:
    """Forward one batch from src's RX ring; returns the number of frames taken."""
    cdef vale_ring *rx = &src.rx
    cdef uint32_t n = ring_count(rx)
    cdef uint32_t i
    cdef vale_slot *slot
    if n == 0:
        return 0
    if n > sw.batch:
        n = sw.batch
    for i in range(n):
        slot = &rx.slots[(rx.tail + i) & rx.mask]
        sw.descs[i].data = rx.buf + slot.off
        sw.descs[i].len = slot.len
        sw.descs[i].flags = slot.flags
    forward_batch(sw, src, n, rx.slot_size)
    rx.tail += n
    return n
