/*
 * lazylib/lazylib.h — the libraries kimg loads on first use instead of at
 * exec: libnbd (NBD images, lazylib/nbd_api.h), libxml2 (OVF
 * descriptors, NBD URIs, libvirt domain XML; lazylib/xml_api.h), libcrypto
 * (OpenSSL 3: encrypted images, secrets with keyid=, checksums, OVA
 * manifests; lazylib/crypto_api.h) and nettle (the LUKS ciphers OpenSSL
 * lacks, essiv; lazylib/nettle_api.h).
 *
 * Why: linked the usual way, those two and what they pull in (GnuTLS,
 * p11-kit, ICU, libstdc++: 19 more shared objects) cost every kimg run
 * about 9 ms of dynamic linking before main(), twice what the rest of its
 * libraries cost, and most runs (info, check, convert of local files;
 * what libvirt, vdsm and scripts spawn by the thousand) never touch them.
 * libcrypto and nettle cost less (about 2.5 ms for libcrypto alone on a
 * host with slow page faults) but are as rarely needed.
 *
 * How: each library has a header here that includes the library's own
 * headers, declares a table with a pointer for each function kimg calls
 * (typed by __typeof__ from the library's prototypes, so a changed
 * signature fails the build) and redirects those names to the table with
 * macros.  Code calls nbd_create() as before, after one successful call to
 * the library's load function (kimg_libnbd_load, kimg_libxml_load,
 * kimg_libcrypto_load, kimg_libnettle_load).  A name missing from a table
 * fails the link: nothing links the library.  Data a library exports
 * (xmlFree, nettle's cipher descriptions) is reached through a pointer
 * resolved the same way.  Include the lazylib header instead of the
 * library's own headers.
 */
#ifndef KIMG_LAZYLIB_H
#define KIMG_LAZYLIB_H

#include <pthread.h>

struct kimg_lazylib {
    const char *soname;         /* what dlopen() loads: "libnbd.so.0" */
    const char *what;           /* what needs it, for the message: "NBD support" */
    void (*resolve)(struct kimg_lazylib *l);   /* fills the table */
    pthread_once_t once;        /* PTHREAD_ONCE_INIT */
    void *handle;               /* dlopen()'s, or NULL */
    int missing;                /* symbols resolve() did not find */
    char why[256];              /* the failure, kept for every later call */
};

/* Load L once (thread-safe): 0, or -ENOTSUP with a kimg_fail message
 * naming what needs the library and why it could not be loaded; the same
 * answer on every later call. */
int kimg_lazylib_load(struct kimg_lazylib *l);
/* The same, the message naming WHAT (NULL: L->what) as what needs it, for
 * a library several features use ("LUKS encryption needs libcrypto.so.3"). */
int kimg_lazylib_load_for(struct kimg_lazylib *l, const char *what);

/* For resolve(): the address of NAME in L's library, or NULL (counted in
 * L->missing, the first such name in L->why). */
void *kimg_lazylib_sym(struct kimg_lazylib *l, const char *name);

/* Helpers for the per-library headers' X-lists. */
#define KIMG_LAZY_MEMBER(f) __typeof__(&f) f;
#define KIMG_LAZY_RESOLVE_INTO(api, l, f) api.f = (__typeof__(api.f))kimg_lazylib_sym(l, #f);
/* A variable V the library exports, reached as *api.V_var. */
#define KIMG_LAZY_DATA_MEMBER(v) __typeof__(&v) v##_var;
#define KIMG_LAZY_RESOLVE_DATA_INTO(api, l, v) \
    api.v##_var = (__typeof__(api.v##_var))kimg_lazylib_sym(l, #v);

#endif
