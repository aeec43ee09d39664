/*
 * ratelimit.c — the engines' bandwidth limit (ratelimit.h).  A virtual
 * clock, as a token bucket without a burst: a charge of N bytes goes at
 * `next` (or now, if the limit has been idle: unused time is not saved
 * up for a burst) and moves `next` on by N / rate.  Callers on several
 * threads are served in the order they charge, so the bytes leave at the
 * rate in total, smoothly, whatever the number of workers.  A charge
 * larger than QUANTUM waits as that many QUANTUM charges one after the
 * other would: until the start of its last quantum (so a single 8 MiB
 * zero job at 4 MiB/s takes ~1.75 s, not nothing).
 */
#include <errno.h>
#include <time.h>
#include "ratelimit.h"

#define QUANTUM (1u << 20)

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void kimg_ratelimit_init(struct kimg_ratelimit *rl, uint64_t rate)
{
    pthread_mutex_init(&rl->mu, NULL);
    rl->rate = rate;
    rl->next = 0;
}

void kimg_ratelimit_fini(struct kimg_ratelimit *rl)
{
    pthread_mutex_destroy(&rl->mu);
}

void kimg_ratelimit_charge(struct kimg_ratelimit *rl, uint64_t n)
{
    if (!rl->rate || !n)
        return;
    double t = mono_now();
    pthread_mutex_lock(&rl->mu);
    double go = rl->next > t ? rl->next : t;
    rl->next = go + (double)n / (double)rl->rate;
    if (n > QUANTUM)
        go += (double)(n - QUANTUM) / (double)rl->rate;
    pthread_mutex_unlock(&rl->mu);
    /* absolute sleep: a signal or a spurious wake-up sleeps again */
    struct timespec ts = { .tv_sec = (time_t)go,
                           .tv_nsec = (long)((go - (double)(time_t)go) * 1e9) };
    while (go > t && clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}
