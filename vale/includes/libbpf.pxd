# libbpf (Debian's libbpf-dev, 1.1) and the kernel fast path's shared header, for the
# loader (vale/_bpf.pyx). Declared once, here. libbpf's own option structs start with
# their size (sz) and are zeroed before use, so fields not declared keep their defaults.

from libc.stdint cimport int32_t, uint8_t, uint16_t, uint32_t, uint64_t


cdef extern from "bpf/fastpath.h" nogil:
    enum:
        VALE_BPF_PORTS
        VALE_BPF_MACS
        VALE_BPF_SEEN_NS
        VALE_BPF_FRAME_SLACK
        VALE_BPF_PORT_RX
        VALE_BPF_PORT_TX
        VALE_BPF_DST_PEER
        VALE_BPF_DROPS
        VALE_BPF_PASSES
    struct vale_bpf_port:
        uint32_t port
        uint32_t flags
        uint32_t upcall
    struct vale_bpf_egress:
        uint32_t ifindex
        uint32_t flags
    struct vale_bpf_mac:
        uint8_t mac[6]
        uint16_t vlan
    struct vale_bpf_src:
        uint32_t port
        uint32_t pad
        uint64_t last_seen_ns
    struct vale_bpf_dst:
        uint32_t port
        uint32_t ifindex
        uint32_t mtu
        uint32_t flags
    struct vale_bpf_stats:
        uint64_t rx_packets
        uint64_t rx_bytes
        uint64_t tx_packets
        uint64_t tx_bytes
        uint64_t drops[VALE_BPF_DROPS]


cdef extern from "<bpf/libbpf.h>" nogil:
    struct bpf_object:
        pass
    struct bpf_map:
        pass
    struct bpf_program:
        pass

    struct bpf_object_open_opts:
        size_t sz
        const char *pin_root_path

    bpf_object *bpf_object__open_file(const char *path, const bpf_object_open_opts *opts)
    int bpf_object__load(bpf_object *obj)
    void bpf_object__close(bpf_object *obj)
    bpf_map *bpf_object__find_map_by_name(const bpf_object *obj, const char *name)
    bpf_program *bpf_object__find_program_by_name(const bpf_object *obj, const char *name)
    int bpf_map__fd(const bpf_map *map)
    uint32_t bpf_map__max_entries(const bpf_map *map)
    int bpf_map__set_max_entries(bpf_map *map, uint32_t max_entries)
    int bpf_program__fd(const bpf_program *prog)
    int libbpf_num_possible_cpus()

    enum bpf_tc_attach_point:
        BPF_TC_INGRESS
        BPF_TC_EGRESS
    enum:
        BPF_TC_F_REPLACE
    struct bpf_tc_hook:
        size_t sz
        int ifindex
        bpf_tc_attach_point attach_point
        uint32_t parent
    struct bpf_tc_opts:
        size_t sz
        int prog_fd
        uint32_t flags
        uint32_t prog_id
        uint32_t handle
        uint32_t priority
    int bpf_tc_hook_create(bpf_tc_hook *hook)
    int bpf_tc_hook_destroy(bpf_tc_hook *hook)
    int bpf_tc_attach(const bpf_tc_hook *hook, bpf_tc_opts *opts)
    int bpf_tc_detach(const bpf_tc_hook *hook, const bpf_tc_opts *opts)
    int bpf_tc_query(const bpf_tc_hook *hook, bpf_tc_opts *opts)


cdef extern from "<bpf/bpf.h>" nogil:
    enum:
        BPF_ANY
        BPF_NOEXIST
        BPF_EXIST
    int bpf_map_update_elem(int fd, const void *key, const void *value, uint64_t flags)
    int bpf_map_lookup_elem(int fd, const void *key, void *value)
    int bpf_map_delete_elem(int fd, const void *key)
    int bpf_map_get_next_key(int fd, const void *key, void *next_key)
    struct bpf_map_batch_opts:
        size_t sz
    int bpf_map_lookup_batch(int fd, void *in_batch, void *out_batch, void *keys,
                             void *values, uint32_t *count, const bpf_map_batch_opts *opts)
    int bpf_obj_pin(int fd, const char *pathname)
    int bpf_obj_get(const char *pathname)
    int bpf_obj_get_info_by_fd(int fd, void *info, uint32_t *info_len)
    struct bpf_link_create_opts:
        size_t sz
    int bpf_link_create(int prog_fd, int target_fd, int attach_type,
                        const bpf_link_create_opts *opts)
    int bpf_link_detach(int link_fd)
    int bpf_link_update(int link_fd, int new_prog_fd, const void *opts)
    struct bpf_test_run_opts:
        size_t sz
        const void *data_in
        uint32_t data_size_in
        const void *ctx_in
        uint32_t ctx_size_in
        uint32_t retval
        int repeat
    int bpf_prog_test_run_opts(int prog_fd, bpf_test_run_opts *opts)


cdef extern from "<linux/bpf.h>" nogil:
    # Only the fields a test run may set (the rest must be zero).
    struct __sk_buff:
        uint32_t ifindex
        uint32_t gso_segs
        uint32_t gso_size


# What Debian bookworm's headers (Linux 6.1 UAPI) lack: tcx came in Linux 6.6. The values
# are the kernel's (enum bpf_attach_type, enum bpf_link_type), which never change.
cdef extern from *:
    """
    #define VALE_BPF_TCX_INGRESS 46
    #define VALE_BPF_LINK_TYPE_TCX 11
    /* The head of struct bpf_link_info as Linux 6.6+ fills it for a tcx link: the union
       of link kinds starts at 16 (it holds 64-bit members). */
    struct vale_tcx_link_info {
        __u32 type, id, prog_id, pad;
        __u32 ifindex, attach_type;
    };
    """
    int VALE_BPF_TCX_INGRESS
    int VALE_BPF_LINK_TYPE_TCX
    struct vale_tcx_link_info:
        uint32_t type
        uint32_t id
        uint32_t prog_id
        uint32_t ifindex
        uint32_t attach_type


cdef extern from "<sys/vfs.h>" nogil:
    struct statfs:
        long f_type
    int c_statfs "statfs"(const char *path, statfs *buf)

cdef extern from "<sys/mount.h>" nogil:
    int mount(const char *source, const char *target, const char *fstype,
              unsigned long flags, const void *data)
