/*
 * pool.c — the engines' worker pool (see pool.h): slots that are free,
 * held by the caller, queued, running, done or taken; workers take the
 * oldest queued slot that hold() lets go, the caller takes finished
 * second-phase slots first, then done slots in sequence order.  One
 * mutex, two conditions.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kimg.h"
#include "kimg/file.h"
#include "pool.h"

enum slot_state { SLOT_FREE, SLOT_HELD, SLOT_QUEUED, SLOT_RUNNING, SLOT_DONE, SLOT_TAKEN };

struct slot {
    enum slot_state state;
    bool again;                 /* requeued: its result is taken in any order */
    uint64_t seq;
    int ret;
    char msg[512];              /* the job's first kimg_error() message */
};

struct kimg_pool {
    struct kimg_pool_def def;
    struct slot *slots;
    uint8_t *jobs;
    pthread_t *threads;
    int nthreads;
    pthread_mutex_t lock;
    pthread_cond_t work, done;
    uint64_t next_seq, take_seq;
    int again_pending;          /* requeued jobs not taken yet */
    bool quit;
};

static void *job_at(struct kimg_pool *p, int i)
{
    return p->jobs + (size_t)i * p->def.job_size;
}

static int index_of(const struct kimg_pool *p, const void *job)
{
    return (int)(((const uint8_t *)job - p->jobs) / p->def.job_size);
}

/* The oldest queued slot that may start, or -1 (under the lock). */
static int pick(struct kimg_pool *p)
{
    int best = -1;
    for (int i = 0; i < p->def.slots; i++) {
        struct slot *s = &p->slots[i];
        if (s->state != SLOT_QUEUED || (best >= 0 && s->seq >= p->slots[best].seq))
            continue;
        if (p->def.hold && p->def.hold(p->def.opaque, job_at(p, i)))
            continue;
        best = i;
    }
    return best;
}

static void *worker(void *arg)
{
    struct kimg_pool *p = arg;
    kimg_scratch_keep();   /* job after job: keep the read paths' buffers */
    void *local = p->def.worker_init ? p->def.worker_init(p->def.opaque) : NULL;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        int i = pick(p);
        if (i < 0) {
            if (p->quit)
                break;
            pthread_cond_wait(&p->work, &p->lock);
            continue;
        }
        struct slot *s = &p->slots[i];
        s->state = SLOT_RUNNING;
        pthread_mutex_unlock(&p->lock);
        kimg_clear_error();
        int ret = p->def.run(p->def.opaque, local, job_at(p, i));
        s->msg[0] = 0;
        if (ret < 0) {
            const char *m = kimg_last_error();
            snprintf(s->msg, sizeof(s->msg), "%s", m ? m : strerror(-ret));
        }
        kimg_clear_error();
        pthread_mutex_lock(&p->lock);
        s->ret = ret;
        s->state = SLOT_DONE;
        pthread_cond_broadcast(&p->done);
    }
    pthread_mutex_unlock(&p->lock);
    if (p->def.worker_fini)
        p->def.worker_fini(p->def.opaque, local);
    return NULL;
}

struct kimg_pool *kimg_pool_new(const struct kimg_pool_def *def)
{
    struct kimg_pool *p = calloc(1, sizeof(*p));
    if (!p || def->threads < 1 || def->slots < 1 || !def->run) {
        free(p);
        kimg_error("cannot start the workers: out of memory");
        return NULL;
    }
    p->def = *def;
    if (!p->def.job_size)
        p->def.job_size = 1;
    p->slots = calloc((size_t)def->slots, sizeof(*p->slots));
    p->jobs = calloc((size_t)def->slots, p->def.job_size);
    p->threads = calloc((size_t)def->threads, sizeof(*p->threads));
    if (!p->slots || !p->jobs || !p->threads) {
        free(p->slots);
        free(p->jobs);
        free(p->threads);
        free(p);
        kimg_error("cannot start the workers: out of memory");
        return NULL;
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->done, NULL);
    for (int i = 0; i < def->threads; i++) {
        int err = pthread_create(&p->threads[i], NULL, worker, p);
        if (err) {
            kimg_pool_free(p);
            kimg_error("cannot start the workers: %s", strerror(err));
            return NULL;
        }
        p->nthreads++;
    }
    return p;
}

void kimg_pool_stop(struct kimg_pool *p)
{
    if (!p || p->quit)
        return;
    pthread_mutex_lock(&p->lock);
    p->quit = true;
    for (int i = 0; i < p->def.slots; i++)
        if (p->slots[i].state == SLOT_QUEUED)
            p->slots[i].state = SLOT_FREE;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
}

void kimg_pool_free(struct kimg_pool *p)
{
    if (!p)
        return;
    kimg_pool_stop(p);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->done);
    free(p->slots);
    free(p->jobs);
    free(p->threads);
    free(p);
}

int kimg_pool_slots(const struct kimg_pool *p)
{
    return p->def.slots;
}

void *kimg_pool_job(struct kimg_pool *p, int i)
{
    return job_at(p, i);
}

void *kimg_pool_get(struct kimg_pool *p)
{
    void *job = NULL;
    pthread_mutex_lock(&p->lock);
    for (int i = 0; i < p->def.slots && !job; i++)
        if (p->slots[i].state == SLOT_FREE) {
            p->slots[i].state = SLOT_HELD;
            job = job_at(p, i);
        }
    pthread_mutex_unlock(&p->lock);
    return job;
}

static void submit(struct kimg_pool *p, void *job, bool done)
{
    struct slot *s = &p->slots[index_of(p, job)];
    pthread_mutex_lock(&p->lock);
    s->seq = p->next_seq++;
    s->again = false;
    s->ret = 0;
    s->msg[0] = 0;
    s->state = done ? SLOT_DONE : SLOT_QUEUED;
    if (!done)
        pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->lock);
}

void kimg_pool_submit(struct kimg_pool *p, void *job)
{
    submit(p, job, false);
}

void kimg_pool_submit_done(struct kimg_pool *p, void *job)
{
    submit(p, job, true);
}

void kimg_pool_requeue(struct kimg_pool *p, void *job)
{
    struct slot *s = &p->slots[index_of(p, job)];
    pthread_mutex_lock(&p->lock);
    s->again = true;
    s->state = SLOT_QUEUED;
    p->again_pending++;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
}

void *kimg_pool_take(struct kimg_pool *p, int *ret, bool wait)
{
    struct slot *s = NULL;
    int idx = -1;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        for (int i = 0; i < p->def.slots && idx < 0; i++)
            if (p->slots[i].state == SLOT_DONE && p->slots[i].again)
                idx = i;
        for (int i = 0; i < p->def.slots && idx < 0; i++)
            if (p->slots[i].state == SLOT_DONE && !p->slots[i].again &&
                p->slots[i].seq == p->take_seq)
                idx = i;
        if (idx >= 0 || !wait || (p->take_seq == p->next_seq && !p->again_pending))
            break;
        pthread_cond_wait(&p->done, &p->lock);
    }
    if (idx >= 0) {
        s = &p->slots[idx];
        s->state = SLOT_TAKEN;
        if (s->again)
            p->again_pending--;
        else
            p->take_seq++;
        if (p->def.hold)
            pthread_cond_broadcast(&p->work);   /* held jobs may go now */
    }
    pthread_mutex_unlock(&p->lock);
    if (!s)
        return NULL;
    *ret = s->ret;
    if (s->ret < 0)
        kimg_error("%s", s->msg);
    return job_at(p, idx);
}

void kimg_pool_put(struct kimg_pool *p, void *job)
{
    pthread_mutex_lock(&p->lock);
    p->slots[index_of(p, job)].state = SLOT_FREE;
    pthread_mutex_unlock(&p->lock);
}

int kimg_pool_pending(struct kimg_pool *p)
{
    pthread_mutex_lock(&p->lock);
    int n = (int)(p->next_seq - p->take_seq) + p->again_pending;
    pthread_mutex_unlock(&p->lock);
    return n;
}

void kimg_pool_kick(struct kimg_pool *p)
{
    pthread_mutex_lock(&p->lock);
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
}
