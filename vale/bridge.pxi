# The generic bridge (netmap's netmap_bdg.c): take a batch of frames from one port, check
# them, let the lookup stage give each a verdict (a port, flood, or drop with its reason),
# chain them per destination keeping their order, then hand each frame once to each
# destination through its kind's operations, never waiting for room: what does not fit is
# dropped and counted. Runs without the GIL and touches no Python object. It knows no
# port kind: each is reached through its table in PORT_OPS.

cdef enum:
    NO_FRAME = 0xFFFF           # end of a per-destination frame list

cdef extern from *:
    """
    #define VALE_DECIDED (1ULL << 63)   /* a key no frame has: the bridge dropped it */
    """
    const uint64_t VALE_DECIDED

cdef vale_port_ops PORT_OPS[PORT_KINDS]
cdef vale_lookup_fn LOOKUPS[LOOKUP_KINDS]      # LOOKUP_LEARNING's entry is not called


cdef inline vale_port_ops *ops_of(const vale_port *p) noexcept nogil:
    return &PORT_OPS[<int>p.kind]


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


cdef uint32_t queue_message(vale_switch *sw, vale_port *dst, const char *data,
                            uint32_t length, const vale_vnet *vnet, uint32_t tag,
                            uint32_t queued) noexcept nogil:
    """Queue one frame as a message for a port that sends through a file descriptor (the
    virtio-net header first, the tag put back); a full queue is flushed. Returns the
    number queued."""
    cdef iovec *iov = &sw.tx_iov[4 * queued]
    cdef mmsghdr *m = &sw.tx_msgs[queued]
    vnet_for_output(&sw.tx_vnet[queued], vnet, tag != 0)
    iov[0].iov_base = &sw.tx_vnet[queued]
    iov[0].iov_len = VNET_HDR_LEN
    m.msg_hdr.msg_iov = iov
    if tag:
        write_tag(<char *>sw.tx_tag[queued], tag)
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
        ops_of(dst).flush(sw, dst, queued)
        queued = 0
    return queued


cdef inline uint32_t put_frame(vale_switch *sw, vale_port *dst, const char *data,
                               uint32_t length, const vale_vnet *vnet, uint32_t tag,
                               uint32_t queued, bint padded) noexcept nogil:
    """Hand one frame to dst's put, unless it is longer than dst takes (a GSO frame is
    dst's to refuse)."""
    cdef uint32_t wire = length + (VLAN_HLEN if tag else 0)
    if (vnet == NULL or vnet.gso_type == VNET_GSO_NONE) and vale_unlikely(wire > dst.max_frame):
        dst.c.drops[DROP_TOO_BIG] += 1
        return queued
    return ops_of(dst).put(sw, dst, data, length, vnet, tag, queued, padded)


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


cdef inline void deliver(vale_switch *sw, vale_port *dst, uint16_t u, uint16_t b,
                         bint padded, const vale_port *to) noexcept nogil:
    """Hand dst the frames of unicast list u and flood list b, merged in batch order, as
    they are for port `to` (dst itself, or the port dst mirrors): unknown unicast among
    the floods only if to's flood flag is on; with VLANs on, floods only of VLANs `to`
    carries. Each frame leaves with the tag dst's own mode gives it."""
    if vale_likely(sw.vlan_ports == 0):
        deliver_frames(sw, dst, u, b, padded, to, <VlansOff>False)
    else:
        deliver_frames(sw, dst, u, b, padded, to, <VlansOn>True)


cdef void deliver_frames(vale_switch *sw, vale_port *dst, uint16_t u, uint16_t b,
                         bint padded, const vale_port *to, VlanState vlans) noexcept nogil:
    """deliver(), compiled for VLANs off and on (as the learning lookup is): with none,
    a frame the port's take left untagged travels in VLAN 0, every port's native one, so
    the copy for VLANs off tests neither a VLAN nor a native VLAN per frame."""
    cdef bint flood = to.flood
    cdef vale_port_ops *ops = ops_of(dst)
    cdef uint16_t i
    cdef uint32_t queued = 0, k, nseg, tag
    cdef vale_desc *d
    cdef bint direct = ops.direct
    cdef vale_ring *ring = &dst.tx
    cdef vale_slot *slot
    # The common case, plain frames into a direct port's ring, keeps its state in locals.
    cdef uint32_t head = ring.head, space = ring_space(ring), max_len = dst.max_frame
    cdef uint16_t native = dst.native
    cdef uint64_t packets = 0, nbytes = 0, full = 0, big = 0
    cdef bint capture = dst.capture & CAPTURE_TX
    if ops.prepare != NULL:
        ops.prepare(sw, dst, u, b)
    while u != NO_FRAME or b != NO_FRAME:
        if b != NO_FRAME and (u == NO_FRAME or b < u):
            i = b
            b = sw.next_frame[b]
            if not flood and (sw.descs[i].flags & FRAME_UNKNOWN_UNICAST):
                continue
            if VlanState is VlansOn and not carries(to, sw.descs[i].vlan):
                continue
        else:
            i = u
            u = sw.next_frame[u]
        d = &sw.descs[i]
        # Untagged in and out (egress_tag 0), no offload header: a plain copy.
        if vale_likely(direct and not (d.flags & (FRAME_VNET | FRAME_VLAN))
                       and (VlanState is VlansOff or d.vlan == native)):
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
                capture_frame(sw, dst, d.data, d.len, 0, 1)
            continue
        # Everything else goes through the port's put, which keeps the ring's own state.
        tag = egress_tag(d, dst)
        ring.head = head
        if vale_unlikely(capture):
            capture_frame(sw, dst, d.data, d.len, tag, 1)
        if (d.flags & FRAME_VNET) and not dst.vnet:
            if queued:
                ops.flush(sw, dst, queued)
                queued = 0
            nseg = soft_offload(sw, d)
            if nseg == 0:
                dst.c.drops[DROP_BAD_OFFLOAD] += 1
            for k in range(nseg):
                queued = put_frame(sw, dst, sw.soft_buf + k * sw.soft_stride, sw.soft_lens[k],
                                   NULL, tag, queued, True)
            if queued:
                ops.flush(sw, dst, queued)
                queued = 0
        else:
            queued = put_frame(sw, dst, d.data, d.len,
                               &d.vnet if d.flags & FRAME_VNET else NULL, tag, queued, padded)
        head = ring.head
        space = ring_space(ring)
    ring.head = head
    dst.c.tx_packets += packets
    dst.c.tx_bytes += nbytes
    dst.c.drops[DROP_RING_FULL] += full
    dst.c.drops[DROP_TOO_BIG] += big
    ops.flush(sw, dst, queued)


cdef uint32_t chain_length(const vale_switch *sw, uint16_t i) noexcept nogil:
    cdef uint32_t n = 0
    while i != NO_FRAME:
        n += 1
        i = sw.next_frame[i]
    return n


cdef inline void give_verdict(vale_switch *sw, vale_port *src, uint32_t i,
                              uint16_t v) noexcept nogil:
    """Take a verdict for frame i (the lookup stage's, or the bridge's own drop): chain it
    onto its port's list or the flood list, storm control first turning a flood over the
    source's rate into a drop; count floods and drops on the source."""
    if vale_likely(v < VALE_MAX_PORTS):
        chain(sw, &sw.list_head[v], &sw.list_tail[v], <uint16_t>i)
    elif v == VALE_FLOOD:
        if vale_unlikely(src.storm) and not storm_allows(src, &sw.descs[i]):
            src.c.drops[DROP_STORM] += 1
        else:
            src.c.flood_packets += 1
            chain(sw, &sw.flood_head, &sw.flood_tail, <uint16_t>i)
    else:
        src.c.drops[v - VALE_DROP] += 1


cdef inline void set_key(vale_switch *sw, uint32_t i, uint64_t key) noexcept nogil:
    sw.dkeys[i] = key
    sw.dhomes[i] = fdb_home(&sw.fdb, key)


cdef inline uint64_t frame_keys(vale_switch *sw, vale_port *src, uint32_t n) noexcept nogil:
    """Each frame's destination key as if it came untagged (in src's native VLAN) and the
    key's home cell in the MAC table, for the lookup stage to prefetch by; the bytes of
    the frames src could hold. Little work per frame, so the memory system fetches many
    frames' first lines at once (every receive side leaves room for 64 bytes, however
    short the frame)."""
    cdef uint32_t i
    cdef uint64_t nbytes = 0
    cdef vale_desc *d
    for i in range(n):
        d = &sw.descs[i]
        set_key(sw, i, vlan_key(load_mac(d.data), src.native))
        if d.len <= src.rx_max:
            nbytes += d.len
    return nbytes


ctypedef struct vale_admit:
    uint32_t rx_max             # src.rx_max; 0 for a guarded port: admit_guarded decides
    bint guarded                # src.guards != 0: nothing in a batch sets the first guard


cdef inline vale_admit admit_for(const vale_port *src) noexcept nogil:
    """What admit() reads of src, read once per batch: its frames' loop then keeps it
    in registers (the compiler cannot, with every store a possible alias). A port with
    guards gets no frame past admit's first test, so ports without pay nothing for them."""
    cdef vale_admit a
    a.guarded = src.guards != 0
    a.rx_max = 0 if a.guarded else src.rx_max
    return a


cdef inline bint admit(vale_switch *sw, vale_port *src, uint32_t i,
                       bint vlans, vale_admit a) noexcept nogil:
    """The bridge's own rules for frame i, which a lookup stage asks first: a length the
    source cannot hold (a lie), a runt, a lying offload header, a frame for the attached
    interface's own host, and, with VLANs on (a port of the switch has a VLAN mode), a
    VLAN the port does not take (vlan_ingress); then the port's guards (guard.pxi), when
    it has any. a: admit_for(src), taken at the start of the batch.
    False: the frame is dropped (its key VALE_DECIDED); True: its VLAN is set and
    sw.dkeys[i] is its destination's key (VLAN, MAC), sw.dhomes[i] that key's home."""
    cdef vale_desc *d = &sw.descs[i]
    cdef uint32_t length = d.len            # as received: vlan_ingress may take a tag out
    if vale_likely(VALE_ETH_HLEN <= length <= a.rx_max
                   and not (d.flags & (FRAME_BAD | FRAME_HOST))
                   and vlan_ingress(src, d, vlans) == 0):
        if vale_unlikely(vlans and d.flags & FRAME_VLAN):
            set_key(sw, i, vlan_key(load_mac(d.data), d.vlan))
        return True
    if vale_unlikely(a.guarded):
        return admit_guarded(sw, src, i, vlans)
    refuse(sw, src, i, length)
    return False


cdef bint admit_guarded(vale_switch *sw, vale_port *src, uint32_t i, bint vlans) noexcept nogil:
    """admit() for a port with guards: the same rules, then the guards'."""
    cdef vale_desc *d = &sw.descs[i]
    cdef uint32_t length = d.len
    cdef int reason
    if (VALE_ETH_HLEN <= length <= src.rx_max and not (d.flags & (FRAME_BAD | FRAME_HOST))
            and vlan_ingress(src, d, vlans) == 0):
        if vlans and d.flags & FRAME_VLAN:
            set_key(sw, i, vlan_key(load_mac(d.data), d.vlan))
        reason = guard_refuses(src, d, sw.dkeys[i])
        if reason < 0:
            return True
        sw.dkeys[i] = VALE_DECIDED
        give_verdict(sw, src, i, VALE_DROP + reason)
        return False
    refuse(sw, src, i, length)
    return False


cdef void refuse(vale_switch *sw, vale_port *src, uint32_t i, uint32_t length) noexcept nogil:
    """Drop frame i, which admit() did not let in, for the first rule it broke."""
    sw.dkeys[i] = VALE_DECIDED
    if length > src.rx_max:
        give_verdict(sw, src, i, VALE_DROP + DROP_TOO_BIG)
    elif length < VALE_ETH_HLEN:
        give_verdict(sw, src, i, VALE_DROP + DROP_RUNT)
    elif sw.descs[i].flags & FRAME_BAD:
        give_verdict(sw, src, i, VALE_DROP + DROP_BAD_OFFLOAD)
    elif sw.descs[i].flags & FRAME_HOST:
        give_verdict(sw, src, i, VALE_DROP + DROP_HOST)
    else:
        give_verdict(sw, src, i, VALE_DROP + DROP_VLAN)


cdef void hub_lookup(vale_switch *sw, vale_port *src, uint32_t n) noexcept nogil:
    """A lookup that learns nothing and floods every frame (within its VLAN): the switch
    as a hub, where every port sees all traffic."""
    cdef uint32_t i
    cdef bint vlans = sw.vlan_ports != 0
    cdef vale_admit a = admit_for(src)
    for i in range(n):
        if admit(sw, src, i, vlans, a):
            if not (sw.descs[i].data[0] & 1):
                sw.descs[i].flags |= FRAME_UNKNOWN_UNICAST
                give_verdict(sw, src, i, VALE_FLOOD)
            else:
                give_verdict(sw, src, i, group_verdict(sw, src, i))


cdef uint32_t forward_batch(vale_switch *sw, vale_port *src, uint32_t n) noexcept nogil:
    """Forward sw.descs[0:n], received on src. Each frame may be read in whole 64-byte
    chunks (every receive side leaves that much room after a frame)."""
    cdef uint32_t k
    cdef uint16_t pi
    cdef uint64_t nbytes
    cdef vale_port *dst

    if not sw.manual_clock:
        sw.now_ms = monotonic_ms()
    fdb_expire(sw)
    if vale_unlikely(sw.capturing):
        sw.cap_now = realtime_ns()
        if src.capture & CAPTURE_RX:
            capture_received(sw, src, n)
    if vale_unlikely(src.storm):
        storm_fill(src, sw.now_ms)

    # Verdicts from the lookup stage (which asks the bridge's own rules first), each frame
    # chained as it gets its own.
    for k in range(sw.nactive):
        sw.list_head[sw.active[k]] = NO_FRAME
    sw.flood_head = NO_FRAME
    sw.flood_tail = NO_FRAME
    nbytes = frame_keys(sw, src, n)
    if vale_likely(sw.lookup == LOOKUP_LEARNING):
        if vale_likely(sw.vlan_ports == 0):
            learning_lookup(sw, src, n, <VlansOff>False)
        else:
            learning_lookup(sw, src, n, <VlansOn>True)
    else:
        LOOKUPS[<int>sw.lookup](sw, src, n)

    # Delivery: every other port that is up and not blocked by the loop guard, and has
    # frames for it, gets them, in order; a port's transmit mirror gets the same frames.
    # Unicast for a port that is down (a static entry, or one learned just before) or
    # blocked is dropped there and counted.
    for k in range(sw.nactive):
        pi = sw.active[k]
        dst = sw.ports[pi]
        if pi != src.index and dst.up and not loop_blocked(sw, dst) and (
                sw.list_head[pi] != NO_FRAME or sw.flood_head != NO_FRAME):
            deliver(sw, dst, sw.list_head[pi], sw.flood_head, True, dst)
            if vale_unlikely(dst.mirror_tx != VALE_NO_PORT):
                mirror_sent(sw, src, dst, sw.list_head[pi], sw.flood_head)
        elif vale_unlikely(sw.list_head[pi] != NO_FRAME and pi != src.index):
            dst.c.drops[DROP_LOOP if dst.up else DROP_TX_ERROR] += chain_length(
                sw, sw.list_head[pi])
    if vale_unlikely(src.mirror_rx != VALE_NO_PORT):
        mirror_received(sw, src, n)

    src.c.rx_packets += n
    src.c.rx_bytes += nbytes
    batch_record(sw, n)
    return n


cdef uint32_t forward_port(vale_switch *sw, vale_port *p) noexcept nogil:
    """Forward one batch from any port's receive side; returns the frames taken."""
    cdef vale_port_ops *ops = ops_of(p)
    cdef uint32_t n = ops.take(sw, p)
    if n:
        if vale_unlikely(p.blocked_until != 0) and loop_blocked_now(sw, p):
            loop_drop_batch(sw, p, n)
        else:
            forward_batch(sw, p, n)
        ops.release(sw, p, n)
    return n


cdef void mirror_sent(vale_switch *sw, vale_port *src, vale_port *dst, uint16_t u,
                      uint16_t b) noexcept nogil:
    """Hand dst's transmit mirror the frames just offered to dst."""
    cdef vale_port *m = sw.ports[dst.mirror_tx]
    if m != NULL and m.up and m != src and m != dst:
        deliver(sw, m, u, b, True, dst)


cdef void port_free(vale_port *p) noexcept nogil:
    """The one way a port goes: its kind lets go of what the kernel gave it, then its
    rings and itself (the caller took it out of the switch and of epoll)."""
    ops_of(p).close(p)
    free(p.allowed)
    ring_free(&p.rx)
    ring_free(&p.tx)
    free(p)


cdef void port_down(vale_switch *sw, vale_port *p) noexcept nogil:
    """Stop forwarding to and from a port whose device failed, forget its MACs so
    traffic to them floods, and tell Python."""
    cdef uint64_t one = 1
    if not p.up:
        return
    p.up = False
    epoll_ctl(sw.epoll_fd, EPOLL_CTL_DEL, p.fd, NULL)
    fdb_remove_port(sw, p.index, False)
    write(sw.notify_fd, &one, sizeof(one))
