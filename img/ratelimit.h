/*
 * ratelimit.h — a bandwidth limit shared by threads (convert -r): each
 * caller charges the bytes it is about to write and sleeps until the
 * limit lets them go.  Private to the engines.
 */
#ifndef KIMG_RATELIMIT_H
#define KIMG_RATELIMIT_H

#include <pthread.h>
#include <stdint.h>

struct kimg_ratelimit {
    pthread_mutex_t mu;
    uint64_t rate;      /* bytes per second; 0: no limit */
    double next;        /* when the next charge may go (CLOCK_MONOTONIC s) */
};

void kimg_ratelimit_init(struct kimg_ratelimit *rl, uint64_t rate);
void kimg_ratelimit_fini(struct kimg_ratelimit *rl);
/* Wait until N more bytes are within the rate, then count them. */
void kimg_ratelimit_charge(struct kimg_ratelimit *rl, uint64_t n);

#endif
