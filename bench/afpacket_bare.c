/*
 * afpacket_bare.c: a bare AF_PACKET switch between two ports, packet sockets and nothing
 * else, as a reference for vale (bench/e2e.py runs it as the switches "bare", "bare-pinned"
 * (-c), "bare-mmsg" (-m -c) and "bare-v3" (-3)).
 *
 * Each port is a packet socket set up as vale/afpacket.pxi (packet_open) sets up its own:
 * PACKET_VNET_HDR, TPACKET_V2, PACKET_IGNORE_OUTGOING, PACKET_QDISC_BYPASS, SO_SNDBUFFORCE
 * 4 MiB, a receive ring of 64 KiB + 256 byte slots in 1 MiB blocks (270 slots, vale's
 * default), bind, promiscuous membership. A round walks each port's ring and sends what it
 * found to the other port with one sendmmsg, each message [virtio-net header, frame]
 * pointing into the ring slot, then gives the slots back; when a round finds nothing the
 * program sleeps in epoll_wait on both sockets, as vale's thread does by default. There is
 * no MAC learning, no lookup, no counters, no lock, no TX ring, no checking of frames, and
 * VLAN tags the kernel took off are not put back: every frame one port receives goes out
 * of the other. What it costs is what the kernel's packet sockets cost: a copy of every
 * frame into the receive ring, another into a new skb on the way out, and a thread that
 * must be woken for each burst of frames. It is not a bound: vale sends short frames
 * through a TX ring, which costs less than this program's sendmmsg.
 *
 * With -3 the receive rings are TPACKET_V3 instead (issue 3 asked for V3 at first): the
 * same 18 blocks of 1 MiB, frames packed into them, a block's retirement timeout of 1 ms
 * (the least the kernel takes). V3 wakes the reader only when a block is retired, full or
 * timed out, not for each frame: this mode measures what that costs a round trip.
 *
 * With -m there is no receive ring at all: each port is a plain packet socket (the same
 * options but the ring; its receive buffer forced to the ring's 18 MiB instead), read with
 * recvmmsg, a batch of up to 256 frames into a 64 KiB + 256 byte buffer each ([virtio-net
 * header, frame] as the kernel hands it over), and the batch goes out of the other port with
 * one sendmmsg of the same buffers. That costs a copy out of the kernel that the ring saves
 * and a system call per batch: the plainest packet-socket switch there is.
 *
 * With -c CPU the program pins itself to that CPU (sched_setaffinity) before it opens the
 * ports, as vale's forwarding thread is pinned: bench/e2e.py runs it so to compare the two
 * on the same core.
 *
 * Build:  gcc -O2 -Wall -o afpacket_bare bench/afpacket_bare.c
 * Usage:  afpacket_bare [-3 | -m] [-c CPU] IFNAME_A IFNAME_B
 *         It prints "afpacket_bare: ready (...)" on stderr once both ports are open, runs
 *         until SIGINT or SIGTERM, then prints the frames it sent. Needs CAP_NET_RAW (and
 *         CAP_NET_ADMIN for the 4 MiB send buffer and, with -m, the 18 MiB receive buffer,
 *         which it goes without otherwise).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sched.h>
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
#define MSG_BUF (65536 + 256)       /* -m: a message's buffer, as a ring slot */

struct port {
    const char *name;
    int fd;
    char *ring;
    unsigned head;                  /* the next slot (V2) or block (V3) to look at */
};

static int v3;                      /* -3: TPACKET_V3 receive rings */
static int mmsg;                    /* -m: no ring, recvmmsg and sendmmsg */

static volatile sig_atomic_t stopping;

static void on_signal(int sig) { (void)sig; stopping = 1; }

static void fail(const struct port *p, const char *what)
{
    fprintf(stderr, "afpacket_bare: %s: %s: %s\n", p->name, what, strerror(errno));
    exit(1);
}

static void port_open(struct port *p, const char *name)
{
    int one = 1, version = v3 ? TPACKET_V3 : TPACKET_V2, sndbuf = SNDBUF;
    int rcvbuf = RING_BLOCK * RING_BLOCKS / 2;      /* the kernel doubles it */
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
        setsockopt(p->fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one))
        fail(p, "setsockopt");
    /* As vale: these two are optimisations, gone without where the kernel refuses. */
    setsockopt(p->fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one);
    setsockopt(p->fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof sndbuf);
    if (mmsg) {
        /* No ring: the socket's receive queue holds what the ring would, by bytes. */
        setsockopt(p->fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf);
        p->ring = NULL;
    } else {
        if (setsockopt(p->fd, SOL_PACKET, PACKET_RX_RING, &req,
                       v3 ? sizeof req : sizeof(struct tpacket_req)))
            fail(p, "receive ring");
        p->ring = mmap(NULL, (size_t)RING_BLOCK * RING_BLOCKS, PROT_READ | PROT_WRITE,
                       MAP_SHARED, p->fd, 0);
        if (p->ring == MAP_FAILED)
            fail(p, "mmap");
    }
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
static unsigned long long frames_sent;

/* Message N: [virtio-net header, frame], the frame at MAC in the ring. */
static void message(int n, char *mac, unsigned len)
{
    iov[n].iov_base = mac - VNET_HDR_LEN;
    iov[n].iov_len = VNET_HDR_LEN + len;
    memset(&msgs[n].msg_hdr, 0, sizeof msgs[n].msg_hdr);
    msgs[n].msg_hdr.msg_iov = &iov[n];
    msgs[n].msg_hdr.msg_iovlen = 1;
}

/* Send messages 0..N-1 out of DST. As vale does: what its send buffer cannot take, or a
 * link that is down, drops the rest; a message the kernel refuses is skipped. */
static void send_all(const struct port *dst, int n)
{
    int sent = 0, r;
    while (sent < n) {
        r = sendmmsg(dst->fd, msgs + sent, n - sent, MSG_DONTWAIT);
        if (r > 0) {
            sent += r;
            frames_sent += (unsigned long long)r;
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN || errno == ENOBUFS || errno == ENXIO ||
                   errno == ENETDOWN || errno == ENODEV) {
            break;
        } else {
            sent++;
        }
    }
}

/* Clear an error the kernel flagged on a socket (a link gone down), which would otherwise
 * keep epoll_wait from sleeping. */
static void clear_error(int fd)
{
    int err;
    socklen_t len = sizeof err;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
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

/* -m: the buffers recvmmsg fills, one per message, and what it said of them. */
static char *bufs;
static struct mmsghdr rx_msgs[BATCH];
static struct iovec rx_iov[BATCH];

static void mmsg_setup(void)
{
    bufs = malloc((size_t)BATCH * MSG_BUF);
    if (bufs == NULL) {
        fprintf(stderr, "afpacket_bare: no memory for %d buffers\n", BATCH);
        exit(1);
    }
    for (int i = 0; i < BATCH; i++) {
        rx_iov[i].iov_base = bufs + (size_t)i * MSG_BUF;
        rx_iov[i].iov_len = MSG_BUF;
        rx_msgs[i].msg_hdr.msg_iov = &rx_iov[i];
        rx_msgs[i].msg_hdr.msg_iovlen = 1;
    }
}

/* -m: read what SRC's socket holds (a batch at most) and send it out of DST. A frame cut
 * short (bigger than a buffer, which a GSO frame is not) is not passed on. */
static int pass_mmsg(const struct port *src, const struct port *dst)
{
    int got, n = 0;

    do
        got = recvmmsg(src->fd, rx_msgs, BATCH, MSG_DONTWAIT, NULL);
    while (got < 0 && errno == EINTR && !stopping);
    if (got < 0)                        /* nothing, or an error it has now reported */
        return 0;
    for (int i = 0; i < got; i++) {
        if (rx_msgs[i].msg_hdr.msg_flags & MSG_TRUNC ||
            rx_msgs[i].msg_len <= VNET_HDR_LEN)
            continue;
        message(n++, (char *)rx_iov[i].iov_base + VNET_HDR_LEN,
                rx_msgs[i].msg_len - VNET_HDR_LEN);
    }
    send_all(dst, n);
    return got;
}

/* Send what SRC's ring holds (a batch at most) out of DST; returns the frames taken. */
static int pass(struct port *src, const struct port *dst)
{
    int n = 0;

    if (mmsg)
        return pass_mmsg(src, dst);
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
    int ep, n, i, got, opt, cpu = -1;
    char *end, pinned[32] = "";

    while ((opt = getopt(argc, argv, "3mc:")) != -1) {
        if (opt == '3') {
            v3 = 1;
        } else if (opt == 'm') {
            mmsg = 1;
        } else if (opt == 'c') {
            errno = 0;
            cpu = (int)strtol(optarg, &end, 10);
            if (errno || *end || end == optarg || cpu < 0 || cpu >= CPU_SETSIZE) {
                fprintf(stderr, "afpacket_bare: -c %s: not a CPU number\n", optarg);
                return 2;
            }
        } else {
            argc = 0;                   /* the usage below */
            break;
        }
    }
    if (argc - optind != 2 || (v3 && mmsg)) {
        fprintf(stderr, "usage: afpacket_bare [-3 | -m] [-c CPU] IFNAME_A IFNAME_B\n");
        return 2;
    }
    if (cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        if (sched_setaffinity(0, sizeof set, &set)) {
            fprintf(stderr, "afpacket_bare: cannot pin to CPU %d: %s\n", cpu,
                    strerror(errno));
            return 1;
        }
        snprintf(pinned, sizeof pinned, ", pinned to CPU %d", cpu);
    }
    port_open(&a, argv[optind]);
    port_open(&b, argv[optind + 1]);
    if (mmsg)
        mmsg_setup();
    sigaction(SIGINT, &sa, NULL);       /* no SA_RESTART: epoll_wait returns EINTR */
    sigaction(SIGTERM, &sa, NULL);
    ep = epoll_create1(EPOLL_CLOEXEC);
    ev.data.fd = a.fd;
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, a.fd, &ev))
        fail(&a, "epoll");
    ev.data.fd = b.fd;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, b.fd, &ev))
        fail(&b, "epoll");
    if (mmsg)
        fprintf(stderr, "afpacket_bare: ready (recvmmsg/sendmmsg%s)\n", pinned);
    else
        fprintf(stderr, "afpacket_bare: ready (TPACKET_V%d%s)\n", v3 ? 3 : 2, pinned);
    while (!stopping) {
        n = pass(&a, &b) + pass(&b, &a);
        if (n > 0)
            continue;
        got = epoll_wait(ep, events, 2, 1000);
        for (i = 0; i < got; i++)
            if (events[i].events & EPOLLERR)
                clear_error(events[i].data.fd);
    }
    fprintf(stderr, "afpacket_bare: %llu frames sent\n", frames_sent);
    return 0;
}
