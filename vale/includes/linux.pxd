# Linux kernel interfaces the port back ends use: packet sockets and their rings
# (linux/if_packet.h), mmap, epoll, poll, eventfd, sendmmsg. Declared once, here.

from libc.stdint cimport uint16_t, uint32_t


cdef extern from "<errno.h>" nogil:
    int errno
    int EAGAIN, EWOULDBLOCK, ENOBUFS, EINTR, EMSGSIZE, ENXIO, ENETDOWN, ENODEV, EINVAL, EIO
    int ENOPROTOOPT
    int EBADFD

cdef extern from "<unistd.h>" nogil:
    int close(int fd)
    ssize_t read(int fd, void *buf, size_t count)
    ssize_t write(int fd, const void *buf, size_t count)
    int getpagesize()

cdef extern from "<sys/uio.h>" nogil:
    struct iovec:
        void *iov_base
        size_t iov_len
    ssize_t writev(int fd, const iovec *iov, int iovcnt)

cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    struct sockaddr:
        pass
    struct msghdr:
        void *msg_name
        socklen_t msg_namelen
        iovec *msg_iov
        size_t msg_iovlen
        void *msg_control
        size_t msg_controllen
        int msg_flags
    struct mmsghdr:
        msghdr msg_hdr
        unsigned int msg_len
    int AF_PACKET, SOCK_RAW, SOCK_NONBLOCK, SOCK_CLOEXEC, SOL_SOCKET
    int SO_SNDBUFFORCE, SO_RCVBUFFORCE, SO_ERROR, MSG_DONTWAIT
    int socket(int domain, int type, int protocol)
    int bind(int fd, const sockaddr *addr, socklen_t len)
    int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
    int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
    int sendmmsg(int fd, mmsghdr *msgvec, unsigned int vlen, int flags)
    ssize_t send(int fd, const void *buf, size_t len, int flags)

cdef extern from "<arpa/inet.h>" nogil:
    uint16_t htons(uint16_t x)

cdef extern from "<sys/mman.h>" nogil:
    int PROT_READ, PROT_WRITE, MAP_SHARED, MAP_PRIVATE, MAP_ANONYMOUS, MAP_NORESERVE
    int MAP_LOCKED, MAP_POPULATE
    void *MAP_FAILED
    void *mmap(void *addr, size_t length, int prot, int flags, int fd, long offset)
    int munmap(void *addr, size_t length)

cdef extern from "<sys/epoll.h>" nogil:
    union epoll_data_t "epoll_data":
        void *ptr
        int fd
        uint32_t u32
    struct epoll_event:
        uint32_t events
        epoll_data_t data
    int EPOLLIN, EPOLLET, EPOLLERR, EPOLLHUP, EPOLL_CTL_ADD, EPOLL_CTL_DEL, EPOLL_CLOEXEC
    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event *event)
    int epoll_wait(int epfd, epoll_event *events, int maxevents, int timeout)

cdef extern from "<poll.h>" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    int POLLIN, POLLERR, POLLHUP
    int poll(pollfd *fds, unsigned long nfds, int timeout)

cdef extern from "<sys/eventfd.h>" nogil:
    int EFD_NONBLOCK, EFD_CLOEXEC
    int eventfd(unsigned int initval, int flags)
    int eventfd_write(int fd, unsigned long long value)

cdef extern from "<sys/mman.h>" nogil:
    # memfd regions a peer maps (memif): sealed so they cannot shrink under it
    unsigned int MFD_CLOEXEC, MFD_ALLOW_SEALING
    int memfd_create(const char *name, unsigned int flags)

cdef extern from "<fcntl.h>" nogil:
    int F_ADD_SEALS, F_SEAL_SHRINK
    int fcntl(int fd, int cmd, ...)

cdef extern from "<unistd.h>" nogil:
    int ftruncate(int fd, long length)

cdef extern from "<sched.h>" nogil:
    int sched_yield()

cdef extern from "<sys/prctl.h>" nogil:
    int PR_SET_NAME
    int prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4,
              unsigned long arg5)

cdef extern from "<linux/if_ether.h>" nogil:
    int ETH_P_ALL

cdef extern from "<linux/if_packet.h>" nogil:
    struct sockaddr_ll:
        unsigned short sll_family
        unsigned short sll_protocol
        int sll_ifindex
        unsigned short sll_hatype
        unsigned char sll_pkttype
        unsigned char sll_halen
        unsigned char sll_addr[8]
    struct packet_mreq:
        int mr_ifindex
        unsigned short mr_type
        unsigned short mr_alen
        unsigned char mr_address[8]
    struct tpacket_req:
        unsigned int tp_block_size
        unsigned int tp_block_nr
        unsigned int tp_frame_size
        unsigned int tp_frame_nr
    struct tpacket2_hdr:
        uint32_t tp_status
        uint32_t tp_len
        uint32_t tp_snaplen
        uint16_t tp_mac
        uint16_t tp_net
        uint32_t tp_sec
        uint32_t tp_nsec
        uint16_t tp_vlan_tci
        uint16_t tp_vlan_tpid
    int SOL_PACKET, PACKET_ADD_MEMBERSHIP, PACKET_MR_PROMISC, PACKET_RX_RING, PACKET_VERSION
    int PACKET_VNET_HDR, PACKET_QDISC_BYPASS, PACKET_IGNORE_OUTGOING, PACKET_STATISTICS
    int PACKET_TX_RING, PACKET_LOSS
    int PACKET_HOST                     # sll_pkttype: addressed to the interface itself
    int TPACKET_V2, TPACKET_ALIGNMENT
    int TP_STATUS_KERNEL, TP_STATUS_USER, TP_STATUS_VLAN_VALID, TP_STATUS_VLAN_TPID_VALID
    int TP_STATUS_COPY, TP_STATUS_LOSING, TP_STATUS_CSUMNOTREADY
    int TP_STATUS_AVAILABLE, TP_STATUS_SEND_REQUEST, TP_STATUS_SENDING, TP_STATUS_WRONG_FORMAT
    struct tpacket_stats:
        unsigned int tp_packets
        unsigned int tp_drops

cdef extern from *:
    """
    #include <linux/if_packet.h>
    #define VALE_TPACKET2_HDRLEN (TPACKET_ALIGN(sizeof(struct tpacket2_hdr)) + sizeof(struct sockaddr_ll))
    static inline uint32_t vale_load_acquire(const volatile uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    static inline void vale_store_release(volatile uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
    """
    int VALE_TPACKET2_HDRLEN
    uint32_t vale_load_acquire(const uint32_t *p) nogil
    void vale_store_release(uint32_t *p, uint32_t v) nogil
