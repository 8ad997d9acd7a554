# C declarations the data plane needs from libc and the compiler, in one place.

from libc.stdint cimport uint64_t

cdef extern from "<stdlib.h>" nogil:
    int posix_memalign(void **memptr, size_t alignment, size_t size)

cdef extern from "<sys/mman.h>" nogil:
    int madvise(void *addr, size_t length, int advice)
    int MADV_HUGEPAGE

cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    struct timespec:
        time_t tv_sec
        long tv_nsec
    int CLOCK_MONOTONIC
    int CLOCK_REALTIME
    int CLOCK_THREAD_CPUTIME_ID
    int clock_gettime(int clk_id, timespec *tp)

cdef extern from "<pthread.h>" nogil:
    ctypedef struct pthread_mutex_t:
        pass
    ctypedef struct pthread_mutexattr_t:
        pass
    int pthread_mutex_init(pthread_mutex_t *mutex, const pthread_mutexattr_t *attr)
    int pthread_mutex_destroy(pthread_mutex_t *mutex)
    int pthread_mutex_lock(pthread_mutex_t *mutex)
    int pthread_mutex_unlock(pthread_mutex_t *mutex)
    ctypedef unsigned long pthread_t
    ctypedef struct pthread_attr_t:
        pass
    int pthread_create(pthread_t *thread, const pthread_attr_t *attr,
                       void *(*start)(void *) noexcept nogil, void *arg)
    int pthread_join(pthread_t thread, void **retval)

cdef extern from *:
    """
    #define vale_prefetch(p) __builtin_prefetch((p))
    #define vale_likely(x) __builtin_expect(!!(x), 1)
    #define vale_unlikely(x) __builtin_expect(!!(x), 0)
    #if defined(__x86_64__) || defined(__i386__)
    #define vale_cpu_relax() __builtin_ia32_pause()
    #elif defined(__aarch64__)
    #define vale_cpu_relax() __asm__ __volatile__("yield")
    #else
    #define vale_cpu_relax() do {} while (0)
    #endif
    """
    void vale_prefetch(const void *p) nogil
    bint vale_likely(bint x) nogil
    bint vale_unlikely(bint x) nogil
    void vale_cpu_relax() nogil


cdef inline uint64_t monotonic_ms() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <uint64_t>ts.tv_sec * 1000 + <uint64_t>(ts.tv_nsec // 1000000)


cdef inline uint64_t monotonic_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <uint64_t>ts.tv_sec * 1000000000 + <uint64_t>ts.tv_nsec


cdef inline uint64_t thread_cpu_ns() noexcept nogil:
    """CPU time the calling thread has had."""
    cdef timespec ts
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return <uint64_t>ts.tv_sec * 1000000000 + <uint64_t>ts.tv_nsec


cdef inline uint64_t realtime_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return <uint64_t>ts.tv_sec * 1000000000 + <uint64_t>ts.tv_nsec
