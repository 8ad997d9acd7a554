/*
 * fastpath_c.c: the forwarding core of vale, written by hand in plain C.
 *
 * The twin of vale/_fastpath.pyx (with ring.pxi, fdb.pxi and forward.pxi): the same
 * structs, the same per-batch steps in the same order, the same benchmark loop as
 * SwitchCore.bench_forward. bench/fastpath.py runs both and compares them, which shows
 * what the Cython core costs over hand-written C. Functions are `static inline` where
 * the Cython ones are `cdef inline` and plain `static` otherwise, like the generated C.
 * Left out, because no benchmark case reaches them: port removal, the table resize and
 * the Python-facing API. The learning path keeps every branch it has in Cython.
 *
 * Build:  gcc -std=c11 -O2 -g0 -o bench/fastpath_c bench/fastpath_c.c
 * Usage:  fastpath_c CASE FRAME_SIZE BATCH FRAMES [TABLE_SIZE]
 *         CASE is unicast, flood or random. Prints one JSON line with the frames
 *         forwarded, the nanoseconds taken and the counters of the timed loop.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define VALE_MAX_PORTS 256
#define VALE_MAX_BATCH 1024
#define VALE_SLOT_ALIGN 64
#define VALE_ETH_HLEN 14
#define VALE_HIST_BUCKETS 11

#define VALE_NO_PORT 0xFFFF
#define VALE_NIL 0xFFFFFFFFu
#define NO_FRAME 0xFFFF

#define VALE_HASH_MULTIPLIER 0x9E3779B97F4A7C15ULL

#define vale_prefetch(p) __builtin_prefetch((p))
#define HUGE_ALIGN (2u << 20)  /* large areas 2 MiB aligned, for huge pages */
#define PREFETCH_AHEAD 16   /* frames between a cell's prefetch and its lookup */
#define vale_likely(x) __builtin_expect(!!(x), 1)
#define vale_unlikely(x) __builtin_expect(!!(x), 0)

enum {
    DROP_RING_FULL, DROP_RUNT, DROP_OWN_PORT, DROP_TOO_BIG, DROP_LEARN_LIMIT,
    DROP_LEARN_BANNED, DROP_BAD_OFFLOAD, DROP_TX_ERROR, N_DROP_REASONS
};
enum { FRAME_UNKNOWN_UNICAST = 1, FRAME_VNET = 2, FRAME_VLAN = 4, FRAME_BAD = 8 };
enum { PORT_MEMORY = 0, PORT_PACKET = 1 };
enum { ENTRY_USED = 1, ENTRY_STATIC = 2 };

/* ---- structs, field for field as in vale/_fastpath.pxd ------------------------- */

typedef struct {
    uint32_t off, len, flags, _reserved;
} vale_slot;

typedef struct {
    char *buf;
    vale_slot *slots;
    uint32_t nslots, mask, slot_size;
    uint32_t head, tail;                /* free-running */
} vale_ring;

typedef struct {
    char *data;
    uint32_t len, flags;
} vale_desc;

typedef struct {                        /* 16 bytes, four to a cache line */
    uint64_t key;
    uint32_t entry;
    uint16_t port, _reserved;
} vale_cell;

typedef struct {
    uint64_t key, last_seen, window_start, ban_until;
    uint32_t prev, next, cell;
    uint16_t port;
    uint8_t flags, moves;
} vale_entry;

typedef struct {
    vale_cell *cells;
    uint32_t cell_mask, cell_shift;
    vale_entry *entries;
    uint32_t capacity, free_head, count, static_count;
    uint64_t ageing_ms, move_window_ms, ban_ms;
    uint32_t move_limit;
    uint64_t learned, moved, expired, evicted;
} vale_fdb;

typedef struct {
    uint64_t rx_packets, rx_bytes, tx_packets, tx_bytes, flood_packets;
    uint64_t drops[N_DROP_REASONS];
} vale_port_counters;

typedef struct {
    vale_ring rx, tx;
    vale_port_counters c;
    uint32_t learn_limit, dyn_count, lru_head, lru_tail;
    uint64_t last_src;
    uint32_t last_src_entry;
    uint16_t index;
    int learning, flood;                /* bint */
    int kind, up, vnet;
    uint32_t max_frame;
    uint8_t capture;                    /* CAPTURE_RX | CAPTURE_TX; 0 in the benchmark */
    uint16_t mirror_rx, mirror_tx;      /* VALE_NO_PORT in the benchmark */
} vale_port;

typedef struct {
    vale_fdb fdb;
    vale_port *ports[VALE_MAX_PORTS];
    uint16_t active[VALE_MAX_PORTS];
    uint32_t nactive, batch;
    uint64_t now_ms;
    int manual_clock;
    uint64_t batches, batch_frames, batch_hist[VALE_HIST_BUCKETS];
    vale_desc descs[VALE_MAX_BATCH];
    uint64_t dkeys[VALE_MAX_BATCH];
    uint16_t next_frame[VALE_MAX_BATCH];
    uint16_t list_head[VALE_MAX_PORTS], list_tail[VALE_MAX_PORTS];
    uint16_t flood_head, flood_tail;
    uint32_t capturing;                 /* ports capturing; 0 in the benchmark */
} vale_switch;

/* ---- clock --------------------------------------------------------------------- */

static inline uint64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)(ts.tv_nsec / 1000000);
}

static inline uint64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000 + (uint64_t)ts.tv_nsec;
}

/* ---- rings (ring.pxi) ---------------------------------------------------------- */

static int ring_init(vale_ring *r, uint32_t nslots, uint32_t slot_size)
{
    void *mem = NULL;
    size_t size = (size_t)nslots * slot_size;
    r->buf = NULL;
    r->slots = NULL;
    if (posix_memalign(&mem, size >= HUGE_ALIGN ? HUGE_ALIGN : 4096, size) != 0)
        return -1;
    if (size >= HUGE_ALIGN)
        madvise(mem, size, MADV_HUGEPAGE);
    memset(mem, 0, size);
    r->buf = mem;
    r->slots = calloc(nslots, sizeof(vale_slot));
    if (r->slots == NULL) {
        free(r->buf);
        r->buf = NULL;
        return -1;
    }
    r->nslots = nslots;
    r->mask = nslots - 1;
    r->slot_size = slot_size;
    r->head = 0;
    r->tail = 0;
    for (uint32_t i = 0; i < nslots; i++)
        r->slots[i].off = i * slot_size;
    return 0;
}

static inline uint32_t ring_count(const vale_ring *r) { return r->head - r->tail; }
static inline uint32_t ring_space(const vale_ring *r) { return r->nslots - (r->head - r->tail); }

static inline void copy_frame(char *dst, const char *src, uint32_t length)
{
    if (length <= 64)
        memcpy(dst, src, 64);
    else
        memcpy(dst, src, (length + 63) & ~(uint32_t)63);
}

/* ---- the MAC table (fdb.pxi) --------------------------------------------------- */

static inline uint64_t load_mac(const char *p)
{
    uint32_t lo;
    uint16_t hi;
    memcpy(&lo, p, 4);
    memcpy(&hi, p + 4, 2);
    return (uint64_t)lo | ((uint64_t)hi << 32);
}

static inline int mac_is_group(uint64_t key) { return key & 1; }

static inline uint32_t fdb_home(const vale_fdb *t, uint64_t key)
{
    return (uint32_t)((key * VALE_HASH_MULTIPLIER) >> t->cell_shift);
}

static inline uint32_t fdb_find_cell(const vale_fdb *t, uint64_t key)
{
    uint32_t i = fdb_home(t, key);
    for (;;) {
        uint64_t k = t->cells[i].key;
        if (k == 0)                      /* first, so the zero MAC never matches */
            return VALE_NIL;
        if (k == key)
            return i;
        i = (i + 1) & t->cell_mask;
    }
}

static inline uint16_t fdb_lookup_port(const vale_fdb *t, uint64_t key)
{
    uint32_t i = fdb_home(t, key);
    for (;;) {
        uint64_t k = t->cells[i].key;
        if (k == 0)
            return VALE_NO_PORT;
        if (k == key)
            return t->cells[i].port;
        i = (i + 1) & t->cell_mask;
    }
}

static inline void fdb_prefetch(const vale_fdb *t, uint64_t key)
{
    vale_prefetch(&t->cells[fdb_home(t, key)]);
}

static uint32_t cells_for(uint32_t capacity)
{
    uint32_t n = 16;
    while (n < 2 * (uint64_t)capacity)
        n <<= 1;
    return n;
}

static int fdb_alloc(vale_fdb *t, uint32_t capacity)
{
    uint32_t ncells = cells_for(capacity), bits = 0;
    void *mem = NULL;
    size_t size = (size_t)ncells * sizeof(vale_cell);
    if (posix_memalign(&mem, size >= HUGE_ALIGN ? HUGE_ALIGN : 4096, size) != 0)
        return -1;
    if (size >= HUGE_ALIGN)
        madvise(mem, size, MADV_HUGEPAGE);
    memset(mem, 0, size);
    t->entries = calloc(capacity, sizeof(vale_entry));
    if (t->entries == NULL) {
        free(mem);
        return -1;
    }
    t->cells = mem;
    while (((uint32_t)1 << bits) < ncells)
        bits++;
    t->cell_mask = ncells - 1;
    t->cell_shift = 64 - bits;
    t->capacity = capacity;
    for (uint32_t i = 0; i < capacity; i++)
        t->entries[i].next = i + 1 < capacity ? i + 1 : VALE_NIL;
    t->free_head = 0;
    t->count = 0;
    t->static_count = 0;
    return 0;
}

static void fdb_cell_delete(vale_fdb *t, uint32_t i)
{
    uint32_t j = i;
    for (;;) {
        j = (j + 1) & t->cell_mask;
        if (t->cells[j].key == 0)
            break;
        uint32_t home = fdb_home(t, t->cells[j].key);
        /* The cell at j may fill the hole at i unless its home lies cyclically in (i, j]. */
        if (i <= j) {
            if (i < home && home <= j)
                continue;
        } else if (i < home || home <= j) {
            continue;
        }
        t->cells[i] = t->cells[j];
        t->entries[t->cells[i].entry].cell = i;
        i = j;
    }
    t->cells[i].key = 0;
}

static inline void lru_unlink(vale_switch *sw, vale_entry *e)
{
    vale_port *p = sw->ports[e->port];
    vale_entry *ents = sw->fdb.entries;
    if (e->prev != VALE_NIL)
        ents[e->prev].next = e->next;
    else
        p->lru_head = e->next;
    if (e->next != VALE_NIL)
        ents[e->next].prev = e->prev;
    else
        p->lru_tail = e->prev;
    p->dyn_count -= 1;
}

static inline void lru_append(vale_switch *sw, vale_entry *e, uint32_t idx)
{
    vale_port *p = sw->ports[e->port];
    e->next = VALE_NIL;
    e->prev = p->lru_tail;
    if (p->lru_tail != VALE_NIL)
        sw->fdb.entries[p->lru_tail].next = idx;
    else
        p->lru_head = idx;
    p->lru_tail = idx;
    p->dyn_count += 1;
}

static inline void fdb_touch(vale_switch *sw, vale_entry *e, uint32_t idx)
{
    if (e->last_seen == sw->now_ms)
        return;
    e->last_seen = sw->now_ms;
    if (sw->ports[e->port]->lru_tail != idx) {
        lru_unlink(sw, e);
        lru_append(sw, e, idx);
    }
}

static void fdb_remove(vale_switch *sw, uint32_t idx)
{
    vale_fdb *t = &sw->fdb;
    vale_entry *e = &t->entries[idx];
    if (e->flags & ENTRY_STATIC)
        t->static_count -= 1;
    else
        lru_unlink(sw, e);
    fdb_cell_delete(t, e->cell);
    e->flags = 0;
    e->key = 0;
    e->next = t->free_head;
    t->free_head = idx;
    t->count -= 1;
}

static uint32_t fdb_insert(vale_switch *sw, uint64_t key, uint16_t port, int is_static)
{
    vale_fdb *t = &sw->fdb;
    uint32_t idx = t->free_head;
    vale_entry *e = &t->entries[idx];
    uint32_t i = fdb_home(t, key);
    t->free_head = e->next;
    while (t->cells[i].key != 0)
        i = (i + 1) & t->cell_mask;
    t->cells[i].key = key;
    t->cells[i].entry = idx;
    t->cells[i].port = port;
    e->key = key;
    e->port = port;
    e->cell = i;
    e->last_seen = sw->now_ms;
    e->window_start = sw->now_ms;
    e->ban_until = 0;
    e->moves = 0;
    t->count += 1;
    if (is_static) {
        e->flags = ENTRY_USED | ENTRY_STATIC;
        e->prev = VALE_NIL;
        e->next = VALE_NIL;
        t->static_count += 1;
    } else {
        e->flags = ENTRY_USED;
        lru_append(sw, e, idx);
    }
    return idx;
}

static int fdb_evict_one(vale_switch *sw, uint16_t prefer)
{
    uint16_t victim = VALE_NO_PORT;
    uint32_t most = 0;
    for (uint32_t k = 0; k < sw->nactive; k++) {
        vale_port *p = sw->ports[sw->active[k]];
        if (p->dyn_count > most) {
            most = p->dyn_count;
            victim = p->index;
        }
    }
    if (victim == VALE_NO_PORT)
        return 0;
    if (prefer != VALE_NO_PORT && sw->ports[prefer] != NULL &&
        sw->ports[prefer]->dyn_count == most)
        victim = prefer;
    fdb_remove(sw, sw->ports[victim]->lru_head);
    sw->fdb.evicted += 1;
    return 1;
}

static void fdb_expire(vale_switch *sw)
{
    vale_fdb *t = &sw->fdb;
    if (t->ageing_ms == 0)
        return;
    for (uint32_t k = 0; k < sw->nactive; k++) {
        vale_port *p = sw->ports[sw->active[k]];
        uint32_t head = p->lru_head;
        while (head != VALE_NIL && sw->now_ms - t->entries[head].last_seen >= t->ageing_ms) {
            fdb_remove(sw, head);
            t->expired += 1;
            head = p->lru_head;
        }
    }
}

/* -1 to forward the frame, or the drop reason. */
static int fdb_learn(vale_switch *sw, vale_port *src, uint64_t key)
{
    vale_fdb *t = &sw->fdb;
    uint32_t idx, ci;
    vale_entry *e;
    if (src->last_src == key) {          /* per-port source cache: skip the hash */
        idx = src->last_src_entry;
        e = &t->entries[idx];
        if (e->key == key && e->port == src->index && (e->flags & ENTRY_USED)) {
            if (!(e->flags & ENTRY_STATIC))
                fdb_touch(sw, e, idx);
            return -1;
        }
    }
    ci = fdb_find_cell(t, key);
    if (ci != VALE_NIL) {
        idx = t->cells[ci].entry;
        e = &t->entries[idx];
        if (e->flags & ENTRY_STATIC)
            return -1;
        if (e->port == src->index) {
            fdb_touch(sw, e, idx);
        } else {                         /* a move, damped */
            if (sw->now_ms < e->ban_until)
                return DROP_LEARN_BANNED;
            if (src->learn_limit != 0 && src->dyn_count >= src->learn_limit)
                return DROP_LEARN_LIMIT;
            if (sw->now_ms - e->window_start >= t->move_window_ms) {
                e->window_start = sw->now_ms;
                e->moves = 0;
            }
            if (t->move_limit != 0 && e->moves >= t->move_limit) {
                e->ban_until = sw->now_ms + t->ban_ms;
                e->moves = 0;
                e->window_start = sw->now_ms;
                return DROP_LEARN_BANNED;
            }
            e->moves += 1;
            lru_unlink(sw, e);
            e->port = src->index;
            t->cells[e->cell].port = src->index;
            e->last_seen = sw->now_ms;
            lru_append(sw, e, idx);
            t->moved += 1;
        }
    } else {
        if (src->learn_limit != 0 && src->dyn_count >= src->learn_limit)
            return DROP_LEARN_LIMIT;
        if (t->count >= t->capacity && !fdb_evict_one(sw, src->index))
            return -1;
        idx = fdb_insert(sw, key, src->index, 0);
        t->learned += 1;
    }
    src->last_src = key;
    src->last_src_entry = idx;
    return -1;
}

/* ---- batched forwarding (forward.pxi) ------------------------------------------ */

static inline void batch_record(vale_switch *sw, uint32_t n)
{
    uint32_t bucket = 0;
    while (((uint32_t)1 << bucket) < n)
        bucket++;
    sw->batch_hist[bucket] += 1;
    sw->batches += 1;
    sw->batch_frames += n;
}

static inline void chain(vale_switch *sw, uint16_t *head, uint16_t *tail, uint16_t i)
{
    sw->next_frame[i] = NO_FRAME;
    if (*head == NO_FRAME)
        *head = i;
    else
        sw->next_frame[*tail] = i;
    *tail = i;
}

/* Copy unicast list u and flood list b, merged in batch order, into dst's TX ring. */
static void deliver(vale_switch *sw, vale_port *dst, uint16_t u, uint16_t b)
{
    vale_ring *ring = &dst->tx;
    int packet = dst->kind == PORT_PACKET;
    uint32_t space = ring_space(ring), head = ring->head, max_len = dst->max_frame;
    uint64_t packets = 0, nbytes = 0, full = 0, big = 0;
    int capture = dst->capture & 2;
    while (u != NO_FRAME || b != NO_FRAME) {
        uint16_t i;
        if (b != NO_FRAME && (u == NO_FRAME || b < u)) {
            i = b;
            b = sw->next_frame[b];
            if (!dst->flood && (sw->descs[i].flags & FRAME_UNKNOWN_UNICAST))
                continue;
        } else {
            i = u;
            u = sw->next_frame[u];
        }
        vale_desc *d = &sw->descs[i];
        if (vale_unlikely(packet || (d->flags & (FRAME_VNET | FRAME_VLAN))))
            continue;   /* the Cython core's offload and packet-port paths: never taken here */
        if (vale_unlikely(d->len > max_len)) {
            big++;
            continue;
        }
        if (vale_unlikely(space == 0)) {
            full++;
            continue;
        }
        vale_slot *slot = &ring->slots[head & ring->mask];
        slot->len = d->len;
        slot->flags = 0;
        copy_frame(ring->buf + slot->off, d->data, d->len);
        head++;
        space--;
        packets++;
        nbytes += d->len;
        if (vale_unlikely(capture))
            abort();                    /* the Cython core copies to its capture ring here */
    }
    ring->head = head;
    dst->c.tx_packets += packets;
    dst->c.tx_bytes += nbytes;
    dst->c.drops[DROP_RING_FULL] += full;
    dst->c.drops[DROP_TOO_BIG] += big;
}

static uint32_t forward_batch(vale_switch *sw, vale_port *src, uint32_t n, uint32_t src_max)
{
    vale_fdb *t = &sw->fdb;
    uint64_t nbytes = 0, floods = 0;
    uint64_t drops[N_DROP_REASONS];
    int learning = src->learning;

    if (!sw->manual_clock)
        sw->now_ms = monotonic_ms();
    fdb_expire(sw);
    memset(drops, 0, sizeof(drops));
    if (vale_unlikely(sw->capturing))
        abort();                        /* the Cython core's capture of received frames */

    /* Pass 1: destination keys; pass 2 prefetches cells PREFETCH_AHEAD frames ahead. */
    for (uint32_t i = 0; i < n; i++) {
        vale_desc *d = &sw->descs[i];
        sw->dkeys[i] = d->len >= VALE_ETH_HLEN ? load_mac(d->data) : 0;
    }
    for (uint32_t i = 0; i < n && i < PREFETCH_AHEAD; i++)
        fdb_prefetch(t, sw->dkeys[i]);

    /* Pass 2: in batch order, learn the source, then look up the destination. */
    for (uint32_t k = 0; k < sw->nactive; k++)
        sw->list_head[sw->active[k]] = NO_FRAME;
    sw->flood_head = NO_FRAME;
    sw->flood_tail = NO_FRAME;
    for (uint32_t i = 0; i < n; i++) {
        if (i + PREFETCH_AHEAD < n)
            fdb_prefetch(t, sw->dkeys[i + PREFETCH_AHEAD]);
        vale_desc *d = &sw->descs[i];
        d->flags &= ~(uint32_t)FRAME_UNKNOWN_UNICAST;
        if (vale_unlikely(d->len > src_max)) {
            drops[DROP_TOO_BIG]++;
            continue;
        }
        nbytes += d->len;
        if (vale_unlikely(d->len < VALE_ETH_HLEN)) {
            drops[DROP_RUNT]++;
            continue;
        }
        if (vale_unlikely(d->flags & FRAME_BAD)) {
            drops[DROP_BAD_OFFLOAD]++;
            continue;
        }
        if (learning) {
            uint64_t skey = load_mac(d->data + 6);
            if (!mac_is_group(skey) && skey != 0) {
                int reason = fdb_learn(sw, src, skey);
                if (vale_unlikely(reason >= 0)) {
                    drops[reason]++;
                    continue;
                }
            }
        }
        uint64_t dkey = sw->dkeys[i];
        if (mac_is_group(dkey)) {
            floods++;
            chain(sw, &sw->flood_head, &sw->flood_tail, (uint16_t)i);
            continue;
        }
        uint16_t port = fdb_lookup_port(t, dkey);
        if (vale_likely(port != VALE_NO_PORT)) {
            if (vale_unlikely(port == src->index))
                drops[DROP_OWN_PORT]++;
            else
                chain(sw, &sw->list_head[port], &sw->list_tail[port], (uint16_t)i);
        } else {
            d->flags |= FRAME_UNKNOWN_UNICAST;
            floods++;
            chain(sw, &sw->flood_head, &sw->flood_tail, (uint16_t)i);
        }
    }

    /* Pass 3: every other port with frames for it gets them, in order. */
    for (uint32_t k = 0; k < sw->nactive; k++) {
        uint16_t pi = sw->active[k];
        vale_port *dst = sw->ports[pi];
        if (pi != src->index && dst->up
                && (sw->list_head[pi] != NO_FRAME || sw->flood_head != NO_FRAME)) {
            deliver(sw, dst, sw->list_head[pi], sw->flood_head);
            if (vale_unlikely(dst->mirror_tx != VALE_NO_PORT))
                abort();                /* the Cython core's transmit mirror: never here */
        }
    }

    if (vale_unlikely(src->mirror_rx != VALE_NO_PORT))
        abort();                        /* the Cython core's receive mirror: never here */
    src->c.rx_packets += n;
    src->c.rx_bytes += nbytes;
    src->c.flood_packets += floods;
    for (uint32_t i = 0; i < N_DROP_REASONS; i++)
        src->c.drops[i] += drops[i];
    batch_record(sw, n);
    return n;
}

static uint32_t forward_ring(vale_switch *sw, vale_port *src)
{
    vale_ring *rx = &src->rx;
    uint32_t n = ring_count(rx);
    if (n == 0)
        return 0;
    if (n > sw->batch)
        n = sw->batch;
    for (uint32_t i = 0; i < n; i++) {
        vale_slot *slot = &rx->slots[(rx->tail + i) & rx->mask];
        sw->descs[i].data = rx->buf + slot->off;
        sw->descs[i].len = slot->len;
        sw->descs[i].flags = slot->flags & FRAME_VNET;
        if (vale_unlikely(sw->descs[i].flags))
            sw->descs[i].flags |= FRAME_BAD;   /* header checks: never taken here */
    }
    forward_batch(sw, src, n, rx->slot_size);
    rx->tail += n;
    return n;
}

/* ---- the switch, as SwitchCore sets it up --------------------------------------- */

static void die(const char *what)
{
    fprintf(stderr, "fastpath_c: %s\n", what);
    exit(2);
}

static vale_switch *switch_new(uint32_t capacity, uint32_t batch)
{
    vale_switch *sw = calloc(1, sizeof(vale_switch));
    if (sw == NULL)
        die("out of memory");
    sw->fdb.ageing_ms = 300000;          /* SwitchCore defaults: 300 s, 10 s, 60 s, 4 */
    sw->fdb.move_window_ms = 10000;
    sw->fdb.ban_ms = 60000;
    sw->fdb.move_limit = 4;
    sw->batch = batch;
    sw->now_ms = monotonic_ms();
    if (fdb_alloc(&sw->fdb, capacity) != 0)
        die("cannot allocate the FDB");
    return sw;
}

/* SwitchCore.add_port: the lowest free index; the active list stays ascending. */
static vale_port *add_port(vale_switch *sw, uint32_t rx_slots, uint32_t slot_size)
{
    uint16_t i = (uint16_t)sw->nactive;
    vale_port *p = calloc(1, sizeof(vale_port));
    if (p == NULL || ring_init(&p->rx, rx_slots, slot_size) != 0 ||
        ring_init(&p->tx, 1024, slot_size) != 0)
        die("cannot allocate a port");
    p->index = i;
    p->learning = 1;
    p->flood = 1;
    p->kind = PORT_MEMORY;
    p->up = 1;
    p->mirror_rx = VALE_NO_PORT;
    p->mirror_tx = VALE_NO_PORT;
    p->max_frame = slot_size;
    p->lru_head = VALE_NIL;
    p->lru_tail = VALE_NIL;
    sw->ports[i] = p;
    sw->active[sw->nactive++] = i;
    return p;
}

/* SwitchCore.inject of one frame. */
static void inject(vale_port *p, const char *frame, uint32_t len)
{
    vale_ring *rx = &p->rx;
    if (len > rx->slot_size || ring_space(rx) == 0)
        die("inject: frame too big or ring full");
    vale_slot *slot = &rx->slots[rx->head & rx->mask];
    memcpy(rx->buf + slot->off, frame, len);
    slot->len = len;
    slot->flags = 0;
    rx->head++;
}

/* A frame: destination, source, IPv4 ethertype, zeroes. */
static void make_frame(char *buf, uint32_t size, const uint8_t dst[6], const uint8_t src[6])
{
    memset(buf, 0, size);
    memcpy(buf, dst, 6);
    memcpy(buf + 6, src, 6);
    buf[12] = 0x08;
    buf[13] = 0x00;
}

/* The j-th MAC of the random case: 02:10:jj:jj:jj:jj (bench/fastpath.py makes the same). */
static void table_mac(uint8_t mac[6], uint32_t j)
{
    mac[0] = 0x02;
    mac[1] = 0x10;
    mac[2] = (uint8_t)(j >> 24);
    mac[3] = (uint8_t)(j >> 16);
    mac[4] = (uint8_t)(j >> 8);
    mac[5] = (uint8_t)j;
}

/* SwitchCore.bench_forward. */
static uint64_t bench_forward(vale_switch *sw, vale_port *src, uint64_t frames, uint64_t *ns)
{
    vale_ring *rx = &src->rx;
    uint64_t done = 0, t0, t1;
    if (ring_count(rx) != rx->nslots)
        die("fill the source RX ring completely before benchmarking");
    t0 = monotonic_ns();
    while (done < frames) {
        if (rx->head == rx->tail)
            rx->tail = rx->head - rx->nslots;
        done += forward_ring(sw, src);
        for (uint32_t k = 0; k < sw->nactive; k++) {
            vale_port *p = sw->ports[sw->active[k]];
            p->tx.tail = p->tx.head;
        }
    }
    t1 = monotonic_ns();
    rx->tail = rx->head - rx->nslots;
    *ns = t1 - t0;
    return done;
}

static void print_result(const vale_switch *sw, uint64_t done, uint64_t ns)
{
    printf("{\"frames\":%llu,\"ns\":%llu,\"batches\":%llu,\"batch_hist\":[",
           (unsigned long long)done, (unsigned long long)ns, (unsigned long long)sw->batches);
    for (int b = 0; b < VALE_HIST_BUCKETS; b++)
        printf("%s%llu", b ? "," : "", (unsigned long long)sw->batch_hist[b]);
    printf("],\"ports\":[");
    for (uint32_t k = 0; k < sw->nactive; k++) {
        const vale_port_counters *c = &sw->ports[sw->active[k]]->c;
        printf("%s{\"rx_packets\":%llu,\"rx_bytes\":%llu,\"tx_packets\":%llu,\"tx_bytes\":%llu,"
               "\"flood_packets\":%llu,\"drops\":[",
               k ? "," : "", (unsigned long long)c->rx_packets,
               (unsigned long long)c->rx_bytes, (unsigned long long)c->tx_packets,
               (unsigned long long)c->tx_bytes, (unsigned long long)c->flood_packets);
        for (int r = 0; r < N_DROP_REASONS; r++)
            printf("%s%llu", r ? "," : "", (unsigned long long)c->drops[r]);
        printf("]}");
    }
    printf("]}\n");
}

int main(int argc, char **argv)
{
    if (argc < 5 || argc > 6) {
        fprintf(stderr, "usage: %s unicast|flood|random FRAME_SIZE BATCH FRAMES [TABLE_SIZE]\n",
                argv[0]);
        return 2;
    }
    const char *kind = argv[1];
    uint32_t frame_size = (uint32_t)strtoul(argv[2], NULL, 10);
    uint32_t batch = (uint32_t)strtoul(argv[3], NULL, 10);
    uint64_t frames = strtoull(argv[4], NULL, 10);
    uint32_t table_size = argc > 5 ? (uint32_t)strtoul(argv[5], NULL, 10) : 1000;
    int is_random = strcmp(kind, "random") == 0;
    if (!is_random && strcmp(kind, "unicast") != 0 && strcmp(kind, "flood") != 0)
        die("CASE must be unicast, flood or random");
    if (batch < 1 || batch > VALE_MAX_BATCH || frame_size < VALE_ETH_HLEN || frame_size > 65536)
        die("bad BATCH or FRAME_SIZE");
    if (is_random && (frame_size > 64 || table_size < 1))
        die("the random case takes frames of at most 64 bytes and a TABLE_SIZE >= 1");

    /* Slots: 2048 bytes, or the smallest multiple of 64 that fits a larger frame. */
    uint32_t slot_size = frame_size <= 1984 ? 2048 : (frame_size + 63) & ~(uint32_t)63;
    uint32_t capacity = 65536;
    uint32_t rx_slots = 1024, nports = 2;
    if (is_random) {
        slot_size = 64;
        rx_slots = 1u << 20;
        capacity = 1;                    /* a power of two with room for the source too */
        while (capacity < table_size + 1)
            capacity <<= 1;
    } else if (strcmp(kind, "flood") == 0) {
        nports = 5;
    }

    vale_switch *sw = switch_new(capacity, batch);
    vale_port *src = add_port(sw, rx_slots, slot_size);
    for (uint32_t i = 1; i < nports; i++)
        add_port(sw, 1024, slot_size);

    static const uint8_t mac_a[6] = {0x02, 0, 0, 0, 0, 0x01};
    static const uint8_t mac_b[6] = {0x02, 0, 0, 0, 0, 0x02};
    static const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    char *frame = malloc(slot_size);
    if (frame == NULL)
        die("out of memory");

    if (is_random) {
        /* The table's MACs learned on port 1, as dynamic entries, in order. */
        uint8_t mac[6];
        for (uint32_t j = 0; j < table_size; j++) {
            table_mac(mac, j);
            fdb_insert(sw, load_mac((const char *)mac), 1, 0);
        }
        /* Each frame to one of them, drawn by a 64-bit LCG (the driver's, same seed). */
        uint64_t state = 12345;
        for (uint32_t i = 0; i < rx_slots; i++) {
            state = state * 6364136223846793005ULL + 1442695040888963407ULL;
            table_mac(mac, (uint32_t)((state >> 33) % table_size));
            make_frame(frame, frame_size, mac, mac_a);
            inject(src, frame, frame_size);
        }
    } else {
        if (nports == 2) {
            /* Port 1 sends one frame first, so its MAC is known on port 1. */
            make_frame(frame, frame_size, mac_a, mac_b);
            inject(sw->ports[1], frame, frame_size);
            forward_ring(sw, sw->ports[1]);
        }
        make_frame(frame, frame_size, nports == 2 ? mac_b : bcast, mac_a);
        for (uint32_t i = 0; i < rx_slots; i++)
            inject(src, frame, frame_size);
    }

    /* Report only what the timed loop did. */
    for (uint32_t k = 0; k < sw->nactive; k++)
        memset(&sw->ports[sw->active[k]]->c, 0, sizeof(vale_port_counters));
    sw->batches = 0;
    memset(sw->batch_hist, 0, sizeof(sw->batch_hist));

    uint64_t ns;
    uint64_t done = bench_forward(sw, src, frames, &ns);
    print_result(sw, done, ns);
    return 0;
}
