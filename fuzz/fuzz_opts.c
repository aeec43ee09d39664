/*
 * fuzz_opts.c — qemu-style option lists: kimg_opts_parse() (",," escapes,
 * empty names, repeated keys), kimg_opts_validate() against a table shaped
 * like qcow2's create options, every getter, kimg_opts_set() and free.
 * The first input byte picks how the rest is split into several -o strings
 * (qemu-img merges repeated -o options into one list).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz.h"
#include "kimg.h"
#include "kimg/opts.h"
#include "internal.h"

static const struct kimg_optdesc table[] = {
    { "size",            KIMG_OPT_SIZE,   "Virtual disk size" },
    { "compat",          KIMG_OPT_STRING, "Compatibility level (v2 [0.10] or v3 [1.1])" },
    { "backing_file",    KIMG_OPT_STRING, "File name of a base image" },
    { "backing_fmt",     KIMG_OPT_STRING, "Image format of the base image" },
    { "data_file",       KIMG_OPT_STRING, "File name of an external data file" },
    { "data_file_raw",   KIMG_OPT_BOOL,   "The external data file must stay valid as a raw image" },
    { "encryption",      KIMG_OPT_BOOL,   "Encrypt the image (deprecated)" },
    { "cluster_size",    KIMG_OPT_SIZE,   "qcow2 cluster size" },
    { "preallocation",   KIMG_OPT_STRING, "Preallocation mode (allowed values: off, metadata, falloc, full)" },
    { "lazy_refcounts",  KIMG_OPT_BOOL,   "Postpone refcount updates" },
    { "refcount_bits",   KIMG_OPT_NUMBER, "Width of a reference count entry in bits" },
    { "compression_type", KIMG_OPT_STRING, "Compression method used for image cluster compression" },
    { "extended_l2",     KIMG_OPT_BOOL,   "Extended L2 tables" },
    { NULL, 0, NULL }
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 8192)
        return 0;
    unsigned parts = 1 + data[0] % 3;
    data++;
    size--;

    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';

    /* split at NUL bytes into up to PARTS strings */
    struct kimg_opts *opts = NULL;
    const char *p = s, *end = s + size;
    for (unsigned i = 0; i < parts && p <= end; i++) {
        kimg_clear_error();
        /* an error other than -ENOMEM must come with a message */
        int r = kimg_opts_parse(&opts, p);
        if (r < 0 && r != -12 && !kimg_last_error())
            abort();
        p += strlen(p) + 1;
    }
    kimg_clear_error();
    (void)kimg_opts_validate(opts, table, "qcow2");
    kimg_clear_error();
    (void)kimg_opts_wants_help(opts);

    for (const struct kimg_optdesc *d = table; d->name; d++) {
        uint64_t u;
        bool b;
        const char *v = kimg_opts_get(opts, d->name);
        if (v)
            (void)strlen(v);
        kimg_clear_error();
        (void)kimg_opts_get_size(opts, d->name, 65536, &u);
        kimg_clear_error();
        (void)kimg_opts_get_u64(opts, d->name, 16, &u);
        kimg_clear_error();
        (void)kimg_opts_get_bool(opts, d->name, false, &b);
        kimg_clear_error();
    }
    /* every stored key is retrievable, and set() replaces in place */
    if (opts) {
        for (int i = 0; i < opts->n; i++) {
            if (!kimg_opts_get(opts, opts->v[i].key))
                abort();
            if (!opts->v[i].used)
                abort();
        }
        int n = opts->n;
        if (n > 0) {
            char *key = strdup(opts->v[0].key);
            if (key && kimg_opts_set(&opts, key, "x") == 0 &&
                (opts->n != n || strcmp(kimg_opts_get(opts, key), "x")))
                abort();
            free(key);
        }
        if (kimg_opts_set(&opts, "size", NULL) == 0 &&
            strcmp(kimg_opts_get(opts, "size"), "on"))
            abort();
    }
    kimg_opts_free(opts);
    kimg_clear_error();
    free(s);
    return 0;
}
