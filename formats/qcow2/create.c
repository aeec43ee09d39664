/*
 * create.c — `create -f qcow2`: qemu-img's options and their checks, the
 * initial layout (header, refcount table, refcount block, L1 table, as
 * qemu-img lays them out), preallocation, the LUKS area of an encrypted
 * image (crypto.c) and the external data file.
 * The header's magic is written last, so a failed create never leaves a
 * file that looks like a valid image.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"

const struct kimg_optdesc qcow2_create_opts[] = {
    { "backing_file", KIMG_OPT_STRING, "File name of a base image" },
    { "backing_fmt", KIMG_OPT_STRING, "Image format of the base image" },
    { "cluster_size", KIMG_OPT_SIZE, "qcow2 cluster size" },
    { "compat", KIMG_OPT_STRING, "Compatibility level (v2 [0.10] or v3 [1.1])" },
    { "compression_type", KIMG_OPT_STRING,
      "Compression method used for image cluster compression" },
    { "data_file", KIMG_OPT_STRING, "File name of an external data file" },
    { "data_file_raw", KIMG_OPT_BOOL, "The external data file must stay valid as a raw image" },
    { "encrypt.cipher-alg", KIMG_OPT_STRING, "Name of encryption cipher algorithm" },
    { "encrypt.cipher-mode", KIMG_OPT_STRING, "Name of encryption cipher mode" },
    { "encrypt.format", KIMG_OPT_STRING,
      "Encrypt the image, format choices: 'aes', 'luks'" },
    { "encrypt.hash-alg", KIMG_OPT_STRING, "Name of encryption hash algorithm" },
    { "encrypt.iter-time", KIMG_OPT_NUMBER, "Time to spend in PBKDF in milliseconds" },
    { "encrypt.ivgen-alg", KIMG_OPT_STRING, "Name of IV generator algorithm" },
    { "encrypt.ivgen-hash-alg", KIMG_OPT_STRING, "Name of IV generator hash algorithm" },
    { "encrypt.key-secret", KIMG_OPT_STRING,
      "ID of secret providing qcow AES key or LUKS passphrase" },
    { "encryption", KIMG_OPT_BOOL,
      "Encrypt the image with format 'aes'. (Deprecated in favor of encrypt.format=aes)" },
    { "extended_l2", KIMG_OPT_BOOL, "Extended L2 tables" },
    { "lazy_refcounts", KIMG_OPT_BOOL, "Postpone refcount updates" },
    { "preallocation", KIMG_OPT_STRING,
      "Preallocation mode (allowed values: off, metadata, falloc, full)" },
    { "refcount_bits", KIMG_OPT_NUMBER, "Width of a reference count entry in bits" },
    { "size", KIMG_OPT_SIZE, "Virtual disk size" },
    { NULL, 0, NULL },
};

/* The options qemu-img's "Formatting ..." line shows for qcow2, in its
 * order, with the defaults it shows when one was not given. */
const struct kimg_shown_opt qcow2_formatting_opts[] = {
    { "encryption", NULL, false },
    { "encrypt.format", NULL, false }, { "encrypt.key-secret", NULL, false },
    { "encrypt.cipher-alg", NULL, false }, { "encrypt.cipher-mode", NULL, false },
    { "encrypt.ivgen-alg", NULL, false }, { "encrypt.ivgen-hash-alg", NULL, false },
    { "encrypt.hash-alg", NULL, false }, { "encrypt.iter-time", NULL, false },
    { "cluster_size", "65536", true }, { "extended_l2", "off", false },
    { "preallocation", NULL, false }, { "compression_type", "zlib", false },
    { "size", NULL, true }, { "backing_file", NULL, false },
    { "backing_fmt", NULL, false }, { "compat", NULL, false },
    { "data_file", NULL, false }, { "data_file_raw", NULL, false },
    { "lazy_refcounts", "off", false }, { "refcount_bits", "16", false },
    { "nocow", NULL, false }, { "extent_size_hint", NULL, true },
    { NULL, NULL, false },
};

struct create_params {
    uint64_t size;
    uint32_t cluster_bits;
    int version;
    bool lazy;
    uint32_t refcount_order;
    enum kimg_prealloc prealloc;
    int compression;
    bool ext_l2;
    const char *data_file;
    bool data_file_raw;
    const char *backing_file, *backing_fmt;
};

static int parse_params(const struct kimg_create_args *a, struct create_params *p)
{
    const struct kimg_opts *o = a->opts;
    const char *v;
    uint64_t u;
    bool b;
    int ret;

    memset(p, 0, sizeof(*p));
    p->size = a->size;
    p->backing_file = a->backing_file;
    p->backing_fmt = a->backing_format;

    /* qemu's order: first the values its option visitor refuses (compat,
     * encrypt.*, preallocation, compression_type: in that order), then
     * the checks of qcow2_co_create, the encryption's (the secret looked
     * up, the cipher) last; all before any file is made */
    if ((ret = qcow2_crypto_alias_check(o)) < 0)
        return ret;
    v = kimg_opts_get(o, "compat");
    if (v && strcmp(v, "1.1") && strcmp(v, "v3") && strcmp(v, "0.10") && strcmp(v, "v2"))
        return kimg_fail(-EINVAL, "Parameter 'version' does not accept value '%s'", v);
    if ((ret = qcow2_crypto_opts_check(o)) < 0)
        return ret;
    v = kimg_opts_get(o, "preallocation");
    if (v && strcmp(v, "off") && strcmp(v, "metadata") && strcmp(v, "falloc") &&
        strcmp(v, "full"))
        return kimg_fail(-EINVAL, "Parameter 'preallocation' does not accept value '%s'", v);
    v = kimg_opts_get(o, "compression_type");
    if (v && strcmp(v, "zlib") && strcmp(v, "zstd"))
        return kimg_fail(-EINVAL, "Parameter 'compression-type' does not accept value '%s'", v);

    ret = kimg_opts_get_size(o, "cluster_size", 65536, &u);
    if (ret < 0)
        return ret;
    if (u < 512 || u > (2u << 20) || (u & (u - 1)))
        return kimg_fail(-EINVAL, "Cluster size must be a power of two between 512 and 2048k");
    p->cluster_bits = (uint32_t)__builtin_ctzll(u);

    v = kimg_opts_get(o, "compat");
    if (!v || !strcmp(v, "1.1") || !strcmp(v, "v3"))
        p->version = 3;
    else if (!strcmp(v, "0.10") || !strcmp(v, "v2"))
        p->version = 2;
    else
        return kimg_fail(-EINVAL, "Parameter 'version' does not accept value '%s'", v);

    ret = kimg_opts_get_bool(o, "lazy_refcounts", false, &p->lazy);
    if (ret < 0)
        return ret;
    if (p->lazy && p->version < 3)
        return kimg_fail(-EINVAL, "Lazy refcounts only supported with compatibility level "
                         "1.1 and above (use version=v3 or greater)");

    ret = kimg_opts_get_u64(o, "refcount_bits", 16, &u);
    if (ret < 0)
        return ret;
    if (u == 0 || u > 64 || (u & (u - 1)))
        return kimg_fail(-EINVAL, "Refcount width must be a power of two and may not "
                         "exceed 64 bits");
    if (u != 16 && p->version < 3)
        return kimg_fail(-EINVAL, "Different refcount widths than 16 bits require "
                         "compatibility level 1.1 or above (use version=v3 or greater)");
    p->refcount_order = (uint32_t)__builtin_ctzll(u);

    v = kimg_opts_get(o, "preallocation");
    if (!v || !strcmp(v, "off"))
        p->prealloc = KIMG_PREALLOC_OFF;
    else if (!strcmp(v, "metadata"))
        p->prealloc = KIMG_PREALLOC_METADATA;
    else if (!strcmp(v, "falloc"))
        p->prealloc = KIMG_PREALLOC_FALLOC;
    else if (!strcmp(v, "full"))
        p->prealloc = KIMG_PREALLOC_FULL;
    else
        return kimg_fail(-EINVAL, "Parameter 'preallocation' does not accept value '%s'", v);

    v = kimg_opts_get(o, "compression_type");
    if (!v || !strcmp(v, "zlib"))
        p->compression = QCOW2_COMPRESSION_ZLIB;
    else if (!strcmp(v, "zstd"))
        p->compression = QCOW2_COMPRESSION_ZSTD;
    else
        return kimg_fail(-EINVAL, "Parameter 'compression-type' does not accept value '%s'", v);
    if (p->compression != QCOW2_COMPRESSION_ZLIB && p->version < 3)
        return kimg_fail(-EINVAL, "Non-zlib compression type is only supported with "
                         "compatibility level 1.1 and above (use version=v3 or greater)");

    ret = kimg_opts_get_bool(o, "extended_l2", false, &p->ext_l2);
    if (ret < 0)
        return ret;
    if (p->ext_l2) {
        if (p->version < 3)
            return kimg_fail(-EINVAL, "Extended L2 entries are only supported with "
                             "compatibility level 1.1 and above (use version=v3 or greater)");
        if (p->cluster_bits < QCOW2_EXTL2_MIN_BITS)
            return kimg_fail(-EINVAL, "Extended L2 entries are only supported with "
                             "cluster sizes of at least 16384 bytes");
    }

    p->data_file = kimg_opts_get(o, "data_file");
    if (p->data_file && !*p->data_file)
        p->data_file = NULL;
    /* "file:NAME" makes and names NAME, as qemu; other protocols refused */
    if (p->data_file && (ret = kimg_image_path(p->data_file, &p->data_file)) < 0)
        return ret;
    ret = kimg_opts_get_bool(o, "data_file_raw", false, &p->data_file_raw);
    if (ret < 0)
        return ret;
    if (p->data_file && p->version < 3)
        return kimg_fail(-EINVAL, "External data files are only supported with "
                         "compatibility level 1.1 and above (use version=v3 or greater)");
    if (p->data_file_raw && !p->data_file)
        return kimg_fail(-EINVAL, "data-file-raw requires data-file");
    if (p->data_file_raw && p->backing_file)
        return kimg_fail(-EINVAL, "Backing file and data-file-raw cannot be used at the "
                         "same time");
    if (p->backing_file && p->prealloc != KIMG_PREALLOC_OFF && !p->ext_l2)
        return kimg_fail(-EINVAL, "Backing file and preallocation can only be used at the "
                         "same time if extended_l2 is on");
    if (p->backing_file && strlen(p->backing_file) > QCOW2_MAX_BACKING_NAME)
        return kimg_fail(-EINVAL, "Backing file name too long");
    if (p->data_file_raw && p->prealloc == KIMG_PREALLOC_OFF)
        p->prealloc = KIMG_PREALLOC_METADATA;   /* qemu does the same */

    /* encryption: the secret looked up, the cipher made (written by
     * qcow2_crypto_create) */
    ret = qcow2_crypto_create_check(o, &b, NULL);
    if (ret < 0)
        return ret;

    /* the L1 table must be able to map the whole disk */
    uint32_t l2_bits = qcow2_l2_bits_of(p->cluster_bits, p->ext_l2);
    uint64_t span = 1ULL << (p->cluster_bits + l2_bits);
    if (p->size > (uint64_t)INT64_MAX - span ||
        (p->size + span - 1) / span > QCOW2_MAX_L1_BYTES / 8)
        return kimg_fail(-EFBIG, "The image size is too large for file format 'qcow2' "
                         "(try using a larger cluster size)");
    return 0;
}

/* Fill the in-memory state for a new, empty image in S. */
static int init_state(struct qcow2_state *s, const struct create_params *p)
{
    int ret;

    s->version = (uint32_t)p->version;
    s->cluster_bits = p->cluster_bits;
    s->img->size = p->size;
    s->refcount_order = p->refcount_order;
    s->header_length = p->version >= 3 ? QCOW2_HEADER_LEN_CT : QCOW2_V2_HEADER_LEN;
    s->hdr_raw_len = s->header_length;
    s->hdr_raw = calloc(1, s->hdr_raw_len);
    if (!s->hdr_raw)
        return -ENOMEM;
    s->compression_type = (uint8_t)p->compression;
    if (p->compression)
        s->incompat |= QCOW2_INCOMPAT_COMPRESS;
    if (p->ext_l2)
        s->incompat |= QCOW2_INCOMPAT_EXTL2;
    if (p->data_file)
        s->incompat |= QCOW2_INCOMPAT_DATA_FILE;
    if (p->data_file_raw)
        s->autoclear |= QCOW2_AUTOCLEAR_DATA_RAW;
    if (p->lazy)
        s->compat |= QCOW2_COMPAT_LAZY;
    s->ext_l2 = p->ext_l2;
    s->has_data_file = p->data_file != NULL;
    s->data_file_raw = p->data_file_raw;
    qcow2_set_geometry(s);

    /* extensions in qemu's order */
    if (p->backing_file) {
        s->img->backing_name = strdup(p->backing_file);
        if (!s->img->backing_name)
            return -ENOMEM;
        if (p->backing_fmt) {
            s->img->backing_format = strdup(p->backing_fmt);
            if (!s->img->backing_format)
                return -ENOMEM;
            ret = qcow2_set_ext(s, QCOW2_EXT_BACKING_FMT, p->backing_fmt,
                                (uint32_t)strlen(p->backing_fmt));
            if (ret < 0)
                return ret;
        }
    }
    if (p->data_file) {
        s->data_file_name = strdup(p->data_file);
        if (!s->data_file_name)
            return -ENOMEM;
        ret = qcow2_set_ext(s, QCOW2_EXT_DATA_FILE, p->data_file,
                            (uint32_t)strlen(p->data_file));
        if (ret < 0)
            return ret;
    }
    /* qemu-img writes the feature name table only with clusters of 8k and
     * more (observed with qemu-img 7.2); do the same so images match */
    if (p->version >= 3 && s->cluster_size >= 8192) {
        ret = qcow2_add_feature_table(s);
        if (ret < 0)
            return ret;
    }

    /* layout: header, refcount table, one refcount block, L1 table */
    s->rt_offset = s->cluster_size;
    s->rt_clusters = 1;
    s->rt_entries = s->cluster_size / 8;
    s->rt = calloc(s->rt_entries, 8);
    if (!s->rt)
        return -ENOMEM;
    s->rt[0] = 2 * s->cluster_size;
    s->l1_offset = 3 * s->cluster_size;
    s->l1_size = 0;
    s->alloc_end = 3;
    ret = qcow2_cache_init(&s->l2_cache, s, 16, s->cluster_size, "L2 table");
    if (ret < 0)
        return ret;
    ret = qcow2_cache_init(&s->rb_cache, s, 8, s->cluster_size, "refcount block");
    if (ret < 0)
        return ret;
    s->l2_cache.depends = &s->rb_cache;
    return 0;
}

int qcow2_create_in(struct qcow2_state *s, const struct kimg_create_args *args)
{
    struct create_params p;
    struct kimg fake;
    struct kimg_file *f = NULL, *df = NULL;
    uint8_t *buf = NULL;
    int ret;

    ret = parse_params(args, &p);
    if (ret < 0)
        return ret;
    memset(&fake, 0, sizeof(fake));
    ret = kimg_file_open(&f, args->filename, KIMG_FILE_RDWR | KIMG_FILE_CREATE | KIMG_FILE_TRUNC);
    if (ret < 0)
        goto out;
    /* qemu creates the image file and the data file through the file
     * protocol with the same options: nocow, the extent size hint */
    ret = kimg_create_file_attrs(args->opts, f);
    if (ret < 0)
        goto out;
    fake.file = f;
    fake.filename = (char *)args->filename;
    fake.writable = true;
    fake.state = s;
    s->img = &fake;
    s->file = f;
    ret = init_state(s, &p);
    if (ret < 0)
        goto out;
    if (p.data_file) {
        char *path = kimg_path_relative_to(args->filename, p.data_file);
        if (!path) {
            ret = -ENOMEM;
            goto out;
        }
        ret = kimg_file_open(&df, path, KIMG_FILE_RDWR | KIMG_FILE_CREATE | KIMG_FILE_TRUNC);
        free(path);
        if (ret < 0)
            goto out;
        ret = kimg_create_file_attrs(args->opts, df);
        if (ret < 0)
            goto out;
        ret = kimg_file_truncate(df, p.size);
        if (ret < 0)
            goto out;
        s->data_file = df;
    } else {
        s->data_file = f;
    }

    /* clusters 0-2: header (without magic for now), refcount table, block */
    buf = kimg_alloc_aligned_zero(3 * s->cluster_size);
    if (!buf) {
        ret = -ENOMEM;
        goto out;
    }
    qcow2_put_be64(buf + s->cluster_size, 2 * s->cluster_size);
    for (uint64_t c = 0; c < 3; c++)
        qcow2_rb_entry_set(s, buf + 2 * s->cluster_size, c, 1);
    ret = kimg_file_pwrite(f, buf, 3 * s->cluster_size, 0);
    if (ret < 0)
        goto out;
    ret = qcow2_write_header(s);
    if (ret < 0)
        goto out;
    {
        uint8_t zero[4] = { 0 };
        ret = kimg_file_pwrite(f, zero, 4, 0);   /* not a qcow2 file yet */
        if (ret < 0)
            goto out;
    }

    /* the L1 table, then preallocation */
    uint64_t span = s->cluster_size << s->l2_bits;
    uint64_t l1 = (p.size + span - 1) / span;
    if (l1) {
        ret = qcow2_grow_l1(s, l1);
        if (ret < 0)
            goto out;
    } else {
        /* qemu still points an empty table at cluster 3 */
        s->l1_offset = 3 * s->cluster_size;
    }
    ret = qcow2_preallocate(s, 0, p.size, p.prealloc);
    if (ret < 0)
        goto out;
    /* then the LUKS area, in the clusters after them (qemu's layout) */
    ret = qcow2_crypto_create(s, args->opts);
    if (ret < 0)
        goto out;
    if (p.prealloc != KIMG_PREALLOC_OFF && qcow2_encrypted(s))
        ret = qcow2_preallocate_encrypted(s, 0, p.size);
    if (ret < 0)
        goto out;
    if (p.prealloc == KIMG_PREALLOC_FALLOC || p.prealloc == KIMG_PREALLOC_FULL) {
        /* qemu also extends the file over the metadata it may need */
    }
    ret = qcow2_flush_caches(s);
    if (ret < 0)
        goto out;
    ret = qcow2_write_header(s);      /* with the magic: now it is an image */
    if (ret < 0)
        goto out;
    ret = kimg_file_sync(f);
out:
    free(buf);
    if (s) {
        qcow2_cache_destroy(&s->l2_cache);
        qcow2_cache_destroy(&s->rb_cache);
        qcow2_free_header(s);
        free(s->l1);
        free(s->l1_pending);
        free(s->rt);
        qcow2_crypto_close(s);
    }
    free(fake.backing_name);
    free(fake.backing_format);
    if (df)
        kimg_file_close(df);
    if (f)
        kimg_file_close(f);
    return ret;
}
