/*
 * prealloc.c — preallocation (create and resize, lock held): L2 entries
 * for every unallocated cluster of a guest range, pointing at new host
 * clusters (metadata: zeroed or left as holes; falloc: allocated in the
 * file; full: written with zeros), then everything flushed.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"

int qcow2_preallocate(struct qcow2_state *s, uint64_t off, uint64_t len,
                      enum kimg_prealloc mode)
{
    uint8_t *l2 = NULL;
    uint64_t end = off + len, last_end = 0;
    int ret = 0;

    qcow2_assert_locked(s);
    if (mode == KIMG_PREALLOC_OFF || !len)
        return 0;
    off &= ~s->cluster_mask;
    while (off < end) {
        uint64_t l1i = qcow2_l1_index(s, off);
        uint64_t span_end = (l1i + 1) << (s->cluster_bits + s->l2_bits);
        if (span_end > end)
            span_end = qcow2_align_up(end, s->cluster_size);
        ret = qcow2_l2_for_write(s, off, &l2);
        if (ret < 0)
            return ret;
        while (off < span_end) {
            /* a run of unallocated entries */
            uint64_t n = 0;
            while (off + (n << s->cluster_bits) < span_end) {
                uint8_t *slot = qcow2_l2_slot(s, l2, off + (n << s->cluster_bits));
                if (qcow2_be64(slot) & ~QCOW2_OFLAG_ZERO)
                    break;
                n++;
            }
            if (!n) {
                off += s->cluster_size;
                continue;
            }
            uint64_t host;
            if (s->has_data_file) {
                host = off;
            } else {
                ret = qcow2_alloc_clusters(s, n, &host);
                if (ret < 0)
                    goto out;
            }
            for (uint64_t i = 0; i < n; i++) {
                uint8_t *slot = qcow2_l2_slot(s, l2, off + (i << s->cluster_bits));
                /* with extended L2 qemu leaves the subclusters unallocated
                 * (a backing file still shows through) */
                qcow2_l2_set(s, slot, (host + (i << s->cluster_bits)) | QCOW2_OFLAG_COPIED, 0);
            }
            qcow2_cache_mark_dirty(&s->l2_cache, l2);
            uint64_t bytes = n << s->cluster_bits;
            /* reused space may hold old data: preallocated clusters read zeros */
            uint64_t fsz = 0;
            ret = kimg_file_size(s->data_file, &fsz);
            if (ret == 0 && host < fsz)
                ret = kimg_file_zero(s->data_file, host, fsz - host < bytes ? fsz - host : bytes,
                                     mode == KIMG_PREALLOC_METADATA);
            if (ret < 0)
                goto out;
            if (mode == KIMG_PREALLOC_FALLOC) {
                ret = kimg_file_allocate(s->data_file, host, bytes);
            } else if (mode == KIMG_PREALLOC_FULL) {
                {
                    /* full: the blocks are really written */
                    uint8_t *z = kimg_alloc_aligned_zero(1u << 20);
                    if (!z) {
                        ret = -ENOMEM;
                    } else {
                        for (uint64_t p = 0; ret == 0 && p < bytes; p += 1u << 20)
                            ret = kimg_file_pwrite(s->data_file, z,
                                                   bytes - p < (1u << 20) ? bytes - p
                                                                          : 1u << 20,
                                                   host + p);
                        free(z);
                    }
                }
            }
            if (ret < 0)
                goto out;
            if (host + bytes > last_end)
                last_end = host + bytes;
            off += bytes;
        }
        qcow2_cache_put(&s->l2_cache, l2);
        l2 = NULL;
    }
    /* the data clusters lie inside the file */
    if (last_end && mode == KIMG_PREALLOC_METADATA) {
        uint64_t fsz = 0;
        ret = kimg_file_size(s->data_file, &fsz);
        if (ret == 0 && fsz < last_end)
            ret = kimg_file_truncate(s->data_file, last_end);
    }
out:
    if (l2)
        qcow2_cache_put(&s->l2_cache, l2);
    if (ret == 0)
        ret = qcow2_flush_caches(s);
    return ret;
}
