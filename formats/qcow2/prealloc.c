/*
 * prealloc.c — preallocation (create and resize, lock held): L2 entries
 * for every unallocated cluster of a guest range, pointing at new host
 * clusters (metadata: zeroed or left as holes; falloc: allocated in the
 * file; full: written with zeros), then everything flushed; a partial
 * first cluster that shows a backing file is skipped.  On an
 * encrypted image every mode writes the encryption of zeros instead.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"

#define ZCHUNK (1u << 20)

/* An encrypted image's preallocated clusters: the guest reads zeros only
 * if the ciphertext of zeros is stored (the IV depends on the host offset
 * for LUKS, the guest offset for legacy AES).  qemu 7.2 leaves them as
 * holes (metadata), allocated (falloc) or plain zeros (full), all of which
 * decrypt to noise: kimg writes the encrypted zeros in every mode, so a
 * preallocated encrypted image reads as zeros and nothing on disk tells
 * the preallocated clusters from written ones.  GUEST/HOST/BYTES: whole
 * clusters. */
static int write_encrypted_zeros(struct qcow2_state *s, uint64_t guest, uint64_t host,
                                 uint64_t bytes)
{
    uint8_t *z = kimg_alloc_aligned(ZCHUNK);
    int ret = 0;
    if (!z)
        return kimg_fail(-ENOMEM, "out of memory");
    for (uint64_t p = 0; ret == 0 && p < bytes; p += ZCHUNK) {
        uint64_t n = bytes - p < ZCHUNK ? bytes - p : ZCHUNK;
        memset(z, 0, n);
        ret = qcow2_crypto_run(s, true, guest + p, host + p, z, n);
        if (ret == 0)
            ret = kimg_file_pwrite(s->data_file, z, n, host + p);
    }
    free(z);
    return ret;
}

int qcow2_preallocate_encrypted(struct qcow2_state *s, uint64_t off, uint64_t end)
{
    qcow2_assert_locked(s);
    for (off &= ~s->cluster_mask; off < end; off += s->cluster_size) {
        uint64_t entry = 0, bitmap = 0;
        int ret = qcow2_get_l2_entry(s, off, &entry, &bitmap);
        if (ret < 0)
            return ret;
        uint64_t host = entry & QCOW2_L2E_OFFSET_MASK;
        if (!host || (entry & QCOW2_OFLAG_COMPRESSED))
            continue;
        /* runs of contiguous host clusters in one write */
        uint64_t n = 1;
        while (off + (n << s->cluster_bits) < end) {
            uint64_t e2 = 0;
            ret = qcow2_get_l2_entry(s, off + (n << s->cluster_bits), &e2, &bitmap);
            if (ret < 0)
                return ret;
            if ((e2 & QCOW2_OFLAG_COMPRESSED) ||
                (e2 & QCOW2_L2E_OFFSET_MASK) != host + (n << s->cluster_bits))
                break;
            n++;
        }
        ret = write_encrypted_zeros(s, off, host, n << s->cluster_bits);
        if (ret < 0)
            return ret;
        off += (n - 1) << s->cluster_bits;
    }
    return 0;
}

int qcow2_preallocate(struct qcow2_state *s, uint64_t off, uint64_t len,
                      enum kimg_prealloc mode)
{
    uint8_t *l2 = NULL;
    uint64_t end = off + len, last_end = 0;
    int ret = 0;

    qcow2_assert_locked(s);
    if (mode == KIMG_PREALLOC_OFF || !len)
        return 0;
    /* A range that starts inside an unallocated cluster over a backing
     * file: below OFF the guest reads the backing file there, which a new
     * host cluster would hide (qemu copies it up).  That cluster is left
     * alone; resize zeroes the rest of it through the write path, which
     * copies the head up. */
    if ((off & s->cluster_mask) && !s->ext_l2 && s->img->backing &&
        kimg_size(s->img->backing) > (off & ~s->cluster_mask)) {
        uint64_t entry = 0, bitmap = 0;
        int r = qcow2_get_l2_entry(s, off, &entry, &bitmap);
        if (r < 0)
            return r;
        if (!entry)
            off = (off & ~s->cluster_mask) + s->cluster_size;
    }
    off &= ~s->cluster_mask;
    if (off >= end)
        return qcow2_flush_caches(s);
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
            if (qcow2_encrypted(s) && s->crypto.ready) {
                ret = write_encrypted_zeros(s, off, host, bytes);
                if (ret < 0)
                    goto out;
                if (host + bytes > last_end)
                    last_end = host + bytes;
                off += bytes;
                continue;
            }
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
