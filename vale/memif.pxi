# memif ports: a program's rings in memory it shares with valed (DPDK's net_memif,
# libmemif, VPP). The program (the client) brings one or more regions holding its rings
# and its buffers; the protocol (vale/memif.py, off the forwarding thread) hands the core
# the regions and rings; this back end serves them in batches on the forwarding thread.
# Frames the program sends come on its C2S ring (MR_C2S), frames for it go into the
# buffers it posted on its S2C ring (MR_S2C). On both rings the program moves `head` and
# valed moves `tail`: one acquire load of the program's index and one release store of
# valed's per batch. A kick (the ring's eventfd) goes only to a side that asked for one
# (the ring's flags, owned by its receiver).
#
# The program is not trusted: each descriptor's region, offset and length is checked
# against the region before it is read or written, a chain is at most a ring long and a
# frame at most MEMIF_MAX_FRAME, and frames are copied out before the bridge looks at them
# unless nothing but their MAC addresses is read. A program that breaks a rule has its
# rings stopped and counted (bad_descriptor); the protocol then disconnects it.

cdef enum:
    MR_S2C = 0                  # valed to the program: its receive ring
    MR_C2S = 1                  # the program to valed: its transmit ring
    MEMIF_COOKIE = 0x3E31F20
    MEMIF_RING_HEADER = 128     # cookie, flags, head; tail on the next cache line; descriptors
    MEMIF_DESC_NEXT = 1
    MEMIF_MASK_INT = 1          # in a ring's flags: its receiver polls, no kicks
    MEMIF_MAX_LOG2_RING = 14
    MEMIF_MAX_FRAME = 65535
    MEMIF_STAGE_SIZE = 2 << 20  # frames of one batch, copied in
    MEMIF_STAGE_ROOM = MEMIF_STAGE_SIZE - MEMIF_MAX_FRAME - 2 * VALE_SLOT_ALIGN
    MEMIF_AHEAD = 4             # slots prefetched ahead of the one served


cdef void memif_broke(vale_port *p, const char *what) noexcept nogil:
    """The program broke a rule: stop its rings and count it."""
    p.memif.started = False
    p.memif.broken += 1
    p.memif.broke = what
    p.c.drops[DROP_BAD_DESCRIPTOR] += 1


cdef inline char *memif_buffer(vale_memif *m, uint16_t region, uint64_t offset,
                               uint64_t length) noexcept nogil:
    """Where [offset, offset + length) of a region is in valed, or NULL unless the region
    holds all of it."""
    cdef vale_mregion *r
    if region >= m.nregions:
        return NULL
    r = &m.regions[region]
    if offset > r.size or length > r.size - offset:
        return NULL
    return r.base + offset


cdef inline void memif_prefetch(vale_memif *m, vale_mring *r, uint16_t slot) noexcept nogil:
    """Start fetching a slot's descriptor and the first line of its buffer (the program
    wrote both on another CPU). A prefetch never faults: nothing here is checked, take and
    put check what they use."""
    cdef const vale_mdesc *dsc = &r.desc[slot & r.mask]
    vale_prefetch(m.regions[0].base + dsc.offset)
    vale_prefetch(&r.desc[<uint16_t>(slot + MEMIF_AHEAD) & r.mask])


cdef inline uint16_t memif_pending(vale_mring *r) noexcept nogil:
    return <uint16_t>(vale_load_acquire16(r.head) - r.last)


# ---- the program sends: its C2S ring --------------------------------------------------

cdef uint32_t memif_take(vale_switch *sw, vale_port *p) noexcept nogil:
    """Up to a batch of the frames the program sent into sw.descs: a frame in one buffer
    read in place (on a port without guards, VLANs off), the rest copied into the stage;
    their buffers go back in release, after delivery (one store of tail)."""
    cdef vale_memif *m = p.memif
    cdef vale_mring *r = &m.r[MR_C2S]
    cdef uint16_t pending, slot
    cdef uint32_t n = 0, used = 0, off = 0, got, links
    cdef vale_mdesc dsc
    cdef char *src
    cdef vale_desc *d
    cdef bint in_place = p.guards == 0 and sw.vlan_ports == 0
    if not m.started:
        return 0
    pending = memif_pending(r)
    if pending == 0:
        # Idle: ask for a kick at the next frame, then look once more (the program may
        # have sent one before it saw the request).
        if r.kicks_off:
            r.flags[0] = 0
            r.kicks_off = False
            vale_fence()
            pending = memif_pending(r)
        if pending == 0:
            return 0
    if not r.kicks_off:
        r.flags[0] = MEMIF_MASK_INT     # busy: no kicks (a system call each) while frames come
        r.kicks_off = True
    if pending > r.size:
        memif_broke(p, "head more than the ring's size ahead")
        return 0
    for slot in range(min(pending, <uint16_t>MEMIF_AHEAD)):
        memif_prefetch(m, r, <uint16_t>(r.last + slot))
    while used < pending and n < sw.batch and off <= MEMIF_STAGE_ROOM:
        slot = <uint16_t>(r.last + used)
        if used + MEMIF_AHEAD < pending:
            memif_prefetch(m, r, slot + MEMIF_AHEAD)
        dsc = r.desc[slot & r.mask]     # one read: the program may change it meanwhile
        d = &sw.descs[n]
        d.flags = 0
        d.vlan = 0
        if not (dsc.flags & MEMIF_DESC_NEXT):
            src = memif_buffer(m, dsc.region, dsc.offset, <uint64_t>dsc.length + VALE_SLOT_ALIGN)
            if in_place and src != NULL:
                vale_prefetch(src)      # the bridge reads its MACs after the whole take
                d.data = src
                d.len = dsc.length
                used += 1
                n += 1
                continue
        # A chain, or a frame the bridge reads more of: copied into the stage.
        got = 0
        links = 0
        while True:
            if links == r.size or used + links >= pending:
                memif_broke(p, "a descriptor chain longer than the frames sent")
                return n
            dsc = r.desc[<uint16_t>(slot + links) & r.mask]
            links += 1
            src = memif_buffer(m, dsc.region, dsc.offset, dsc.length)
            if src == NULL:
                memif_broke(p, "a descriptor outside its region")
                return n
            if dsc.length > MEMIF_MAX_FRAME - got:
                memif_broke(p, "a frame over 64 KiB")
                return n
            memcpy(m.stage + off + got, src, dsc.length)
            got += dsc.length
            if not (dsc.flags & MEMIF_DESC_NEXT):
                break
        d.data = m.stage + off
        d.len = got
        off += (got + 2 * VALE_SLOT_ALIGN - 1) & ~(<uint32_t>VALE_SLOT_ALIGN - 1)
        used += links
        n += 1
    m.taken = used
    return n


cdef void memif_release(vale_switch *sw, vale_port *src, uint32_t n) noexcept nogil:
    """Give the program back the buffers of the frames taken, delivered now."""
    cdef vale_memif *m = src.memif
    cdef vale_mring *r = &m.r[MR_C2S]
    if m.started:
        r.last += m.taken
        vale_store_release16(r.tail, r.last)
    m.taken = 0


# ---- the program receives: its S2C ring ---------------------------------------------

cdef void memif_prepare(vale_switch *sw, vale_port *dst, uint16_t u, uint16_t b) noexcept nogil:
    """Before a batch's frames for the program: read head (the buffers it posted) once."""
    cdef vale_mring *r = &dst.memif.r[MR_S2C]
    cdef uint16_t k
    if dst.memif.started:
        r.head_seen = vale_load_acquire16(r.head)
        r.tail_start = r.last
        for k in range(min(<uint16_t>(r.head_seen - r.last), <uint16_t>MEMIF_AHEAD)):
            memif_prefetch(dst.memif, r, <uint16_t>(r.last + k))


cdef uint32_t memif_put(vale_switch *sw, vale_port *dst, const char *data, uint32_t length,
                        const vale_vnet *vnet, uint32_t tag, uint32_t queued,
                        bint padded) noexcept nogil:
    """Copy one frame (its tag put back) into the buffers the program posted, as many as
    it takes; published by flush."""
    cdef vale_memif *m = dst.memif
    cdef vale_mring *r = &m.r[MR_S2C]
    cdef char tagbuf[4]
    cdef const char *parts[3]
    cdef uint32_t lens[3]
    cdef uint32_t nparts, k = 0, step, room, wrote
    cdef uint16_t slot = r.last, free_slots
    cdef vale_mdesc *dsc
    cdef vale_mdesc posted
    cdef char *at
    if not m.started:
        dst.c.drops[DROP_TX_ERROR] += 1
        return 0
    if tag:
        write_tag(tagbuf, tag)
        parts[0] = data
        lens[0] = 12
        parts[1] = tagbuf
        lens[1] = VLAN_HLEN
        parts[2] = data + 12
        lens[2] = length - 12
        nparts = 3
    else:
        parts[0] = data
        lens[0] = length
        nparts = 1
    free_slots = <uint16_t>(r.head_seen - r.last)
    if free_slots > r.size:
        memif_broke(dst, "head more than the ring's size ahead")
        return 0
    if free_slots > MEMIF_AHEAD:
        memif_prefetch(m, r, slot + MEMIF_AHEAD)
    while k < nparts:
        if <uint16_t>(slot - r.last) == free_slots:
            dst.c.drops[DROP_RING_FULL] += 1        # nothing of it is published
            return 0
        dsc = &r.desc[slot & r.mask]
        posted = dsc[0]                 # one read: what the program posted
        at = memif_buffer(m, posted.region, posted.offset, posted.length)
        if at == NULL:
            memif_broke(dst, "a receive buffer outside its region")
            r.last = r.tail_start       # nothing of the batch is published
            return 0
        room = posted.length
        wrote = 0
        while k < nparts and room:
            step = min(room, lens[k])
            memcpy(at + wrote, parts[k], step)
            wrote += step
            room -= step
            parts[k] += step
            lens[k] -= step
            if lens[k] == 0:
                k += 1
        if room == posted.length:
            memif_broke(dst, "a receive buffer of no length")
            r.last = r.tail_start
            return 0
        dsc.length = wrote
        dsc.flags = MEMIF_DESC_NEXT if k < nparts else 0
        slot += 1
    r.last = slot
    dst.c.tx_packets += 1
    dst.c.tx_bytes += length + (VLAN_HLEN if tag else 0)
    return 0


cdef void memif_flush(vale_switch *sw, vale_port *dst, uint32_t queued) noexcept nogil:
    """Publish the batch's frames at once, and kick the program unless it polls."""
    cdef vale_mring *r = &dst.memif.r[MR_S2C]
    cdef uint64_t one = 1
    if dst.memif.started and r.last != r.tail_start:
        vale_store_release16(r.tail, r.last)
        r.tail_start = r.last
        vale_fence()                    # tail out before the program's wish is read
        if not (r.flags[0] & MEMIF_MASK_INT) and r.fd >= 0:
            write(r.fd, &one, sizeof(one))


# ---- the port's life ---------------------------------------------------------------

cdef vale_port *memif_port_of(vale_port *p) except NULL:
    """p, when it is a memif port; ValueError otherwise."""
    if p.kind != PORT_MEMIF:
        raise ValueError(f"port {p.index} is not a memif port")
    return p


cdef bint memif_failed(vale_port *p, uint32_t events) noexcept nogil:
    """An eventfd does not fail; a program that goes away is the protocol's to see."""
    return False


cdef void memif_disconnect(vale_port *p) noexcept nogil:
    """Let go of what a program gave: its rings' eventfds and its memory (the caller took
    the C2S eventfd out of epoll)."""
    cdef vale_memif *m = p.memif
    cdef uint32_t i
    m.started = False
    for i in range(MEMIF_RINGS):
        if m.r[i].fd >= 0:
            close(m.r[i].fd)
        memset(&m.r[i], 0, sizeof(vale_mring))
        m.r[i].fd = -1
    for i in range(m.nregions):
        munmap(m.regions[i].base, m.regions[i].size)
    m.nregions = 0
    m.taken = 0
    p.fd = -1


cdef void memif_close(vale_port *p) noexcept nogil:
    """Let go of the program's memory and the eventfds (port_free frees the rest)."""
    if p.memif == NULL:
        return
    memif_disconnect(p)
    free(p.memif.stage)
    free(p.memif)
    p.memif = NULL


cdef dict memif_info(vale_port *p):
    cdef vale_memif *m = p.memif
    rings = {}
    for q, name in ((MR_S2C, "s2c"), (MR_C2S, "c2s")):
        rings[name] = {"size": m.r[q].size, "tail": m.r[q].last}
    return {"connected": bool(m.started), "regions": m.nregions, "rings": rings,
            "broken": m.broken, "broke": m.broke.decode() if m.broke != NULL else None,
            "refused": m.refused}
