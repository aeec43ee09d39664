/*
 * measure.c — `measure -O qcow2`: the file size a new qcow2 image needs,
 * fully allocated (header, L1, L2 tables, refcount table and blocks, every
 * data cluster) and for a given source (the same metadata, but only the
 * target clusters that hold data of the source), plus the space the
 * source's persistent bitmaps would take.  The layout is the one of
 * docs/interop/qcow2.txt; the figures and the order of the option checks
 * were matched with qemu-img 7.2 measure by experiment (tests/cli/150-*).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "qcow2.h"

struct measure_params {
    uint32_t cluster_bits;
    int version;
    uint32_t refcount_order;
    enum kimg_prealloc prealloc;
    bool ext_l2;
    bool backing;
    uint64_t luks;              /* the LUKS area, whole clusters */
};

/* The option checks qemu-img measure makes, in its order and wording (it
 * checks fewer than create: lazy_refcounts, compression_type, data_file
 * and backing with preallocation are not refused). */
static int parse_params(const struct kimg_opts *o, struct measure_params *p)
{
    uint64_t u;
    const char *v;
    int ret;

    memset(p, 0, sizeof(*p));
    ret = kimg_opts_get_bool(o, "extended_l2", false, &p->ext_l2);
    if (ret < 0)
        return ret;
    ret = kimg_opts_get_size(o, "cluster_size", 65536, &u);
    if (ret < 0)
        return ret;
    if (u < 512 || u > (2u << 20) || (u & (u - 1)))
        return kimg_fail(-EINVAL, "Cluster size must be a power of two between 512 and 2048k");
    p->cluster_bits = (uint32_t)__builtin_ctzll(u);
    if (p->ext_l2 && p->cluster_bits < QCOW2_EXTL2_MIN_BITS)
        return kimg_fail(-EINVAL, "Extended L2 entries are only supported with cluster "
                         "sizes of at least 16384 bytes");

    v = kimg_opts_get(o, "compat");
    if (!v || !strcmp(v, "1.1"))
        p->version = 3;
    else if (!strcmp(v, "0.10"))
        p->version = 2;
    else
        return kimg_fail(-EINVAL, "Invalid compatibility level: '%s'", v);

    ret = kimg_opts_get_u64(o, "refcount_bits", 16, &u);
    if (ret < 0)
        return ret;
    if (u == 0 || u > 64 || (u & (u - 1)))
        return kimg_fail(-EINVAL, "Refcount width must be a power of two and may not "
                         "exceed 64 bits");
    if (u != 16 && p->version < 3)
        return kimg_fail(-EINVAL, "Different refcount widths than 16 bits require "
                         "compatibility level 1.1 or above (use compat=1.1 or greater)");
    p->refcount_order = (uint32_t)__builtin_ctzll(u);

    v = kimg_opts_get(o, "preallocation");
    static const char *const modes[] = { "off", "metadata", "falloc", "full" };
    p->prealloc = KIMG_PREALLOC_OFF;
    if (v) {
        int i;
        for (i = 0; i < 4 && strcmp(v, modes[i]); i++)
            ;
        if (i == 4)
            return kimg_fail(-EINVAL, "invalid parameter value: %s", v);
        p->prealloc = (enum kimg_prealloc)i;
    }

    /* A LUKS header's size depends on the cipher, and qemu-img wants the
     * secret object (--object) to compute it: its whole clusters count as
     * metadata.  'aes' (and encryption=on) changes no figure. */
    v = kimg_opts_get(o, "encrypt.format");
    if (v && !strcmp(v, "luks")) {
        bool on;
        uint64_t area = 0;
        ret = qcow2_crypto_create_check(o, &on, &area);
        if (ret < 0)
            return ret;
        p->luks = qcow2_align_up(area, 1ULL << p->cluster_bits);
    }
    /* an empty name still counts as a backing file, as in qemu-img */
    p->backing = kimg_opts_get(o, "backing_file") != NULL;
    return 0;
}

static uint64_t div_up(uint64_t a, uint64_t b)
{
    return a / b + (a % b != 0);
}

/* Clusters of refcount table and blocks needed to count DATA clusters plus
 * themselves: the fixed point of blocks = ceil((data + blocks + table) /
 * entries per block), table = ceil(blocks / entries per table cluster),
 * reached by iterating from zero. */
static uint64_t refcount_clusters(uint64_t data, uint32_t cluster_bits,
                                  uint32_t refcount_order)
{
    uint64_t per_block = 1ULL << qcow2_rb_bits_of(cluster_bits, refcount_order);
    uint64_t per_table = 1ULL << (cluster_bits - 3);
    uint64_t blocks = 0, table = 0, n = 0, last;

    do {
        last = n;
        blocks = div_up(data + table + blocks, per_block);
        table = div_up(blocks, per_table);
        n = data + blocks + table;
    } while (n != last);
    return blocks + table;
}

/* Bytes of a fully allocated image of ALIGNED (cluster-aligned) guest
 * bytes: one header cluster, L2 tables for every cluster (whole tables),
 * an L1 table of whole clusters, the refcount structures, the data.
 * -EFBIG when a figure does not fit in 64 bits. */
static int fully_allocated(const struct measure_params *p, uint64_t aligned,
                           uint64_t *out)
{
    uint64_t cs = 1ULL << p->cluster_bits;
    uint64_t l2e = qcow2_l2_entry_bytes(p->ext_l2);
    uint64_t l2_per_table = 1ULL << qcow2_l2_bits_of(p->cluster_bits, p->ext_l2);
    uint64_t nl2e = div_up(aligned >> p->cluster_bits, l2_per_table) * l2_per_table;
    uint64_t nl1e = div_up(nl2e / l2_per_table, cs / 8) * (cs / 8);
    uint64_t meta = cs + nl2e * l2e + nl1e * 8;
    uint64_t rc = refcount_clusters((meta + aligned) >> p->cluster_bits, p->cluster_bits,
                                    p->refcount_order);
    uint64_t total;

    if (__builtin_add_overflow(meta, rc << p->cluster_bits, &total) ||
        __builtin_add_overflow(total, aligned, &total))
        return kimg_fail(-EFBIG, "The image size is too large");
    *out = total;
    return 0;
}

/* qemu-img refuses a size whose L1 table would pass 32 MiB. */
static int check_size(const struct measure_params *p, uint64_t size)
{
    uint64_t cs = 1ULL << p->cluster_bits;
    uint64_t l2_per_table = 1ULL << qcow2_l2_bits_of(p->cluster_bits, p->ext_l2);
    uint64_t aligned = qcow2_align_up(size, cs);
    if (aligned < size ||
        div_up(aligned >> p->cluster_bits, l2_per_table) * 8 > QCOW2_MAX_L1_BYTES)
        return kimg_fail(-EFBIG, "The image size is too large (try using a larger "
                         "cluster size)");
    return 0;
}

/* Bytes of target clusters (CLUSTER_BITS) that hold data of SRC through its
 * backing chain: ranges that read as zeros (holes, zero clusters, data
 * clusters over holes of a metadata-preallocated file, nothing allocated
 * in any layer) need none. */
static int data_bytes(struct kimg *src, uint32_t cluster_bits, uint64_t *out)
{
    uint64_t size = kimg_size(src), off = 0, counted_end = 0, total = 0;
    struct kimg_extent ext;

    while (off < size) {
        int ret = kimg_block_status(src, off, size - off, &ext);
        if (ret < 0) {
            /* name the source: the caller's messages name none */
            char msg[256];
            const char *m = kimg_last_error();
            snprintf(msg, sizeof(msg), "%s", m ? m : strerror(-ret));
            kimg_clear_error();
            return kimg_fail(ret, "%s: %s", kimg_filename(src), msg);
        }
        if ((ext.flags & KIMG_BS_DATA) && !(ext.flags & KIMG_BS_ZERO)) {
            uint64_t first = off >> cluster_bits << cluster_bits;
            uint64_t end = qcow2_align_up(off + ext.length, 1ULL << cluster_bits);
            if (first < counted_end)
                first = counted_end;
            if (end > first)
                total += end - first;
            counted_end = end;
        }
        off += ext.length;
    }
    *out = total;
    return 0;
}

/* Persistent bitmaps of a v3 qcow2 SRC, stored with clusters of
 * CLUSTER_BITS: each bitmap's data clusters and its bitmap table (whole
 * clusters), plus the bitmap directory (entries of 24 bytes + name,
 * 8-aligned) in whole clusters.  False if SRC cannot hold bitmaps. */
static bool bitmaps_bytes(struct kimg *src, uint32_t cluster_bits, uint64_t *out)
{
    if (src->drv != &kimg_qcow2_driver)
        return false;
    struct qcow2_state *s = src->state;
    if (s->version < 3)
        return false;
    uint64_t cs = 1ULL << cluster_bits, total = 0, dir = 0;
    for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
        const struct qcow2_bitmap *bm = &s->bitmaps[i];
        uint64_t bits = div_up(s->img->size, 1ULL << bm->granularity_bits);
        uint64_t clusters = div_up(div_up(bits, 8), cs);
        total += clusters * cs + qcow2_align_up(clusters * 8, cs);
        dir += qcow2_align_up(24 + strlen(bm->name), 8);
    }
    *out = total + qcow2_align_up(dir, cs);
    return true;
}

int qcow2_measure(struct kimg_opts *opts, uint64_t size, struct kimg *src,
                  struct kimg_measure *out)
{
    struct measure_params p;
    uint64_t cs, aligned, required = 0;
    int ret = parse_params(opts, &p);
    if (ret < 0)
        return ret;
    cs = 1ULL << p.cluster_bits;

    /* qemu-img checks the size option even when a source decides the
     * size (a "-o size=" is then checked, and otherwise ignored) */
    if (src) {
        uint64_t osize;
        ret = kimg_opts_get_size(opts, "size", 0, &osize);
        if (ret < 0)
            return ret;
        size = osize;
    }
    ret = check_size(&p, size);
    if (ret < 0)
        return ret;

    if (src) {
        size = kimg_size(src);
        aligned = qcow2_align_up(size, cs);
        if (aligned < size)
            return kimg_fail(-EFBIG, "The image size is too large");
        if (p.backing) {
            /* the new backing file may share nothing with the source */
            required = aligned;
        } else {
            ret = data_bytes(src, p.cluster_bits, &required);
            if (ret < 0)
                return ret;
        }
    } else {
        aligned = qcow2_align_up(size, cs);
    }
    if (p.prealloc == KIMG_PREALLOC_FALLOC || p.prealloc == KIMG_PREALLOC_FULL)
        required = aligned;

    ret = fully_allocated(&p, aligned, &out->fully_allocated);
    if (ret < 0)
        return ret;
    if (__builtin_add_overflow(out->fully_allocated, p.luks, &out->fully_allocated))
        return kimg_fail(-EFBIG, "The image size is too large");
    /* the metadata of a full image, only the needed data clusters */
    out->required = out->fully_allocated - aligned + required;
    out->has_bitmaps = p.version >= 3 && src &&
                       bitmaps_bytes(src, p.cluster_bits, &out->bitmaps);
    return 0;
}
