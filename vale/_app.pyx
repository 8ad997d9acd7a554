# cython: language_level=3
"""The data path of a memif client (vale.app): the shared memory it creates and hands
to the server, its two rings, and the frame loops, which run without the GIL.

One memfd region holds, as DPDK 22.11's client lays it out, the C2S ring at offset 0,
the S2C ring after it (each a 128-byte header and R 16-byte descriptors), then R buffers
of B bytes for each ring. The client writes `head` and the server `tail` on both rings.
The server is not trusted: every descriptor it wrote is read once and checked (region 0,
length at most B, inside the region) before a frame is made of it, a frame that fails is
counted (bad_descriptors) and dropped, and an index that claims more than was posted is
cut back to what was. Nothing outside the region is ever read or written.

Received frames are memoryviews into the region (read-only), valid until the batch is
released: the next receive, drain or release() gives their buffers back to the server.
The mapping itself outlives the Rings while any view of it exists, so an old view reads
stale bytes at worst, never freed memory. One thread may receive while another sends;
two threads must not use the same direction at once.
"""

import os

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_FillInfo, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy

from vale.includes.linux cimport *
from vale.includes.system cimport monotonic_ns, vale_cpu_relax, vale_unlikely

MAX_LOG2_RING = APP_MAX_LOG2_RING
MAX_BUFFER = APP_MAX_BUFFER
COOKIE = MEMIF_COOKIE
RING_HEADER = MEMIF_RING_HEADER
DESC_SIZE = MEMIF_DESC_SIZE
WAIT_RESULTS = ("nothing", "frames", "control", "interrupted")
COUNTERS = ("rx_frames", "rx_bytes", "tx_frames", "tx_bytes", "tx_no_room", "bad_descriptors",
            "kicks")


cdef inline uint32_t htonl32(uint32_t x) noexcept nogil:
    return ((x & 0xFF) << 24) | ((x & 0xFF00) << 8) | ((x >> 8) & 0xFF00) | (x >> 24)


cdef class Region:
    """One memfd, sealed against shrinking, mapped shared; a buffer (read-only) for the
    memoryviews of received frames, which keep it mapped."""

    def __cinit__(self, size_t size, str name="memif_region_0"):
        self.base = NULL
        self.fd = -1
        self.size = size
        cdef bytes encoded = name.encode()
        self.fd = memfd_create(encoded, MFD_CLOEXEC | MFD_ALLOW_SEALING)
        if self.fd < 0:
            raise OSError(errno, f"memfd_create: {os.strerror(errno)}")
        if ftruncate(self.fd, <long>size) != 0:
            raise OSError(errno, f"ftruncate: {os.strerror(errno)}")
        if fcntl(self.fd, F_ADD_SEALS, F_SEAL_SHRINK) != 0:
            raise OSError(errno, f"F_ADD_SEALS: {os.strerror(errno)}")
        cdef void *at = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                             self.fd, 0)
        if at == MAP_FAILED:
            raise OSError(errno, f"mmap: {os.strerror(errno)}")
        self.base = <char *>at

    def __dealloc__(self):
        if self.base != NULL:
            munmap(self.base, self.size)
            self.base = NULL
        self.close_fd()

    cdef void close_fd(self) noexcept:
        if self.fd >= 0:
            close(self.fd)
            self.fd = -1

    def __getbuffer__(self, Py_buffer *buffer, int flags):
        PyBuffer_FillInfo(buffer, self, self.base, self.size, 1, flags)

    def __releasebuffer__(self, Py_buffer *buffer):
        pass


cdef class Rings:
    """The client's memory for one connection: a region with one C2S and one S2C ring
    (R = 2**log2_ring_size slots of buffer_size bytes each) and an eventfd per ring.
    Made fresh for every connection; live from connected() until close()."""

    def __cinit__(self, uint32_t log2_ring_size=10, uint32_t buffer_size=2048):
        self.c2s_fd = -1
        self.s2c_fd = -1
        if log2_ring_size > APP_MAX_LOG2_RING:
            raise ValueError(f"log2_ring_size {log2_ring_size}: at most {APP_MAX_LOG2_RING}")
        if buffer_size < 1 or buffer_size > APP_MAX_BUFFER:
            raise ValueError(f"buffer_size {buffer_size}: 1 to {APP_MAX_BUFFER}")
        self.log2 = log2_ring_size
        self.nslots = 1u << log2_ring_size
        self.mask = self.nslots - 1
        self.buffer_size = buffer_size
        cdef uint32_t stride = MEMIF_RING_HEADER + MEMIF_DESC_SIZE * self.nslots
        self.s2c_offset = stride
        self.buffers = 2 * stride
        self.frames = <app_frame *>calloc(self.nslots, sizeof(app_frame))
        self.segments = <app_segment *>calloc(self.nslots, sizeof(app_segment))
        self.views = <Py_buffer *>calloc(APP_SEND_CHUNK, sizeof(Py_buffer))
        if self.frames == NULL or self.segments == NULL or self.views == NULL:
            raise MemoryError()
        self.region = Region(<size_t>self.buffers
                             + 2 * <size_t>self.nslots * <size_t>buffer_size)
        self.view = memoryview(self.region)
        self.c2s = <app_memif_ring *>self.region.base
        self.s2c = <app_memif_ring *>(self.region.base + self.s2c_offset)
        self.c2s_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
        self.s2c_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
        if self.c2s_fd < 0 or self.s2c_fd < 0:
            raise OSError(errno, f"eventfd: {os.strerror(errno)}")
        self.post_buffers(self.c2s, 0)
        self.post_buffers(self.s2c, self.nslots)

    def __dealloc__(self):
        free(self.frames)
        free(self.segments)
        free(self.views)
        if self.c2s_fd >= 0:
            close(self.c2s_fd)
        if self.s2c_fd >= 0:
            close(self.s2c_fd)

    cdef uint32_t buffer_at(self, uint32_t buffer) noexcept nogil:
        return self.buffers + buffer * self.buffer_size

    cdef void post_buffers(self, app_memif_ring *r, uint32_t first) noexcept nogil:
        """A fresh ring: its cookie, and descriptor j on buffer first + j, length B."""
        cdef uint32_t j
        cdef app_memif_desc *d
        r.cookie = MEMIF_COOKIE
        for j in range(self.nslots):
            d = app_desc(r, j)
            d.flags = 0
            d.region = 0
            d.offset = self.buffer_at(first + j)
            d.length = self.buffer_size

    # -- what the handshake sends, and its end ---------------------------------------------

    @property
    def region_fd(self) -> int:
        return self.region.fd

    @property
    def region_size(self) -> int:
        return self.region.size

    @property
    def c2s_offset(self) -> int:
        return 0

    @property
    def s2c_offset(self) -> int:
        return self.s2c_offset

    @property
    def c2s_eventfd(self) -> int:
        return self.c2s_fd

    @property
    def s2c_eventfd(self) -> int:
        return self.s2c_fd

    @property
    def log2_ring_size(self) -> int:
        return self.log2

    @property
    def buffer_size(self) -> int:
        return self.buffer_size

    @property
    def live(self) -> bool:
        return self.live

    def connected(self) -> None:
        """After CONNECTED: both rings start again at 0, the S2C ring says "I poll" and
        is filled with buffers, so the server can send. ValueError if the server broke a
        ring's cookie."""
        if self.c2s.cookie != MEMIF_COOKIE or self.s2c.cookie != MEMIF_COOKIE:
            raise ValueError("the server overwrote a ring's cookie")
        app_store16(&self.c2s.head, 0)
        app_store16(&self.c2s.tail, 0)
        app_store16(&self.s2c.head, 0)
        app_store16(&self.s2c.tail, 0)
        self.tx_head = self.tx_next = 0
        self.rx_head = self.rx_seen = self.rx_released = 0
        app_store16(&self.s2c.flags, MEMIF_RING_FLAG_MASK_INT)
        self.live = True
        with nogil:
            self.rx_refill()

    def stop(self) -> None:
        """No more frames either way: the connection is gone. The eventfds stay open
        until the Rings are freed, as a thread may still be using them."""
        self.live = False

    def close(self) -> None:
        """No more frames either way; the eventfds and the memfd are closed (the server
        holds its own copies). Views of received frames stay readable."""
        self.live = False
        if self.c2s_fd >= 0:
            close(self.c2s_fd)
            self.c2s_fd = -1
        if self.s2c_fd >= 0:
            close(self.s2c_fd)
            self.s2c_fd = -1
        self.region.close_fd()

    # -- receiving ---------------------------------------------------------------------------

    cdef bint rx_ready(self) noexcept nogil:
        return self.live and app_load_acquire16(&self.s2c.tail) != self.rx_seen

    cdef uint32_t rx_take(self, uint32_t max_frames) noexcept nogil:
        """Reads whole frames from rx_seen towards the server's tail, up to max_frames,
        into self.frames; returns how many. Bad ones are counted and left out; their
        slots are consumed all the same."""
        cdef uint16_t tail, seen = self.rx_seen
        cdef uint32_t avail, posted, taken = 0, nseg = 0, first, length, size
        cdef uint32_t limit = self.region.size
        cdef app_memif_desc d
        cdef bint bad
        if not self.live:
            return 0
        tail = app_load_acquire16(&self.s2c.tail)
        avail = <uint16_t>(tail - seen)
        posted = <uint16_t>(self.rx_head - seen)
        if vale_unlikely(avail > posted):       # the server claims buffers it never had
            self.bad_descriptors += 1
            avail = posted
        while avail > 0 and taken < max_frames:
            first = nseg
            length = 0
            bad = False
            while True:                         # one frame: descriptors up to one without NEXT
                app_desc_read(self.s2c, seen & self.mask, &d)
                seen += 1
                avail -= 1
                size = d.length
                if (d.region != 0 or size > self.buffer_size or d.offset > limit
                        or size > limit - d.offset):
                    bad = True
                else:
                    self.segments[nseg].offset = d.offset
                    self.segments[nseg].length = size
                    nseg += 1
                    length += size
                if not (d.flags & MEMIF_DESC_FLAG_NEXT):
                    break
                if avail == 0:                  # a chain cut off at the tail
                    bad = True
                    break
            if bad:
                self.bad_descriptors += 1
                nseg = first
                continue
            self.frames[taken].first = first
            self.frames[taken].nsegs = nseg - first
            self.frames[taken].length = length
            self.rx_bytes += length
            taken += 1
        self.rx_frames += taken
        self.rx_seen = seen
        return taken

    cdef void rx_refill(self) noexcept nogil:
        """Gives every slot read so far back to the server: length B, and offset, region
        and flags as first set (a server that changed them changes nothing lasting), then
        one release store of head."""
        cdef uint16_t head = self.rx_head
        cdef uint32_t n, i, slot
        cdef app_memif_desc *d
        if not self.live:
            return
        self.rx_released = self.rx_seen
        n = self.nslots - <uint16_t>(head - self.rx_released)
        if n == 0:
            return
        for i in range(n):
            slot = head & self.mask
            d = app_desc(self.s2c, slot)
            d.flags = 0
            d.region = 0
            d.offset = self.buffer_at(self.nslots + slot)
            d.length = self.buffer_size
            head += 1
        self.rx_head = head
        app_store_release16(&self.s2c.head, head)

    def receive(self, uint32_t max_frames=256) -> list:
        """Gives the last batch back, then takes up to max_frames frames: memoryviews
        into the region (a frame of several descriptors: a bytes copy). [] when none."""
        cdef uint32_t n, i, k
        cdef app_frame *f
        cdef app_segment *s
        cdef char *out
        cdef object copy
        with nogil:
            self.rx_refill()
            n = self.rx_take(max_frames)
        frames = [None] * n
        for i in range(n):
            f = &self.frames[i]
            s = &self.segments[f.first]
            if f.nsegs == 1:
                frames[i] = self.view[s.offset:s.offset + s.length]
            else:
                copy = PyBytes_FromStringAndSize(NULL, f.length)
                out = PyBytes_AS_STRING(copy)
                for k in range(f.nsegs):
                    memcpy(out, self.region.base + s[k].offset, s[k].length)
                    out += s[k].length
                frames[i] = copy
        return frames

    def release(self) -> None:
        """Gives the last batch's buffers back to the server now."""
        with nogil:
            self.rx_refill()

    def drain(self, uint32_t max_frames=4096) -> tuple:
        """Takes up to max_frames frames and gives them straight back, making nothing of
        them: (frames, bytes). For counting at line rate."""
        cdef uint32_t n = 0, got
        cdef uint64_t before = self.rx_bytes
        with nogil:
            self.rx_refill()
            while n < max_frames:
                got = self.rx_take(max_frames - n)
                self.rx_refill()
                if got == 0:
                    break
                n += got
        return n, self.rx_bytes - before

    cdef int rx_wait(self, int timeout_ms, int control_fd, uint64_t spin_ns) noexcept nogil:
        """Until the S2C ring has frames, control_fd (if >= 0) is readable, or timeout_ms
        passed: look for spin_ns, then clear MASK_INT so the server kicks, look once more
        (the fence orders our flag store before that load, as the server orders its tail
        store before its load of our flags), and sleep in poll()."""
        cdef pollfd fds[2]
        cdef uint64_t value, until
        cdef int nfds = 1, r, i
        if self.rx_ready():
            return WAIT_FRAMES
        if spin_ns > 0 and self.live:
            until = monotonic_ns() + spin_ns
            while monotonic_ns() < until:
                for i in range(64):
                    if self.rx_ready():
                        return WAIT_FRAMES
                    vale_cpu_relax()
        fds[0].fd = self.s2c_fd if self.live else -1
        fds[0].events = POLLIN
        fds[0].revents = 0
        fds[1].fd = control_fd
        fds[1].events = POLLIN
        fds[1].revents = 0
        if control_fd >= 0:
            nfds = 2
        if self.live:
            app_store16(&self.s2c.flags, 0)
            app_fence()
            if self.rx_ready():
                app_store16(&self.s2c.flags, MEMIF_RING_FLAG_MASK_INT)
                return WAIT_FRAMES
        r = poll(fds, nfds, timeout_ms)
        if self.live:
            app_store16(&self.s2c.flags, MEMIF_RING_FLAG_MASK_INT)
            if fds[0].revents & POLLIN:
                read(self.s2c_fd, &value, 8)
        if r < 0:
            return WAIT_INTERRUPTED if errno == EINTR else WAIT_NOTHING
        if nfds == 2 and fds[1].revents:
            return WAIT_CONTROL
        return WAIT_FRAMES if self.rx_ready() else WAIT_NOTHING

    def wait(self, double timeout, int control_fd=-1, double spin=0.0) -> str:
        """Sleeps (GIL released) until frames come, control_fd has something, or timeout
        seconds pass; first looks for spin seconds without sleeping. One of WAIT_RESULTS."""
        cdef int ms = <int>(timeout * 1000.0 + 0.999) if timeout > 0 else 0
        cdef uint64_t spin_ns = <uint64_t>(spin * 1e9) if spin > 0 else 0
        cdef int result
        with nogil:
            result = self.rx_wait(ms, control_fd, spin_ns)
        return WAIT_RESULTS[result]

    # -- sending -----------------------------------------------------------------------------

    cdef void tx_begin(self) noexcept nogil:
        cdef uint32_t used = <uint16_t>(self.tx_next - app_load_acquire16(&self.c2s.tail))
        # A tail beyond our head is the server's lie: no room until it takes it back.
        self.tx_free = self.nslots - used if used <= self.nslots else 0

    cdef uint32_t tx_put(self, const char *data, size_t length) noexcept nogil:
        """Copies one frame into the next free slots (a chain if it is longer than B);
        returns the offset of its first buffer, or 0 when it does not fit (nothing
        changes). Lengths, flags, region and offset are all written, whatever was there."""
        cdef uint32_t need = 1, slot, at, chunk, first = 0
        cdef uint16_t next = self.tx_next
        cdef app_memif_desc *d
        if length > self.buffer_size:
            need = <uint32_t>((length + self.buffer_size - 1) // self.buffer_size)
        if need > self.tx_free:
            return 0
        while True:
            slot = next & self.mask
            at = self.buffer_at(slot)
            if first == 0:
                first = at
            chunk = self.buffer_size if length > self.buffer_size else <uint32_t>length
            memcpy(self.region.base + at, data, chunk)
            d = app_desc(self.c2s, slot)
            d.region = 0
            d.offset = at
            d.length = chunk
            data += chunk
            length -= chunk
            next += 1
            if length == 0:
                d.flags = 0
                break
            d.flags = MEMIF_DESC_FLAG_NEXT
        self.tx_next = next
        self.tx_free -= need
        self.tx_frames += 1
        return first

    cdef void tx_publish(self) noexcept nogil:
        """One release store of head for what was queued, then one kick unless the server
        masked them (the fence: our head store before its flags load)."""
        cdef uint64_t one = 1
        if self.tx_next == self.tx_head:
            return
        self.tx_head = self.tx_next
        app_store_release16(&self.c2s.head, self.tx_head)
        app_fence()
        if not (app_load16(&self.c2s.flags) & MEMIF_RING_FLAG_MASK_INT):
            if write(self.c2s_fd, &one, 8) == 8:
                self.kicks += 1

    def send(self, frames) -> int:
        """Queues frames (bytes-like objects) in order while they fit, then publishes them
        with one kick: how many were queued. ValueError for a frame longer than the whole
        ring (the ones before it are queued and published)."""
        cdef Py_ssize_t total, done = 0, k, got, i, usable = 0, fitted = 0
        cdef size_t largest = <size_t>self.nslots * self.buffer_size
        cdef Py_buffer *v
        items = frames if isinstance(frames, (list, tuple)) else list(frames)
        total = len(items)
        if not self.live:
            self.tx_no_room += total
            return 0
        too_big = None
        with nogil:
            self.tx_begin()
        while done < total:
            k = min(total - done, <Py_ssize_t>APP_SEND_CHUNK)
            got = 0
            fitted = 0
            try:
                for i in range(k):
                    v = &self.views[i]
                    PyObject_GetBuffer(items[done + i], v, PyBUF_SIMPLE)
                    got += 1
                    if <size_t>v.len > largest:
                        too_big = v.len
                        break
                usable = got - 1 if too_big is not None else got
                with nogil:
                    while fitted < usable:
                        v = &self.views[fitted]
                        if self.tx_put(<const char *>v.buf, <size_t>v.len) == 0:
                            break
                        self.tx_bytes += <size_t>v.len
                        fitted += 1
            finally:
                for i in range(got):
                    PyBuffer_Release(&self.views[i])
            done += fitted
            if fitted < k:
                break
        with nogil:
            self.tx_publish()
        if too_big is not None and fitted == usable:
            raise ValueError(f"a frame of {too_big} bytes is longer than the ring holds "
                             f"({self.nslots} slots of {self.buffer_size}); "
                             f"{done} frames before it were queued")
        self.tx_no_room += total - done
        return done

    def send_copies(self, frame, uint32_t count, Py_ssize_t counter_at=-1,
                    uint32_t counter=0) -> int:
        """Queues up to count copies of one frame, each with a 32-bit counter (network
        order) at byte counter_at (none if negative), the first copy's being counter; one
        publish, one kick: how many were queued. For traffic generators."""
        cdef const uint8_t[::1] data = frame
        cdef size_t length = data.shape[0]
        cdef uint32_t n = 0, at
        cdef uint32_t value
        if counter_at >= 0 and (<size_t>counter_at + 4 > length
                                or <size_t>counter_at + 4 > self.buffer_size):
            raise ValueError("the counter must lie within the frame's first buffer")
        if length > <size_t>self.nslots * self.buffer_size:
            raise ValueError(f"a frame of {length} bytes is longer than the ring holds")
        if not self.live:
            self.tx_no_room += count
            return 0
        cdef const char *p = <const char *>&data[0] if length > 0 else NULL
        with nogil:
            self.tx_begin()
            while n < count:
                at = self.tx_put(p, length)
                if at == 0:
                    break
                if counter_at >= 0:
                    value = htonl32(counter + n)
                    memcpy(self.region.base + at + counter_at, &value, 4)
                n += 1
            self.tx_bytes += <uint64_t>n * length
            self.tx_no_room += count - n
            self.tx_publish()
        return n

    # -- counters ----------------------------------------------------------------------------

    def counters(self) -> dict:
        """COUNTERS and their values."""
        return dict(zip(COUNTERS, (self.rx_frames, self.rx_bytes, self.tx_frames,
                                   self.tx_bytes, self.tx_no_room, self.bad_descriptors,
                                   self.kicks)))
