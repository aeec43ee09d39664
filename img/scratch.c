/*
 * scratch.c — per-thread scratch buffers for the read paths' temporary
 * data (a compressed cluster's stored bytes, a cluster decompressed to
 * copy a part of it out).  Those paths ran once per job on every worker
 * and allocated and freed their buffer each time; glibc then hands the
 * memory back to the kernel (a thread arena's heap shrinks with
 * MADV_DONTNEED) and the next job faults it in again: 5,300-6,900 page
 * faults for a zstd or zlib qcow2 of the bench disk, at 11 us each in a
 * VM whose faults trap to the hypervisor.  On the engines' workers
 * (img/pool.c marks them with kimg_scratch_keep) a scratch buffer stays
 * with its thread, grows to the largest size asked and is freed when the
 * thread exits.  Any other thread gives its buffers back at
 * kimg_scratch_done, as before: a server's threads (nbdkit runs sixteen
 * per connection) must not each keep megabytes between requests.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include "kimg.h"
#include "kimg/file.h"

struct scratch {
    void *buf[KIMG_SCRATCH_SLOTS];
    size_t cap[KIMG_SCRATCH_SLOTS];
};

static pthread_key_t scratch_key;
static bool scratch_made;                      /* scratch_key exists */
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static __thread struct scratch *scratch_tls;   /* this thread's, or NULL */
static __thread bool scratch_kept;             /* an engine worker's: kept */

static void scratch_free(void *p)
{
    struct scratch *s = p;
    for (int i = 0; i < KIMG_SCRATCH_SLOTS; i++)
        kimg_buffer_free(s->buf[i], s->cap[i]);
    free(s);
    scratch_tls = NULL;
}

static void scratch_init(void)
{
    scratch_made = pthread_key_create(&scratch_key, scratch_free) == 0;
}

/* When the library is unloaded (nbdkit dlcloses its plugin, which links
 * libkimg), a thread exiting later must not call scratch_free, gone with
 * it: the key goes first.  (Buffers of threads still alive then are left
 * to the process, as the main thread's are at exit.) */
__attribute__((destructor)) static void scratch_fini(void)
{
    if (scratch_made)
        pthread_key_delete(scratch_key);
    scratch_made = false;
}

void kimg_scratch_keep(void)
{
    scratch_kept = true;
}

void kimg_scratch_done(void)
{
    struct scratch *s = scratch_tls;
    if (scratch_kept || !s)
        return;
    for (int i = 0; i < KIMG_SCRATCH_SLOTS; i++) {
        kimg_buffer_free(s->buf[i], s->cap[i]);
        s->buf[i] = NULL;
        s->cap[i] = 0;
    }
}

void *kimg_scratch(unsigned slot, size_t len)
{
    if (slot >= KIMG_SCRATCH_SLOTS || len > SIZE_MAX / 4)   /* rounding must not wrap */
        return NULL;
    struct scratch *s = scratch_tls;
    if (!s) {
        pthread_once(&scratch_once, scratch_init);
        if (!scratch_made || !(s = calloc(1, sizeof(*s))))
            return NULL;
        if (pthread_setspecific(scratch_key, s) != 0) {
            free(s);
            return NULL;
        }
        scratch_tls = s;
    }
    if (len > s->cap[slot]) {
        /* past 64 KiB whole 2 MiB steps, on huge pages (kimg_buffer_alloc):
         * sizes that creep up job by job would otherwise reallocate, and
         * fault in, a fresh buffer each time */
        size_t step = len <= (64u << 10) ? (64u << 10) : (2u << 20);
        size_t cap = (len + step - 1) / step * step;
        void *b = kimg_buffer_alloc(cap);
        if (!b)
            return NULL;
        kimg_buffer_free(s->buf[slot], s->cap[slot]);
        s->buf[slot] = b;
        s->cap[slot] = cap;
    }
    return s->buf[slot];
}
