# Declarations of the kernel fast path's loader (vale/_bpf.pyx): every field of its one
# cdef class.

from libc.stdint cimport uint32_t
from vale.includes.libbpf cimport bpf_object


cdef class Datapath:
    cdef bpf_object *obj
    cdef int tc_fd                  # the tc program (vale_tc)
    cdef int upcall_fd              # the upcall device's program (vale_upcall)
    cdef int ports_fd, egress_fd, src_fd, dst_fd, stats_fd, passed_fd
    cdef int ncpus                  # possible CPUs: per-CPU values come in this many
    cdef readonly unsigned int macs # entries vale_src and vale_dst hold at most
    cdef readonly str pin_dir
    cdef readonly str object_path

    cdef int _program_fd(self, const char *name) except -1
    cdef int _map_fd(self, const char *name) except -1
    cdef int _check_open(self) except -1
    cdef str _pin(self, str kind, int ifindex)
    cdef int _tcx_live(self, int fd, int ifindex) except -1
    cdef int _attach_tcx(self, int ifindex, int prog_fd) except -1
    cdef int _detach_tcx(self, int ifindex) except -1
    cdef int _attach_clsact(self, int ifindex, int prog_fd) except -1
    cdef int _detach_clsact(self, int ifindex, bint remove_qdisc) except -1
    cdef int _set_egress(self, uint32_t port, uint32_t ifindex, uint32_t flags) except -1
    cdef int _update(self, int fd, str name, const void *key, const void *value,
                     object mac) except -1
    cdef Py_ssize_t _dump(self, int fd, str name, size_t value_size, char **keys_out,
                          char **values_out) except -1
    cdef Py_ssize_t _dump_slowly(self, int fd, str name, size_t value_size, char **keys,
                                 char **values, size_t room) except -1
