/*
 * fastpath_c.c: the forwarding core of vale, written by hand in plain C.
 *
 * The twin of vale/_fastpath.pyx (with ring.pxi, fdb.pxi, vlan.pxi, storm.pxi, memory.pxi
 * and bridge.pxi): the same structs, the same passes over a batch in the same order (a
 * light one loading each frame's destination key; then the learning lookup, which per
 * frame asks the bridge's admit() (its checks, VLAN ingress) and hands its verdict to the
 * bridge's give_verdict() (the storm-control hook, the chaining); then delivery with each
 * destination's egress tag), ports reached through a table of operations, and the same
 * benchmark loop as SwitchCore.bench_forward. bench/fastpath.py runs both and compares
 * them, which shows what the Cython core costs over hand-written C. Functions are `static
 * inline` where the Cython ones are `cdef inline` and plain `static` otherwise, like the
 * generated C (so the slow paths refuse() and vlan_tagged() stay out of line). Left out,
 * because no benchmark case reaches them: other port kinds, offloads, capture and mirrors
 * (their tests are kept, and abort if ever true), storm control's use (its code and flag
 * tests are kept; no case sets a rate), port removal, the table resize and the
 * Python-facing API. The learning path keeps every branch it has in Cython.
 *
 * Build:  gcc -std=c11 -O2 -g0 -o bench/fastpath_c bench/fastpath_c.c
 * Usage:  fastpath_c CASE FRAME_SIZE BATCH FRAMES [TABLE_SIZE]
 *         CASE is unicast, flood, random, churn, vlan_push, vlan_pop or vlan_flood (set
 *         up as bench/fastpath.py describes them). Prints one JSON line with the frames
 *         forwarded, the nanoseconds taken and the counters of the timed loop. FRAMES 0
 *         forwards one batch instead and prints, besides its counters, its verdicts (read
 *         back from the chains: a port, VALE_FLOOD, or VALE_DROP for a frame in none) and
 *         a CRC-32 of what each port's TX ring holds (each frame's length, 4 bytes
 *         little-endian, then its bytes), which bench/fastpath.py compares with the core's.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#define VALE_MAX_PORTS 256
#define VALE_MAX_BATCH 1024
#define VALE_SLOT_ALIGN 64
#define VALE_ETH_HLEN 14
#define VALE_HIST_BUCKETS 11
#define VALE_MAX_SEGMENTS 1024

#define VALE_NO_PORT 0xFFFF
#define VALE_NIL 0xFFFFFFFFu
#define NO_FRAME 0xFFFF

#define VALE_DECIDED (1ULL << 63)   /* a key no frame has: the bridge dropped it */
#define VALE_FLOOD 0xFFFE
#define VALE_DROP 0xFF00

#define VALE_VLAN_WORDS 64
#define VALE_TPID_8021Q 0x8100
#define VALE_ETYPE_8021Q 0x8100
#define VALE_ETYPE_8021AD 0x88A8
#define VLAN_HLEN 4
#define VLAN_VID_MASK 0x0FFF
#define MAC_MASK ((1ULL << 48) - 1)   /* a key's MAC; its VLAN above */
#define VLAN_RESERVED 4095
#define TAG_8021Q_LE 0x0081     /* the tag types as a little-endian load of their bytes */
#define TAG_8021AD_LE 0xA888

#define VALE_HASH_MULTIPLIER 0x9E3779B97F4A7C15ULL

#define vale_prefetch(p) __builtin_prefetch((p))
#define HUGE_ALIGN (2u << 20)  /* large areas 2 MiB aligned, for huge pages */
#define PREFETCH_AHEAD 16   /* frames between a cell's prefetch and its lookup */
#define vale_likely(x) __builtin_expect(!!(x), 1)
#define vale_unlikely(x) __builtin_expect(!!(x), 0)
/* The Cython core's plain functions with callers this twin leaves out (the mirrors, the
   Python API), which gcc keeps out of line there: kept out of line here too, where gcc
   would inline them into their one caller. */
#define OUT_OF_LINE __attribute__((noinline))

enum {
    DROP_RING_FULL, DROP_RUNT, DROP_OWN_PORT, DROP_TOO_BIG, DROP_LEARN_LIMIT,
    DROP_LEARN_BANNED, DROP_BAD_OFFLOAD, DROP_TX_ERROR, DROP_VLAN, DROP_STORM, DROP_LOOP,
    DROP_SPOOFED, DROP_HOST, DROP_BPDU, DROP_RX_STUCK, N_DROP_REASONS
};
enum { FRAME_UNKNOWN_UNICAST = 1, FRAME_VNET = 2, FRAME_VLAN = 4, FRAME_BAD = 8, FRAME_HOST = 16 };
enum { GUARD_SOURCE = 1, GUARD_BPDU = 2, GUARD_BLOCKED = 4 };
enum { BPDU_FORWARD = 0, BPDU_DROP = 1, BPDU_GUARD = 2 };
#define BPDU_MAC 0xC28001ULL            /* 01:80:C2:00:00:00 as load_mac reads it */
enum { PORT_MEMORY = 0, PORT_PACKET = 1, PORT_TAP = 2, PORT_KINDS = 3 };
enum { ENTRY_USED = 1, ENTRY_STATIC = 2 };
enum { VLAN_NONE = 0, VLAN_ACCESS = 1, VLAN_TRUNK = 2 };
enum { LOOKUP_LEARNING = 0, LOOKUP_HUB = 1, LOOKUP_KINDS = 2 };
enum { STORM_CLASSES = 3 };

/* ---- structs, field for field as in vale/_fastpath.pxd ------------------------- */

typedef struct {
    uint8_t flags, gso_type;
    uint16_t hdr_len, gso_size, csum_start, csum_offset;
} vale_vnet;

typedef struct {
    uint32_t off, len, flags, _reserved;
} vale_slot;

typedef struct {
    char *buf;
    vale_slot *slots;
    uint32_t nslots, mask, slot_size;
    uint32_t head, tail;                /* free-running */
    vale_vnet *vnets;
} vale_ring;

typedef struct {
    char *data;
    uint32_t len, flags;
    vale_vnet vnet;
    uint16_t vlan_tci, vlan_tpid;
    uint16_t vlan;                      /* the VLAN it travels in */
} vale_desc;

typedef struct {
    char *map;
    size_t map_len;
    uint32_t frame_size, frame_nr, frames_per_block, block_size, head;
} vale_pring;

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
    uint16_t settled;                   /* the port a ban puts it back on */
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
    vale_entry *last_src_at;
    uint16_t index;
    int learning, flood;                /* bint */
    int kind, up, vnet;
    uint32_t max_frame;
    int fd;
    vale_pring prx, ptx;
    int tx_fd;
    uint32_t tx_pending;
    uint64_t tx_ring_packets;
    uint8_t capture;                    /* CAPTURE_RX | CAPTURE_TX; 0 in the benchmark */
    uint16_t mirror_rx, mirror_tx;      /* VALE_NO_PORT in the benchmark */
    uint64_t capture_lost[2];
    uint32_t rx_max;
    int tx_use_ring;
    int vlan_mode;
    uint16_t native;
    int untagged_ok;                    /* vlan_ingress's answer for an untagged frame */
    uint64_t vlans[VALE_VLAN_WORDS];
    uint32_t storm_rate[STORM_CLASSES];
    uint64_t storm_tokens[STORM_CLASSES];
    uint64_t storm_ms;
    int storm;                          /* 0 in the benchmark */
    uint64_t blocked_until;             /* the loop guard's block; 0 in the benchmark */
    uint64_t loops_found;
    uint8_t guards;                     /* GUARD_*; 0 in the benchmark */
    int bpdu;
    uint64_t *allowed;
    uint32_t nallowed, sticky, allowed_room;
    int rx_stuck;
    uint64_t rx_resets, rx_checked;
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
    uint64_t dkeys[VALE_MAX_BATCH];     /* destination keys; VALE_DECIDED: admit() dropped it */
    uint32_t dhomes[VALE_MAX_BATCH];    /* each key's home cell in the MAC table */
    uint16_t next_frame[VALE_MAX_BATCH];
    uint16_t list_head[VALE_MAX_PORTS], list_tail[VALE_MAX_PORTS];
    uint16_t flood_head, flood_tail;
    int epoll_fd, wake_fd, notify_fd, stopping;
    uint32_t busy_poll_us, control_waiting;
    uint64_t loops;
    struct mmsghdr tx_msgs[VALE_MAX_BATCH];
    struct iovec tx_iov[4 * VALE_MAX_BATCH];
    vale_vnet tx_vnet[VALE_MAX_BATCH];
    uint8_t tx_tag[VALE_MAX_BATCH][4];
    char *soft_buf;
    uint32_t soft_stride;
    uint32_t soft_lens[VALE_MAX_SEGMENTS];
    vale_ring cap;
    uint64_t *cap_stamps;
    uint64_t cap_now;
    uint32_t capturing;                 /* ports capturing; 0 in the benchmark */
    uint32_t vlan_ports;                /* ports with a VLAN mode: filtering on */
    int lookup;                         /* LOOKUP_LEARNING in the benchmark */
    uint64_t loop_id;                   /* the id in this switch's loop probes */
    uint64_t loop_hold_ms;
} vale_switch;

/* ---- the loop guard (loopguard.pxi): its tests on the frame path; no case sends a probe */
#define LOOP_PROBE_KEY 0x00454c415603ULL

static inline uint64_t loop_src_key(const vale_switch *sw)
{
    return ((sw->loop_id << 8) & MAC_MASK) | 0x02;
}

static inline int loop_blocked(vale_switch *sw, vale_port *p)
{
    if (vale_likely(p->blocked_until == 0))
        return 0;
    abort();                            /* the Cython core's blocked port: never here */
}

/* A port kind's operations (vale_port_ops): the bridge reaches ports only so. */
typedef struct {
    const char *name;
    uint32_t (*take)(vale_switch *sw, vale_port *p);
    void (*release)(vale_switch *sw, vale_port *p, uint32_t n);
    void (*prepare)(vale_switch *sw, vale_port *p, uint16_t u, uint16_t b);
    uint32_t (*put)(vale_switch *sw, vale_port *p, const char *data, uint32_t length,
                    const vale_vnet *vnet, uint32_t tag, uint32_t queued, int padded);
    void (*flush)(vale_switch *sw, vale_port *p, uint32_t queued);
    int (*failed)(vale_port *p, uint32_t events);
    void (*close)(vale_port *p);
    uint64_t (*kernel_drops)(vale_port *p);
    void *info;
    int polled, direct, device;
} vale_port_ops;

typedef void (*vale_lookup_fn)(vale_switch *sw, vale_port *src, uint32_t n);

static vale_port_ops PORT_OPS[PORT_KINDS];
static vale_lookup_fn LOOKUPS[LOOKUP_KINDS];

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

static void ring_free(vale_ring *r)
{
    free(r->buf);
    free(r->slots);
    free(r->vnets);
    r->buf = NULL;
    r->slots = NULL;
    r->vnets = NULL;
}

static int ring_init(vale_ring *r, uint32_t nslots, uint32_t slot_size)
{
    void *mem = NULL;
    size_t size = (size_t)nslots * slot_size;
    r->buf = NULL;
    r->slots = NULL;
    r->vnets = NULL;
    /* One chunk of slack: a frame whose tag was taken out starts 4 bytes into its slot. */
    if (posix_memalign(&mem, size >= HUGE_ALIGN ? HUGE_ALIGN : 4096, size + VALE_SLOT_ALIGN) != 0)
        return -1;
    if (size >= HUGE_ALIGN)
        madvise(mem, size, MADV_HUGEPAGE);
    memset(mem, 0, size + VALE_SLOT_ALIGN);
    r->buf = mem;
    r->slots = calloc(nslots, sizeof(vale_slot));
    r->vnets = calloc(nslots, sizeof(vale_vnet));
    if (r->slots == NULL || r->vnets == NULL) {
        ring_free(r);
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

/* i: the key's home cell */
static inline uint16_t fdb_lookup_port(const vale_fdb *t, uint64_t key, uint32_t i)
{
    for (;;) {
        uint64_t k = t->cells[i].key;
        if (k == 0)
            return VALE_NO_PORT;
        if (k == key)
            return t->cells[i].port;
        i = (i + 1) & t->cell_mask;
    }
}

static inline void fdb_prefetch(const vale_fdb *t, uint32_t home)
{
    vale_prefetch(&t->cells[home]);
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

static OUT_OF_LINE uint32_t fdb_insert(vale_switch *sw, uint64_t key, uint16_t port, int is_static)
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
    e->settled = port;
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

static OUT_OF_LINE int fdb_evict_one(vale_switch *sw, uint16_t prefer)
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

static OUT_OF_LINE void fdb_expire(vale_switch *sw)
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

static OUT_OF_LINE int fdb_learn_new(vale_switch *sw, vale_port *src, uint64_t key);

/* -1 to forward the frame, or the drop reason. */
static inline int fdb_learn(vale_switch *sw, vale_port *src, uint64_t key)
{
    if (src->last_src == key) {          /* per-port source cache: skip the hash */
        vale_entry *e = src->last_src_at;
        if (e->key == key && e->port == src->index && (e->flags & ENTRY_USED)) {
            if (!(e->flags & ENTRY_STATIC))
                fdb_touch(sw, e, src->last_src_entry);
            return -1;
        }
    }
    return fdb_learn_new(sw, src, key);
}

/* Put dynamic entry idx on another port, as the newest of its entries there. */
static void fdb_move(vale_switch *sw, vale_entry *e, uint32_t idx, uint16_t port)
{
    lru_unlink(sw, e);
    e->port = port;
    sw->fdb.cells[e->cell].port = port;
    e->last_seen = sw->now_ms;
    lru_append(sw, e, idx);
}

/* fdb_learn for a source other than the port's last one. */
static OUT_OF_LINE int fdb_learn_new(vale_switch *sw, vale_port *src, uint64_t key)
{
    vale_fdb *t = &sw->fdb;
    uint32_t idx, ci;
    vale_entry *e;
    if (vale_unlikely((key & MAC_MASK) == loop_src_key(sw)))
        return -1;                      /* a loop probe of this switch: never learned */
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
                e->settled = e->port;
            }
            if (t->move_limit != 0 && e->moves >= t->move_limit) {
                /* banned where it was before the moves began */
                e->ban_until = sw->now_ms + t->ban_ms;
                e->moves = 0;
                e->window_start = sw->now_ms;
                if (e->port != e->settled)
                    fdb_move(sw, e, idx, e->settled);
                if (e->port != src->index)
                    return DROP_LEARN_BANNED;
            } else {
                e->moves += 1;
                fdb_move(sw, e, idx, src->index);
                t->moved += 1;
            }
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
    src->last_src_at = &t->entries[idx];
    return -1;
}

/* ---- byte access (offload.pxi) ------------------------------------------------- */

static inline uint16_t load_be16(const char *p)
{
    const uint8_t *b = (const uint8_t *)p;
    return (uint16_t)(((uint16_t)b[0] << 8) | b[1]);
}

static inline void store_be16(char *p, uint32_t v)
{
    p[0] = (char)((v >> 8) & 0xFF);
    p[1] = (char)(v & 0xFF);
}

/* ---- VLANs (vlan.pxi) ---------------------------------------------------------- */

static inline int is_tag_type(const char *p)
{
    uint16_t etype;
    memcpy(&etype, p, 2);
    return etype == TAG_8021Q_LE || etype == TAG_8021AD_LE;
}

static inline int carries(const vale_port *p, uint32_t vlan)
{
    return (p->vlans[vlan >> 6] >> (vlan & 63)) & 1;
}

/* Take the tag after the MAC addresses out of the frame into desc.vlan_*. */
static inline void pull_tag(vale_desc *d)
{
    d->vlan_tpid = load_be16(d->data + 12);
    d->vlan_tci = load_be16(d->data + 14);
    memmove(d->data + VLAN_HLEN, d->data, 12);
    d->data += VLAN_HLEN;
    d->len -= VLAN_HLEN;
    d->flags |= FRAME_VLAN;
    if (d->flags & FRAME_VNET)
        abort();                        /* the Cython core moves the offload offsets here */
}

static int vlan_tagged(const vale_port *src, vale_desc *d);

/* Set d->vlan from src's mode; -1 when the frame must be dropped (`vlan`). With VLANs
   off (no port has a mode) the switch ignores them: tags kept as they came, d->vlan as
   the take set it (a kernel tag's VLAN, else 0). */
static inline int vlan_ingress(const vale_port *src, vale_desc *d, int vlans)
{
    if (!vlans)
        return 0;
    if (vale_likely(!(d->flags & FRAME_VLAN) && !is_tag_type(d->data + 12))) {
        d->vlan = src->native;
        return src->untagged_ok;
    }
    return vlan_tagged(src, d);
}

/* vlan_ingress for a frame with a tag, in its data or taken off by the kernel. */
static int vlan_tagged(const vale_port *src, vale_desc *d)
{
    uint32_t vid;
    if (!(d->flags & FRAME_VLAN)) {
        if (d->len < VALE_ETH_HLEN + VLAN_HLEN)
            return -1;
        pull_tag(d);
    }
    vid = d->vlan_tci & VLAN_VID_MASK;
    if (vid == VLAN_RESERVED)
        return -1;
    if (src->vlan_mode == VLAN_NONE) {
        d->vlan = (uint16_t)vid;
        return 0;
    }
    if (d->len >= VALE_ETH_HLEN && is_tag_type(d->data + 12))
        return -1;                      /* two tags: not for a VLAN-aware port */
    if (vid == 0) {                     /* priority-tagged: as untagged, the tag goes */
        d->flags &= ~(uint32_t)FRAME_VLAN;
        d->vlan = src->native;
        return src->untagged_ok;
    }
    d->vlan = (uint16_t)vid;
    return carries(src, vid) ? 0 : -1;
}

/* The tag a frame leaves dst with, as TPID << 16 | TCI; 0 for none. */
static inline uint32_t egress_tag(const vale_desc *d, const vale_port *dst)
{
    if (d->vlan == dst->native && (dst->vlan_mode != VLAN_NONE || !(d->flags & FRAME_VLAN)))
        return 0;
    if ((d->flags & FRAME_VLAN) && (d->vlan_tci & VLAN_VID_MASK) == d->vlan)
        return ((uint32_t)d->vlan_tpid << 16) | d->vlan_tci;
    return ((uint32_t)VALE_TPID_8021Q << 16) | d->vlan;
}

static inline void write_tag(char *out, uint32_t tag)
{
    store_be16(out, tag >> 16);
    store_be16(out + 2, tag & 0xFFFF);
}

static inline void copy_tagged(char *out, const char *data, uint32_t length, uint32_t tag)
{
    memcpy(out, data, 12);
    write_tag(out + 12, tag);
    memcpy(out + 12 + VLAN_HLEN, data + 12, length - 12);
}

static void port_set_vlans(vale_switch *sw, vale_port *p, int mode, uint16_t native,
                           const uint64_t *vlans)
{
    if ((p->vlan_mode != VLAN_NONE) != (mode != VLAN_NONE)) {
        if (mode != VLAN_NONE)
            sw->vlan_ports += 1;
        else
            sw->vlan_ports -= 1;
    }
    p->vlan_mode = mode;
    p->native = mode != VLAN_NONE ? native : 0;
    p->untagged_ok = mode == VLAN_NONE || native != 0 ? 0 : -1;
    for (uint32_t w = 0; w < VALE_VLAN_WORDS; w++)
        p->vlans[w] = mode != VLAN_NONE ? vlans[w] : ~(uint64_t)0;
    if (mode != VLAN_NONE) {
        p->vlans[0] &= ~(uint64_t)1;
        if (native)
            p->vlans[native >> 6] |= (uint64_t)1 << (native & 63);
    }
    p->vlans[VALE_VLAN_WORDS - 1] &= ~((uint64_t)1 << 63);
}

/* ---- the learning lookup (fdb.pxi) --------------------------------------------- */

static inline uint64_t vlan_key(uint64_t mac, uint16_t vlan)
{
    return mac | ((uint64_t)vlan << 48);
}

/* What admit() reads of the source port, read once per batch (admit_for). */
typedef struct {
    uint32_t rx_max;
    int guarded;                        /* src->guards != 0 */
} vale_admit;

static inline vale_admit admit_for(const vale_port *src)
{
    vale_admit a = {src->guards != 0 ? 0 : src->rx_max, src->guards != 0};
    return a;
}

static inline int admit(vale_switch *sw, vale_port *src, uint32_t i, int vlans, vale_admit a);
static OUT_OF_LINE int admit_guarded(vale_switch *sw, vale_port *src, uint32_t i, int vlans);
static inline void give_verdict(vale_switch *sw, vale_port *src, uint32_t i, uint16_t v);

/* In batch order, for each frame the bridge admits: learn its source, give its verdict. */
/* Inlined at each of its two calls, vlans a constant: the Cython core's fused copies. */
static inline __attribute__((always_inline)) void learning_lookup(vale_switch *sw, vale_port *src,
                                                                  uint32_t n, int vlans)
{
    vale_fdb *t = &sw->fdb;
    vale_desc *d;
    int learning = src->learning && src->up;
    uint16_t own = src->index;
    vale_admit a = admit_for(src);
    for (uint32_t i = 0; i < (n < PREFETCH_AHEAD ? n : PREFETCH_AHEAD); i++)
        fdb_prefetch(t, sw->dhomes[i]);
    for (uint32_t i = 0; i < n; i++) {
        if (i + PREFETCH_AHEAD < n)
            fdb_prefetch(t, sw->dhomes[i + PREFETCH_AHEAD]);
        if (!admit(sw, src, i, vlans, a))
            continue;
        uint64_t dkey = sw->dkeys[i];
        d = &sw->descs[i];
        if (learning) {
            uint64_t skey = load_mac(d->data + 6);
            if (!mac_is_group(skey) && skey != 0) {
                int reason = fdb_learn(sw, src, skey | (dkey & ~MAC_MASK));  /* dkey's VLAN */
                if (vale_unlikely(reason >= 0)) {
                    give_verdict(sw, src, i, (uint16_t)(VALE_DROP + reason));
                    continue;
                }
            }
        }
        if (mac_is_group(dkey)) {
            if (vale_unlikely((dkey & MAC_MASK) == LOOP_PROBE_KEY))
                abort();                /* the Cython core's loop_probe_back: never here */
            give_verdict(sw, src, i, VALE_FLOOD);
            continue;
        }
        uint16_t port = fdb_lookup_port(t, dkey, sw->dhomes[i]);
        if (vale_unlikely(port == VALE_NO_PORT)) {
            d->flags |= FRAME_UNKNOWN_UNICAST;
            give_verdict(sw, src, i, VALE_FLOOD);
        } else if (vale_unlikely(port == own)) {
            give_verdict(sw, src, i, VALE_DROP + DROP_OWN_PORT);
        } else if (vlans && !carries(sw->ports[port], d->vlan)) {
            give_verdict(sw, src, i, VALE_DROP + DROP_VLAN);
        } else {
            give_verdict(sw, src, i, port);
        }
    }
}

/* ---- storm control (storm.pxi): off in every case, the hooks' flag tests stay ----- */

#define STORM_MILLI 1000
#define STORM_BURST_MS 100
enum { STORM_BROADCAST, STORM_MULTICAST, STORM_UNKNOWN };

static inline uint64_t storm_burst(uint32_t rate)
{
    uint64_t burst = (uint64_t)rate * STORM_BURST_MS;
    return burst >= STORM_MILLI ? burst : STORM_MILLI;
}

static void storm_fill(vale_port *p, uint64_t now_ms)
{
    uint64_t elapsed = now_ms - p->storm_ms;
    if (elapsed == 0)
        return;
    p->storm_ms = now_ms;
    for (int c = 0; c < STORM_CLASSES; c++) {
        if (p->storm_rate[c]) {
            uint64_t burst = storm_burst(p->storm_rate[c]);
            uint64_t add = elapsed < STORM_BURST_MS ? elapsed * p->storm_rate[c] : burst;
            p->storm_tokens[c] = p->storm_tokens[c] + add < burst ? p->storm_tokens[c] + add
                                                                  : burst;
        }
    }
}

static inline int storm_class(const vale_desc *d)
{
    if (!(d->data[0] & 1))
        return STORM_UNKNOWN;
    if ((load_be16(d->data) & load_be16(d->data + 2) & load_be16(d->data + 4)) == 0xFFFF)
        return STORM_BROADCAST;
    return STORM_MULTICAST;
}

/* Whether a frame about to be flooded from src has a token left in its class's bucket. */
static inline int storm_allows(vale_port *src, const vale_desc *d)
{
    int c = storm_class(d);
    if (src->storm_rate[c] == 0)
        return 1;
    if (src->storm_tokens[c] >= STORM_MILLI) {
        src->storm_tokens[c] -= STORM_MILLI;
        return 1;
    }
    return 0;
}

/* ---- in-memory ports (memory.pxi) ---------------------------------------------- */

static uint32_t memory_take(vale_switch *sw, vale_port *src)
{
    vale_ring *rx = &src->rx;
    uint32_t n = ring_count(rx);
    if (n > sw->batch)
        n = sw->batch;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t idx = (rx->tail + i) & rx->mask;
        vale_slot *slot = &rx->slots[idx];
        vale_desc *d = &sw->descs[i];
        d->data = rx->buf + slot->off;
        d->len = slot->len;
        d->flags = slot->flags & FRAME_VNET;
        d->vlan = 0;
        if (vale_unlikely(d->flags))
            abort();                    /* the Cython core settles the offload header here */
    }
    return n;
}

static void memory_release(vale_switch *sw, vale_port *src, uint32_t n)
{
    (void)sw;
    src->rx.tail += n;
}

static uint32_t memory_put(vale_switch *sw, vale_port *dst, const char *data, uint32_t length,
                           const vale_vnet *vnet, uint32_t tag, uint32_t queued, int padded)
{
    vale_ring *ring = &dst->tx;
    uint32_t wire = length + (tag ? VLAN_HLEN : 0);
    (void)sw;
    (void)queued;
    if (vale_unlikely(wire > ring->slot_size)) {
        dst->c.drops[DROP_TOO_BIG] += 1;
        return 0;
    }
    if (vale_unlikely(ring_space(ring) == 0)) {
        dst->c.drops[DROP_RING_FULL] += 1;
        return 0;
    }
    uint32_t idx = ring->head & ring->mask;
    vale_slot *slot = &ring->slots[idx];
    if (tag)
        copy_tagged(ring->buf + slot->off, data, length, tag);
    else if (padded)
        copy_frame(ring->buf + slot->off, data, length);
    else
        memcpy(ring->buf + slot->off, data, length);
    slot->len = wire;
    slot->flags = vnet != NULL ? FRAME_VNET : 0;
    if (vnet != NULL)
        abort();                        /* the Cython core writes the output header here */
    ring->head += 1;
    dst->c.tx_packets += 1;
    dst->c.tx_bytes += wire;
    return 0;
}

static void memory_flush(vale_switch *sw, vale_port *dst, uint32_t queued)
{
    (void)sw;
    (void)dst;
    (void)queued;
}

static int memory_failed(vale_port *p, uint32_t events)
{
    (void)p;
    (void)events;
    return 0;
}

static void memory_close(vale_port *p)
{
    (void)p;
}

/* ---- the bridge (bridge.pxi) --------------------------------------------------- */

static inline vale_port_ops *ops_of(const vale_port *p) { return &PORT_OPS[p->kind]; }

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

static inline uint32_t put_frame(vale_switch *sw, vale_port *dst, const char *data,
                                 uint32_t length, const vale_vnet *vnet, uint32_t tag,
                                 uint32_t queued, int padded)
{
    uint32_t wire = length + (tag ? VLAN_HLEN : 0);
    if ((vnet == NULL || vnet->gso_type == 0) && vale_unlikely(wire > dst->max_frame)) {
        dst->c.drops[DROP_TOO_BIG] += 1;
        return queued;
    }
    return ops_of(dst)->put(sw, dst, data, length, vnet, tag, queued, padded);
}

/* Hand dst the frames of unicast list u and flood list b, merged in batch order; made
   twice, for VLANs off and on (vlans a constant in each), as the core's deliver_frames. */
static inline __attribute__((always_inline)) void deliver_frames(
    vale_switch *sw, vale_port *dst, uint16_t u, uint16_t b, int padded, int flood,
    const int vlans)
{
    vale_port_ops *ops = ops_of(dst);
    uint16_t i;
    uint32_t queued = 0, tag;
    vale_desc *d;
    int direct = ops->direct;
    vale_ring *ring = &dst->tx;
    uint32_t head = ring->head, space = ring_space(ring), max_len = dst->max_frame;
    uint16_t native = dst->native;
    uint64_t packets = 0, nbytes = 0, full = 0, big = 0;
    int capture = dst->capture & 2;
    if (ops->prepare != NULL)
        ops->prepare(sw, dst, u, b);
    while (u != NO_FRAME || b != NO_FRAME) {
        if (b != NO_FRAME && (u == NO_FRAME || b < u)) {
            i = b;
            b = sw->next_frame[b];
            if (!flood && (sw->descs[i].flags & FRAME_UNKNOWN_UNICAST))
                continue;
            if (vlans && !carries(dst, sw->descs[i].vlan))
                continue;
        } else {
            i = u;
            u = sw->next_frame[u];
        }
        d = &sw->descs[i];
        /* Untagged in and out (egress_tag 0), no offload header: a plain copy. */
        if (vale_likely(direct && !(d->flags & (FRAME_VNET | FRAME_VLAN))
                        && (!vlans || d->vlan == native))) {
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
            if (padded)
                copy_frame(ring->buf + slot->off, d->data, d->len);
            else
                memcpy(ring->buf + slot->off, d->data, d->len);
            head++;
            space--;
            packets++;
            nbytes += d->len;
            if (vale_unlikely(capture))
                abort();                /* the Cython core copies to its capture ring here */
            continue;
        }
        /* Everything else goes through the port's put, which keeps the ring's own state. */
        tag = egress_tag(d, dst);
        ring->head = head;
        if (vale_unlikely(capture))
            abort();
        if ((d->flags & FRAME_VNET) && !dst->vnet)
            abort();                    /* the Cython core's software offload: never here */
        queued = put_frame(sw, dst, d->data, d->len,
                           d->flags & FRAME_VNET ? &d->vnet : NULL, tag, queued, padded);
        head = ring->head;
        space = ring_space(ring);
    }
    ring->head = head;
    dst->c.tx_packets += packets;
    dst->c.tx_bytes += nbytes;
    dst->c.drops[DROP_RING_FULL] += full;
    dst->c.drops[DROP_TOO_BIG] += big;
    ops->flush(sw, dst, queued);
}

static OUT_OF_LINE void deliver_vlans_off(vale_switch *sw, vale_port *dst, uint16_t u,
                                           uint16_t b, int padded, int flood)
{
    deliver_frames(sw, dst, u, b, padded, flood, 0);
}

static OUT_OF_LINE void deliver_vlans_on(vale_switch *sw, vale_port *dst, uint16_t u,
                                          uint16_t b, int padded, int flood)
{
    deliver_frames(sw, dst, u, b, padded, flood, 1);
}

static inline void deliver(vale_switch *sw, vale_port *dst, uint16_t u, uint16_t b,
                           int padded, int flood)
{
    if (vale_likely(sw->vlan_ports == 0))
        deliver_vlans_off(sw, dst, u, b, padded, flood);
    else
        deliver_vlans_on(sw, dst, u, b, padded, flood);
}

static uint32_t chain_length(const vale_switch *sw, uint16_t i)
{
    uint32_t n = 0;
    while (i != NO_FRAME) {
        n++;
        i = sw->next_frame[i];
    }
    return n;
}

/* Take a verdict for frame i: chain it onto its port's list or the flood list, storm
   control first turning a flood over the source's rate into a drop; count on the source. */
static inline void give_verdict(vale_switch *sw, vale_port *src, uint32_t i, uint16_t v)
{
    if (vale_likely(v < VALE_MAX_PORTS)) {
        chain(sw, &sw->list_head[v], &sw->list_tail[v], (uint16_t)i);
    } else if (v == VALE_FLOOD) {
        if (vale_unlikely(src->storm) && !storm_allows(src, &sw->descs[i])) {
            src->c.drops[DROP_STORM] += 1;
        } else {
            src->c.flood_packets += 1;
            chain(sw, &sw->flood_head, &sw->flood_tail, (uint16_t)i);
        }
    } else {
        src->c.drops[v - VALE_DROP] += 1;
    }
}

static inline void set_key(vale_switch *sw, uint32_t i, uint64_t key)
{
    sw->dkeys[i] = key;
    sw->dhomes[i] = fdb_home(&sw->fdb, key);
}

/* Each frame's destination key as if untagged (src's native VLAN) and its home cell; the
   bytes src could hold. */
static inline uint64_t frame_keys(vale_switch *sw, vale_port *src, uint32_t n)
{
    uint64_t nbytes = 0;
    for (uint32_t i = 0; i < n; i++) {
        vale_desc *d = &sw->descs[i];
        set_key(sw, i, vlan_key(load_mac(d->data), src->native));
        if (d->len <= src->rx_max)
            nbytes += d->len;
    }
    return nbytes;
}

static void refuse(vale_switch *sw, vale_port *src, uint32_t i, uint32_t length);

/* ---- port guards (guard.pxi) --------------------------------------------------- */

/* Whether p may send from mac; a sticky port with room takes a new unicast source. */
static int source_allowed(vale_port *p, uint64_t mac)
{
    uint32_t low = 0, high = p->nallowed;
    while (low < high) {
        uint32_t mid = (low + high) >> 1;
        if (p->allowed[mid] < mac)
            low = mid + 1;
        else
            high = mid;
    }
    if (low < p->nallowed && p->allowed[low] == mac)
        return 1;
    if (p->nallowed >= p->sticky || (mac & 1) || mac == 0)
        return 0;
    memmove(&p->allowed[low + 1], &p->allowed[low], (p->nallowed - low) * sizeof(uint64_t));
    p->allowed[low] = mac;
    p->nallowed += 1;
    return 1;
}

/* The reason src's guards drop a frame for, or -1. */
static OUT_OF_LINE int guard_refuses(vale_port *src, const vale_desc *d, uint64_t dkey)
{
    if (src->guards & GUARD_BLOCKED)
        return DROP_BPDU;
    if ((src->guards & GUARD_SOURCE) && !source_allowed(src, load_mac(d->data + 6)))
        return DROP_SPOOFED;
    if ((src->guards & GUARD_BPDU) && (dkey & MAC_MASK) == BPDU_MAC) {
        if (src->bpdu == BPDU_GUARD)
            src->guards |= GUARD_BLOCKED;
        return DROP_BPDU;
    }
    return -1;
}

/* The bridge's own rules for frame i: 0 and dropped (its key VALE_DECIDED), or 1 with its
   VLAN set and sw->dkeys[i] its destination's key, sw->dhomes[i] that key's home. */
static inline int admit(vale_switch *sw, vale_port *src, uint32_t i, int vlans, vale_admit a)
{
    vale_desc *d = &sw->descs[i];
    uint32_t length = d->len;           /* as received: vlan_ingress may take a tag out */
    if (vale_likely(VALE_ETH_HLEN <= length && length <= a.rx_max
                    && !(d->flags & (FRAME_BAD | FRAME_HOST))
                    && vlan_ingress(src, d, vlans) == 0)) {
        if (vale_unlikely(vlans && d->flags & FRAME_VLAN))
            set_key(sw, i, vlan_key(load_mac(d->data), d->vlan));
        return 1;
    }
    if (vale_unlikely(a.guarded))
        return admit_guarded(sw, src, i, vlans);
    refuse(sw, src, i, length);
    return 0;
}

/* admit() for a port with guards: the same rules, then the guards'. */
static OUT_OF_LINE int admit_guarded(vale_switch *sw, vale_port *src, uint32_t i, int vlans)
{
    vale_desc *d = &sw->descs[i];
    uint32_t length = d->len;
    if (VALE_ETH_HLEN <= length && length <= src->rx_max
            && !(d->flags & (FRAME_BAD | FRAME_HOST)) && vlan_ingress(src, d, vlans) == 0) {
        if (vlans && d->flags & FRAME_VLAN)
            set_key(sw, i, vlan_key(load_mac(d->data), d->vlan));
        int reason = guard_refuses(src, d, sw->dkeys[i]);
        if (reason < 0)
            return 1;
        sw->dkeys[i] = VALE_DECIDED;
        give_verdict(sw, src, i, VALE_DROP + reason);
        return 0;
    }
    refuse(sw, src, i, length);
    return 0;
}

/* Drop frame i, which admit() did not let in, for the first rule it broke. */
static void refuse(vale_switch *sw, vale_port *src, uint32_t i, uint32_t length)
{
    sw->dkeys[i] = VALE_DECIDED;
    if (length > src->rx_max)
        give_verdict(sw, src, i, VALE_DROP + DROP_TOO_BIG);
    else if (length < VALE_ETH_HLEN)
        give_verdict(sw, src, i, VALE_DROP + DROP_RUNT);
    else if (sw->descs[i].flags & FRAME_BAD)
        give_verdict(sw, src, i, VALE_DROP + DROP_BAD_OFFLOAD);
    else if (sw->descs[i].flags & FRAME_HOST)
        give_verdict(sw, src, i, VALE_DROP + DROP_HOST);
    else
        give_verdict(sw, src, i, VALE_DROP + DROP_VLAN);
}

static void hub_lookup(vale_switch *sw, vale_port *src, uint32_t n)
{
    int vlans = sw->vlan_ports != 0;
    vale_admit a = admit_for(src);
    for (uint32_t i = 0; i < n; i++) {
        if (admit(sw, src, i, vlans, a)) {
            if (!(sw->descs[i].data[0] & 1))
                sw->descs[i].flags |= FRAME_UNKNOWN_UNICAST;
            else if (vale_unlikely((sw->dkeys[i] & MAC_MASK) == LOOP_PROBE_KEY))
                abort();                /* the Cython core's loop_probe_back: never here */
            give_verdict(sw, src, i, VALE_FLOOD);
        }
    }
}

static uint32_t forward_batch(vale_switch *sw, vale_port *src, uint32_t n)
{
    uint64_t nbytes;

    if (!sw->manual_clock)
        sw->now_ms = monotonic_ms();
    fdb_expire(sw);
    if (vale_unlikely(sw->capturing))
        abort();                        /* the Cython core's capture of received frames */
    if (vale_unlikely(src->storm))
        storm_fill(src, sw->now_ms);

    /* Verdicts from the lookup stage (which asks admit() first), each chained as given. */
    for (uint32_t k = 0; k < sw->nactive; k++)
        sw->list_head[sw->active[k]] = NO_FRAME;
    sw->flood_head = NO_FRAME;
    sw->flood_tail = NO_FRAME;
    nbytes = frame_keys(sw, src, n);
    if (vale_likely(sw->lookup == LOOKUP_LEARNING)) {
        if (vale_likely(sw->vlan_ports == 0))   /* a copy of the stage per case */
            learning_lookup(sw, src, n, 0);
        else
            learning_lookup(sw, src, n, 1);
    } else
        LOOKUPS[sw->lookup](sw, src, n);

    /* Delivery: every other port that is up and has frames for it gets them, in order. */
    for (uint32_t k = 0; k < sw->nactive; k++) {
        uint16_t pi = sw->active[k];
        vale_port *dst = sw->ports[pi];
        if (pi != src->index && dst->up && !loop_blocked(sw, dst)
                && (sw->list_head[pi] != NO_FRAME || sw->flood_head != NO_FRAME)) {
            deliver(sw, dst, sw->list_head[pi], sw->flood_head, 1, dst->flood);
            if (vale_unlikely(dst->mirror_tx != VALE_NO_PORT))
                abort();                /* the Cython core's transmit mirror: never here */
        } else if (vale_unlikely(sw->list_head[pi] != NO_FRAME && pi != src->index)) {
            dst->c.drops[dst->up ? DROP_LOOP : DROP_TX_ERROR] += chain_length(sw, sw->list_head[pi]);
        }
    }
    if (vale_unlikely(src->mirror_rx != VALE_NO_PORT))
        abort();                        /* the Cython core's receive mirror: never here */

    src->c.rx_packets += n;
    src->c.rx_bytes += nbytes;
    batch_record(sw, n);
    return n;
}

static uint32_t forward_port(vale_switch *sw, vale_port *p)
{
    vale_port_ops *ops = ops_of(p);
    uint32_t n = ops->take(sw, p);
    if (n) {
        if (vale_unlikely(p->blocked_until != 0))
            abort();                    /* the Cython core's loop_drop_batch: never here */
        forward_batch(sw, p, n);
        ops->release(sw, p, n);
    }
    return n;
}

static void register_ops(void)
{
    PORT_OPS[PORT_MEMORY] = (vale_port_ops){
        .name = "memory", .take = memory_take, .release = memory_release, .prepare = NULL,
        .put = memory_put, .flush = memory_flush, .failed = memory_failed,
        .close = memory_close, .kernel_drops = NULL, .info = NULL, .polled = 0, .direct = 1,
        .device = 0};
    LOOKUPS[LOOKUP_LEARNING] = NULL;
    LOOKUPS[LOOKUP_HUB] = hub_lookup;
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
    sw->loop_id = 0x9e3779b97f4a7c15ULL;  /* the core draws it at random */
    sw->loop_hold_ms = 30000;
    sw->batch = batch;
    sw->now_ms = monotonic_ms();
    sw->lookup = LOOKUP_LEARNING;
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
    p->fd = -1;
    p->tx_fd = -1;
    p->mirror_rx = VALE_NO_PORT;
    p->mirror_tx = VALE_NO_PORT;
    p->max_frame = slot_size;
    p->rx_max = slot_size;
    p->lru_head = VALE_NIL;
    p->lru_tail = VALE_NIL;
    memset(p->vlans, 0xFF, sizeof(p->vlans));       /* VLAN_NONE: carries them all */
    p->vlans[VALE_VLAN_WORDS - 1] &= ~((uint64_t)1 << 63);
    sw->ports[i] = p;
    sw->active[sw->nactive++] = i;
    return p;
}

/* SwitchCore.set_port(vlan=("access", vid)) and (vlan=("trunk", (a, b))). */
static void set_access(vale_switch *sw, vale_port *p, uint16_t vid)
{
    uint64_t words[VALE_VLAN_WORDS] = {0};
    port_set_vlans(sw, p, VLAN_ACCESS, vid, words);
}

static void set_trunk(vale_switch *sw, vale_port *p, uint16_t a, uint16_t b)
{
    uint64_t words[VALE_VLAN_WORDS] = {0};
    words[a >> 6] |= (uint64_t)1 << (a & 63);
    words[b >> 6] |= (uint64_t)1 << (b & 63);
    port_set_vlans(sw, p, VLAN_TRUNK, 0, words);
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

/* A frame: destination, source, IPv4 ethertype, zeroes; with a tag of `vlan` after the
   MAC addresses (4 bytes more) unless vlan is 0. */
static uint32_t make_frame(char *buf, uint32_t size, const uint8_t dst[6], const uint8_t src[6],
                           uint16_t vlan)
{
    uint32_t at = 12;
    memset(buf, 0, size + (vlan ? VLAN_HLEN : 0));
    memcpy(buf, dst, 6);
    memcpy(buf + 6, src, 6);
    if (vlan) {
        store_be16(buf + 12, VALE_ETYPE_8021Q);
        store_be16(buf + 14, vlan);
        at = 16;
    }
    buf[at] = 0x08;
    buf[at + 1] = 0x00;
    return size + (vlan ? VLAN_HLEN : 0);
}

/* The j-th MAC of a generated set: 02:pp:jj:jj:jj:jj (bench/fastpath.py makes the same):
   prefix 0x10 for the random case's table, 0x20 for the churn case's sources. */
static void numbered_mac(uint8_t mac[6], uint8_t prefix, uint32_t j)
{
    mac[0] = 0x02;
    mac[1] = prefix;
    mac[2] = (uint8_t)(j >> 24);
    mac[3] = (uint8_t)(j >> 16);
    mac[4] = (uint8_t)(j >> 8);
    mac[5] = (uint8_t)j;
}

static void forward_until_empty(vale_switch *sw, vale_port *p)
{
    while (forward_port(sw, p))
        ;
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
        done += forward_port(sw, src);
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

/* zlib's CRC-32, to compare what the TX rings hold with the core's. */
static uint32_t crc32_update(uint32_t crc, const uint8_t *p, size_t n)
{
    crc = ~crc;
    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1)));
    }
    return ~crc;
}

static uint32_t tx_crc(const vale_ring *r)
{
    uint32_t crc = 0;
    for (uint32_t at = r->tail; at != r->head; at++) {
        const vale_slot *slot = &r->slots[at & r->mask];
        uint8_t len[4] = {(uint8_t)slot->len, (uint8_t)(slot->len >> 8),
                          (uint8_t)(slot->len >> 16), (uint8_t)(slot->len >> 24)};
        crc = crc32_update(crc, len, 4);
        crc = crc32_update(crc, (const uint8_t *)r->buf + slot->off, slot->len);
    }
    return crc;
}

static void print_result(const vale_switch *sw, uint64_t done, uint64_t ns, uint32_t checked)
{
    const vale_fdb *t = &sw->fdb;
    printf("{\"frames\":%llu,\"ns\":%llu,\"batches\":%llu,\"batch_hist\":[",
           (unsigned long long)done, (unsigned long long)ns, (unsigned long long)sw->batches);
    for (int b = 0; b < VALE_HIST_BUCKETS; b++)
        printf("%s%llu", b ? "," : "", (unsigned long long)sw->batch_hist[b]);
    printf("],\"fdb\":{\"learned\":%llu,\"moved\":%llu,\"expired\":%llu,\"evicted\":%llu},"
           "\"ports\":[", (unsigned long long)t->learned, (unsigned long long)t->moved,
           (unsigned long long)t->expired, (unsigned long long)t->evicted);
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
    printf("]");
    if (checked) {
        /* The verdicts as the chains of the batch hold them: dropped frames are in none. */
        uint16_t verdicts[VALE_MAX_BATCH];
        for (uint32_t i = 0; i < checked; i++)
            verdicts[i] = VALE_DROP;
        for (uint32_t k = 0; k < sw->nactive; k++)
            for (uint16_t i = sw->list_head[sw->active[k]]; i != NO_FRAME; i = sw->next_frame[i])
                verdicts[i] = sw->active[k];
        for (uint16_t i = sw->flood_head; i != NO_FRAME; i = sw->next_frame[i])
            verdicts[i] = VALE_FLOOD;
        printf(",\"verdicts\":[");
        for (uint32_t i = 0; i < checked; i++)
            printf("%s%u", i ? "," : "", verdicts[i]);
        printf("],\"tx_crc\":[");
        for (uint32_t k = 0; k < sw->nactive; k++)
            printf("%s%u", k ? "," : "", tx_crc(&sw->ports[sw->active[k]]->tx));
        printf("]");
    }
    printf("}\n");
}

int main(int argc, char **argv)
{
    if (argc < 5 || argc > 6) {
        fprintf(stderr, "usage: %s unicast|flood|random|churn|vlan_push|vlan_pop|vlan_flood "
                "FRAME_SIZE BATCH FRAMES [TABLE_SIZE]\n", argv[0]);
        return 2;
    }
    const char *kind = argv[1];
    uint32_t frame_size = (uint32_t)strtoul(argv[2], NULL, 10);
    uint32_t batch = (uint32_t)strtoul(argv[3], NULL, 10);
    uint64_t frames = strtoull(argv[4], NULL, 10);
    uint32_t table_size = argc > 5 ? (uint32_t)strtoul(argv[5], NULL, 10) : 1000;
    int is_random = strcmp(kind, "random") == 0, is_churn = strcmp(kind, "churn") == 0;
    int is_push = strcmp(kind, "vlan_push") == 0, is_pop = strcmp(kind, "vlan_pop") == 0;
    int is_vflood = strcmp(kind, "vlan_flood") == 0, is_flood = strcmp(kind, "flood") == 0;
    if (!is_random && !is_churn && !is_push && !is_pop && !is_vflood && !is_flood
            && strcmp(kind, "unicast") != 0)
        die("unknown CASE");
    if (batch < 1 || batch > VALE_MAX_BATCH || frame_size < VALE_ETH_HLEN || frame_size > 65536)
        die("bad BATCH or FRAME_SIZE");
    if ((is_random || is_churn || is_pop) && frame_size > 60)
        die("the random, churn and vlan_pop cases take frames of at most 60 bytes");
    if ((is_random || is_churn) && table_size < 2)
        die("the random and churn cases take a TABLE_SIZE >= 2");
    if (is_churn && (table_size & (table_size - 1)))
        die("the churn case's TABLE_SIZE (its source pool) is a power of two");
    register_ops();

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
    } else if (is_churn) {
        slot_size = 64;
        rx_slots = table_size;           /* one frame per source MAC of the pool */
        capacity = table_size / 2;       /* the table holds half of the pool */
    } else if (is_pop) {
        slot_size = 64;                  /* a 60-byte frame and its tag */
        rx_slots = 1u << 20;             /* forwarding takes the tags out: no rewinding */
    } else if (is_flood || is_vflood) {
        nports = 5;
    }

    vale_switch *sw = switch_new(capacity, batch);
    vale_port *src = add_port(sw, rx_slots, slot_size);
    for (uint32_t i = 1; i < nports; i++)
        add_port(sw, 1024, slot_size);
    if (is_push) {
        set_access(sw, src, 10);
        set_trunk(sw, sw->ports[1], 10, 20);
    } else if (is_pop) {
        set_trunk(sw, src, 10, 20);
        set_access(sw, sw->ports[1], 10);
    } else if (is_vflood) {
        set_access(sw, src, 10);
        set_access(sw, sw->ports[1], 10);
        set_access(sw, sw->ports[2], 20);
        set_trunk(sw, sw->ports[3], 10, 20);  /* port 4: no VLAN mode */
    }

    static const uint8_t mac_a[6] = {0x02, 0, 0, 0, 0, 0x01};
    static const uint8_t mac_b[6] = {0x02, 0, 0, 0, 0, 0x02};
    static const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    char *frame = malloc(slot_size + VLAN_HLEN);
    uint8_t mac[6];
    uint32_t len;
    if (frame == NULL)
        die("out of memory");

    if (is_random) {
        /* The table's MACs learned on port 1, as dynamic entries, in order. */
        for (uint32_t j = 0; j < table_size; j++) {
            numbered_mac(mac, 0x10, j);
            fdb_insert(sw, load_mac((const char *)mac), 1, 0);
        }
        /* Each frame to one of them, drawn by a 64-bit LCG (the driver's, same seed). */
        uint64_t state = 12345;
        for (uint32_t i = 0; i < rx_slots; i++) {
            state = state * 6364136223846793005ULL + 1442695040888963407ULL;
            numbered_mac(mac, 0x10, (uint32_t)((state >> 33) % table_size));
            make_frame(frame, frame_size, mac, mac_a, 0);
            inject(src, frame, frame_size);
        }
    } else if (is_vflood) {
        make_frame(frame, frame_size, bcast, mac_a, 0);
        for (uint32_t i = 0; i < rx_slots; i++)
            inject(src, frame, frame_size);
    } else {
        /* Port 1 sends one frame first, so its MAC is known on port 1 (in VLAN 10 for the
           VLAN cases: tagged from the trunk, untagged from the access port). */
        len = make_frame(frame, frame_size, mac_a, mac_b, is_push ? 10 : 0);
        if (!is_flood) {
            inject(sw->ports[1], frame, len);
            forward_port(sw, sw->ports[1]);
        }
        if (is_churn) {
            /* Every frame from a source of its own; the whole ring forwarded once so the
               table starts full, then rewound (its frames are as they were). */
            for (uint32_t i = 0; i < rx_slots; i++) {
                numbered_mac(mac, 0x20, i);
                make_frame(frame, frame_size, mac_b, mac, 0);
                inject(src, frame, frame_size);
            }
            forward_until_empty(sw, src);
            src->rx.tail = src->rx.head - rx_slots;
        } else {
            len = make_frame(frame, frame_size, is_flood ? bcast : mac_b, mac_a, is_pop ? 10 : 0);
            for (uint32_t i = 0; i < rx_slots; i++)
                inject(src, frame, len);
        }
    }

    /* Report only what the timed loop did, its TX rings empty at the start. */
    for (uint32_t k = 0; k < sw->nactive; k++) {
        vale_port *p = sw->ports[sw->active[k]];
        memset(&p->c, 0, sizeof(vale_port_counters));
        p->tx.tail = p->tx.head;
    }
    sw->batches = 0;
    memset(sw->batch_hist, 0, sizeof(sw->batch_hist));
    sw->fdb.learned = sw->fdb.moved = sw->fdb.expired = sw->fdb.evicted = 0;

    if (frames == 0) {                   /* one batch, its verdicts and what it sent */
        uint32_t n = forward_port(sw, src);
        print_result(sw, n, 0, n);
        return 0;
    }
    uint64_t ns;
    uint64_t done = bench_forward(sw, src, frames, &ns);
    print_result(sw, done, ns, 0);
    return 0;
}
