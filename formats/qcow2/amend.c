/*
 * amend.c — the qcow2 driver's amend (qemu-img amend -o): the options read
 * and refused in qemu 7.2's order (qcow2_amend_options), then applied in
 * its order: the LUKS key slots (crypto.c), upgrade to v3, refcount width
 * (amend_refcount.c), data file name / data-file-raw, the backing file (only confirmed, never changed:
 * qemu-img 7.2 sends users to rebase), lazy refcounts, the size (resize.c),
 * downgrade to v2 last (amend_compat.c).  As in qemu, a later refusal
 * leaves the earlier changes made; each change is crash-safe on its own.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"

/* qemu 7.2's amend options for qcow2, in its order (`amend -o help` lists
 * them sorted; kimg_amend validates against them). */
const struct kimg_optdesc qcow2_amend_opts[] = {
    { "encrypt.state", KIMG_OPT_STRING,
      "Select new state of affected keyslots (active/inactive)" },
    { "encrypt.keyslot", KIMG_OPT_NUMBER, "Select a single keyslot to modify explicitly" },
    { "encrypt.old-secret", KIMG_OPT_STRING, "Select all keyslots that match this password" },
    { "encrypt.new-secret", KIMG_OPT_STRING,
      "New secret to set in the matching keyslots. Empty string to erase" },
    { "encrypt.iter-time", KIMG_OPT_NUMBER, "Time to spend in PBKDF in milliseconds" },
    { "size", KIMG_OPT_SIZE, "Virtual disk size" },
    { "compat", KIMG_OPT_STRING, "Compatibility level (v2 [0.10] or v3 [1.1])" },
    { "backing_file", KIMG_OPT_STRING, "File name of a base image" },
    { "backing_fmt", KIMG_OPT_STRING, "Image format of the base image" },
    { "data_file", KIMG_OPT_STRING, "File name of an external data file" },
    { "data_file_raw", KIMG_OPT_BOOL,
      "The external data file must stay valid as a raw image" },
    { "lazy_refcounts", KIMG_OPT_BOOL, "Postpone refcount updates" },
    { "refcount_bits", KIMG_OPT_NUMBER, "Width of a reference count entry in bits" },
    { NULL, 0, NULL },
};

/* The amend options, in the order qemu's qcow2_amend_opts lists them
 * (the order refusals are checked in). */
static const char *const amend_keys[] = {
    "encrypt.state", "encrypt.keyslot", "encrypt.old-secret", "encrypt.new-secret",
    "encrypt.iter-time", "size", "compat", "backing_file", "backing_fmt", "data_file",
    "data_file_raw", "lazy_refcounts", "refcount_bits", NULL,
};

/* The last value given for KEY, or NULL if absent (*PRESENT tells). */
static const char *opt(const struct kimg_opts *o, const char *key, bool *present)
{
    *present = false;
    for (int i = kimg_opts_count(o) - 1; i >= 0; i--)
        if (!strcmp(kimg_opts_key(o, i), key)) {
            *present = true;
            return kimg_opts_value(o, i);
        }
    return NULL;
}

static bool same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

struct amend_req {
    bool encrypt;               /* encrypt.* given: key slots */
    int version;                /* wanted */
    uint64_t size;              /* 0: unchanged (as qemu) */
    bool backing_given;
    const char *backing_file, *backing_fmt;
    bool data_file_given;
    const char *data_file;
    bool data_file_raw;
    bool lazy;
    uint32_t refcount_order;
};

/* qemu's parse loop: every refusal that needs no change first. */
static int read_request(struct qcow2_state *s, struct kimg_opts *opts, struct amend_req *r)
{
    bool has;
    const char *v;
    int ret;

    for (int i = 0; i < kimg_opts_count(opts); i++) {
        int k = 0;
        while (amend_keys[k] && strcmp(amend_keys[k], kimg_opts_key(opts, i)))
            k++;
        if (!amend_keys[k])
            return kimg_fail(-EINVAL, "Invalid parameter '%s'", kimg_opts_key(opts, i));
    }
    memset(r, 0, sizeof(*r));
    r->version = (int)s->version;
    r->data_file_raw = s->data_file_raw;
    r->lazy = (s->compat & QCOW2_COMPAT_LAZY) != 0;
    r->refcount_order = s->refcount_order;

    for (int k = 0; k < 5; k++) {
        opt(opts, amend_keys[k], &has);
        if (!has)
            continue;
        if (s->crypt_method == QCOW2_CRYPT_NONE)
            return kimg_fail(-EINVAL, "Can't amend encryption options - encryption not present");
        if (s->crypt_method != QCOW2_CRYPT_LUKS)
            return kimg_fail(-ENOTSUP, "Only LUKS encryption options can be amended");
        r->encrypt = true;
    }
    if ((ret = kimg_opts_get_size(opts, "size", 0, &r->size)) < 0)
        return ret;
    v = opt(opts, "compat", &has);
    if (has) {
        if (v && (!strcmp(v, "0.10") || !strcmp(v, "v2")))
            r->version = 2;
        else if (v && (!strcmp(v, "1.1") || !strcmp(v, "v3")))
            r->version = 3;
        else
            return kimg_fail(-EINVAL, "Unknown compatibility level %s", v ? v : "");
    }
    r->backing_file = opt(opts, "backing_file", &has);
    r->backing_given = has;
    r->backing_fmt = opt(opts, "backing_fmt", &has);
    r->backing_given |= has;
    r->data_file = opt(opts, "data_file", &r->data_file_given);
    if (r->data_file_given && !s->has_data_file)
        return kimg_fail(-EINVAL, "data-file can only be set for images that use an "
                         "external data file");
    if ((ret = kimg_opts_get_bool(opts, "data_file_raw", s->data_file_raw,
                                  &r->data_file_raw)) < 0)
        return ret;
    if (r->data_file_raw && !s->data_file_raw)
        return kimg_fail(-EINVAL, "data-file-raw cannot be set on existing images");
    if ((ret = kimg_opts_get_bool(opts, "lazy_refcounts", r->lazy, &r->lazy)) < 0)
        return ret;
    uint64_t bits;
    if ((ret = kimg_opts_get_u64(opts, "refcount_bits", s->refcount_bits, &bits)) < 0)
        return ret;
    if (bits == 0 || bits > 64 || (bits & (bits - 1)))
        return kimg_fail(-EINVAL, "Refcount width must be a power of two and may not "
                         "exceed 64 bits");
    r->refcount_order = (uint32_t)__builtin_ctzll(bits);
    return 0;
}

static int header_update(struct qcow2_state *s)
{
    int ret = qcow2_write_header(s);
    if (ret == 0)
        ret = kimg_file_sync(s->file);
    if (ret < 0)
        return kimg_fail(ret, "Failed to update the image header: %s", strerror(-ret));
    return 0;
}

/* data_file / data_file_raw: the name extension and the autoclear bit. */
static int update_data_file(struct qcow2_state *s, const struct amend_req *r)
{
    bool changed = false;
    int ret;
    if (!r->data_file_raw && s->data_file_raw) {
        s->autoclear &= ~QCOW2_AUTOCLEAR_DATA_RAW;
        s->data_file_raw = false;
        changed = true;
    }
    if (r->data_file_given && !same_str(*r->data_file ? r->data_file : NULL,
                                        s->data_file_name)) {
        char *name = *r->data_file ? strdup(r->data_file) : NULL;
        if (*r->data_file && !name)
            return -ENOMEM;
        ret = qcow2_set_ext(s, QCOW2_EXT_DATA_FILE, name,
                            name ? (uint32_t)strlen(name) : 0);
        if (ret < 0) {
            free(name);
            return ret;
        }
        free(s->data_file_name);
        s->data_file_name = name;
        changed = true;
    }
    return changed ? header_update(s) : 0;
}

static int update_lazy(struct qcow2_state *s, const struct amend_req *r)
{
    bool lazy = (s->compat & QCOW2_COMPAT_LAZY) != 0;
    int ret;
    if (lazy == r->lazy)
        return 0;
    if (r->lazy) {
        if (r->version < 3)
            return kimg_fail(-EINVAL, "Lazy refcounts only supported with compatibility "
                             "level 1.1 and above (use compat=1.1 or greater)");
        s->compat |= QCOW2_COMPAT_LAZY;
        ret = header_update(s);
        if (ret < 0)
            s->compat &= ~QCOW2_COMPAT_LAZY;
        return ret;
    }
    /* refcounts right first (an image left dirty was rebuilt at open) */
    if (s->incompat & QCOW2_INCOMPAT_DIRTY) {
        ret = qcow2_rebuild_refcounts(s);
        if (ret == 0)
            ret = qcow2_update_incompat(s, 0, QCOW2_INCOMPAT_DIRTY);
        if (ret < 0)
            return kimg_fail(ret, "Failed to make the image clean: %s", strerror(-ret));
    }
    s->compat &= ~QCOW2_COMPAT_LAZY;
    ret = header_update(s);
    if (ret < 0)
        s->compat |= QCOW2_COMPAT_LAZY;
    return ret;
}

int qcow2_amend(struct kimg *img, struct kimg_opts *opts, bool force)
{
    struct qcow2_state *s = img->state;
    struct amend_req r;
    int ret;

    qcow2_assert_locked(s);
    ret = read_request(s, opts, &r);
    if (ret < 0)
        goto out;
    s->zcache_valid = false;
    /* key slots first, as qemu (a later refusal leaves them changed);
     * --force matters only here */
    if (r.encrypt) {
        ret = qcow2_crypto_amend(s, opts, force);
        if (ret < 0)
            goto out;
    }
    /* upgrade first: later changes may need v3 */
    if (r.version > (int)s->version) {
        ret = qcow2_amend_upgrade(s);
        if (ret < 0)
            goto out;
    }
    if (r.refcount_order != s->refcount_order) {
        if (r.version < 3 && r.refcount_order != 4) {
            ret = kimg_fail(-EINVAL, "Refcount widths other than 16 bits require "
                            "compatibility level 1.1 or above (use compat=1.1 or greater)");
            goto out;
        }
        ret = qcow2_change_refcount_order(s, r.refcount_order);
        if (ret < 0)
            goto out;
    }
    ret = update_data_file(s, &r);
    if (ret < 0)
        goto out;
    /* qemu-img 7.2 changes the backing file only through rebase: amend
     * accepts the values the image already has, and refuses others */
    if (r.backing_given && (!same_str(r.backing_file, s->img->backing_name) ||
                            !same_str(r.backing_fmt, s->img->backing_format))) {
        ret = kimg_fail(-EINVAL, "Cannot amend the backing file (use 'kimg rebase' instead)");
        goto out;
    }
    ret = update_lazy(s, &r);
    if (ret < 0)
        goto out;
    if (r.size) {
        ret = qcow2_truncate(img, r.size, KIMG_PREALLOC_OFF);
        if (ret < 0)
            goto out;
    }
    /* downgrade last, once the rest is what v2 can hold */
    if (r.version < (int)s->version)
        ret = qcow2_amend_downgrade(s);
out:
    if (ret == 0 && qcow2_can_write(s))
        ret = qcow2_flush_caches(s);
    return ret;
}
