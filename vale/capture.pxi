# Capture and mirroring: what `valectl capture` and `valectl mirror` see.
#
# A capture copies frames into the switch's capture ring, which Python drains; the ring
# never makes the data plane wait: when it is full the copy is lost and counted, per port
# and direction. While nobody captures, what remains in the per-frame path is one flag test
# per batch (receive) or per destination (transmit).

cdef inline void capture_frame(vale_switch *sw, vale_port *p, const char *data, uint32_t length,
                               uint32_t direction) noexcept nogil:
    """direction: 0 received, 1 sent."""
    cdef vale_ring *r = &sw.cap
    cdef vale_slot *slot
    cdef uint32_t idx, keep
    if ring_space(r) == 0:
        p.capture_lost[direction] += 1
        return
    idx = r.head & r.mask
    slot = &r.slots[idx]
    keep = length if length < CAPTURE_SNAP else CAPTURE_SNAP
    memcpy(r.buf + slot.off, data, keep)
    slot.len = keep
    slot._reserved = length
    slot.flags = p.index | (direction << 16)
    sw.cap_stamps[idx] = sw.cap_now
    r.head += 1


cdef void capture_received(vale_switch *sw, vale_port *src, uint32_t n,
                           uint32_t src_max) noexcept nogil:
    cdef uint32_t i
    cdef vale_desc *d
    for i in range(n):
        d = &sw.descs[i]
        if d.len <= src_max:
            capture_frame(sw, src, d.data, d.len, 0)


cdef void mirror_received(vale_switch *sw, vale_port *src, uint32_t n, uint32_t src_max,
                          bint padded) noexcept nogil:
    """Hand src's mirror port a copy of every well-formed frame src received. Runs after
    the batch's own delivery, so the frame lists can be rebuilt."""
    cdef vale_port *m = sw.ports[src.mirror_rx]
    cdef uint16_t head = NO_FRAME, tail = NO_FRAME
    cdef uint32_t i
    cdef vale_desc *d
    if m == NULL or not m.up or m == src:
        return
    for i in range(n):
        d = &sw.descs[i]
        if VALE_ETH_HLEN <= d.len <= src_max and not (d.flags & FRAME_BAD):
            chain(sw, &head, &tail, <uint16_t>i)
    if head != NO_FRAME:
        deliver(sw, m, head, NO_FRAME, padded, True)
