/*
 * lazylib/xml_api.c — libxml2's table (lazylib/xml_api.h) and its loader.
 */
#define KIMG_LAZYLIB_IMPL
#include "xml_api.h"

struct kimg_libxml_api kimg_libxml;

static void resolve(struct kimg_lazylib *l)
{
#define X(f) KIMG_LAZY_RESOLVE_INTO(kimg_libxml, l, f)
    KIMG_LIBXML_FUNCS(X)
#undef X
    kimg_libxml.xmlFree_var = kimg_lazylib_sym(l, "xmlFree");
}

static struct kimg_lazylib lib = {
    .soname = KIMG_LIBXML_SONAME, .what = "XML and URI parsing", .resolve = resolve,
    .once = PTHREAD_ONCE_INIT,
};

/* libxml2 is initialised here, once, right after the load. */
int kimg_libxml_load(void)
{
    static pthread_once_t init = PTHREAD_ONCE_INIT;
    int ret = kimg_lazylib_load(&lib);
    if (ret == 0)
        pthread_once(&init, kimg_libxml.xmlInitParser);
    return ret;
}
