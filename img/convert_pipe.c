/*
 * convert_pipe.c — convert FROM a pipe (kimg_convert_from_fd): raw bytes
 * read once, in order, to their end, with no size known beforehand.  A
 * window of the stream at a time is read into one buffer (memory stays
 * bounded whatever the stream's length), the target grows to cover it
 * (kimg_truncate: its size is the bytes read so far, rounded up to 512,
 * as qemu shows a raw file of that length), and the window is written as
 * the engine writes a file source: zero runs of the sparse size (rounded
 * up to the target's cluster) are not written, or written as zeros where
 * the target does not read as zeros; with -c each cluster is compressed,
 * on the workers (convert_pipe_compress.c).  Or, with no target image,
 * the bytes go to a file descriptor in order (a pipe into a pipe).
 * Otherwise one thread: the pipe sets the pace.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "kimg/convert.h"
#include "kimg/driver.h"
#include "convert_pipe.h"
#include "internal.h"
#include "ratelimit.h"

#define WINDOW (16u << 20)
#define PROGRESS_STEP (64ull << 20)

/* Fill BUF with up to LEN bytes of FD; *GOT what came before its end. */
static int read_window(int fd, uint8_t *buf, size_t len, size_t *got, uint64_t at)
{
    *got = 0;
    while (*got < len) {
        ssize_t r = read(fd, buf + *got, len - *got);
        if (r == 0)
            break;
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return kimg_fail(-errno, "error while reading at offset %llu: %s",
                             (unsigned long long)(at + *got), strerror(errno));
        *got += (size_t)r;
    }
    return 0;
}

/* Zeros at [OFF, OFF+LEN) of the target: nothing where it reads as zeros. */
static int write_zero_range(struct kimg_convert *c, uint64_t off, uint64_t len)
{
    if (c->target_is_zero || len == 0)
        return 0;
    return kimg_write_zeroes(c->dst, off, len, KIMG_ZERO_MAY_UNMAP);
}

/* A run of LEN bytes at BUF (target offset OFF): zeros, or data (with
 * -c, one cluster). */
static int write_run(struct kimg_convert *c, struct kimg_ratelimit *rl, const uint8_t *buf,
                     uint64_t off, size_t len, bool zero)
{
    if (zero)
        return write_zero_range(c, off, len);
    kimg_ratelimit_charge(rl, len);
    if (c->compress)
        return kimg_write_compressed(c->dst, buf, off, len);
    return kimg_write(c->dst, buf, off, len);
}

/* One window (LEN bytes, a multiple of 512, at target offset OFF) into
 * the target, in pieces of UNIT bytes (the last one shorter): runs of
 * zero pieces and runs of data pieces, each written at once (with -c
 * each data piece, a cluster, compressed on its own). */
static int write_window(struct kimg_convert *c, struct kimg_ratelimit *rl, const uint8_t *buf,
                        uint64_t off, size_t len, size_t unit)
{
    size_t run = 0, rlen = 0;
    bool rzero = false;
    for (size_t pos = 0; pos < len;) {
        size_t n = len - pos < unit ? len - pos : unit;
        bool zero = c->sparse_size && kimg_buffer_is_zero(buf + pos, n);
        if (rlen && (zero != rzero || (c->compress && !zero))) {
            int ret = write_run(c, rl, buf + run, off + run, rlen, rzero);
            if (ret < 0)
                return ret;
            rlen = 0;
        }
        if (!rlen) {
            run = pos;
            rzero = zero;
        }
        rlen += n;
        pos += n;
    }
    return rlen ? write_run(c, rl, buf + run, off + run, rlen, rzero) : 0;
}

/* The piece the target is written in: the sparse size rounded up to its
 * cluster (-c: the cluster; -S 0: any). */
static size_t piece_unit(struct kimg_convert *c)
{
    uint64_t cl = c->dst ? kimg_cluster_size(c->dst) : 0;
    uint64_t u = c->compress ? (cl ? cl : 65536) : c->sparse_size ? c->sparse_size : WINDOW;
    if (cl && u % cl)
        u += cl - u % cl;
    return u > WINDOW ? WINDOW : (size_t)u;
}

int kimg_convert_from_fd(struct kimg_convert *c, int in_fd, int out_fd, unsigned flags,
                         uint64_t *size)
{
    size_t unit = piece_unit(c);
    size_t wlen = WINDOW - WINDOW % unit;
    struct pipe_compress *pc = NULL;
    if (c->dst && c->compress && !(pc = pipe_compress_new(c, wlen, unit)))
        return -ENOMEM;
    uint8_t *buf = kimg_buffer_alloc(wlen);
    if (!buf) {
        pipe_compress_free(pc);
        return kimg_fail(-ENOMEM, "out of memory");
    }
    struct kimg_ratelimit rl;
    kimg_ratelimit_init(&rl, c->rate_limit);
    uint64_t done = 0, last = 0;
    if (c->progress)
        c->progress(c->opaque, 0, 0);
    int ret = 0;
    for (;;) {
        size_t got;
        ret = read_window(in_fd, buf, wlen, &got, done);
        if (ret < 0 || got == 0)
            break;
        /* a length not a multiple of 512 reads as qemu shows such a raw
         * file: zeros up to the next multiple */
        size_t len = (got + 511) / 512 * 512;
        memset(buf + got, 0, len - got);
        uint64_t end = done + len;
        if (!c->dst) {
            kimg_ratelimit_charge(&rl, len);
            ret = kimg_write_fd_all(out_fd, buf, len, done);
        } else {
            if (end > kimg_size(c->dst)) {
                ret = (flags & KIMG_CONVERT_GROW)
                      ? kimg_truncate(c->dst, end, KIMG_PREALLOC_OFF)
                      : kimg_fail(-ENOSPC, "the target is smaller than the source "
                                  "(%llu bytes)", (unsigned long long)kimg_size(c->dst));
            }
            if (ret == 0)
                ret = pc ? pipe_compress_window(pc, &rl, buf, done, len)
                         : write_window(c, &rl, buf, done, len, unit);
        }
        if (ret < 0)
            break;
        done = end;
        if (c->progress && done - last >= PROGRESS_STEP) {
            c->progress(c->opaque, done, 0);
            last = done;
        }
        if (got < wlen)
            break;      /* the stream's end */
    }
    if (ret == 0 && c->dst)
        ret = kimg_flush(c->dst);
    if (ret == 0 && c->progress)
        c->progress(c->opaque, done, done);
    kimg_ratelimit_fini(&rl);
    pipe_compress_free(pc);
    kimg_buffer_free(buf, wlen);
    if (ret == 0 && size)
        *size = done;
    return ret;
}
