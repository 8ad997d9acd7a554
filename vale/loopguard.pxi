# The loop guard. valed sends a probe out of every port now and then (send_loop_probe): a
# frame to LOOP_PROBE_KEY's MAC, a group address every switch floods, of EtherType
# LOOP_ETHERTYPE, carrying LOOP_MAGIC, the switch's loop_id and the index of the port it
# left by. The lookups compare each group-addressed frame's destination with
# LOOP_PROBE_KEY (nothing more for unicast). When a probe of this switch comes back in,
# the wire beyond that port leads back to the switch: of the two ports the loop joins,
# the one with the higher index is blocked (so probes that crossed each other block one
# port, not both), for loop_hold_ms. A blocked port's frames are dropped as `loop`, and
# nothing is sent to it; Python is told through the notify eventfd, and the learned MACs
# are forgotten. Probes of other switches are flooded as any frame. The probes' source
# MAC (loop_src_key, from loop_id) is never learned, so probes coming back on several
# ports do not count as moves.

cdef enum:
    LOOP_ETHERTYPE = 0x88B6     # IEEE 802 local experimental EtherType 2
    LOOP_FRAME_LEN = 60         # a probe: the shortest Ethernet frame
    LOOP_MAGIC_AT = 14          # payload: magic (4 bytes), loop_id (8), port index (2)
    LOOP_ID_AT = 18
    LOOP_PORT_AT = 26

cdef extern from *:
    """
    /* 03:56:41:4c:45:00 ("VALE", group and locally administered) as load_mac reads it */
    #define VALE_LOOP_PROBE_KEY 0x00454c415603ULL
    #define VALE_LOOP_MAGIC 0x454c4156U     /* "VALE" as a little-endian load */
    """
    const uint64_t LOOP_PROBE_KEY "VALE_LOOP_PROBE_KEY"
    const uint32_t LOOP_MAGIC "VALE_LOOP_MAGIC"


cdef inline uint64_t loop_src_key(const vale_switch *sw) noexcept nogil:
    """The probes' source MAC: locally administered unicast, 5 bytes of loop_id."""
    return ((sw.loop_id << 8) & MAC_MASK) | 0x02


cdef inline uint16_t group_verdict(vale_switch *sw, vale_port *src, uint32_t i) noexcept nogil:
    """A lookup stage's verdict for group-addressed frame i: a flood, unless it is a probe
    of this switch come back (a loop: dropped, `loop`). One compare per such frame."""
    if vale_unlikely((sw.dkeys[i] & MAC_MASK) == LOOP_PROBE_KEY) and loop_probe_back(sw, src, i):
        return VALE_DROP + DROP_LOOP
    return VALE_FLOOD


cdef bint loop_probe_back(vale_switch *sw, vale_port *src, uint32_t i) noexcept nogil:
    """Frame i, to the probes' MAC, came in on src: if it is a probe of this switch, block
    the port the loop runs through and say so (the frame is then dropped)."""
    cdef const vale_desc *d = &sw.descs[i]
    cdef uint32_t magic
    cdef uint64_t loop_id
    cdef uint16_t sent_by
    cdef vale_port *blocked = src
    if d.len < LOOP_PORT_AT + 2 or load_be16(d.data + 12) != LOOP_ETHERTYPE:
        return False
    memcpy(&magic, d.data + LOOP_MAGIC_AT, 4)
    memcpy(&loop_id, d.data + LOOP_ID_AT, 8)
    if magic != LOOP_MAGIC or loop_id != sw.loop_id:
        return False
    sent_by = load_be16(d.data + LOOP_PORT_AT)
    if sent_by > src.index and sent_by < VALE_MAX_PORTS and sw.ports[sent_by] != NULL:
        blocked = sw.ports[sent_by]
    loop_block(sw, blocked)
    return True


cdef void loop_block(vale_switch *sw, vale_port *p) noexcept nogil:
    """Block p; a new block also forgets every learned MAC, as a spanning tree's topology
    change does: while the loop ran, hosts' frames came back through the loop's ports and
    their MACs moved there (or were banned for moving)."""
    cdef uint64_t one = 1
    if p.blocked_until == 0:
        p.loops_found += 1
        fdb_remove_port(sw, VALE_NO_PORT, False)
        write(sw.notify_fd, &one, sizeof(one))
    p.blocked_until = sw.now_ms + sw.loop_hold_ms
    if p.blocked_until == 0:
        p.blocked_until = 1


cdef inline bint loop_blocked(vale_switch *sw, vale_port *p) noexcept nogil:
    """Whether p is blocked now; a block whose time is up is lifted here."""
    if vale_likely(p.blocked_until == 0):
        return False
    if sw.now_ms < p.blocked_until:
        return True
    p.blocked_until = 0
    return False


cdef bint loop_blocked_now(vale_switch *sw, vale_port *p) noexcept nogil:
    """loop_blocked for a port whose frames are waiting: the clock read first (no batch
    may have run since the block)."""
    if not sw.manual_clock:
        sw.now_ms = monotonic_ms()
    return loop_blocked(sw, p)


cdef uint32_t loop_drop_batch(vale_switch *sw, vale_port *p, uint32_t n) noexcept nogil:
    """A blocked port's batch: counted as received and dropped."""
    p.c.rx_packets += n
    p.c.drops[DROP_LOOP] += n
    return n


cdef uint16_t probe_vlan(const vale_port *p) noexcept nogil:
    """The VLAN a probe leaves p in: untagged (its native VLAN, or VLAN 0 without a mode),
    or on a trunk without a native VLAN, tagged with the lowest VLAN it carries."""
    cdef uint32_t v
    if p.vlan_mode == VLAN_NONE or p.native:
        return p.native
    for v in range(1, VLAN_RESERVED):
        if carries(p, v):
            return <uint16_t>v
    return p.native


cdef uint32_t loop_probe_frame(const vale_switch *sw, uint16_t port, char *out) noexcept nogil:
    """Write the probe that leaves by `port` into out (LOOP_FRAME_LEN bytes); its length."""
    cdef uint64_t dst = LOOP_PROBE_KEY, src = loop_src_key(sw)
    cdef uint32_t magic = LOOP_MAGIC
    memset(out, 0, LOOP_FRAME_LEN)
    memcpy(out, &dst, 6)
    memcpy(out + 6, &src, 6)
    store_be16(out + 12, LOOP_ETHERTYPE)
    memcpy(out + LOOP_MAGIC_AT, &magic, 4)
    memcpy(out + LOOP_ID_AT, &sw.loop_id, 8)
    store_be16(out + LOOP_PORT_AT, port)
    return LOOP_FRAME_LEN
