/*
 * write.c — writing sparse extents (the sparse half).  A streamOptimized
 * extent as it is made: grains deflated (zlib-wrapped, as qemu's
 * compress()) by libdeflate on any thread, stored in guest order behind
 * grain markers at the end of the file, linked at once in the grain
 * tables qemu's layout preallocates (both directories' tables), an
 * end-of-stream marker after the last grain, a CID derived from the
 * stored bytes.  A hosted sparse extent (monolithicSparse): new grains
 * appended whole, linked only after their data is synced (see below),
 * allocated grains rewritten in place, zeroed-grain entries.
 *
 * Contract (vmdk.h): only a stream extent that holds no grain yet (a new
 * image: its file ends at the header's overHead) opens for writing, and
 * each grain is written once (qemu: "Could not write to allocated
 * cluster for streamOptimized"); grains go to the file in the order they
 * are stored, so the same calls in the same order make the same bytes.
 *
 * Crash safety of a sparse extent: a new grain's data is written past
 * the end of the file and its table entry is only queued (lookups see
 * the queue); vmdk_sparse_commit syncs the file and then writes the
 * queued entries (both tables), at flush and every PENDING_MAX grains.
 * A crash leaves at worst grains no table names (space, not data, lost);
 * a grain rewritten in place is as safe as the host's write.
 */
#include <errno.h>
#include <libdeflate.h>
#include <stdlib.h>
#include "sparse.h"
#include "../../img/tunables.h"

/* libdeflate's level 5: on the bench disk its grains are 0.4% smaller
 * than qemu's (zlib's compress(), level 6) at about half its CPU time;
 * level 4 is 1.5% larger, level 3 2% (the issue allows 2% at most) */
#define STREAM_LEVEL 5

static pthread_key_t lc_key;
static bool lc_on;
static pthread_once_t lc_once = PTHREAD_ONCE_INIT;

static void lc_free(void *c)
{
    libdeflate_free_compressor(c);
}

static void lc_init(void)
{
    lc_on = pthread_key_create(&lc_key, lc_free) == 0;
}

/* This thread's compressor (kept for the thread's life). */
static struct libdeflate_compressor *compressor(void)
{
    pthread_once(&lc_once, lc_init);
    if (!lc_on)
        return NULL;
    struct libdeflate_compressor *c = pthread_getspecific(lc_key);
    if (!c) {
        c = libdeflate_alloc_compressor(STREAM_LEVEL);
        if (c && pthread_setspecific(lc_key, c) != 0) {
            libdeflate_free_compressor(c);
            c = NULL;
        }
    }
    return c;
}

#define PENDING_MAX 256u

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* [A, A+AL) and [B, B+BL) share a byte. */
static bool overlap(uint64_t a, uint64_t al, uint64_t b, uint64_t bl)
{
    return al && bl && a < b + bl && b < a + al;
}

/*
 * Before a hosted sparse extent is written in place: its metadata (the
 * header, the embedded descriptor, both grain directories, every grain
 * table of both) lies inside the overHead, and no two pieces overlap.
 * Then a grain rewritten in place (at or past the overHead, checked per
 * write) and a grain appended (past the end) never land on a table or a
 * directory, whatever the tables say.  Reads do not need it (qemu reads
 * such images), but a write would turn a crafted image's guest data into
 * its own tables.  Memory: one sorted copy of both directories, freed.
 */
static int check_write_layout(struct vmdk_sparse *s)
{
    const uint64_t gt_bytes = (uint64_t)s->gtes * 4, gd_bytes = (uint64_t)s->gd_n * 4;
    const struct { const char *what; uint64_t off, len; } fixed[] = {
        { "the header", 0, VMDK_SECTOR },
        { "the embedded descriptor", s->desc_off, s->desc_size },
        { "the grain directory", s->gd_off, gd_bytes },
        { "the redundant grain directory", s->rgd_off, s->rgd ? gd_bytes : 0 },
    };
    const size_t nf = sizeof(fixed) / sizeof(fixed[0]);
    for (size_t i = 0; i < nf; i++) {
        if (fixed[i].len && fixed[i].off + fixed[i].len > s->overhead)
            return kimg_fail(-ENOTSUP, "cannot write this sparse VMDK extent: %s lies "
                             "past its overHead (sector %llu)", fixed[i].what,
                             (unsigned long long)(s->overhead / VMDK_SECTOR));
        for (size_t j = 0; j < i; j++)
            if (overlap(fixed[i].off, fixed[i].len, fixed[j].off, fixed[j].len))
                return kimg_fail(-EINVAL, "cannot write this sparse VMDK extent: %s "
                                 "overlaps %s", fixed[i].what, fixed[j].what);
    }
    size_t n = s->gd_n * (s->rgd ? 2u : 1u);
    if (n == 0)
        return 0;
    uint32_t *t = malloc(n * sizeof(*t));
    if (!t)
        return kimg_fail(-ENOMEM, "out of memory");
    memcpy(t, s->gd, (size_t)s->gd_n * sizeof(*t));
    if (s->rgd)
        memcpy(t + s->gd_n, s->rgd, (size_t)s->gd_n * sizeof(*t));
    qsort(t, n, sizeof(*t), cmp_u32);
    int ret = 0;
    uint64_t last = (uint64_t)t[n - 1] * VMDK_SECTOR;
    if (last + gt_bytes > s->overhead)
        ret = kimg_fail(-ENOTSUP, "cannot write this sparse VMDK extent: a grain table "
                        "(sector %u) lies past its overHead (sector %llu)", t[n - 1],
                        (unsigned long long)(s->overhead / VMDK_SECTOR));
    for (size_t i = 0; ret == 0 && i < n; i++) {
        uint64_t off = (uint64_t)t[i] * VMDK_SECTOR;
        for (size_t j = 0; ret == 0 && j < nf; j++)
            if (overlap(off, gt_bytes, fixed[j].off, fixed[j].len))
                ret = kimg_fail(-EINVAL, "cannot write this sparse VMDK extent: the "
                                "grain table at sector %u overlaps %s", t[i], fixed[j].what);
        if (ret == 0 && i + 1 < n &&
            overlap(off, gt_bytes, (uint64_t)t[i + 1] * VMDK_SECTOR, gt_bytes))
            ret = kimg_fail(-EINVAL, "cannot write this sparse VMDK extent: the grain "
                            "tables at sectors %u and %u overlap", t[i], t[i + 1]);
    }
    free(t);
    return ret;
}

int vmdk_sparse_enable_write(struct vmdk_sparse *s)
{
    if (s->cowd || s->vmware_stream)
        return kimg_fail(-ENOTSUP, "kimg cannot write this VMDK extent (%s)",
                         s->cowd ? "vmfsSparse" : "a stream in VMware's layout");
    if (!s->compressed) {
        s->pending = calloc(PENDING_MAX, sizeof(*s->pending));
        if (!s->pending)
            return kimg_fail(-ENOMEM, "out of memory");
    } else if (s->file_size > s->overhead)
        return kimg_fail(-ENOTSUP, "a streamOptimized VMDK that holds data cannot be "
                         "written (its grains are written once, when it is made)");
    for (uint32_t i = 0; i < s->gd_n; i++)
        if (!s->gd[i])
            return kimg_fail(-ENOTSUP, "cannot write a sparse VMDK extent without its "
                             "grain tables preallocated");
    if (s->rgd_off && s->gd_n) {
        s->rgd = kimg_alloc_aligned((size_t)s->gd_n * 4);
        if (!s->rgd)
            return kimg_fail(-ENOMEM, "out of memory");
        int ret = kimg_file_pread(s->file, s->rgd, (size_t)s->gd_n * 4, s->rgd_off);
        if (ret < 0)
            return ret;
        uint64_t gt_bytes = (uint64_t)s->gtes * 4;
        for (uint32_t i = 0; i < s->gd_n; i++) {
            s->rgd[i] = le32toh(s->rgd[i]);
            if (!s->rgd[i] || (uint64_t)s->rgd[i] * VMDK_SECTOR + gt_bytes > s->file_size)
                return kimg_fail(-EINVAL, "redundant grain directory entry %u is invalid", i);
        }
    }
    int ret = check_write_layout(s);
    if (ret < 0)
        return ret;
    if (pthread_mutex_init(&s->wlock, NULL) != 0)
        return kimg_fail(-ENOMEM, "cannot create a lock");
    s->wlock_ready = true;
    s->next = (s->file_size + VMDK_SECTOR - 1) / VMDK_SECTOR * VMDK_SECTOR;
    uint64_t cap = htole64(s->capacity);
    s->crc = libdeflate_crc32(0, &cap, sizeof(cap));
    s->writable = true;
    return 0;
}

int64_t vmdk_stream_compress(struct vmdk_sparse *s, uint64_t off, const void *buf,
                             uint64_t len, void *dst, size_t cap)
{
    if (off % s->grain || len == 0 || len > s->grain ||
        (len < s->grain && off + len != s->capacity))
        return kimg_fail(-EINVAL, "a streamOptimized VMDK takes whole grains only");
    if (cap < VMDK_GRAIN_MARKER_SIZE)
        return -ENOSPC;
    uint8_t *m = dst;
    size_t made = 0;
    struct libdeflate_compressor *c = compressor();
    if (c)
        made = libdeflate_zlib_compress(c, buf, len, m + VMDK_GRAIN_MARKER_SIZE,
                                        cap - VMDK_GRAIN_MARKER_SIZE);
    if (!c)
        return kimg_fail(-ENOMEM, "out of memory");
    if (made == 0)
        return -ENOSPC;         /* CAP too small: the caller tries again */
    uint64_t lba = htole64(off / VMDK_SECTOR);
    uint32_t size = htole32((uint32_t)made);
    memcpy(m, &lba, 8);
    memcpy(m + 8, &size, 4);
    return (int64_t)(made + VMDK_GRAIN_MARKER_SIZE);
}

size_t vmdk_stream_bound(struct vmdk_sparse *s)
{
    /* libdeflate's bound needs a compressor; a stored deflate block
     * costs 5 bytes per 64 KiB at most, zlib 6 bytes more */
    return VMDK_GRAIN_MARKER_SIZE + s->grain + 5 * (s->grain / 65535 + 1) + 6 + 64;
}

/* Link grain G to SECTOR in both directories' tables (and the cache). */
static int link_grain(struct vmdk_sparse *s, uint64_t g, uint32_t sector)
{
    uint32_t idx = (uint32_t)(g / s->gtes), i = (uint32_t)(g % s->gtes);
    uint32_t v = htole32(sector);
    int ret = kimg_file_pwrite(s->file, &v, 4, (uint64_t)s->gd[idx] * VMDK_SECTOR + 4ull * i);
    if (ret == 0 && s->rgd)
        ret = kimg_file_pwrite(s->file, &v, 4, (uint64_t)s->rgd[idx] * VMDK_SECTOR + 4ull * i);
    if (ret == 0)
        vmdk_sparse_cache_set(s, g, sector);
    return ret;
}

int vmdk_stream_store(struct vmdk_sparse *s, uint64_t off, const void *cdata, size_t clen)
{
    uint64_t g = off >> s->grain_bits;
    if (clen <= VMDK_GRAIN_MARKER_SIZE || off % s->grain || off >= s->capacity)
        return kimg_fail(-EINVAL, "bad compressed grain");
    pthread_mutex_lock(&s->wlock);
    struct vmdk_grain_run run;
    int ret = vmdk_sparse_status(s, off, 1, &run);
    if (ret == 0 && run.kind != VMDK_GRAIN_UNALLOCATED)
        ret = kimg_fail(-EIO, "Could not write to allocated cluster for streamOptimized");
    uint64_t at = s->next;
    if (ret == 0 && at / VMDK_SECTOR > UINT32_MAX)
        ret = kimg_fail(-EFBIG, "the stream VMDK grew past 2 TiB of compressed data");
    if (ret == 0)
        ret = kimg_file_pwrite_packed(s->file, cdata, clen, at);
    if (ret == 0) {
        s->next = (at + clen + VMDK_SECTOR - 1) / VMDK_SECTOR * VMDK_SECTOR;
        if (s->next > s->file_size)
            s->file_size = s->next;
        s->crc = libdeflate_crc32(s->crc, cdata, clen);
        s->written = true;
        ret = link_grain(s, g, (uint32_t)(at / VMDK_SECTOR));
    }
    pthread_mutex_unlock(&s->wlock);
    return ret;
}

int vmdk_stream_finish(struct vmdk_sparse *s, uint32_t *cid)
{
    if (!s->writable)
        return 0;
    pthread_mutex_lock(&s->wlock);
    /* the end-of-stream marker: one zero sector after the last grain
     * (rewritten by the next grain if any comes) */
    uint8_t eos[VMDK_SECTOR] = { 0 };
    int ret = kimg_file_pwrite(s->file, eos, sizeof(eos), s->next);
    if (ret == 0 && s->next + VMDK_SECTOR > s->file_size)
        s->file_size = s->next + VMDK_SECTOR;
    *cid = s->crc;
    pthread_mutex_unlock(&s->wlock);
    return ret < 0 ? ret : 1;
}

/* ---- hosted sparse extents (monolithicSparse) ------------------------- */

int vmdk_sparse_commit(struct vmdk_sparse *s)
{
    if (!s->writable || s->compressed)
        return 0;
    pthread_mutex_lock(&s->wlock);
    int ret = 0;
    if (s->npending) {
        /* the grains' data first, then the entries that name them */
        ret = kimg_file_sync(s->file);
        for (uint32_t i = 0; i < s->npending && ret == 0; i++)
            ret = link_grain(s, s->pending[i].g, s->pending[i].e);
        if (ret == 0) {
            pthread_mutex_lock(&s->lock);
            s->npending = 0;
            pthread_mutex_unlock(&s->lock);
        }
    }
    pthread_mutex_unlock(&s->wlock);
    return ret;
}

/* Queue the entry E for grain G (the caller holds wlock). */
static int queue_link(struct vmdk_sparse *s, uint64_t g, uint32_t e)
{
    pthread_mutex_lock(&s->lock);
    uint32_t i = 0;
    while (i < s->npending && s->pending[i].g != g)
        i++;
    s->pending[i].g = g;
    s->pending[i].e = e;
    if (i == s->npending)
        s->npending++;
    bool full = s->npending == PENDING_MAX;
    pthread_mutex_unlock(&s->lock);
    if (!full)
        return 0;
    pthread_mutex_unlock(&s->wlock);
    int ret = vmdk_sparse_commit(s);
    pthread_mutex_lock(&s->wlock);
    return ret;
}

void vmdk_sparse_pending_overlay(struct vmdk_sparse *s, uint32_t idx, uint32_t *gt)
{
    for (uint32_t i = 0; i < s->npending; i++)
        if (s->pending[i].g / s->gtes == idx)
            gt[s->pending[i].g % s->gtes] = s->pending[i].e;
}

int vmdk_sparse_alloc_grain(struct vmdk_sparse *s, uint64_t g, const void *buf)
{
    pthread_mutex_lock(&s->wlock);
    uint64_t at = s->next;
    int ret = 0;
    if (at / VMDK_SECTOR > UINT32_MAX)
        ret = kimg_fail(-EFBIG, "the sparse VMDK extent is full (2 TiB of grains)");
    if (ret == 0)
        ret = kimg_file_pwrite(s->file, buf, s->grain, at);
    if (ret == 0) {
        s->next = at + s->grain;
        if (s->next > s->file_size)
            s->file_size = s->next;
        s->written = true;
        ret = queue_link(s, g, (uint32_t)(at / VMDK_SECTOR));
    }
    pthread_mutex_unlock(&s->wlock);
    return ret;
}

int vmdk_sparse_zero_grain(struct vmdk_sparse *s, uint64_t g)
{
    if (!s->zero_grain)
        return -ENOTSUP;
    pthread_mutex_lock(&s->wlock);
    s->written = true;
    int ret = queue_link(s, g, VMDK_GTE_ZEROED);
    pthread_mutex_unlock(&s->wlock);
    return ret;
}

int vmdk_sparse_write_at(struct vmdk_sparse *s, uint64_t host, const void *buf, uint64_t len)
{
    if (host < s->overhead || host + len > s->file_size)
        return kimg_fail(-EIO, "grain at offset %llu lies outside the sparse extent's data",
                         (unsigned long long)host);
    s->written = true;
    return kimg_file_pwrite(s->file, buf, len, host);
}
