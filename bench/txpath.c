/*
 * txpath.c: which way of transmitting to an interface port is faster, sendmmsg (what
 * vale does, vale/forward.pxi: flush_packet) or a PACKET_TX_RING on the same socket?
 *
 * The socket is set up as vale/afpacket.pxi (packet_open) sets up its own: PACKET_VNET_HDR,
 * TPACKET_V2, PACKET_IGNORE_OUTGOING, PACKET_QDISC_BYPASS, SO_SNDBUFFORCE 4 MiB, a receive
 * ring of 64 KiB + 256 byte slots in 1 MiB blocks, bind, promiscuous membership. The TX
 * ring method adds a transmit ring of the same geometry before bind.
 *
 * The frames to send lie in a pool laid out like vale's receive ring (one frame per
 * 65792-byte slot, BATCH slots), as the frames vale forwards do:
 *   sendmmsg: one call per BATCH messages, each [10-byte virtio-net header, frame]
 *             pointing into the pool; the kernel copies each frame into a new skb.
 *   ring:     copy up to BATCH frames (with their header) from the pool into free TX ring
 *             slots, mark them TP_STATUS_SEND_REQUEST, then one send(fd, NULL, 0,
 *             MSG_DONTWAIT); the kernel attaches the slot's pages to the skb (no copy;
 *             but veth, like any path into a receive stack, copies them into new pages)
 *             and gives a slot back (TP_STATUS_AVAILABLE) when its skb is freed.
 *   ring-linear: the same, but a frame without GSO goes with the header's hdr_len set to
 *             its whole length, so the kernel copies it into the skb's linear part and
 *             attaches no ring page (which veth would copy into a new page of its own).
 * The clock stops when every frame was handed over and, for the ring, every slot is back.
 *
 * Frame sizes: 60 (IPv4/UDP), 1514 (IPv4/UDP), gso (a 65226-byte IPv4/TCP super-frame
 * with a partial checksum: NEEDS_CSUM, GSO_TCPV4, gso_size 1448, as Linux TCP makes).
 *
 * Build:  gcc -O2 -Wall -o /tmp/txpath bench/txpath.c
 * Usage:  txpath -i IFNAME -d DST_MAC -m sendmmsg|ring|ring-linear -s 60|1514|gso [-b BATCH]
 *                [-n FRAMES] [-f RING_SLOTS] [-c CPU] [-r NETNS:IFNAME]
 *         -r reads IFNAME's rx_packets and rx_dropped in /sys/class/net of the named
 *         network namespace (/run/netns/NETNS) before and after, for the rate delivered.
 * Prints one JSON line. Needs CAP_NET_RAW (and CAP_SYS_ADMIN for -r).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <linux/virtio_net.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RING_SLOT (65536 + 256)     /* vale's PACKET_FRAME_SIZE */
#define RING_BLOCK (1 << 20)        /* vale's PACKET_BLOCK_SIZE: 15 slots a block */
#define SNDBUF (4 << 20)            /* vale's PACKET_SNDBUF */
#define VNET_HDR_LEN 10
#define GSO_MSS 1448
#define MAX_BATCH 1024

/* A ring as vale maps it: slot i is in block i / per_block. */
struct ring {
    char *map;
    unsigned frame_nr, per_block;
};

static struct tpacket2_hdr *ring_slot(const struct ring *r, unsigned i)
{
    i %= r->frame_nr;
    return (struct tpacket2_hdr *)(r->map + (size_t)(i / r->per_block) * RING_BLOCK
                                   + (size_t)(i % r->per_block) * RING_SLOT);
}

static void die(const char *what)
{
    fprintf(stderr, "txpath: %s: %s\n", what, strerror(errno));
    exit(1);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- frames ------------------------------------------------------------------------ */

static uint32_t sum16(const uint8_t *p, size_t n, uint32_t s)
{
    for (; n > 1; p += 2, n -= 2)
        s += (uint32_t)p[0] << 8 | p[1];
    if (n)
        s += (uint32_t)p[0] << 8;
    return s;
}

static uint16_t fold(uint32_t s)
{
    while (s >> 16)
        s = (s & 0xFFFF) + (s >> 16);
    return (uint16_t)s;
}

static void put16(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = v & 0xFF; }
static void put32(uint8_t *p, uint32_t v) { put16(p, v >> 16); put16(p + 2, v & 0xFFFF); }

/* Build the test frame into buf (dst MAC given, source 02:00:00:00:00:01, 198.18.0.1 ->
 * 198.18.0.2); fill *vnet. Returns the frame's length. */
static size_t make_frame(uint8_t *buf, const char *size, const uint8_t dst[6],
                         struct virtio_net_hdr *vnet)
{
    static const uint8_t src[6] = {2, 0, 0, 0, 0, 1};
    int gso = strcmp(size, "gso") == 0;
    size_t len, l4 = gso ? 32 : 8;          /* TCP with timestamps, or UDP */
    uint8_t *ip = buf + 14, *th = ip + 20;
    uint32_t s;

    if (gso)
        len = 14 + 20 + l4 + (size_t)((65535 - 20 - l4) / GSO_MSS) * GSO_MSS;
    else
        len = (size_t)atoi(size);
    if (len < 60 || len > 65535 + 14) {
        fprintf(stderr, "txpath: bad frame size %s\n", size);
        exit(2);
    }
    memset(buf, 0, len);
    memcpy(buf, dst, 6);
    memcpy(buf + 6, src, 6);
    put16(buf + 12, ETH_P_IP);
    ip[0] = 0x45;
    put16(ip + 2, len - 14);
    put16(ip + 4, 1);                       /* id */
    put16(ip + 6, 0x4000);                  /* DF */
    ip[8] = 64;
    ip[9] = gso ? IPPROTO_TCP : IPPROTO_UDP;
    put32(ip + 12, 0xC6120001);             /* 198.18.0.1 */
    put32(ip + 16, 0xC6120002);             /* 198.18.0.2 */
    put16(ip + 10, ~fold(sum16(ip, 20, 0)));
    for (size_t i = 14 + 20 + l4; i < len; i++)
        buf[i] = (uint8_t)i;
    memset(vnet, 0, sizeof(*vnet));
    if (!gso) {                             /* UDP, no checksum */
        put16(th, 40000);
        put16(th + 2, 5201);
        put16(th + 4, len - 14 - 20);
        return len;
    }
    put16(th, 40000);
    put16(th + 2, 5201);
    put32(th + 4, 1);                       /* seq */
    put32(th + 8, 1);                       /* ack */
    th[12] = (32 / 4) << 4;                 /* data offset */
    th[13] = 0x18;                          /* PSH|ACK */
    put16(th + 14, 512);                    /* window */
    th[20] = 1;                             /* NOP NOP TS(10) */
    th[21] = 1;
    th[22] = 8;
    th[23] = 10;
    put32(th + 24, 1000);
    put32(th + 28, 999);
    /* Partial checksum, as Linux leaves it: the pseudo-header sum, not complemented. */
    s = sum16(ip + 12, 8, 0) + IPPROTO_TCP + (uint32_t)(len - 14 - 20);
    put16(th + 16, fold(s));
    vnet->flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    vnet->gso_type = VIRTIO_NET_HDR_GSO_TCPV4;
    vnet->hdr_len = 14 + 20 + 32;
    vnet->gso_size = GSO_MSS;
    vnet->csum_start = 14 + 20;
    vnet->csum_offset = 16;
    return len;
}

/* ---- the socket, as vale's packet_open, with an optional TX ring ------------------- */

static int packet_open(int ifindex, unsigned slots, int tx_ring, struct ring *rx,
                       struct ring *tx)
{
    int one = 1, version = TPACKET_V2, size = SNDBUF;
    struct tpacket_req req;
    struct sockaddr_ll sll;
    struct packet_mreq mreq;
    size_t rx_len;
    char *m;
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, htons(ETH_P_ALL));

    if (fd < 0)
        die("socket");
    if (setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof(one)) != 0)
        die("PACKET_VNET_HDR");
    if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &version, sizeof(version)) != 0)
        die("PACKET_VERSION");
    if (setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one)) != 0)
        die("PACKET_IGNORE_OUTGOING");
    if (setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one)) != 0)
        die("PACKET_QDISC_BYPASS");
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size)) != 0)
        die("SO_SNDBUFFORCE");

    memset(&req, 0, sizeof(req));
    req.tp_frame_size = RING_SLOT;
    req.tp_block_size = RING_BLOCK;
    req.tp_block_nr = (slots + RING_BLOCK / RING_SLOT - 1) / (RING_BLOCK / RING_SLOT);
    req.tp_frame_nr = req.tp_block_nr * (RING_BLOCK / RING_SLOT);
    if (setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof(req)) != 0)
        die("PACKET_RX_RING");
    rx_len = (size_t)req.tp_block_nr * RING_BLOCK;
    rx->frame_nr = tx->frame_nr = req.tp_frame_nr;
    rx->per_block = tx->per_block = RING_BLOCK / RING_SLOT;
    if (tx_ring && setsockopt(fd, SOL_PACKET, PACKET_TX_RING, &req, sizeof(req)) != 0)
        die("PACKET_TX_RING");
    /* One mapping: the receive ring, then the transmit ring. */
    m = mmap(NULL, rx_len * (tx_ring ? 2 : 1), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        die("mmap");
    rx->map = m;
    tx->map = tx_ring ? m + rx_len : NULL;

    memset(&sll, 0, sizeof(sll));
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = ifindex;
    if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)) != 0)
        die("bind");
    memset(&mreq, 0, sizeof(mreq));
    mreq.mr_ifindex = ifindex;
    mreq.mr_type = PACKET_MR_PROMISC;
    if (setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq, sizeof(mreq)) != 0)
        die("PACKET_ADD_MEMBERSHIP");
    return fd;
}

/* ---- the two methods --------------------------------------------------------------- */

struct result {
    uint64_t sent;          /* frames the kernel accepted */
    uint64_t eagain, enobufs, other;
    uint64_t dropped;       /* sendmmsg: messages given up after ENOBUFS/other errors */
    uint64_t waits;         /* times the sender had to poll for room */
};

static void wait_writable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    poll(&p, 1, 10);
}

static void run_sendmmsg(int fd, char *pool, size_t len, const struct virtio_net_hdr *vnet,
                         unsigned batch, uint64_t frames, struct result *res)
{
    static struct mmsghdr msgs[MAX_BATCH];
    static struct iovec iov[MAX_BATCH][2];
    static struct virtio_net_hdr hdrs[MAX_BATCH];
    uint64_t done = 0;

    for (unsigned j = 0; j < batch; j++) {
        hdrs[j] = *vnet;
        iov[j][0].iov_base = &hdrs[j];
        iov[j][0].iov_len = VNET_HDR_LEN;
        iov[j][1].iov_base = pool + (size_t)j * RING_SLOT;
        iov[j][1].iov_len = len;
        memset(&msgs[j], 0, sizeof(msgs[j]));
        msgs[j].msg_hdr.msg_iov = iov[j];
        msgs[j].msg_hdr.msg_iovlen = 2;
    }
    while (done < frames) {
        unsigned n = frames - done < batch ? (unsigned)(frames - done) : batch, sent = 0;
        while (sent < n) {
            int r = sendmmsg(fd, &msgs[sent], n - sent, MSG_DONTWAIT);
            if (r > 0) {
                sent += r;
                res->sent += r;
                continue;
            }
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {          /* send buffer full: wait, try again */
                res->eagain++;
                res->waits++;
                wait_writable(fd);
                continue;
            }
            if (errno == ENOBUFS)           /* the device dropped that one */
                res->enobufs++;
            else
                res->other++;
            res->dropped++;
            sent++;
        }
        done += n;
    }
}

static void run_ring(int fd, const struct ring *tx, char *pool, size_t len,
                     const struct virtio_net_hdr *vnet, unsigned batch, uint64_t frames,
                     struct result *res)
{
    uint64_t queued = 0, bytes = 0;
    unsigned head = 0;
    const unsigned data_off = TPACKET2_HDRLEN - sizeof(struct sockaddr_ll);

    while (queued < frames) {
        unsigned n = 0;
        ssize_t r;
        while (n < batch && queued < frames) {
            struct tpacket2_hdr *h = ring_slot(tx, head);
            uint32_t st = __atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE);
            char *data = (char *)h + data_off;
            if (st == TP_STATUS_WRONG_FORMAT) {
                fprintf(stderr, "txpath: the kernel refused slot %u\n", head);
                exit(1);
            }
            if (st != TP_STATUS_AVAILABLE)
                break;
            memcpy(data, vnet, VNET_HDR_LEN);
            memcpy(data + VNET_HDR_LEN, pool + (size_t)(queued % batch) * RING_SLOT, len);
            h->tp_len = VNET_HDR_LEN + len;
            __atomic_store_n(&h->tp_status, TP_STATUS_SEND_REQUEST, __ATOMIC_RELEASE);
            head = (head + 1) % tx->frame_nr;
            n++;
            queued++;
        }
        /* Hand over what was marked; with nothing marked, a kick for slots an earlier
         * send left behind (no room in the send buffer then). */
        r = send(fd, NULL, 0, MSG_DONTWAIT);
        if (r >= 0)
            bytes += r;
        else if (errno == EAGAIN)
            res->eagain++;
        else if (errno == ENOBUFS)
            res->enobufs++;
        else if (errno != EINTR)
            res->other++;
        if (n == 0) {           /* no free slot: wait for skbs to be freed */
            res->waits++;
            wait_writable(fd);
        }
    }
    /* Wait for every slot to come back: until then, not every frame has gone. */
    for (unsigned i = 0; i < tx->frame_nr; i++)
        while (__atomic_load_n(&ring_slot(tx, i)->tp_status, __ATOMIC_ACQUIRE)
               != TP_STATUS_AVAILABLE) {
            ssize_t r = send(fd, NULL, 0, MSG_DONTWAIT);
            if (r > 0)
                bytes += r;
            res->waits++;
            wait_writable(fd);
        }
    res->sent = bytes / len;    /* tpacket_snd returns the frames' bytes, headers left out */
}

/* ---- counters ---------------------------------------------------------------------- */

/* Open NETNS's /sys/class/net/IF/statistics/{rx_packets,rx_dropped}: enter the namespace,
 * mount a sysfs of it in a mount namespace of our own, open, come back. */
static void open_peer_stats(const char *spec, int fds[2])
{
    char ns[256], path[512], ifname[IF_NAMESIZE];
    const char *colon = strchr(spec, ':');
    int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC), other;

    if (!colon || colon - spec >= 200 || strlen(colon + 1) >= IF_NAMESIZE) {
        fprintf(stderr, "txpath: -r wants NETNS:IFNAME\n");
        exit(2);
    }
    snprintf(ns, sizeof(ns), "/run/netns/%.*s", (int)(colon - spec), spec);
    snprintf(ifname, sizeof(ifname), "%s", colon + 1);
    other = open(ns, O_RDONLY | O_CLOEXEC);
    if (self < 0 || other < 0)
        die(ns);
    if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        die("private mount namespace");
    if (setns(other, CLONE_NEWNET) != 0)
        die("setns");
    if (mount("sysfs", "/sys", "sysfs", 0, NULL) != 0)
        die("mount sysfs");
    snprintf(path, sizeof(path), "/sys/class/net/%s/statistics/rx_packets", ifname);
    fds[0] = open(path, O_RDONLY | O_CLOEXEC);
    snprintf(path, sizeof(path), "/sys/class/net/%s/statistics/rx_dropped", ifname);
    fds[1] = open(path, O_RDONLY | O_CLOEXEC);
    if (fds[0] < 0 || fds[1] < 0)
        die(path);
    if (setns(self, CLONE_NEWNET) != 0)
        die("setns back");
    close(self);
    close(other);
}

static uint64_t read_counter(int fd)
{
    char buf[32];
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    if (n <= 0)
        die("read counter");
    buf[n] = 0;
    return strtoull(buf, NULL, 10);
}

/* Busy time of all CPUs, in clock ticks, from /proc/stat (softirqs in ksoftirqd too). */
static uint64_t cpu_busy_ticks(void)
{
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    if (!f || fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
                     &v[3], &v[4], &v[5], &v[6], &v[7]) != 8)
        die("/proc/stat");
    fclose(f);
    return v[0] + v[1] + v[2] + v[5] + v[6] + v[7];  /* all but idle and iowait */
}

static double rusage_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec
           + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

/* ---- main -------------------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr, "usage: txpath -i IFNAME -d DST_MAC -m sendmmsg|ring|ring-linear "
                    "-s 60|1514|gso [-b BATCH] [-n FRAMES] [-f RING_SLOTS] [-c CPU] "
                    "[-r NETNS:IFNAME]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *ifname = NULL, *method = NULL, *size = NULL, *mac = NULL, *peer = NULL;
    unsigned batch = 256, slots = 256;
    uint64_t frames = 1000000;
    int cpu = -1, opt, ring_method, peer_fds[2] = {-1, -1};
    uint8_t dst[6];
    struct virtio_net_hdr vnet;
    struct ring rx, tx;
    struct result res = {0};
    uint64_t rx0 = 0, rx1 = 0, drop0 = 0, drop1 = 0, busy0, busy1;
    double t0, t1, cpu0, cpu1, secs;
    size_t len;
    char *pool;
    int fd, ifindex;

    while ((opt = getopt(argc, argv, "i:d:m:s:b:n:f:c:r:")) != -1) {
        switch (opt) {
        case 'i': ifname = optarg; break;
        case 'd': mac = optarg; break;
        case 'm': method = optarg; break;
        case 's': size = optarg; break;
        case 'b': batch = (unsigned)atoi(optarg); break;
        case 'n': frames = strtoull(optarg, NULL, 10); break;
        case 'f': slots = (unsigned)atoi(optarg); break;
        case 'c': cpu = atoi(optarg); break;
        case 'r': peer = optarg; break;
        default: usage();
        }
    }
    if (!ifname || !method || !size || !mac || batch < 1 || batch > MAX_BATCH || slots < 1
        || sscanf(mac, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &dst[0], &dst[1], &dst[2], &dst[3],
                  &dst[4], &dst[5]) != 6)
        usage();
    ring_method = strcmp(method, "ring") == 0 || strcmp(method, "ring-linear") == 0;
    if (strcmp(method, "sendmmsg") != 0 && !ring_method)
        usage();
    if (cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        if (sched_setaffinity(0, sizeof(set), &set) != 0)
            die("sched_setaffinity");
    }
    if (peer)
        open_peer_stats(peer, peer_fds);
    ifindex = (int)if_nametoindex(ifname);
    if (!ifindex)
        die(ifname);

    /* The source frames, one per receive-ring-sized slot, as vale finds them. */
    pool = mmap(NULL, (size_t)batch * RING_SLOT, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (pool == MAP_FAILED)
        die("mmap pool");
    len = make_frame((uint8_t *)pool, size, dst, &vnet);
    if (strcmp(method, "ring-linear") == 0 && vnet.gso_type == VIRTIO_NET_HDR_GSO_NONE)
        vnet.hdr_len = len;     /* the kernel copies the whole frame into the skb */
    for (unsigned j = 1; j < batch; j++)
        memcpy(pool + (size_t)j * RING_SLOT, pool, len);

    fd = packet_open(ifindex, slots, ring_method, &rx, &tx);
    if (ring_method)    /* touch the ring once, so page faults are not timed */
        for (unsigned i = 0; i < tx.frame_nr; i++)
            memset((char *)ring_slot(&tx, i) + TPACKET2_HDRLEN, 0, 64);

    if (peer) {
        rx0 = read_counter(peer_fds[0]);
        drop0 = read_counter(peer_fds[1]);
    }
    busy0 = cpu_busy_ticks();
    cpu0 = rusage_seconds();
    t0 = now();
    if (ring_method)
        run_ring(fd, &tx, pool, len, &vnet, batch, frames, &res);
    else
        run_sendmmsg(fd, pool, len, &vnet, batch, frames, &res);
    t1 = now();
    cpu1 = rusage_seconds();
    busy1 = cpu_busy_ticks();
    if (peer) {
        rx1 = read_counter(peer_fds[0]);
        drop1 = read_counter(peer_fds[1]);
    }
    secs = t1 - t0;

    printf("{\"method\": \"%s\", \"frame_size\": %zu, \"gso\": %s, \"batch\": %u, "
           "\"frames\": %llu, \"sent\": %llu, \"seconds\": %.6f, \"mpps\": %.4f, "
           "\"gbps\": %.3f, \"eagain\": %llu, \"enobufs\": %llu, \"other_errors\": %llu, "
           "\"dropped\": %llu, \"waits\": %llu, \"cpu_ns_per_frame\": %.1f, "
           "\"system_busy_ns_per_frame\": %.1f",
           method, len, vnet.gso_type ? "true" : "false", batch,
           (unsigned long long)frames, (unsigned long long)res.sent, secs,
           res.sent / secs / 1e6, res.sent * (double)len * 8 / secs / 1e9,
           (unsigned long long)res.eagain, (unsigned long long)res.enobufs,
           (unsigned long long)res.other, (unsigned long long)res.dropped,
           (unsigned long long)res.waits, (cpu1 - cpu0) * 1e9 / frames,
           (busy1 - busy0) * 1e9 / sysconf(_SC_CLK_TCK) / frames);
    if (peer)
        printf(", \"rx_packets\": %llu, \"rx_dropped\": %llu, \"rx_mpps\": %.4f, "
               "\"rx_gbps\": %.3f",
               (unsigned long long)(rx1 - rx0), (unsigned long long)(drop1 - drop0),
               (rx1 - rx0) / secs / 1e6, (rx1 - rx0) * (double)len * 8 / secs / 1e9);
    printf("}\n");
    return 0;
}
