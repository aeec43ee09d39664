/*
 * test_buffers.c — the transfer buffers' contracts (img/file.c,
 * img/scratch.c): kimg_alloc_aligned gives 4 KiB alignment and never the
 * huge-page advice (it would outlive free() in malloc's heap);
 * kimg_buffer_alloc gives, from 2 MiB up, a 2 MiB boundary with that
 * advice (VmFlags "hg" in /proc/self/smaps) on its whole 2 MiB parts
 * only; kimg_scratch keeps a thread's buffer from call to
 * call, one per slot, grows it when asked for more, and gives another
 * thread buffers of its own (freed when that thread exits: ASan's leak
 * check fails the SANITIZE run otherwise); kimg_scratch_done gives them
 * back, except on a thread marked with kimg_scratch_keep.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tap.h"
#include "kimg.h"
#include "kimg/file.h"

#define KiB (1ul << 10)
#define MiB (1ul << 20)

#if !defined(__SANITIZE_ADDRESS__)
/* the VmFlags of the mapping holding P contain " hg": -1 if not found */
static int huge_advised(const void *p)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        return -1;
    char line[512];
    int in = 0, found = -1;
    unsigned long a = (unsigned long)p;
    while (fgets(line, sizeof(line), f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            in = a >= lo && a < hi;
            continue;
        }
        if (in && strncmp(line, "VmFlags:", 8) == 0) {
            found = strstr(line, " hg") != NULL;
            break;
        }
    }
    fclose(f);
    return found;
}
#endif

static void *other_thread(void *arg)
{
    void **mine = arg;
    mine[0] = kimg_scratch(0, 100 * KiB);
    mine[1] = kimg_scratch(0, 50 * KiB);
    return NULL;
}

/* an engine worker: its buffer survives kimg_scratch_done */
static void *kept_thread(void *arg)
{
    void **mine = arg;
    kimg_scratch_keep();
    mine[0] = kimg_scratch(0, 3 * MiB);
    kimg_scratch_done();
    mine[1] = kimg_scratch(0, 3 * MiB);
    kimg_scratch_done();
    return NULL;
}

int main(void)
{
    uint8_t *small = kimg_alloc_aligned(12345);
    ok(small && (uintptr_t)small % 4096 == 0, "a small buffer is page-aligned");
    uint8_t *plain = kimg_alloc_aligned(4 * MiB);
    ok(plain && (uintptr_t)plain % 4096 == 0, "kimg_alloc_aligned: 4 MiB, page-aligned");
    memset(plain, 1, 4 * MiB);
    uint8_t *big = kimg_buffer_alloc(2 * MiB + 4096);
    memset(big, 1, 2 * MiB + 4096);
#if defined(__SANITIZE_ADDRESS__)
    ok(big && (uintptr_t)big % 4096 == 0, "kimg_buffer_alloc: 2 MiB, page-aligned (malloc under ASan)");
    ok(1, "# SKIP the huge-page advice (from malloc under ASan)");
    ok(1, "# SKIP the huge-page advice (from malloc under ASan)");
    ok(1, "# SKIP the huge-page advice (from malloc under ASan)");
#else
    ok(big && (uintptr_t)big % (2 * MiB) == 0, "kimg_buffer_alloc: 2 MiB on a 2 MiB boundary");
    if (huge_advised(big) < 0 || access("/sys/kernel/mm/transparent_hugepage/enabled", F_OK) != 0) {
        ok(1, "# SKIP no smaps or no transparent huge pages here");
        ok(1, "# SKIP no smaps or no transparent huge pages here");
        ok(1, "# SKIP no smaps or no transparent huge pages here");
    } else {
        ok(huge_advised(big) == 1, "  advised for huge pages");
        ok(huge_advised(big + 2 * MiB) == 0, "  its tail past the last whole 2 MiB is not");
        ok(huge_advised(plain) == 0, "kimg_alloc_aligned's never is");
    }
#endif
    kimg_buffer_free(big, 2 * MiB + 4096);
    uint8_t *mid = kimg_buffer_alloc(100 * KiB);
    ok(mid && (uintptr_t)mid % 4096 == 0, "kimg_buffer_alloc: a smaller one page-aligned");
    kimg_buffer_free(mid, 100 * KiB);
    free(small);
    free(plain);

    uint8_t *a = kimg_scratch(0, 1000);
    ok(a && (uintptr_t)a % 4096 == 0, "scratch slot 0 is page-aligned");
    memset(a, 7, 1000);
    ok(kimg_scratch(0, 64 * KiB) == a, "asked again within its size: the same buffer");
    uint8_t *b = kimg_scratch(1, 1000);
    ok(b && b != a, "slot 1 is another buffer");
    uint8_t *c = kimg_scratch(0, 3 * MiB);
    ok(c && (uintptr_t)c % 4096 == 0, "asked for more: a buffer that large");
    memset(c, 9, 3 * MiB);   /* ASan: it is really 3 MiB */
    ok(kimg_scratch(0, 4 * MiB) == c, "grown in 2 MiB steps: 4 MiB fits the same one");
    ok(kimg_scratch(1, 10) == b, "slot 1 kept its buffer meanwhile");
    ok(kimg_scratch(2, 10) == NULL, "no slot 2");
    ok(kimg_scratch(0, SIZE_MAX - 100) == NULL && kimg_buffer_alloc(SIZE_MAX - 100) == NULL,
       "a size whose rounding would wrap: NULL");

    void *theirs[2];
    pthread_t t;
    ok(pthread_create(&t, NULL, other_thread, theirs) == 0 && pthread_join(t, NULL) == 0,
       "another thread ran");
    ok(theirs[0] && theirs[0] != c && theirs[0] != b, "it had a buffer of its own");
    ok(theirs[1] == theirs[0], "kept between its calls");
    ok(pthread_create(&t, NULL, kept_thread, theirs) == 0 && pthread_join(t, NULL) == 0,
       "a thread marked kimg_scratch_keep ran");
    ok(theirs[0] && theirs[1] == theirs[0], "  its buffer outlived kimg_scratch_done");
#if defined(__SANITIZE_ADDRESS__)
    kimg_scratch_done();
    ok(1, "# SKIP a returned mapping (malloc under ASan; its leak check covers it)");
#else
    kimg_scratch_done();
    errno = 0;
    ok(msync(c, 4096, MS_ASYNC) < 0 && errno == ENOMEM,
       "kimg_scratch_done on an unmarked thread unmapped its 4 MiB buffer");
#endif
    return done_testing();
}
