/*
 * pool.h — the engines' worker pool: a fixed ring of job slots that worker
 * threads run oldest first, whose results the caller takes strictly in
 * submission order, each with its own error capture.  kimg_error() is per
 * thread and the first message wins; a job's run() has a fresh message
 * slot, and the first message it set travels with its result to the
 * caller's thread (kimg_pool_take), so the root cause is what is printed.
 */
#ifndef KIMG_POOL_H
#define KIMG_POOL_H

#include <stddef.h>

struct kimg_pool;

/* Run one job on a worker thread: 0 or -errno (with kimg_error() set). */
typedef int kimg_pool_fn(void *opaque, void *job);

/* A pool of THREADS workers and SLOTS jobs of JOB_SIZE bytes each
 * (zeroed; the caller's own struct, set up with kimg_pool_job()).
 * NULL with kimg_error() set when out of memory or threads. */
struct kimg_pool *kimg_pool_new(int threads, int slots, size_t job_size, kimg_pool_fn *run,
                                void *opaque);
/* Stop the workers (queued jobs are dropped, running ones finish) and free
 * the pool; the job slots go with it. */
void kimg_pool_free(struct kimg_pool *p);

int kimg_pool_slots(const struct kimg_pool *p);
/* Slot I (0 <= I < slots), for setting up per-slot buffers. */
void *kimg_pool_job(struct kimg_pool *p, int i);

/* A free slot to fill and submit, or NULL when every slot is in flight or
 * waiting to be taken (take the oldest result first). */
void *kimg_pool_get(struct kimg_pool *p);
/* Queue JOB (from kimg_pool_get) after every job submitted before it. */
void kimg_pool_submit(struct kimg_pool *p, void *job);
/* The oldest submitted job not taken yet, waiting until it has run; NULL
 * when none is in flight.  *RET gets its result; a failed job's message
 * is set in the caller's thread.  The slot is the caller's until
 * kimg_pool_put(). */
void *kimg_pool_take(struct kimg_pool *p, int *ret);
void kimg_pool_put(struct kimg_pool *p, void *job);
/* Jobs submitted and not yet taken. */
int kimg_pool_pending(const struct kimg_pool *p);

#endif
