/*
 * compress.c — compressed clusters: zlib raw deflate (window 2^12, no
 * header) and zstd frames, as the qcow2 spec defines them.  Decompression
 * must produce exactly one cluster; every length is checked.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "qcow2.h"

/*
 * One decompression context per thread, made on first use and freed when
 * the thread ends: decompressing a cluster must not cost an allocation
 * and a context setup (it showed in profiles of zstd sources).
 */
struct dctx {
    ZSTD_DCtx *zstd;
    z_stream zlib;
    bool zlib_ready;
    /* compression side, same lifetime */
    ZSTD_CCtx *zstd_c;
    z_stream zlib_c;
    bool zlib_c_ready;
    int zlib_c_level;
};
static pthread_key_t dctx_key;
static pthread_once_t dctx_once = PTHREAD_ONCE_INIT;

static void dctx_free(void *p)
{
    struct dctx *d = p;
    if (d->zstd)
        ZSTD_freeDCtx(d->zstd);
    if (d->zlib_ready)
        inflateEnd(&d->zlib);
    if (d->zstd_c)
        ZSTD_freeCCtx(d->zstd_c);
    if (d->zlib_c_ready)
        deflateEnd(&d->zlib_c);
    free(d);
}

static void dctx_key_init(void)
{
    pthread_key_create(&dctx_key, dctx_free);
}

static struct dctx *thread_dctx(void)
{
    pthread_once(&dctx_once, dctx_key_init);
    struct dctx *d = pthread_getspecific(dctx_key);
    if (!d) {
        d = calloc(1, sizeof(*d));
        if (d && pthread_setspecific(dctx_key, d) != 0) {
            free(d);
            d = NULL;
        }
    }
    return d;
}

static int zlib_decompress(uint8_t *dst, size_t dstlen, const uint8_t *src, size_t srclen)
{
    struct dctx *d = thread_dctx();
    int ret;

    if (srclen > UINT_MAX || dstlen > UINT_MAX)
        return -EIO;
    /* libdeflate when it is sure (inflate.c); zlib decides the rest */
    if (qcow2_inflate_fast(dst, dstlen, src, srclen) == 0)
        return 0;
    if (!d)
        return -ENOMEM;
    z_stream *zp = &d->zlib;
    if (!d->zlib_ready) {
        memset(zp, 0, sizeof(*zp));
        if (inflateInit2(zp, -12) != Z_OK)
            return -ENOMEM;
        d->zlib_ready = true;
    } else if (inflateReset(zp) != Z_OK) {
        return -EIO;
    }
#define z (*zp)
    z.next_in = (Bytef *)src;
    z.avail_in = (uInt)srclen;
    z.next_out = dst;
    z.avail_out = (uInt)dstlen;
    ret = inflate(&z, Z_FINISH);
    /* the output buffer being full is success: the stored data may carry
     * trailing bytes from the next compressed cluster */
    if ((ret == Z_STREAM_END || ret == Z_BUF_ERROR || ret == Z_OK) && z.avail_out == 0)
        ret = 0;
    else
        ret = -EIO;
#undef z
    return ret;
}

static int zstd_decompress(uint8_t *dst, size_t dstlen, const uint8_t *src, size_t srclen)
{
    struct dctx *d = thread_dctx();
    int ret = -EIO;

    if (!d)
        return -ENOMEM;
    if (!d->zstd && !(d->zstd = ZSTD_createDCtx()))
        return -ENOMEM;
    ZSTD_DCtx *dctx = d->zstd;
    /* The stored data may run on past the frame (the sector holding the
     * next cluster's start): decompress exactly one frame, in one call,
     * straight into DST (no window buffer and no extra copy). */
    size_t flen = ZSTD_findFrameCompressedSize(src, srclen);
    if (!ZSTD_isError(flen)) {
        size_t r = ZSTD_decompressDCtx(dctx, dst, dstlen, src, flen);
        if (!ZSTD_isError(r))
            return r == dstlen ? 0 : -EIO;
        if (ZSTD_getErrorCode(r) != ZSTD_error_dstSize_tooSmall)
            return -EIO;
        /* more than one cluster in the frame: the streaming path stops
         * at a full buffer, as qemu's decoder does */
    }
    ZSTD_inBuffer in = { src, srclen, 0 };
    ZSTD_outBuffer out = { dst, dstlen, 0 };
    ZSTD_DCtx_reset(dctx, ZSTD_reset_session_only);
    for (;;) {
        size_t ipos = in.pos, opos = out.pos;
        size_t r = ZSTD_decompressStream(dctx, &out, &in);
        if (ZSTD_isError(r))
            break;
        if (out.pos == out.size || r == 0)
            break;                      /* full, or the frame ended early */
        if (in.pos == ipos && out.pos == opos)
            break;                      /* no progress: truncated input */
    }
    if (out.pos == out.size)
        ret = 0;
    return ret;
}

int qcow2_decompress(int type, uint8_t *dst, size_t dstlen, const uint8_t *src, size_t srclen)
{
    int ret;
    switch (type) {
    case QCOW2_COMPRESSION_ZLIB:
        ret = zlib_decompress(dst, dstlen, src, srclen);
        break;
    case QCOW2_COMPRESSION_ZSTD:
        ret = zstd_decompress(dst, dstlen, src, srclen);
        break;
    default:
        return kimg_fail(-ENOTSUP, "Unknown compression type %d", type);
    }
    if (ret == -EIO)
        kimg_error("Compressed cluster data is invalid");
    return ret;
}

int64_t qcow2_compress(int type, uint8_t *dst, size_t cap, const uint8_t *src, size_t len)
{
    return qcow2_compress_level(type, 0, dst, cap, src, len);
}

int64_t qcow2_compress_level(int type, int level, uint8_t *dst, size_t cap,
                             const uint8_t *src, size_t len)
{
    struct dctx *d = thread_dctx();
    if (!d)
        return -ENOMEM;
    if (type == QCOW2_COMPRESSION_ZLIB) {
        /* raw deflate, 4 KiB window, memLevel 9: the parameters qemu uses
         * (at its level, Z_DEFAULT_COMPRESSION, unless one is chosen), so
         * outputs are comparable.  Not libdeflate, though it is faster:
         * qemu inflates a cluster with a 4 KiB window (inflateInit2 -12)
         * and libdeflate's compressor always uses 32 KiB distances, which
         * qemu would reject as "too far back" (decoding is another matter:
         * inflate.c uses libdeflate there) */
        int zl = level ? level : Z_DEFAULT_COMPRESSION;
        z_stream *z = &d->zlib_c;
        if (cap > UINT_MAX || len > UINT_MAX)
            return -EINVAL;
        if (d->zlib_c_ready && d->zlib_c_level != zl) {
            deflateEnd(z);
            d->zlib_c_ready = false;
        }
        if (!d->zlib_c_ready) {
            memset(z, 0, sizeof(*z));
            if (deflateInit2(z, zl, Z_DEFLATED, -12, 9, Z_DEFAULT_STRATEGY) != Z_OK)
                return -ENOMEM;
            d->zlib_c_ready = true;
            d->zlib_c_level = zl;
        } else if (deflateReset(z) != Z_OK) {
            return -EIO;
        }
        z->next_in = (Bytef *)src;
        z->avail_in = (uInt)len;
        z->next_out = dst;
        z->avail_out = (uInt)cap;
        int r = deflate(z, Z_FINISH);
        return r == Z_STREAM_END ? (int64_t)(cap - z->avail_out) : -ENOSPC;
    }
    if (type == QCOW2_COMPRESSION_ZSTD) {
        if (!d->zstd_c && !(d->zstd_c = ZSTD_createCCtx()))
            return -ENOMEM;
        size_t r = ZSTD_compressCCtx(d->zstd_c, dst, cap, src, len,
                                     level ? level : ZSTD_CLEVEL_DEFAULT);
        if (ZSTD_isError(r))
            return ZSTD_getErrorCode(r) == ZSTD_error_dstSize_tooSmall ? -ENOSPC : -EIO;
        return (int64_t)r;
    }
    return -ENOTSUP;
}

/* convert -o compression_level=N: how clusters are compressed from now
 * on; nothing about it is stored in the image. */
int qcow2_set_write_option(struct kimg *img, const char *key, const char *value)
{
    struct qcow2_state *s = img->state;
    if (strcmp(key, "compression_level"))
        return -ENOTSUP;
    bool zstd = s->compression_type == QCOW2_COMPRESSION_ZSTD;
    int max = zstd ? ZSTD_maxCLevel() : 9;
    char *end = NULL;
    errno = 0;
    long v = value ? strtol(value, &end, 10) : 0;
    if (!value || !*value || *end || errno || v < 1 || v > max)
        return kimg_fail(-EINVAL, "compression_level must be between 1 and %d for %s "
                         "compression (got '%s')", max, zstd ? "zstd" : "zlib",
                         value ? value : "");
    s->compression_level = (int)v;
    return 0;
}
