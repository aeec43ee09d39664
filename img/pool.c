/*
 * pool.c — the engines' worker pool (see pool.h): slots in four states
 * (free, queued, running, done), workers take the oldest queued slot, the
 * caller takes done slots in sequence order.  One mutex, two conditions.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kimg.h"
#include "pool.h"

enum slot_state { SLOT_FREE, SLOT_HELD, SLOT_QUEUED, SLOT_RUNNING, SLOT_DONE, SLOT_TAKEN };

struct slot {
    enum slot_state state;
    uint64_t seq;
    int ret;
    char msg[512];
};

struct kimg_pool {
    kimg_pool_fn *run;
    void *opaque;
    size_t job_size;
    int nslots, nthreads;
    struct slot *slots;
    uint8_t *jobs;
    pthread_t *threads;
    pthread_mutex_t lock;
    pthread_cond_t work, done;
    uint64_t next_seq, take_seq;
    bool quit;
};

static int index_of(const struct kimg_pool *p, const void *job)
{
    return (int)(((const uint8_t *)job - p->jobs) / p->job_size);
}

static void *worker(void *arg)
{
    struct kimg_pool *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        struct slot *s = NULL;
        int idx = -1;
        for (int i = 0; i < p->nslots; i++)
            if (p->slots[i].state == SLOT_QUEUED && (!s || p->slots[i].seq < s->seq)) {
                s = &p->slots[i];
                idx = i;
            }
        if (!s) {
            if (p->quit)
                break;
            pthread_cond_wait(&p->work, &p->lock);
            continue;
        }
        s->state = SLOT_RUNNING;
        pthread_mutex_unlock(&p->lock);
        kimg_clear_error();
        int ret = p->run(p->opaque, p->jobs + (size_t)idx * p->job_size);
        s->msg[0] = 0;
        if (ret < 0) {
            const char *m = kimg_last_error();
            snprintf(s->msg, sizeof(s->msg), "%s", m ? m : strerror(-ret));
            kimg_clear_error();
        }
        pthread_mutex_lock(&p->lock);
        s->ret = ret;
        s->state = SLOT_DONE;
        pthread_cond_broadcast(&p->done);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

struct kimg_pool *kimg_pool_new(int threads, int slots, size_t job_size, kimg_pool_fn *run,
                                void *opaque)
{
    struct kimg_pool *p = calloc(1, sizeof(*p));
    if (!p || threads < 1 || slots < 1) {
        free(p);
        kimg_error("cannot start the workers: out of memory");
        return NULL;
    }
    p->run = run;
    p->opaque = opaque;
    p->job_size = job_size ? job_size : 1;
    p->nslots = slots;
    p->slots = calloc((size_t)slots, sizeof(*p->slots));
    p->jobs = calloc((size_t)slots, p->job_size);
    p->threads = calloc((size_t)threads, sizeof(*p->threads));
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
    for (int i = 0; i < threads; i++) {
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

void kimg_pool_free(struct kimg_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->quit = true;
    for (int i = 0; i < p->nslots; i++)
        if (p->slots[i].state == SLOT_QUEUED)
            p->slots[i].state = SLOT_FREE;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
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
    return p->nslots;
}

void *kimg_pool_job(struct kimg_pool *p, int i)
{
    return p->jobs + (size_t)i * p->job_size;
}

void *kimg_pool_get(struct kimg_pool *p)
{
    void *job = NULL;
    pthread_mutex_lock(&p->lock);
    for (int i = 0; i < p->nslots && !job; i++)
        if (p->slots[i].state == SLOT_FREE) {
            p->slots[i].state = SLOT_HELD;
            job = kimg_pool_job(p, i);
        }
    pthread_mutex_unlock(&p->lock);
    return job;
}

void kimg_pool_submit(struct kimg_pool *p, void *job)
{
    struct slot *s = &p->slots[index_of(p, job)];
    pthread_mutex_lock(&p->lock);
    s->seq = p->next_seq++;
    s->state = SLOT_QUEUED;
    pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->lock);
}

void *kimg_pool_take(struct kimg_pool *p, int *ret)
{
    struct slot *s = NULL;
    int idx = -1;
    pthread_mutex_lock(&p->lock);
    while (p->take_seq < p->next_seq) {
        for (int i = 0; i < p->nslots && !s; i++)
            if (p->slots[i].seq == p->take_seq &&
                (p->slots[i].state == SLOT_DONE || p->slots[i].state == SLOT_QUEUED ||
                 p->slots[i].state == SLOT_RUNNING)) {
                if (p->slots[i].state == SLOT_DONE) {
                    s = &p->slots[i];
                    idx = i;
                }
                break;
            }
        if (s)
            break;
        pthread_cond_wait(&p->done, &p->lock);
    }
    if (s) {
        s->state = SLOT_TAKEN;
        p->take_seq++;
    }
    pthread_mutex_unlock(&p->lock);
    if (!s)
        return NULL;
    *ret = s->ret;
    if (s->ret < 0)
        kimg_error("%s", s->msg);
    return kimg_pool_job(p, idx);
}

void kimg_pool_put(struct kimg_pool *p, void *job)
{
    pthread_mutex_lock(&p->lock);
    p->slots[index_of(p, job)].state = SLOT_FREE;
    pthread_mutex_unlock(&p->lock);
}

int kimg_pool_pending(const struct kimg_pool *p)
{
    return (int)(p->next_seq - p->take_seq);
}
