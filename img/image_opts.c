/*
 * image_opts.c — images named by options (qemu-img's --image-opts): the
 * QemuOpts string syntax into flat dotted options (the seam a json: name
 * would parse into, issue 16), then the open: "driver" the format,
 * "file.*" the local file under it, the block layer's generic options
 * turned into open flags, and the rest handed to the driver as the
 * image's open options (kimg_open_opt), refused after the open when no
 * driver read them, with qemu 7.2's messages.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "kimg/driver.h"
#include "kimg/json.h"
#include "internal.h"

/* ---- the option string ------------------------------------------------ */

/* qemu's id_wellformed (QemuOpts checks an "id" while parsing). */
static bool id_ok(const char *id)
{
    if (!((*id >= 'a' && *id <= 'z') || (*id >= 'A' && *id <= 'Z')))
        return false;
    for (const char *p = id + 1; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_'))
            return false;
    return true;
}

int kimg_image_opts_parse(const char *optstr, struct kimg_opts **out)
{
    struct kimg_opts *opts = NULL;
    size_t cap = strlen(optstr) + 1;
    char *key = malloc(cap), *val = malloc(cap);
    const char *p = optstr;
    bool first = true;
    int ret = 0;

    if (!key || !val) {
        ret = kimg_fail(-ENOMEM, "out of memory");
        goto out;
    }
    /* an empty string is an empty list (qemu: "Must specify either driver
     * or file" at the open) */
    ret = kimg_opts_parse(&opts, "");
    while (ret == 0 && *p) {
        /* the name runs to '=' or ',' (no ",," escape in names, as qemu) */
        size_t n = strcspn(p, "=,");
        memcpy(key, p, n);
        key[n] = '\0';
        p += n;
        if (*p == '=') {
            char *o = val;
            for (p++; *p; p++) {
                if (*p == ',') {
                    if (p[1] != ',')
                        break;
                    p++;
                }
                *o++ = *p;
            }
            *o = '\0';
            ret = kimg_opts_set(&opts, key, val);
        } else if (first) {
            /* a first element without '=' is the value of "file" */
            ret = kimg_opts_set(&opts, "file", key);
        } else if (!strncmp(key, "no", 2)) {
            /* qemu's short-form booleans (it warns they are deprecated):
             * "noX" is X=off, a bare "X" is X=on */
            ret = kimg_opts_set(&opts, key + 2, "off");
        } else {
            ret = kimg_opts_set(&opts, key, "on");
        }
        if (ret < 0) {
            ret = kimg_fail(-ENOMEM, "out of memory");
            break;
        }
        const char *id = strcmp(key, "id") ? NULL : kimg_opts_get(opts, "id");
        if (id && !id_ok(id)) {
            /* qemu adds: "Identifiers consist of letters, digits, '-',
             * '.', '_', starting with a letter." */
            ret = kimg_fail(-EINVAL, "Parameter 'id' expects an identifier");
            break;
        }
        if (*p == ',')
            p++;
        first = false;
    }
out:
    free(key);
    free(val);
    if (ret < 0) {
        kimg_opts_free(opts);
        return ret;
    }
    /* kimg_opts_get marks options used: start clean */
    for (int i = 0; i < kimg_opts_count(opts); i++)
        opts->v[i].used = false;
    *out = opts;
    return 0;
}

/* ---- the open ---------------------------------------------------------- */

/* Take KEY out of OPTS as a boolean (on/off, yes/no, true/false) into
 * *FLAGS' BIT, with qemu's message for a bad value. */
static int take_bool(struct kimg_opts *opts, const char *key, unsigned bit, unsigned *flags,
                     bool *given)
{
    bool found, b;
    char *v = kimg_opts_take(opts, key, &found);
    int ret = 0;
    if (given)
        *given = false;
    if (!found)
        return 0;
    if (kimg_parse_bool(v ? v : "on", &b) < 0)
        ret = kimg_fail(-EINVAL, "Parameter '%s' expects 'on' or 'off'", key);
    else if (given)
        *given = b;
    else if (b)
        *flags |= bit;
    free(v);
    return ret;
}

/* Take KEY out of OPTS: 0 when absent or one of VALUES (NULL-ended; *IDX
 * its index, -1 when absent), else -EINVAL and the value in *BAD (freed
 * by the caller) for the caller's message. */
static int take_enum(struct kimg_opts *opts, const char *key, const char *const *values,
                     int *idx, char **bad)
{
    bool found;
    char *v = kimg_opts_take(opts, key, &found);
    *idx = -1;
    *bad = NULL;
    if (!found)
        return 0;
    for (int i = 0; values[i]; i++)
        if (v && !strcmp(v, values[i])) {
            *idx = i;
            free(v);
            return 0;
        }
    *bad = v ? v : strdup("on");
    return -EINVAL;
}

/* The "file.*" options: the local file (or device) the format sits on,
 * and the file protocol's options kimg takes (locking, O_DIRECT, cache
 * flushes; aio modes are kimg's own choice and accepted as hints). */
static int take_file_opts(struct kimg_opts *opts, char **path, char **protop,
                          unsigned *flags, bool *native_aio)
{
    static const char *const aio[] = { "threads", "native", "io_uring", NULL };
    static const char *const locking[] = { "on", "off", "auto", NULL };
    bool found;
    char *proto = kimg_opts_take(opts, "file.driver", &found);
    int ret = 0;

    *protop = proto;    /* the caller's to free */
    if (proto && strcmp(proto, "file") && strcmp(proto, "host_device")) {
        ret = kimg_fail(-ENOTSUP, "file.driver '%.64s' is not supported: kimg opens a "
                        "format over a local file ('file'), a device ('host_device') or an "
                        "NBD export ('nbd')", proto);
        goto out;
    }
    const char *pname = proto ? proto : "file";
    *path = kimg_opts_take(opts, "file.filename", &found);
    int lock, aio_mode;
    char *bad = NULL;
    if (take_enum(opts, "file.aio", aio, &aio_mode, &bad) < 0 ||
        take_enum(opts, "file.locking", locking, &lock, &bad) < 0) {
        ret = kimg_fail(-EINVAL, "invalid parameter value: %.200s", bad ? bad : "");
        free(bad);
        goto out;
    }
    if (lock == 1)      /* off */
        *flags |= KIMG_OPEN_NO_LOCK;
    if ((ret = take_bool(opts, "file.cache.direct", KIMG_OPEN_DIRECT, flags, NULL)) < 0 ||
        (ret = take_bool(opts, "file.cache.no-flush", KIMG_OPEN_NOSYNC, flags, NULL)) < 0 ||
        (ret = take_bool(opts, "file.drop-cache", 0, flags, NULL)) < 0 ||
        (ret = take_bool(opts, "file.x-check-cache-dropped", 0, flags, NULL)) < 0)
        goto out;
    *native_aio = aio_mode == 1;
    free(kimg_opts_take(opts, "file.node-name", &found));
    free(kimg_opts_take(opts, "file.aio-max-batch", &found));
    for (int i = 0; i < kimg_opts_count(opts); i++) {
        const char *k = kimg_opts_key(opts, i);
        if (!strncmp(k, "file.", 5)) {
            ret = kimg_fail(-EINVAL, "Block protocol '%s' doesn't support the option '%.200s'",
                            pname, k + 5);
            goto out;
        }
    }
    if (*path && proto && !strcmp(proto, "host_device")) {
        struct stat st;
        if (stat(*path, &st) == 0 && !S_ISBLK(st.st_mode) && !S_ISCHR(st.st_mode))
            ret = kimg_fail(-EINVAL, "'host_device' driver requires '%s' to be either a "
                            "character or block device", *path);
    }
out:
    return ret;
}

/* The block layer's options for every node: flags, or accepted and left
 * to kimg's own choices (node names, discard and zero detection modes). */
static int take_generic_opts(struct kimg_opts *opts, unsigned *flags)
{
    static const char *const discard[] = { "ignore", "off", "unmap", "on", NULL };
    static const char *const zeroes[] = { "off", "on", "unmap", NULL };
    bool read_only, found;
    char *bad = NULL;
    int ret, idx;

    if ((ret = take_bool(opts, "read-only", 0, flags, &read_only)) < 0 ||
        (ret = take_bool(opts, "auto-read-only", 0, flags, NULL)) < 0 ||
        (ret = take_bool(opts, "force-share", KIMG_OPEN_SHARE, flags, NULL)) < 0 ||
        (ret = take_bool(opts, "cache.direct", KIMG_OPEN_DIRECT, flags, NULL)) < 0 ||
        (ret = take_bool(opts, "cache.no-flush", KIMG_OPEN_NOSYNC, flags, NULL)) < 0)
        return ret;
    if (take_enum(opts, "discard", discard, &idx, &bad) < 0) {
        free(bad);
        return kimg_fail(-EINVAL, "Invalid discard option");
    }
    if (take_enum(opts, "detect-zeroes", zeroes, &idx, &bad) < 0) {
        ret = kimg_fail(-EINVAL, "invalid parameter value: %.200s", bad);
        free(bad);
        return ret;
    }
    free(kimg_opts_take(opts, "node-name", &found));
    if (read_only && (*flags & KIMG_OPEN_RDWR))
        return kimg_fail(-EROFS, "Block node is read-only");
    return 0;
}

/* qemu's QDict bucket of KEY (qobject/qdict.c: tdb_hash modulo 512): the
 * order its JSON lists an object's keys in. */
static unsigned qdict_bucket(const char *key)
{
    uint32_t v = 0x238F13AFu * (uint32_t)strlen(key);
    for (unsigned i = 0; key[i]; i++)
        v += (uint32_t)(unsigned char)key[i] << (i * 5 % 24);
    return (1103515243u * v + 12345u) % 512u;
}

/* qemu's name for an image opened with options its driver read (its
 * strong runtime options): json:{those, "driver", "file": {"driver":
 * PROTO, "filename": PATH}}, keys in QDict order, values as strings. */
/* qemu's deprecated "backing=" (empty): open without the backing file
 * (img/image.c); left out of the image's json: name, as qemu does. */
static bool backing_empty(const struct kimg_opt *o)
{
    return !strcmp(o->key, "backing") && o->value && !*o->value;
}

static int set_opts_name(struct kimg *img, const char *proto)
{
    const struct kimg_opts *o = img->open_opts;
    int n = kimg_opts_count(o), used = 0;
    for (int i = 0; i < n; i++)
        used += o->v[i].used && strncmp(o->v[i].key, "backing.", 8) && !backing_empty(&o->v[i]);
    if (!used)
        return 0;
    const char **keys = calloc((size_t)used + 2, sizeof(*keys));
    if (!keys)
        return kimg_fail(-ENOMEM, "out of memory");
    int k = 0;
    for (int i = 0; i < n; i++)
        if (o->v[i].used && strncmp(o->v[i].key, "backing.", 8) && !backing_empty(&o->v[i]))
            keys[k++] = o->v[i].key;
    keys[k++] = "driver";
    keys[k++] = "file";
    for (int i = 1; i < k; i++)     /* stable insertion sort by bucket */
        for (int j = i; j > 0 && qdict_bucket(keys[j - 1]) > qdict_bucket(keys[j]); j--) {
            const char *t = keys[j];
            keys[j] = keys[j - 1];
            keys[j - 1] = t;
        }
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) {
        free(keys);
        return kimg_fail(-ENOMEM, "out of memory");
    }
    fputs("json:{", f);
    for (int i = 0; i < k; i++) {
        if (i)
            fputs(", ", f);
        kimg_json_print_string(f, keys[i]);
        fputs(": ", f);
        if (!strcmp(keys[i], "driver")) {
            kimg_json_print_string(f, img->drv->name);
        } else if (!strcmp(keys[i], "file")) {
            fputs("{\"driver\": ", f);
            kimg_json_print_string(f, proto);
            fputs(", \"filename\": ", f);
            kimg_json_print_string(f, img->filename);
            fputs("}", f);
        } else {
            const char *v = kimg_opts_get(o, keys[i]);
            kimg_json_print_string(f, v ? v : "on");
        }
    }
    fputs("}", f);
    free(keys);
    if (fclose(f) != 0 || !buf) {
        free(buf);
        return kimg_fail(-ENOMEM, "out of memory");
    }
    img->opts_name = buf;
    return 0;
}

int kimg_open_opts(struct kimg **out, const struct kimg_opts *given, unsigned flags)
{
    struct kimg_opts *opts = NULL;
    char *driver = NULL, *file = NULL, *path = NULL, *proto = NULL;
    bool found, has_file_opts = false;
    int ret = 0;

    /* a copy: options are taken out as they are consumed */
    for (int i = 0; i < kimg_opts_count(given) && ret == 0; i++)
        ret = kimg_opts_set(&opts, kimg_opts_key(given, i), kimg_opts_value(given, i));
    if (ret < 0) {
        ret = kimg_fail(-ENOMEM, "out of memory");
        goto out;
    }
    driver = kimg_opts_take(opts, "driver", &found);
    file = kimg_opts_take(opts, "file", &found);
    for (int i = 0; i < kimg_opts_count(opts); i++)
        has_file_opts |= !strncmp(kimg_opts_key(opts, i), "file.", 5);
    if (file) {
        /* "file=NODE" names a node of a running qemu: none here */
        if (has_file_opts)
            ret = kimg_fail(-EINVAL, "Cannot reference an existing block device with "
                            "additional options or a new filename");
        else
            ret = kimg_fail(-ENOENT, "Cannot find device='%.200s' nor node-name='%.200s'",
                            file, file);
        goto out;
    }
    if (!driver && !has_file_opts) {
        ret = kimg_fail(-EINVAL, "Must specify either driver or file");
        goto out;
    }
    if (driver && !kimg_find_driver(driver) && strcmp(driver, "file") &&
        strcmp(driver, "host_device")) {
        ret = kimg_fail(-EINVAL, "Unknown driver '%.64s'", driver);
        goto out;
    }
    if (driver && (!strcmp(driver, "file") || !strcmp(driver, "host_device"))) {
        ret = kimg_fail(-ENOTSUP, "driver '%s' is a protocol: kimg takes "
                        "driver=FORMAT,file.filename=PATH (driver=raw for the bytes as they are)",
                        driver);
        goto out;
    }
    bool native_aio = false;
    struct kimg_file *nbd = NULL;
    const char *fdrv = kimg_opts_get(opts, "file.driver");
    if (fdrv && !strcmp(fdrv, "nbd")) {
        /* an NBD export (image_opts_nbd.c) */
        proto = kimg_opts_take(opts, "file.driver", &found);
        if ((ret = kimg_image_opts_nbd(opts, &flags, &nbd)) < 0)
            goto out;
    } else if ((ret = take_file_opts(opts, &path, &proto, &flags, &native_aio)) < 0) {
        goto out;
    }
    if (!path && !nbd) {
        ret = kimg_fail(-EINVAL, "A block device must be specified for \"file\"");
        goto out;
    }
    if ((ret = take_generic_opts(opts, &flags)) < 0) {
        kimg_file_close(nbd);
        goto out;
    }
    if (native_aio && !(flags & KIMG_OPEN_DIRECT)) {
        ret = kimg_fail(-EINVAL, "aio=native was specified, but it requires cache.direct=on, "
                        "which was not specified.");
        goto out;
    }
    const char *backing = kimg_opts_get(opts, "backing");
    if (backing && !*backing)   /* opened without it (img/image.c), as qemu 7.2 */
        fprintf(stderr, "kimg: warning: Use of \"backing\": \"\" is deprecated; use "
                "\"backing\": null instead\n");
    else if (backing && !(flags & KIMG_OPEN_NO_BACKING)) {
        /* "backing=NODE" names a node of a running qemu (7.2 takes
         * "backing=null" from a command line as such a name too) */
        ret = kimg_fail(-ENOENT, "Could not open backing file: Cannot find device='%.200s' "
                        "nor node-name='%.200s'", backing, backing);
        kimg_file_close(nbd);
        goto out;
    }
    ret = kimg_open_layer_opts(out, nbd ? nbd->path : path, driver, flags, opts, nbd);
    if (ret == 0 && (ret = set_opts_name(*out, proto ? proto : "file")) < 0) {
        kimg_close(*out);
        *out = NULL;
    }
out:
    kimg_opts_free(opts);
    free(driver);
    free(file);
    free(path);
    free(proto);
    return ret;
}

int kimg_open_image_opts(struct kimg **out, const char *optstr, unsigned flags)
{
    struct kimg_opts *opts = NULL;
    int ret = kimg_image_opts_parse(optstr, &opts);
    if (ret < 0)
        return ret;
    ret = kimg_open_opts(out, opts, flags);
    kimg_opts_free(opts);
    return ret;
}

/* ---- what drivers see -------------------------------------------------- */

const char *kimg_open_opt(struct kimg *img, const char *key)
{
    return kimg_opts_get(img->open_opts, key);
}

int kimg_open_opts_check_used(struct kimg *img)
{
    /* an open that names the backing file without opening it (info,
     * rebase -u: qemu's BDRV_O_NO_BACKING) takes no "backing.*" option;
     * check opens it in qemu, so takes them (KIMG_OPEN_REPAIR) */
    bool no_backing = (img->flags & KIMG_OPEN_NO_BACKING) && !(img->flags & KIMG_OPEN_REPAIR);
    for (int i = 0; i < kimg_opts_count(img->open_opts); i++) {
        /* "backing.*" for an image without a backing file: qemu opens a
         * backing node from them alone, which has no file */
        if (!img->open_opts->v[i].used && !strncmp(img->open_opts->v[i].key, "backing.", 8) &&
            !no_backing)
            return kimg_fail(-EINVAL, "Could not open backing file: Must specify either "
                             "driver or file");
        /* "backing=": no backing file, for images with one or not */
        if (!img->open_opts->v[i].used && !backing_empty(&img->open_opts->v[i]))
            return kimg_fail(-EINVAL, "Block format '%s' does not support the option '%.200s'",
                             img->drv->name, kimg_opts_key(img->open_opts, i));
    }
    return 0;
}

int kimg_open_opts_sub(struct kimg *img, const char *prefix, struct kimg_opts **out,
                       char **driver)
{
    size_t n = strlen(prefix);
    int ret = 0;
    *out = NULL;
    *driver = NULL;
    for (int i = 0; i < kimg_opts_count(img->open_opts) && ret == 0; i++) {
        struct kimg_opt *o = &img->open_opts->v[i];
        if (strncmp(o->key, prefix, n))
            continue;
        o->used = true;
        if (!strcmp(o->key + n, "driver")) {
            free(*driver);
            if (!(*driver = strdup(o->value ? o->value : "")))
                ret = -ENOMEM;
        } else {
            ret = kimg_opts_set(out, o->key + n, o->value);
        }
    }
    if (ret < 0) {
        kimg_opts_free(*out);
        free(*driver);
        *out = NULL;
        *driver = NULL;
        return kimg_fail(-ENOMEM, "out of memory");
    }
    return 0;
}
