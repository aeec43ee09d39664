/*
 * inflate.c — a faster decoder for zlib-compressed clusters: libdeflate
 * (about 2.4 times zlib's inflate speed on the bench image), used when its
 * shared library is installed; it is loaded at run time, so it is neither
 * a build nor a run dependency.  KIMG_NO_LIBDEFLATE=1 turns it off (for
 * benchmarks and tests of the zlib path).
 *
 * Contract: qcow2_inflate_fast() answers only when it is sure: 0 if SRC is
 * a complete raw deflate stream producing exactly DSTLEN bytes (a stream
 * zlib decodes to the same bytes), 1 for anything else (a stream that runs
 * on past DSTLEN, ends short, or is invalid, or no libdeflate): the caller
 * then decodes with zlib, whose verdict stands, so results and errors are
 * zlib's whichever path ran.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>

#include "qcow2.h"

/* libdeflate's ABI (libdeflate.so.0): the three calls used here */
struct libdeflate_decompressor;
typedef struct libdeflate_decompressor *(*alloc_fn)(void);
typedef void (*free_fn)(struct libdeflate_decompressor *);
typedef int (*decompress_ex_fn)(struct libdeflate_decompressor *, const void *in,
                                size_t in_nbytes, void *out, size_t out_nbytes_avail,
                                size_t *actual_in_nbytes_ret, size_t *actual_out_nbytes_ret);
#define LIBDEFLATE_SUCCESS 0

static alloc_fn ld_alloc;
static free_fn ld_free;
static decompress_ex_fn ld_decompress;
static pthread_key_t ld_key;
static pthread_once_t ld_once = PTHREAD_ONCE_INIT;

static void ld_thread_free(void *d)
{
    ld_free(d);
}

static void ld_init(void)
{
    const char *off = getenv("KIMG_NO_LIBDEFLATE");
    if (off && *off && *off != '0')
        return;
    void *h = dlopen("libdeflate.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return;
    alloc_fn a = (alloc_fn)dlsym(h, "libdeflate_alloc_decompressor");
    free_fn f = (free_fn)dlsym(h, "libdeflate_free_decompressor");
    decompress_ex_fn d = (decompress_ex_fn)dlsym(h, "libdeflate_deflate_decompress_ex");
    if (!a || !f || !d || pthread_key_create(&ld_key, ld_thread_free) != 0) {
        dlclose(h);
        return;
    }
    ld_alloc = a;
    ld_free = f;
    ld_decompress = d;      /* the library stays loaded for the process */
}

int qcow2_inflate_fast(uint8_t *dst, size_t dstlen, const uint8_t *src, size_t srclen)
{
    pthread_once(&ld_once, ld_init);
    if (!ld_decompress)
        return 1;
    /* one decompressor per thread (about 10 KiB), freed when it ends */
    struct libdeflate_decompressor *d = pthread_getspecific(ld_key);
    if (!d) {
        d = ld_alloc();
        if (!d)
            return 1;
        if (pthread_setspecific(ld_key, d) != 0) {
            ld_free(d);
            return 1;
        }
    }
    size_t in_used = 0, out_made = 0;
    int r = ld_decompress(d, src, srclen, dst, dstlen, &in_used, &out_made);
    return r == LIBDEFLATE_SUCCESS && out_made == dstlen ? 0 : 1;
}
