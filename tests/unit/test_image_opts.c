/*
 * test_image_opts.c — images named by options (img/image_opts.c): the
 * QemuOpts string syntax, kimg_open_opts' refusals with qemu's messages,
 * open options handed to the layer and read with kimg_open_opt, the
 * check for options nobody read, and backing.* going to the backing layer.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "tests/unit/tap.h"
#include "kimg.h"
#include "kimg/driver.h"

static struct kimg_opts *parse(const char *s)
{
    struct kimg_opts *o = NULL;
    if (kimg_image_opts_parse(s, &o) < 0)
        return NULL;
    return o;
}

/* kimg_open_image_opts' error for S ("" when it opened). */
static const char *open_err(const char *s, char *buf, size_t cap)
{
    struct kimg *img = NULL;
    kimg_clear_error();
    if (kimg_open_image_opts(&img, s, KIMG_OPEN_NO_LOCK) == 0) {
        kimg_close(img);
        return "";
    }
    snprintf(buf, cap, "%s", kimg_last_error() ? kimg_last_error() : "?");
    kimg_clear_error();
    return buf;
}

int main(void)
{
    char dir[] = "/tmp/kimg-iopts-XXXXXX", base[64], top[64], s[256], e[512];
    struct kimg_opts *o;

    plan(26);
    o = parse("driver=qcow2,file.filename=a,,b,x=1,x=2,lazy,nofoo,");
    ok(o != NULL, "parse");
    is_str(kimg_opts_get(o, "driver"), "qcow2", "driver");
    is_str(kimg_opts_get(o, "file.filename"), "a,b", "',,' is a comma in a value");
    is_str(kimg_opts_get(o, "x"), "2", "the last value wins");
    is_str(kimg_opts_get(o, "lazy"), "on", "bare X is X=on");
    is_str(kimg_opts_get(o, "foo"), "off", "noX is X=off");
    ok(kimg_opts_count(o) == 5, "a trailing comma adds nothing");
    kimg_opts_free(o);
    o = parse("a.qcow2,driver=raw");
    ok(o && !strcmp(kimg_opts_get(o, "file"), "a.qcow2"), "a first bare element is 'file'");
    kimg_opts_free(o);
    ok(parse("driver=raw,id=0x") == NULL && kimg_last_error() &&
       !strcmp(kimg_last_error(), "Parameter 'id' expects an identifier"), "a bad id");
    kimg_clear_error();
    o = parse("");
    ok(o && kimg_opts_count(o) == 0, "an empty string is an empty list");
    kimg_opts_free(o);

    if (!mkdtemp(dir))
        return 1;
    snprintf(base, sizeof(base), "%s/base.raw", dir);
    snprintf(top, sizeof(top), "%s/top.qcow2", dir);
    struct kimg_create_args ca = { .filename = base, .format = "raw", .size = 1 << 20,
                                   .size_given = true };
    ok(kimg_create(&ca) == 0, "raw base created");
    struct kimg_create_args ct = { .filename = top, .format = "qcow2", .size = 1 << 20,
                                   .size_given = true, .backing_file = base,
                                   .backing_format = "raw" };
    ok(kimg_create(&ct) == 0, "qcow2 overlay created");

    snprintf(s, sizeof(s), "driver=qcow2,file.filename=%s", top);
    is_str(open_err(s, e, sizeof(e)), "", "opens");
    snprintf(s, sizeof(s), "file.filename=%s,read-only=on,cache.no-flush=on,node-name=x,"
             "file.locking=off,file.aio=threads,discard=unmap,detect-zeroes=off", top);
    is_str(open_err(s, e, sizeof(e)), "", "probed, with the generic options");
    snprintf(s, sizeof(s), "driver=qcow2,file.filename=%s,foo=1", top);
    is_str(open_err(s, e, sizeof(e)), "Block format 'qcow2' does not support the option 'foo'",
           "an option nobody reads");
    snprintf(s, sizeof(s), "driver=qcow2,file.filename=%s,file.foo=1", top);
    is_str(open_err(s, e, sizeof(e)), "Block protocol 'file' doesn't support the option 'foo'",
           "a file option kimg does not take");
    snprintf(s, sizeof(s), "driver=qcow2,file.filename=%s,backing.foo=1", top);
    is_str(open_err(s, e, sizeof(e)), "Could not open backing file: Block format 'raw' does "
           "not support the option 'foo'",
           "backing.* goes to the backing layer");
    snprintf(s, sizeof(s), "driver=qcow2,file.filename=%s,backing.driver=qcow2", top);
    ok(strstr(open_err(s, e, sizeof(e)), "qcow2") != NULL,
       "backing.driver is the backing layer's format");
    snprintf(s, sizeof(s), "driver=raw,file.filename=%s,backing.x=1", base);
    is_str(open_err(s, e, sizeof(e)), "Could not open backing file: Must specify either driver "
           "or file", "backing.* on an image without a backing file");
    is_str(open_err("driver=qcow2", e, sizeof(e)),
           "A block device must be specified for \"file\"", "no file");
    is_str(open_err("node-name=x", e, sizeof(e)), "Must specify either driver or file",
           "neither driver nor file");
    is_str(open_err("driver=nosuch,file.filename=x", e, sizeof(e)), "Unknown driver 'nosuch'",
           "unknown driver");
    is_str(open_err("file=n0", e, sizeof(e)), "Cannot find device='n0' nor node-name='n0'",
           "a node reference");

    /* what a driver sees */
    struct kimg *img = NULL;
    o = parse("x=1");
    snprintf(s, sizeof(s), "driver=qcow2,file.filename=%s", top);
    ok(kimg_open_image_opts(&img, s, KIMG_OPEN_NO_LOCK) == 0, "open for the driver view");
    if (img) {
        kimg_opts_free(img->open_opts);
        img->open_opts = o;
        is_str(kimg_open_opt(img, "x"), "1", "kimg_open_opt reads an option");
        ok(kimg_open_opt(img, "y") == NULL, "kimg_open_opt: NULL when absent");
        kimg_close(img);
    }
    unlink(base);
    unlink(top);
    rmdir(dir);
    return done_testing();
}
