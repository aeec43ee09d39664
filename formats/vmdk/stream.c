/*
 * stream.c — streamOptimized VMDK extents: deflated grains behind grain
 * markers, and VMware's layout with the header in a footer at the end of
 * the file and metadata markers before the grain directory and tables.
 *
 * Contract of a grain read: the marker's lba is the grain's own first
 * sector, its size is 1 .. 2 grains and lies inside the file, and the zlib
 * stream inflates to exactly one grain (the last grain of an extent whose
 * capacity is not a multiple of the grain: to the part inside the
 * capacity, or to a whole grain).  libdeflate decodes, one decompressor
 * per thread; what it refuses zlib decides (as qemu, which uses zlib).
 * Scratch per call: the compressed bytes (<= 2 grains + 12) and, for a
 * partial read, one grain; grains are at most 1 MiB (sparse.h).
 */
#include <errno.h>
#include <libdeflate.h>
#include <stdlib.h>
#include <zlib.h>
#include "sparse.h"
#include "tunables.h"

/* ---- the footer and metadata markers ------------------------------------ */

int vmdk_stream_footer(struct kimg_file *file, uint64_t file_size,
                       struct vmdk_sparse_hdr *h)
{
    /* [footer marker][header][end-of-stream marker]: the last 3 sectors */
    uint8_t b[3 * VMDK_SECTOR];
    if (file_size < 4 * VMDK_SECTOR)
        return kimg_fail(-EINVAL, "Invalid footer: the file is too short for one");
    int ret = kimg_file_pread(file, b, sizeof(b), file_size - sizeof(b));
    if (ret < 0)
        return ret;
    const uint8_t *fm = b, *hd = b + VMDK_SECTOR, *eos = b + 2 * VMDK_SECTOR;
    if (memcmp(hd, VMDK_KDMV_MAGIC, 4) ||
        vmdk_le32(fm + 8) != 0 || vmdk_le32(fm + 12) != VMDK_MARKER_FOOTER ||
        vmdk_le64(eos) != 0 || vmdk_le32(eos + 8) != 0 ||
        vmdk_le32(eos + 12) != VMDK_MARKER_EOS)
        return kimg_fail(-EINVAL, "Invalid footer");
    vmdk_kdmv_decode(hd, h);
    return 0;
}

int vmdk_stream_check_marker(struct vmdk_sparse *s, uint64_t off,
                             uint32_t type, uint64_t sectors)
{
    static const char *const names[] = { "end-of-stream", "grain table",
                                         "grain directory", "footer" };
    uint8_t m[16];
    if (off < VMDK_SECTOR)
        return kimg_fail(-EINVAL, "no room for the %s marker", names[type & 3]);
    int ret = kimg_file_pread(s->file, m, sizeof(m), off - VMDK_SECTOR);
    if (ret < 0)
        return ret;
    if (vmdk_le32(m + 8) != 0 || vmdk_le32(m + 12) != type ||
        vmdk_le64(m) != sectors)
        return kimg_fail(-EINVAL, "bad %s marker at offset %llu", names[type & 3],
                         (unsigned long long)(off - VMDK_SECTOR));
    return 0;
}

/* ---- inflating one grain -------------------------------------------------- */

static pthread_key_t ld_key;
static bool ld_on;
static pthread_once_t ld_once = PTHREAD_ONCE_INIT;

static void ld_free(void *d)
{
    libdeflate_free_decompressor(d);
}

static void ld_init(void)
{
    if (!kimg_tunables()->no_libdeflate)
        ld_on = pthread_key_create(&ld_key, ld_free) == 0;
}

/* Inflate the zlib stream SRC into DST (room for CAP bytes): the number of
 * bytes it holds, or -1 if it is not one valid stream of at most CAP. */
static int64_t inflate_grain(uint8_t *dst, size_t cap, const uint8_t *src, size_t len)
{
    pthread_once(&ld_once, ld_init);
    struct libdeflate_decompressor *d = ld_on ? pthread_getspecific(ld_key) : NULL;
    if (ld_on && !d) {
        d = libdeflate_alloc_decompressor();
        if (d && pthread_setspecific(ld_key, d) != 0) {
            libdeflate_free_decompressor(d);
            d = NULL;
        }
    }
    if (d) {
        size_t made = 0;
        if (libdeflate_zlib_decompress(d, src, len, dst, cap, &made) == LIBDEFLATE_SUCCESS)
            return (int64_t)made;
    }
    /* zlib's verdict (qemu's uncompress()) for what libdeflate refused */
    uLongf out = cap;
    if (len > UINT32_MAX || uncompress(dst, &out, src, (uLong)len) != Z_OK)
        return -1;
    return (int64_t)out;
}

int vmdk_stream_read(struct vmdk_sparse *s, uint64_t g, uint64_t marker,
                     uint8_t *dst, uint64_t in_off, uint64_t len)
{
    uint8_t m[VMDK_GRAIN_MARKER_SIZE];
    uint64_t start = g << s->grain_bits;
    uint64_t want = s->capacity - start < s->grain ? s->capacity - start : s->grain;
    int ret = kimg_file_pread(s->file, m, sizeof(m), marker);
    if (ret < 0)
        return ret;
    uint64_t lba = vmdk_le64(m);
    uint32_t size = vmdk_le32(m + 8);
    if (lba != start / VMDK_SECTOR)
        return kimg_fail(-EINVAL, "grain marker at offset %llu has lba %llu, expected %llu",
                         (unsigned long long)marker, (unsigned long long)lba,
                         (unsigned long long)(start / VMDK_SECTOR));
    if (size == 0 || size > 2 * s->grain ||
        size > s->file_size - marker - VMDK_GRAIN_MARKER_SIZE)
        return kimg_fail(-EINVAL, "grain marker at offset %llu: compressed size %u is "
                         "invalid or runs past the end of the file",
                         (unsigned long long)marker, size);
    uint8_t *src = kimg_alloc_aligned(size);
    if (!src)
        return kimg_fail(-ENOMEM, "out of memory");
    ret = kimg_file_pread(s->file, src, size, marker + VMDK_GRAIN_MARKER_SIZE);
    if (ret < 0)
        goto out;
    /* the whole grain straight into DST when it is what the caller wants
     * and no longer than it (a last grain may inflate to a full grain) */
    bool direct = in_off == 0 && len == want && want == s->grain;
    uint8_t *out = direct ? dst : malloc(s->grain);
    if (!out) {
        ret = kimg_fail(-ENOMEM, "out of memory");
        goto out;
    }
    int64_t made = inflate_grain(out, s->grain, src, size);
    if (made < 0 || ((uint64_t)made != want && (uint64_t)made != s->grain))
        ret = kimg_fail(-EIO, "grain at offset %llu: compressed data is invalid or does "
                        "not inflate to one grain", (unsigned long long)marker);
    else if (!direct)
        memcpy(dst, out + in_off, len);
    if (!direct)
        free(out);
out:
    free(src);
    return ret;
}
