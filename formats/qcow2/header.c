/*
 * header.c — the qcow2 header: parse and validate every field and header
 * extension (backing format, feature names, data file name, bitmaps,
 * unknown ones kept byte-for-byte; the one walk over the extensions every
 * reader uses), the backing file name, the bitmap directory; rewrite the
 * header cluster; dirty/corrupt bit updates.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"

static char *dup_string(const uint8_t *p, size_t len)
{
    char *s = malloc(len + 1);
    if (!s)
        return NULL;
    memcpy(s, p, len);
    s[len] = '\0';
    return s;
}

const char *qcow2_feature_name(const struct qcow2_state *s, int type, int bit)
{
    for (int i = 0; i < s->nb_features; i++)
        if (s->features[i].type == type && s->features[i].bit == bit &&
            s->features[i].name[0])
            return s->features[i].name;
    return NULL;
}

/* qemu's wording: known names joined by ", ", the rest as one hex mask. */
static int report_unsupported(struct qcow2_state *s, uint64_t mask)
{
    char msg[900];
    size_t n = 0;
    const char *sep = "";
    uint64_t rest = mask;

    msg[0] = '\0';
    for (int bit = 0; bit < 64 && n < sizeof(msg) - 100; bit++) {
        const char *name;
        if (!(mask & (1ULL << bit)))
            continue;
        name = qcow2_feature_name(s, 0, bit);
        if (!name)
            continue;
        n += (size_t)snprintf(msg + n, sizeof(msg) - n, "%s%s", sep, name);
        sep = ", ";
        rest &= ~(1ULL << bit);
    }
    if (rest && n < sizeof(msg) - 60)
        snprintf(msg + n, sizeof(msg) - n, "%sUnknown incompatible feature: %" PRIx64,
                 sep, rest);
    return kimg_fail(-ENOTSUP, "Unsupported qcow2 feature(s): %s", msg);
}

struct qcow2_ext *qcow2_find_ext(struct qcow2_state *s, uint32_t type)
{
    for (int i = 0; i < s->nb_exts; i++)
        if (s->exts[i].type == type)
            return &s->exts[i];
    return NULL;
}

/* The feature name table qemu writes into v3 headers. */
static const struct { uint8_t type, bit; const char *name; } feature_names[] = {
    { 0, 0, "dirty bit" },
    { 0, 1, "corrupt bit" },
    { 0, 2, "external data file" },
    { 0, 3, "compression type" },
    { 0, 4, "extended L2 entries" },
    { 1, 0, "lazy refcounts" },
    { 2, 0, "bitmaps" },
    { 2, 1, "raw external data" },
};

int qcow2_add_feature_table(struct qcow2_state *s)
{
    enum { N = sizeof(feature_names) / sizeof(feature_names[0]) };
    uint8_t t[N * 48];
    memset(t, 0, sizeof(t));
    for (size_t i = 0; i < N; i++) {
        t[i * 48] = feature_names[i].type;
        t[i * 48 + 1] = feature_names[i].bit;
        memcpy(t + i * 48 + 2, feature_names[i].name, strlen(feature_names[i].name));
    }
    return qcow2_set_ext(s, QCOW2_EXT_FEATURES, t, (uint32_t)sizeof(t));
}

int qcow2_set_ext(struct qcow2_state *s, uint32_t type, const void *data, uint32_t len)
{
    struct qcow2_ext *e = qcow2_find_ext(s, type);
    uint8_t *copy = NULL;

    if (data) {
        copy = malloc(len ? len : 1);
        if (!copy)
            return -ENOMEM;
        memcpy(copy, data, len);
    }
    if (e) {
        free(e->data);
        if (!data) {
            int i = (int)(e - s->exts);
            memmove(&s->exts[i], &s->exts[i + 1],
                    (size_t)(s->nb_exts - i - 1) * sizeof(*e));
            s->nb_exts--;
            return 0;
        }
        e->data = copy;
        e->len = len;
        return 0;
    }
    if (!data)
        return 0;
    struct qcow2_ext *v = realloc(s->exts, (size_t)(s->nb_exts + 1) * sizeof(*v));
    if (!v) {
        free(copy);
        return -ENOMEM;
    }
    s->exts = v;
    /* qemu's order: backing format and data file name first */
    int pos = s->nb_exts;
    if (type == QCOW2_EXT_BACKING_FMT)
        pos = 0;
    else if (type == QCOW2_EXT_DATA_FILE)
        pos = (s->nb_exts && s->exts[0].type == QCOW2_EXT_BACKING_FMT) ? 1 : 0;
    else if (type == QCOW2_EXT_CRYPTO)   /* then the encryption header's */
        for (pos = 0; pos < s->nb_exts && (s->exts[pos].type == QCOW2_EXT_BACKING_FMT ||
                                           s->exts[pos].type == QCOW2_EXT_DATA_FILE); pos++)
            ;
    memmove(&v[pos + 1], &v[pos], (size_t)(s->nb_exts - pos) * sizeof(*v));
    v[pos].type = type;
    v[pos].len = len;
    v[pos].data = copy;
    s->nb_exts++;
    return 0;
}

static int parse_bitmaps_ext(struct qcow2_state *s, const uint8_t *d, uint32_t len)
{
    if (len != 24)
        return kimg_fail(-EINVAL, "bitmaps_ext: Invalid extension length");
    if (qcow2_be32(d + 4) != 0)
        return kimg_fail(-EINVAL, "bitmaps_ext: Reserved field is not zero");
    s->nb_bitmaps = qcow2_be32(d);
    s->bitmap_dir_size = qcow2_be64(d + 8);
    s->bitmap_dir_offset = qcow2_be64(d + 16);
    if (s->nb_bitmaps == 0)
        return kimg_fail(-EINVAL, "found bitmaps extension with zero bitmaps");
    if (s->nb_bitmaps > QCOW2_MAX_BITMAPS)
        return kimg_fail(-EINVAL, "bitmaps_ext: Image has %" PRIu32 " bitmaps, "
                         "exceeding the QEMU supported maximum of %u",
                         s->nb_bitmaps, QCOW2_MAX_BITMAPS);
    if (s->bitmap_dir_size > QCOW2_MAX_BITMAP_DIR)
        return kimg_fail(-EINVAL, "bitmaps_ext: Bitmap directory is too large");
    if (s->bitmap_dir_offset & s->cluster_mask)
        return kimg_fail(-EINVAL, "bitmaps_ext: Invalid bitmap directory offset");
    s->has_bitmaps_ext = true;
    return 0;
}

/*
 * The one walk over the header extensions of header cluster C as stored
 * (open, the bitmaps writer, the backing-name rewrite all use it).  The
 * area runs from the end of the header to the backing file name when the
 * header has one (qemu reads no further: a name right after the header
 * leaves no room for extensions), else to the end of the cluster.
 */
void qcow2_ext_begin(const struct qcow2_state *s, struct qcow2_ext_iter *it)
{
    it->off = s->version == 2 ? QCOW2_V2_HEADER_LEN : s->header_length;
    it->end = s->cluster_size;
    if (s->backing_offset && s->backing_offset < it->end)
        it->end = s->backing_offset;
}

int qcow2_ext_next(struct qcow2_ext_iter *it, const uint8_t *c, uint32_t *type,
                   uint32_t *len, uint64_t *data)
{
    if (it->off > it->end || it->end - it->off < 8)
        return 0;
    *type = qcow2_be32(c + it->off);
    *len = qcow2_be32(c + it->off + 4);
    it->off += 8;
    if (*type == QCOW2_EXT_END)
        return 0;
    if (*len > it->end - it->off)
        return -EINVAL;     /* no message: parse_extensions gives one */
    *data = it->off;
    uint64_t padded = qcow2_align_up(*len, 8);
    /* the padding of the last one may run past the area: the walk ends */
    it->off = padded > it->end - it->off ? it->end : it->off + padded;
    return 1;
}

/* Forget the stored copy of an earlier extension of TYPE (a later one
 * replaces it). */
static void drop_ext(struct qcow2_state *s, uint32_t type)
{
    struct qcow2_ext *e = qcow2_find_ext(s, type);
    if (e)
        qcow2_set_ext(s, type, NULL, 0);
}

/*
 * Duplicates: as qemu, each copy is validated as it comes and the last one
 * is what the image says (backing format, feature name table, data file
 * name, bitmaps); only that one is kept for rewriting the header (qemu's
 * rewrite writes each known extension once).  Unknown extensions are kept
 * as they are, every copy.  A second CRYPTO extension is refused (qemu
 * opens a LUKS header at each and uses the last; two key-material areas
 * in one file, one of them never accounted for, are not accepted here).
 */
static int parse_extensions(struct qcow2_state *s, const uint8_t *c)
{
    struct qcow2_ext_iter it;
    uint32_t type, len;
    uint64_t doff;
    int ret;

    qcow2_ext_begin(s, &it);
    while ((ret = qcow2_ext_next(&it, c, &type, &len, &doff)) > 0) {
        const uint8_t *d = c + doff;
        switch (type) {
        case QCOW2_EXT_BACKING_FMT:
            if (len == 0 || len > 1023 || memchr(d, 0, len))
                return kimg_fail(-EINVAL, "ERROR: ext_backing_format: len=%" PRIu32
                                 " invalid", len);
            free(s->img->backing_format);
            s->img->backing_format = dup_string(d, len);
            if (!s->img->backing_format)
                return -ENOMEM;
            drop_ext(s, type);
            break;
        case QCOW2_EXT_FEATURES:
            free(s->features);
            s->features = NULL;
            s->nb_features = (int)(len / 48);
            if (s->nb_features) {
                s->features = calloc((size_t)s->nb_features, sizeof(*s->features));
                if (!s->features)
                    return -ENOMEM;
            }
            for (int i = 0; i < s->nb_features; i++) {
                const uint8_t *f = d + (size_t)i * 48;
                s->features[i].type = f[0];
                s->features[i].bit = f[1];
                memcpy(s->features[i].name, f + 2, 46);
                s->features[i].name[46] = '\0';
                /* names go to messages: keep them printable */
                for (char *p = s->features[i].name; *p; p++)
                    if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
                        *p = '?';
            }
            drop_ext(s, type);
            break;
        case QCOW2_EXT_BITMAPS:
            /* without the autoclear bit qemu ignores the contents (the
             * bitmaps are inconsistent), checking only the length */
            if (len != 24)
                return kimg_fail(-EINVAL, "bitmaps_ext: Invalid extension length");
            if (s->autoclear & QCOW2_AUTOCLEAR_BITMAPS) {
                ret = parse_bitmaps_ext(s, d, len);
                if (ret < 0)
                    return ret;
            }
            drop_ext(s, type);
            break;
        case QCOW2_EXT_CRYPTO:
            /* where the LUKS header is; crypto.c checks it against the file */
            if (s->crypt_method != QCOW2_CRYPT_LUKS)
                return kimg_fail(-EINVAL, "CRYPTO header extension only expected with "
                                 "LUKS encryption method");
            if (s->has_crypto_ext)
                return kimg_fail(-EINVAL, "Duplicate CRYPTO header extension");
            if (len != QCOW2_CRYPTO_EXT_LEN)
                return kimg_fail(-EINVAL, "CRYPTO header extension size %" PRIu32
                                 ", but expected size %u", len, QCOW2_CRYPTO_EXT_LEN);
            s->has_crypto_ext = true;
            s->crypto_hdr_offset = qcow2_be64(d);
            s->crypto_hdr_length = qcow2_be64(d + 8);
            if (s->crypto_hdr_offset & s->cluster_mask)
                return kimg_fail(-EINVAL, "Encryption header offset '%" PRIu64 "' is not "
                                 "a multiple of cluster size '%" PRIu64 "'",
                                 s->crypto_hdr_offset, s->cluster_size);
            break;
        case QCOW2_EXT_DATA_FILE:
            if (len == 0 || len > 4095 || memchr(d, 0, len))
                return kimg_fail(-EINVAL, "Invalid external data file name extension");
            free(s->data_file_name);
            s->data_file_name = dup_string(d, len);
            if (!s->data_file_name)
                return -ENOMEM;
            drop_ext(s, type);
            break;
        default:
            break;
        }
        /* keep every extension for rewriting */
        struct qcow2_ext *v = realloc(s->exts, (size_t)(s->nb_exts + 1) * sizeof(*v));
        if (!v)
            return -ENOMEM;
        s->exts = v;
        v[s->nb_exts].type = type;
        v[s->nb_exts].len = len;
        v[s->nb_exts].data = NULL;
        if (len) {
            v[s->nb_exts].data = malloc(len);
            if (!v[s->nb_exts].data)
                return -ENOMEM;
            memcpy(v[s->nb_exts].data, d, len);
        }
        s->nb_exts++;
    }
    if (ret < 0)
        return kimg_fail(ret, "Invalid header extension 0x%08" PRIx32 ": length %" PRIu32
                         " exceeds the header cluster", type, len);
    return 0;
}

void qcow2_set_geometry(struct qcow2_state *s)
{
    s->cluster_size = 1ULL << s->cluster_bits;
    s->cluster_mask = s->cluster_size - 1;
    s->l2_entry_size = qcow2_l2_entry_bytes(s->ext_l2);
    s->l2_bits = qcow2_l2_bits_of(s->cluster_bits, s->ext_l2);
    s->l2_entries = 1ULL << s->l2_bits;
    s->subcluster_bits = s->ext_l2 ? s->cluster_bits - 5 : s->cluster_bits;
    s->subcluster_size = 1ULL << s->subcluster_bits;
    s->refcount_bits = 1u << s->refcount_order;
    s->refcount_max = s->refcount_bits == 64 ? UINT64_MAX
                                             : (1ULL << s->refcount_bits) - 1;
    s->rb_bits = qcow2_rb_bits_of(s->cluster_bits, s->refcount_order);
    s->rb_entries = 1ULL << s->rb_bits;
    s->csize_shift = 62 - (s->cluster_bits - 8);
    s->csize_mask = (1ULL << (s->cluster_bits - 8)) - 1;
    s->coffset_mask = (1ULL << s->csize_shift) - 1;
}

int qcow2_parse_header(struct qcow2_state *s, uint64_t file_size)
{
    uint8_t h[QCOW2_V3_HEADER_LEN];
    uint8_t *c = NULL;
    int ret;

    /* As qemu reads it: zeros past the end of a short file, so a cut
     * header fails on the first field it lacks, in qemu's words (a zero
     * cluster_bits or header_length); the checks below refuse it all. */
    memset(h, 0, sizeof(h));
    ret = kimg_file_pread_zero_eof(s->file, h, sizeof(h), 0);
    if (ret < 0)
        return ret;
    if (qcow2_be32(h) != QCOW2_MAGIC)
        return kimg_fail(-EINVAL, "Image is not in qcow2 format");
    s->version = qcow2_be32(h + 4);
    if (s->version < 2 || s->version > 3)
        return kimg_fail(-ENOTSUP, "Unsupported qcow2 version %" PRIu32, s->version);
    s->backing_offset = qcow2_be64(h + 8);
    s->backing_len = qcow2_be32(h + 16);
    s->cluster_bits = qcow2_be32(h + 20);
    /* in whole 512-byte sectors, as qemu (total_sectors = size / 512): a
     * size field off a sector boundary (only a crafted or foreign image
     * has one) reads, resizes and is rewritten as qemu does it */
    s->img->size = qcow2_be64(h + 24) & ~(uint64_t)511;
    s->crypt_method = qcow2_be32(h + 32);
    s->l1_size = qcow2_be32(h + 36);
    s->l1_offset = qcow2_be64(h + 40);
    s->rt_offset = qcow2_be64(h + 48);
    s->rt_clusters = qcow2_be32(h + 56);
    s->nb_snapshots = qcow2_be32(h + 60);
    s->snapshots_offset = qcow2_be64(h + 64);

    if (s->cluster_bits < QCOW2_MIN_CLUSTER_BITS || s->cluster_bits > QCOW2_MAX_CLUSTER_BITS)
        return kimg_fail(-EINVAL, "Unsupported cluster size: 2^%" PRIu32, s->cluster_bits);
    s->cluster_size = 1ULL << s->cluster_bits;
    s->cluster_mask = s->cluster_size - 1;

    if (s->version == 2) {
        s->incompat = s->compat = s->autoclear = 0;
        s->refcount_order = 4;
        s->header_length = QCOW2_V2_HEADER_LEN;
    } else {
        s->incompat = qcow2_be64(h + 72);
        s->compat = qcow2_be64(h + 80);
        s->autoclear = qcow2_be64(h + 88);
        s->refcount_order = qcow2_be32(h + 96);
        s->header_length = qcow2_be32(h + 100);
        if (s->header_length < QCOW2_V3_HEADER_LEN)
            return kimg_fail(-EINVAL, "qcow2 header too short");
        if (s->header_length > s->cluster_size)
            return kimg_fail(-EINVAL, "qcow2 header exceeds cluster size");
    }
    if (s->cluster_size > file_size && s->header_length > file_size)
        return kimg_fail(-EINVAL, "qcow2 header exceeds the file size");

    /* the whole header cluster (zeros past the end of a short file) */
    c = kimg_alloc_aligned_zero(s->cluster_size);
    if (!c)
        return -ENOMEM;
    ret = kimg_file_pread_zero_eof(s->file, c, s->cluster_size, 0);
    if (ret < 0)
        goto out;
    s->hdr_raw_len = s->header_length;
    s->hdr_raw = malloc(s->hdr_raw_len);
    if (!s->hdr_raw) {
        ret = -ENOMEM;
        goto out;
    }
    memcpy(s->hdr_raw, c, s->hdr_raw_len);

    s->compression_type = QCOW2_COMPRESSION_ZLIB;
    if (s->header_length > 104)
        s->compression_type = c[104];

    /* before the extensions, as qemu: a CRYPTO one needs a known method */
    if (s->crypt_method > QCOW2_CRYPT_LUKS) {
        ret = kimg_fail(-EINVAL, "Unsupported encryption method %" PRIu32, s->crypt_method);
        goto out;
    }
    /* extensions first: the feature name table names unknown features */
    ret = parse_extensions(s, c);
    if (ret < 0)
        goto out;

    ret = -EINVAL;
    if (s->incompat & ~QCOW2_INCOMPAT_KNOWN) {
        ret = report_unsupported(s, s->incompat & ~QCOW2_INCOMPAT_KNOWN);
        goto out;
    }
    if (s->refcount_order > 6) {
        kimg_error("Reference count entry width too large; may not exceed 64 bits");
        goto out;
    }
    if (s->incompat & QCOW2_INCOMPAT_COMPRESS) {
        if (s->header_length <= 104 || s->compression_type == 0) {
            kimg_error("Compression type incompatible feature bit must not be set "
                       "with zlib compression");
            goto out;
        }
    } else if (s->compression_type != 0) {
        kimg_error("Compression type incompatible feature bit must be set for "
                   "non-zlib compression");
        goto out;
    }
    if (s->compression_type > QCOW2_COMPRESSION_ZSTD) {
        kimg_error("Unknown compression type %u", s->compression_type);
        goto out;
    }
    s->ext_l2 = (s->incompat & QCOW2_INCOMPAT_EXTL2) != 0;
    if (s->ext_l2 && s->cluster_bits < QCOW2_EXTL2_MIN_BITS) {
        kimg_error("Extended L2 entries are only supported with cluster sizes of "
                   "at least 16384 bytes");
        goto out;
    }
    s->has_data_file = (s->incompat & QCOW2_INCOMPAT_DATA_FILE) != 0;
    s->data_file_raw = (s->autoclear & QCOW2_AUTOCLEAR_DATA_RAW) != 0;
    if (s->data_file_raw && !s->has_data_file) {
        kimg_error("data-file-raw requires a data file");
        goto out;
    }

    qcow2_set_geometry(s);

    /* virtual size and the L1 table */
    if (s->img->size > (uint64_t)INT64_MAX - s->cluster_size) {
        kimg_error("Image size too large");
        goto out;
    }
    uint64_t l2_span = s->cluster_size << s->l2_bits;   /* bytes per L1 entry */
    uint64_t l1_needed = (s->img->size + l2_span - 1) / l2_span;
    if (l1_needed > QCOW2_MAX_L1_BYTES / 8) {
        kimg_error("Image is too big");
        ret = -EFBIG;
        goto out;
    }
    if ((uint64_t)s->l1_size > QCOW2_MAX_L1_BYTES / 8) {
        kimg_error("Active L1 table too large");
        ret = -EFBIG;
        goto out;
    }
    if (s->l1_size < l1_needed) {
        kimg_error("L1 table is too small");
        goto out;
    }
    if (s->l1_size > 0) {
        if ((s->l1_offset & s->cluster_mask) || s->l1_offset == 0 ||
            s->l1_offset >= QCOW2_MAX_HOST_OFFSET) {
            kimg_error("Active L1 table offset invalid");
            goto out;
        }
        if (s->l1_offset > file_size || (uint64_t)s->l1_size * 8 > file_size - s->l1_offset) {
            kimg_error("Active L1 table offset invalid: table extends past the end of the file");
            goto out;
        }
    }

    /* refcount table */
    if (s->rt_clusters == 0 || (uint64_t)s->rt_clusters > QCOW2_MAX_RT_BYTES >> s->cluster_bits) {
        kimg_error(s->rt_clusters ? "Reference count table too large"
                                  : "Image does not contain a reference count table");
        goto out;
    }
    if ((s->rt_offset & s->cluster_mask) || s->rt_offset == 0) {
        kimg_error("Reference count table offset invalid");
        goto out;
    }
    uint64_t rt_bytes = (uint64_t)s->rt_clusters << s->cluster_bits;
    if (s->rt_offset > file_size || rt_bytes > file_size - s->rt_offset) {
        /* qemu writes the table as a whole number of clusters, but a file
         * may end inside it; only the part in the file is read. */
        if (s->rt_offset >= file_size) {
            kimg_error("Reference count table offset invalid: past the end of the file");
            goto out;
        }
    }

    /* snapshots */
    if (s->nb_snapshots > QCOW2_MAX_SNAPSHOTS) {
        kimg_error("Too many snapshots");
        goto out;
    }
    if (s->nb_snapshots && ((s->snapshots_offset & s->cluster_mask) ||
                            s->snapshots_offset == 0 || s->snapshots_offset >= file_size)) {
        kimg_error("Invalid snapshot table offset");
        goto out;
    }
    if (s->nb_snapshots && s->has_data_file) {
        kimg_error("Internal snapshots are not supported with an external data file");
        goto out;
    }

    /* backing file name */
    if (s->backing_offset) {
        if (s->backing_len > QCOW2_MAX_BACKING_NAME || s->backing_len == 0) {
            kimg_error("Backing file name too long");
            goto out;
        }
        if (s->backing_offset < s->header_length ||
            s->backing_offset > s->cluster_size ||
            s->backing_len > s->cluster_size - s->backing_offset) {
            kimg_error("Invalid backing file offset");
            goto out;
        }
        if (s->backing_offset + s->backing_len > file_size) {
            kimg_error("Backing file name extends past the end of the file");
            goto out;
        }
        if (memchr(c + s->backing_offset, 0, s->backing_len)) {
            kimg_error("Backing file name contains a NUL byte");
            goto out;
        }
        s->img->backing_name = dup_string(c + s->backing_offset, s->backing_len);
        if (!s->img->backing_name) {
            ret = -ENOMEM;
            goto out;
        }
    } else if (s->img->backing_format) {
        /* a format without a name is meaningless: ignore it */
    }
    if (s->has_data_file && s->img->backing_name && s->data_file_raw) {
        /* allowed to read, as qemu does; writes keep both */
    }
    ret = 0;
out:
    free(c);
    return ret;
}

int qcow2_read_bitmaps(struct qcow2_state *s, uint64_t file_size)
{
    uint8_t *dir = NULL;
    uint64_t off = 0;
    int ret;

    if (!s->has_bitmaps_ext)
        return 0;
    if (!(s->autoclear & QCOW2_AUTOCLEAR_BITMAPS)) {
        /* inconsistent bitmaps: qemu ignores them (and drops them on rw) */
        s->has_bitmaps_ext = false;
        return 0;
    }
    if (s->bitmap_dir_offset > file_size || s->bitmap_dir_size > file_size - s->bitmap_dir_offset)
        return kimg_fail(-EINVAL, "bitmaps_ext: Bitmap directory extends past the end of the file");
    if (s->bitmap_dir_size < (uint64_t)s->nb_bitmaps * 24)
        return kimg_fail(-EINVAL, "bitmaps_ext: Bitmap directory is too small");
    dir = malloc(s->bitmap_dir_size);
    s->bitmaps = calloc(s->nb_bitmaps, sizeof(*s->bitmaps));
    if (!dir || !s->bitmaps) {
        free(dir);
        return -ENOMEM;
    }
    ret = kimg_file_pread(s->file, dir, s->bitmap_dir_size, s->bitmap_dir_offset);
    if (ret < 0)
        goto out;
    ret = -EINVAL;
    for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
        struct qcow2_bitmap *b = &s->bitmaps[i];
        if (s->bitmap_dir_size - off < 24) {
            kimg_error("Bitmap directory entry %" PRIu32 " is truncated", i);
            goto out;
        }
        const uint8_t *e = dir + off;
        b->table_offset = qcow2_be64(e);
        b->table_size = qcow2_be32(e + 8);
        b->flags = qcow2_be32(e + 12);
        b->type = e[16];
        b->granularity_bits = e[17];
        uint32_t name_size = qcow2_be16(e + 18);
        uint32_t extra = qcow2_be32(e + 20);
        uint64_t esize = qcow2_align_up(24ULL + extra + name_size, 8);
        if (esize > s->bitmap_dir_size - off || name_size == 0 || name_size > 1023) {
            kimg_error("Bitmap directory entry %" PRIu32 " is invalid", i);
            goto out;
        }
        if ((b->table_offset & s->cluster_mask) ||
            b->table_offset > file_size ||
            (uint64_t)b->table_size * 8 > file_size - b->table_offset ||
            (uint64_t)b->table_size * 8 > QCOW2_MAX_L1_BYTES) {
            kimg_error("Bitmap table of bitmap %" PRIu32 " is invalid", i);
            goto out;
        }
        b->name = dup_string(e + 24 + extra, name_size);
        if (!b->name) {
            ret = -ENOMEM;
            goto out;
        }
        off += esize;
    }
    ret = 0;
out:
    free(dir);
    return ret;
}

int qcow2_build_header(struct qcow2_state *s, uint8_t *c, uint64_t *ext_end)
{
    uint64_t off;

    memset(c, 0, s->cluster_size);
    uint32_t hlen = s->version == 2 ? QCOW2_V2_HEADER_LEN : s->header_length;
    if (s->hdr_raw && s->hdr_raw_len >= hlen)
        memcpy(c, s->hdr_raw, hlen);
    qcow2_put_be32(c, QCOW2_MAGIC);
    qcow2_put_be32(c + 4, s->version);
    qcow2_put_be32(c + 20, s->cluster_bits);
    qcow2_put_be64(c + 24, s->img->size);
    qcow2_put_be32(c + 32, s->crypt_method);
    qcow2_put_be32(c + 36, s->l1_size);
    qcow2_put_be64(c + 40, s->l1_offset);
    qcow2_put_be64(c + 48, s->rt_offset);
    qcow2_put_be32(c + 56, s->rt_clusters);
    qcow2_put_be32(c + 60, s->nb_snapshots);
    qcow2_put_be64(c + 64, s->snapshots_offset);
    if (s->version >= 3) {
        qcow2_put_be64(c + 72, s->incompat);
        qcow2_put_be64(c + 80, s->compat);
        qcow2_put_be64(c + 88, s->autoclear);
        qcow2_put_be32(c + 96, s->refcount_order);
        qcow2_put_be32(c + 100, s->header_length);
        if (s->header_length > 104)
            c[104] = s->compression_type;
    }
    off = hlen;
    for (int i = 0; i < s->nb_exts; i++) {
        struct qcow2_ext *e = &s->exts[i];
        uint64_t need = 8 + qcow2_align_up(e->len, 8);
        if (need > s->cluster_size - off)
            return kimg_fail(-ENOSPC, "Cannot update the header: extensions do not fit "
                             "in the first cluster");
        qcow2_put_be32(c + off, e->type);
        qcow2_put_be32(c + off + 4, e->len);
        if (e->len)
            memcpy(c + off + 8, e->data, e->len);
        off += need;
    }
    if (off + 8 > s->cluster_size)
        return kimg_fail(-ENOSPC, "Cannot update the header: it does not fit in the first cluster");
    off += 8;   /* end marker (zeros) */
    *ext_end = off;
    if (s->img->backing_name) {
        size_t bl = strlen(s->img->backing_name);
        if (bl > s->cluster_size - off)
            return kimg_fail(-ENOSPC, "Cannot update the header: the backing file name "
                             "does not fit in the first cluster");
        memcpy(c + off, s->img->backing_name, bl);
        qcow2_put_be64(c + 8, off);
        qcow2_put_be32(c + 16, (uint32_t)bl);
    } else {
        qcow2_put_be64(c + 8, 0);
        qcow2_put_be32(c + 16, 0);
    }
    return 0;
}

void qcow2_header_written(struct qcow2_state *s, const uint8_t *c)
{
    uint32_t hlen = s->version == 2 ? QCOW2_V2_HEADER_LEN : s->header_length;
    s->backing_offset = qcow2_be64(c + 8);
    s->backing_len = qcow2_be32(c + 16);
    if (s->hdr_raw && s->hdr_raw_len >= hlen)
        memcpy(s->hdr_raw, c, hlen);
}

int qcow2_write_header(struct qcow2_state *s)
{
    uint8_t *c = kimg_alloc_aligned(s->cluster_size);
    uint64_t ext_end;
    int ret;

    if (!c)
        return -ENOMEM;
    ret = qcow2_build_header(s, c, &ext_end);
    if (ret == 0)
        ret = kimg_file_pwrite(s->file, c, s->cluster_size, 0);
    if (ret == 0)
        qcow2_header_written(s, c);
    free(c);
    return ret;
}

int qcow2_update_incompat(struct qcow2_state *s, uint64_t set, uint64_t clear)
{
    uint8_t b[8];
    uint64_t v = (s->incompat | set) & ~clear;
    int ret;

    if (s->version < 3 || v == s->incompat)
        return 0;
    /* when setting a bit, everything before it must be on disk; when
     * clearing one, everything it protected must be on disk */
    ret = kimg_file_sync(s->file);
    if (ret < 0)
        return ret;
    qcow2_put_be64(b, v);
    ret = kimg_file_pwrite(s->file, b, 8, 72);
    if (ret < 0)
        return ret;
    s->incompat = v;
    if (s->hdr_raw && s->hdr_raw_len >= 80)
        memcpy(s->hdr_raw + 72, b, 8);
    return kimg_file_sync(s->file);
}

int qcow2_signal_corruption(struct qcow2_state *s, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (qcow2_can_write(s) && !s->corrupt_signalled && s->version >= 3) {
        s->corrupt_signalled = true;
        kimg_error("Marking image as corrupt: %s; further corruption events will be "
                   "suppressed", msg);
        qcow2_update_incompat(s, QCOW2_INCOMPAT_CORRUPT, 0);
        kimg_fence(s->img);
    } else {
        kimg_error("Image is corrupt: %s", msg);
    }
    return -EIO;
}

void qcow2_free_header(struct qcow2_state *s)
{
    for (int i = 0; i < s->nb_exts; i++)
        free(s->exts[i].data);
    free(s->exts);
    s->exts = NULL;
    s->nb_exts = 0;
    free(s->hdr_raw);
    s->hdr_raw = NULL;
    free(s->data_file_name);
    s->data_file_name = NULL;
    free(s->features);
    s->features = NULL;
    s->nb_features = 0;
    if (s->bitmaps)
        for (uint32_t i = 0; i < s->nb_bitmaps; i++)
            free(s->bitmaps[i].name);
    free(s->bitmaps);
    s->bitmaps = NULL;
}
