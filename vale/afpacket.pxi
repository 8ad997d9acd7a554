# Interface ports: a Linux interface attached through an AF_PACKET socket.
#
# Receive: a memory-mapped TPACKET_V2 ring. TPACKET_V3 was the first plan, but V3 wakes
# the reader only when a whole block is retired (full, or after a timeout of at least a
# millisecond), which adds a millisecond to every hop; V2 wakes per frame. Each V2 frame
# holds a whole 64 KiB GSO frame with its virtio-net header (PACKET_VNET_HDR), so offloaded
# frames arrive in one piece and travel on as they are.
# Transmit: short frames (up to 2006 bytes, no GSO) are copied into a TPACKET_V2 TX ring of
# a second, send-only socket and handed over with one send() per destination per batch;
# the kernel copies each whole into the skb it makes, which costs less than sendmmsg's
# per-message work. Longer frames, GSO super-frames, and short ones that find the ring
# full go by sendmmsg, straight from where they lie (the RX ring of the source): the
# kernel's copy into a new skb is the one copy.

cdef enum:
    PACKET_FRAME_SIZE = 65536 + 256     # a 64 KiB GSO frame, its headers, the ring's header
    PACKET_BLOCK_SIZE = 1 << 20         # 15 frames a block; the slack allows 64-byte reads
    PACKET_SNDBUF = 4 << 20
    RX_GROW_BURST = 4                   # a take of this many frames grows an idle ring
    SPIN_PAUSES = 32                    # between two looks while busy-polling: about 1 us
    SHARE_CHECK_NS = 1000000            # while awake, how often the thread checks...
    SHARE_STOLEN = 2                    # ...whether over 1/2 of the time went to others
    SPIN_BACKOFF_NS = 20000000          # and then does not spin for 20 ms
    TX_FRAME_SIZE = 2048                # a TX ring slot: its header, a virtio-net header, a frame
    TX_FRAMES = 256                     # a default batch to one port fits

cdef extern from *:
    """
    #define VALE_WAKE_EVENT 0xFFFFFFFFu   /* epoll data of the wake eventfd */
    #define VALE_TRUNCATED 0xFFFFFFFFu    /* the length of a frame the ring cut short */
    """
    const uint32_t WAKE_EVENT "VALE_WAKE_EVENT"
    const uint32_t TRUNCATED "VALE_TRUNCATED"

# Where a frame goes in a TX ring slot (TPACKET_V2, no PACKET_TX_HAS_OFF), and the longest
# that fits after its virtio-net header.
cdef uint32_t TX_DATA = VALE_TPACKET2_HDRLEN - sizeof(sockaddr_ll)
# Where a received frame's sockaddr_ll lies in its RX ring slot: after the header, aligned
# (TPACKET_ALIGN(sizeof(tpacket2_hdr)), the same offset).
cdef uint32_t RX_SLL = VALE_TPACKET2_HDRLEN - sizeof(sockaddr_ll)
cdef uint32_t TX_MAX_WIRE = TX_FRAME_SIZE - TX_DATA - VNET_HDR_LEN


cdef inline bint fits_tx_ring(const vale_vnet *vnet, uint32_t wire) noexcept nogil:
    """Whether a frame of wire bytes (its VLAN tag back) can go through a TX ring: short,
    and no GSO."""
    return wire <= TX_MAX_WIRE and (vnet == NULL or vnet.gso_type == VNET_GSO_NONE)


cdef struct tx_open_job:
    vale_port *p
    int ifindex


cdef void *packet_tx_open_job(void *arg) noexcept nogil:
    cdef tx_open_job *job = <tx_open_job *>arg
    packet_tx_open(job.p, job.ifindex)
    return NULL


cdef int packet_open(vale_port *p, int ifindex, int rx_ifindex, uint32_t rx_frames,
                     uint32_t idle_frames) noexcept nogil:
    """Open p's socket on ifindex and map its receive ring (idle_frames big, growing to
    rx_frames at the first burst; idle_frames 0: rx_frames from the start); it receives
    on rx_ifindex (the kernel fast path's upcall device) when not 0: bound there at once,
    not moved later (a grace period saved). 0, or an errno value."""
    cdef int fd, one = 1, version = TPACKET_V2, size = PACKET_SNDBUF, e
    cdef tx_open_job job
    cdef pthread_t tx_thread
    cdef bint threaded
    # Protocol 0 until bind: a socket that takes no frames yet has no hook to take out
    # again when its ring is set and when it is bound (each an RCU grace period, tens of
    # milliseconds: most of what attaching a port costs).
    fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)
    if fd < 0:
        return errno
    # The order matters: the header option and the version before the ring; bind last, so
    # no frame arrives before the ring is there. Not seeing its own transmissions (Linux
    # 4.20+) is a must: the ring would get every frame the switch sends out of this port
    # back, and a broadcast would go round for ever.
    if (setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof(one)) != 0
            or setsockopt(fd, SOL_PACKET, PACKET_VERSION, &version, sizeof(version)) != 0
            or setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one)) != 0):
        e = errno
        close(fd)
        return e
    # Skipping the qdisc is an optimisation: go on without it on kernels that refuse.
    setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one))
    setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size))
    p.fd = fd
    # The send-only socket and its ring are made in a thread of their own meanwhile
    # (its fields are not these): setting a ring waits for a grace period, and two rings
    # set at once wait for the same one.
    job.p = p
    job.ifindex = ifindex
    threaded = pthread_create(&tx_thread, NULL, packet_tx_open_job, &job) == 0
    e = packet_rx_open(p, fd, ifindex, rx_ifindex, rx_frames, idle_frames)
    if threaded:
        pthread_join(tx_thread, NULL)
    elif e == 0:
        packet_tx_open(p, ifindex)
    if e != 0:
        packet_tx_close(p)
        p.fd = -1
        close(fd)
        return e
    # Until bind the socket took frames of every interface, and dropped some: not this
    # port's losses (and not a stuck ring's), so the count starts again here.
    packet_kernel_drops_reset(p)
    return 0


cdef int packet_rx_open(vale_port *p, int fd, int ifindex, int rx_ifindex, uint32_t rx_frames,
                        uint32_t idle_frames) noexcept nogil:
    """packet_open's receiving side on fd: the ring, bind, promiscuous; 0 or an errno value
    (what it made is undone, but fd stays open)."""
    cdef uint32_t idle
    cdef packet_mreq mreq
    cdef sockaddr_ll sll
    cdef int e
    p.prx.frames_per_block = PACKET_BLOCK_SIZE // PACKET_FRAME_SIZE
    p.prx.grow_blocks = (rx_frames + p.prx.frames_per_block - 1) // p.prx.frames_per_block
    idle = (idle_frames + p.prx.frames_per_block - 1) // p.prx.frames_per_block
    if idle == 0 or idle >= p.prx.grow_blocks:
        e = packet_ring(p, p.prx.grow_blocks)
        p.prx.grow_blocks = 0
    else:
        e = packet_ring(p, idle)
    if e != 0:
        return e
    memset(&p.link, 0, sizeof(p.link))
    p.link.sll_family = AF_PACKET
    p.link.sll_protocol = htons(ETH_P_ALL)
    p.link.sll_ifindex = ifindex
    memset(&mreq, 0, sizeof(mreq))
    mreq.mr_ifindex = ifindex
    mreq.mr_type = PACKET_MR_PROMISC    # undone by the kernel when the socket closes
    sll = p.link
    sll.sll_ifindex = rx_ifindex if rx_ifindex else ifindex
    if (bind(fd, <sockaddr *>&sll, sizeof(sll)) != 0
            or setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq, sizeof(mreq)) != 0):
        e = errno
        munmap(p.prx.map, p.prx.map_len)
        p.prx.map = NULL
        return e
    p.rx_ifindex = sll.sll_ifindex
    return 0


cdef int packet_receive_from(vale_port *p, int ifindex) noexcept nogil:
    """Move p's socket (its ring and all) to receive on another interface: the kernel
    fast path's upcall device, or the port's own interface again. It still sends to the
    port's interface (link, each message's address). 0, or an errno value."""
    cdef sockaddr_ll sll = p.link
    cdef int was = p.rx_ifindex
    sll.sll_ifindex = ifindex
    # Called without the forwarding lock (a bind is a grace period): while it is under
    # way the thread sends with the port's address (rx_ifindex 0), right whichever
    # device the socket is bound to.
    p.rx_ifindex = 0
    if bind(p.fd, <sockaddr *>&sll, sizeof(sll)) != 0:
        p.rx_ifindex = was
        return errno
    p.rx_ifindex = ifindex
    return 0


cdef void packet_kernel_drops_reset(vale_port *p) noexcept nogil:
    cdef tpacket_stats st
    cdef socklen_t length = sizeof(st)
    getsockopt(p.fd, SOL_PACKET, PACKET_STATISTICS, &st, &length)


cdef void packet_tx_open(vale_port *p, int ifindex) noexcept nogil:
    """Open p's send-only socket and map its TX ring. The ring only makes sending short
    frames cheaper: where the kernel refuses any step, the port goes without one and
    sends everything with sendmmsg."""
    cdef int fd, one = 1, version = TPACKET_V2, size = PACKET_SNDBUF
    cdef int page = getpagesize()
    cdef size_t map_len
    cdef sockaddr_ll sll
    cdef tpacket_req req
    cdef void *m
    p.tx_fd = -1
    p.ptx.map = NULL
    # Protocol 0: the socket is bound to the interface to send, and receives nothing.
    fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)
    if fd < 0:
        return
    # Blocks of one page: the kernel always finds those.
    req.tp_frame_size = TX_FRAME_SIZE
    req.tp_block_size = page
    req.tp_block_nr = (TX_FRAMES * TX_FRAME_SIZE + page - 1) // page
    req.tp_frame_nr = req.tp_block_nr * (page // TX_FRAME_SIZE)
    # PACKET_LOSS: a frame the kernel refuses is skipped, instead of stopping the ring.
    if (setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof(one)) != 0
            or setsockopt(fd, SOL_PACKET, PACKET_VERSION, &version, sizeof(version)) != 0
            or setsockopt(fd, SOL_PACKET, PACKET_LOSS, &one, sizeof(one)) != 0
            or setsockopt(fd, SOL_PACKET, PACKET_TX_RING, &req, sizeof(req)) != 0):
        close(fd)
        return
    setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one))
    setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size))
    map_len = <size_t>req.tp_block_nr * req.tp_block_size
    m = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
    if m == MAP_FAILED:
        close(fd)
        return
    memset(&sll, 0, sizeof(sll))
    sll.sll_family = AF_PACKET
    sll.sll_ifindex = ifindex
    if bind(fd, <sockaddr *>&sll, sizeof(sll)) != 0:
        munmap(m, map_len)
        close(fd)
        return
    p.ptx.map = <char *>m
    p.ptx.map_len = map_len
    p.ptx.frame_size = req.tp_frame_size
    p.ptx.frame_nr = req.tp_frame_nr
    p.ptx.frames_per_block = req.tp_block_size // req.tp_frame_size
    p.ptx.block_size = req.tp_block_size
    p.ptx.head = 0
    p.tx_fd = fd
    p.tx_pending = 0


cdef void packet_tx_close(vale_port *p) noexcept nogil:
    if p.ptx.map != NULL:
        munmap(p.ptx.map, p.ptx.map_len)
        p.ptx.map = NULL
    if p.tx_fd >= 0:
        close(p.tx_fd)
        p.tx_fd = -1


cdef void packet_close(vale_port *p) noexcept nogil:
    if p.prx.map != NULL:
        munmap(p.prx.map, p.prx.map_len)
        p.prx.map = NULL
    if p.fd >= 0:
        close(p.fd)
        p.fd = -1
    packet_tx_close(p)


cdef inline bint tx_slot_free(const tpacket2_hdr *h) noexcept nogil:
    """Neither marked nor on its way; timestamp bits may be set (kernels before 5.13
    leave them with TP_STATUS_AVAILABLE when the host takes timestamps)."""
    return (vale_load_acquire(&h.tp_status)
            & (TP_STATUS_SEND_REQUEST | TP_STATUS_SENDING | TP_STATUS_WRONG_FORMAT)) == 0


cdef inline tpacket2_hdr *packet_frame(const vale_pring *r, uint32_t i) noexcept nogil:
    i = i % r.frame_nr
    return <tpacket2_hdr *>(r.map + <size_t>(i // r.frames_per_block) * r.block_size
                            + <size_t>(i % r.frames_per_block) * r.frame_size)


cdef bint packet_tx_put(vale_port *dst, const char *data, uint32_t length, uint32_t wire,
                        const vale_vnet *vnet, uint32_t tag) noexcept nogil:
    """Copy a short frame without GSO (wire bytes once its VLAN tag is back) into dst's
    TX ring and mark it for sending; False when the ring has no free slot."""
    cdef vale_pring *r = &dst.ptx
    cdef tpacket2_hdr *h = packet_frame(r, r.head)
    cdef char *out
    cdef vale_vnet *v
    if not tx_slot_free(h):
        if dst.tx_pending == 0:
            return False
        # Hand over what is marked: a receiver that takes frames at once frees slots.
        packet_tx_kick(dst)
        if dst.ptx.map == NULL:
            return False
        h = packet_frame(r, r.head)
        if not tx_slot_free(h):
            return False
    out = <char *>h + TX_DATA
    v = <vale_vnet *>out
    vnet_for_output(v, vnet, tag != 0)
    # hdr_len the whole frame: the kernel copies all of it into the skb, which then holds
    # no page of the ring (a receiving stack would copy such a page once more).
    v.hdr_len = wire
    out += VNET_HDR_LEN
    if tag:
        copy_tagged(out, data, length, tag)
    else:
        memcpy(out, data, length)
    h.tp_len = VNET_HDR_LEN + wire
    vale_store_release(&h.tp_status, TP_STATUS_SEND_REQUEST)
    r.head = (r.head + 1) % r.frame_nr
    dst.tx_pending += 1
    return True


cdef void packet_tx_kick(vale_port *dst) noexcept nogil:
    """Hand the kernel the frames marked in dst's TX ring. It sends them in order and
    stops at the first it cannot take (its send buffer full, the link down), leaving that
    one and those after it marked: they are taken back and counted as dropped, so the
    ring's head and the kernel's stay the same slot. A send that reports no error yet
    takes none means the two heads differ after all: the port stops using the ring."""
    cdef vale_pring *r = &dst.ptx
    cdef uint32_t n = dst.tx_pending, first, i, back = 0
    cdef tpacket2_hdr *h
    cdef int e = 0
    dst.tx_pending = 0
    if send(dst.tx_fd, NULL, 0, MSG_DONTWAIT) < 0:
        e = errno
    first = (r.head + r.frame_nr - n) % r.frame_nr
    for i in range(n):
        h = packet_frame(r, first + i)
        if vale_load_acquire(&h.tp_status) & TP_STATUS_SEND_REQUEST:
            back = n - i
            break
        dst.c.tx_packets += 1
        dst.c.tx_bytes += h.tp_len - VNET_HDR_LEN
    dst.tx_ring_packets += n - back
    if back == 0:
        return
    if e == 0 and back == n:
        packet_tx_close(dst)
        dst.c.drops[DROP_TX_ERROR] += back
        return
    for i in range(n - back, n):
        vale_store_release(&packet_frame(r, first + i).tp_status, TP_STATUS_AVAILABLE)
    r.head = (first + n - back) % r.frame_nr
    if e == 0 or e == EAGAIN or e == ENOBUFS or e == EINTR:
        dst.c.drops[DROP_RING_FULL] += back         # no room in the send buffer
    else:
        dst.c.drops[DROP_TX_ERROR] += back          # down or gone: epoll tells the thread


cdef uint32_t packet_take(vale_switch *sw, vale_port *src) noexcept nogil:
    """Up to a batch of frames from the receive ring into sw.descs. Frames sit at tp_mac
    in slots of frame_size, with over 60 KiB of slack after the last slot of a block:
    reading whole 64-byte chunks never leaves the mapping."""
    cdef vale_pring *r = &src.prx
    cdef tpacket2_hdr *h
    cdef uint32_t n = 0, status
    cdef vale_desc *d
    cdef char *data
    if vale_unlikely(r.map == NULL):            # a stuck ring that could not be made again
        return 0
    while n < sw.batch and n < r.frame_nr:     # a batch over the ring would meet itself
        h = packet_frame(r, r.head + n)
        status = vale_load_acquire(&h.tp_status)
        if not (status & TP_STATUS_USER):
            break
        d = &sw.descs[n]
        data = <char *>h + h.tp_mac
        d.data = data
        d.flags = 0
        d.vlan = 0
        # A frame the ring had to cut short is not forwarded half-built.
        d.len = h.tp_snaplen if h.tp_snaplen == h.tp_len else TRUNCATED
        memcpy(&d.vnet, data - VNET_HDR_LEN, VNET_HDR_LEN)
        if d.vnet.gso_type != VNET_GSO_NONE or (d.vnet.flags & VNET_NEEDS_CSUM):
            d.flags = settle_vnet(d) if d.len != TRUNCATED else FRAME_VNET
        # For the host's own stack (to the interface's MAC): the kernel gives it to the
        # host; forwarded too, it would flood out of every port.
        if (<sockaddr_ll *>(<char *>h + RX_SLL)).sll_pkttype == PACKET_HOST:
            d.flags |= FRAME_HOST
        if status & TP_STATUS_VLAN_VALID:
            d.flags |= FRAME_VLAN
            d.vlan_tci = h.tp_vlan_tci
            d.vlan_tpid = h.tp_vlan_tpid if status & TP_STATUS_VLAN_TPID_VALID else 0x8100
            d.vlan = d.vlan_tci & VLAN_VID_MASK
        n += 1
    if vale_unlikely(n >= RX_GROW_BURST and r.grow_blocks != 0):
        r.grow_pending = True           # a burst: the ring grows at release, before it fills
    return n


cdef void packet_release(vale_switch *sw, vale_port *src, uint32_t n) noexcept nogil:
    """Hand the n frames taken back to the kernel."""
    cdef vale_pring *r = &src.prx
    cdef uint32_t i
    for i in range(n):
        vale_store_release(&packet_frame(r, r.head + i).tp_status, TP_STATUS_KERNEL)
    r.head = (r.head + n) % r.frame_nr
    if vale_unlikely(r.grow_pending):
        packet_grow(src)


cdef void packet_prepare(vale_switch *sw, vale_port *dst, uint16_t u, uint16_t b) noexcept nogil:
    """Whether the frames of lists u and b may go through the TX ring: all of them short,
    no GSO. One that cannot sends the whole batch for the port by sendmmsg: switching
    ways between frames would cost a system call each time."""
    cdef const vale_desc *d
    dst.tx_use_ring = dst.ptx.map != NULL
    while dst.tx_use_ring and (u != NO_FRAME or b != NO_FRAME):
        if u != NO_FRAME:
            d = &sw.descs[u]
            u = sw.next_frame[u]
        else:
            d = &sw.descs[b]
            b = sw.next_frame[b]
        if not fits_tx_ring(&d.vnet if d.flags & FRAME_VNET else NULL,
                            d.len + VLAN_HLEN * (egress_tag(d, dst) != 0)):
            dst.tx_use_ring = False


cdef uint32_t packet_put(vale_switch *sw, vale_port *dst, const char *data, uint32_t length,
                         const vale_vnet *vnet, uint32_t tag, uint32_t queued,
                         bint padded) noexcept nogil:
    """Short frames into the TX ring, the rest as messages; each way is handed over before
    a frame of the other is queued, so the order holds. A busy ring sends the rest of the
    batch by sendmmsg rather than each frame trying the ring again, a system call each."""
    cdef uint32_t wire = length + (VLAN_HLEN if tag else 0)
    if dst.tx_use_ring and dst.ptx.map != NULL and fits_tx_ring(vnet, wire):
        if queued:
            packet_flush(sw, dst, queued)
            queued = 0
        if packet_tx_put(dst, data, length, wire, vnet, tag):
            return 0
        dst.tx_use_ring = False
    if dst.tx_pending:
        packet_tx_kick(dst)
    return queue_message(sw, dst, data, length, vnet, tag, queued)


cdef void packet_flush(vale_switch *sw, vale_port *dst, uint32_t n) noexcept nogil:
    """Send the n messages queued in sw.tx_msgs with sendmmsg, without blocking, and hand
    the kernel what is marked in the TX ring."""
    cdef uint32_t sent = 0, j
    cdef int r, e
    # Addressed to the interface only while the socket receives elsewhere: a bound
    # socket's own device is found without a lookup per message.
    cdef void *to = &dst.link if dst.rx_ifindex != dst.link.sll_ifindex else NULL
    for j in range(n):
        sw.tx_msgs[j].msg_hdr.msg_name = to
        sw.tx_msgs[j].msg_hdr.msg_namelen = sizeof(sockaddr_ll) if to != NULL else 0
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
            break
        if e == EMSGSIZE:
            dst.c.drops[DROP_TOO_BIG] += 1
        elif e == ENXIO or e == ENETDOWN or e == ENODEV:
            dst.c.drops[DROP_TX_ERROR] += n - sent      # gone: the thread notices via epoll
            break
        else:
            dst.c.drops[DROP_TX_ERROR] += 1
        sent += 1
    if dst.tx_pending:
        packet_tx_kick(dst)


cdef uint64_t packet_kernel_drops(vale_port *p) noexcept nogil:
    """Frames the receive ring had no room for since the last call (PACKET_STATISTICS
    reads and resets the kernel's count); a stuck ring is reset (packet_unstick) and its
    losses counted rx_stuck instead. Called about once a second."""
    cdef tpacket_stats st
    cdef socklen_t length = sizeof(st)
    cdef uint64_t taken = p.c.rx_packets - p.rx_checked
    p.rx_checked = p.c.rx_packets
    if getsockopt(p.fd, SOL_PACKET, PACKET_STATISTICS, &st, &length) != 0:
        st.tp_drops = 0
    if p.prx.map == NULL or (st.tp_drops and taken == 0 and p.up and not (
            vale_load_acquire(&packet_frame(&p.prx, p.prx.head).tp_status) & TP_STATUS_USER)):
        packet_unstick(p)
        p.c.drops[DROP_RX_STUCK] += st.tp_drops
        return 0
    return st.tp_drops


cdef void packet_unstick(vale_port *p) noexcept nogil:
    """Give p's receive ring back to the kernel anew. A TPACKET_V2 ring can get stuck
    for good: when the kernel cannot write a frame's virtio-net header (a UDP-fragmentation
    offload frame, GSO type 3, which a TAP takes from its VM), tpacket_rcv leaves the slot
    claimed (its rx_owner_map bit set, its status TP_STATUS_KERNEL) without moving its
    head on; every later frame meets that claimed slot and is dropped, counted in
    tp_drops only. No status tells user space, and no release frees the slot: only a new
    ring does (set to none, set again, mapped again), on the same socket, so the binding,
    the promiscuous membership and the epoll registration stay. Found by the drops: some
    over a second in which nothing arrived in a ring whose next slot is the kernel's (a
    full ring's drops leave its next slot the user's, and frames to take). A ring that
    cannot be made again leaves the port unable to receive (rx_stuck), tried again at
    the next call."""
    p.rx_stuck = True
    if packet_ring(p, <uint32_t>(p.prx.map_len // PACKET_BLOCK_SIZE)) == 0:
        p.rx_stuck = False
        p.rx_resets += 1


cdef int packet_ring(vale_port *p, uint32_t blocks) noexcept nogil:
    """(Re)make p's receive ring with `blocks` blocks on its socket (set to none, set,
    mapped): the binding, the membership and the epoll registration stay. 0, or an errno
    value (the port then has no ring: map NULL)."""
    cdef tpacket_req req
    cdef void *m
    if p.prx.map != NULL:
        munmap(p.prx.map, p.prx.map_len)
        p.prx.map = NULL
        memset(&req, 0, sizeof(req))
        setsockopt(p.fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof(req))
    req.tp_frame_size = PACKET_FRAME_SIZE
    req.tp_block_size = PACKET_BLOCK_SIZE
    req.tp_block_nr = blocks
    req.tp_frame_nr = blocks * (PACKET_BLOCK_SIZE // PACKET_FRAME_SIZE)
    if setsockopt(p.fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof(req)) != 0:
        return errno
    m = mmap(NULL, <size_t>blocks * PACKET_BLOCK_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
             p.fd, 0)
    if m == MAP_FAILED:
        return errno
    p.prx.map = <char *>m
    p.prx.map_len = <size_t>blocks * PACKET_BLOCK_SIZE
    p.prx.frame_size = req.tp_frame_size
    p.prx.frame_nr = req.tp_frame_nr
    p.prx.block_size = req.tp_block_size
    p.prx.head = 0
    return 0


cdef void packet_grow(vale_port *p) noexcept nogil:
    """A burst came: make the ring its full size (rx_frames). Frames that arrived since
    the take are lost with the old ring, and counted (ring_full). A ring that cannot be
    made that big stays as it was."""
    cdef vale_pring *r = &p.prx
    cdef uint32_t small = <uint32_t>(r.map_len // PACKET_BLOCK_SIZE), i = 0
    while i < r.frame_nr and vale_load_acquire(&packet_frame(r, r.head + i).tp_status) & TP_STATUS_USER:
        i += 1
    p.c.drops[DROP_RING_FULL] += i
    r.grow_pending = False
    if packet_ring(p, r.grow_blocks) != 0 and packet_ring(p, small) != 0:
        p.rx_stuck = True               # as a stuck ring: tried again once a second
        return
    r.grow_blocks = 0


cdef dict packet_info(vale_port *p):
    return {"rx_frames": p.prx.frame_nr, "rx_frame_size": p.prx.frame_size,
            "rx_frames_max": (p.prx.grow_blocks * (PACKET_BLOCK_SIZE // PACKET_FRAME_SIZE)
                                if p.prx.grow_blocks else p.prx.frame_nr),
            "rx_ring_bytes": p.prx.map_len,
            "tx_frames": p.ptx.frame_nr if p.ptx.map != NULL else 0,
            "tx_ring_bytes": p.ptx.map_len if p.ptx.map != NULL else 0,
            "rx_ifindex": p.rx_ifindex}


cdef vale_port *packet_port(vale_port *p, bint tx_ring=True) except NULL:
    """p, when it is a packet port (with a TX ring, when tx_ring); ValueError otherwise."""
    if p.kind != PORT_PACKET:
        raise ValueError(f"port {p.index} has no packet socket")
    if tx_ring and p.ptx.map == NULL:
        raise ValueError(f"port {p.index} has no TX ring")
    return p


cdef bint packet_failed(vale_port *p, uint32_t events) noexcept nogil:
    """Whether an error event on a packet socket means its interface went down or away: a
    stale event of a port removed meanwhile finds no error pending."""
    cdef int err = 0
    cdef socklen_t elen = sizeof(err)
    getsockopt(p.fd, SOL_SOCKET, SO_ERROR, &err, &elen)
    return err != 0 or (events & EPOLLHUP) != 0
