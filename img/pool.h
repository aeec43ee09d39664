/*
 * pool.h — the engines' one worker pool (convert, compare, checksum): a
 * fixed set of job slots that worker threads run oldest first, whose
 * results the caller takes strictly in submission order, each with its
 * own error capture.  kimg_error() is per thread and the first message
 * wins; a job's run() starts with no message, and the first message it
 * set travels with its result to the caller's thread (kimg_pool_take), so
 * the root cause is what gets printed.
 *
 * A taken job may go back for a second phase (kimg_pool_requeue: convert
 * writes a job's data once the caller has given it host space); such a
 * job keeps its age, and its result is taken in any order, before the
 * next one in sequence.
 */
#ifndef KIMG_POOL_H
#define KIMG_POOL_H

#include <stdbool.h>
#include <stddef.h>

struct kimg_pool;

struct kimg_pool_def {
    int threads;                /* >= 1 */
    int slots;                  /* jobs in flight at most, >= 1 */
    size_t job_size;            /* the caller's job struct (zeroed at start) */
    /* Run JOB on a worker: 0 or -errno with kimg_error() set.  LOCAL is
     * the worker's own state from worker_init (NULL without one). */
    int (*run)(void *opaque, void *local, void *job);
    /* Optional: a worker's own state, made on its thread (NULL allowed:
     * run() then copes), and freed there when it stops. */
    void *(*worker_init)(void *opaque);
    void (*worker_fini)(void *opaque, void *local);
    /* Optional: whether a queued JOB must wait (called under the pool's
     * lock; asked again after every take and kimg_pool_kick). */
    bool (*hold)(void *opaque, void *job);
    void *opaque;
};

/* NULL with kimg_error() set when out of memory or threads. */
struct kimg_pool *kimg_pool_new(const struct kimg_pool_def *def);
/* Stop the workers: queued jobs are dropped, running ones finish; the
 * slots stay readable (to free the caller's per-slot buffers). */
void kimg_pool_stop(struct kimg_pool *p);
/* Stop (if not yet) and free the pool; the job slots go with it. */
void kimg_pool_free(struct kimg_pool *p);

int kimg_pool_slots(const struct kimg_pool *p);
/* Slot I (0 <= I < slots), for setting up per-slot buffers. */
void *kimg_pool_job(struct kimg_pool *p, int i);

/* A free slot to fill and submit, or NULL when every slot is in flight or
 * waiting to be taken (take a result first). */
void *kimg_pool_get(struct kimg_pool *p);
/* Queue JOB (from kimg_pool_get) after every job submitted before it. */
void kimg_pool_submit(struct kimg_pool *p, void *job);
/* The same for a job with nothing to run: done at once, result 0. */
void kimg_pool_submit_done(struct kimg_pool *p, void *job);
/* Queue a taken JOB again for its second phase. */
void kimg_pool_requeue(struct kimg_pool *p, void *job);
/* A finished second-phase job (any order), else the oldest submitted job
 * not taken yet once it has run; with WAIT it waits for one, without it
 * returns NULL when none is ready.  NULL when nothing is in flight.
 * *RET gets the result; a failed job's message is set in the caller's
 * thread.  The slot is the caller's until kimg_pool_put/requeue. */
void *kimg_pool_take(struct kimg_pool *p, int *ret, bool wait);
void kimg_pool_put(struct kimg_pool *p, void *job);
/* Jobs submitted or requeued and not yet taken. */
int kimg_pool_pending(struct kimg_pool *p);
/* The engine's state that hold() reads changed: ask it again. */
void kimg_pool_kick(struct kimg_pool *p);

#endif
