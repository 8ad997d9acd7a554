# cython: language_level=3
"""The kernel fast path's loader: vale/bpf/fastpath.bpf.o, through libbpf.

A Datapath is one switch's fast path: the two programs loaded once, the five maps pinned
under a directory of its own in bpffs (/sys/fs/bpf/vale/<switch>/ by default) and reused
from there by the next loader, and the attachments to the switch's interfaces and their
upcall devices: a tcx link, pinned beside the maps (tcx_<ifindex>), or a clsact filter,
marked by a pin of its program (clsact_<ifindex>). Both outlive the loader and the process, so known unicast
keeps flowing while valed restarts; detach() and remove() take them away.

This is a module of its own, not part of vale._fastpath: it is the only one linked with
libbpf, so a host without libbpf (or a kernel that refuses BPF) loses the fast path and
keeps the switch. Every failure is an OSError naming the step, with libbpf's last words
(a verifier's refusal ends with its reason), for the switch to log before it goes on
through its packet sockets.
"""

import os
import time

from libc.errno cimport EEXIST, EINVAL, ENODEV, ENOENT, EOPNOTSUPP, errno
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, memset

from vale.includes.libbpf cimport *
from vale.includes.linux cimport close

# libbpf reports through a print callback; keep the tail of what it said at WARN and
# INFO (a refused program's verifier log among it) for the next error message, instead
# of letting it go to stderr.
cdef extern from *:
    """
    #include <stdarg.h>
    #include <stdio.h>
    #include <stdlib.h>
    #include <string.h>
    #define VALE_BPF_LOG_SIZE 4096
    static char vale_bpf_log_buf[VALE_BPF_LOG_SIZE];
    static size_t vale_bpf_log_len;

    static void vale_bpf_log_append(const char *s, size_t n)
    {
        /* Keep the newest bytes: a verifier's reason comes last. */
        if (n > VALE_BPF_LOG_SIZE) {
            s += n - VALE_BPF_LOG_SIZE;
            n = VALE_BPF_LOG_SIZE;
        }
        if (vale_bpf_log_len + n > VALE_BPF_LOG_SIZE) {
            size_t keep = VALE_BPF_LOG_SIZE - n;
            if (keep > vale_bpf_log_len)
                keep = vale_bpf_log_len;
            memmove(vale_bpf_log_buf, vale_bpf_log_buf + vale_bpf_log_len - keep, keep);
            vale_bpf_log_len = keep;
        }
        memcpy(vale_bpf_log_buf + vale_bpf_log_len, s, n);
        vale_bpf_log_len += n;
    }

    static int vale_bpf_log_print(enum libbpf_print_level level, const char *fmt, va_list ap)
    {
        va_list again;
        char *s;
        int n;

        if (level == LIBBPF_DEBUG)
            return 0;
        /* A whole message, however long (a verifier log comes as one). */
        va_copy(again, ap);
        n = vsnprintf(NULL, 0, fmt, again);
        va_end(again);
        if (n <= 0 || !(s = malloc(n + 1)))
            return 0;
        vsnprintf(s, n + 1, fmt, ap);
        vale_bpf_log_append(s, n);
        free(s);
        return 0;
    }

    static void vale_bpf_log_start(void)
    {
        vale_bpf_log_len = 0;
        libbpf_set_print(vale_bpf_log_print);
    }
    """
    char *vale_bpf_log_buf
    size_t vale_bpf_log_len
    void vale_bpf_log_start()


# The counters' names, in the order of fastpath.h's enums: the one list the switch, the
# API and the metrics read.
DROP_REASONS = ("own_port", "mtu")
PASS_REASONS = ("port", "runt", "vlan", "group", "host", "src_unknown", "src_moved",
                "dst_unknown", "dst_port", "gso")
if len(DROP_REASONS) != VALE_BPF_DROPS or len(PASS_REASONS) != VALE_BPF_PASSES:
    raise ImportError("_bpf's reason names and fastpath.h's enums differ")

MAX_PORTS = VALE_BPF_PORTS
DEFAULT_MACS = VALE_BPF_MACS
MAX_MACS = 1 << 24                  # the switch's largest MAC table
SEEN_NS = VALE_BPF_SEEN_NS
FRAME_SLACK = VALE_BPF_FRAME_SLACK
PORT_RX = VALE_BPF_PORT_RX
PORT_TX = VALE_BPF_PORT_TX
DST_PEER = VALE_BPF_DST_PEER
MODES = ("tcx", "clsact")
BPFFS = "/sys/fs/bpf"
PIN_ROOT = BPFFS + "/vale"
OBJECT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bpf", "fastpath.bpf.o")
MAPS = ("vale_ports", "vale_egress", "vale_src", "vale_dst", "vale_stats", "vale_passed")

cdef enum:
    BPF_FS_MAGIC = 0xCAFE4A11
    # The clsact filter's handle and priority: what finds it again to replace or remove.
    TC_HANDLE = 0x56414C45          # "VALE"
    TC_PRIORITY = 1
    ENOTSUPP = 524                  # the kernel's own "not supported" (no libc name)
    DUMP_ROOM = 256                 # the least room a batched read is given

# The verdicts a test run of the tc program returns (linux/pkt_cls.h).
VERDICTS = {0xFFFFFFFF: "pass", 0: "ok", 2: "drop", 7: "redirect"}


def pin_dir(str switch):
    """Where a switch's maps and links are pinned."""
    return f"{PIN_ROOT}/{switch}"


cdef str libbpf_said():
    """The last lines libbpf logged since the current step began, or ''. A refused
    program's end with the verifier's reason, then its count of instructions and libbpf's
    own lines."""
    cdef bytes raw = vale_bpf_log_buf[:vale_bpf_log_len]
    lines = [line.strip() for line in raw.decode("utf-8", "replace").splitlines()
             if line.strip() and not line.startswith("-- END")]
    return " / ".join(lines[max(0, len(lines) - 6):])


cdef int fail(int code, str step) except -1:
    """Raise the OSError for a failed step; code is a (positive) errno value."""
    if code <= 0:
        code = EINVAL
    message = f"{step}: {os.strerror(code) if code != ENOTSUPP else 'Not supported'}"
    said = libbpf_said()
    if said:
        message += f" [libbpf: {said}]"
    raise OSError(code, message)


def ensure_bpffs(str path=BPFFS):
    """Mount bpffs on path (mode 0700) unless one is there already."""
    cdef statfs st
    encoded = os.fsencode(path)
    if c_statfs(encoded, &st) == 0 and <unsigned long>st.f_type == BPF_FS_MAGIC:
        return
    if mount(b"bpf", encoded, b"bpf", 0, b"mode=0700") != 0:
        fail(errno, f"mounting bpffs on {path}")


cdef int on_bpffs(str path) except -1:
    """Whether path (existing) is on a bpf filesystem."""
    cdef statfs st
    if c_statfs(os.fsencode(path), &st) != 0:
        fail(errno, f"looking at {path}")
    return <unsigned long>st.f_type == BPF_FS_MAGIC


cdef int make_key(object key, vale_bpf_mac *k) except -1:
    """A MAC table key as the switch has it (the MAC's byte 0 in the low bits, the VLAN
    from bit 48) into the maps' key."""
    if not isinstance(key, int) or isinstance(key, bool) or not 0 <= key < (1 << 60):
        raise ValueError(f"not a MAC table key: {key!r}")
    cdef uint64_t v = key
    for i in range(6):
        k.mac[i] = (v >> (8 * i)) & 0xFF
    k.vlan = v >> 48
    return 0


cdef uint64_t key_of(const vale_bpf_mac *k) noexcept:
    cdef uint64_t v = <uint64_t>k.vlan << 48
    for i in range(6):
        v |= <uint64_t>k.mac[i] << (8 * i)
    return v


cdef int check_u32(str what, object value) except -1:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{what} must be an integer from 0 to 2**32-1, not {value!r}")
    return 0


cdef int check_port(object port) except -1:
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port < VALE_BPF_PORTS:
        raise ValueError(f"port must be an index from 0 to {VALE_BPF_PORTS - 1}, not {port!r}")
    return 0


cdef void tc_hook(bpf_tc_hook *hook, int ifindex) noexcept:
    """Interface ifindex's tc ingress, for libbpf's tc calls."""
    memset(hook, 0, sizeof(hook[0]))
    hook.sz = sizeof(hook[0])
    hook.ifindex = ifindex
    hook.attach_point = BPF_TC_INGRESS


cdef void tc_opts(bpf_tc_opts *opts) noexcept:
    """vale's clsact filter: its handle and priority find it again."""
    memset(opts, 0, sizeof(opts[0]))
    opts.sz = sizeof(opts[0])
    opts.handle = TC_HANDLE
    opts.priority = TC_PRIORITY


def remove_stale(str pin_dir):
    """Take away a fast path pinned in pin_dir by a valed whose maps have another layout
    (Datapath refuses to reuse them): detach the tcx links and clsact filters its pins
    record, without loading anything, then remove the pins and the directory. Returns the
    ifindexes it was attached to."""
    cdef bpf_tc_hook hook
    cdef bpf_tc_opts opts
    cdef int fd
    found = []
    for name in os.listdir(pin_dir):
        path = os.path.join(pin_dir, name)
        kind, _, index = name.partition("_")
        if kind == "tcx" and index.isdigit():
            fd = bpf_obj_get(os.fsencode(path))
            if fd >= 0:
                bpf_link_detach(fd)
                close(fd)
            found.append(int(index))
        elif kind == "clsact" and index.isdigit():
            tc_hook(&hook, int(index))
            tc_opts(&opts)
            bpf_tc_detach(&hook, &opts)
            found.append(int(index))
        os.unlink(path)
    os.rmdir(pin_dir)
    return found


cdef class Datapath:
    """One switch's fast path: load once, attach to its interface ports, keep the maps in
    step with its MAC table. See fastpath.h for what each map holds."""

    def __cinit__(self):
        self.obj = NULL
        self.tc_fd = self.upcall_fd = -1
        self.ports_fd = self.egress_fd = self.src_fd = self.dst_fd = self.stats_fd = -1
        self.passed_fd = -1

    def __init__(self, str pin_dir, *, macs=VALE_BPF_MACS, str object_path=None):
        """Load the programs; create the maps pinned in pin_dir, or reuse those pinned
        there (entries, counters and all). macs is the most entries vale_src and vale_dst
        hold; pinned maps of another size (or layout) are refused: remove() them first."""
        cdef bpf_object_open_opts opts
        cdef bpf_map *m
        cdef int rc
        if not isinstance(macs, int) or isinstance(macs, bool) or not 1 <= macs <= MAX_MACS:
            raise ValueError(f"macs must be from 1 to {MAX_MACS}, not {macs!r}")
        self.macs = macs
        self.pin_dir = os.path.abspath(pin_dir)
        self.object_path = object_path or OBJECT
        if not os.path.exists(self.object_path):
            raise OSError(ENOENT, f"no BPF object {self.object_path} (built with "
                                  f"`setup.py build_ext`)")
        if self.pin_dir == BPFFS or self.pin_dir.startswith(BPFFS + "/"):
            ensure_bpffs()
        os.makedirs(self.pin_dir, mode=0o700, exist_ok=True)
        if not on_bpffs(self.pin_dir):
            raise OSError(EINVAL, f"{self.pin_dir} is not on a bpf filesystem")

        vale_bpf_log_start()
        memset(&opts, 0, sizeof(opts))
        opts.sz = sizeof(opts)
        encoded_pins = os.fsencode(self.pin_dir)
        opts.pin_root_path = encoded_pins
        self.obj = bpf_object__open_file(os.fsencode(self.object_path), &opts)
        if self.obj == NULL:
            fail(errno, f"opening {self.object_path}")
        for name in (b"vale_src", b"vale_dst"):
            m = bpf_object__find_map_by_name(self.obj, name)
            if m == NULL or bpf_map__set_max_entries(m, macs) != 0:
                fail(ENOENT, f"sizing map {name.decode()} of {self.object_path}")
        rc = bpf_object__load(self.obj)
        if rc != 0:
            fail(-rc, f"loading {self.object_path} (maps pinned in {self.pin_dir})")
        self.tc_fd = self._program_fd(b"vale_tc")
        self.upcall_fd = self._program_fd(b"vale_upcall")
        self.ports_fd = self._map_fd(b"vale_ports")
        self.egress_fd = self._map_fd(b"vale_egress")
        self.src_fd = self._map_fd(b"vale_src")
        self.dst_fd = self._map_fd(b"vale_dst")
        self.stats_fd = self._map_fd(b"vale_stats")
        self.passed_fd = self._map_fd(b"vale_passed")
        self.ncpus = libbpf_num_possible_cpus()
        if self.ncpus <= 0:
            fail(-self.ncpus, "counting possible CPUs")

    cdef int _program_fd(self, const char *name) except -1:
        cdef bpf_program *p = bpf_object__find_program_by_name(self.obj, name)
        if p == NULL or bpf_program__fd(p) < 0:
            fail(ENOENT, f"finding program {name.decode()} in {self.object_path}")
        return bpf_program__fd(p)

    cdef int _map_fd(self, const char *name) except -1:
        cdef bpf_map *m = bpf_object__find_map_by_name(self.obj, name)
        if m == NULL or bpf_map__fd(m) < 0:
            fail(ENOENT, f"finding map {name.decode()} in {self.object_path}")
        return bpf_map__fd(m)

    cdef int _check_open(self) except -1:
        if self.obj == NULL:
            raise ValueError("the fast path is closed")
        return 0

    def close(self):
        """Let go of the programs and maps. What is pinned or attached stays: the next
        loader finds it."""
        if self.obj != NULL:
            bpf_object__close(self.obj)
            self.obj = NULL
        self.tc_fd = self.upcall_fd = -1
        self.ports_fd = self.egress_fd = self.src_fd = self.dst_fd = self.stats_fd = -1
        self.passed_fd = -1

    def __dealloc__(self):
        if self.obj != NULL:
            bpf_object__close(self.obj)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- attaching to interfaces ------------------------------------------------------

    def attach(self, int ifindex, str mode="auto", *, bint upcall=False):
        """Attach the tc program (upcall: the upcall devices' program, which drops what
        vale's socket has seen) to interface ifindex's ingress (in the calling thread's
        namespace): "tcx" (Linux 6.6+), a link pinned so it outlives the process, or
        "clsact", a direct-action filter in a clsact qdisc (made if missing); "auto",
        tcx where the kernel has it, else clsact. An attachment there already, this
        loader's or an earlier one's, is moved onto this loader's program; one the other
        way is removed after the new one is in place, so no frame meets neither. Frames
        take the fast path only once the port has its vale_ports entry (set_port).
        Returns the mode used."""
        cdef int prog_fd = self.upcall_fd if upcall else self.tc_fd
        self._check_open()
        if mode not in MODES and mode != "auto":
            raise ValueError(f"mode must be auto, {' or '.join(MODES)}, not {mode!r}")
        vale_bpf_log_start()
        if mode != "clsact":
            try:
                self._attach_tcx(ifindex, prog_fd)
            except OSError as exc:
                # What a kernel without tcx answers to its attach type.
                if mode == "tcx" or exc.errno not in (EINVAL, EOPNOTSUPP, ENOTSUPP):
                    raise
            else:
                self._detach_clsact(ifindex, False)
                return "tcx"
        self._attach_clsact(ifindex, prog_fd)
        self._detach_tcx(ifindex)
        return "clsact"

    cdef str _pin(self, str kind, int ifindex):
        return f"{self.pin_dir}/{kind}_{ifindex}"

    cdef int _tcx_live(self, int fd, int ifindex) except -1:
        """Whether link fd is a tcx ingress link still attached to ifindex (a link whose
        interface was deleted is defunct: interface 0)."""
        cdef vale_tcx_link_info info
        cdef uint32_t size = sizeof(info)
        memset(&info, 0, sizeof(info))
        if bpf_obj_get_info_by_fd(fd, &info, &size) != 0:
            fail(errno, f"reading link {self._pin('tcx', ifindex)}")
        return (info.type == VALE_BPF_LINK_TYPE_TCX and info.ifindex == <uint32_t>ifindex
                and info.attach_type == <uint32_t>VALE_BPF_TCX_INGRESS)

    cdef int _attach_tcx(self, int ifindex, int prog_fd) except -1:
        cdef int fd, rc
        path = self._pin("tcx", ifindex)
        fd = bpf_obj_get(os.fsencode(path))
        if fd >= 0:
            try:
                if self._tcx_live(fd, ifindex):
                    rc = bpf_link_update(fd, prog_fd, NULL)
                    if rc != 0:
                        fail(-rc, f"moving the tcx link of interface {ifindex} to the "
                                  f"new program")
                    return 0
            finally:
                close(fd)
            os.unlink(path)             # defunct: its interface went
        # libbpf 1.1 knows no tcx; its plain bpf_link_create passes the attach type
        # through, and with no options the link goes last among the interface's tcx
        # programs (no relative program, any revision).
        with nogil:                     # a grace period: other threads go on meanwhile
            fd = bpf_link_create(prog_fd, ifindex, VALE_BPF_TCX_INGRESS, NULL)
        if fd < 0:
            hint = " (Linux before 6.6 has no tcx: use clsact)" if fd == -EINVAL else ""
            fail(-fd, f"attaching to interface {ifindex} with tcx{hint}")
        rc = bpf_obj_pin(fd, os.fsencode(path))
        close(fd)                       # unpinned, the link goes with its last fd
        if rc != 0:
            fail(-rc, f"pinning the tcx link of interface {ifindex} at {path}")
        return 0

    cdef int _detach_tcx(self, int ifindex) except -1:
        """Remove interface ifindex's tcx link; whether there was one."""
        cdef int fd
        path = self._pin("tcx", ifindex)
        fd = bpf_obj_get(os.fsencode(path))
        if fd < 0:
            if fd == -ENOENT:
                return False
            fail(-fd, f"opening link {path}")
        # Detached at once, even if another process holds the link open; a defunct one
        # refuses, and goes with its pin.
        bpf_link_detach(fd)
        close(fd)
        os.unlink(path)
        return True

    cdef int _attach_clsact(self, int ifindex, int prog_fd) except -1:
        cdef bpf_tc_hook hook
        cdef bpf_tc_opts opts
        cdef int rc
        tc_hook(&hook, ifindex)
        rc = bpf_tc_hook_create(&hook)
        if rc != 0 and rc != -EEXIST:
            fail(-rc, f"adding a clsact qdisc to interface {ifindex}")
        tc_opts(&opts)
        opts.prog_fd = prog_fd
        opts.flags = BPF_TC_F_REPLACE
        rc = bpf_tc_attach(&hook, &opts)
        if rc != 0:
            fail(-rc, f"adding the clsact filter to interface {ifindex}")
        # The filter lives on in the qdisc by itself; a pin of its program marks it for
        # the next loader (attachments(), remove()).
        path = self._pin("clsact", ifindex)
        if os.path.exists(path):
            os.unlink(path)
        rc = bpf_obj_pin(prog_fd, os.fsencode(path))
        if rc != 0:
            fail(-rc, f"pinning the clsact mark of interface {ifindex} at {path}")
        return 0

    cdef int _detach_clsact(self, int ifindex, bint remove_qdisc) except -1:
        """Remove interface ifindex's clsact filter (and the qdisc, when asked: it may
        hold others' filters); whether there was one."""
        cdef bpf_tc_hook hook
        cdef bpf_tc_opts opts
        cdef int rc
        cdef bint removed
        tc_hook(&hook, ifindex)
        tc_opts(&opts)
        rc = bpf_tc_detach(&hook, &opts)
        # No filter, no qdisc, no interface: nothing to remove.
        if rc != 0 and rc not in (-ENOENT, -EINVAL, -ENODEV):
            fail(-rc, f"removing the clsact filter of interface {ifindex}")
        removed = rc == 0
        path = self._pin("clsact", ifindex)
        if os.path.exists(path):
            os.unlink(path)
        if remove_qdisc:
            hook.attach_point = <bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS)
            rc = bpf_tc_hook_destroy(&hook)
            if rc != 0 and rc not in (-ENOENT, -EINVAL, -ENODEV):
                fail(-rc, f"removing the clsact qdisc of interface {ifindex}")
        return removed

    def detach(self, int ifindex, *, bint remove_qdisc=False):
        """Take interface ifindex off the fast path: its vale_ports entry first (nothing
        is redirected to it or from it then), then the tcx link or clsact filter, and
        with remove_qdisc the clsact qdisc too (only if vale made it: others' filters go
        with it). Whether anything was attached."""
        self._check_open()
        vale_bpf_log_start()
        self.delete_port(ifindex)
        tcx = self._detach_tcx(ifindex)
        clsact = self._detach_clsact(ifindex, remove_qdisc)
        return bool(tcx or clsact)

    def attached(self, int ifindex):
        """"tcx" or "clsact" when the tc program is attached to interface ifindex, else
        None."""
        cdef bpf_tc_hook hook
        cdef bpf_tc_opts opts
        cdef int fd
        self._check_open()
        fd = bpf_obj_get(os.fsencode(self._pin("tcx", ifindex)))
        if fd >= 0:
            try:
                if self._tcx_live(fd, ifindex):
                    return "tcx"
            finally:
                close(fd)
        tc_hook(&hook, ifindex)
        tc_opts(&opts)
        if bpf_tc_query(&hook, &opts) == 0:
            return "clsact"
        return None

    def attachments(self):
        """Every attachment the pins record, {ifindex: "tcx" | "clsact" | "gone"}; "gone"
        when its interface went (or the filter was removed by hand): detach() cleans up.
        For reconciling with the switch's ports at start."""
        self._check_open()
        found = {}
        for name in os.listdir(self.pin_dir):
            kind, _, index = name.partition("_")
            if kind in MODES and index.isdigit():
                ifindex = int(index)
                state = self.attached(ifindex)
                found[ifindex] = state if state == kind else "gone"
        return found

    def remove(self):
        """Take everything away: every attachment the pins or vale_ports know, the maps
        and their pins, the directory. Then the loader is closed."""
        self._check_open()
        for ifindex in set(self.attachments()) | set(self.ports()):
            self.detach(ifindex)
        self.close()
        for name in MAPS:
            path = os.path.join(self.pin_dir, name)
            if os.path.exists(path):
                os.unlink(path)
        os.rmdir(self.pin_dir)

    # ---- the maps -----------------------------------------------------------------------

    @property
    def sources_fd(self):
        """vale_src's fd: the switch's core removes a moved MAC's entry there at once."""
        self._check_open()
        return self.src_fd

    def set_port(self, ifindex, port, flags=VALE_BPF_PORT_RX | VALE_BPF_PORT_TX, upcall=0):
        """Interface ifindex is port index `port`; flags PORT_RX (its frames may take the
        fast path), PORT_TX (frames may be redirected to it); upcall, the ifindex of the
        device its other frames go up to (0: they go on as if there were no program). A
        port index given anew should have its counters cleared (clear_stats)."""
        cdef uint32_t key
        cdef vale_bpf_port value, old
        cdef vale_bpf_egress out
        cdef int rc
        self._check_open()
        check_u32("ifindex", ifindex)
        check_port(port)
        check_u32("flags", flags)
        check_u32("upcall", upcall)
        key = ifindex
        # An interface given another port index: nothing goes to it by the old one.
        if (bpf_map_lookup_elem(self.ports_fd, &key, &old) == 0 and old.port != port
                and bpf_map_lookup_elem(self.egress_fd, &old.port, &out) == 0
                and out.ifindex == key):
            self._set_egress(old.port, 0, 0)
        value.port = port
        value.flags = flags
        value.upcall = upcall
        rc = bpf_map_update_elem(self.ports_fd, &key, &value, BPF_ANY)
        if rc != 0:
            fail(-rc, f"setting vale_ports[{ifindex}]")
        self._set_egress(port, ifindex, flags)

    cdef int _set_egress(self, uint32_t port, uint32_t ifindex, uint32_t flags) except -1:
        cdef vale_bpf_egress value
        cdef int rc
        value.ifindex = ifindex
        value.flags = flags
        rc = bpf_map_update_elem(self.egress_fd, &port, &value, BPF_ANY)
        if rc != 0:
            fail(-rc, f"setting vale_egress[{port}]")
        return 0

    def port(self, ifindex):
        """(port, flags, upcall) of interface ifindex, or None."""
        cdef uint32_t key
        cdef vale_bpf_port value
        self._check_open()
        check_u32("ifindex", ifindex)
        key = ifindex
        if bpf_map_lookup_elem(self.ports_fd, &key, &value) != 0:
            return None
        return (value.port, value.flags, value.upcall)

    def delete_port(self, ifindex):
        """Forget interface ifindex's entry (its frames and frames to it go up); whether
        there was one."""
        cdef uint32_t key
        cdef vale_bpf_port value
        cdef vale_bpf_egress out
        self._check_open()
        check_u32("ifindex", ifindex)
        key = ifindex
        if bpf_map_lookup_elem(self.ports_fd, &key, &value) != 0:
            return False
        # Its egress first: no frame is redirected to it from here on.
        if (bpf_map_lookup_elem(self.egress_fd, &value.port, &out) == 0
                and out.ifindex == key):
            self._set_egress(value.port, 0, 0)
        return bpf_map_delete_elem(self.ports_fd, &key) == 0

    def ports(self):
        """{ifindex: (port, flags, upcall)} of every entry of vale_ports."""
        cdef uint32_t key, next_key
        cdef vale_bpf_port value
        cdef int rc
        self._check_open()
        found = {}
        rc = bpf_map_get_next_key(self.ports_fd, NULL, &next_key)
        while rc == 0 and len(found) < VALE_BPF_PORTS:
            key = next_key
            if bpf_map_lookup_elem(self.ports_fd, &key, &value) == 0:
                found[key] = (value.port, value.flags, value.upcall)
            rc = bpf_map_get_next_key(self.ports_fd, &key, &next_key)
        return found

    cdef int _update(self, int fd, str name, const void *key, const void *value,
                     object mac) except -1:
        cdef int rc = bpf_map_update_elem(fd, key, value, BPF_ANY)
        if rc == -7:                     # E2BIG: the map is full
            raise OSError(7, f"{name} is full ({self.macs} entries): "
                             f"{mac:#x} stays on the slow path")
        if rc != 0:
            fail(-rc, f"setting {name}[{mac:#x}]")
        return 0

    def set_src(self, key, port, last_seen_ns=None):
        """Source MAC table key `key` is known on port index `port`; last seen at
        last_seen_ns (CLOCK_MONOTONIC, time.monotonic_ns()), by default now. Raises
        OSError(E2BIG) when vale_src is full."""
        cdef vale_bpf_mac k
        cdef vale_bpf_src value
        self._check_open()
        make_key(key, &k)
        check_port(port)
        value.port = port
        value.pad = 0
        value.last_seen_ns = time.monotonic_ns() if last_seen_ns is None else last_seen_ns
        self._update(self.src_fd, "vale_src", &k, &value, key)

    def src(self, key):
        """(port, last_seen_ns) of source key, or None."""
        cdef vale_bpf_mac k
        cdef vale_bpf_src value
        self._check_open()
        make_key(key, &k)
        if bpf_map_lookup_elem(self.src_fd, &k, &value) != 0:
            return None
        return (value.port, value.last_seen_ns)

    def delete_src(self, key):
        cdef vale_bpf_mac k
        self._check_open()
        make_key(key, &k)
        return bpf_map_delete_elem(self.src_fd, &k) == 0

    def sources(self):
        """{key: (port, last_seen_ns)} of every entry of vale_src, read in batches: what
        the ageing reads."""
        cdef char *keys = NULL
        cdef char *values = NULL
        cdef const vale_bpf_src *v
        cdef Py_ssize_t n, i
        self._check_open()
        n = self._dump(self.src_fd, "vale_src", sizeof(vale_bpf_src), &keys, &values)
        try:
            found = {}
            for i in range(n):
                v = <const vale_bpf_src *>(values + i * sizeof(vale_bpf_src))
                found[key_of(<const vale_bpf_mac *>(keys + i * sizeof(vale_bpf_mac)))] = (
                    v.port, v.last_seen_ns)
            return found
        finally:
            free(keys)
            free(values)

    def set_dst(self, key, port, ifindex, mtu, flags=0):
        """Frames to MAC table key `key` go to port index `port`, interface ifindex (in
        vale_ports with that port), if no longer than mtu + FRAME_SLACK; flags DST_PEER
        (redirect into ifindex's veth peer, in another namespace). Raises OSError(E2BIG)
        when vale_dst is full."""
        cdef vale_bpf_mac k
        cdef vale_bpf_dst value
        self._check_open()
        make_key(key, &k)
        check_port(port)
        check_u32("ifindex", ifindex)
        check_u32("mtu", mtu)
        check_u32("flags", flags)
        value.port = port
        value.ifindex = ifindex
        value.mtu = mtu
        value.flags = flags
        self._update(self.dst_fd, "vale_dst", &k, &value, key)

    def dst(self, key):
        """(port, ifindex, mtu, flags) of destination key, or None."""
        cdef vale_bpf_mac k
        cdef vale_bpf_dst value
        self._check_open()
        make_key(key, &k)
        if bpf_map_lookup_elem(self.dst_fd, &k, &value) != 0:
            return None
        return (value.port, value.ifindex, value.mtu, value.flags)

    def delete_dst(self, key):
        cdef vale_bpf_mac k
        self._check_open()
        make_key(key, &k)
        return bpf_map_delete_elem(self.dst_fd, &k) == 0

    def destinations(self):
        """{key: (port, ifindex, mtu, flags)} of every entry of vale_dst."""
        cdef char *keys = NULL
        cdef char *values = NULL
        cdef const vale_bpf_dst *v
        cdef Py_ssize_t n, i
        self._check_open()
        n = self._dump(self.dst_fd, "vale_dst", sizeof(vale_bpf_dst), &keys, &values)
        try:
            found = {}
            for i in range(n):
                v = <const vale_bpf_dst *>(values + i * sizeof(vale_bpf_dst))
                found[key_of(<const vale_bpf_mac *>(keys + i * sizeof(vale_bpf_mac)))] = (
                    v.port, v.ifindex, v.mtu, v.flags)
            return found
        finally:
            free(keys)
            free(values)

    def forget_port(self, port):
        """Remove every source and destination entry on port index `port` (removed,
        down, its MACs flushed); how many went."""
        cdef vale_bpf_mac k
        self._check_open()
        check_port(port)
        removed = 0
        for fd, entries in ((self.src_fd, self.sources()), (self.dst_fd, self.destinations())):
            for key, value in entries.items():
                if value[0] == port:
                    make_key(key, &k)
                    removed += bpf_map_delete_elem(fd, &k) == 0
        return removed

    def clear_macs(self):
        """Remove every source and destination entry; how many went."""
        cdef vale_bpf_mac k
        self._check_open()
        removed = 0
        for fd, entries in ((self.src_fd, self.sources()), (self.dst_fd, self.destinations())):
            for key in entries:
                make_key(key, &k)
                removed += bpf_map_delete_elem(fd, &k) == 0
        return removed

    cdef Py_ssize_t _dump(self, int fd, str name, size_t value_size, char **keys_out,
                          char **values_out) except -1:
        """Every entry of hash map fd into two malloc'd arrays (the caller frees them),
        read in batches; their count. Kernels before 5.6 read one entry at a time."""
        cdef size_t room = 1024, n = 0
        cdef uint32_t count, token_in = 0, token_out = 0
        cdef char *keys = <char *>malloc(room * sizeof(vale_bpf_mac))
        cdef char *values = <char *>malloc(room * value_size)
        cdef void *grown
        cdef int rc
        cdef bint first = True
        try:
            if keys == NULL or values == NULL:
                raise MemoryError()
            while True:
                if room - n < DUMP_ROOM:
                    grown = realloc(keys, 2 * room * sizeof(vale_bpf_mac))
                    if grown == NULL:
                        raise MemoryError()
                    keys = <char *>grown
                    grown = realloc(values, 2 * room * value_size)
                    if grown == NULL:
                        raise MemoryError()
                    values = <char *>grown
                    room *= 2
                count = room - n
                rc = bpf_map_lookup_batch(fd, NULL if first else &token_in, &token_out,
                                          keys + n * sizeof(vale_bpf_mac),
                                          values + n * value_size, &count, NULL)
                if rc == 0 or rc == -ENOENT:
                    n += count
                    if rc == -ENOENT:
                        break
                    token_in = token_out
                    first = False
                elif first and rc in (-EINVAL, -ENOTSUPP, -EOPNOTSUPP):
                    n = self._dump_slowly(fd, name, value_size, &keys, &values, room)
                    break
                else:
                    fail(-rc, f"reading {name}")
            keys_out[0] = keys
            values_out[0] = values
            keys = values = NULL
            return n
        finally:
            free(keys)
            free(values)

    cdef Py_ssize_t _dump_slowly(self, int fd, str name, size_t value_size, char **keys,
                                 char **values, size_t room) except -1:
        """_dump without batches: key by key, at most `room` entries."""
        cdef vale_bpf_mac key, next_key
        cdef size_t n = 0
        cdef int rc = bpf_map_get_next_key(fd, NULL, &next_key)
        while rc == 0 and n < room:
            key = next_key
            if bpf_map_lookup_elem(fd, &key, values[0] + n * value_size) == 0:
                memcpy(keys[0] + n * sizeof(vale_bpf_mac), &key, sizeof(key))
                n += 1
            rc = bpf_map_get_next_key(fd, &key, &next_key)
        if rc != 0 and rc != -ENOENT:
            fail(-rc, f"reading {name}")
        return n

    # ---- counters -----------------------------------------------------------------------

    def port_stats(self, port):
        """The port's counters summed over the CPUs: rx_packets, rx_bytes, tx_packets,
        tx_bytes (packets as wire frames), and drops {reason: frames}."""
        cdef uint32_t key
        cdef size_t stride = (sizeof(vale_bpf_stats) + 7) & ~7
        cdef char *buf
        cdef const vale_bpf_stats *s
        cdef uint64_t rx_p = 0, rx_b = 0, tx_p = 0, tx_b = 0
        cdef uint64_t drops[VALE_BPF_DROPS]
        cdef int rc, cpu, r
        self._check_open()
        check_port(port)
        key = port
        memset(drops, 0, sizeof(drops))
        buf = <char *>malloc(stride * self.ncpus)
        if buf == NULL:
            raise MemoryError()
        try:
            rc = bpf_map_lookup_elem(self.stats_fd, &key, buf)
            if rc != 0:
                fail(-rc, f"reading vale_stats[{port}]")
            for cpu in range(self.ncpus):
                s = <const vale_bpf_stats *>(buf + cpu * stride)
                rx_p += s.rx_packets
                rx_b += s.rx_bytes
                tx_p += s.tx_packets
                tx_b += s.tx_bytes
                for r in range(VALE_BPF_DROPS):
                    drops[r] += s.drops[r]
        finally:
            free(buf)
        return {"rx_packets": rx_p, "rx_bytes": rx_b, "tx_packets": tx_p, "tx_bytes": tx_b,
                "drops": {DROP_REASONS[r]: drops[r] for r in range(VALE_BPF_DROPS)}}

    def stats(self):
        """{port: port_stats(port)} of every port index with a count."""
        found = {}
        for port in range(VALE_BPF_PORTS):
            s = self.port_stats(port)
            if s["rx_packets"] or s["tx_packets"] or any(s["drops"].values()):
                found[port] = s
        return found

    def clear_stats(self, port):
        """Zero the port's counters, on every CPU (a port index given to a new port)."""
        cdef uint32_t key
        cdef size_t stride = (sizeof(vale_bpf_stats) + 7) & ~7
        cdef char *buf
        cdef int rc
        self._check_open()
        check_port(port)
        key = port
        buf = <char *>malloc(stride * self.ncpus)
        if buf == NULL:
            raise MemoryError()
        memset(buf, 0, stride * self.ncpus)
        rc = bpf_map_update_elem(self.stats_fd, &key, buf, BPF_ANY)
        free(buf)
        if rc != 0:
            fail(-rc, f"clearing vale_stats[{port}]")

    def passed(self):
        """{reason: frames} the tc program passed up to vale, summed over the CPUs."""
        cdef uint32_t key
        cdef uint64_t *buf
        cdef int rc, cpu
        self._check_open()
        buf = <uint64_t *>malloc(sizeof(uint64_t) * self.ncpus)
        if buf == NULL:
            raise MemoryError()
        found = {}
        try:
            for key in range(VALE_BPF_PASSES):
                rc = bpf_map_lookup_elem(self.passed_fd, &key, buf)
                if rc != 0:
                    fail(-rc, f"reading vale_passed[{key}]")
                found[PASS_REASONS[key]] = sum(buf[cpu] for cpu in range(self.ncpus))
        finally:
            free(buf)
        return found

    # ---- trying the program -------------------------------------------------------------

    def run_tc(self, bytes frame, int ifindex=1, *, int gso_size=0, int gso_segs=0):
        """Run the tc program once on frame as if received on interface ifindex (a test
        run: nothing is sent; counters and last-seen times change as for a real frame).
        Its verdict: "pass", "drop" or "redirect". For tests and diagnosis."""
        cdef bpf_test_run_opts opts
        cdef __sk_buff ctx
        cdef int rc
        self._check_open()
        if len(frame) < 14:
            raise ValueError("a test run needs at least an Ethernet header")
        memset(&ctx, 0, sizeof(ctx))
        ctx.ifindex = ifindex
        ctx.gso_size = gso_size
        ctx.gso_segs = gso_segs
        memset(&opts, 0, sizeof(opts))
        opts.sz = sizeof(opts)
        opts.data_in = <const char *>frame
        opts.data_size_in = len(frame)
        opts.ctx_in = &ctx
        opts.ctx_size_in = sizeof(ctx)
        opts.repeat = 1
        vale_bpf_log_start()
        rc = bpf_prog_test_run_opts(self.tc_fd, &opts)
        if rc != 0:
            fail(-rc, "running the tc program on a test frame")
        return VERDICTS.get(opts.retval, str(opts.retval))
