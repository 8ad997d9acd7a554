/* vale's kernel fast path: what the BPF programs (fastpath.bpf.c) and their loader
 * (vale/_bpf.pyx) share. Each map's key and value, the sizes and the counters' order are
 * defined here once; the loader checks its names of the counters against the enums.
 *
 * The maps, one set per switch, pinned under /sys/fs/bpf/vale/<switch>/:
 *
 *   vale_ports   hash     ifindex -> struct vale_bpf_port      written by vale
 *   vale_egress  array    port index -> vale_bpf_egress        written by vale, with vale_ports
 *   vale_src     hash     struct vale_bpf_mac -> vale_bpf_src  vale; last_seen_ns by the program
 *   vale_dst     hash     struct vale_bpf_mac -> vale_bpf_dst  written by vale
 *   vale_stats   per-CPU array, port index -> vale_bpf_stats   written by the tc program
 *   vale_passed  per-CPU array, VALE_BPF_PASS_* -> __u64       written by the tc program
 *
 * Order that keeps vale's packet socket of a port where the frames that go up arrive:
 * make the upcall device, attach vale_upcall to it and vale_tc to the port's interface,
 * set the port's entry with the upcall device and no flags (every frame goes up there),
 * move the socket onto the upcall device, then give the port VALE_BPF_PORT_RX. Taking
 * it away is the same backwards. A frame that meets a move may be lost or seen twice,
 * as a frame that meets a hardware switch's table update.
 */
#ifndef VALE_BPF_FASTPATH_H
#define VALE_BPF_FASTPATH_H

#include <linux/types.h>

#define VALE_BPF_PORTS 1024         /* port indexes 0-1023, as the switch's (VALE_MAX_PORTS) */
#define VALE_BPF_MACS 65536         /* default size of vale_src and vale_dst (the switch's
                                       default MAC table); the loader may set another */
#define VALE_BPF_SEEN_NS 1000000000ULL  /* last_seen_ns is written at most once a second */
#define VALE_BPF_FRAME_SLACK 18     /* a frame may be its MTU plus an Ethernet header and
                                       one VLAN tag: the switch's max_frame, the kernel's
                                       is_skb_forwardable() */

/* vale_ports: an interface's ifindex (in the switch's namespace) -> its port. */
#define VALE_BPF_PORT_RX 0x1        /* frames received here may take the fast path */
#define VALE_BPF_PORT_TX 0x2        /* frames may be redirected to here (no capture or
                                       mirror of what it sends, up, not blocked) */
struct vale_bpf_port {
    __u32 port;                     /* the switch's port index, < VALE_BPF_PORTS */
    __u32 flags;                    /* VALE_BPF_PORT_* */
    __u32 upcall;                   /* ifindex of the dummy where vale's socket of the
                                       port listens; 0: none, frames go on as if the
                                       program were not there */
};

/* vale_egress: where frames to a port index go, and whether they may: set and cleared
 * with the port's vale_ports entry. An array, so the program's check of each frame's
 * destination port is a load, not a hash lookup. */
struct vale_bpf_egress {
    __u32 ifindex;                  /* the port's interface; 0: no port */
    __u32 flags;                    /* its vale_ports flags: VALE_BPF_PORT_TX matters */
};

/* The key of vale_src and vale_dst. Read as a little-endian __u64 it is the switch's MAC
 * table key: byte 0 of the MAC in the low bits, the VLAN from bit 48. */
struct vale_bpf_mac {
    __u8 mac[6];
    __u16 vlan;                     /* 0: VLANs take the slow path for now */
};

/* vale_src: a source MAC known on a port. Frames from it on that port may take the fast
 * path; on any other port (a move) or from a MAC not here, they go up to vale. */
struct vale_bpf_src {
    __u32 port;
    __u32 pad;
    __u64 last_seen_ns;             /* CLOCK_MONOTONIC, coarse (bpf_ktime_get_coarse_ns: a
                                       tick behind at most), refreshed by the
                                       tc program to within VALE_BPF_SEEN_NS */
};

/* vale_dst: where frames to a MAC go. */
#define VALE_BPF_DST_PEER 0x1       /* bpf_redirect_peer: into the veth peer of ifindex,
                                       which must be in another namespace (the kernel
                                       drops the frame otherwise); else bpf_redirect */
struct vale_bpf_dst {
    __u32 port;                     /* the port index the switch knows the MAC on */
    __u32 ifindex;                  /* that port's interface, as in vale_ports */
    __u32 mtu;                      /* that port's MTU; longer frames are dropped */
    __u32 flags;                    /* VALE_BPF_DST_* */
};

/* Frames the tc program dropped, per port and CPU; the names are _bpf.pyx's DROP_REASONS. */
enum vale_bpf_drop {
    VALE_BPF_DROP_OWN_PORT,         /* destination on the source's port (on the source) */
    VALE_BPF_DROP_MTU,              /* longer than the destination's MTU (on the destination) */
    VALE_BPF_DROPS
};

/* vale_stats: per port index and CPU. Packets are wire frames: a GSO super-frame counts
 * its segments. Bytes are the frames' lengths as received (a super-frame's headers once),
 * as the switch counts its own. rx counts every frame the program took (redirected or
 * dropped), tx the frames redirected to the port. */
struct vale_bpf_stats {
    __u64 rx_packets;
    __u64 rx_bytes;
    __u64 tx_packets;
    __u64 tx_bytes;
    __u64 drops[VALE_BPF_DROPS];
};

/* vale_passed: why frames went up to vale instead, per CPU; the names are _bpf.pyx's
 * PASS_REASONS. */
enum vale_bpf_pass {
    VALE_BPF_PASS_PORT,             /* ingress interface not in vale_ports, or no RX flag */
    VALE_BPF_PASS_RUNT,             /* shorter than an Ethernet header */
    VALE_BPF_PASS_VLAN,             /* 802.1Q or 802.1ad tagged */
    VALE_BPF_PASS_GROUP,            /* broadcast or multicast destination */
    VALE_BPF_PASS_HOST,             /* to the ingress interface's own MAC */
    VALE_BPF_PASS_SRC_UNKNOWN,      /* source MAC not in vale_src */
    VALE_BPF_PASS_SRC_MOVED,        /* source MAC known on another port */
    VALE_BPF_PASS_DST_UNKNOWN,      /* destination MAC not in vale_dst */
    VALE_BPF_PASS_DST_PORT,         /* destination port without an interface or TX flag
                                       in vale_egress, or on another interface (stale) */
    VALE_BPF_PASS_GSO,              /* a GSO frame whose segments would not fit the
                                       destination's MTU, or whose headers were not parsed */
    VALE_BPF_PASSES
};

#endif
