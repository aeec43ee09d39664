/*
 * test_json.c — the JSON writer: qemu's QDict member order (checked on key
 * sets whose order was recorded from qemu-img 7.2 output), pretty layout,
 * string escaping of hostile strings, the human dump.
 */
#include <stdlib.h>
#include "tests/unit/tap.h"
#include "kimg/json.h"

static char *render(const struct kimg_jv *v, int human)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (human)
        kimg_jv_print_human(f, v, 0);
    else
        kimg_jv_print(f, v, 0);
    fclose(f);
    return buf;
}

static int order_is(const char *const *insert, const char *want)
{
    struct kimg_jv *o = kimg_jv_object();
    for (int i = 0; insert[i]; i++)
        kimg_jv_add_int(o, insert[i], i);
    char *got = render(o, 1);
    int r = !strcmp(got, want);
    if (!r)
        diag("got:\n%s", got);
    free(got);
    kimg_jv_free(o);
    return r;
}

int main(void)
{
    plan(7);
    /* inserted alphabetically; qemu-img prints them in QDict order */
    static const char *const info_keys[] = { "actual-size", "dirty-flag", "filename",
                                             "format", "virtual-size", NULL };
    ok(order_is(info_keys, "virtual size: 4\nfilename: 2\nformat: 3\nactual size: 0\n"
                           "dirty flag: 1\n"), "raw info keys in qemu's order");
    static const char *const spec_keys[] = { "corrupt", "extended-l2", "refcount-bits",
                                             "lazy-refcounts", "compression-type",
                                             "compat", NULL };
    ok(order_is(spec_keys, "compat: 5\ncompression type: 4\nlazy refcounts: 3\n"
                           "refcount bits: 2\ncorrupt: 0\nextended l2: 1\n"),
       "qcow2 format-specific keys in qemu's order");
    static const char *const check_keys[] = { "filename", "format", "check-errors",
                                              "image-end-offset", "total-clusters",
                                              "allocated-clusters", NULL };
    ok(order_is(check_keys, "image end offset: 3\ntotal clusters: 4\ncheck errors: 2\n"
                            "allocated clusters: 5\nfilename: 0\nformat: 1\n"),
       "check keys in qemu's order");

    struct kimg_jv *o = kimg_jv_object();
    kimg_jv_add_str(o, "filename", "a\"b\\c\n\x01\x7f\xc3\xa9\xff\xf0\x9f\x98\x80");
    struct kimg_jv *arr = kimg_jv_add(o, "snapshots", kimg_jv_array());
    kimg_jv_add_bool(kimg_jv_add(arr, NULL, kimg_jv_object()), "x", true);
    char *s = render(o, 0);
    is_str(s, "{\n    \"snapshots\": [\n        {\n            \"x\": true\n        }\n    ],\n"
              "    \"filename\": \"a\\\"b\\\\c\\n\\u0001\\u007F\\u00E9\\uFFFD\\uD83D\\uDE00\"\n}",
           "pretty layout and escapes");
    free(s);
    kimg_jv_free(o);

    o = kimg_jv_object();
    struct kimg_jv *d = kimg_jv_add(o, "data", kimg_jv_object());
    kimg_jv_add_str(d, "compat", "1.1");
    s = render(o, 1);
    is_str(s, "data:\n    compat: 1.1\n", "human dump nests containers");
    free(s);
    ok(kimg_jv_get(o, "data") == d && kimg_jv_get(o, "nope") == NULL, "lookup");
    kimg_jv_free(o);

    o = kimg_jv_array();
    s = render(o, 0);
    is_str(s, "[\n]", "an empty array spans two lines, as qemu prints it");
    free(s);
    kimg_jv_free(o);
    return done_testing();
}
