/*
 * lazylib/nettle_api.c — nettle's table (lazylib/nettle_api.h) and its
 * loader.
 */
#define KIMG_LAZYLIB_IMPL
#include "nettle_api.h"

struct kimg_libnettle_api kimg_libnettle;

static void resolve(struct kimg_lazylib *l)
{
#define X(f) KIMG_LAZY_RESOLVE_INTO(kimg_libnettle, l, f)
    KIMG_LIBNETTLE_FUNCS(X)
#undef X
#define X(v) KIMG_LAZY_RESOLVE_DATA_INTO(kimg_libnettle, l, v)
    KIMG_LIBNETTLE_DATA(X)
#undef X
}

static struct kimg_lazylib lib = {
    .soname = KIMG_LIBNETTLE_SONAME, .what = "LUKS encryption", .resolve = resolve,
    .once = PTHREAD_ONCE_INIT,
};

int kimg_libnettle_load(const char *what)
{
    return kimg_lazylib_load_for(&lib, what);
}
