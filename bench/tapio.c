/* What batching could save on a TAP port: a frame read from or written to a tun fd one
 * system call each (read(), writev(), as vale does) against the same in batches of 64
 * through io_uring (one io_uring_enter per batch). It measures only the forwarding
 * thread's side of a TAP: the frames to read are queued beforehand by a packet socket
 * sending out of the TAP; the frames written go up the TAP's stack (raw ethertype 0x88b5,
 * which nothing takes: dropped at once, as in bench/e2e.py's raw frames).
 *
 *   gcc -O2 -Wall -o tapio bench/tapio.c -luring && sudo ./tapio [rounds]
 *
 * Runs in a network namespace of its own (unshare), so nothing it makes is seen outside
 * and everything goes with it. Prints one JSON line: ns per frame, medians of the rounds,
 * the two ways alternating. Needs root and liburing (Debian: liburing-dev).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define FRAMES 960           /* queued per round: within the tun queue of 1000 frames */
#define BATCH 64             /* frames per io_uring_enter */
#define FRAME_LEN 60
#define VNET_HDR_LEN 10
#define SLOT 2048

static char slots[FRAMES][SLOT];

static void die(const char *what)
{
    fprintf(stderr, "tapio: %s: %s\n", what, strerror(errno));
    exit(1);
}

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static int open_tap(char *name)
{
    struct ifreq ifr = {0};
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK);
    if (fd < 0)
        die("/dev/net/tun");
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    strcpy(ifr.ifr_name, "tapio0");
    if (ioctl(fd, TUNSETIFF, &ifr) < 0)
        die("TUNSETIFF");
    strcpy(name, ifr.ifr_name);
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct ifreq up = {0};
    strcpy(up.ifr_name, name);
    up.ifr_flags = IFF_UP;
    if (ioctl(s, SIOCSIFFLAGS, &up) < 0)
        die("SIOCSIFFLAGS");
    close(s);
    return fd;
}

/* FRAMES frames out of the TAP (into the tun's queue), through a packet socket. */
static void queue_frames(int pkt, int ifindex)
{
    static char frame[FRAME_LEN];
    struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_ifindex = ifindex};
    memset(frame, 0x02, 12);
    frame[12] = 0x88, frame[13] = 0xb5;
    for (int i = 0; i < FRAMES; i++)
        if (sendto(pkt, frame, sizeof(frame), 0, (struct sockaddr *)&sll, sizeof(sll)) < 0)
            die("sendto");
}

static double read_plain(int fd)
{
    uint64_t t0 = now_ns();
    for (int i = 0; i < FRAMES; i++)
        if (read(fd, slots[i], SLOT) < VNET_HDR_LEN)
            die("read");
    return (double)(now_ns() - t0) / FRAMES;
}

/* Submit the BATCH prepared requests in one io_uring_enter, wait for them and consume
 * their completions; one returning less than `least` is an error. */
static void submit_batch(struct io_uring *ring, int least, const char *what)
{
    struct io_uring_cqe *cqe;
    unsigned head, n = 0;
    if (io_uring_submit_and_wait(ring, BATCH) < 0)
        die("io_uring_submit_and_wait");
    io_uring_for_each_cqe(ring, head, cqe) {
        if (cqe->res < least) {
            errno = cqe->res < 0 ? -cqe->res : EIO;
            die(what);
        }
        n++;
    }
    io_uring_cq_advance(ring, n);
}

static double read_uring(struct io_uring *ring, int fd)
{
    uint64_t t0 = now_ns();
    for (int done = 0; done < FRAMES; done += BATCH) {
        for (int i = 0; i < BATCH; i++)
            io_uring_prep_read(io_uring_get_sqe(ring), fd, slots[done + i], SLOT, 0);
        submit_batch(ring, VNET_HDR_LEN, "io_uring read");
    }
    return (double)(now_ns() - t0) / FRAMES;
}

static char header[VNET_HDR_LEN];
static char wire[FRAME_LEN];
static struct iovec iov[BATCH][2];

static double write_plain(int fd)
{
    struct iovec v[2] = {{header, VNET_HDR_LEN}, {wire, FRAME_LEN}};
    uint64_t t0 = now_ns();
    for (int i = 0; i < FRAMES; i++)
        if (writev(fd, v, 2) < 0)
            die("writev");
    return (double)(now_ns() - t0) / FRAMES;
}

static double write_uring(struct io_uring *ring, int fd)
{
    uint64_t t0 = now_ns();
    for (int done = 0; done < FRAMES; done += BATCH) {
        for (int i = 0; i < BATCH; i++)
            io_uring_prep_writev(io_uring_get_sqe(ring), fd, iov[i], 2, 0);
        submit_batch(ring, 0, "io_uring writev");
    }
    return (double)(now_ns() - t0) / FRAMES;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, n, sizeof(*v), by_value);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 100;
    char name[IFNAMSIZ];
    struct io_uring ring;
    if (rounds < 1 || rounds > 100000) {
        fprintf(stderr, "usage: tapio [rounds, 1-100000]\n");
        return 2;
    }
    if (unshare(CLONE_NEWNET) < 0)
        die("unshare(CLONE_NEWNET)");
    int fd = open_tap(name);
    int ifindex = (int)if_nametoindex(name);
    int pkt = socket(AF_PACKET, SOCK_RAW, 0);
    if (pkt < 0)
        die("packet socket");
    int one = 1;
    setsockopt(pkt, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one));
    if (io_uring_queue_init(2 * BATCH, &ring, 0) < 0)
        die("io_uring_queue_init");
    memset(wire, 0x02, 12);
    wire[12] = 0x88, wire[13] = 0xb5;
    for (int i = 0; i < BATCH; i++) {
        iov[i][0] = (struct iovec){header, VNET_HDR_LEN};
        iov[i][1] = (struct iovec){wire, FRAME_LEN};
    }
    double *rp = malloc(rounds * sizeof(double)), *ru = malloc(rounds * sizeof(double));
    double *wp = malloc(rounds * sizeof(double)), *wu = malloc(rounds * sizeof(double));
    for (int r = 0; r < rounds; r++) {
        int uring_first = r % 2;
        for (int k = 0; k < 2; k++) {
            queue_frames(pkt, ifindex);
            if (k == uring_first)
                ru[r] = read_uring(&ring, fd), wu[r] = write_uring(&ring, fd);
            else
                rp[r] = read_plain(fd), wp[r] = write_plain(fd);
        }
    }
    printf("{\"frames_per_round\": %d, \"rounds\": %d, \"batch\": %d, "
           "\"read_ns\": %.1f, \"read_uring_ns\": %.1f, "
           "\"writev_ns\": %.1f, \"writev_uring_ns\": %.1f}\n",
           FRAMES, rounds, BATCH, median(rp, rounds), median(ru, rounds),
           median(wp, rounds), median(wu, rounds));
    return 0;
}
