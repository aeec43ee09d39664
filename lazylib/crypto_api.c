/*
 * lazylib/crypto_api.c — libcrypto's table (lazylib/crypto_api.h) and its
 * loader.  OpenSSL 3 initialises itself on first use.
 */
#define KIMG_LAZYLIB_IMPL
#include "crypto_api.h"

struct kimg_libcrypto_api kimg_libcrypto;

static void resolve(struct kimg_lazylib *l)
{
#define X(f) KIMG_LAZY_RESOLVE_INTO(kimg_libcrypto, l, f)
    KIMG_LIBCRYPTO_FUNCS(X)
#undef X
}

static struct kimg_lazylib lib = {
    .soname = KIMG_LIBCRYPTO_SONAME, .what = "Cryptography", .resolve = resolve,
    .once = PTHREAD_ONCE_INIT,
};

int kimg_libcrypto_load(const char *what)
{
    return kimg_lazylib_load_for(&lib, what);
}
