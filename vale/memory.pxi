# In-memory ports: an RX and a TX ring of slots in the switch's own memory, filled and
# drained by calls (SwitchCore.inject and drain): the tests' and benchmarks' ports, and
# VALE's own kind of port. Its TX side is direct: the bridge copies plain frames straight
# into the TX ring; put takes the rest (tagged, or with an offload header).


cdef uint32_t memory_take(vale_switch *sw, vale_port *src) noexcept nogil:
    """Up to a batch of frames from the RX ring into sw.descs."""
    cdef vale_ring *rx = &src.rx
    cdef uint32_t n = ring_count(rx)
    cdef uint32_t i, idx
    cdef vale_slot *slot
    cdef vale_desc *d
    # In locals: settling an offload header is a call, after which the ring's fields
    # would be loaded again for every frame.
    cdef uint32_t tail = rx.tail, mask = rx.mask
    cdef vale_slot *slots = rx.slots
    cdef char *buf = rx.buf
    if n > sw.batch:
        n = sw.batch
    for i in range(n):
        idx = (tail + i) & mask
        slot = &slots[idx]
        d = &sw.descs[i]
        d.data = buf + slot.off
        d.len = slot.len
        d.flags = slot.flags & FRAME_VNET
        d.vlan = 0
        if vale_unlikely(d.flags):
            d.vnet = rx.vnets[idx]
            if d.len <= rx.slot_size:
                d.flags = settle_vnet(d)
    return n


cdef void memory_release(vale_switch *sw, vale_port *src, uint32_t n) noexcept nogil:
    src.rx.tail += n


cdef uint32_t memory_put(vale_switch *sw, vale_port *dst, const char *data, uint32_t length,
                         const vale_vnet *vnet, uint32_t tag, uint32_t queued,
                         bint padded) noexcept nogil:
    """Copy one frame into the TX ring, its tag put back, its offload header beside it."""
    cdef vale_ring *ring = &dst.tx
    cdef uint32_t wire = length + (VLAN_HLEN if tag else 0)
    cdef uint32_t idx
    cdef vale_slot *slot
    if vale_unlikely(wire > ring.slot_size):        # a GSO frame bigger than a slot
        dst.c.drops[DROP_TOO_BIG] += 1
        return 0
    if vale_unlikely(ring_space(ring) == 0):
        dst.c.drops[DROP_RING_FULL] += 1
        return 0
    idx = ring.head & ring.mask
    slot = &ring.slots[idx]
    if tag:
        copy_tagged(ring.buf + slot.off, data, length, tag)
    elif padded:
        copy_frame(ring.buf + slot.off, data, length)
    else:
        memcpy(ring.buf + slot.off, data, length)
    slot.len = wire
    slot.flags = FRAME_VNET if vnet != NULL else 0
    if vnet != NULL:
        vnet_for_output(&ring.vnets[idx], vnet, tag != 0)
    ring.head += 1
    dst.c.tx_packets += 1
    dst.c.tx_bytes += wire
    return 0


cdef void memory_flush(vale_switch *sw, vale_port *dst, uint32_t queued) noexcept nogil:
    """Frames are in the ring as soon as they are put."""
    pass


cdef bint memory_failed(vale_port *p, uint32_t events) noexcept nogil:
    """An in-memory port has no device to fail."""
    return False


cdef void memory_close(vale_port *p) noexcept nogil:
    """Its rings are all it has: port_free frees them."""
    pass


cdef dict memory_info(vale_port *p):
    return {"rx_slots": p.rx.nslots, "tx_slots": p.tx.nslots, "slot_size": p.tx.slot_size,
            "rx_pending": ring_count(&p.rx), "tx_pending": ring_count(&p.tx)}


cdef vale_port *memory_port(vale_port *p) except NULL:
    """p, when it is an in-memory port (the only kind frames are injected into and drained
    from by calls); ValueError otherwise."""
    if p.kind != PORT_MEMORY:
        raise ValueError(f"port {p.index} is not an in-memory port")
    return p
