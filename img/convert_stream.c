/*
 * convert_stream.c — convert into a pipe (kimg_convert_stream): the guest
 * content of the sources, concatenated, written to a file descriptor in
 * order from the first byte to the last, zeros included (a pipe has no
 * holes and cannot seek), never seeking.  Ranges the sources' block
 * status calls zero are not read, only written as zeros.  The same -r
 * limit (data bytes) and --salvage as the engine.  One thread: a pipe
 * takes one writer in order, and its reader sets the pace.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "kimg/convert.h"
#include "kimg/driver.h"
#include "internal.h"
#include "ratelimit.h"

#define STREAM_CHUNK (1u << 20)

int kimg_write_fd_all(int fd, const uint8_t *buf, size_t len, uint64_t at)
{
    while (len) {
        ssize_t w = write(fd, buf, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return kimg_fail(-errno, "error while writing at offset %llu: %s",
                             (unsigned long long)at, strerror(errno));
        buf += w;
        len -= (size_t)w;
        at += (uint64_t)w;
    }
    return 0;
}

/* --salvage: [off, off+len) of SRC failed to read as a whole: 512 bytes
 * at a time, zeros and a report (merged runs) where that fails too. */
static void salvage(struct kimg_convert *c, int si, struct kimg *src, uint8_t *buf,
                    uint64_t off, uint64_t len)
{
    uint64_t bad = 0, blen = 0;
    int berr = 0;
    for (uint64_t pos = 0; pos < len; pos += 512) {
        uint64_t n = len - pos < 512 ? len - pos : 512;
        int ret = kimg_read(src, buf + pos, off + pos, n);
        kimg_clear_error();
        if (ret == 0)
            continue;
        memset(buf + pos, 0, n);
        if (blen && (berr != ret || bad + blen != off + pos)) {
            if (c->salvaged)
                c->salvaged(c->opaque, si, bad, blen, berr);
            blen = 0;
        }
        if (!blen) {
            bad = off + pos;
            berr = ret;
        }
        blen += n;
    }
    if (blen && c->salvaged)
        c->salvaged(c->opaque, si, bad, blen, berr);
}

int kimg_convert_stream(struct kimg_convert *c, int fd)
{
    uint8_t *buf = kimg_alloc_aligned(STREAM_CHUNK);
    if (!buf)
        return kimg_fail(-ENOMEM, "out of memory");
    memset(buf, 0, STREAM_CHUNK);
    struct kimg_ratelimit rl;
    kimg_ratelimit_init(&rl, c->rate_limit);
    uint64_t total = 0, done = 0, last = 0;
    for (int i = 0; i < c->nb_src; i++)
        total += kimg_size(c->src[i]);
    if (c->progress)
        c->progress(c->opaque, 0, total);
    int ret = 0;
    for (int i = 0; i < c->nb_src && ret == 0; i++) {
        struct kimg *src = c->src[i];
        uint64_t size = kimg_size(src);
        for (uint64_t off = 0; off < size && ret == 0;) {
            struct kimg_extent e;
            uint64_t n = size - off < STREAM_CHUNK ? size - off : STREAM_CHUNK;
            ret = kimg_content_status(src, off, n, &e);
            if (ret < 0 && c->salvage) {
                /* as the engine: 512 bytes alone, else read as data */
                kimg_clear_error();
                n = n < 512 ? n : 512;
                ret = kimg_content_status(src, off, n, &e);
                if (ret < 0) {
                    kimg_clear_error();
                    if (c->status_salvaged)
                        c->status_salvaged(c->opaque, i, off, n, ret);
                    memset(&e, 0, sizeof(e));
                    e.length = n;
                    ret = 0;
                }
            }
            if (ret < 0)
                break;
            if (e.length < n)
                n = e.length;
            if (e.flags & KIMG_BS_ZERO) {
                memset(buf, 0, n);
            } else {
                ret = kimg_read(src, buf, off, n);
                if (ret < 0 && c->salvage) {
                    kimg_clear_error();
                    salvage(c, i, src, buf, off, n);
                    ret = 0;
                }
                if (ret < 0)
                    break;
                kimg_ratelimit_charge(&rl, n);
            }
            ret = kimg_write_fd_all(fd, buf, n, done);
            off += n;
            done += n;
            if (c->progress && (done == total || (done - last) * 100 >= total)) {
                c->progress(c->opaque, done, total);
                last = done;
            }
            if (c->steps)
                c->steps(c->opaque, done / 512, (total + 511) / 512);
        }
    }
    kimg_ratelimit_fini(&rl);
    free(buf);
    return ret;
}
