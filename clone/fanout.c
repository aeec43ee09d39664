/*
 * fanout.c — a batch's full copies of one source disk in one pass: the
 * source's allocation is walked once, each chunk of data is read once
 * into one buffer and written to every clone's new image (zero blocks
 * left as holes, as the convert engine leaves them), so ten clones cost
 * one read of the template and memory does not grow with the batch (one
 * chunk, plus each target's own image state).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "kimg.h"
#include "clone.h"

#define FANOUT_CHUNK (4u << 20)
#define FANOUT_GRAIN 4096u          /* zero runs this long become holes */

static bool all_zero(const uint8_t *p, size_t n)
{
    return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/* Write the non-zero grains of BUF (LEN bytes at guest offset OFF) to T. */
static int write_data(struct kimg *t, const uint8_t *buf, uint64_t off, uint64_t len)
{
    uint64_t pos = 0;
    while (pos < len) {
        /* grains aligned to the guest offset, partial at the edges */
        uint64_t g = FANOUT_GRAIN - (off + pos) % FANOUT_GRAIN;
        if (g > len - pos)
            g = len - pos;
        bool zero = all_zero(buf + pos, g);
        uint64_t run = g;
        while (pos + run < len) {
            uint64_t m = len - pos - run < FANOUT_GRAIN ? len - pos - run : FANOUT_GRAIN;
            if (all_zero(buf + pos + run, m) != zero)
                break;
            run += m;
        }
        if (!zero) {
            int r = kimg_write(t, buf + pos, off + pos, run);
            if (r < 0)
                return r;
        }
        pos += run;
    }
    return 0;
}

/* Target K failed with R: record it (its message prefixed with its disk). */
static int target_failed(struct clone_disk_plan **ds, int k, int r, struct kimg **outs,
                         int *res)
{
    res[k] = clone_copy_error(ds[k], r);
    if (outs[k]) {
        kimg_close(outs[k]);
        outs[k] = NULL;
    }
    return r;
}

int clone_fanout_copy(struct clone_disk_plan **ds, int n, const struct clone_opts *o,
                      bool keep_going, int *res)
{
    struct kimg *src = ds[0]->img;
    struct kimg **outs = calloc((size_t)n, sizeof(*outs));
    uint8_t *buf = kimg_alloc_aligned(FANOUT_CHUNK);
    int ret = 0, live = 0;
    if (!outs || !buf) {
        free(outs);
        free(buf);
        return -ENOMEM;
    }
    for (int k = 0; k < n; k++) {
        res[k] = 0;
        int r = clone_create_target(ds[k], o, &outs[k]);
        if (r < 0) {
            target_failed(ds, k, r, outs, res);
            if (!ret)
                ret = r;
            if (!keep_going)
                goto out;
            continue;
        }
        live++;
    }
    bool show = !o->quiet && isatty(STDERR_FILENO);
    uint64_t size = ds[0]->size, last = 0;
    for (uint64_t off = 0; off < size && live > 0;) {
        struct kimg_extent ext;
        uint64_t want = size - off < FANOUT_CHUNK ? size - off : FANOUT_CHUNK;
        int r = kimg_block_status(src, off, want, &ext);
        if (r < 0) {
            ret = r;   /* the source: every target fails */
            for (int k = 0; k < n; k++)
                if (outs[k])
                    target_failed(ds, k, r, outs, res);
            goto out;
        }
        uint64_t len = ext.length < want ? ext.length : want;
        if (len == 0)
            len = want;
        if (!(ext.flags & KIMG_BS_ZERO)) {
            if ((r = kimg_read(src, buf, off, len)) < 0) {
                ret = r;
                for (int k = 0; k < n; k++)
                    if (outs[k])
                        target_failed(ds, k, r, outs, res);
                goto out;
            }
            for (int k = 0; k < n; k++) {
                if (!outs[k])
                    continue;
                if ((r = write_data(outs[k], buf, off, len)) < 0) {
                    target_failed(ds, k, r, outs, res);
                    live--;
                    if (!ret)
                        ret = r;
                    if (!keep_going)
                        goto out;
                }
            }
        }
        off += len;
        if (show && (off - last) * 100 >= size) {
            clone_progress_line(ds[0], off, size);
            last = off;
        }
    }
    if (show) {
        clone_progress_line(ds[0], 1, 1);
        fputc('\n', stderr);
    }
    for (int k = 0; k < n; k++) {
        if (!outs[k])
            continue;
        int r = kimg_close(outs[k]);   /* flushes and syncs */
        outs[k] = NULL;
        if (r < 0) {
            res[k] = clone_copy_error(ds[k], r);
            if (!ret)
                ret = r;
            if (!keep_going)
                goto out;
        }
    }
out:
    for (int k = 0; k < n; k++)
        if (outs[k])
            kimg_close(outs[k]);
    free(outs);
    free(buf);
    return ret;
}
