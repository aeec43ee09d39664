/*
 * test_opts.c — qemu-style option lists: parsing, ",," escapes, overrides,
 * validation against a driver table, typed getters.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "tests/unit/tap.h"
#include "kimg.h"
#include "kimg/opts.h"

static const struct kimg_optdesc desc[] = {
    { "cluster_size", KIMG_OPT_SIZE, "" },
    { "lazy_refcounts", KIMG_OPT_BOOL, "" },
    { "refcount_bits", KIMG_OPT_NUMBER, "" },
    { "backing_file", KIMG_OPT_STRING, "" },
    { NULL, 0, NULL },
};

int main(void)
{
    struct kimg_opts *o = NULL;
    uint64_t u;
    bool b;

    plan(22);
    ok(kimg_opts_parse(&o, "cluster_size=4k,lazy_refcounts=on,backing_file=a,,b") == 0, "parse");
    is_str(kimg_opts_get(o, "backing_file"), "a,b", "',,' is a literal comma");
    ok(kimg_opts_get_size(o, "cluster_size", 0, &u) == 0 && u == 4096, "size getter");
    ok(kimg_opts_get_bool(o, "lazy_refcounts", false, &b) == 0 && b, "bool getter");
    ok(kimg_opts_get_u64(o, "refcount_bits", 16, &u) == 0 && u == 16, "default when absent");
    ok(kimg_opts_validate(o, desc, "t") == 0, "valid options pass");
    ok(kimg_opts_parse(&o, "cluster_size=64k") == 0 &&
       kimg_opts_get_size(o, "cluster_size", 0, &u) == 0 && u == 65536,
       "a later -o overrides an earlier one");
    ok(!kimg_opts_wants_help(o), "no help");
    ok(kimg_opts_parse(&o, "help") == 0 && kimg_opts_wants_help(o), "help detected");
    kimg_opts_free(o);

    o = NULL;
    kimg_clear_error();
    ok(kimg_opts_parse(&o, "foo=1") == 0 && kimg_opts_validate(o, desc, "t") == -EINVAL,
       "unknown key refused");
    is_str(kimg_last_error(), "Invalid parameter 'foo'", "qemu's message");
    kimg_opts_free(o);

    o = NULL;
    kimg_clear_error();
    ok(kimg_opts_parse(&o, "lazy_refcounts=maybe") == 0 &&
       kimg_opts_validate(o, desc, "t") == -EINVAL, "bad bool refused");
    kimg_opts_free(o);
    o = NULL;
    ok(kimg_opts_parse(&o, "refcount_bits=-4") == 0 &&
       kimg_opts_validate(o, desc, "t") == -EINVAL, "negative number refused");
    kimg_opts_free(o);
    o = NULL;
    ok(kimg_opts_parse(&o, "cluster_size=1KiB") == 0 &&
       kimg_opts_validate(o, desc, "t") == -EINVAL, "bad size refused");
    kimg_opts_free(o);
    o = NULL;
    ok(kimg_opts_parse(&o, "=x") == -EINVAL, "empty key refused");
    kimg_opts_free(o);
    o = NULL;
    ok(kimg_opts_parse(&o, "lazy_refcounts") == 0 &&
       kimg_opts_get_bool(o, "lazy_refcounts", false, &b) == 0 && b,
       "a bare boolean key means on");
    kimg_opts_free(o);
    o = NULL;
    ok(kimg_opts_parse(&o, "") == 0 && o && kimg_opts_count(o) == 0, "empty list");
    kimg_opts_free(o);
    o = NULL;
    /* walking and taking (what cmd/ uses instead of the struct) */
    bool found;
    ok(kimg_opts_count(NULL) == 0, "a NULL list counts 0");
    ok(kimg_opts_parse(&o, "a=1,b,c=3,a=4") == 0 && kimg_opts_count(o) == 3 &&
       !strcmp(kimg_opts_key(o, 0), "a") && !strcmp(kimg_opts_value(o, 0), "4") &&
       !strcmp(kimg_opts_key(o, 1), "b") && !kimg_opts_value(o, 1) &&
       !strcmp(kimg_opts_key(o, 2), "c"), "keys in first-given order, a repeat replaces in place");
    char *v = kimg_opts_take(o, "a", &found);
    ok(found && v && !strcmp(v, "4") && kimg_opts_count(o) == 2 &&
       !strcmp(kimg_opts_key(o, 0), "b") && !kimg_opts_get(o, "a"), "take removes the key");
    free(v);
    v = kimg_opts_take(o, "b", &found);
    ok(found && !v && kimg_opts_count(o) == 1, "take of a bare key: found, NULL");
    v = kimg_opts_take(o, "zz", &found);
    ok(!found && !v && kimg_opts_count(o) == 1, "take of an absent key");
    kimg_opts_free(o);
    return done_testing();
}
