/*
 * lazylib/nbd_api.c — libnbd's table (lazylib/nbd_api.h) and its loader.
 */
#define KIMG_LAZYLIB_IMPL
#include "nbd_api.h"

struct kimg_libnbd_api kimg_libnbd;

static void resolve(struct kimg_lazylib *l)
{
#define X(f) KIMG_LAZY_RESOLVE_INTO(kimg_libnbd, l, f)
    KIMG_LIBNBD_FUNCS(X)
#undef X
}

static struct kimg_lazylib lib = {
    .soname = KIMG_LIBNBD_SONAME, .what = "NBD support", .resolve = resolve,
    .once = PTHREAD_ONCE_INIT,
};

int kimg_libnbd_load(void)
{
    return kimg_lazylib_load(&lib);
}
