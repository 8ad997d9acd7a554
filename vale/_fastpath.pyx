# cython: language_level=3
"""The data plane of vale: frame rings, the MAC table and batched forwarding.

Everything per frame is C and runs without the GIL; SwitchCore is the thin object
Python drives it through. It takes no names and knows nothing of interfaces: vale.switch
puts names, parsing and policy on top. Each method holds the switch lock, which the
forwarding code also holds for one batch at a time, so control changes never meet a
half-done batch.
"""

import os

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memmove, memset

from vale.includes.linux cimport *
from vale.includes.system cimport (
    MADV_HUGEPAGE, madvise, monotonic_ms, monotonic_ns, posix_memalign, pthread_mutex_destroy,
    realtime_ns, thread_cpu_ns, pthread_create, pthread_join, pthread_t,
    pthread_mutex_init, pthread_mutex_lock, pthread_mutex_t, pthread_mutex_unlock,
    vale_cpu_relax, vale_likely, vale_prefetch, vale_unlikely,
)

# The layers, bottom up: rings and the MAC table; the VLAN and storm-control rules the
# lookup stage and the bridge apply; the bridge; the port back ends; capture; the thread.
include "ring.pxi"
include "offload.pxi"
include "vlan.pxi"
include "fdb.pxi"
include "storm.pxi"
include "guard.pxi"
include "bridge.pxi"
include "loopguard.pxi"
include "memory.pxi"
include "afpacket.pxi"
include "tap.pxi"
include "vhost.pxi"
include "memif.pxi"
include "capture.pxi"
include "loop.pxi"


cdef void register() noexcept:
    """Each back end's operations, and the lookup stages other than the inlined one."""
    PORT_OPS[<int>PORT_MEMORY] = vale_port_ops(
        name=b"memory", take=memory_take, release=memory_release, prepare=NULL,
        put=memory_put, flush=memory_flush, failed=memory_failed, close=memory_close,
        kernel_drops=NULL, info=memory_info, polled=False, direct=True, device=False)
    PORT_OPS[<int>PORT_PACKET] = vale_port_ops(
        name=b"packet", take=packet_take, release=packet_release, prepare=packet_prepare,
        put=packet_put, flush=packet_flush, failed=packet_failed, close=packet_close,
        kernel_drops=packet_kernel_drops, info=packet_info, polled=True, direct=False,
        device=True)
    PORT_OPS[<int>PORT_TAP] = vale_port_ops(
        name=b"tap", take=tap_take, release=tap_release, prepare=NULL, put=tap_put,
        flush=tap_flush, failed=tap_failed, close=tap_close, kernel_drops=NULL,
        info=tap_info, polled=True, direct=False, device=True)
    PORT_OPS[<int>PORT_VHOST] = vale_port_ops(
        name=b"vhost-user", take=vhost_take, release=vhost_release, prepare=vhost_prepare,
        put=vhost_put, flush=vhost_flush, failed=vhost_failed, close=vhost_close,
        kernel_drops=NULL, info=vhost_info, polled=True, direct=False, device=False)
    PORT_OPS[<int>PORT_MEMIF] = vale_port_ops(
        name=b"memif", take=memif_take, release=memif_release, prepare=memif_prepare,
        put=memif_put, flush=memif_flush, failed=memif_failed, close=memif_close,
        kernel_drops=NULL, info=memif_info, polled=True, direct=False, device=False)
    LOOKUPS[<int>LOOKUP_LEARNING] = NULL
    LOOKUPS[<int>LOOKUP_HUB] = hub_lookup


register()


# The drop reasons' names, in the order of the DROP_* enum (_fastpath.pxd): the one list
# the API, the metrics, the model and the benchmarks read.
DROP_REASONS = ("ring_full", "runt", "own_port", "too_big", "learn_limit", "learn_banned",
                "bad_offload", "tx_error", "vlan", "storm", "loop", "spoofed", "host", "bpdu",
                "rx_stuck", "bad_descriptor")
if len(DROP_REASONS) != N_DROP_REASONS:
    raise ImportError("DROP_REASONS and the DROP_* enum of _fastpath.pxd differ")
MAX_PORTS = VALE_MAX_PORTS
MAX_BATCH = VALE_MAX_BATCH
DEFAULT_BATCH = VALE_DEFAULT_BATCH
DEFAULT_SPIN_US = VALE_DEFAULT_SPIN_US
SLOT_ALIGN = VALE_SLOT_ALIGN
MAX_SLOT_SIZE = 65536 + 1024        # a 64 KiB GSO frame with its headers
MAX_RING_SLOTS = 1 << 20
MAX_RING_BYTES = 1 << 30
MAX_FDB_CAPACITY = VALE_MAX_FDB_CAPACITY
HIST_BOUNDS = tuple(1 << i for i in range(VALE_HIST_BUCKETS))
DEFAULT_RX_FRAMES = 256
MAX_RX_FRAMES = 4096
FRAME_SLACK = 18                    # a frame may be its MTU plus an Ethernet header and a tag
MAX_MTU = 65535 - FRAME_SLACK
VLAN_MODES = ("none", "access", "trunk")      # in the order of the VlanMode enum
MAX_VLAN = VALE_VLAN_MAX
KEY_MAC_MASK = MAC_MASK         # a MAC table key: the MAC in these bits, its VLAN above
LOOKUP_NAMES = ("learning", "hub")            # in the order of the LookupKind enum
# What keeps a port's known unicast off the kernel fast path, in blocker_bits' order.
BLOCKER_NAMES = ("lookup", "down", "loop blocked", "bpdu blocked", "vlan", "offloads off",
                 "mirror", "mirror target", "capture", "allowed_macs", "sticky", "rx_stuck")
ALLOWED_MACS_BIT = BLOCKER_NAMES.index("allowed_macs")
MAX_STORM_RATE = 10_000_000
BPDU_MODES = ("forward", "drop", "guard")     # in the order of the BpduMode enum
MAX_ALLOWED_MACS = VALE_MAX_ALLOWED
MIN_RX_FRAMES = 16
MAX_MOVE_LIMIT = 255
MAX_SECONDS = 1e7               # ageing, move window, ban
MAX_BUSY_POLL_US = 1_000_000


cdef extern from *:
    """
    #define __vale_atomic_add(p, v) __atomic_add_fetch((p), (v), __ATOMIC_ACQ_REL)
    """
    uint32_t __vale_atomic_add(uint32_t *p, int v) nogil


cdef inline int check_range(str what, object value, uint64_t low, uint64_t high) except -1:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{what} must be an integer, not {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{what} must be between {low} and {high}, not {value}")
    return 0


cdef inline uint64_t seconds_to_ms(str what, object seconds, double high) except? 0:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise ValueError(f"{what} must be a number of seconds, not {seconds!r}")
    if not 0 <= seconds <= high:
        raise ValueError(f"{what} must be between 0 and {high:g} seconds, not {seconds}")
    return <uint64_t>(seconds * 1000.0 + 0.5)


cdef tuple parse_vlan(object vlan, object native, uint64_t *words):
    """A port's VLAN setting as (mode, native VLAN), its set of VLANs into words; ValueError
    for anything else: an unknown mode, a VLAN outside 1..4094, a trunk carrying nothing."""
    cdef uint32_t vid
    memset(words, 0, VALE_VLAN_WORDS * sizeof(uint64_t))
    if vlan == "none":
        if native not in (None, 0):
            raise ValueError("a port without a VLAN mode has no native VLAN")
        return VLAN_NONE, 0
    if not isinstance(vlan, (tuple, list)) or len(vlan) != 2 or vlan[0] not in VLAN_MODES[1:]:
        raise ValueError(f'vlan must be "none", ("access", VLAN) or ("trunk", VLANs), not {vlan!r}')
    if vlan[0] == "access":
        check_range("an access VLAN", vlan[1], 1, VALE_VLAN_MAX)
        if native not in (None, 0, vlan[1]):
            raise ValueError("an access port's native VLAN is its VLAN")
        return VLAN_ACCESS, vlan[1]
    ids = list(vlan[1])
    for v in ids:
        check_range("a trunk's VLAN", v, 1, VALE_VLAN_MAX)
        vid = v
        words[vid >> 6] |= <uint64_t>1 << (vid & 63)
    native = 0 if native is None else native
    check_range("a native VLAN", native, 0, VALE_VLAN_MAX)
    if not ids and native == 0:
        raise ValueError("a trunk must carry at least one VLAN")
    return VLAN_TRUNK, native


def check_vlan(vlan, native=None):
    """ValueError when set_port(vlan=vlan, native=native) would refuse the two; changes
    nothing (for settings kept for a port that is not there yet)."""
    cdef uint64_t words[VALE_VLAN_WORDS]
    parse_vlan(vlan, native, words)


cdef inline int check_key(uint64_t key) except -1:
    """A MAC table key: a unicast, non-zero MAC in the low 48 bits, a VLAN (0..4094) above."""
    if key & 0xFFFFFFFFFFFF == 0 or key & 1 or key >> 48 > VALE_VLAN_MAX:
        raise ValueError("a static entry needs a unicast, non-zero MAC and a VLAN of 0..4094")
    return 0


cdef class SwitchCore:
    """One learning switch: up to MAX_PORTS ports, each with an RX and a TX ring."""

    def __cinit__(self, *, capacity=65536, ageing=300.0, batch=VALE_DEFAULT_BATCH,
                  bint manual_clock=False, move_limit=4, move_window=10.0, ban=60.0,
                  loop_hold=30.0):
        self.sw = NULL
        self.lock_ready = False
        self.listed_macs = {}
        cdef epoll_event ev
        check_range("fdb capacity", capacity, 1, MAX_FDB_CAPACITY)
        check_range("batch", batch, 1, VALE_MAX_BATCH)
        check_range("move limit", move_limit, 0, MAX_MOVE_LIMIT)
        self.sw = <vale_switch *>calloc(1, sizeof(vale_switch))
        if self.sw == NULL:
            raise MemoryError()
        # Before anything can raise: __dealloc__ closes the descriptors that are >= 0.
        self.sw.epoll_fd = -1
        self.sw.wake_fd = -1
        self.sw.notify_fd = -1
        self.sw.journal_fd = -1
        if pthread_mutex_init(&self.lock, NULL) != 0:
            raise MemoryError("cannot initialise the switch lock")
        self.lock_ready = True
        self.sw.fdb.ageing_ms = seconds_to_ms("ageing", ageing, MAX_SECONDS)
        self.sw.fdb.move_window_ms = seconds_to_ms("move window", move_window, MAX_SECONDS)
        self.sw.fdb.ban_ms = seconds_to_ms("ban time", ban, MAX_SECONDS)
        self.sw.fdb.move_limit = move_limit
        self.sw.loop_hold_ms = seconds_to_ms("loop hold", loop_hold, MAX_SECONDS)
        self.sw.loop_id = int.from_bytes(os.urandom(8), "little") | 1     # never 0
        self.sw.batch = batch
        self.sw.busy_poll_us = VALE_DEFAULT_SPIN_US
        self.sw.manual_clock = manual_clock
        self.sw.now_ms = 0 if manual_clock else monotonic_ms()
        if fdb_alloc(&self.sw.fdb, capacity) != 0:
            raise MemoryError(f"cannot allocate an FDB of {capacity} entries")
        self.sw.soft_buf = <char *>calloc(SOFT_BUF_SIZE + VALE_SLOT_ALIGN, 1)
        if self.sw.soft_buf == NULL:
            raise MemoryError()
        self.sw.epoll_fd = epoll_create1(EPOLL_CLOEXEC)
        self.sw.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
        self.sw.notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
        self.sw.journal_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
        if (self.sw.epoll_fd < 0 or self.sw.wake_fd < 0 or self.sw.notify_fd < 0
                or self.sw.journal_fd < 0):
            raise OSError(errno, os.strerror(errno))
        ev.events = EPOLLIN
        ev.data.u32 = WAKE_EVENT
        if epoll_ctl(self.sw.epoll_fd, EPOLL_CTL_ADD, self.sw.wake_fd, &ev) != 0:
            raise OSError(errno, os.strerror(errno))

    def __dealloc__(self):
        cdef uint32_t i
        if self.sw != NULL:
            for i in range(VALE_MAX_PORTS):
                if self.sw.ports[i] != NULL:
                    port_free(self.sw.ports[i])
            fdb_release(&self.sw.fdb)
            free(self.sw.soft_buf)
            ring_free(&self.sw.cap)
            free(self.sw.cap_stamps)
            for fd in (self.sw.epoll_fd, self.sw.wake_fd, self.sw.notify_fd,
                       self.sw.journal_fd):
                if fd >= 0:
                    close(fd)
            free(self.sw)
            self.sw = NULL
        if self.lock_ready:
            pthread_mutex_destroy(&self.lock)

    # -- locking and helpers ---------------------------------------------------------

    cdef inline void acquire(self) noexcept:
        # Say so first: the forwarding thread yields between rounds while anyone waits.
        __vale_atomic_add(&self.sw.control_waiting, 1)
        with nogil:
            pthread_mutex_lock(&self.lock)
        __vale_atomic_add(&self.sw.control_waiting, -1)

    cdef inline void release(self) noexcept:
        pthread_mutex_unlock(&self.lock)

    cdef vale_port *port_at(self, object index) except NULL:
        check_range("port index", index, 0, VALE_MAX_PORTS - 1)
        cdef vale_port *p = self.sw.ports[<uint32_t>index]
        if p == NULL:
            raise ValueError(f"no port with index {index}")
        return p

    cdef void refresh_clock(self) noexcept nogil:
        if not self.sw.manual_clock:
            self.sw.now_ms = monotonic_ms()
        fdb_expire(self.sw)

    # -- ports -----------------------------------------------------------------------

    def add_port(self, *, rx_slots=1024, tx_slots=1024, slot_size=2048, learning=True,
                 flood=True, learn_limit=0, vnet=False):
        """Add a port with in-memory rings at the lowest free index; returns the index.
        vnet: frames keep their virtio-net header (offloads pass through) instead of
        being segmented and checksummed for it."""
        cdef vale_port *p
        for what, n in (("rx_slots", rx_slots), ("tx_slots", tx_slots)):
            check_range(what, n, 1, MAX_RING_SLOTS)
            if n & (n - 1):
                raise ValueError(f"{what} must be a power of two, not {n}")
        check_range("slot_size", slot_size, VALE_SLOT_ALIGN, MAX_SLOT_SIZE)
        if slot_size % VALE_SLOT_ALIGN:
            raise ValueError(f"slot_size must be a multiple of {VALE_SLOT_ALIGN}, not {slot_size}")
        if max(rx_slots, tx_slots) * slot_size > MAX_RING_BYTES:
            raise ValueError(f"a ring may take at most {MAX_RING_BYTES} bytes")
        check_range("learn_limit", learn_limit, 0, MAX_FDB_CAPACITY)
        self.acquire()
        try:
            p = self.new_port(learning, flood, learn_limit)
            if ring_init(&p.rx, rx_slots, slot_size) != 0:
                free(p)
                raise MemoryError("cannot allocate the RX ring")
            if ring_init(&p.tx, tx_slots, slot_size) != 0:
                ring_free(&p.rx)
                free(p)
                raise MemoryError("cannot allocate the TX ring")
            p.kind = PORT_MEMORY
            p.vnet = vnet
            p.max_frame = slot_size
            p.rx_max = slot_size
            return self.activate(p)
        finally:
            self.release()

    def add_packet_port(self, int ifindex, *, int receive_on=0, mtu=1500,
                        rx_frames=DEFAULT_RX_FRAMES, rx_idle_frames=0, learning=True,
                        flood=True, learn_limit=0, vnet=True):
        """Attach the interface with this index through a packet socket (promiscuous,
        virtio-net headers on); returns the port index. OSError when the kernel refuses.
        receive_on: the interface the socket receives on, when not the port's own (the
        kernel fast path's upcall device; port_receive_from moves it later). vnet False:
        offloaded frames are segmented and checksummed before they reach it.
        rx_idle_frames: the receive ring starts this big and grows to rx_frames at the
        first burst (0: rx_frames from the start)."""
        cdef vale_port *p
        cdef int err
        cdef uint32_t frames, idle
        cdef epoll_event ev
        check_range("mtu", mtu, 68, MAX_MTU)
        check_range("rx_frames", rx_frames, MIN_RX_FRAMES, MAX_RX_FRAMES)
        check_range("rx_idle_frames", rx_idle_frames, 0, MAX_RX_FRAMES)
        check_range("learn_limit", learn_limit, 0, MAX_FDB_CAPACITY)
        frames = rx_frames
        idle = rx_idle_frames
        # The socket and its rings are made without the forwarding lock: each ring and
        # bind is an RCU grace period (10-25 ms) the other ports need not wait for. Only
        # this thread adds ports, so the free index new_port found stays free meanwhile.
        p = self.new_port(learning, flood, learn_limit)
        p.kind = PORT_PACKET
        p.vnet = vnet
        p.max_frame = mtu + FRAME_SLACK
        p.rx_max = TRUNCATED - 1
        with nogil:
            err = packet_open(p, ifindex, receive_on, frames, idle)
        if err != 0:
            free(p)
            if err == ENOPROTOOPT:
                raise OSError(err, "this kernel's packet sockets lack an option vale "
                                   "needs (PACKET_IGNORE_OUTGOING: Linux 4.20 or later)")
            raise OSError(err, os.strerror(err))
        self.acquire()
        try:
            ev.events = EPOLLIN
            ev.data.u32 = p.index
            if epoll_ctl(self.sw.epoll_fd, EPOLL_CTL_ADD, p.fd, &ev) != 0:
                err = errno
                packet_close(p)
                free(p)
                raise OSError(err, os.strerror(err))
            return self.activate(p)
        finally:
            self.release()

    def add_tap_port(self, int fd, *, mtu=1500, learning=True, flood=True, learn_limit=0,
                     vnet=True):
        """Take a TAP device's tun fd (opened IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, non-
        blocking, offloads set) as a port; the switch closes it when the port goes.
        Returns the port index."""
        cdef vale_port *p
        cdef int err
        cdef epoll_event ev
        check_range("mtu", mtu, 68, MAX_MTU)
        check_range("learn_limit", learn_limit, 0, MAX_FDB_CAPACITY)
        self.acquire()
        try:
            p = self.new_port(learning, flood, learn_limit)
            if ring_init(&p.rx, self.sw.batch if self.sw.batch > 1 else 2, TAP_SLOT_SIZE) != 0:
                free(p)
                raise MemoryError("cannot allocate the TAP's receive ring")
            p.kind = PORT_TAP
            p.vnet = vnet
            p.max_frame = mtu + FRAME_SLACK
            p.rx_max = TAP_SLOT_SIZE - VALE_SLOT_ALIGN - VNET_HDR_LEN
            ev.events = EPOLLIN
            ev.data.u32 = p.index
            if epoll_ctl(self.sw.epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0:
                err = errno
                ring_free(&p.rx)
                free(p)
                raise OSError(err, os.strerror(err))
            p.fd = fd
            return self.activate(p)
        finally:
            self.release()

    # -- vhost-user ports: what the protocol (vale/vhost.py) sets up -------------------

    def add_vhost_port(self, *, learning=True, flood=True, learn_limit=0):
        """Add a vhost-user port, its rings not yet set up (vhost_memory, vhost_ring);
        returns the index."""
        cdef vale_port *p
        cdef vale_vhost *vh
        cdef void *stage = NULL
        cdef uint32_t q
        check_range("learn_limit", learn_limit, 0, MAX_FDB_CAPACITY)
        vh = <vale_vhost *>calloc(1, sizeof(vale_vhost))
        if vh == NULL or posix_memalign(&stage, HUGE_ALIGN, VHOST_STAGE_SIZE) != 0:
            free(vh)
            raise MemoryError("cannot allocate a vhost-user port")
        vh.stage = <char *>stage
        vh.hdr_len = VNET_MRG_HDR_LEN
        for q in range(VHOST_QUEUES):
            vh.q[q].kick_fd = -1
            vh.q[q].call_fd = -1
        self.acquire()
        try:
            try:
                p = self.new_port(learning, flood, learn_limit)
            except BaseException:
                free(vh.stage)
                free(vh)
                raise
            p.kind = PORT_VHOST
            p.vhost = vh
            p.vnet = False
            p.max_frame = VHOST_MAX_FRAME - VNET_MRG_HDR_LEN
            p.rx_max = VHOST_MAX_FRAME - VNET_MRG_HDR_LEN
            return self.activate(p)
        finally:
            self.release()

    cdef vale_port *vhost_port(self, index) except NULL:
        return vhost_port_of(self.port_at(index))

    def vhost_features(self, index, uint64_t features, *, event_idx, indirect, mergeable,
                       version_1, offloads, guest_ufo):
        """The features the front end took (SET_FEATURES), decoded by the protocol."""
        cdef vale_port *p
        self.acquire()
        try:
            p = self.vhost_port(index)
            p.vhost.features = features
            p.vhost.event_idx = event_idx
            p.vhost.indirect = indirect
            p.vhost.mergeable = mergeable
            p.vhost.guest_ufo = guest_ufo
            p.vhost.guest_offloads = offloads
            p.vhost.hdr_len = VNET_MRG_HDR_LEN if (version_1 or mergeable) else VNET_HDR_LEN
            p.vnet = offloads
        finally:
            self.release()

    def vhost_memory(self, index, regions):
        """Map the guest's memory (SET_MEM_TABLE): regions of (guest physical address,
        size, front end address, offset in the fd, fd); the fds stay the caller's. The
        rings are mapped again in the new table; a ring it no longer holds stops.
        ValueError for a table that overlaps or is empty, OSError when a region cannot
        be mapped (the old table stays)."""
        cdef vale_port *p
        cdef vale_vregion fresh[VHOST_MAX_REGIONS]
        cdef uint32_t n = 0, i, q
        cdef void *m
        cdef uint64_t gpa, size, uva, offset
        cdef int fd
        if not 0 < len(regions) <= VHOST_MAX_REGIONS:
            raise ValueError(f"a memory table has 1 to {VHOST_MAX_REGIONS} regions, not {len(regions)}")
        spans = sorted((r[0], r[1]) for r in regions)
        for (a, la), (b, _) in zip(spans, spans[1:]):
            if a + la > b:
                raise ValueError("memory regions overlap")
        for gpa, size, uva, offset, fd in regions:
            if size == 0 or offset + size < offset or gpa + size < gpa or uva + size < uva:
                raise ValueError("a memory region of no size, or wrapping around")
        try:
            for gpa, size, uva, offset, fd in regions:
                m = mmap(NULL, offset + size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
                if m == MAP_FAILED:
                    e = errno
                    raise OSError(e, f"cannot map guest memory ({os.strerror(e)}): is the "
                                     "guest's RAM shared (memory-backend-memfd or file, share=on)?")
                fresh[n].gpa = gpa
                fresh[n].size = size
                fresh[n].uva = uva
                fresh[n].map = <char *>m
                fresh[n].map_len = offset + size
                fresh[n].host = <char *>m + offset
                n += 1
        except BaseException:
            for i in range(n):
                munmap(fresh[i].map, fresh[i].map_len)
            raise
        self.acquire()
        try:
            p = self.vhost_port(index)
            vhost_unmap(p.vhost)
            memcpy(p.vhost.regions, fresh, n * sizeof(vale_vregion))
            p.vhost.nregions = n
            for q in range(VHOST_QUEUES):
                if not vq_start(p.vhost, &p.vhost.q[q]):
                    vhost_broke(p, &p.vhost.q[q], "a ring outside the new memory table")
        except BaseException:
            for i in range(n):
                munmap(fresh[i].map, fresh[i].map_len)
            raise
        finally:
            self.release()

    def vhost_ring(self, index, int q, *, num=None, base=None, addr=None, kick=None,
                   call=None, enabled=None):
        """Set up one queue (SET_VRING_*): its size (a power of two), the next avail
        index, its addresses (desc, avail, used, in the front end's memory), kick and
        call eventfds (the core takes them: -1 for none) and whether it is enabled.
        Returns whether the queue is served now. ValueError for a bad request."""
        cdef vale_port *p
        cdef vale_vq *vq
        cdef epoll_event ev
        if q < 0 or q >= VHOST_QUEUES:
            raise ValueError(f"queue {q} out of range: vale serves one queue pair")
        if num is not None and (not 0 < num <= VHOST_MAX_QUEUE_SIZE or num & (num - 1)):
            raise ValueError(f"a queue size is a power of two up to {VHOST_MAX_QUEUE_SIZE}, not {num}")
        if base is not None and not 0 <= base <= 0xFFFF:
            raise ValueError(f"a ring base is 16 bits, not {base}")
        self.acquire()
        try:
            p = self.vhost_port(index)
            vq = &p.vhost.q[q]
            was_started = vq.started
            if num is not None:
                vq.num = num
            if base is not None:
                vq.last_avail = base
            if addr is not None:
                vq.desc_uva, vq.avail_uva, vq.used_uva = addr
                vq.addressed = True
            if call is not None:
                if vq.call_fd >= 0:
                    close(vq.call_fd)
                vq.call_fd = call
            if kick is not None:
                if vq.kick_fd >= 0:
                    if q == VQ_TX:
                        epoll_ctl(self.sw.epoll_fd, EPOLL_CTL_DEL, vq.kick_fd, NULL)
                        p.fd = -1
                    close(vq.kick_fd)
                vq.kick_fd = kick
                if q == VQ_TX and kick >= 0:
                    ev.events = EPOLLIN | EPOLLET
                    ev.data.u32 = p.index
                    if epoll_ctl(self.sw.epoll_fd, EPOLL_CTL_ADD, kick, &ev) == 0:
                        p.fd = kick
            if enabled is not None:
                vq.enabled = enabled
            if num is not None or base is not None or addr is not None or not vq.started:
                if not vq_start(p.vhost, vq):
                    raise ValueError("the ring's addresses are not in guest memory, or "
                                     "misaligned: is the guest's RAM shared (share=on)?")
            if vq.started and vq.call_fd >= 0 and (call is not None or not was_started):
                # A guest that waited for an interrupt from the valed before this one (or
                # from before its rings were set up again) looks at its rings now.
                eventfd_write(vq.call_fd, 1)
            return bool(vq.started and vq.enabled)
        finally:
            self.release()

    def vhost_stop(self, index, int q):
        """Stop a queue (GET_VRING_BASE); returns its next avail index."""
        cdef vale_port *p
        cdef vale_vq *vq
        if q < 0 or q >= VHOST_QUEUES:
            raise ValueError(f"queue {q} out of range: vale serves one queue pair")
        self.acquire()
        try:
            p = self.vhost_port(index)
            vq = &p.vhost.q[q]
            vq.started = False
            vq.addressed = False
            return vq.last_avail
        finally:
            self.release()

    def vhost_reset(self, index):
        """The front end went away: stop the rings, close their eventfds, unmap its memory."""
        cdef vale_port *p
        self.acquire()
        try:
            p = self.vhost_port(index)
            if p.fd >= 0:
                epoll_ctl(self.sw.epoll_fd, EPOLL_CTL_DEL, p.fd, NULL)
            vhost_disconnect(p)
        finally:
            self.release()

    # -- memif ports: what the protocol (vale/memif.py) sets up ------------------------

    def add_memif_port(self, *, learning=True, flood=True, learn_limit=0):
        """Add a memif port, not yet connected (memif_connect); returns the index."""
        cdef vale_port *p
        cdef vale_memif *m
        cdef void *stage = NULL
        cdef uint32_t q
        check_range("learn_limit", learn_limit, 0, MAX_FDB_CAPACITY)
        m = <vale_memif *>calloc(1, sizeof(vale_memif))
        if m == NULL or posix_memalign(&stage, HUGE_ALIGN, MEMIF_STAGE_SIZE) != 0:
            free(m)
            raise MemoryError("cannot allocate a memif port")
        m.stage = <char *>stage
        for q in range(MEMIF_RINGS):
            m.r[q].fd = -1
        self.acquire()
        try:
            try:
                p = self.new_port(learning, flood, learn_limit)
            except BaseException:
                free(m.stage)
                free(m)
                raise
            p.kind = PORT_MEMIF
            p.memif = m
            p.vnet = False
            p.max_frame = MEMIF_MAX_FRAME
            p.rx_max = MEMIF_MAX_FRAME
            return self.activate(p)
        finally:
            self.release()

    cdef vale_port *memif_port(self, index) except NULL:
        return memif_port_of(self.port_at(index))

    def memif_connect(self, index, regions, rings):
        """Serve a program's rings (its CONNECT): regions of (fd, size), mapped here (the
        fds stay the caller's); rings of (c2s, region, offset, log2 size, eventfd), one
        each way (the core takes the eventfds, also on failure). ValueError for a ring
        outside its region or without the cookie, OSError when a region cannot be mapped."""
        cdef vale_port *p
        cdef vale_mregion fresh[MEMIF_MAX_REGIONS]
        cdef vale_mring made[MEMIF_RINGS]
        cdef vale_mring *r
        cdef uint32_t n = 0, i
        cdef uint64_t size, offset
        cdef uint32_t region, log2
        cdef void *mapped
        cdef char *at
        cdef epoll_event ev
        memset(made, 0, sizeof(made))
        for i in range(MEMIF_RINGS):
            made[i].fd = -1
        try:
            if not 0 < len(regions) <= MEMIF_MAX_REGIONS:
                raise ValueError(f"a program brings 1 to {MEMIF_MAX_REGIONS} regions, "
                                 f"not {len(regions)}")
            for ring in rings:
                made[MR_C2S if ring[0] else MR_S2C].fd = ring[4]
            if sorted(bool(ring[0]) for ring in rings) != [False, True]:
                raise ValueError("a program brings one ring each way")
            for fd, size in regions:
                if not 0 < size < (1 << 40):
                    raise ValueError(f"a region of {size} bytes")
                mapped = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
                if mapped == MAP_FAILED:
                    e = errno
                    raise OSError(e, f"cannot map a region ({os.strerror(e)})")
                fresh[n].base = <char *>mapped
                fresh[n].size = size
                n += 1
            for c2s, region, offset, log2, _ in rings:
                r = &made[MR_C2S if c2s else MR_S2C]
                if not 0 < log2 <= MEMIF_MAX_LOG2_RING:
                    raise ValueError(f"a ring of 2**{log2} slots")
                size = MEMIF_RING_HEADER + sizeof(vale_mdesc) * (1 << log2)
                if (region >= n or offset % 64 or offset > fresh[region].size
                        or size > fresh[region].size - offset):
                    raise ValueError("a ring outside its region, or misaligned")
                at = fresh[region].base + offset
                if (<uint32_t *>at)[0] != MEMIF_COOKIE:
                    raise ValueError("a ring without memif's cookie")
                r.flags = <uint16_t *>(at + 4)
                r.head = <uint16_t *>(at + 6)
                r.tail = <uint16_t *>(at + 64)
                r.desc = <vale_mdesc *>(at + MEMIF_RING_HEADER)
                r.size = 1 << log2
                r.mask = r.size - 1
                r.head[0] = 0
                r.tail[0] = 0
            made[MR_C2S].flags[0] = 0           # kick valed: it sleeps when idle
        except BaseException:
            for i in range(n):
                munmap(fresh[i].base, fresh[i].size)
            for i in range(MEMIF_RINGS):
                if made[i].fd >= 0:
                    close(made[i].fd)
            raise
        self.acquire()
        try:
            try:
                p = self.memif_port(index)
            except BaseException:
                for i in range(n):
                    munmap(fresh[i].base, fresh[i].size)
                for i in range(MEMIF_RINGS):
                    close(made[i].fd)
                raise
            if p.fd >= 0:
                epoll_ctl(self.sw.epoll_fd, EPOLL_CTL_DEL, p.fd, NULL)
            memif_disconnect(p)
            memcpy(p.memif.regions, fresh, n * sizeof(vale_mregion))
            p.memif.nregions = n
            memcpy(p.memif.r, made, sizeof(made))
            ev.events = EPOLLIN | EPOLLET       # a kick wakes the thread; never read
            ev.data.u32 = p.index
            if epoll_ctl(self.sw.epoll_fd, EPOLL_CTL_ADD, made[MR_C2S].fd, &ev) == 0:
                p.fd = made[MR_C2S].fd
            p.memif.started = True
        finally:
            self.release()

    def memif_disconnect(self, index):
        """The program went away (or is sent away): stop its rings, close their eventfds,
        unmap its memory."""
        cdef vale_port *p
        self.acquire()
        try:
            p = self.memif_port(index)
            if p.fd >= 0:
                epoll_ctl(self.sw.epoll_fd, EPOLL_CTL_DEL, p.fd, NULL)
            memif_disconnect(p)
        finally:
            self.release()

    def memif_refused(self, index):
        """Count a program the protocol refused or sent away."""
        self.acquire()
        try:
            self.memif_port(index).memif.refused += 1
        finally:
            self.release()

    def memif_stopped(self, index):
        """Why the program's rings were stopped (what it did), or None while served."""
        cdef vale_port *p
        self.acquire()
        try:
            p = self.memif_port(index)
            if p.memif.started or p.memif.nregions == 0:
                return None
            return p.memif.broke.decode() if p.memif.broke != NULL else "stopped"
        finally:
            self.release()

    cdef vale_port *new_port(self, learning, flood, learn_limit) except NULL:
        """A zeroed port at the lowest free index, not yet active."""
        cdef uint32_t i
        cdef vale_port *p
        for i in range(VALE_MAX_PORTS):
            if self.sw.ports[i] == NULL:
                break
        else:
            raise ValueError(f"the switch has all {VALE_MAX_PORTS} ports in use")
        p = <vale_port *>calloc(1, sizeof(vale_port))
        if p == NULL:
            raise MemoryError()
        p.index = i
        p.learning = learning
        p.flood = flood
        p.learn_limit = learn_limit
        p.lru_head = VALE_NIL
        p.lru_tail = VALE_NIL
        p.last_src = 0
        p.up = True
        p.fd = -1
        p.tx_fd = -1
        p.mirror_rx = VALE_NO_PORT
        p.mirror_tx = VALE_NO_PORT
        p.journaled = False
        memset(p.vlans, 0xFF, sizeof(p.vlans))     # VLAN_NONE: carries them all
        p.vlans[VALE_VLAN_WORDS - 1] &= ~(<uint64_t>1 << 63)
        return p

    cdef uint32_t activate(self, vale_port *p) noexcept:
        """Put a port in the table; the active list stays ascending, since flooding and
        ageing walk it in that order."""
        cdef uint32_t k = self.sw.nactive
        self.sw.ports[p.index] = p
        while k > 0 and self.sw.active[k - 1] > p.index:
            self.sw.active[k] = self.sw.active[k - 1]
            k -= 1
        self.sw.active[k] = p.index
        self.sw.nactive += 1
        return p.index

    def remove_port(self, index):
        """Remove a port and every FDB entry pointing at it, so traffic to its MACs
        floods again instead of vanishing."""
        cdef vale_port *p
        cdef vale_port *other
        cdef uint32_t i, k
        self.acquire()
        try:
            p = self.port_at(index)
            self.remove_entries(p.index, True)
            if p.capture:
                self.sw.capturing -= 1
            for i in range(self.sw.nactive):      # mirrors into it stop
                other = self.sw.ports[self.sw.active[i]]
                if other.mirror_rx == p.index:
                    other.mirror_rx = VALE_NO_PORT
                if other.mirror_tx == p.index:
                    other.mirror_tx = VALE_NO_PORT
            k = 0
            for i in range(self.sw.nactive):
                if self.sw.active[i] != p.index:
                    self.sw.active[k] = self.sw.active[i]
                    k += 1
            self.sw.nactive = k
            self.sw.ports[p.index] = NULL
            if p.vlan_mode != VLAN_NONE:
                self.sw.vlan_ports -= 1
                if self.sw.vlan_ports == 0:         # VLANs off: keys change
                    fdb_remove_port(self.sw, VALE_NO_PORT, False)
            if p.up and p.fd >= 0:
                epoll_ctl(self.sw.epoll_fd, EPOLL_CTL_DEL, p.fd, NULL)
            port_free(p)
            self.listed_macs.pop(index, None)
        finally:
            self.release()

    def set_port(self, index, *, learning=None, flood=None, learn_limit=None, vnet=None,
                 mtu=None, up=None, vlan=None, native=None, storm=None, allowed_macs=None,
                 sticky=None, bpdu=None):
        """Change a port's settings; up=True brings a port whose device had failed back
        into forwarding. vlan: "none", ("access", vid) or ("trunk", iterable of vids);
        native: a trunk's untagged VLAN (0: none). storm: (broadcast, multicast, unknown
        unicast) floods a second it may send in, 0 for no limit. Changing a port's VLANs
        forgets what it learned. allowed_macs: the source MACs (48-bit keys) it may send
        from, others dropped as spoofed (empty: any); sticky: the first sources it sends
        from join those until it has this many (0: off); either forgets the sticky ones.
        bpdu: one of BPDU_MODES; setting it unblocks a port BPDU guard blocked."""
        cdef vale_port *p
        cdef epoll_event ev
        cdef uint64_t words[VALE_VLAN_WORDS]
        cdef VlanMode mode = VLAN_NONE
        cdef uint16_t native_vid = 0
        if learn_limit is not None:
            check_range("learn_limit", learn_limit, 0, MAX_FDB_CAPACITY)
        if mtu is not None:
            check_range("mtu", mtu, 68, MAX_MTU)
        if storm is not None:
            if not isinstance(storm, (tuple, list)) or len(storm) != STORM_CLASSES:
                raise ValueError("storm takes (broadcast, multicast, unknown) rates")
            for what, rate in zip(("broadcast", "multicast", "unknown unicast"), storm):
                check_range(f"the {what} storm rate", rate, 0, MAX_STORM_RATE)
        if vlan is not None:
            mode, native_vid = parse_vlan(vlan, native, words)
        elif native is not None:
            raise ValueError("native goes with vlan")
        if allowed_macs is not None:
            allowed_macs = sorted(set(allowed_macs))
            if len(allowed_macs) > VALE_MAX_ALLOWED:
                raise ValueError(f"a port may have at most {VALE_MAX_ALLOWED} allowed MACs")
            for mac in allowed_macs:
                check_range("an allowed MAC", mac, 1, MAC_MASK)
                if mac & 1:
                    raise ValueError("an allowed MAC must be unicast")
        if sticky is not None:
            check_range("sticky", sticky, 0, VALE_MAX_ALLOWED)
        if bpdu is not None and bpdu not in BPDU_MODES:
            raise ValueError(f"bpdu must be one of {', '.join(BPDU_MODES)}, not {bpdu!r}")
        self.acquire()
        try:
            p = self.port_at(index)
            if (mtu is not None or up is not None) and not ops_of(p).device:
                raise ValueError("mtu and up apply to ports of a device only")
            if learning is not None:
                p.learning = bool(learning)
            if flood is not None:
                p.flood = bool(flood)
            if learn_limit is not None:
                p.learn_limit = learn_limit
            if vnet is not None:
                p.vnet = bool(vnet)
            if mtu is not None:
                p.max_frame = mtu + FRAME_SLACK
            if vlan is not None:
                port_set_vlans(self.sw, p, mode, native_vid, words)
                self.refresh_clock()
                fdb_remove_port(self.sw, p.index, False)
            if storm is not None:
                self.refresh_clock()
                port_set_storm(self.sw, p, storm[0], storm[1], storm[2])
            if allowed_macs is not None or sticky is not None:
                if allowed_macs is None:
                    allowed_macs = self.listed_macs.get(p.index, [])
                set_allowed(p, allowed_macs, sticky if sticky is not None else p.sticky)
                self.listed_macs[p.index] = allowed_macs
            if bpdu is not None:
                p.bpdu = <BpduMode><int>BPDU_MODES.index(bpdu)
                p.guards &= ~GUARD_BLOCKED
            port_update_guards(p)
            if up is not None and bool(up) != bool(p.up):
                if up:
                    ev.events = EPOLLIN
                    ev.data.u32 = p.index
                    if epoll_ctl(self.sw.epoll_fd, EPOLL_CTL_ADD, p.fd, &ev) != 0:
                        raise OSError(errno, os.strerror(errno))
                    p.up = True
                else:
                    port_down(self.sw, p)
        finally:
            self.release()

    def port_info(self, index):
        cdef vale_port *p
        cdef uint32_t v
        self.acquire()
        try:
            p = self.port_at(index)
            self.refresh_clock()
            info = {
                "index": p.index, "kind": ops_of(p).name.decode(),
                "device": bool(ops_of(p).device),
                "up": bool(p.up), "vnet": bool(p.vnet), "max_frame": p.max_frame,
                "learning": bool(p.learning), "flood": bool(p.flood),
                "learn_limit": p.learn_limit, "fdb_entries": p.dyn_count,
                "blocked": (p.blocked_until - self.sw.now_ms) / 1000.0
                           if p.blocked_until > self.sw.now_ms else 0.0,
                "loops_found": p.loops_found,
                "vlan": VLAN_MODES[<int>p.vlan_mode], "native": p.native,
                "vlans": ([v for v in range(1, VALE_VLAN_MAX + 1) if carries(p, v)]
                          if p.vlan_mode != VLAN_NONE else []),
                "storm": (p.storm_rate[STORM_BROADCAST], p.storm_rate[STORM_MULTICAST],
                          p.storm_rate[STORM_UNKNOWN]),
                "allowed_macs": list(self.listed_macs.get(p.index, [])),
                "sticky_macs": sorted(set(p.allowed[v] for v in range(p.nallowed))
                                      - set(self.listed_macs.get(p.index, []))),
                "sticky": p.sticky, "bpdu": BPDU_MODES[<int>p.bpdu],
                "bpdu_blocked": bool(p.guards & GUARD_BLOCKED),
                "rx_stuck": bool(p.rx_stuck), "rx_resets": p.rx_resets,
            }
            info.update(ops_of(p).info(p))
            return info
        finally:
            self.release()

    cdef uint32_t blocker_bits(self, vale_port *p, const uint8_t *targets) noexcept nogil:
        """Which of BLOCKER_NAMES keep packet port p's known unicast off the kernel fast
        path, as bits; allowed_macs is the Python side's (kernel_path_blockers adds it)."""
        return (<uint32_t>(self.sw.lookup != LOOKUP_LEARNING)
                | <uint32_t>(not p.up) << 1
                | <uint32_t>(p.blocked_until > self.sw.now_ms) << 2
                | <uint32_t>(p.guards & GUARD_BLOCKED != 0) << 3
                | <uint32_t>(p.vlan_mode != VLAN_NONE) << 4
                | <uint32_t>(not p.vnet) << 5
                | <uint32_t>(p.mirror_rx != VALE_NO_PORT or p.mirror_tx != VALE_NO_PORT) << 6
                | <uint32_t>(targets[p.index] != 0) << 7
                | <uint32_t>(p.capture != 0) << 8
                | <uint32_t>(p.sticky != 0) << 10
                | <uint32_t>(p.rx_stuck != 0) << 11)

    cdef void mirror_targets(self, uint8_t *targets) noexcept nogil:
        """targets[i] = 1 for every port a mirror copies to; the caller holds the lock."""
        cdef vale_port *p
        cdef uint32_t k
        memset(targets, 0, VALE_MAX_PORTS)
        for k in range(self.sw.nactive):
            p = self.sw.ports[self.sw.active[k]]
            if p.mirror_rx != VALE_NO_PORT:
                targets[p.mirror_rx] = 1
            if p.mirror_tx != VALE_NO_PORT:
                targets[p.mirror_tx] = 1

    def kernel_path_digest(self):
        """A number that changes when kernel_path_blockers' answer may have: what the
        daemon asks often, the blockers themselves only when it moves."""
        cdef uint8_t targets[VALE_MAX_PORTS]
        cdef vale_port *p
        cdef uint32_t k
        cdef uint64_t digest = 14695981039346656037ULL      # FNV-1a over (index, bits)
        self.acquire()
        try:
            with nogil:
                self.refresh_clock()
                self.mirror_targets(targets)
                for k in range(self.sw.nactive):
                    p = self.sw.ports[self.sw.active[k]]
                    if p.kind == PORT_PACKET:
                        digest = (digest ^ ((<uint64_t>p.index << 32)
                                            | self.blocker_bits(p, targets))) * 1099511628211ULL
        finally:
            self.release()
        return digest ^ hash(tuple(self.listed_macs)) if self.listed_macs else digest

    def kernel_path_blockers(self):
        """For each interface port (packet socket), what keeps known unicast it sends or
        is sent from the kernel fast path: the rules of vale's that the BPF program does
        not apply, by name ([]: none). {port index: [reasons]}."""
        cdef uint8_t targets[VALE_MAX_PORTS]
        cdef vale_port *p
        cdef uint32_t k, bits
        self.acquire()
        try:
            self.refresh_clock()
            self.mirror_targets(targets)
            out = {}
            for k in range(self.sw.nactive):
                p = self.sw.ports[self.sw.active[k]]
                if p.kind != PORT_PACKET:
                    continue
                bits = self.blocker_bits(p, targets)
                if self.listed_macs.get(p.index):
                    bits |= 1u << ALLOWED_MACS_BIT
                reasons = [name for b, name in enumerate(BLOCKER_NAMES) if bits & (1u << b)]
                if bits & 1:
                    reasons[0] = "lookup " + LOOKUP_NAMES[<int>self.sw.lookup]
                out[p.index] = reasons
            return out
        finally:
            self.release()

    def port_receive_from(self, index, int ifindex):
        """Let packet port `index` receive on interface ifindex (the kernel fast path's
        upcall device, or its own interface again); it goes on sending to its own.
        ValueError for ports of other kinds, OSError when the kernel refuses."""
        cdef vale_port *p
        cdef int err
        self.acquire()
        try:
            p = packet_port(self.port_at(index), False)
        finally:
            self.release()
        # Without the lock (see packet_receive_from): only this thread removes ports.
        with nogil:
            err = packet_receive_from(p, ifindex)
        if err != 0:
            raise OSError(err, f"port {index}: receiving on interface {ifindex}: "
                               f"{os.strerror(err)}")

    # -- the loop guard --------------------------------------------------------------

    cdef bint send_probe(self, vale_port *p) noexcept nogil:
        """The loop probe out of p, as the switch sends any frame (its egress tag, its
        counters); not out of a port that is down or blocked (a probe it sent would block
        the other end of its loop too). Whether it went; the caller holds the lock."""
        cdef vale_desc *d = &self.sw.descs[0]
        if not p.up or loop_blocked(self.sw, p):
            return False
        d.data = self.sw.soft_buf
        d.len = loop_probe_frame(self.sw, p.index, self.sw.soft_buf)
        d.flags = 0
        d.vlan = probe_vlan(p)
        self.sw.next_frame[0] = NO_FRAME
        deliver(self.sw, p, 0, NO_FRAME, True, p)     # soft_buf has the room
        return True

    def send_loop_probe(self, index):
        """Send this switch's loop probe out of a port (send_probe); whether it went."""
        cdef vale_port *p
        cdef bint sent
        self.acquire()
        try:
            p = self.port_at(index)
            with nogil:
                self.refresh_clock()
                sent = self.send_probe(p)
            return sent
        finally:
            self.release()

    def send_loop_probes(self):
        """Send the loop probe out of every port (send_probe); how many went."""
        cdef uint32_t k, sent = 0
        self.acquire()
        try:
            with nogil:
                self.refresh_clock()
                for k in range(self.sw.nactive):
                    sent += self.send_probe(self.sw.ports[self.sw.active[k]])
            return sent
        finally:
            self.release()

    # -- frames in and out of the in-memory rings ------------------------------------

    def inject(self, index, frames, vnets=None):
        """Put frames (bytes) into an in-memory port's RX ring, as its receive side would;
        vnets, if given, one 10-byte virtio-net header (or None) per frame. A frame longer
        than a slot is dropped as too_big; one that finds the ring full as ring_full.
        Returns how many went in."""
        cdef vale_port *p
        cdef vale_ring *rx
        cdef vale_slot *slot
        cdef Py_ssize_t length
        cdef uint32_t accepted = 0
        frames = list(frames)
        for frame in frames:
            if not isinstance(frame, bytes):
                raise ValueError(f"frames must be bytes, not {type(frame).__name__}")
        vnets = [None] * len(frames) if vnets is None else list(vnets)
        if len(vnets) != len(frames):
            raise ValueError("give one virtio-net header (or None) per frame")
        for vnet in vnets:
            if vnet is not None and (not isinstance(vnet, bytes) or len(vnet) != VNET_HDR_LEN):
                raise ValueError(f"a virtio-net header is {VNET_HDR_LEN} bytes")
        self.acquire()
        try:
            p = memory_port(self.port_at(index))
            rx = &p.rx
            for frame, vnet in zip(frames, vnets):
                length = PyBytes_GET_SIZE(frame)
                if length > rx.slot_size:
                    p.c.drops[DROP_TOO_BIG] += 1
                    continue
                if ring_space(rx) == 0:
                    p.c.drops[DROP_RING_FULL] += 1
                    continue
                slot = &rx.slots[rx.head & rx.mask]
                memcpy(rx.buf + slot.off, PyBytes_AS_STRING(frame), length)
                slot.len = <uint32_t>length
                slot.flags = 0
                if vnet is not None:
                    memcpy(&rx.vnets[rx.head & rx.mask], PyBytes_AS_STRING(vnet), VNET_HDR_LEN)
                    slot.flags = FRAME_VNET
                rx.head += 1
                accepted += 1
            return accepted
        finally:
            self.release()

    def _inject_lying(self, index, bytes frame, uint32_t claimed_len):
        """Test hook: put a frame in the RX ring whose slot claims `claimed_len` bytes,
        as a broken producer might. The forwarding code must drop it, not trust it."""
        cdef vale_port *p
        cdef vale_slot *slot
        self.acquire()
        try:
            p = memory_port(self.port_at(index))
            if PyBytes_GET_SIZE(frame) > p.rx.slot_size or ring_space(&p.rx) == 0:
                raise ValueError("frame too long for the slot, or ring full")
            slot = &p.rx.slots[p.rx.head & p.rx.mask]
            memcpy(p.rx.buf + slot.off, PyBytes_AS_STRING(frame), PyBytes_GET_SIZE(frame))
            slot.len = claimed_len
            slot.flags = 0
            p.rx.head += 1
        finally:
            self.release()

    def drain(self, index, limit=None, *, with_vnet=False):
        """Take the frames waiting in a port's TX ring, oldest first, as bytes; with_vnet:
        as (header bytes or None, frame) pairs."""
        cdef vale_port *p
        cdef vale_ring *tx
        cdef vale_slot *slot
        cdef uint32_t n
        self.acquire()
        try:
            p = memory_port(self.port_at(index))
            tx = &p.tx
            n = ring_count(tx)
            if limit is not None:
                check_range("limit", limit, 0, 1 << 32 - 1)
                n = min(n, limit)
            out = []
            for _ in range(n):
                slot = &tx.slots[tx.tail & tx.mask]
                frame = PyBytes_FromStringAndSize(tx.buf + slot.off, slot.len)
                if with_vnet:
                    vnet = (PyBytes_FromStringAndSize(<char *>&tx.vnets[tx.tail & tx.mask],
                                                      VNET_HDR_LEN)
                            if slot.flags & FRAME_VNET else None)
                    out.append((vnet, frame))
                else:
                    out.append(frame)
                tx.tail += 1
            return out
        finally:
            self.release()

    def forward(self, index):
        """Forward one batch from a port's RX ring (its packet socket's ring, its TAP);
        returns the frames taken."""
        cdef vale_port *p
        cdef uint32_t n
        self.acquire()
        try:
            p = self.port_at(index)
            with nogil:
                n = forward_port(self.sw, p)
            return n
        finally:
            self.release()

    def forward_all(self):
        """Forward until every RX ring is empty, one batch per port in index order per
        round; returns the frames taken."""
        cdef uint64_t total = 0
        cdef uint32_t k, n
        self.acquire()
        try:
            with nogil:
                while True:
                    n = 0
                    for k in range(self.sw.nactive):
                        n += forward_port(self.sw, self.sw.ports[self.sw.active[k]])
                    if n == 0:
                        break
                    total += n
            return total
        finally:
            self.release()

    # -- the MAC table ---------------------------------------------------------------

    cdef uint32_t remove_entries(self, uint32_t port, bint statics) noexcept:
        """fdb_remove_port; the caller holds the lock."""
        return fdb_remove_port(self.sw, port, statics)

    def fdb_chunk(self, uint32_t start):
        """(entries, next): the entries of up to FDB_CHUNK slots of the table from slot
        `start` on, after removing the aged ones, each as (key, port index, static,
        seconds since last seen); next, the slot to read from next time, or None at the
        end. One short hold of the forwarding lock (< 1 ms), so reading a large table a
        chunk at a time never stalls forwarding."""
        cdef vale_fdb *t = &self.sw.fdb
        cdef vale_entry *e
        cdef uint32_t i, end
        out = []
        self.acquire()
        try:
            if start >= t.used_top:
                return out, None
            self.refresh_clock()
            end = min(start + FDB_CHUNK, t.used_top)
            for i in range(start, end):
                e = &t.entries[i]
                if e.flags & ENTRY_USED:
                    out.append((e.key, e.port, bool(e.flags & ENTRY_STATIC),
                                (self.sw.now_ms - e.last_seen) / 1000.0))
            return out, (end if end < t.used_top else None)
        finally:
            self.release()

    def fdb_entries(self, *, between=None):
        """Every entry, as fdb_chunk gives them, a chunk at a time: not a picture of one
        instant (an entry that moves meanwhile may be seen twice or not). between: as
        set_capacity's."""
        out = []
        start = 0
        while start is not None:
            if between is not None:
                between()
            chunk, start = self.fdb_chunk(start)
            out.extend(chunk)
        if between is not None:
            between()
        return out

    def fdb_lookup(self, uint64_t key):
        """The port index a MAC key would be forwarded to, or None."""
        cdef uint16_t port
        self.acquire()
        try:
            self.refresh_clock()
            port = fdb_lookup_port(&self.sw.fdb, key, fdb_home(&self.sw.fdb, key))
            return None if port == VALE_NO_PORT else port
        finally:
            self.release()

    def fdb_add(self, uint64_t key, index):
        """Add or replace a static entry: it never ages and never moves."""
        cdef vale_fdb *t = &self.sw.fdb
        cdef vale_port *p
        cdef uint32_t ci
        check_key(key)
        self.acquire()
        try:
            p = self.port_at(index)
            self.refresh_clock()
            ci = fdb_find_cell(t, key)
            if ci != VALE_NIL:
                fdb_remove(self.sw, t.cells[ci].entry)
            elif t.count >= t.capacity and not fdb_evict_one(self.sw, VALE_NO_PORT):
                raise ValueError(f"the FDB is full of static entries ({t.capacity})")
            fdb_insert(self.sw, key, p.index, True)
        finally:
            self.release()

    def fdb_del(self, uint64_t key):
        """Remove one entry, static or learned; False when there was none."""
        cdef uint32_t ci
        self.acquire()
        try:
            self.refresh_clock()
            ci = fdb_find_cell(&self.sw.fdb, key)
            if ci == VALE_NIL:
                return False
            fdb_remove(self.sw, self.sw.fdb.cells[ci].entry)
            return True
        finally:
            self.release()

    def fdb_flush(self, port=None, *, statics=False):
        """Remove learned entries (of one port, or all); statics too when asked.
        Returns how many went."""
        cdef uint32_t which = VALE_NO_PORT
        self.acquire()
        try:
            if port is not None:
                which = self.port_at(port).index
            self.refresh_clock()
            return self.remove_entries(which, statics)
        finally:
            self.release()

    def journal_ports(self, indexes):
        """Keep a journal of the changes to the entries of these ports (moves to and from
        them included), for fdb_changes() to read: the kernel fast path mirrors their
        part of the table from it. An empty set: no journal. A port newly in the set
        makes the next read say `lost`, for what the port holds already."""
        cdef vale_fdb_change *journal = NULL
        cdef vale_port *p
        cdef uint32_t k
        wanted = set(indexes)
        if wanted:
            journal = <vale_fdb_change *>calloc(FDB_JOURNAL_SIZE, sizeof(vale_fdb_change))
            if journal == NULL:
                raise MemoryError("cannot allocate the MAC table's journal")
        self.acquire()
        try:
            for index in wanted:
                self.port_at(index)
            for k in range(self.sw.nactive):
                p = self.sw.ports[self.sw.active[k]]
                if p.index in wanted and not p.journaled:
                    self.sw.fdb.journal_lost = True
                p.journaled = p.index in wanted
            if wanted and self.sw.fdb.journal == NULL:
                self.sw.fdb.journal, journal = journal, NULL
                self.sw.fdb.journal_len = 0
            elif not wanted:
                self.sw.fdb.journal, journal = NULL, self.sw.fdb.journal
                self.sw.fdb.journal_lost = False
            fdb_rewatch(&self.sw.fdb)
        finally:
            self.release()
            free(journal)

    def set_kernel_sources(self, int fd):
        """The kernel fast path's map of known sources (vale_src), from which a MAC that
        moves between journaled ports is removed at once; -1: none (before the map is
        closed)."""
        self.acquire()
        self.sw.fdb.kernel_src_fd = fd
        self.release()

    @property
    def rx_frames(self):
        """Frames the switch has taken from its ports so far (those the kernel fast path
        forwarded are not among them); read without the lock: a number that may lag."""
        cdef uint64_t total = 0
        cdef uint32_t k
        cdef vale_port *p
        for k in range(self.sw.nactive):
            p = self.sw.ports[self.sw.active[k]]
            if p != NULL:
                total += p.c.rx_packets
        return total

    @property
    def ageing(self):
        """The MAC table's ageing time, in seconds."""
        return self.sw.fdb.ageing_ms / 1000.0

    @property
    def fdb_changed(self):
        """Whether fdb_changes has something to say; read without the lock (an answer a
        moment old is fine: the caller asks again soon)."""
        return self.sw.fdb.journal_len != 0 or self.sw.fdb.journal_lost

    def fdb_changes(self):
        """(lost, changes): the table's changes since the last call, in order, each as
        (key, port index, or None when the key went). lost: more came than the journal
        holds (or it has just begun), so the whole table must be read instead."""
        cdef vale_fdb *t = &self.sw.fdb
        cdef uint32_t i
        cdef uint64_t drained
        # First: an entry added after this still finds journal_fd set, and is read then.
        read(self.sw.journal_fd, &drained, sizeof(drained))
        self.acquire()
        try:
            changes = [(t.journal[i].key,
                        None if t.journal[i].port == VALE_NO_PORT else t.journal[i].port)
                       for i in range(t.journal_len if t.journal != NULL else 0)]
            lost = bool(t.journal_lost)
            t.journal_len = 0
            t.journal_lost = False
        finally:
            self.release()
        return lost, changes

    def fdb_learn(self, index, keys not None):
        """Learn these MAC keys on port index as frames from them would (learn limits,
        bans and the port's learning setting apply): what a fast path left in the kernel
        by an earlier valed knew. Returns how many are on the port now."""
        cdef vale_port *p
        cdef uint32_t on_port = 0
        self.acquire()
        try:
            p = self.port_at(index)
            self.refresh_clock()
            for key in keys:
                if (p.learning and key & MAC_MASK and not mac_is_group(key)
                        and key >> 48 <= VALE_VLAN_MAX and fdb_learn(self.sw, p, key) < 0):
                    on_port += fdb_lookup_port(&self.sw.fdb, key,
                                               fdb_home(&self.sw.fdb, key)) == p.index
        finally:
            self.release()
        return on_port

    def fdb_seen(self, index, keys):
        """Frames came from these MAC keys on port index that the core did not forward
        (the kernel fast path did): refresh their entries as such frames would have.
        Entries now elsewhere, statics and unknown keys are left as they are. Returns how
        many were refreshed."""
        cdef vale_fdb *t = &self.sw.fdb
        cdef uint32_t ci, idx, refreshed = 0
        cdef uint16_t port
        cdef vale_entry *e
        keys = list(keys)
        for start in range(0, len(keys), FDB_CHUNK):
            self.acquire()
            try:
                port = self.port_at(index).index
                self.refresh_clock()
                for key in keys[start:start + FDB_CHUNK]:
                    ci = fdb_find_cell(t, key)
                    if ci == VALE_NIL:
                        continue
                    idx = t.cells[ci].entry
                    e = &t.entries[idx]
                    if e.port == port and not (e.flags & ENTRY_STATIC):
                        fdb_touch(self.sw, e, idx)
                        refreshed += 1
            finally:
                self.release()
        return refreshed

    def check_capacity(self, capacity):
        """ValueError when set_capacity(capacity) would be refused; changes nothing."""
        check_range("fdb capacity", capacity, 1, MAX_FDB_CAPACITY)
        self.acquire()
        try:
            self.capacity_fits(capacity)
        finally:
            self.release()

    cdef capacity_fits(self, uint32_t capacity):
        if capacity < self.sw.fdb.static_count:
            raise ValueError(f"the FDB holds {self.sw.fdb.static_count} static entries, "
                             f"more than {capacity}")

    def set_capacity(self, capacity, *, chunk=FDB_CHUNK, between=None):
        """Resize the table, never holding the forwarding lock for more than `chunk`
        entries' work at a time (well under a millisecond), so forwarding and learning go
        on throughout. Entries never move (their array is reserved for the largest
        table); a shrink first lowers the limit, so learning evicts instead of adding,
        then evicts fairly down to it, as learning into a full table does (statics never).
        When the number of cells changes, the new cells are filled a chunk of entries at
        a time while the old ones serve lookups, every change to an entry already copied
        made in both (fdb_changed), and they take over in one step at the end.
        between: for tests and bench/fdb_hold.py, called before each hold of the lock and
        after the last, with no lock held."""
        check_range("fdb capacity", capacity, 1, MAX_FDB_CAPACITY)
        check_range("chunk", chunk, 1, FDB_CHUNK)
        cdef vale_fdb *t = &self.sw.fdb
        cdef uint32_t wanted = capacity, most = chunk
        cdef uint32_t ncells = cells_for(wanted)
        cdef vale_cell *fresh = NULL
        cdef vale_cell *old = NULL
        cdef bint done = False
        self.acquire()
        try:
            self.capacity_fits(wanted)
            if self.resizing:
                raise ValueError("the FDB is being resized already")
            self.resizing = True
        finally:
            self.release()
        try:
            if ncells != t.cell_mask + 1:       # read unlocked: only a resize changes it
                with nogil:
                    fresh = cells_alloc(ncells)
                if fresh == NULL:
                    raise MemoryError(f"cannot allocate an FDB of {capacity} entries")
            while not done:                     # a shrink: evict down to the new limit
                if between is not None:
                    between()
                self.acquire()
                self.refresh_clock()
                t.capacity = min(t.capacity, wanted)
                with nogil:
                    done = fdb_evict_some(self.sw, wanted, most)
                if done and fresh == NULL:
                    t.capacity = wanted
                elif done:
                    t.next_cells, fresh = fresh, NULL   # the table owns them now
                    t.next_mask = ncells - 1
                    t.next_shift = cells_shift(ncells)
                    t.moved_upto = 0
                    fdb_rewatch(t)
                self.release()
            while t.next_cells != NULL:         # read unlocked: only a resize sets it
                if between is not None:
                    between()
                self.acquire()
                with nogil:
                    old = fdb_copy_cells(t, wanted, most)
                self.release()
            if between is not None:
                between()
            with nogil:
                free(old)
        finally:
            free(fresh)
            self.resizing = False

    def configure(self, *, ageing=None, batch=None, move_limit=None, move_window=None,
                  ban=None, busy_poll_us=None, lookup=None, loop_hold=None):
        """Change switch settings; the ones left None stay as they are. lookup: one of
        LOOKUP_NAMES."""
        if lookup is not None and lookup not in LOOKUP_NAMES:
            raise ValueError(f"lookup must be one of {', '.join(LOOKUP_NAMES)}, not {lookup!r}")
        if batch is not None:
            check_range("batch", batch, 1, VALE_MAX_BATCH)
        if move_limit is not None:
            check_range("move limit", move_limit, 0, MAX_MOVE_LIMIT)
        if busy_poll_us is not None:
            check_range("busy_poll_us", busy_poll_us, 0, MAX_BUSY_POLL_US)
        cdef uint64_t ageing_ms = seconds_to_ms("ageing", ageing, MAX_SECONDS) if ageing is not None else 0
        cdef uint64_t window_ms = (seconds_to_ms("move window", move_window, MAX_SECONDS)
                                   if move_window is not None else 0)
        cdef uint64_t ban_ms = seconds_to_ms("ban time", ban, MAX_SECONDS) if ban is not None else 0
        cdef uint64_t hold_ms = (seconds_to_ms("loop hold", loop_hold, MAX_SECONDS)
                                 if loop_hold is not None else 0)
        self.acquire()
        try:
            if ageing is not None:
                self.sw.fdb.ageing_ms = ageing_ms
            if batch is not None:
                self.sw.batch = batch
            if move_limit is not None:
                self.sw.fdb.move_limit = move_limit
            if move_window is not None:
                self.sw.fdb.move_window_ms = window_ms
            if ban is not None:
                self.sw.fdb.ban_ms = ban_ms
            if busy_poll_us is not None:
                self.sw.busy_poll_us = busy_poll_us
            if loop_hold is not None:
                self.sw.loop_hold_ms = hold_ms
            if lookup is not None:
                self.sw.lookup = <LookupKind><int>LOOKUP_NAMES.index(lookup)
                self.remove_entries(VALE_NO_PORT, False)
        finally:
            self.release()

    # -- the clock -------------------------------------------------------------------

    @property
    def now(self):
        """The switch clock in seconds."""
        return self.sw.now_ms / 1000.0

    def set_time(self, seconds):
        """Set the manual clock (tests age entries this way, without sleeping)."""
        if not self.sw.manual_clock:
            raise ValueError("the switch runs on the monotonic clock; create it with manual_clock=True")
        cdef uint64_t ms = seconds_to_ms("time", seconds, 1e12)
        if ms < self.sw.now_ms:
            raise ValueError("the clock cannot go backwards")
        self.acquire()
        self.sw.now_ms = ms
        self.release()

    # -- counters --------------------------------------------------------------------

    def snapshot(self):
        """A copy of every counter, taken under the lock in one go."""
        cdef vale_fdb *t = &self.sw.fdb
        cdef vale_port *p
        cdef uint32_t k
        self.acquire()
        try:
            self.refresh_clock()
            ports = {}
            for k in range(self.sw.nactive):
                p = self.sw.ports[self.sw.active[k]]
                ports[p.index] = {
                    "rx_packets": p.c.rx_packets, "rx_bytes": p.c.rx_bytes,
                    "tx_packets": p.c.tx_packets, "tx_bytes": p.c.tx_bytes,
                    "flood_packets": p.c.flood_packets,
                    "tx_ring_packets": p.tx_ring_packets,
                    "capture_lost": p.capture_lost[0] + p.capture_lost[1],
                    "drops": {DROP_REASONS[r]: p.c.drops[r] for r in range(N_DROP_REASONS)},
                    "fdb_entries": p.dyn_count,
                    "up": bool(p.up),
                    "blocked": p.blocked_until > self.sw.now_ms,
                    "loops_found": p.loops_found,
                }
            return {
                "now": self.sw.now_ms / 1000.0,
                "fdb": {
                    "entries": t.count, "static": t.static_count, "capacity": t.capacity,
                    "learned": t.learned, "moved": t.moved,
                    "expired": t.expired, "evicted": t.evicted,
                },
                "batches": self.sw.batches,
                "batch_frames": self.sw.batch_frames,
                "loops": self.sw.loops,
                "batch_hist": [self.sw.batch_hist[k] for k in range(VALE_HIST_BUCKETS)],
                "settings": {
                    "ageing": t.ageing_ms / 1000.0, "batch": self.sw.batch,
                    "move_limit": t.move_limit, "move_window": t.move_window_ms / 1000.0,
                    "ban": t.ban_ms / 1000.0, "busy_poll_us": self.sw.busy_poll_us,
                    "lookup": LOOKUP_NAMES[<int>self.sw.lookup],
                    "loop_hold": self.sw.loop_hold_ms / 1000.0,
                },
                "ports": ports,
            }
        finally:
            self.release()

    # -- capture and mirrors ---------------------------------------------------------

    def set_capture(self, index, *, rx, tx):
        """Copy a port's received (rx) and sent (tx) frames to the capture ring."""
        cdef vale_port *p
        cdef uint8_t flags = (CAPTURE_RX if rx else 0) | (CAPTURE_TX if tx else 0)
        self.acquire()
        try:
            p = self.port_at(index)
            if flags and self.sw.cap.buf == NULL:
                if ring_init(&self.sw.cap, CAPTURE_SLOTS, CAPTURE_SNAP + 64) != 0:
                    raise MemoryError("cannot allocate the capture ring")
                self.sw.cap_stamps = <uint64_t *>calloc(CAPTURE_SLOTS, sizeof(uint64_t))
                if self.sw.cap_stamps == NULL:
                    ring_free(&self.sw.cap)
                    raise MemoryError("cannot allocate the capture ring")
            if bool(p.capture) != bool(flags):
                self.sw.capturing += 1 if flags else -1
            p.capture = flags
        finally:
            self.release()

    def capture_drain(self, limit=4096):
        """Captured frames, oldest first: (port index, 'rx' or 'tx', CLOCK_REALTIME ns,
        original length, the bytes kept)."""
        cdef vale_ring *r = &self.sw.cap
        cdef vale_slot *slot
        cdef uint32_t n, idx
        out = []
        self.acquire()
        try:
            if r.buf == NULL:
                return out
            n = min(ring_count(r), limit)
            for _ in range(n):
                idx = r.tail & r.mask
                slot = &r.slots[idx]
                out.append((slot.flags & 0xFFFF, "tx" if slot.flags >> 16 else "rx",
                            self.sw.cap_stamps[idx], slot._reserved,
                            PyBytes_FromStringAndSize(r.buf + slot.off, slot.len)))
                r.tail += 1
            return out
        finally:
            self.release()

    def capture_lost(self, index):
        """Copies the capture ring had no room for, (received, sent), since the port came."""
        cdef vale_port *p
        self.acquire()
        try:
            p = self.port_at(index)
            return p.capture_lost[0], p.capture_lost[1]
        finally:
            self.release()

    def set_mirror(self, index, *, rx_to=None, tx_to=None):
        """Copy what port `index` receives to port rx_to, what it sends to tx_to (None:
        no mirror). The caller rules out loops."""
        cdef vale_port *p
        self.acquire()
        try:
            p = self.port_at(index)
            for target in (rx_to, tx_to):
                if target is not None and self.port_at(target).index == p.index:
                    raise ValueError("a port cannot mirror to itself")
            p.mirror_rx = VALE_NO_PORT if rx_to is None else <uint16_t>rx_to
            p.mirror_tx = VALE_NO_PORT if tx_to is None else <uint16_t>tx_to
        finally:
            self.release()

    # -- the forwarding thread -------------------------------------------------------

    def run(self, name=None):
        """The forwarding loop, for a thread of its own: returns after stop(). Holds no
        GIL while it runs. `name` (15 bytes at most) names the thread for top and perf."""
        cdef bytes label = (name or "").encode()[:15]
        if label:
            prctl(PR_SET_NAME, <unsigned long><char *>label, 0, 0, 0)
        with nogil:
            run_loop(self.sw, &self.lock)

    def stop(self):
        """Make run() return (soon: the thread finishes its round first)."""
        cdef uint64_t one = 1
        self.acquire()
        self.sw.stopping = True
        self.release()
        write(self.sw.wake_fd, &one, sizeof(one))

    @property
    def notify_fd(self):
        """Readable when the thread has put a port down (its link failed or vanished);
        read 8 bytes to clear it, then look at port_info()."""
        return self.sw.notify_fd

    @property
    def journal_fd(self):
        """Readable when the MAC table's journal has gone from empty to not (fdb_changes
        clears it): the kernel fast path's maps follow at once, not at the next tick."""
        return self.sw.journal_fd

    def clear_notify(self):
        cdef uint64_t value = 0
        read(self.sw.notify_fd, &value, sizeof(value))
        return value

    @property
    def loops(self):
        """Forwarding-loop rounds so far: a watchdog sees progress here."""
        return self.sw.loops

    def poll_kernel_drops(self):
        """Add the frames each port's kernel side had no room for since the last call to
        its ring_full drops; returns {port index: frames dropped}. A port whose ring was
        found stuck (and made again, or not: rx_stuck) is in it too, with its count -1:
        those losses are its rx_stuck drops."""
        cdef uint32_t k
        cdef uint64_t dropped, resets
        cdef bint stuck
        cdef vale_port *p
        out = {}
        self.acquire()
        try:
            for k in range(self.sw.nactive):
                p = self.sw.ports[self.sw.active[k]]
                if ops_of(p).kernel_drops == NULL:
                    continue
                resets, stuck = p.rx_resets, p.rx_stuck
                dropped = ops_of(p).kernel_drops(p)
                p.c.drops[DROP_RING_FULL] += dropped
                if p.rx_resets != resets or (p.rx_stuck and not stuck):
                    out[p.index] = -1
                elif dropped:
                    out[p.index] = dropped
            return out
        finally:
            self.release()

    # -- benchmark driver ------------------------------------------------------------

    def bench_forward(self, index, uint64_t frames):
        """Forward at least `frames` frames from a port whose RX ring was filled to the
        brim, re-using its frames (rewind) and emptying every TX ring after each batch,
        as bench/fastpath_c.c does. Returns (frames forwarded, nanoseconds)."""
        cdef vale_port *src
        cdef vale_ring *rx
        cdef uint64_t done = 0, t0, t1
        cdef uint32_t k
        cdef vale_port *p
        self.acquire()
        try:
            src = memory_port(self.port_at(index))
            rx = &src.rx
            if ring_count(rx) != rx.nslots:
                raise ValueError("fill the source RX ring completely before benchmarking")
            with nogil:
                t0 = monotonic_ns()
                while done < frames:
                    if rx.head == rx.tail:
                        rx.tail = rx.head - rx.nslots
                    done += forward_port(self.sw, src)
                    for k in range(self.sw.nactive):
                        p = self.sw.ports[self.sw.active[k]]
                        p.tx.tail = p.tx.head
                t1 = monotonic_ns()
                rx.tail = rx.head - rx.nslots
            return done, t1 - t0
        finally:
            self.release()

    # -- test hooks ----------------------------------------------------------------------

    def _hold_tx_slot(self, index, uint32_t ahead, bint held):
        """Tests: mark the slot AHEAD places past the head of packet port INDEX's TX ring
        as in flight (held) or free again. A NIC keeps a slot until its frame is on the
        wire; veth frees each one at once, so nothing else makes the ring busy here."""
        cdef vale_port *p
        self.acquire()
        try:
            p = packet_port(self.port_at(index))
            vale_store_release(&packet_frame(&p.ptx, p.ptx.head + ahead).tp_status,
                               TP_STATUS_SENDING if held else TP_STATUS_AVAILABLE)
        finally:
            self.release()
