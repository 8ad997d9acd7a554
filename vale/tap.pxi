# TAP ports: a TAP device the daemon holds open, read and written through its tun fd.
# The device was opened with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR and offloads enabled
# (vale.tap does that), so each read gives a virtio-net header and a frame, GSO frames
# whole, and each write takes the same. A read batch lands in the port's RX ring, whose
# slots hold the biggest such frame; writes go one writev per frame.

cdef enum:
    TAP_SLOT_SIZE = 65536 + 1024        # header, a 64 KiB GSO frame, padding


cdef uint32_t tap_take(vale_switch *sw, vale_port *src) noexcept nogil:
    """Read up to a batch of frames from the TAP into its RX ring's slots and sw.descs.
    Frames start 10 bytes into 64-byte aligned slots whose tails have 1 KiB of slack:
    whole 64-byte chunks never leave the slot."""
    cdef vale_ring *rx = &src.rx
    cdef uint32_t n = 0
    cdef ssize_t got
    cdef char *buf
    cdef vale_desc *d
    cdef int e
    while n < sw.batch and n < rx.nslots:
        buf = rx.buf + <size_t>n * rx.slot_size
        got = read(src.fd, buf, rx.slot_size - VALE_SLOT_ALIGN)
        if got < 0:
            e = errno
            if e == EAGAIN or e == EINTR:
                break
            port_down(sw, src)          # the device went away (EBADFD, EIO)
            break
        d = &sw.descs[n]
        d.data = buf + VNET_HDR_LEN
        d.flags = 0
        d.vlan = 0
        if got < VNET_HDR_LEN:
            d.len = 0                   # not even a header: a runt
        else:
            d.len = <uint32_t>(got - VNET_HDR_LEN)
            memcpy(&d.vnet, buf, VNET_HDR_LEN)
            if d.vnet.gso_type != VNET_GSO_NONE or (d.vnet.flags & VNET_NEEDS_CSUM):
                d.flags = settle_vnet(d)
        n += 1
    return n


cdef void tap_release(vale_switch *sw, vale_port *src, uint32_t n) noexcept nogil:
    """The slots are read into afresh by the next batch."""
    pass


cdef uint32_t tap_put(vale_switch *sw, vale_port *dst, const char *data, uint32_t length,
                      const vale_vnet *vnet, uint32_t tag, uint32_t queued,
                      bint padded) noexcept nogil:
    return queue_message(sw, dst, data, length, vnet, tag, queued)


cdef void tap_flush(vale_switch *sw, vale_port *dst, uint32_t n) noexcept nogil:
    """Write the n queued messages to dst's tun fd, one writev each, never waiting."""
    cdef uint32_t j
    cdef ssize_t r
    cdef int e
    for j in range(n):
        r = writev(dst.fd, sw.tx_msgs[j].msg_hdr.msg_iov, <int>sw.tx_msgs[j].msg_hdr.msg_iovlen)
        if r >= 0:
            dst.c.tx_packets += 1
            dst.c.tx_bytes += <uint64_t>r - VNET_HDR_LEN
            continue
        e = errno
        if e == EAGAIN:
            dst.c.drops[DROP_RING_FULL] += n - j
            return
        if e == EMSGSIZE:
            dst.c.drops[DROP_TOO_BIG] += 1
        elif e == EINVAL:
            dst.c.drops[DROP_BAD_OFFLOAD] += 1         # the kernel refused the header
        else:
            dst.c.drops[DROP_TX_ERROR] += n - j
            return


cdef bint tap_failed(vale_port *p, uint32_t events) noexcept nogil:
    """Whether a tun fd reports an error now (its device is gone): the event may be a
    stale one, of a port removed meanwhile whose index a new TAP took."""
    cdef pollfd pfd
    pfd.fd = p.fd
    pfd.events = 0
    pfd.revents = 0
    return poll(&pfd, 1, 0) > 0 and (pfd.revents & (POLLERR | POLLHUP)) != 0


cdef void tap_close(vale_port *p) noexcept nogil:
    if p.fd >= 0:
        close(p.fd)
        p.fd = -1


cdef dict tap_info(vale_port *p):
    return {"rx_slots": p.rx.nslots, "slot_size": p.rx.slot_size}
