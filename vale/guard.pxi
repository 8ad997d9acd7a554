# Port guards: what a port may send in, checked by the bridge's admit() before learning.
# A port with no guard set pays one test per frame (vale_port.guards); the checks are
# here, out of line.
#   - source MACs (OpenStack port security, libvirt's clean-traffic): a port with allowed
#     MACs takes frames only from those sources; others are dropped as `spoofed`. Sticky:
#     the first sources it sends from join its allowed MACs until it holds `sticky`.
#   - spanning-tree BPDUs (destination 01:80:C2:00:00:00): bpdu=drop drops them, `bpdu`;
#     bpdu=guard also blocks the port: every frame from it is dropped until bpdu is set
#     again (a port that speaks spanning tree is another switch, maybe a loop).

cdef extern from *:
    """
    #define VALE_BPDU_MAC 0xC28001ULL      /* 01:80:C2:00:00:00 as load_mac reads it */
    """
    const uint64_t BPDU_MAC "VALE_BPDU_MAC"


cdef inline bint allowed_find(const vale_port *p, uint64_t mac, uint32_t *at) noexcept nogil:
    """Whether mac is in p.allowed (sorted); at: where it is, or where it would go."""
    cdef uint32_t low = 0, high = p.nallowed, mid
    while low < high:
        mid = (low + high) >> 1
        if p.allowed[mid] < mac:
            low = mid + 1
        else:
            high = mid
    at[0] = low
    return low < p.nallowed and p.allowed[low] == mac


cdef bint source_allowed(vale_port *p, uint64_t mac) noexcept nogil:
    """Whether p may send from mac; a sticky port with room takes a new unicast source."""
    cdef uint32_t at
    if allowed_find(p, mac, &at):
        return True
    if p.nallowed >= p.sticky or mac_is_group(mac) or mac == 0:
        return False
    memmove(&p.allowed[at + 1], &p.allowed[at], (p.nallowed - at) * sizeof(uint64_t))
    p.allowed[at] = mac
    p.nallowed += 1
    return True


cdef int guard_refuses(vale_port *src, const vale_desc *d, uint64_t dkey) noexcept nogil:
    """The reason src's guards drop a frame for (its destination key dkey), or -1."""
    if src.guards & GUARD_BLOCKED:
        return DROP_BPDU
    if src.guards & GUARD_SOURCE and not source_allowed(src, load_mac(d.data + 6)):
        return DROP_SPOOFED
    if src.guards & GUARD_BPDU and (dkey & MAC_MASK) == BPDU_MAC:
        if src.bpdu == BPDU_GUARD:
            src.guards |= GUARD_BLOCKED
        return DROP_BPDU
    return -1


cdef void port_update_guards(vale_port *p) noexcept nogil:
    p.guards = ((GUARD_SOURCE if p.allowed_room else 0)
                | (GUARD_BPDU if p.bpdu != BPDU_FORWARD else 0)
                | (p.guards & GUARD_BLOCKED if p.bpdu == BPDU_GUARD else 0))


cdef set_allowed(vale_port *p, list macs, uint32_t sticky):
    """Give p these allowed MACs (sorted, unicast, no repeats) and room for sticky more
    sources (the sticky ones it had are forgotten); none and no sticky: any source."""
    cdef uint32_t n = len(macs), room = max(n, sticky), i
    cdef uint64_t *mem = NULL
    if room:
        mem = <uint64_t *>calloc(room, sizeof(uint64_t))
        if mem == NULL:
            raise MemoryError()
        for i in range(n):
            mem[i] = macs[i]
    free(p.allowed)
    p.allowed = mem
    p.nallowed = n
    p.sticky = sticky
    p.allowed_room = room
    port_update_guards(p)
