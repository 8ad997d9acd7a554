# Frame rings: fixed slots (offset, length, flags) over one contiguous, cache-line
# aligned buffer area, with free-running producer (head) and consumer (tail) indexes.
# One producer and one consumer; the forwarding code is the producer of TX rings and
# the consumer of RX rings.

cdef void ring_free(vale_ring *r) noexcept nogil:
    free(r.buf)
    free(r.slots)
    free(r.vnets)
    r.buf = NULL
    r.slots = NULL
    r.vnets = NULL


cdef int ring_init(vale_ring *r, uint32_t nslots, uint32_t slot_size) noexcept nogil:
    """Allocate a ring; 0 on success, -1 when out of memory."""
    cdef void *mem = NULL
    cdef size_t size = <size_t>nslots * slot_size
    cdef uint32_t i
    r.buf = NULL
    r.slots = NULL
    r.vnets = NULL
    # One chunk of slack at the end: a frame whose tag was taken out starts 4 bytes into
    # its slot, and copying it in whole chunks may read that far past the last slot.
    if posix_memalign(&mem, HUGE_ALIGN if size >= HUGE_ALIGN else 4096,
                      size + VALE_SLOT_ALIGN) != 0:
        return -1
    if size >= HUGE_ALIGN:
        madvise(mem, size, MADV_HUGEPAGE)   # fewer TLB misses in big rings and tables
    memset(mem, 0, size + VALE_SLOT_ALIGN)
    r.buf = <char *>mem
    r.slots = <vale_slot *>calloc(nslots, sizeof(vale_slot))
    r.vnets = <vale_vnet *>calloc(nslots, sizeof(vale_vnet))
    if r.slots == NULL or r.vnets == NULL:
        ring_free(r)
        return -1
    r.nslots = nslots
    r.mask = nslots - 1
    r.slot_size = slot_size
    r.head = 0
    r.tail = 0
    for i in range(nslots):
        r.slots[i].off = i * slot_size
    return 0


cdef inline uint32_t ring_count(const vale_ring *r) noexcept nogil:
    """Frames waiting to be consumed."""
    return r.head - r.tail


cdef inline uint32_t ring_space(const vale_ring *r) noexcept nogil:
    """Free slots a producer may fill."""
    return r.nslots - (r.head - r.tail)


cdef inline uint32_t round64(uint32_t n) noexcept nogil:
    """n rounded up to whole 64-byte chunks (VALE_SLOT_ALIGN)."""
    return (n + VALE_SLOT_ALIGN - 1) & ~(<uint32_t>VALE_SLOT_ALIGN - 1)


cdef inline void copy_frame(char *dst, const char *src, uint32_t length) noexcept nogil:
    """Copy a frame between two padded, 64-byte aligned slots.

    Both ends are slots whose size is a multiple of 64, so copying whole 64-byte chunks
    never leaves either buffer and lets the compiler use fixed-size moves for small frames.
    """
    if length <= 64:
        memcpy(dst, src, 64)
    else:
        memcpy(dst, src, round64(length))
