# Declarations of the memif client's data path (vale/_app.pyx): the layout of memif 2.0's
# rings and descriptors in shared memory (DPDK 22.11, libmemif), and every field of Region
# and Rings. The code is in _app.pyx.

cimport cython
from cpython.buffer cimport Py_buffer
from libc.stdint cimport uint16_t, uint32_t, uint64_t


cdef extern from *:
    """
    #include <stddef.h>
    #include <stdint.h>
    /* memif_desc_t */
    typedef struct {
        uint16_t flags;
        uint16_t region;
        uint32_t length;
        uint32_t offset;
        uint32_t metadata;
    } app_memif_desc;
    /* memif_ring_t with 64-byte cache lines: the client writes head, the server tail, each
       on a line of its own; the descriptors follow the 128-byte header. */
    typedef struct {
        uint32_t cookie;
        uint16_t flags;
        uint16_t head;
        uint8_t pad0[56];
        uint16_t tail;
        uint8_t pad1[62];
    } app_memif_ring;
    _Static_assert(sizeof(app_memif_desc) == 16, "memif descriptor: 16 bytes");
    _Static_assert(offsetof(app_memif_ring, tail) == 64, "memif ring: tail at 64");
    _Static_assert(sizeof(app_memif_ring) == 128, "memif ring: 128-byte header");

    static inline app_memif_desc *app_desc(app_memif_ring *r, uint32_t slot) {
        return (app_memif_desc *)((char *)r + sizeof(app_memif_ring)) + slot;
    }
    /* A descriptor the server wrote, read once: what is checked is what is used. */
    static inline void app_desc_read(app_memif_ring *r, uint32_t slot, app_memif_desc *out) {
        const volatile app_memif_desc *d = app_desc(r, slot);
        out->flags = d->flags;
        out->region = d->region;
        out->length = d->length;
        out->offset = d->offset;
    }
    static inline uint16_t app_load_acquire16(const volatile uint16_t *p) {
        return __atomic_load_n(p, __ATOMIC_ACQUIRE);
    }
    static inline void app_store_release16(volatile uint16_t *p, uint16_t v) {
        __atomic_store_n(p, v, __ATOMIC_RELEASE);
    }
    static inline uint16_t app_load16(const volatile uint16_t *p) {
        return __atomic_load_n(p, __ATOMIC_RELAXED);
    }
    static inline void app_store16(volatile uint16_t *p, uint16_t v) {
        __atomic_store_n(p, v, __ATOMIC_RELAXED);
    }
    static inline void app_fence(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
    """
    ctypedef struct app_memif_desc:
        uint16_t flags
        uint16_t region
        uint32_t length
        uint32_t offset
        uint32_t metadata
    ctypedef struct app_memif_ring:
        uint32_t cookie
        uint16_t flags
        uint16_t head
        uint16_t tail
    app_memif_desc *app_desc(app_memif_ring *r, uint32_t slot) nogil
    void app_desc_read(app_memif_ring *r, uint32_t slot, app_memif_desc *out) nogil
    uint16_t app_load_acquire16(const uint16_t *p) nogil
    void app_store_release16(uint16_t *p, uint16_t v) nogil
    uint16_t app_load16(const uint16_t *p) nogil
    void app_store16(uint16_t *p, uint16_t v) nogil
    void app_fence() nogil


cdef enum:
    MEMIF_COOKIE = 0x3E31F20
    MEMIF_RING_FLAG_MASK_INT = 1    # ring.flags, set by the ring's receiver: "I poll, no kicks"
    MEMIF_DESC_FLAG_NEXT = 1        # the frame goes on in the next descriptor
    MEMIF_RING_HEADER = 128
    MEMIF_DESC_SIZE = 16
    APP_MAX_LOG2_RING = 14          # R <= 2^14, so u16 index arithmetic stays unambiguous
    APP_MAX_BUFFER = 65535          # DPDK's bsize range
    APP_SEND_CHUNK = 256            # frames whose buffers send() holds at once

cdef enum:
    WAIT_NOTHING = 0                # timed out, or woken for nothing
    WAIT_FRAMES = 1                 # the S2C ring has frames
    WAIT_CONTROL = 2                # the control socket has something (a message, EOF)
    WAIT_INTERRUPTED = 3            # a signal: let Python run its handler


ctypedef struct app_segment:        # one checked descriptor of a received frame
    uint32_t offset
    uint32_t length

ctypedef struct app_frame:          # one received frame: its segments, in order
    uint32_t first                  # index into Rings.segments
    uint32_t nsegs
    uint32_t length                 # all its segments'


@cython.final
cdef class Region:
    cdef char *base                 # the mapping (MAP_SHARED), NULL once unmapped
    cdef size_t size
    cdef int fd                     # the memfd, -1 once closed

    cdef void close_fd(self) noexcept


@cython.final
cdef class Rings:
    cdef Region region
    cdef object view                # memoryview(region): received frames are slices of it
    cdef app_memif_ring *c2s        # client to server: send() fills it
    cdef app_memif_ring *s2c        # server to client: receive() empties it
    cdef uint32_t log2
    cdef uint32_t nslots            # R
    cdef uint32_t mask              # R - 1
    cdef uint32_t buffer_size       # B
    cdef uint32_t s2c_offset        # where the S2C ring's header is
    cdef uint32_t buffers           # where slot 0 of the C2S ring's buffers is
    cdef int c2s_fd                 # eventfd: we kick the server
    cdef int s2c_fd                 # eventfd: the server kicks us
    cdef bint live                  # between connected() and close()
    # C2S: what we published (head) and what is queued but not yet published.
    cdef uint16_t tx_head
    cdef uint16_t tx_next
    cdef uint32_t tx_free           # room left for this call, from the tail read at its start
    # S2C: posted to the server (head), read (seen), given back (released).
    cdef uint16_t rx_head
    cdef uint16_t rx_seen
    cdef uint16_t rx_released
    cdef app_frame *frames          # the last batch taken (R entries)
    cdef app_segment *segments      # their segments (R entries)
    cdef Py_buffer *views           # send(): the frames' buffers (APP_SEND_CHUNK entries)
    cdef uint64_t rx_frames
    cdef uint64_t rx_bytes
    cdef uint64_t tx_frames
    cdef uint64_t tx_bytes
    cdef uint64_t tx_no_room
    cdef uint64_t bad_descriptors
    cdef uint64_t kicks

    cdef uint32_t buffer_at(self, uint32_t buffer) noexcept nogil
    cdef void post_buffers(self, app_memif_ring *r, uint32_t first) noexcept nogil
    cdef uint32_t rx_take(self, uint32_t max_frames) noexcept nogil
    cdef void rx_refill(self) noexcept nogil
    cdef bint rx_ready(self) noexcept nogil
    cdef int rx_wait(self, int timeout_ms, int control_fd, uint64_t spin_ns) noexcept nogil
    cdef void tx_begin(self) noexcept nogil
    cdef uint32_t tx_put(self, const char *data, size_t length) noexcept nogil
    cdef void tx_publish(self) noexcept nogil
