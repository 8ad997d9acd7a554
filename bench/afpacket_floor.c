/*
 * afpacket_floor.c: the least any switch built on AF_PACKET does between two ports, as a
 * floor to compare vale with (bench/e2e.py runs it as the switch "floor").
 *
 * Each port is a packet socket set up as vale/afpacket.pxi (packet_open) sets up its own:
 * PACKET_VNET_HDR, TPACKET_V2, PACKET_IGNORE_OUTGOING, PACKET_QDISC_BYPASS, SO_SNDBUFFORCE
 * 4 MiB, a receive ring of 64 KiB + 256 byte slots in 1 MiB blocks (270 slots, vale's
 * default), bind, promiscuous membership. A round walks each port's ring and sends what it
 * found to the other port with one sendmmsg, each message [virtio-net header, frame]
 * pointing into the ring slot, then gives the slots back; when a round finds nothing the
 * program sleeps in epoll_wait on both sockets, as vale's thread does by default. There is
 * no MAC learning, no lookup, no counters, no lock, no TX ring and no checking of frames:
 * every frame one port receives goes out of the other. What it costs is what the kernel's
 * packet sockets cost: a copy of every frame into the receive ring, another into a new skb
 * on the way out, and a thread that must be woken for each burst of frames.
 *
 * With -3 the receive rings are TPACKET_V3 instead, as the issue first asked for vale: the
 * same 18 blocks of 1 MiB, frames packed into them, a block's retirement timeout of 1 ms
 * (the least the kernel takes). V3 wakes the reader only when a block is retired, full or
 * timed out, not for each frame: this mode measures what that costs a round trip.
 *
 * Build:  gcc -O2 -Wall -o afpacket_floor bench/afpacket_floor.c
 * Usage:  afpacket_floor [-3] IFNAME_A IFNAME_B
 *         It prints "ready" on stderr once both ports are open, runs until SIGINT or
 *         SIGTERM, then prints the frames it forwarded. Needs CAP_NET_RAW.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#define RING_SLOT (65536 + 256)     /* vale's PACKET_FRAME_SIZE */
#define RING_BLOCK (1 << 20)        /* vale's PACKET_BLOCK_SIZE: 15 slots a block */
#define RING_BLOCKS 18              /* 270 slots: vale's rx_frames=256, rounded up */
#define PER_BLOCK (RING_BLOCK / RING_SLOT)
#define RING_SLOTS (PER_BLOCK * RING_BLOCKS)
#define SNDBUF (4 << 20)            /* vale's PACKET_SNDBUF */
#define VNET_HDR_LEN 10
#define BATCH 256                   /* vale's default batch */

struct port {
    const char *name;
    int fd;
    char *ring;
    unsigned head;                  /* the next slot (V2) or block (V3) to look at */
};

static int v3;                      /* -3: TPACKET_V3 receive rings */

static volatile sig_atomic_t stopping;

static void on_signal(int sig) { (void)sig; stopping = 1; }

static void fail(const struct port *p, const char *what)
{
    fprintf(stderr, "afpacket_floor: %s: %s: %s\n", p->name, what, strerror(errno));
    exit(1);
}

static void port_open(struct port *p, const char *name)
{
    int one = 1, version = v3 ? TPACKET_V3 : TPACKET_V2, sndbuf = SNDBUF;
    struct tpacket_req3 req = {
        .tp_block_size = RING_BLOCK, .tp_block_nr = RING_BLOCKS,
        .tp_frame_size = RING_SLOT, .tp_frame_nr = RING_SLOTS,
        .tp_retire_blk_tov = v3 ? 1 : 0,
    };
    struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL) };
    struct packet_mreq mreq = { .mr_type = PACKET_MR_PROMISC };

    p->name = name;
    p->head = 0;
    sll.sll_ifindex = mreq.mr_ifindex = (int)if_nametoindex(name);
    if (sll.sll_ifindex == 0)
        fail(p, "no such interface");
    p->fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, htons(ETH_P_ALL));
    if (p->fd < 0)
        fail(p, "socket");
    if (setsockopt(p->fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof one) ||
        setsockopt(p->fd, SOL_PACKET, PACKET_VERSION, &version, sizeof version) ||
        setsockopt(p->fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one) ||
        setsockopt(p->fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one) ||
        setsockopt(p->fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof sndbuf) ||
        setsockopt(p->fd, SOL_PACKET, PACKET_RX_RING, &req,
                   v3 ? sizeof req : sizeof(struct tpacket_req)))
        fail(p, "setsockopt");
    p->ring = mmap(NULL, (size_t)RING_BLOCK * RING_BLOCKS, PROT_READ | PROT_WRITE,
                   MAP_SHARED, p->fd, 0);
    if (p->ring == MAP_FAILED)
        fail(p, "mmap");
    if (bind(p->fd, (struct sockaddr *)&sll, sizeof sll))
        fail(p, "bind");
    if (setsockopt(p->fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq, sizeof mreq))
        fail(p, "promiscuous");
}

static struct tpacket2_hdr *slot(const struct port *p, unsigned i)
{
    i %= RING_SLOTS;
    return (struct tpacket2_hdr *)(p->ring + (size_t)(i / PER_BLOCK) * RING_BLOCK
                                   + (size_t)(i % PER_BLOCK) * RING_SLOT);
}

static struct mmsghdr msgs[BATCH];
static struct iovec iov[BATCH];

/* Message N: [virtio-net header, frame], the frame at MAC in the ring. */
static void message(int n, char *mac, unsigned len)
{
    iov[n].iov_base = mac - VNET_HDR_LEN;
    iov[n].iov_len = VNET_HDR_LEN + len;
    memset(&msgs[n].msg_hdr, 0, sizeof msgs[n].msg_hdr);
    msgs[n].msg_hdr.msg_iov = &iov[n];
    msgs[n].msg_hdr.msg_iovlen = 1;
}

/* Send messages 0..N-1 out of DST. What its send buffer cannot take is dropped, as vale
 * drops it (ring_full). */
static void send_all(const struct port *dst, int n)
{
    int sent = 0, r;
    while (sent < n && (r = sendmmsg(dst->fd, msgs + sent, n - sent, MSG_DONTWAIT)) > 0)
        sent += r;
}

/* V3: send the frames of SRC's next block, if the kernel has retired it, out of DST. */
static int pass_block(struct port *src, const struct port *dst)
{
    struct tpacket_block_desc *bd =
        (struct tpacket_block_desc *)(src->ring + (size_t)src->head * RING_BLOCK);
    struct tpacket3_hdr *h;
    unsigned count, i;
    int n = 0;

    if (!(__atomic_load_n(&bd->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER))
        return 0;
    count = bd->hdr.bh1.num_pkts;
    h = (struct tpacket3_hdr *)((char *)bd + bd->hdr.bh1.offset_to_first_pkt);
    for (i = 0; i < count; i++) {
        message(n++, (char *)h + h->tp_mac, h->tp_snaplen);
        if (n == BATCH) {
            send_all(dst, n);
            n = 0;
        }
        h = (struct tpacket3_hdr *)((char *)h + h->tp_next_offset);
    }
    send_all(dst, n);
    __atomic_store_n(&bd->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
    src->head = (src->head + 1) % RING_BLOCKS;
    return (int)count;
}

/* Send what SRC's ring holds (a batch at most) out of DST; returns the frames taken. */
static int pass(struct port *src, const struct port *dst)
{
    int n = 0;

    if (v3)
        return pass_block(src, dst);
    for (; n < BATCH; n++) {
        struct tpacket2_hdr *h = slot(src, src->head + n);
        if (!(__atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER))
            break;
        message(n, (char *)h + h->tp_mac, h->tp_snaplen);
    }
    send_all(dst, n);
    for (int i = 0; i < n; i++)
        __atomic_store_n(&slot(src, src->head + i)->tp_status, TP_STATUS_KERNEL,
                         __ATOMIC_RELEASE);
    src->head = (src->head + n) % RING_SLOTS;
    return n;
}

int main(int argc, char **argv)
{
    struct port a, b;
    struct epoll_event ev = { .events = EPOLLIN }, events[2];
    struct sigaction sa = { .sa_handler = on_signal };
    unsigned long long frames = 0;
    int ep, n;

    if (argc == 4 && !strcmp(argv[1], "-3")) {
        v3 = 1;
        argv++, argc--;
    }
    if (argc != 3) {
        fprintf(stderr, "usage: afpacket_floor [-3] IFNAME_A IFNAME_B\n");
        return 2;
    }
    port_open(&a, argv[1]);
    port_open(&b, argv[2]);
    sigaction(SIGINT, &sa, NULL);       /* no SA_RESTART: epoll_wait returns EINTR */
    sigaction(SIGTERM, &sa, NULL);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, a.fd, &ev) || epoll_ctl(ep, EPOLL_CTL_ADD, b.fd, &ev))
        fail(&a, "epoll");
    fprintf(stderr, "afpacket_floor: ready (TPACKET_V%d)\n", v3 ? 3 : 2);
    while (!stopping) {
        n = pass(&a, &b) + pass(&b, &a);
        frames += (unsigned long long)n;
        if (n == 0)
            epoll_wait(ep, events, 2, 1000);
    }
    fprintf(stderr, "afpacket_floor: %llu frames forwarded\n", frames);
    return 0;
}
