/*
 * lazylib/lazylib.c — dlopen() on first use, once per library, for the
 * tables of lazylib/nbd_api.h, xml_api.h, crypto_api.h and nettle_api.h
 * (lazylib.h says why).
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "kimg.h"
#include "lazylib.h"

void *kimg_lazylib_sym(struct kimg_lazylib *l, const char *name)
{
    dlerror();
    void *p = dlsym(l->handle, name);
    if (!p && !l->missing++)
        snprintf(l->why, sizeof(l->why), "%s has no %s", l->soname, name);
    return p;
}

/* pthread_once() takes no argument: the library being loaded is passed
 * through this thread's variable. */
static __thread struct kimg_lazylib *loading;

static void load_once(void)
{
    struct kimg_lazylib *l = loading;
    /* RTLD_NOW: a symbol the library lacks fails here, not mid-request */
    l->handle = dlopen(l->soname, RTLD_NOW | RTLD_LOCAL);
    if (!l->handle) {
        const char *e = dlerror();
        snprintf(l->why, sizeof(l->why), "%s", e ? e : "dlopen failed");
        return;
    }
    l->resolve(l);
}

int kimg_lazylib_load(struct kimg_lazylib *l)
{
    return kimg_lazylib_load_for(l, NULL);
}

int kimg_lazylib_load_for(struct kimg_lazylib *l, const char *what)
{
    loading = l;
    pthread_once(&l->once, load_once);
    loading = NULL;
    if (l->handle && !l->missing)
        return 0;
    /* dlerror() may quote a path; escape nothing but control bytes */
    char why[sizeof(l->why)];
    size_t k = 0;
    for (const char *p = l->why; *p && k < sizeof(why) - 1; p++)
        why[k++] = (unsigned char)*p < 0x20 ? '?' : *p;
    why[k] = '\0';
    return kimg_fail(-ENOTSUP, "%s needs %s, which could not be loaded: %s",
                     what ? what : l->what, l->soname, why);
}
