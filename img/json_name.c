/*
 * json_name.c — images named "json:{...}" on the command line (vdsm's
 * measure passes one on every call; virt-v2v names a disk inside an OVA
 * with one), parsed with jansson.  Issue 16 restricts them to these keys,
 * each read as qemu 7.2 reads it:
 *   - "driver": one of kimg's formats (or absent: probed; -f overrides it);
 *   - "file": {"driver": "file"|"host_device", "filename": PATH} ("driver"
 *     may be left out), or the dotted "file.driver"/"file.filename";
 *   - "backing": null (the backing file is named, not opened), or, as
 *     vdsm's sub-chain measure passes it, a backing image of the same
 *     shape ("driver", "file", "backing": null) opened in place of the
 *     one the image names;
 *   - a byte range of a file, qemu's raw driver with "offset" and "size":
 *     as the image itself ({"driver": "raw", "offset": N, "size": M,
 *     "file": {...}}) or as the file a format sits on ({"driver": "vmdk",
 *     "file": {"driver": "raw", "offset": ..., "file": {...}}}, what
 *     virt-v2v passes), read-only.
 * Any other key (a protocol option such as "locking", "cache", a format's
 * open options, "encrypt.key-secret": what --image-opts takes) is refused
 * with one line naming it (check_image below), as is an NBD export.  The
 * keys left flatten to the dotted options of image_opts.c, which opens
 * them.  A json: name is refused under --untrusted, and one stored inside
 * an image is never followed (image.c's kimg_image_path refuses those).
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kimg/driver.h"
#include "kimg/json.h"
#include "internal.h"

#define MAX_DEPTH 8

/* A byte range of a file (the raw driver's offset and size). */
struct window {
    bool on, has_size;
    uint64_t off, size;
    json_t *node;               /* the raw node (its "file" is the file) */
};

/* (the command adds "Could not open 'NAME': " before every message) */
static int bad(const char *name, const char *why)
{
    (void)name;
    return kimg_fail(-EINVAL, "%s", why);
}

/* A json: name opens local files only: a "file" of driver "file" or
 * "host_device" (or none) whose filename is not an NBD name.  The
 * --image-opts grammar json: names otherwise share (image_opts.c) also
 * takes NBD exports (file.driver=nbd, an nbd:// file.filename); a json:
 * name is the form vdsm and virt-v2v build from paths, so it does not. */
static int local_file(const char *drv, const char *path)
{
    if (drv && strcmp(drv, "file") && strcmp(drv, "host_device"))
        return kimg_fail(-EINVAL, "a json: name's \"file\" must have the driver \"file\" or "
                         "\"host_device\", not '%.64s'%s", drv,
                         strcmp(drv, "nbd") ? "" : " (an NBD export: --image-opts or its name)");
    if (path && kimg_nbd_is_uri(path))
        return kimg_fail(-EINVAL, "a json: name opens local files only: '%.200s' is an NBD "
                         "name (give it as the image name, or with --image-opts)", path);
    return 0;
}

/* ---- the keys a json: name takes (issue 16) ----------------------------- */

/* PREFIX and KEY as one dotted name, as the command line spelled it. */
static const char *dotted(char *buf, size_t cap, const char *prefix, const char *key)
{
    snprintf(buf, cap, "%.40s%s%.100s", prefix, *prefix ? "." : "", key);
    return buf;
}

/* The refusal of any key outside the set (printed through the command's
 * terminal escaping, as every error line: the key comes from the command
 * line). */
static int refuse_key(const char *prefix, const char *key)
{
    char full[160];
    return kimg_fail(-EINVAL, "a json: name takes no option '%.100s' (only \"driver\", "
                     "\"file\" with \"driver\" and \"filename\", \"backing\" and the raw "
                     "driver's \"offset\" and \"size\"; --image-opts takes others)",
                     dotted(full, sizeof(full), prefix, key));
}

static int want_string(json_t *val, const char *prefix, const char *key)
{
    char full[160];
    if (json_is_string(val))
        return 0;
    return kimg_fail(-EINVAL, "Invalid parameter type for '%.100s', expected: string",
                     dotted(full, sizeof(full), prefix, key));
}

/* A local file node under PREFIX: "driver" ("file" or "host_device") and
 * "filename".  The driver and the name are looked at first, so an NBD
 * export is refused as one (local_file) whatever else it carries. */
static int check_file(json_t *node, const char *prefix)
{
    json_t *drv = json_object_get(node, "driver"), *path = json_object_get(node, "filename");
    int ret = 0;
    if (drv)
        ret = want_string(drv, prefix, "driver");
    if (ret == 0 && path)
        ret = want_string(path, prefix, "filename");
    if (ret == 0)
        ret = local_file(json_string_value(drv), json_string_value(path));
    const char *key;
    json_t *val;
    json_object_foreach(node, key, val) {
        if (ret == 0 && strcmp(key, "driver") && strcmp(key, "filename"))
            ret = refuse_key(prefix, key);
    }
    return ret;
}

/* A byte range under PREFIX (the raw driver): "driver", "offset", "size"
 * and the local "file" it reads (take_window reads the numbers). */
static int check_window(json_t *node, const char *prefix)
{
    const char *key;
    json_t *val;
    char sub[160];
    json_t *file = json_object_get(node, "file");
    if (json_is_object(file)) {
        int ret = check_file(file, dotted(sub, sizeof(sub), prefix, "file"));
        if (ret < 0)
            return ret;
    }
    json_object_foreach(node, key, val) {
        if (strcmp(key, "driver") && strcmp(key, "offset") && strcmp(key, "size") &&
            strcmp(key, "file"))
            return refuse_key(prefix, key);
    }
    return 0;
}

/* An image node under PREFIX ("" the name itself, "backing" the backing
 * image vdsm's sub-chain measure names): "driver", "file" (a local file,
 * or at the top a byte range), "file.driver"/"file.filename", "backing"
 * (null, or at the top a backing image), and "offset"/"size" when the
 * image is a byte range itself (DRIVER raw, at the top). */
static int check_image(json_t *node, const char *prefix, const char *driver)
{
    bool top = !*prefix;
    const char *key;
    json_t *val;
    char sub[160];
    int ret;

    json_t *drv = json_object_get(node, "driver");
    if (drv && (ret = want_string(drv, prefix, "driver")) < 0)
        return ret;
    json_t *file = json_object_get(node, "file");
    if (json_is_object(file)) {
        json_t *fdrv = json_object_get(file, "driver");
        dotted(sub, sizeof(sub), prefix, "file");
        if (top && json_is_string(fdrv) && !strcmp(json_string_value(fdrv), "raw"))
            ret = check_window(file, sub);
        else
            ret = check_file(file, sub);
        if (ret < 0)
            return ret;
    } else if (file && !top) {
        return kimg_fail(-EINVAL, "Invalid parameter type for '%.100s', expected: object",
                         dotted(sub, sizeof(sub), prefix, "file"));
    }
    /* the dotted spelling of a local "file" */
    json_t *ddrv = json_object_get(node, "file.driver"),
           *dpath = json_object_get(node, "file.filename");
    if (ddrv && (ret = want_string(ddrv, prefix, "file.driver")) < 0)
        return ret;
    if (dpath && (ret = want_string(dpath, prefix, "file.filename")) < 0)
        return ret;
    if ((ddrv || dpath) &&
        (ret = local_file(json_string_value(ddrv), json_string_value(dpath))) < 0)
        return ret;
    json_t *backing = json_object_get(node, "backing");
    if (backing && !json_is_null(backing)) {
        if (!top || !json_is_object(backing))
            return kimg_fail(-EINVAL, "\"%.40s%sbacking\" may only be null%s", prefix,
                             top ? "" : ".", top ? " or a backing image ({\"driver\": FORMAT, "
                             "\"file\": {...}, \"backing\": null})" : "");
        if ((ret = check_image(backing, "backing", NULL)) < 0)
            return ret;
    }
    bool window = top && driver && !strcmp(driver, "raw");
    json_object_foreach(node, key, val) {
        if (!strcmp(key, "driver") || !strcmp(key, "file") || !strcmp(key, "backing") ||
            !strcmp(key, "file.driver") || !strcmp(key, "file.filename"))
            continue;
        if (window && (!strcmp(key, "offset") || !strcmp(key, "size")))
            continue;
        return refuse_key(prefix, key);
    }
    return 0;
}

/* VAL as an option value: strings as they are, integers in decimal,
 * booleans on/off (qemu's keyval spellings). */
static int value_text(json_t *val, char *buf, size_t cap, const char **out)
{
    switch (json_typeof(val)) {
    case JSON_STRING:
        *out = json_string_value(val);
        return 0;
    case JSON_INTEGER:
        snprintf(buf, cap, "%" JSON_INTEGER_FORMAT, json_integer_value(val));
        *out = buf;
        return 0;
    case JSON_TRUE:
        *out = "on";
        return 0;
    case JSON_FALSE:
        *out = "off";
        return 0;
    default:
        return -EINVAL;
    }
}

/* Flatten OBJ under PREFIX into OPTS (dotted keys). */
static int flatten(const char *name, json_t *obj, const char *prefix, struct kimg_opts **opts,
                   int depth)
{
    const char *key;
    json_t *val;
    if (depth > MAX_DEPTH)
        return bad(name, "JSON options nested too deep");
    json_object_foreach(obj, key, val) {
        char full[512], num[32];
        const char *text;
        if (snprintf(full, sizeof(full), "%s%s%s", prefix, *prefix ? "." : "", key) >=
            (int)sizeof(full))
            return bad(name, "an option name is too long");
        if (json_is_object(val)) {
            int ret = flatten(name, val, full, opts, depth + 1);
            if (ret < 0)
                return ret;
            continue;
        }
        /* a backing image's "backing": null, as --image-opts spells it
         * (backing.backing=: opened without its own backing file) */
        if (json_is_null(val) && !strcmp(key, "backing"))
            text = "";
        else if (value_text(val, num, sizeof(num), &text) < 0)
            return kimg_fail(-EINVAL, "option '%.200s': kimg takes strings, numbers and "
                             "booleans here (null only for \"backing\")", full);
        if (kimg_opts_set(opts, full, text) < 0)
            return kimg_fail(-ENOMEM, "out of memory");
    }
    return 0;
}

static int get_u64(const char *name, json_t *obj, const char *key, uint64_t *out, bool *has)
{
    json_t *v = json_object_get(obj, key);
    *has = v != NULL;
    if (!v)
        return 0;
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = (uint64_t)json_integer_value(v);
        return 0;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end;
        errno = 0;
        unsigned long long n = strtoull(s, &end, 10);
        if (*s && !*end && errno == 0 && s[0] != '-') {
            *out = n;
            return 0;
        }
    }
    (void)name;
    return kimg_fail(-EINVAL, "Parameter '%s' expects a non-negative number", key);
}

/* A raw node with offset/size: its range into W, its own keys taken out. */
static int take_window(const char *name, json_t *raw, struct window *w)
{
    bool has_off;
    int ret = get_u64(name, raw, "offset", &w->off, &has_off);
    if (ret == 0)
        ret = get_u64(name, raw, "size", &w->size, &w->has_size);
    if (ret < 0)
        return ret;
    w->on = true;
    w->node = raw;
    return 0;
}

/* qemu's QDict order (image_opts.c keeps the same hash). */
static unsigned bucket(const char *key)
{
    uint32_t v = 0x238F13AFu * (uint32_t)strlen(key);
    for (unsigned i = 0; key[i]; i++)
        v += (uint32_t)(unsigned char)key[i] << (i * 5 % 24);
    return (1103515243u * v + 12345u) % 512u;
}

/* NODE printed as qemu prints a json: filename: keys in QDict order,
 * values as given. */
static void print_node(FILE *f, json_t *node)
{
    const char *keys[64], *key;
    json_t *val;
    int n = 0;
    json_object_foreach(node, key, val) {
        if (n < 64)
            keys[n++] = key;
    }
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && bucket(keys[j - 1]) > bucket(keys[j]); j--) {
            const char *t = keys[j];
            keys[j] = keys[j - 1];
            keys[j - 1] = t;
        }
    fputc('{', f);
    for (int i = 0; i < n; i++) {
        val = json_object_get(node, keys[i]);
        fputs(i ? ", " : "", f);
        kimg_json_print_string(f, keys[i]);
        fputs(": ", f);
        if (json_is_object(val))
            print_node(f, val);
        else if (json_is_string(val))
            kimg_json_print_string(f, json_string_value(val));
        else if (json_is_integer(val))
            fprintf(f, "%" JSON_INTEGER_FORMAT, json_integer_value(val));
        else
            fputs(json_is_true(val) ? "true" : json_is_false(val) ? "false" : "null", f);
    }
    fputc('}', f);
}

/* "json:" and NODE as print_node prints it (malloc'd), or NULL. */
static char *json_name_of(json_t *node)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return NULL;
    fputs("json:", f);
    print_node(f, node);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* The image on a byte range of a file: W's file opened read-only, the
 * range as a window, FORMAT (NULL: probed) on it. */
static int open_window(struct kimg **out, const char *name, json_t *root, const char *format,
                       struct window *w, unsigned flags)
{
    if (flags & KIMG_OPEN_RDWR)
        return bad(name, "a byte range of a file (offset/size) opens read-only");
    json_t *file = json_object_get(w->node, "file");
    const char *drv = file ? json_string_value(json_object_get(file, "driver")) : NULL;
    const char *path = file ? json_string_value(json_object_get(file, "filename")) : NULL;
    if (!json_is_object(file) || !path || (drv && strcmp(drv, "file") && strcmp(drv, "host_device")))
        return bad(name, "the raw driver's \"file\" must be {\"driver\": \"file\", "
                         "\"filename\": PATH}");
    int lret = local_file(drv, path);
    if (lret < 0)
        return lret;
    if (json_object_size(file) != (size_t)(drv ? 2 : 1))
        return bad(name, "only \"driver\" and \"filename\" are taken in a byte range's file");
    /* qemu names the protocol it picked (virt-v2v's probe leaves it out) */
    if (!drv)
        json_object_set_new(file, "driver", json_string("file"));
    const char *k;
    json_t *v;
    json_object_foreach(w->node, k, v) {
        if (strcmp(k, "driver") && strcmp(k, "offset") && strcmp(k, "size") && strcmp(k, "file"))
            return kimg_fail(-EINVAL, "Block format 'raw' does not support the option "
                             "'%.200s'", k);
    }
    struct kimg_file *base, *win;
    uint64_t fsize;
    int ret = kimg_file_open(&base, path, 0);
    if (ret < 0)
        return ret;
    ret = kimg_file_size(base, &fsize);
    if (ret < 0) {
        kimg_file_close(base);
        return ret;
    }
    uint64_t size = w->has_size ? w->size : fsize > w->off ? fsize - w->off : 0;
    if (w->off > fsize || size > fsize - w->off) {
        kimg_file_close(base);
        return kimg_fail(-EINVAL, "The sum of offset (%" PRIu64 ") and size (%" PRIu64 ") has "
                         "to be smaller or equal to the  actual size of the containing file "
                         "(%" PRIu64 ")", w->off, size, fsize);
    }
    /* names as qemu shows them: the range's own node for the file (a
     * format's extent list shows it), the whole name for the image */
    char *node_name = json_name_of(w->node), *root_name = NULL;
    if (!node_name) {
        kimg_file_close(base);
        return kimg_fail(-ENOMEM, "out of memory");
    }
    ret = kimg_file_open_window(&win, base, w->off, size, node_name, true);
    free(node_name);
    if (ret < 0)
        return ret;
    /* the window stands for the file: nothing beside it is opened */
    ret = kimg_open_file(out, win, format, flags | KIMG_OPEN_NO_BACKING);
    if (ret == 0 && w->node != root) {
        /* a probed format is named in the image's name, as qemu names it */
        if (!json_object_get(root, "driver"))
            json_object_set_new(root, "driver", json_string(kimg_format_name(*out)));
        root_name = json_name_of(root);
        free((*out)->opts_name);
        (*out)->opts_name = root_name;
        root_name = NULL;
    }
    free(root_name);
    return ret;
}

int kimg_open_json_name(struct kimg **out, const char *name, const char *format,
                        unsigned flags)
{
    json_error_t jerr;
    json_t *root = NULL;
    struct kimg_opts *opts = NULL;
    struct window w = { 0 };
    int ret;

    *out = NULL;
    if (flags & KIMG_OPEN_UNTRUSTED)
        return kimg_fail(-EPERM, "refusing the json: name '%.64s' under --untrusted", name);
    root = json_loads(name + 5, 0, &jerr);
    if (!root)
        return kimg_fail(-EINVAL, "Could not parse the JSON options: JSON parse error, "
                         "%.200s", jerr.text);
    if (!json_is_object(root)) {
        ret = kimg_fail(-EINVAL, "Invalid JSON object given");
        goto out;
    }
    /* -f wins over "driver", as in qemu-img */
    const char *driver = format ? format : json_string_value(json_object_get(root, "driver"));
    if (format)
        json_object_set_new(root, "driver", json_string(format));
    /* nothing outside issue 16's keys */
    ret = check_image(root, "", driver);
    if (ret < 0)
        goto out;
    json_t *backing = json_object_get(root, "backing");
    if (json_is_null(backing))
        flags |= KIMG_OPEN_NO_BACKING;
    /* a byte range opens nothing beside it */
    if (json_is_object(backing) && ((driver && !strcmp(driver, "raw") &&
                                     (json_object_get(root, "offset") ||
                                      json_object_get(root, "size"))) ||
                                    (json_is_object(json_object_get(root, "file")) &&
                                     json_is_string(json_object_get(json_object_get(root, "file"),
                                                                    "driver")) &&
                                     !strcmp(json_string_value(json_object_get(
                                                 json_object_get(root, "file"), "driver")),
                                             "raw")))) {
        ret = bad(name, "a byte range of a file (offset/size) takes no backing image");
        goto out;
    }
    json_t *file = json_object_get(root, "file");
    const char *fdrv = json_is_object(file) ? json_string_value(json_object_get(file, "driver"))
                                            : NULL;
    if (driver && !strcmp(driver, "raw") &&
        (json_object_get(root, "offset") || json_object_get(root, "size"))) {
        ret = take_window(name, root, &w);
        if (ret == 0)
            ret = open_window(out, name, root, "raw", &w, flags);
        goto out;
    }
    if (fdrv && !strcmp(fdrv, "raw")) {
        const char *k;
        json_t *v;
        json_object_foreach(root, k, v) {
            if (strcmp(k, "driver") && strcmp(k, "file") && strcmp(k, "backing")) {
                ret = bad(name, "a format over a byte range takes no other options");
                goto out;
            }
        }
        ret = take_window(name, file, &w);
        if (ret == 0)
            ret = open_window(out, name, root, driver, &w, flags);
        goto out;
    }
    /* the rest is --image-opts spelled in JSON */
    if (json_is_null(backing))
        json_object_del(root, "backing");
    if (driver && !json_object_get(root, "driver"))
        json_object_set_new(root, "driver", json_string(driver));
    ret = flatten(name, root, "", &opts, 0);
    if (ret == 0) {
        const char *fd = NULL, *fp = NULL;
        for (int i = 0; i < kimg_opts_count(opts); i++) {
            if (!strcmp(kimg_opts_key(opts, i), "file.driver"))
                fd = kimg_opts_value(opts, i);
            else if (!strcmp(kimg_opts_key(opts, i), "file.filename"))
                fp = kimg_opts_value(opts, i);
        }
        ret = local_file(fd ? fd : "file", fp);
    }
    if (ret == 0)
        ret = kimg_open_opts(out, opts, flags);
out:
    kimg_opts_free(opts);
    json_decref(root);
    return ret;
}
