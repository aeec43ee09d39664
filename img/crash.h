/*
 * crash.h — crash simulation for tests (img/crash.c): KIMG_CRASH_AFTER=N
 * kills the process before its (N+1)-th file change; KIMG_CRASH_LOSE=SEED
 * also loses a random subset of the changes not yet synced, as a power
 * failure can.  Inactive (one pthread_once check) unless set.
 */
#ifndef KIMG_CRASH_H
#define KIMG_CRASH_H

#include <stdbool.h>
#include <stdint.h>

struct kimg_file;

enum kimg_crash_op {
    KIMG_CRASH_WRITE,
    KIMG_CRASH_ZERO,
    KIMG_CRASH_TRUNCATE,      /* len is the new size */
    KIMG_CRASH_ALLOCATE,
    KIMG_CRASH_SYNC,
};

struct kimg_crash_token {
    bool locked;
    struct crash_change *change;
};

bool kimg_crash_enabled(void);
/* KIMG_CRASH_LOSE is on: unsynced changes may be lost (power failure). */
bool kimg_crash_lossy(void);
/* Before a change of F: counts it (and may end the process there), and
 * when crash simulation is on, logs what the change replaces and returns
 * true; the caller then makes the change and calls kimg_crash_end with its
 * result.  Returns false (nothing to end) when simulation is off. */
bool kimg_crash_begin(struct kimg_file *f, enum kimg_crash_op op, uint64_t off,
                      uint64_t len, const void *data, struct kimg_crash_token *tok);
void kimg_crash_end(struct kimg_file *f, struct kimg_crash_token *tok, int ret);
/* F's changes so far are on stable storage: they can no longer be lost. */
void kimg_crash_synced(struct kimg_file *f);
/* F is being closed: its unsynced changes stay at risk (a dup'd fd). */
void kimg_crash_closing(struct kimg_file *f);

#endif
