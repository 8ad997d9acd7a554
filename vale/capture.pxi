# Capture and mirroring: what `valectl capture` and `valectl mirror` see.
#
# A capture copies frames into the switch's capture ring, which Python drains; the ring
# never makes the data plane wait: when it is full the copy is lost and counted, per port
# and direction. While nobody captures, what remains in the per-frame path is one flag test
# per batch (receive) or per destination (transmit).

cdef inline void capture_frame(vale_switch *sw, vale_port *p, const char *data, uint32_t length,
                               uint32_t tag, uint32_t direction) noexcept nogil:
    """direction: 0 received, 1 sent; tag (TPID << 16 | TCI, or 0): the frame's VLAN tag,
    put back after the MAC addresses in the copy."""
    cdef vale_ring *r = &sw.cap
    cdef vale_slot *slot
    cdef uint32_t idx, keep, whole = length + (VLAN_HLEN if tag else 0)
    cdef char *out
    if ring_space(r) == 0:
        p.capture_lost[direction] += 1
        return
    idx = r.head & r.mask
    slot = &r.slots[idx]
    out = r.buf + slot.off
    keep = whole if whole < CAPTURE_SNAP else CAPTURE_SNAP
    if tag and length >= 12:
        memcpy(out, data, 12)
        write_tag(out + 12, tag)
        memcpy(out + 12 + VLAN_HLEN, data + 12, keep - 12 - VLAN_HLEN)
    else:
        memcpy(out, data, keep)
    slot.len = keep
    slot._reserved = whole
    slot.flags = p.index | (direction << 16)
    sw.cap_stamps[idx] = sw.cap_now
    r.head += 1


cdef void capture_received(vale_switch *sw, vale_port *src, uint32_t n) noexcept nogil:
    """Copy a batch as it came in (a tag the kernel took off put back)."""
    cdef uint32_t i
    cdef vale_desc *d
    for i in range(n):
        d = &sw.descs[i]
        if d.len <= src.rx_max:
            capture_frame(sw, src, d.data, d.len,
                          (<uint32_t>d.vlan_tpid << 16 | d.vlan_tci)
                          if d.flags & FRAME_VLAN else 0, 0)


cdef void mirror_received(vale_switch *sw, vale_port *src, uint32_t n) noexcept nogil:
    """Hand src's mirror port a copy of every well-formed frame src received. Runs after
    the batch's own delivery, so the frame lists can be rebuilt."""
    cdef vale_port *m = sw.ports[src.mirror_rx]
    cdef uint16_t head = NO_FRAME, tail = NO_FRAME
    cdef uint32_t i
    if m == NULL or not m.up or m == src:
        return
    for i in range(n):
        if not (sw.dkeys[i] & VALE_DECIDED):     # not dropped by the bridge's checks
            chain(sw, &head, &tail, <uint16_t>i)
    if head != NO_FRAME:
        deliver(sw, m, head, NO_FRAME, True, m)        # no floods: m's flags do not matter
