# Storm control: per port, at most so many broadcast, multicast and unknown-unicast frames
# a second go on to be flooded, as hardware switches' storm-control offers. One token
# bucket per class, filled at the rate (in thousandths of a frame per millisecond, so
# rates below 1000 a second need no fractions) up to a tenth of a second's worth; a flood
# that finds its bucket empty is dropped (`storm`). Frames to a known port are never
# limited.

cdef enum:
    STORM_MILLI = 1000          # the buckets count thousandths of a frame
    STORM_BURST_MS = 100        # a bucket holds this long's worth of frames
    STORM_MAX_ELAPSED_MS = 86400000     # more than fills any bucket; keeps the product small


cdef inline uint64_t storm_burst(uint32_t rate) noexcept nogil:
    cdef uint64_t burst = <uint64_t>rate * STORM_BURST_MS     # == rate/s * 0.1 s * 1000
    return burst if burst >= STORM_MILLI else STORM_MILLI   # at least one frame


cdef void storm_fill(vale_port *p, uint64_t now_ms) noexcept nogil:
    """Add the tokens earned since the last fill (once a batch)."""
    cdef uint64_t elapsed = now_ms - p.storm_ms, add, burst
    cdef int c
    if elapsed == 0:
        return
    p.storm_ms = now_ms
    for c in range(STORM_CLASSES):
        if p.storm_rate[c]:
            burst = storm_burst(p.storm_rate[c])
            # Time earned, not a full bucket, after a pause: a bucket of one frame at a
            # rate under 10/s must not refill every 100 ms. A day caps the product.
            add = min(elapsed, STORM_MAX_ELAPSED_MS) * p.storm_rate[c]
            p.storm_tokens[c] = min(p.storm_tokens[c] + add, burst)


cdef inline int storm_class(const vale_desc *d) noexcept nogil:
    """Which bucket a flooded frame draws from."""
    if not (d.data[0] & 1):
        return STORM_UNKNOWN
    if (load_be16(d.data) & load_be16(d.data + 2) & load_be16(d.data + 4)) == 0xFFFF:
        return STORM_BROADCAST
    return STORM_MULTICAST


cdef inline bint storm_allows(vale_port *src, const vale_desc *d) noexcept nogil:
    """Whether a frame about to be flooded from src has a token left in its class's bucket
    (taking it)."""
    cdef int c = storm_class(d)
    if src.storm_rate[c] == 0:
        return True
    if src.storm_tokens[c] >= STORM_MILLI:
        src.storm_tokens[c] -= STORM_MILLI
        return True
    return False


cdef void port_set_storm(vale_switch *sw, vale_port *p, uint32_t broadcast, uint32_t multicast,
                         uint32_t unknown) noexcept nogil:
    """Set a port's storm-control rates (frames a second; 0 = no limit); buckets start full."""
    cdef int c
    p.storm_rate[STORM_BROADCAST] = broadcast
    p.storm_rate[STORM_MULTICAST] = multicast
    p.storm_rate[STORM_UNKNOWN] = unknown
    p.storm = broadcast != 0 or multicast != 0 or unknown != 0
    p.storm_ms = sw.now_ms
    for c in range(STORM_CLASSES):
        p.storm_tokens[c] = storm_burst(p.storm_rate[c])
