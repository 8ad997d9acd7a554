# Declarations of the data plane: rings, the MAC table (FDB), ports, the switch.
# Every field of the C structs and of the cdef class lives here; the code is in
# _fastpath.pyx and the .pxi parts it includes.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from vale.includes.linux cimport iovec, mmsghdr, sockaddr_ll
from vale.includes.system cimport pthread_mutex_t


cdef enum:
    VALE_MAX_PORTS = 1024       # port indexes 0..1023 (VALE has 254 slots, the bridge 1,024)
    VALE_MAX_BATCH = 1024       # frames taken from one ring in one pass
    VALE_DEFAULT_BATCH = 256
    VALE_DEFAULT_SPIN_US = 50   # after traffic, look again this long before sleeping
    VALE_SLOT_ALIGN = 64        # buffers are cache-line aligned, copies go in 64-byte chunks
    VALE_ETH_HLEN = 14
    VALE_HIST_BUCKETS = 11      # batch sizes <=1, <=2, <=4 ... <=1024
    HUGE_ALIGN = 2 << 20        # large areas are 2 MiB aligned so huge pages can back them
    SOFT_STRIDE = 16384         # the most room for one software-segmented frame (jumbo MSS)
    SOFT_BUF_SIZE = 2 << 20     # room for the frames one GSO frame becomes
    SOFT_HEADROOM = 512         # room for a segment's headers, beside its gso_size bytes

# Sentinels, outside the port index range.
cdef enum:
    VALE_NO_PORT = 0xFFFF

cdef enum:
    VALE_NIL = 0xFFFFFFFF       # "no entry" in the FDB's u32 links
    VALE_MAX_FDB_CAPACITY = 1 << 24     # entries a switch's MAC table can be set to hold
    FDB_JOURNAL_SIZE = 8192     # changes kept between two reads of the journal

# Drop reasons: indexes into vale_port_counters.drops.
cdef enum:
    DROP_RING_FULL = 0          # the destination ring (or the port's own RX ring) had no slot
    DROP_RUNT = 1               # shorter than an Ethernet header
    DROP_OWN_PORT = 2           # the destination MAC sits on the port it came from
    DROP_TOO_BIG = 3            # longer than the port's slots can hold
    DROP_LEARN_LIMIT = 4        # a new source MAC on a port at its learn limit
    DROP_LEARN_BANNED = 5       # a source MAC banned for moving too often
    DROP_BAD_OFFLOAD = 6        # a virtio-net header that does not match its frame
    DROP_TX_ERROR = 7           # the destination could not send it: down, gone, refused
    DROP_VLAN = 8               # of a VLAN the port does not carry, or a tag vale refuses
    DROP_STORM = 9              # a flood over the port's storm-control rate
    DROP_LOOP = 10              # from or to a port blocked by the loop guard
    DROP_SPOOFED = 11           # a source MAC the port's allowed MACs do not hold
    DROP_HOST = 12              # for the attached interface's own host stack (PACKET_HOST)
    DROP_BPDU = 13              # a spanning-tree BPDU (bpdu=drop|guard), or any frame of a
                                # port BPDU guard blocked
    DROP_RX_STUCK = 14          # frames lost while the kernel held a slot of its receive ring
    DROP_BAD_DESCRIPTOR = 15    # a guest's or program's ring broke the rules: its rings stopped
    N_DROP_REASONS = 16

# A frame's verdict from the lookup stage: a port index, VALE_FLOOD, or VALE_DROP + reason.
cdef enum:
    VALE_FLOOD = 0xFFFE
    VALE_DROP = 0xFF00          # VALE_DROP + a DROP_* reason

# 802.1Q: what a port does with VLANs.
cdef enum VlanMode:
    VLAN_NONE = 0               # tags carried as they come; untagged frames are VLAN 0
    VLAN_ACCESS = 1             # one VLAN, untagged on the wire
    VLAN_TRUNK = 2              # a set of VLANs tagged, maybe a native one untagged

cdef enum:
    VALE_VLAN_IDS = 4096
    VALE_VLAN_WORDS = 64        # VALE_VLAN_IDS bits in uint64_t words
    VALE_VLAN_MAX = 4094        # 4095 is reserved
    VALE_TPID_8021Q = 0x8100

# Lookup stages a switch can use (LOOKUPS in bridge.pxi).
cdef enum LookupKind:
    LOOKUP_LEARNING = 0         # VALE's: learn sources, forward known unicast, flood the rest
    LOOKUP_HUB = 1              # learn nothing, flood every frame within its VLAN
    LOOKUP_KINDS = 2

# Storm control: the flood classes a port limits.
cdef enum:
    STORM_BROADCAST = 0
    STORM_MULTICAST = 1
    STORM_UNKNOWN = 2           # unknown unicast
    STORM_CLASSES = 3

cdef enum:
    CAPTURE_RX = 1
    CAPTURE_TX = 2
    CAPTURE_SLOTS = 8192
    CAPTURE_SNAP = 2048 - 64    # bytes kept of each frame (its length is kept whole)

# Per-frame flags inside a batch.
cdef enum:
    FRAME_UNKNOWN_UNICAST = 1   # flooded because the destination is unknown
    FRAME_VNET = 2              # desc.vnet asks for an offload (partial checksum, GSO)
    FRAME_VLAN = 4              # the frame's (outer) tag is off its data: desc.vlan_* hold it
    FRAME_BAD = 8               # malformed (a lying virtio-net header): drop at once
    FRAME_HOST = 16             # addressed to the attached interface itself (PACKET_HOST)

# Port guards (vale_port.guards): checks admit() makes only on ports that have one set,
# out of line, so a switch without them pays one test per frame.
cdef enum:
    GUARD_SOURCE = 1            # allowed MACs (or sticky): other sources are spoofed
    GUARD_BPDU = 2              # spanning-tree BPDUs dropped (bpdu=drop or guard)
    GUARD_BLOCKED = 4           # BPDU guard tripped: every frame from the port dropped

# What a port does with spanning-tree BPDUs.
cdef enum BpduMode:
    BPDU_FORWARD = 0            # switched like any multicast frame
    BPDU_DROP = 1               # dropped and counted
    BPDU_GUARD = 2              # dropped, and the port blocked until bpdu is set again

cdef enum:
    VALE_MAX_ALLOWED = 1024     # allowed MACs a port may have (listed and sticky)

cdef enum PortKind:
    PORT_MEMORY = 0             # in-memory RX and TX rings (tests, benchmarks)
    PORT_PACKET = 1             # a Linux interface through an AF_PACKET socket
    PORT_TAP = 2                # a TAP device the daemon holds open (its tun fd)
    PORT_VHOST = 3              # a VM's virtio-net rings in its memory (vhost-user)
    PORT_MEMIF = 4              # a program's rings in its memory (memif)
    PORT_KINDS = 5

# FDB entry flags.
cdef enum:
    ENTRY_USED = 1
    ENTRY_STATIC = 2


# ---- rings -------------------------------------------------------------------------

# struct virtio_net_hdr (linux/virtio_net.h), little-endian as the kernel hands it to
# packet sockets on this architecture. It travels with a frame between ports that take it.
ctypedef struct vale_vnet:
    uint8_t flags               # VNET_NEEDS_CSUM, VNET_DATA_VALID
    uint8_t gso_type            # VNET_GSO_* (| VNET_GSO_ECN)
    uint16_t hdr_len            # Ethernet + IP + L4 header bytes
    uint16_t gso_size           # payload bytes per segment
    uint16_t csum_start         # where checksumming starts, from the Ethernet header
    uint16_t csum_offset        # where the checksum goes, from csum_start

cdef enum:
    VNET_HDR_LEN = 10
    VNET_NEEDS_CSUM = 1
    VNET_DATA_VALID = 2
    VNET_GSO_NONE = 0
    VNET_GSO_TCPV4 = 1
    VNET_GSO_UDP = 3            # UFO: one UDP datagram, split into IPv4 fragments
    VNET_GSO_TCPV6 = 4
    VNET_GSO_UDP_L4 = 5         # USO: split into UDP datagrams
    VNET_GSO_ECN = 0x80
    VALE_MAX_SEGMENTS = 1024    # a 64 KiB GSO frame cut at an MSS of 64 (Linux's least is 88)


ctypedef struct vale_slot:
    uint32_t off                # where the frame starts in the ring's buffer area
    uint32_t len
    uint32_t flags
    uint32_t _reserved

ctypedef struct vale_ring:
    char *buf                   # nslots * slot_size bytes, 64-byte aligned
    vale_slot *slots
    uint32_t nslots             # a power of two
    uint32_t mask
    uint32_t slot_size          # a multiple of 64
    uint32_t head               # producer index, free-running
    uint32_t tail               # consumer index, free-running
    vale_vnet *vnets            # per slot, valid where the slot's flags have FRAME_VNET

# A frame handed to the forwarding code: where it is, how long, flags.
ctypedef struct vale_desc:
    char *data
    uint32_t len
    uint32_t flags
    vale_vnet vnet
    uint16_t vlan_tci
    uint16_t vlan_tpid
    uint16_t vlan               # the VLAN it travels in: the take sets a kernel tag's (or
                                # 0), the bridge sets it from the port's mode

# A TPACKET_V2 receive or transmit ring, mapped from the kernel.
ctypedef struct vale_pring:
    char *map
    size_t map_len
    uint32_t frame_size
    uint32_t frame_nr
    uint32_t frames_per_block
    uint32_t block_size
    uint32_t head               # the next frame to look at
    uint32_t grow_blocks        # RX: the blocks it grows to when it fills (0: grown)
    bint grow_pending           # RX: it filled; it grows when it is next empty


# ---- vhost-user: a guest's virtio rings in its own memory, shared with valed ----------

cdef enum:
    VHOST_MAX_REGIONS = 8       # memory regions a memory table may have (the protocol's)
    VHOST_QUEUES = 2            # one receive and one transmit queue (no multiqueue)

# A descriptor of a split virtqueue (virtio 1.1, 2.6.5), little-endian as on this host.
ctypedef struct vale_vdesc:
    uint64_t addr               # guest physical
    uint32_t len
    uint16_t flags              # VRING_DESC_F_*
    uint16_t next

ctypedef struct vale_vregion:
    uint64_t gpa                # guest physical address of its first byte
    uint64_t size
    uint64_t uva                # where the front end (QEMU) has it: ring addresses come so
    char *host                  # where valed has it
    char *map                   # the whole mapping (from the fd's offset 0), to unmap
    size_t map_len

ctypedef struct vale_vq:
    vale_vdesc *desc            # the rings, in valed's mapping of guest memory
    uint16_t *avail             # flags, idx, ring[num], used_event
    uint16_t *used              # flags, idx, then {u32 id, u32 len}[num], avail_event
    uint64_t desc_uva           # as SET_VRING_ADDR gave them: mapped again on a new table
    uint64_t avail_uva
    uint64_t used_uva
    uint32_t num                # entries, a power of two; 0: not set
    uint16_t last_avail         # the next avail entry to take
    uint16_t used_idx           # the next used entry to write
    uint16_t signalled          # used_idx when the guest was last interrupted
    uint16_t avail_seen         # put: avail->idx as read at the batch's start
    uint16_t used_start         # put: used_idx at the batch's start (not yet published)
    int kick_fd                 # eventfd the guest kicks (-1: none)
    int call_fd                 # eventfd that interrupts the guest (-1: none)
    bint addressed              # SET_VRING_ADDR came
    bint enabled                # SET_VRING_ENABLE 1 (or no protocol features)
    bint started                # its rings are mapped and served
    bint kicks_off              # used->flags asks for no kicks (busy, no event indexes)

ctypedef struct vale_vhost:
    vale_vregion regions[VHOST_MAX_REGIONS]
    uint32_t nregions
    vale_vq q[VHOST_QUEUES]     # VQ_RX (the guest receives), VQ_TX (the guest sends)
    uint64_t features           # negotiated (SET_FEATURES)
    uint32_t hdr_len            # the virtio-net header: 12 with VERSION_1 or MRG_RXBUF, else 10
    bint event_idx
    bint indirect
    bint mergeable
    bint guest_offloads         # the guest takes partial checksums and TSO frames
    bint guest_ufo              # and UDP fragmentation offload frames
    char *stage                 # frames taken from the guest, copied in, one batch's worth
    uint64_t broken             # times the guest broke the rules (its rings then stopped)
    const char *broke           # what it did the last time


# ---- memif: a program's rings and buffers in its own memory, shared with valed ---------

cdef enum:
    MEMIF_MAX_REGIONS = 16      # regions a program may bring
    MEMIF_RINGS = 2             # one ring each way (no multiqueue)

# A memif descriptor, little-endian as on this host.
ctypedef struct vale_mdesc:
    uint16_t flags              # MEMIF_DESC_NEXT: the frame goes on in the next slot
    uint16_t region
    uint32_t length
    uint32_t offset             # from the region's start
    uint32_t metadata

ctypedef struct vale_mregion:
    char *base                  # valed's mapping of it
    uint64_t size

ctypedef struct vale_mring:
    uint16_t *flags             # in the shared ring header: its receiver's MEMIF_MASK_INT
    uint16_t *head              # moved by the program
    uint16_t *tail              # moved by valed
    vale_mdesc *desc
    uint32_t size               # slots, a power of two; 0: none
    uint32_t mask
    uint16_t last               # valed's tail: the next slot to read (C2S) or fill (S2C)
    uint16_t head_seen          # S2C: head as read at the batch's start
    uint16_t tail_start         # S2C: last at the batch's start (not yet published)
    int fd                      # its eventfd (-1: none)
    bint kicks_off              # C2S: MEMIF_MASK_INT set while frames come

ctypedef struct vale_memif:
    vale_mregion regions[MEMIF_MAX_REGIONS]
    uint32_t nregions
    vale_mring r[MEMIF_RINGS]   # MR_S2C (the program receives), MR_C2S (it sends)
    bint started                # connected, and served
    uint32_t taken              # C2S slots the last take used (chains take several)
    char *stage                 # frames taken from the program, copied in, one batch's worth
    uint64_t broken             # times the program broke the rules (its rings then stopped)
    const char *broke           # what it did the last time
    uint64_t refused            # programs the protocol refused or sent away


# ---- the MAC table -----------------------------------------------------------------

# An open-addressing cell: 16 bytes, four to a cache line. The port sits beside the key
# so a destination lookup touches one cell and nothing else.
ctypedef struct vale_cell:
    uint64_t key                # MAC in the low 48 bits (byte 0 lowest); 0 = empty
    uint32_t entry              # index into the entry array
    uint16_t port
    uint16_t _reserved

ctypedef struct vale_entry:
    uint64_t key
    uint64_t last_seen          # ms; entries of a port are kept in last_seen order
    uint64_t window_start       # ms; start of the current move-counting window
    uint64_t ban_until          # ms; no re-learning on another port before this
    uint32_t prev               # per-port LRU list (dynamic entries only)
    uint32_t next               # also the free-list link of unused entries
    uint32_t cell               # where its cell was last put: checked before it is used
    uint16_t port
    uint8_t flags
    uint8_t moves               # moves within the current window
    uint16_t settled            # the port it was on when the window began: a ban puts it back

ctypedef struct vale_fdb_change:
    uint64_t key
    uint16_t port               # where the key now is; VALE_NO_PORT: removed

ctypedef struct vale_fdb:
    vale_cell *cells
    uint32_t cell_mask
    uint32_t cell_shift         # 64 - log2(number of cells)
    vale_entry *entries         # reserved for VALE_MAX_FDB_CAPACITY, so entries never move
    uint32_t capacity
    uint32_t free_head
    uint32_t used_top           # entries from here up have never been used
    vale_cell *next_cells       # while the cells are resized: the new ones, else NULL
    uint32_t next_mask
    uint32_t next_shift
    uint32_t moved_upto         # while resizing: the entries below it are in next_cells
    vale_fdb_change *journal    # changes not yet read (for the kernel fast path), or NULL
    uint32_t journal_len
    bint journal_lost           # more changes than the journal holds came since the last read
    bint watched                # a journal is kept or the cells are resized: fdb_changed
    int kernel_src_fd           # the kernel fast path's map of known sources, or -1
    uint32_t count              # entries in use, static ones included
    uint32_t static_count
    uint64_t ageing_ms          # 0 = never
    uint64_t move_window_ms
    uint64_t ban_ms
    uint32_t move_limit         # more moves than this within the window: banned; 0 = off
    uint64_t learned
    uint64_t moved
    uint64_t expired
    uint64_t evicted


# ---- ports and the switch ----------------------------------------------------------

ctypedef struct vale_port_counters:
    uint64_t rx_packets         # frames the switch took from the port's RX ring
    uint64_t rx_bytes
    uint64_t tx_packets         # frames written into the port's TX ring
    uint64_t tx_bytes
    uint64_t flood_packets      # received frames that were flooded
    uint64_t drops[N_DROP_REASONS]

ctypedef struct vale_port:
    vale_ring rx
    vale_ring tx
    vale_port_counters c
    uint32_t learn_limit        # dynamic entries this port may hold; 0 = no limit
    uint32_t dyn_count          # dynamic entries it holds now
    uint32_t lru_head           # oldest dynamic entry
    uint32_t lru_tail           # newest
    uint64_t last_src           # last source MAC learned here, to skip the hash
    uint32_t last_src_entry
    vale_entry *last_src_at     # that entry (entries never move): no index arithmetic
    uint16_t index
    bint learning
    bint flood                  # receives flooded unknown unicast
    PortKind kind
    bint up                     # forwarding to and from it; off when its link fails
    bint vnet                   # takes virtio-net headers: offloaded frames pass as they are
    uint32_t max_frame          # longest plain frame it takes (a TX slot, or MTU + 18)
    int fd                      # the packet socket or tun fd, or -1
    vale_pring prx
    vale_pring ptx              # a packet port's TX ring for short frames (map NULL: none)
    int tx_fd                   # the send-only socket that ring belongs to, or -1
    uint32_t tx_pending         # frames marked in that ring, not yet handed to the kernel
    uint64_t tx_ring_packets    # frames sent through that ring (also in c.tx_packets)
    uint8_t capture             # CAPTURE_RX | CAPTURE_TX: copies go to the capture ring
    uint16_t mirror_rx          # a port that gets a copy of every frame received here
    uint16_t mirror_tx          # a port that gets a copy of every frame sent here
    bint journaled              # the table's journal keeps changes to its entries
    uint64_t capture_lost[2]    # rx, tx copies the capture ring had no room for
    uint32_t rx_max             # the longest frame its receive side can hold: longer is a lie
    bint tx_use_ring            # packet ports: this batch may go through the TX ring
    VlanMode vlan_mode
    uint16_t native             # the VLAN of its untagged frames (0: none; VLAN_NONE: 0)
    int untagged_ok             # vlan_ingress's answer for an untagged frame: 0 or -1
    uint64_t vlans[VALE_VLAN_WORDS]     # the VLANs it carries, bit v of the words
    uint32_t storm_rate[STORM_CLASSES]  # floods per second it may send in; 0 = no limit
    uint64_t storm_tokens[STORM_CLASSES]    # in thousandths of a frame
    uint64_t storm_ms           # when the buckets were last filled
    bint storm                  # any storm_rate set
    uint64_t blocked_until      # the loop guard blocks it until then (switch clock, ms); 0: not
    uint64_t loops_found        # times the loop guard blocked it
    uint8_t guards              # GUARD_*: admit() looks further only when one is set
    BpduMode bpdu
    uint64_t *allowed           # the source MACs it may send from, sorted (NULL: any)
    uint32_t nallowed
    uint32_t sticky             # learn sources into allowed until it holds this many
    uint32_t allowed_room       # allowed's size: max(listed, sticky)
    bint rx_stuck               # its receive ring got stuck and could not be made again
    uint64_t rx_resets          # times its receive ring was made again after a stuck slot
    sockaddr_ll link            # packet ports: the interface, where messages are sent
    int rx_ifindex              # packet ports: where its socket receives (the interface,
                                # or the kernel fast path's upcall device)
    uint64_t rx_checked         # rx_packets when the kernel's drops were last read
    vale_vhost *vhost           # vhost-user ports: the guest's memory and rings
    vale_memif *memif           # memif ports: the program's memory and rings

ctypedef struct vale_switch:
    vale_fdb fdb
    vale_port *ports[VALE_MAX_PORTS]
    uint16_t active[VALE_MAX_PORTS]     # indexes of the ports in use, ascending
    uint32_t nactive
    uint32_t batch
    uint64_t now_ms
    bint manual_clock
    uint64_t batches
    uint64_t batch_frames
    uint64_t batch_hist[VALE_HIST_BUCKETS]
    # scratch space of one batch
    vale_desc descs[VALE_MAX_BATCH]
    uint64_t dkeys[VALE_MAX_BATCH]      # destination keys; VALE_DECIDED: admit() dropped it
    uint32_t dhomes[VALE_MAX_BATCH]     # each key's home cell in the MAC table
    uint16_t next_frame[VALE_MAX_BATCH]
    uint16_t list_head[VALE_MAX_PORTS]
    uint16_t list_tail[VALE_MAX_PORTS]
    uint16_t flood_head
    uint16_t flood_tail
    # the forwarding thread
    int epoll_fd
    int wake_fd                 # eventfd: control wants the thread's attention
    int notify_fd               # eventfd: the thread tells Python a port went down
    int journal_fd              # eventfd: the MAC table's journal has changes to read
    bint stopping
    uint32_t busy_poll_us       # after a frame, spin this long before sleeping; 0 = never
    uint32_t control_waiting    # control calls queued for the lock
    uint64_t loops              # forwarding loop iterations (progress, for a watchdog)
    # transmit scratch space: sendmmsg messages and software-offload output
    mmsghdr tx_msgs[VALE_MAX_BATCH]
    iovec tx_iov[4 * VALE_MAX_BATCH]
    vale_vnet tx_vnet[VALE_MAX_BATCH]
    uint8_t tx_tag[VALE_MAX_BATCH][4]
    char *soft_buf              # SOFT_BUF_SIZE bytes
    uint32_t soft_stride        # where each frame made there starts: i * soft_stride
    uint32_t soft_lens[VALE_MAX_SEGMENTS]
    # capture: copies of frames for `valectl capture`, with when and where they passed
    vale_ring cap               # slot flags: port index | direction << 16; _reserved: length
    uint64_t *cap_stamps        # CLOCK_REALTIME ns, per slot
    uint64_t cap_now            # the batch's CLOCK_REALTIME ns, read only while capturing
    uint32_t capturing          # ports with a capture flag set
    uint32_t vlan_ports         # ports with a VLAN mode: VLAN filtering on
    LookupKind lookup           # LOOKUP_LEARNING is inlined; the others through LOOKUPS
    uint64_t loop_id            # the id in this switch's loop probes (never 0)
    uint64_t loop_hold_ms       # how long the loop guard blocks a port


# A port kind's operations (one table per kind in PORT_OPS, filled in by _fastpath.pyx
# from the back ends' files): the bridge and the forwarding loop reach ports only so.
ctypedef uint32_t (*port_take_fn)(vale_switch *sw, vale_port *p) noexcept nogil
ctypedef void (*port_release_fn)(vale_switch *sw, vale_port *p, uint32_t n) noexcept nogil
ctypedef void (*port_prepare_fn)(vale_switch *sw, vale_port *p, uint16_t u, uint16_t b) noexcept nogil
ctypedef uint32_t (*port_put_fn)(vale_switch *sw, vale_port *p, const char *data,
                                 uint32_t length, const vale_vnet *vnet, uint32_t tag,
                                 uint32_t queued, bint padded) noexcept nogil
ctypedef void (*port_flush_fn)(vale_switch *sw, vale_port *p, uint32_t queued) noexcept nogil
ctypedef bint (*port_failed_fn)(vale_port *p, uint32_t events) noexcept nogil
ctypedef void (*port_close_fn)(vale_port *p) noexcept nogil
ctypedef uint64_t (*port_kernel_drops_fn)(vale_port *p) noexcept nogil
ctypedef dict (*port_info_fn)(vale_port *p)

cdef struct vale_port_ops:
    const char *name            # what port_info calls the kind
    port_take_fn take           # up to sw.batch received frames into sw.descs; how many
    port_release_fn release     # give those n frames back to the receive side
    port_prepare_fn prepare     # before a batch's frames for it: lists u and b (or NULL)
    port_put_fn put             # hand it one frame (queued or written); messages queued
    port_flush_fn flush         # send what put queued; called once per batch
    port_failed_fn failed       # whether an epoll error event means its device is gone
    port_close_fn close         # let go of its kernel resources (fds, mappings)
    port_kernel_drops_fn kernel_drops   # frames the kernel dropped since last asked (or NULL)
    port_info_fn info           # what port_info shows of its rings
    bint polled                 # the thread polls it (memory ports are driven by calls)
    bint direct                 # its TX side is p.tx: the bridge copies plain frames there
    bint device                 # it stands for a device: mtu and up apply

# A lookup stage: gives every frame of the batch the bridge admits (its admit()) a verdict
# through the bridge's give_verdict: a port, VALE_FLOOD or VALE_DROP + reason (netmap's
# bdg_ops.lookup, a batch at a time).
ctypedef void (*vale_lookup_fn)(vale_switch *sw, vale_port *src, uint32_t n) noexcept nogil


cdef class SwitchCore:
    cdef vale_switch *sw
    cdef pthread_mutex_t lock
    cdef bint lock_ready
    cdef bint resizing          # a set_capacity is under way
    cdef dict listed_macs       # port index -> the allowed MACs set_port gave it, sorted

    cdef inline void acquire(self) noexcept
    cdef inline void release(self) noexcept
    cdef vale_port *port_at(self, object index) except NULL
    cdef vale_port *vhost_port(self, object index) except NULL
    cdef vale_port *memif_port(self, object index) except NULL
    cdef void refresh_clock(self) noexcept nogil
    cdef uint32_t blocker_bits(self, vale_port *p, const uint8_t *targets) noexcept nogil
    cdef void mirror_targets(self, uint8_t *targets) noexcept nogil
    cdef bint send_probe(self, vale_port *p) noexcept nogil
    cdef uint32_t remove_entries(self, uint32_t port, bint statics) noexcept
    cdef vale_port *new_port(self, learning, flood, learn_limit) except NULL
    cdef uint32_t activate(self, vale_port *p) noexcept
    cdef capacity_fits(self, uint32_t capacity)
