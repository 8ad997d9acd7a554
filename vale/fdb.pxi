# The MAC table (FDB).
#
# Keys are (VLAN, MAC): the same MAC in two VLANs is two entries.
# Cells: open addressing with linear probing, at most half full, each cell holding the
# key and its port so a destination lookup reads one cache line. Deletion shifts later
# cells back (no tombstones), so probe runs stay short however long the switch runs.
# Entries: a fixed array, one per MAC, holding what learning needs (timestamps, moves,
# the per-port LRU links). Dynamic entries of a port form a list in last_seen order:
# ageing pops aged heads, eviction takes the oldest entry of the largest port. No timer
# per entry and no full-table sweep.

cdef enum:
    PREFETCH_AHEAD = 16         # frames between a cell's prefetch and its lookup
    FDB_CHUNK = 2048            # entries listed or moved per hold of the forwarding lock (< 1 ms)

cdef extern from *:
    """
    /* Fibonacci hashing: the top bits of key * 2^64/phi spread MACs evenly. */
    #define VALE_HASH_MULTIPLIER 0x9E3779B97F4A7C15ULL
    """
    uint64_t VALE_HASH_MULTIPLIER


cdef inline uint64_t load_mac(const char *p) noexcept nogil:
    """The 6 bytes at p as a 48-bit key, byte 0 in the low bits (so bit 0 is the group bit)."""
    cdef uint32_t lo
    cdef uint16_t hi
    memcpy(&lo, p, 4)
    memcpy(&hi, p + 4, 2)
    return <uint64_t>lo | (<uint64_t>hi << 32)


cdef inline bint mac_is_group(uint64_t key) noexcept nogil:
    return key & 1


cdef inline uint32_t cells_home(uint32_t shift, uint64_t key) noexcept nogil:
    return <uint32_t>((key * VALE_HASH_MULTIPLIER) >> shift)


cdef inline uint32_t fdb_home(const vale_fdb *t, uint64_t key) noexcept nogil:
    return cells_home(t.cell_shift, key)


cdef inline uint32_t cells_find(const vale_cell *cells, uint32_t mask, uint32_t shift,
                                uint64_t key) noexcept nogil:
    """The cell holding key, or VALE_NIL."""
    cdef uint32_t i = cells_home(shift, key)
    cdef uint64_t k
    while True:
        k = cells[i].key
        if k == 0:                      # first, so the zero MAC never matches an empty cell
            return VALE_NIL
        if k == key:
            return i
        i = (i + 1) & mask


cdef inline uint32_t fdb_find_cell(const vale_fdb *t, uint64_t key) noexcept nogil:
    return cells_find(t.cells, t.cell_mask, t.cell_shift, key)


cdef inline uint16_t fdb_lookup_port(const vale_fdb *t, uint64_t key,
                                     uint32_t i) noexcept nogil:
    """The port a unicast MAC was learned on, or VALE_NO_PORT; i: the key's home cell."""
    cdef uint64_t k
    while True:
        k = t.cells[i].key
        if k == 0:
            return VALE_NO_PORT
        if k == key:
            return t.cells[i].port
        i = (i + 1) & t.cell_mask


cdef inline void fdb_prefetch(const vale_fdb *t, uint32_t home) noexcept nogil:
    vale_prefetch(&t.cells[home])


cdef inline uint32_t cells_put(vale_cell *cells, uint32_t mask, uint32_t shift, uint64_t key,
                               uint32_t entry, uint16_t port) noexcept nogil:
    """Add a key known to be absent, with room known to exist; returns its cell."""
    cdef uint32_t i = cells_home(shift, key)
    while cells[i].key != 0:
        i = (i + 1) & mask
    cells[i].key = key
    cells[i].entry = entry
    cells[i].port = port
    return i


cdef inline void cells_delete(vale_cell *cells, uint32_t mask, uint32_t shift, uint32_t i,
                              vale_entry *entries) noexcept nogil:
    """Empty cell i, shifting back the cells of its probe run that may move (and telling
    their entries where they went, unless entries is NULL)."""
    cdef uint32_t j = i
    cdef uint32_t home
    while True:
        j = (j + 1) & mask
        if cells[j].key == 0:
            break
        home = cells_home(shift, cells[j].key)
        # The cell at j may fill the hole at i unless its home lies cyclically in (i, j].
        if i <= j:
            if i < home <= j:
                continue
        elif i < home or home <= j:
            continue
        cells[i] = cells[j]
        if entries != NULL:
            entries[cells[i].entry].cell = i
        i = j
    cells[i].key = 0


cdef uint32_t cells_for(uint32_t capacity) noexcept nogil:
    """Cells for a capacity: a power of two, at least twice the capacity."""
    cdef uint32_t n = 16
    while n < 2 * <uint64_t>capacity:
        n <<= 1
    return n


cdef vale_cell *cells_alloc(uint32_t ncells) noexcept nogil:
    """ncells empty cells (a power of two), or NULL when out of memory."""
    cdef void *mem = NULL
    cdef size_t size = <size_t>ncells * sizeof(vale_cell)
    if posix_memalign(&mem, HUGE_ALIGN if size >= HUGE_ALIGN else 4096, size) != 0:
        return NULL
    if size >= HUGE_ALIGN:
        madvise(mem, size, MADV_HUGEPAGE)   # fewer TLB misses in big rings and tables
    memset(mem, 0, size)
    return <vale_cell *>mem


cdef uint32_t cells_shift(uint32_t ncells) noexcept nogil:
    """64 - log2(ncells): the shift that makes a hash a cell index."""
    cdef uint32_t bits = 0
    while (<uint32_t>1 << bits) < ncells:
        bits += 1
    return 64 - bits


cdef int fdb_alloc(vale_fdb *t, uint32_t capacity) noexcept nogil:
    """Allocate empty cells for capacity MACs and room for the most entries a table may
    ever hold (address space only: pages are taken as entries are first used, so a resize
    never moves an entry); 0, or -1 when out of memory."""
    cdef uint32_t ncells = cells_for(capacity)
    cdef void *mem = mmap(NULL, <size_t>VALE_MAX_FDB_CAPACITY * sizeof(vale_entry),
                          PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                          -1, 0)
    if mem == MAP_FAILED:
        return -1
    t.cells = cells_alloc(ncells)
    if t.cells == NULL:
        munmap(mem, <size_t>VALE_MAX_FDB_CAPACITY * sizeof(vale_entry))
        return -1
    t.entries = <vale_entry *>mem
    t.cell_mask = ncells - 1
    t.cell_shift = cells_shift(ncells)
    t.capacity = capacity
    t.free_head = VALE_NIL
    t.used_top = 0
    t.next_cells = NULL
    t.journal = NULL
    t.watched = False
    t.kernel_src_fd = -1
    t.count = 0
    t.static_count = 0
    return 0


cdef void fdb_release(vale_fdb *t) noexcept nogil:
    free(t.cells)
    free(t.next_cells)
    free(t.journal)
    t.journal = NULL
    if t.entries != NULL:
        munmap(t.entries, <size_t>VALE_MAX_FDB_CAPACITY * sizeof(vale_entry))
    t.cells = NULL
    t.next_cells = NULL
    t.entries = NULL


cdef extern from *:
    """
    #include <string.h>
    #include <unistd.h>
    #include <sys/syscall.h>
    #include <linux/bpf.h>
    /* Remove key from a BPF hash map; 0, or -1 with errno. */
    static int vale_bpf_map_delete(int fd, const void *key)
    {
        union bpf_attr attr;
        memset(&attr, 0, sizeof(attr));
        attr.map_fd = (unsigned int)fd;
        attr.key = (unsigned long long)(unsigned long)key;
        return (int)syscall(__NR_bpf, BPF_MAP_DELETE_ELEM, &attr, sizeof(attr));
    }
    """
    int vale_bpf_map_delete(int fd, const void *key) nogil


cdef inline bint journaled(vale_switch *sw, uint16_t port) noexcept nogil:
    return port != VALE_NO_PORT and sw.ports[port] != NULL and sw.ports[port].journaled


cdef void fdb_journal(vale_switch *sw, uint64_t key, uint16_t port, uint16_t was) noexcept nogil:
    """Note that key is now on port (VALE_NO_PORT: gone) when a journal is kept and either
    port (or was, where it was before) is one whose changes it keeps."""
    cdef vale_fdb *t = &sw.fdb
    if t.journal == NULL or not (journaled(sw, port) or journaled(sw, was)):
        return
    if t.journal_len == FDB_JOURNAL_SIZE:
        t.journal_lost = True
        return
    t.journal[t.journal_len].key = key
    t.journal[t.journal_len].port = port
    t.journal_len += 1
    if t.journal_len == 1:              # tell valed: it reads the journal now
        eventfd_write(sw.journal_fd, 1)


cdef void fdb_rewatch(vale_fdb *t) noexcept nogil:
    """Whether a change to an entry has more to update than the cells (fdb_changed)."""
    t.watched = t.journal != NULL or t.next_cells != NULL


cdef void fdb_changed(vale_switch *sw, uint32_t idx, uint64_t key, uint16_t port,
                      uint16_t was) noexcept nogil:
    """Entry idx (its key) was added (was VALE_NO_PORT), moved from port `was` or removed
    (port VALE_NO_PORT): note it in the journal, and while the cells are resized, make the
    change in the new cells too when the entry's cell is there already. Called only while
    t.watched, so a table with neither costs one test per change."""
    cdef vale_fdb *t = &sw.fdb
    cdef uint32_t ci
    if t.next_cells != NULL and idx < t.moved_upto:
        if was == VALE_NO_PORT:
            cells_put(t.next_cells, t.next_mask, t.next_shift, key, idx, port)
        else:
            ci = cells_find(t.next_cells, t.next_mask, t.next_shift, key)
            if port == VALE_NO_PORT:
                cells_delete(t.next_cells, t.next_mask, t.next_shift, ci, NULL)
            else:
                t.next_cells[ci].port = port
    fdb_journal(sw, key, port, was)
    if (t.kernel_src_fd >= 0 and was != VALE_NO_PORT and port != VALE_NO_PORT
            and journaled(sw, was)):
        # A move: the kernel must not take the MAC's frames on the port it left a moment
        # longer (until valed reads the journal), or they would pass the move damping by.
        # Its next frames go to vale, whichever port they come from, until the journal
        # puts the entry back where it now is. Moves are damped, so these are few.
        vale_bpf_map_delete(t.kernel_src_fd, &key)


cdef inline void lru_unlink(vale_switch *sw, vale_entry *e) noexcept nogil:
    cdef vale_port *p = sw.ports[e.port]
    cdef vale_entry *ents = sw.fdb.entries
    if e.prev != VALE_NIL:
        ents[e.prev].next = e.next
    else:
        p.lru_head = e.next
    if e.next != VALE_NIL:
        ents[e.next].prev = e.prev
    else:
        p.lru_tail = e.prev
    p.dyn_count -= 1


cdef inline void lru_append(vale_switch *sw, vale_entry *e, uint32_t idx) noexcept nogil:
    cdef vale_port *p = sw.ports[e.port]
    e.next = VALE_NIL
    e.prev = p.lru_tail
    if p.lru_tail != VALE_NIL:
        sw.fdb.entries[p.lru_tail].next = idx
    else:
        p.lru_head = idx
    p.lru_tail = idx
    p.dyn_count += 1


cdef inline void fdb_touch(vale_switch *sw, vale_entry *e, uint32_t idx) noexcept nogil:
    """A frame came from this entry's MAC on its own port: it is the newest of its port."""
    if e.last_seen == sw.now_ms:
        return
    e.last_seen = sw.now_ms
    if sw.ports[e.port].lru_tail != idx:
        lru_unlink(sw, e)
        lru_append(sw, e, idx)


cdef void fdb_remove(vale_switch *sw, uint32_t idx) noexcept nogil:
    """Remove entry idx from the table, its cell and its port's list."""
    cdef vale_fdb *t = &sw.fdb
    cdef vale_entry *e = &t.entries[idx]
    cdef uint32_t ci
    if e.flags & ENTRY_STATIC:
        t.static_count -= 1
    else:
        lru_unlink(sw, e)
    ci = e.cell & t.cell_mask
    if t.cells[ci].key != e.key:            # a resize has moved it since
        ci = fdb_find_cell(t, e.key)
    cells_delete(t.cells, t.cell_mask, t.cell_shift, ci, t.entries)
    if vale_unlikely(t.watched):
        fdb_changed(sw, idx, e.key, VALE_NO_PORT, e.port)
    e.flags = 0
    e.key = 0
    e.next = t.free_head
    t.free_head = idx
    t.count -= 1


cdef inline uint32_t fdb_insert(vale_switch *sw, uint64_t key, uint16_t port, bint static) noexcept nogil:
    """Add a MAC known to be absent, with room known to exist; returns its entry index."""
    cdef vale_fdb *t = &sw.fdb
    cdef uint32_t idx = t.free_head
    cdef vale_entry *e
    if idx != VALE_NIL:
        t.free_head = t.entries[idx].next
    else:
        idx = t.used_top
        t.used_top += 1
    e = &t.entries[idx]
    e.cell = cells_put(t.cells, t.cell_mask, t.cell_shift, key, idx, port)
    if vale_unlikely(t.watched):
        fdb_changed(sw, idx, key, port, VALE_NO_PORT)
    e.key = key
    e.port = port
    e.settled = port
    e.last_seen = sw.now_ms
    e.window_start = sw.now_ms
    e.ban_until = 0
    e.moves = 0
    t.count += 1
    if static:
        e.flags = ENTRY_USED | ENTRY_STATIC
        e.prev = VALE_NIL
        e.next = VALE_NIL
        t.static_count += 1
    else:
        e.flags = ENTRY_USED
        lru_append(sw, e, idx)
    return idx


cdef bint fdb_evict_one(vale_switch *sw, uint16_t prefer) noexcept nogil:
    """Make room by evicting the oldest entry of the port holding the most dynamic
    entries (the learning port `prefer` first among equals, then the lowest index).
    A port spraying source MACs is always the largest, so it evicts its own entries and
    can never push another port below an even share. False when only statics remain."""
    cdef uint32_t k
    cdef uint16_t victim = VALE_NO_PORT
    cdef uint32_t most = 0
    cdef vale_port *p
    for k in range(sw.nactive):
        p = sw.ports[sw.active[k]]
        if p.dyn_count > most:
            most = p.dyn_count
            victim = p.index
    if victim == VALE_NO_PORT:
        return False
    if prefer != VALE_NO_PORT and sw.ports[prefer] != NULL and sw.ports[prefer].dyn_count == most:
        victim = prefer
    fdb_remove(sw, sw.ports[victim].lru_head)
    sw.fdb.evicted += 1
    return True


cdef void fdb_expire(vale_switch *sw) noexcept nogil:
    """Remove every dynamic entry not seen for the ageing time. Each port's list is in
    last_seen order, so this looks at one entry per port when nothing is due."""
    cdef vale_fdb *t = &sw.fdb
    cdef uint32_t k, head
    cdef vale_port *p
    if t.ageing_ms == 0:
        return
    for k in range(sw.nactive):
        p = sw.ports[sw.active[k]]
        head = p.lru_head
        while head != VALE_NIL and sw.now_ms - t.entries[head].last_seen >= t.ageing_ms:
            fdb_remove(sw, head)
            t.expired += 1
            head = p.lru_head


cdef inline int fdb_learn(vale_switch *sw, vale_port *src, uint64_t key) noexcept nogil:
    """Learn that unicast MAC key sits behind port src. Returns -1 to forward the frame,
    or a DropReason when the frame must be dropped (learn limit, banned mover)."""
    cdef vale_entry *e
    # Runs of frames from one host skip the hash (VALE's per-port source cache).
    if src.last_src == key:
        e = src.last_src_at
        if e.key == key and e.port == src.index and (e.flags & ENTRY_USED):
            if not (e.flags & ENTRY_STATIC):
                fdb_touch(sw, e, src.last_src_entry)
            return -1
    return fdb_learn_new(sw, src, key)


cdef void fdb_move(vale_switch *sw, vale_entry *e, uint32_t idx, uint32_t ci,
                   uint16_t port) noexcept nogil:
    """Put dynamic entry idx (in cell ci) on another port, as the newest of its entries
    there."""
    cdef vale_fdb *t = &sw.fdb
    cdef uint16_t was = e.port
    lru_unlink(sw, e)
    e.port = port
    t.cells[ci].port = port
    if vale_unlikely(t.watched):
        fdb_changed(sw, idx, e.key, port, was)
    e.last_seen = sw.now_ms
    lru_append(sw, e, idx)


cdef int fdb_learn_new(vale_switch *sw, vale_port *src, uint64_t key) noexcept nogil:
    """fdb_learn for a source other than the port's last one."""
    cdef vale_fdb *t = &sw.fdb
    cdef uint32_t idx, ci
    cdef vale_entry *e
    if vale_unlikely((key & MAC_MASK) == loop_src_key(sw)):
        return -1                           # a loop probe of this switch: never learned
    ci = fdb_find_cell(t, key)
    if ci != VALE_NIL:
        idx = t.cells[ci].entry
        e = &t.entries[idx]
        if e.flags & ENTRY_STATIC:
            return -1                       # statics neither age nor move
        if e.port == src.index:
            fdb_touch(sw, e, idx)
        else:
            # A move. Damping first: a banned MAC is not re-learned elsewhere.
            if sw.now_ms < e.ban_until:
                return DROP_LEARN_BANNED
            if src.learn_limit != 0 and src.dyn_count >= src.learn_limit:
                return DROP_LEARN_LIMIT
            if sw.now_ms - e.window_start >= t.move_window_ms:
                e.window_start = sw.now_ms
                e.moves = 0
                e.settled = e.port
            if t.move_limit != 0 and e.moves >= t.move_limit:
                # Banned where it was before the moves began, not where the last mover
                # put it: a port taking a MAC over in turns with another never keeps it.
                e.ban_until = sw.now_ms + t.ban_ms
                e.moves = 0
                e.window_start = sw.now_ms
                if e.port != e.settled:
                    fdb_move(sw, e, idx, ci, e.settled)
                if e.port != src.index:
                    return DROP_LEARN_BANNED
            else:
                e.moves += 1
                fdb_move(sw, e, idx, ci, src.index)
                t.moved += 1
    else:
        if src.learn_limit != 0 and src.dyn_count >= src.learn_limit:
            return DROP_LEARN_LIMIT
        if t.count >= t.capacity and not fdb_evict_one(sw, src.index):
            return -1                       # full of statics: forward, learn nothing
        idx = fdb_insert(sw, key, src.index, False)
        t.learned += 1
    src.last_src = key
    src.last_src_entry = idx
    src.last_src_at = &t.entries[idx]
    return -1


cdef uint32_t fdb_remove_port(vale_switch *sw, uint32_t port, bint statics) noexcept nogil:
    """Remove the entries of one port (VALE_NO_PORT: of every port), statics only when
    asked; returns how many went. Entries elsewhere that a ban would put back on that
    port stay where they are instead."""
    cdef vale_fdb *t = &sw.fdb
    cdef uint32_t i, removed = 0
    for i in range(t.used_top):
        if not (t.entries[i].flags & ENTRY_USED):
            continue
        if t.entries[i].settled == port:       # a ban would put it back on no port
            t.entries[i].settled = t.entries[i].port
        if port != VALE_NO_PORT and t.entries[i].port != port:
            continue
        if (t.entries[i].flags & ENTRY_STATIC) and not statics:
            continue
        fdb_remove(sw, i)
        removed += 1
    return removed


cdef bint fdb_evict_some(vale_switch *sw, uint32_t limit, uint32_t most) noexcept nogil:
    """Evict up to `most` entries towards at most `limit`; True when there (or when only
    statics are left)."""
    cdef uint32_t k
    for k in range(most):
        if sw.fdb.count <= limit or not fdb_evict_one(sw, VALE_NO_PORT):
            return True
    return sw.fdb.count <= limit


cdef vale_cell *fdb_copy_cells(vale_fdb *t, uint32_t capacity, uint32_t most) noexcept nogil:
    """Put the cells of the next `most` entries into next_cells. When every entry has its
    cell there, the new cells take over (with capacity) and the old ones are returned, for
    the caller to free; NULL until then."""
    cdef uint32_t k, end = min(t.moved_upto + most, t.used_top)
    cdef vale_cell *old
    for k in range(t.moved_upto, end):
        if t.entries[k].flags & ENTRY_USED:
            cells_put(t.next_cells, t.next_mask, t.next_shift, t.entries[k].key, k,
                      t.entries[k].port)
    t.moved_upto = end
    if end < t.used_top:
        return NULL
    old = t.cells
    t.cells = t.next_cells
    t.cell_mask = t.next_mask
    t.cell_shift = t.next_shift
    t.capacity = capacity
    t.next_cells = NULL
    fdb_rewatch(t)
    return old


# ---- the learning lookup -------------------------------------------------------------

cdef extern from *:
    """
    #define VALE_MAC_MASK ((1ULL << 48) - 1)
    """
    const uint64_t MAC_MASK "VALE_MAC_MASK"


cdef inline uint64_t vlan_key(uint64_t mac, uint16_t vlan) noexcept nogil:
    """The table's key: the MAC in the low 48 bits, its VLAN above."""
    return mac | (<uint64_t>vlan << 48)


# The learning lookup is compiled twice, for a switch with VLANs off and on (`vlans` of a
# type of its own in each, and so a constant where each is inlined): the copy for VLANs
# off makes none of their tests per frame.
ctypedef unsigned char VlansOff
ctypedef signed char VlansOn
ctypedef fused VlanState:
    VlansOff
    VlansOn


cdef inline void learning_lookup(vale_switch *sw, vale_port *src, uint32_t n,
                                 VlanState vlans) noexcept nogil:
    """VALE's lookup stage, the default one: in batch order, for each frame the bridge
    admits, learn its source (VLAN, MAC) on src, then give it its verdict: the port its
    destination was learned on, a flood (group or unknown destination), or a drop (learn
    limit, banned mover, the destination on src itself, or on a port not carrying the
    VLAN, or a loop probe of this switch come back: loopguard.pxi). vlans:
    whether a port of the switch has a VLAN mode (admit's flag).
    The cell of the frame PREFETCH_AHEAD places on is prefetched before each lookup, so
    lookups find cells in cache even in a table far larger than the caches, without more
    misses in flight than the memory system can track."""
    cdef vale_fdb *t = &sw.fdb
    cdef vale_desc *d
    cdef uint32_t i
    cdef uint16_t port
    cdef uint64_t skey, dkey
    cdef int reason
    cdef bint learning = src.learning and src.up    # down: its MACs were just forgotten
    cdef uint16_t own = src.index
    cdef vale_admit a = admit_for(src)
    for i in range(min(n, PREFETCH_AHEAD)):
        fdb_prefetch(t, sw.dhomes[i])
    for i in range(n):
        if i + PREFETCH_AHEAD < n:
            fdb_prefetch(t, sw.dhomes[i + PREFETCH_AHEAD])
        if not admit(sw, src, i, vlans, a):
            continue
        dkey = sw.dkeys[i]
        d = &sw.descs[i]
        if learning:
            skey = load_mac(d.data + 6)
            if not mac_is_group(skey) and skey != 0:
                reason = fdb_learn(sw, src, skey | (dkey & ~MAC_MASK))     # dkey's VLAN
                if vale_unlikely(reason >= 0):
                    give_verdict(sw, src, i, VALE_DROP + reason)
                    continue
        if mac_is_group(dkey):
            give_verdict(sw, src, i, group_verdict(sw, src, i))
            continue
        port = fdb_lookup_port(t, dkey, sw.dhomes[i])
        if vale_unlikely(port == VALE_NO_PORT):
            d.flags |= FRAME_UNKNOWN_UNICAST
            give_verdict(sw, src, i, VALE_FLOOD)
        elif vale_unlikely(port == own):
            give_verdict(sw, src, i, VALE_DROP + DROP_OWN_PORT)
        elif vlans and not carries(sw.ports[port], d.vlan):
            give_verdict(sw, src, i, VALE_DROP + DROP_VLAN)
        else:
            give_verdict(sw, src, i, port)
