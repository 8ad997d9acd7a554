# The forwarding thread: rounds over every port's receive side while frames come, a short
# spin after them, then a sleep in epoll. It knows no back end: each port kind's
# operations (PORT_OPS) take a port's frames and say whether an error event means its
# device failed.

cdef struct cpu_share:
    uint64_t wall, cpu        # when the current period began: monotonic, thread CPU time


cdef inline void share_restart(cpu_share *share, uint64_t now) noexcept nogil:
    share.wall = now
    share.cpu = thread_cpu_ns()


cdef bint share_lost(cpu_share *share, uint64_t now) noexcept nogil:
    """At the end of a check period (1 ms awake): whether other threads had over half of
    it on this thread's CPU; then a new period begins."""
    cdef uint64_t cpu, wall
    cdef bint lost
    if now - share.wall < SHARE_CHECK_NS:
        return False
    cpu = thread_cpu_ns()
    wall = now - share.wall
    lost = wall > cpu - share.cpu and wall - (cpu - share.cpu) > wall // SHARE_STOLEN
    share.wall = now
    share.cpu = cpu
    return lost


cdef void run_loop(vale_switch *sw, pthread_mutex_t *lock) noexcept nogil:
    """The forwarding thread: one batch from each packet port per round while there is
    traffic; asleep in epoll when there is none, or first spinning for busy_poll_us after
    the last frame.
    Spinning gives way: when other threads had over half of its CPU over the last
    millisecond (iperf3, a VM's vCPU), it sleeps in epoll instead for the next 20 ms. A
    short visit (a ping answered, a kernel worker) does not count."""
    cdef epoll_event events[64]
    cdef int nev, j
    cdef uint32_t k, done
    cdef bint quiet = True
    cdef uint64_t spin_until = 0, calm_from = 0, now, drain
    cdef cpu_share share
    cdef vale_port *p
    share_restart(&share, monotonic_ns())
    while True:
        pthread_mutex_lock(lock)
        if sw.stopping:
            pthread_mutex_unlock(lock)
            return
        done = 0
        for k in range(sw.nactive):
            p = sw.ports[sw.active[k]]
            if p.up and ops_of(p).polled:
                done += forward_port(sw, p)
        sw.loops += 1
        pthread_mutex_unlock(lock)
        while vale_load_acquire(&sw.control_waiting) != 0:
            sched_yield()       # let a queued control call take the lock
        if done:
            spin_until = 0
            quiet = False
            continue
        if sw.busy_poll_us and not quiet:
            now = monotonic_ns()
            if spin_until == 0:
                spin_until = now + <uint64_t>sw.busy_poll_us * 1000
            if share_lost(&share, now):
                calm_from = now + SPIN_BACKOFF_NS
            if now < spin_until and now >= calm_from:
                # Not straight back at the rings: every look at a frame's status pulls
                # its cache line away from the CPU where the kernel writes the next frame.
                for j in range(SPIN_PAUSES):
                    vale_cpu_relax()
                continue
            spin_until = 0
        nev = epoll_wait(sw.epoll_fd, events, 64, 1000)
        quiet = nev == 0        # a second without a frame: no spinning until the next one
        if sw.busy_poll_us:
            share_restart(&share, monotonic_ns())   # asleep is not losing the CPU
        for j in range(nev):
            if events[j].data.u32 == WAKE_EVENT:
                read(sw.wake_fd, &drain, sizeof(drain))
            elif events[j].events & (EPOLLERR | EPOLLHUP):
                pthread_mutex_lock(lock)
                p = sw.ports[events[j].data.u32] if events[j].data.u32 < VALE_MAX_PORTS else NULL
                # The event was read before the lock was taken: the back end checks that
                # the port with that index (maybe a new one) really failed.
                if p != NULL and ops_of(p).failed(p, events[j].events):
                    port_down(sw, p)
                pthread_mutex_unlock(lock)
