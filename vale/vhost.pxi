# vhost-user ports: a VM's virtio-net device (QEMU's, or DPDK's virtio-user), its split
# virtqueues in the guest's memory, which the front end shares with valed. The protocol
# (vale/vhost.py, off the forwarding thread) hands the core the memory regions, each
# ring's size, addresses and eventfds; this back end serves the rings in batches on the
# forwarding thread: frames the guest sends are taken from its transmit queue (VQ_TX),
# frames for it are put into its receive queue (VQ_RX). One read of avail->idx and one
# store of used->idx per batch; the guest is interrupted (and kicks) only when the event
# indexes ask for it.
#
# The guest is not trusted: each ring index, descriptor index, chain (no loops: at most
# `num` links, one level of indirection), address range (within one region) and header is
# checked before use, and frames are copied out of its memory before the bridge looks at
# them, so the guest cannot change a frame between its checks and its delivery. A guest
# that breaks a rule has its rings stopped and counted (bad_descriptor) until the front
# end sets them up again; nothing else of the switch notices.

cdef extern from *:
    """
    static inline uint16_t vale_load_acquire16(const volatile uint16_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    static inline void vale_store_release16(volatile uint16_t *p, uint16_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
    static inline void vale_fence(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
    """
    uint16_t vale_load_acquire16(const uint16_t *p) nogil
    void vale_store_release16(uint16_t *p, uint16_t v) nogil
    void vale_fence() nogil

cdef enum:
    VQ_RX = 0                   # the guest's receive queue: vale puts frames there
    VQ_TX = 1                   # the guest's transmit queue: vale takes frames from there
    VRING_DESC_F_NEXT = 1
    VRING_DESC_F_WRITE = 2
    VRING_DESC_F_INDIRECT = 4
    VRING_AVAIL_F_NO_INTERRUPT = 1
    VRING_USED_F_NO_NOTIFY = 1
    VHOST_MAX_QUEUE_SIZE = 32768
    VHOST_MAX_FRAME = 65536 + 64        # a GSO frame and its header: longer chains are refused
    VHOST_STAGE_SIZE = 2 << 20          # frames of one batch, copied in
    VHOST_STAGE_ROOM = VHOST_STAGE_SIZE - VHOST_MAX_FRAME - 2 * VALE_SLOT_ALIGN
    VNET_MRG_HDR_LEN = 12               # with num_buffers
    TAKE_AHEAD = 4                      # buffers prefetched ahead of the one taken


cdef char *guest_range(vale_vhost *vh, uint64_t gpa, uint64_t length) noexcept nogil:
    """Where guest-physical [gpa, gpa + length) is in valed, or NULL unless one region
    holds all of it."""
    cdef uint32_t i
    cdef vale_vregion *r
    for i in range(vh.nregions):
        r = &vh.regions[i]
        if gpa >= r.gpa and gpa - r.gpa < r.size and length <= r.size - (gpa - r.gpa):
            return r.host + (gpa - r.gpa)
    return NULL


cdef char *front_range(vale_vhost *vh, uint64_t uva, uint64_t length) noexcept nogil:
    """The same for an address in the front end's own memory (ring addresses)."""
    cdef uint32_t i
    cdef vale_vregion *r
    for i in range(vh.nregions):
        r = &vh.regions[i]
        if uva >= r.uva and uva - r.uva < r.size and length <= r.size - (uva - r.uva):
            return r.host + (uva - r.uva)
    return NULL


cdef void vhost_broke(vale_port *p, vale_vq *vq, const char *what) noexcept nogil:
    """The guest broke a rule on this queue: stop both its rings and count it."""
    cdef vale_vhost *vh = p.vhost
    cdef uint32_t q
    for q in range(VHOST_QUEUES):
        vh.q[q].started = False
    vh.broken += 1
    vh.broke = what
    p.c.drops[DROP_BAD_DESCRIPTOR] += 1


cdef bint vq_start(vale_vhost *vh, vale_vq *vq) noexcept nogil:
    """Map a queue's rings (when it has its size and addresses) and serve it; False when
    they do not lie in guest memory, or are misaligned."""
    cdef uint64_t num = vq.num
    vq.started = False
    if not vq.addressed or num == 0:
        return True                     # not ready yet: nothing wrong
    vq.desc = <vale_vdesc *>front_range(vh, vq.desc_uva, 16 * num)
    vq.avail = <uint16_t *>front_range(vh, vq.avail_uva, 6 + 2 * num)
    vq.used = <uint16_t *>front_range(vh, vq.used_uva, 6 + 8 * num)
    if (vq.desc == NULL or vq.avail == NULL or vq.used == NULL
            or (<size_t>vq.desc & 15) or (<size_t>vq.avail & 1) or (<size_t>vq.used & 3)):
        vq.desc = NULL
        vq.avail = NULL
        vq.used = NULL
        return False
    vq.used_idx = vale_load_acquire16(&vq.used[1])
    vq.kicks_off = False
    vq.signalled = vq.used_idx
    vq.started = True
    return True


cdef inline uint16_t *used_elem(vale_vq *vq, uint32_t i) noexcept nogil:
    return vq.used + 2 + 4 * (i & (vq.num - 1))     # {u32 id, u32 len}


cdef inline void used_put(vale_vq *vq, uint16_t at, uint32_t head, uint32_t length) noexcept nogil:
    cdef uint32_t *e = <uint32_t *>used_elem(vq, at)
    e[0] = head
    e[1] = length


cdef void vq_interrupt(vale_vhost *vh, vale_vq *vq) noexcept nogil:
    """After used->idx moved: interrupt the guest if it asked to be (its used_event, or
    without event indexes its avail flags)."""
    cdef uint16_t new = vq.used_idx, old = vq.signalled, event
    cdef uint64_t one = 1
    vale_fence()                        # used->idx out before the guest's wishes are read
    if vh.event_idx:
        event = vq.avail[2 + vq.num]
        if <uint16_t>(new - event - 1) >= <uint16_t>(new - old):
            return
    elif vq.avail[0] & VRING_AVAIL_F_NO_INTERRUPT:
        return
    vq.signalled = new
    if vq.call_fd >= 0:
        write(vq.call_fd, &one, sizeof(one))


cdef inline uint16_t vq_pending(vale_vq *vq) noexcept nogil:
    return <uint16_t>(vale_load_acquire16(&vq.avail[1]) - vq.last_avail)


# ---- the guest sends: its transmit queue ---------------------------------------------

cdef struct chain_reader:
    char *out                   # where the frame goes
    uint32_t got                # bytes of the chain so far (header included)
    char hdr[VNET_MRG_HDR_LEN]


cdef inline int read_buffer(vale_vhost *vh, chain_reader *c, const vale_vdesc *dsc) noexcept nogil:
    """Copy one device-readable buffer of a chain: its first bytes to the header, the
    rest to the frame. -1: not in guest memory, or the chain too long."""
    cdef uint32_t length = dsc.len, h = 0
    cdef const char *src
    if length > VHOST_MAX_FRAME - c.got:
        return -1
    src = guest_range(vh, dsc.addr, length)
    if src == NULL:
        return -1
    if c.got < vh.hdr_len:
        h = min(length, vh.hdr_len - c.got)
        memcpy(c.hdr + c.got, src, h)
    if length > h:
        memcpy(c.out + (c.got + h - vh.hdr_len), src + h, length - h)
    c.got += length
    return 0


cdef const char *read_chain(vale_vhost *vh, vale_vq *vq, uint32_t head,
                            chain_reader *c) noexcept nogil:
    """Copy the chain starting at head; NULL when all is well, else what was wrong."""
    cdef const vale_vdesc *table = vq.desc
    cdef uint32_t size = vq.num, i = head, links = 0
    cdef const vale_vdesc *dsc
    cdef bint indirect = False
    while True:
        if i >= size:
            return "a descriptor index out of the table"
        dsc = &table[i]
        if dsc.flags & VRING_DESC_F_INDIRECT:
            if indirect or not vh.indirect:
                return "an indirect descriptor where none may be"
            if dsc.len == 0 or dsc.len % sizeof(vale_vdesc) or dsc.len // sizeof(vale_vdesc) > VHOST_MAX_QUEUE_SIZE:
                return "an indirect table of a bad length"
            table = <const vale_vdesc *>guest_range(vh, dsc.addr, dsc.len)
            if table == NULL or (<size_t>table & 15):
                return "an indirect table outside guest memory"
            size = dsc.len // sizeof(vale_vdesc)
            indirect = True
            i = 0
            links = 0
            continue
        if dsc.flags & VRING_DESC_F_WRITE:
            return "a device-writable buffer in the transmit queue"
        if read_buffer(vh, c, dsc) != 0:
            return "a buffer outside guest memory, or a frame over 64 KiB"
        links += 1
        if not (dsc.flags & VRING_DESC_F_NEXT):
            return NULL
        if links >= size:
            return "a descriptor chain that loops"
        i = dsc.next


cdef inline bint take_in_place(vale_vhost *vh, vale_vq *vq, uint32_t head,
                               vale_desc *d) noexcept nogil:
    """A frame the bridge may read where the guest put it: one descriptor holding header
    and frame, no offload asked (so nothing checks its bytes beyond the MAC addresses),
    with the bridge's 64 bytes of slack inside the region. False: copy it in instead."""
    cdef const vale_vdesc *dsc
    cdef char *src
    if head >= vq.num:
        return False
    dsc = &vq.desc[head]
    if (dsc.flags & (VRING_DESC_F_NEXT | VRING_DESC_F_WRITE | VRING_DESC_F_INDIRECT)
            or dsc.len < vh.hdr_len or dsc.len > VHOST_MAX_FRAME):
        return False
    src = guest_range(vh, dsc.addr, <uint64_t>dsc.len + VALE_SLOT_ALIGN)
    if src == NULL or src[0] != 0 or src[1] != 0:       # virtio-net flags, gso_type
        return False
    d.data = src + vh.hdr_len
    d.len = dsc.len - vh.hdr_len
    d.flags = 0
    d.vlan = 0
    return True


cdef inline void prefetch_buffer(vale_vhost *vh, vale_vq *vq, uint32_t n) noexcept nogil:
    """Start fetching the first line of the buffer of the n-th pending avail entry: the
    guest wrote it on another CPU. A prefetch never faults, so the guest's address is
    not checked here (take checks it before it reads)."""
    cdef uint32_t head = vq.avail[2 + ((vq.last_avail + n) & (vq.num - 1))] & (vq.num - 1)
    vale_prefetch(vh.regions[0].host + (vq.desc[head].addr - vh.regions[0].gpa))


cdef uint32_t vhost_take(vale_switch *sw, vale_port *p) noexcept nogil:
    """Up to a batch of the frames the guest sent into sw.descs: plain frames read in
    place (on a port without guards, VLANs off), the rest copied into the stage; their
    buffers go back in release, after delivery (one store of used->idx)."""
    cdef vale_vhost *vh = p.vhost
    cdef vale_vq *vq = &vh.q[VQ_TX]
    cdef uint16_t pending
    cdef uint32_t n = 0, off = 0, head
    cdef chain_reader c
    cdef const char *wrong
    cdef vale_desc *d
    cdef bint in_place = p.guards == 0 and sw.vlan_ports == 0
    if not (vq.started and vq.enabled):
        return 0
    pending = vq_pending(vq)
    if pending == 0:
        # Idle: ask for a kick at the next frame, then look once more (the guest may have
        # added one before it saw the request). The kick fd is edge-triggered in epoll:
        # a kick wakes the thread once and is never read.
        if vh.event_idx:
            vq.used[2 + 4 * vq.num] = vq.last_avail
        elif vq.kicks_off:
            vq.used[0] = 0
            vq.kicks_off = False
        vale_fence()
        pending = vq_pending(vq)
        if pending == 0:
            return 0
    if not vh.event_idx and not vq.kicks_off:
        # Busy: no kicks (a system call in the guest for each) while frames come.
        vq.used[0] = VRING_USED_F_NO_NOTIFY
        vq.kicks_off = True
    if pending > vq.num:
        vhost_broke(p, vq, "avail->idx more than the queue size ahead")
        return 0
    for n in range(min(<uint32_t>pending, <uint32_t>TAKE_AHEAD)):
        prefetch_buffer(vh, vq, n)
    n = 0
    while n < pending and n < sw.batch and off <= VHOST_STAGE_ROOM:
        if n + TAKE_AHEAD < pending:
            prefetch_buffer(vh, vq, n + TAKE_AHEAD)
        head = vq.avail[2 + ((vq.last_avail + n) & (vq.num - 1))]
        d = &sw.descs[n]
        if in_place and take_in_place(vh, vq, head, d):
            used_put(vq, vq.used_idx + n, head, 0)
            n += 1
            continue
        c.out = vh.stage + off
        c.got = 0
        wrong = read_chain(vh, vq, head, &c)
        if wrong != NULL:
            vhost_broke(p, vq, wrong)
            break
        used_put(vq, vq.used_idx + n, head, 0)
        d.flags = 0
        d.vlan = 0
        d.data = c.out
        if c.got < vh.hdr_len:
            d.len = 0                   # not even a header: a runt
        else:
            d.len = c.got - vh.hdr_len
            memcpy(&d.vnet, c.hdr, VNET_HDR_LEN)
            if d.vnet.gso_type != VNET_GSO_NONE or (d.vnet.flags & VNET_NEEDS_CSUM):
                d.flags = settle_vnet(d)
            off += (d.len + 2 * VALE_SLOT_ALIGN - 1) & ~(<uint32_t>VALE_SLOT_ALIGN - 1)
        n += 1
    return n


cdef void vhost_release(vale_switch *sw, vale_port *src, uint32_t n) noexcept nogil:
    """Give the guest back the buffers of the n frames taken, delivered now."""
    cdef vale_vhost *vh = src.vhost
    cdef vale_vq *vq = &vh.q[VQ_TX]
    vq.last_avail += n
    vq.used_idx += n
    vale_store_release16(&vq.used[1], vq.used_idx)
    vq_interrupt(vh, vq)


# ---- the guest receives: its receive queue --------------------------------------------

cdef void vhost_prepare(vale_switch *sw, vale_port *dst, uint16_t u, uint16_t b) noexcept nogil:
    """Before a batch's frames for the guest: read avail->idx once."""
    cdef vale_vq *vq = &dst.vhost.q[VQ_RX]
    cdef uint32_t k
    if vq.started:
        vq.avail_seen = vale_load_acquire16(&vq.avail[1])
        vq.used_start = vq.used_idx
        for k in range(min(<uint16_t>(vq.avail_seen - vq.last_avail), <uint32_t>TAKE_AHEAD)):
            prefetch_buffer(dst.vhost, vq, k)


cdef struct chain_writer:
    char *at                    # the current buffer's next byte
    uint32_t room               # left in it
    uint32_t written            # into this chain, for its used entry


cdef int next_writable(vale_vhost *vh, vale_vq *vq, const vale_vdesc **table, uint32_t *size,
                       uint32_t *i, uint32_t *links, chain_writer *w,
                       const char **wrong) noexcept nogil:
    """Move w to the next device-writable buffer of a chain at *i (following an indirect
    table). 1: there is one; 0: the chain ended; -1: the guest broke a rule (*wrong)."""
    cdef const vale_vdesc *dsc
    while True:
        if i[0] == VALE_NIL:
            return 0
        if i[0] >= size[0] or links[0] >= size[0]:
            wrong[0] = "a receive chain that loops or leaves its table"
            return -1
        dsc = &table[0][i[0]]
        links[0] += 1
        if dsc.flags & VRING_DESC_F_INDIRECT:
            if table[0] != vq.desc or not vh.indirect or dsc.len == 0 or dsc.len % sizeof(vale_vdesc):
                wrong[0] = "a bad indirect descriptor in the receive queue"
                return -1
            table[0] = <const vale_vdesc *>guest_range(vh, dsc.addr, dsc.len)
            if table[0] == NULL or (<size_t>table[0] & 15):
                wrong[0] = "an indirect table outside guest memory"
                return -1
            size[0] = dsc.len // sizeof(vale_vdesc)
            i[0] = 0
            links[0] = 0
            continue
        if not (dsc.flags & VRING_DESC_F_WRITE):
            wrong[0] = "a device-readable buffer in the receive queue"
            return -1
        w.at = guest_range(vh, dsc.addr, dsc.len)
        if w.at == NULL:
            wrong[0] = "a receive buffer outside guest memory"
            return -1
        w.room = dsc.len
        i[0] = <uint32_t>dsc.next if dsc.flags & VRING_DESC_F_NEXT else <uint32_t>VALE_NIL
        if w.room:
            return 1


cdef uint32_t vhost_put(vale_switch *sw, vale_port *dst, const char *data, uint32_t length,
                        const vale_vnet *vnet, uint32_t tag, uint32_t queued,
                        bint padded) noexcept nogil:
    """Copy one frame (header first, its tag put back) into the guest's receive buffers:
    as many as it takes with mergeable buffers, else one chain. Published by flush."""
    cdef vale_vhost *vh = dst.vhost
    cdef vale_vq *vq = &vh.q[VQ_RX]
    cdef char hdr[VNET_MRG_HDR_LEN]
    cdef char tagbuf[4]
    cdef const char *parts[4]
    cdef uint32_t lens[4]
    cdef uint32_t nparts, k, step, head, i, links, size
    cdef uint16_t buffers = 0, taken = 0
    cdef bint out_of_buffers = False
    cdef uint16_t *num_buffers = NULL
    cdef const vale_vdesc *table
    cdef chain_writer w
    cdef const char *wrong = NULL
    cdef int r
    cdef vale_vnet out
    if not (vq.started and vq.enabled):
        dst.c.drops[DROP_TX_ERROR] += 1
        return 0
    if vnet != NULL and (not vh.guest_offloads or vnet.gso_type == VNET_GSO_UDP_L4 or (
            (vnet.gso_type & ~VNET_GSO_ECN) == VNET_GSO_UDP and not vh.guest_ufo)):
        dst.c.drops[DROP_BAD_OFFLOAD] += 1      # an offload this guest did not take
        return 0
    if <uint16_t>(vq.avail_seen - vq.last_avail) > TAKE_AHEAD:
        prefetch_buffer(vh, vq, TAKE_AHEAD)
    vnet_for_output(&out, vnet, tag != 0)
    memset(hdr, 0, sizeof(hdr))
    memcpy(hdr, &out, VNET_HDR_LEN)
    parts[0] = hdr
    lens[0] = vh.hdr_len
    if tag:
        write_tag(tagbuf, tag)
        parts[1] = data
        lens[1] = 12
        parts[2] = tagbuf
        lens[2] = VLAN_HLEN
        parts[3] = data + 12
        lens[3] = length - 12
        nparts = 4
    else:
        parts[1] = data
        lens[1] = length
        nparts = 2
    k = 0
    while k < nparts:
        # The next buffer: a new chain from the avail ring.
        if buffers and not vh.mergeable:
            break
        if <uint16_t>(vq.avail_seen - vq.last_avail - taken) == 0:
            out_of_buffers = True
            break
        head = vq.avail[2 + ((vq.last_avail + taken) & (vq.num - 1))]
        taken += 1
        table = vq.desc
        size = vq.num
        i = head
        links = 0
        w.written = 0
        while k < nparts:
            r = next_writable(vh, vq, &table, &size, &i, &links, &w, &wrong)
            if r < 0:
                vhost_broke(dst, vq, wrong)
                vq.used_idx = vq.used_start     # nothing of the batch is published
                return 0
            if r == 0:
                break
            if buffers == 0 and w.written == 0:
                if w.room < vh.hdr_len:
                    vhost_broke(dst, vq, "a receive buffer shorter than the header")
                    vq.used_idx = vq.used_start
                    return 0
                num_buffers = <uint16_t *>(w.at + VNET_HDR_LEN)
            while k < nparts and w.room:
                step = min(w.room, lens[k])
                memcpy(w.at, parts[k], step)
                w.at += step
                w.room -= step
                w.written += step
                parts[k] += step
                lens[k] -= step
                if lens[k] == 0:
                    k += 1
            if not vh.mergeable and k < nparts:
                continue                # one chain holds it all: its next buffer
            if vh.mergeable:
                break
        used_put(vq, vq.used_idx + buffers, head, w.written)
        buffers += 1
    if k < nparts:
        # No room: give nothing of it to the guest (the buffers stay available).
        dst.c.drops[DROP_RING_FULL if out_of_buffers else DROP_TOO_BIG] += 1
        return 0
    if vh.hdr_len == VNET_MRG_HDR_LEN:
        memcpy(num_buffers, &buffers, 2)
    vq.last_avail += taken
    vq.used_idx += buffers
    dst.c.tx_packets += 1
    dst.c.tx_bytes += length + (VLAN_HLEN if tag else 0)
    return 0


cdef void vhost_flush(vale_switch *sw, vale_port *dst, uint32_t queued) noexcept nogil:
    """Publish the batch's used entries at once, and interrupt the guest if it asked."""
    cdef vale_vq *vq = &dst.vhost.q[VQ_RX]
    if vq.started and vq.used_idx != vq.used_start:
        vale_store_release16(&vq.used[1], vq.used_idx)
        vq.used_start = vq.used_idx
        vq_interrupt(dst.vhost, vq)


# ---- the port's life ---------------------------------------------------------------

cdef vale_port *vhost_port_of(vale_port *p) except NULL:
    """p, when it is a vhost-user port; ValueError otherwise."""
    if p.kind != PORT_VHOST:
        raise ValueError(f"port {p.index} is not a vhost-user port")
    return p


cdef bint vhost_failed(vale_port *p, uint32_t events) noexcept nogil:
    """An eventfd does not fail; a front end that goes away is the protocol's to see."""
    return False


cdef void vhost_unmap(vale_vhost *vh) noexcept nogil:
    cdef uint32_t i
    for i in range(vh.nregions):
        munmap(vh.regions[i].map, vh.regions[i].map_len)
    vh.nregions = 0


cdef void vq_close(vale_vq *vq) noexcept nogil:
    if vq.kick_fd >= 0:
        close(vq.kick_fd)
    if vq.call_fd >= 0:
        close(vq.call_fd)
    memset(vq, 0, sizeof(vale_vq))
    vq.kick_fd = -1
    vq.call_fd = -1


cdef void vhost_disconnect(vale_port *p) noexcept nogil:
    """Let go of what a front end gave: the queues and their eventfds, the guest's memory,
    the features (the caller took the kick fd out of epoll, if it is there)."""
    cdef uint32_t q
    for q in range(VHOST_QUEUES):
        vq_close(&p.vhost.q[q])
    p.fd = -1                           # it was the transmit queue's kick fd
    vhost_unmap(p.vhost)
    p.vhost.features = 0


cdef void vhost_close(vale_port *p) noexcept nogil:
    """Let go of the guest's memory and the eventfds (port_free frees the rest)."""
    if p.vhost == NULL:
        return
    vhost_disconnect(p)
    free(p.vhost.stage)
    free(p.vhost)
    p.vhost = NULL


cdef dict vhost_info(vale_port *p):
    cdef vale_vhost *vh = p.vhost
    cdef vale_vq *vq
    queues = {}
    for q, name in ((VQ_RX, "rx"), (VQ_TX, "tx")):
        vq = &vh.q[q]
        queues[name] = {"size": vq.num, "started": bool(vq.started), "enabled": bool(vq.enabled),
                        "avail": vq.last_avail, "used": vq.used_idx}
    return {"features": vh.features, "header": vh.hdr_len, "regions": vh.nregions,
            "queues": queues, "broken": vh.broken,
            "broke": vh.broke.decode() if vh.broke != NULL else None}
