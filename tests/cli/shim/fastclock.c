/*
 * fastclock.c — an LD_PRELOAD library for the qemu-img the tests run;
 * tests/cli/shim/qemu-img loads it into LUKS commands only (built as
 * build/tests/fastclock.so, without sanitizers: it runs inside qemu-img).
 *
 * qemu's PBKDF2 benchmark (crypto/pbkdf.c) times itself with the user
 * time getrusage(RUSAGE_THREAD) gives, in whole milliseconds, and runs
 * until one pass takes over 500 ms: twice in a LUKS create, once in a key
 * slot amend, in a LUKS measure and in a convert to a LUKS target.  That
 * was half the CPU time of make check.  Here that one call answers from
 * the thread's CPU clock (nanoseconds, so the benchmark never reads zero
 * and gives up, "Unable to get accurate CPU usage") scaled ten times: the
 * benchmark ends ten times sooner, and the iteration counts qemu-img
 * writes are a tenth of its usual ones (its minimum of 1000 still holds),
 * which only makes unlocking quicker.  Nothing else in qemu-img calls
 * getrusage; every format byte it writes is its own.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <time.h>

#define SPEEDUP 10

int getrusage(__rusage_who_t who, struct rusage *ru)
{
    static int (*real)(__rusage_who_t, struct rusage *);
    struct timespec ts;
    int r;

    if (!real)
        real = (int (*)(__rusage_who_t, struct rusage *))dlsym(RTLD_NEXT, "getrusage");
    if (!real)
        return -1;
    r = real(who, ru);
    if (r == 0 && who == RUSAGE_THREAD && clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) == 0) {
        unsigned long long us =
            ((unsigned long long)ts.tv_sec * 1000000u + (unsigned long long)ts.tv_nsec / 1000) *
            SPEEDUP;
        ru->ru_utime.tv_sec = (time_t)(us / 1000000u);
        ru->ru_utime.tv_usec = (suseconds_t)(us % 1000000u);
    }
    return r;
}
