/*
 * sparse.c — a VMDK sparse extent ("the sparse half"): the KDMV header,
 * validated field by field; the grain directory (loaded whole) and the
 * grain tables (loaded on demand into a small locked cache, each entry
 * validated when its table is loaded); grain lookup, block status, reads
 * and qemu-img check's per-extent walk.  Deflated grains: stream.c; the
 * COWD header: cowd.c.
 *
 * Limits, tighter than qemu's where qemu has none:
 *   - version 1..3 (3 read as 1, as qemu); flags: only the five known bits
 *     (newline check, redundant GD, zeroed grains, compressed, markers);
 *     compressAlgorithm 0 or 1, and deflate needs markers;
 *   - capacity <= 64 TiB; grain size a power of two, 512 B .. 64 MiB
 *     (deflated grains: .. 1 MiB, each read holds three grains of
 *     scratch); 1..512 entries per grain table (COWD: 4096);
 *   - the grain directory at most 16 MiB (4 Mi tables: 2 TiB needs 64 Ki
 *     with qemu's 64 KiB grains) and inside the file, every table it names
 *     inside the file, past the header, apart from the directory and from
 *     each other; the redundant directory inside the file;
 *   - memory: the directory and a sorted copy during open (both <= 16
 *     MiB), a grain-table cache of at most 4 MiB per extent and 16 MiB for
 *     all extents of the process together (past it tables are read per
 *     lookup, not kept): an image of many extents stays in the budget;
 *   - each grain a table names lies inside the file (deflated: its marker;
 *     then its lba and size are checked on read).  Grains overlapping
 *     metadata are not looked for (reading them is harmless).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include "sparse.h"

/* KDMV header field offsets (bytes) */
#define H_VERSION    4
#define H_FLAGS      8
#define H_CAPACITY   12
#define H_GRAIN      20
#define H_DESC_OFF   28
#define H_DESC_SIZE  36
#define H_GTES       44
#define H_RGD        48
#define H_GD         56
#define H_OVERHEAD   64
#define H_NL_CHARS   73
#define H_COMPRESS   77
#define HDR_READ     2048u      /* enough for both headers */

bool vmdk_sparse_magic(const uint8_t *buf, size_t len)
{
    return len >= 4 && (!memcmp(buf, VMDK_KDMV_MAGIC, 4) ||
                        !memcmp(buf, VMDK_COWD_MAGIC, 4));
}

void vmdk_kdmv_decode(const uint8_t *b, struct vmdk_sparse_hdr *h)
{
    memset(h, 0, sizeof(*h));
    h->version = vmdk_le32(b + H_VERSION);
    h->flags = vmdk_le32(b + H_FLAGS);
    h->capacity = vmdk_le64(b + H_CAPACITY);
    h->grain_sectors = vmdk_le64(b + H_GRAIN);
    h->desc_off = vmdk_le64(b + H_DESC_OFF);
    h->desc_size = vmdk_le64(b + H_DESC_SIZE);
    h->gtes = vmdk_le32(b + H_GTES);
    h->rgd_off = vmdk_le64(b + H_RGD);
    h->gd_off = vmdk_le64(b + H_GD);
    h->overhead = vmdk_le64(b + H_OVERHEAD);
    memcpy(h->nl_chars, b + H_NL_CHARS, 4);
    h->compress = vmdk_le16(b + H_COMPRESS);
}

/* [OFF_SECTORS*512, +LEN) inside a file of FILE_SIZE bytes (overflow-safe). */
static bool inside(uint64_t off_sectors, uint64_t len, uint64_t file_size)
{
    uint64_t off, end;
    if (__builtin_mul_overflow(off_sectors, (uint64_t)VMDK_SECTOR, &off) ||
        __builtin_add_overflow(off, len, &end))
        return false;
    return end <= file_size;
}

/* The fields both header kinds share: capacity, grain, tables. */
static int check_geometry(struct vmdk_sparse *s, const struct vmdk_sparse_hdr *h)
{
    if (h->capacity > VMDK_MAX_CAPACITY / VMDK_SECTOR)
        return kimg_fail(-EFBIG, "sparse extent capacity of %llu sectors is too large "
                         "(at most 64 TiB)", (unsigned long long)h->capacity);
    uint64_t max_grain = s->compressed ? VMDK_MAX_STREAM_GRAIN : VMDK_MAX_GRAIN;
    if (h->grain_sectors == 0 || (h->grain_sectors & (h->grain_sectors - 1)) ||
        h->grain_sectors > max_grain / VMDK_SECTOR)
        return kimg_fail(-EINVAL, "invalid grain size of %llu sectors (a power of two "
                         "up to %llu)", (unsigned long long)h->grain_sectors,
                         (unsigned long long)(max_grain / VMDK_SECTOR));
    s->capacity = h->capacity * VMDK_SECTOR;
    s->grain = h->grain_sectors * VMDK_SECTOR;
    s->grain_bits = (unsigned)__builtin_ctzll(s->grain);
    s->gtes = h->gtes;
    /* one table covers at most 4096 * 64 MiB = 256 TiB: no overflow */
    uint64_t cover = (uint64_t)s->gtes * s->grain;
    uint64_t n = s->capacity / cover + (s->capacity % cover != 0);
    if (n > VMDK_MAX_GD_BYTES / 4)
        return kimg_fail(-EFBIG, "grain directory of %llu entries is too large "
                         "(at most %u)", (unsigned long long)n, VMDK_MAX_GD_BYTES / 4);
    s->gd_n = (uint32_t)n;
    if (h->gd_off == VMDK_GD_AT_END ||
        (s->gd_n && (h->gd_off == 0 || !inside(h->gd_off, (uint64_t)s->gd_n * 4, s->file_size))))
        return kimg_fail(-EINVAL, "grain directory (sector %llu, %u entries) lies "
                         "outside the file", (unsigned long long)h->gd_off, s->gd_n);
    s->gd_off = h->gd_off * VMDK_SECTOR;
    return 0;
}

static int check_kdmv(struct vmdk_sparse *s, const struct vmdk_sparse_hdr *h)
{
    if (h->version < 1 || h->version > 3)
        return kimg_fail(-ENOTSUP, "Unsupported VMDK version %u", h->version);
    if (h->flags & ~VMDK_FLAGS_KNOWN)
        return kimg_fail(-ENOTSUP, "unsupported VMDK sparse extent flags 0x%x",
                         h->flags & ~VMDK_FLAGS_KNOWN);
    if ((h->flags & VMDK_FLAG_NL_DETECT) && memcmp(h->nl_chars, "\n \r\n", 4))
        return kimg_fail(-EINVAL, "sparse extent header is damaged: its newline "
                         "check bytes differ (was the file copied as text?)");
    if (h->compress != VMDK_COMPRESS_NONE && h->compress != VMDK_COMPRESS_DEFLATE)
        return kimg_fail(-ENOTSUP, "unsupported VMDK compression algorithm %u", h->compress);
    s->compressed = h->compress == VMDK_COMPRESS_DEFLATE;
    if (s->compressed && !(h->flags & VMDK_FLAG_MARKERS))
        return kimg_fail(-ENOTSUP, "compressed grains without grain markers are not "
                         "supported");
    s->zero_grain = h->flags & VMDK_FLAG_ZERO_GRAIN;
    if (h->gtes == 0 || h->gtes > VMDK_MAX_GTES)
        return kimg_fail(-EINVAL, "invalid number of grain table entries %u (1 to %u)",
                         h->gtes, VMDK_MAX_GTES);
    if (h->overhead > s->file_size / VMDK_SECTOR)
        return kimg_fail(-EINVAL, "File truncated, expecting at least %llu bytes",
                         (unsigned long long)h->overhead * VMDK_SECTOR);
    s->overhead = h->overhead * VMDK_SECTOR;
    if (h->desc_off || h->desc_size) {
        if (h->desc_size > VMDK_MAX_DESC_BYTES / VMDK_SECTOR)
            return kimg_fail(-EFBIG, "embedded descriptor of %llu sectors is larger "
                             "than 1 MiB", (unsigned long long)h->desc_size);
        if (h->desc_off == 0 || !inside(h->desc_off, h->desc_size * VMDK_SECTOR, s->file_size))
            return kimg_fail(-EINVAL, "embedded descriptor (sector %llu, %llu sectors) "
                             "lies outside the file", (unsigned long long)h->desc_off,
                             (unsigned long long)h->desc_size);
        s->desc_off = h->desc_off * VMDK_SECTOR;
        s->desc_size = h->desc_size * VMDK_SECTOR;
    }
    s->version = h->version;
    s->flags = h->flags;
    int ret = check_geometry(s, h);
    if (ret < 0)
        return ret;
    if (h->flags & VMDK_FLAG_RGD) {
        if (s->gd_n && (h->rgd_off == 0 ||
                        !inside(h->rgd_off, (uint64_t)s->gd_n * 4, s->file_size)))
            return kimg_fail(-EINVAL, "redundant grain directory (sector %llu) lies "
                             "outside the file", (unsigned long long)h->rgd_off);
        s->rgd_off = h->rgd_off * VMDK_SECTOR;
    }
    return 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Every table the directory names: inside the file, past the header, not
 * on the directory, not on another table. */
static int check_tables(struct vmdk_sparse *s)
{
    uint64_t gt_bytes = (uint64_t)s->gtes * 4;
    uint64_t gd_end = s->gd_off + (uint64_t)s->gd_n * 4;
    uint32_t n = 0;
    for (uint32_t i = 0; i < s->gd_n; i++) {
        uint32_t e = s->gd[i];
        if (!e)
            continue;
        uint64_t off = (uint64_t)e * VMDK_SECTOR;
        if (!inside(e, gt_bytes, s->file_size))
            return kimg_fail(-EINVAL, "grain directory entry %u: grain table at sector "
                             "%u lies outside the file", i, e);
        if (off < VMDK_SECTOR * (s->vmware_stream ? 2u : 1u) ||
            (off < gd_end && off + gt_bytes > s->gd_off))
            return kimg_fail(-EINVAL, "grain directory entry %u: grain table at sector "
                             "%u overlaps the header or the grain directory", i, e);
        n++;
    }
    if (n < 2)
        return 0;
    uint32_t *sorted = malloc((size_t)n * sizeof(*sorted));
    if (!sorted)
        return kimg_fail(-ENOMEM, "out of memory");
    n = 0;
    for (uint32_t i = 0; i < s->gd_n; i++)
        if (s->gd[i])
            sorted[n++] = s->gd[i];
    qsort(sorted, n, sizeof(*sorted), cmp_u32);
    int ret = 0;
    for (uint32_t i = 0; i + 1 < n; i++)
        if ((uint64_t)(sorted[i + 1] - sorted[i]) * VMDK_SECTOR < gt_bytes) {
            ret = kimg_fail(-EINVAL, "grain tables at sectors %u and %u overlap",
                            sorted[i], sorted[i + 1]);
            break;
        }
    free(sorted);
    return ret;
}

static int load_gd(struct vmdk_sparse *s)
{
    if (!s->gd_n)
        return 0;
    size_t bytes = (size_t)s->gd_n * 4;
    s->gd = kimg_alloc_aligned(bytes);
    if (!s->gd)
        return kimg_fail(-ENOMEM, "out of memory for a grain directory of %zu bytes", bytes);
    int ret = kimg_file_pread(s->file, s->gd, bytes, s->gd_off);
    if (ret < 0)
        return ret;
    for (uint32_t i = 0; i < s->gd_n; i++)
        s->gd[i] = le32toh(s->gd[i]);
    if (s->vmware_stream) {
        ret = vmdk_stream_check_marker(s, s->gd_off, VMDK_MARKER_GD,
                                       (bytes + VMDK_SECTOR - 1) / VMDK_SECTOR);
        if (ret < 0)
            return ret;
    }
    return check_tables(s);
}

/* bytes of grain-table cache lines all open extents hold */
static uint64_t cache_total;

static int init_cache(struct vmdk_sparse *s)
{
    uint64_t per = (uint64_t)s->gtes * 4;
    uint64_t n = VMDK_GT_CACHE_BYTES / per;
    if (n > s->gd_n)
        n = s->gd_n;
    if (n == 0)
        n = 1;
    s->cache_n = (uint32_t)n;
    s->cache_key = calloc(n, sizeof(*s->cache_key));
    s->line = calloc(n, sizeof(*s->line));
    if (!s->cache_key || !s->line)
        return kimg_fail(-ENOMEM, "out of memory for the grain table cache");
    if (pthread_mutex_init(&s->lock, NULL) != 0)
        return kimg_fail(-ENOMEM, "cannot create a lock");
    s->lock_ready = true;
    return 0;
}

void vmdk_sparse_close(struct vmdk_sparse *s)
{
    if (!s)
        return;
    if (s->lock_ready)
        pthread_mutex_destroy(&s->lock);
    for (uint32_t i = 0; s->line && i < s->cache_n; i++)
        free(s->line[i]);
    __atomic_sub_fetch(&cache_total, s->cache_bytes, __ATOMIC_RELAXED);
    if (s->wlock_ready)
        pthread_mutex_destroy(&s->wlock);
    free(s->rgd);
    free(s->pending);
    free(s->cache_key);
    free(s->line);
    free(s->gd);
    free(s);
}

static int parse_header(struct vmdk_sparse *s, const uint8_t *buf)
{
    struct vmdk_sparse_hdr h;
    int ret;
    if (!memcmp(buf, VMDK_COWD_MAGIC, 4)) {
        ret = vmdk_cowd_decode(buf, HDR_READ, &h);
        if (ret < 0)
            return ret;
        s->cowd = true;
        s->version = h.version;
        s->flags = h.flags;
        ret = check_geometry(s, &h);
        if (ret == 0 && h.gd_entries < s->gd_n)
            ret = kimg_fail(-EINVAL, "COWD grain directory has %u entries, its capacity "
                            "needs %u", h.gd_entries, s->gd_n);
        return ret;
    }
    if (memcmp(buf, VMDK_KDMV_MAGIC, 4))
        return kimg_fail(-EINVAL, "not a VMDK sparse extent (no KDMV or COWD magic)");
    vmdk_kdmv_decode(buf, &h);
    if (h.gd_off == VMDK_GD_AT_END) {
        /* VMware's stream layout: the footer's header takes precedence */
        struct vmdk_sparse_hdr f;
        ret = vmdk_stream_footer(s->file, s->file_size, &f);
        if (ret < 0)
            return ret;
        if (f.capacity != h.capacity || f.grain_sectors != h.grain_sectors ||
            f.gtes != h.gtes || f.compress != h.compress)
            return kimg_fail(-EINVAL, "the footer's header does not match the header "
                             "(capacity, grain size, grain table size or compression)");
        if (f.gd_off == VMDK_GD_AT_END)
            return kimg_fail(-EINVAL, "the footer does not say where the grain "
                             "directory is");
        if (!(f.flags & VMDK_FLAG_MARKERS))
            return kimg_fail(-EINVAL, "grain directory at the end of the file without "
                             "markers");
        s->vmware_stream = true;
        h = f;
    }
    return check_kdmv(s, &h);
}

int vmdk_sparse_open(struct kimg_file *file, uint64_t file_size,
                     struct vmdk_sparse **out, struct vmdk_sparse_info *info)
{
    *out = NULL;
    if (file_size < VMDK_SECTOR)
        return kimg_fail(-EINVAL, "file of %llu bytes is too small for a sparse extent",
                         (unsigned long long)file_size);
    uint8_t buf[HDR_READ] = {0};
    size_t n = file_size < HDR_READ ? (size_t)file_size : HDR_READ;
    int ret = kimg_file_pread(file, buf, n, 0);
    if (ret < 0)
        return ret;
    if (!memcmp(buf, VMDK_COWD_MAGIC, 4) && n < HDR_READ)
        return kimg_fail(-EINVAL, "file of %llu bytes is too small for a COWD extent",
                         (unsigned long long)file_size);
    struct vmdk_sparse *s = calloc(1, sizeof(*s));
    if (!s)
        return kimg_fail(-ENOMEM, "out of memory");
    s->file = file;
    s->file_size = file_size;
    ret = parse_header(s, buf);
    if (ret == 0)
        ret = load_gd(s);
    if (ret == 0)
        ret = init_cache(s);
    if (ret < 0) {
        vmdk_sparse_close(s);
        return ret;
    }
    *info = (struct vmdk_sparse_info){
        .capacity = s->capacity,
        .grain_size = s->grain,
        .version = s->version,
        .compressed = s->compressed,
        .cowd = s->cowd,
        .desc_offset = s->desc_off,
        .desc_size = s->desc_size,
    };
    *out = s;
    return 0;
}

/* ---- grain tables ------------------------------------------------------ */

/* Table IDX read from the file into DST (host order) with every entry that
 * covers the capacity checked; entries past the capacity are cleared. */
static int load_gt(struct vmdk_sparse *s, uint32_t idx, uint32_t *dst)
{
    uint64_t off = (uint64_t)s->gd[idx] * VMDK_SECTOR;
    int ret = kimg_file_pread(s->file, dst, (size_t)s->gtes * 4, off);
    if (ret < 0)
        return ret;
    if (s->vmware_stream) {
        ret = vmdk_stream_check_marker(s, off, VMDK_MARKER_GT,
                                       ((uint64_t)s->gtes * 4 + VMDK_SECTOR - 1) / VMDK_SECTOR);
        if (ret < 0)
            return ret;
    }
    uint64_t first = (uint64_t)idx * s->gtes;       /* grain index */
    for (uint32_t i = 0; i < s->gtes; i++) {
        uint32_t e = le32toh(dst[i]);
        uint64_t g = first + i, start = g << s->grain_bits;
        if (start >= s->capacity) {
            dst[i] = 0;
            continue;
        }
        dst[i] = e;
        if (e == 0 || (e == VMDK_GTE_ZEROED && s->zero_grain))
            continue;
        uint64_t need = s->compressed ? VMDK_GRAIN_MARKER_SIZE
                      : (s->capacity - start < s->grain ? s->capacity - start : s->grain);
        if (!inside(e, need, s->file_size))
            return kimg_fail(-EINVAL, "grain table %u entry %u: grain at sector %u lies "
                             "past the end of the file", idx, i, e);
    }
    return 0;
}

/* Table IDX copied into DST (s->gtes entries); a table the directory does
 * not name reads as all zeros. */
static int get_gt(struct vmdk_sparse *s, uint32_t idx, uint32_t *dst)
{
    size_t bytes = (size_t)s->gtes * 4;
    if (!s->gd[idx]) {
        memset(dst, 0, bytes);
        return 0;
    }
    uint32_t slot = idx % s->cache_n;
    pthread_mutex_lock(&s->lock);
    bool hit = s->cache_key[slot] == idx + 1;
    if (hit) {
        memcpy(dst, s->line[slot], bytes);
        vmdk_sparse_pending_overlay(s, idx, dst);
    }
    pthread_mutex_unlock(&s->lock);
    if (hit)
        return 0;
    int ret = load_gt(s, idx, dst);
    if (ret < 0)
        return ret;
    pthread_mutex_lock(&s->lock);
    if (!s->line[slot] &&
        __atomic_add_fetch(&cache_total, bytes, __ATOMIC_RELAXED) <= VMDK_GT_CACHE_TOTAL) {
        s->line[slot] = malloc(bytes);
        if (s->line[slot])
            s->cache_bytes += bytes;
        else
            __atomic_sub_fetch(&cache_total, bytes, __ATOMIC_RELAXED);
    } else if (!s->line[slot]) {
        __atomic_sub_fetch(&cache_total, bytes, __ATOMIC_RELAXED);   /* over budget */
    }
    if (s->line[slot]) {
        memcpy(s->line[slot], dst, bytes);
        s->cache_key[slot] = idx + 1;
    }
    vmdk_sparse_pending_overlay(s, idx, dst);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

void vmdk_sparse_cache_set(struct vmdk_sparse *s, uint64_t g, uint32_t e)
{
    uint32_t idx = (uint32_t)(g / s->gtes), slot = idx % s->cache_n;
    pthread_mutex_lock(&s->lock);
    if (s->cache_key[slot] == idx + 1)
        s->line[slot][g % s->gtes] = e;
    pthread_mutex_unlock(&s->lock);
}

static enum vmdk_grain_kind kind_of(const struct vmdk_sparse *s, uint32_t e)
{
    if (e == 0)
        return VMDK_GRAIN_UNALLOCATED;
    if (e == VMDK_GTE_ZEROED && s->zero_grain)
        return VMDK_GRAIN_ZERO;
    return s->compressed ? VMDK_GRAIN_COMPRESSED : VMDK_GRAIN_DATA;
}

int vmdk_sparse_status(struct vmdk_sparse *s, uint64_t off, uint64_t len,
                       struct vmdk_grain_run *run)
{
    if (len == 0 || off >= s->capacity || len > s->capacity - off)
        return kimg_fail(-EINVAL, "sparse extent status out of range");
    uint32_t gt[VMDK_COWD_GTES] __attribute__((aligned(64)));
    uint64_t end = off + len, pos = off;
    uint32_t cur = UINT32_MAX;
    enum vmdk_grain_kind kind = VMDK_GRAIN_UNALLOCATED;
    uint64_t host = 0;          /* DATA: where POS would be in the file */
    uint64_t first = 0;         /* the run's host offset (DATA) or marker */
    while (pos < end) {
        uint64_t g = pos >> s->grain_bits;
        uint32_t idx = (uint32_t)(g / s->gtes);
        if (idx != cur) {
            int ret = get_gt(s, idx, gt);
            if (ret < 0)
                return ret;
            cur = idx;
        }
        uint32_t e = gt[g % s->gtes];
        enum vmdk_grain_kind k = kind_of(s, e);
        uint64_t in = pos & (s->grain - 1);
        uint64_t h = ((uint64_t)e << 9) + in;
        if (pos == off) {
            kind = k;
            host = h;
            first = k == VMDK_GRAIN_DATA ? h : k == VMDK_GRAIN_COMPRESSED ? (uint64_t)e << 9 : 0;
        } else if (k != kind || (k == VMDK_GRAIN_DATA && h != host)) {
            break;
        }
        uint64_t step = s->grain - in;
        if (step > end - pos)
            step = end - pos;
        pos += step;
        host = h + step;
        if (k == VMDK_GRAIN_COMPRESSED)
            break;              /* one grain per run */
    }
    run->kind = kind;
    run->length = pos - off;
    run->host = first;
    return 0;
}

int vmdk_sparse_read(struct vmdk_sparse *s, void *buf, uint64_t off, uint64_t len)
{
    uint8_t *p = buf;
    while (len) {
        struct vmdk_grain_run run;
        int ret = vmdk_sparse_status(s, off, len, &run);
        if (ret < 0)
            return ret;
        if (run.kind == VMDK_GRAIN_DATA)
            ret = kimg_file_pread(s->file, p, run.length, run.host);
        else if (run.kind == VMDK_GRAIN_COMPRESSED)
            ret = vmdk_stream_read(s, off >> s->grain_bits, run.host, p,
                                   off & (s->grain - 1), run.length);
        else
            memset(p, 0, run.length);   /* the driver reads the parent itself */
        if (ret < 0)
            return ret;
        p += run.length;
        off += run.length;
        len -= run.length;
    }
    return 0;
}

/* ---- check ---------------------------------------------------------------- */

int vmdk_sparse_check_at(struct vmdk_sparse *s, struct kimg_check *res, uint64_t base)
{
    /* qemu-img's walk: every grain, in order; the first allocated grain
     * whose offset lies at or past the end of the file is reported (by
     * its image sector) and the walk stops with one corruption. */
    size_t bytes = (size_t)s->gtes * 4;
    uint32_t *gt = kimg_alloc_aligned(bytes);
    if (!gt)
        return kimg_fail(-ENOMEM, "out of memory");
    uint64_t grains = (s->capacity + s->grain - 1) >> s->grain_bits;
    int ret = 0;
    for (uint32_t idx = 0; idx < s->gd_n && ret == 0; idx++) {
        if (!s->gd[idx])
            continue;
        ret = kimg_file_pread(s->file, gt, bytes, (uint64_t)s->gd[idx] * VMDK_SECTOR);
        if (ret < 0) {
            if (res->log)
                fprintf(res->log, "ERROR: could not get cluster_offset for sector %llu\n",
                        (unsigned long long)((base + (((uint64_t)idx * s->gtes)
                                                       << s->grain_bits)) / VMDK_SECTOR));
            res->corruptions++;
            break;
        }
        for (uint32_t i = 0; i < s->gtes; i++) {
            uint64_t g = (uint64_t)idx * s->gtes + i;
            if (g >= grains)
                break;
            uint32_t e = le32toh(gt[i]);
            enum vmdk_grain_kind k = kind_of(s, e);
            if (k != VMDK_GRAIN_DATA && k != VMDK_GRAIN_COMPRESSED)
                continue;
            if ((uint64_t)e * VMDK_SECTOR >= s->file_size) {
                if (res->log)
                    fprintf(res->log, "ERROR: cluster offset for sector %llu points "
                            "after EOF\n",
                            (unsigned long long)((base + (g << s->grain_bits)) / VMDK_SECTOR));
                res->corruptions++;
                ret = -EINVAL;
                break;
            }
        }
    }
    free(gt);
    return ret;
}

int vmdk_sparse_check(struct vmdk_sparse *s, struct kimg_check *res)
{
    return vmdk_sparse_check_at(s, res, 0);
}
