/*
 * convert.h — the copy engine behind `kimg convert` (and later clone,
 * rebase and commit): guest content of one or more sources, concatenated,
 * into a target image, never copying holes or zeros as data.
 */
#ifndef KIMG_CONVERT_H
#define KIMG_CONVERT_H

#include <stdbool.h>
#include <stdint.h>
#include "kimg.h"

struct kimg_convert {
    struct kimg **src;          /* sources, concatenated in order */
    int nb_src;
    struct kimg *dst;           /* opened read-write */
    uint64_t sparse_size;       /* -S: zero runs this long (aligned) become
                                   holes; 0 writes everything */
    bool compress;              /* -c: compressed clusters */
    bool copy_offload;          /* -C: copy_file_range from the sources' host
                                   files into a raw target; fail if impossible */
    bool target_is_zero;        /* the target already reads as zeros */
    bool target_has_backing;    /* -B: copy only what the sources' top
                                   layers hold; the target's backing file
                                   supplies the rest (a top layer without a
                                   backing file holds all: its unallocated
                                   ranges are zeros to write) */
    bool backing_end_known;     /* -B: the target's backing file ends at
                                   backing_end (bytes, a multiple of 512):
                                   zero ranges from there on are left
                                   unallocated, as they read as zeros */
    uint64_t backing_end;
    bool own_blocks;            /* the target's data must be in blocks of its
                                   own, never shared with a source by a
                                   reflink: -S 0, preallocation, -n */
    int in_flight;              /* -m: requests in flight (default 8) */
    /* progress: called with bytes done and total, at most ~1% steps */
    void (*progress)(void *opaque, uint64_t done, uint64_t total);
    /* -p: qemu-img's own steps (convert_steps.c): called from the calling
     * thread with the work qemu-img counts as started and its total, in
     * 512-byte sectors, once for each piece it counts */
    void (*steps)(void *opaque, uint64_t done, uint64_t total);
    void *opaque;
    uint64_t rate_limit;        /* -r: bytes per second of data written
                                   to the target (zero writes are free, as
                                   in qemu-img 7.2), 0: no limit */
    bool salvage;               /* --salvage: a data range that fails to read
                                   is read again 512 bytes at a time, and
                                   what still fails is copied as zeros */
    /* --salvage: called from the calling thread, in target order, once
     * per failed range (LEN bytes at OFF of source SRC, offsets of that
     * source, multiples of 512 but at its end) with the read's -errno */
    void (*salvaged)(void *opaque, int src, uint64_t off, uint64_t len, int err);
    /* --salvage: the same for a range whose block status failed (it is
     * read as data then), called while the copy is planned */
    void (*status_salvaged)(void *opaque, int src, uint64_t off, uint64_t len, int err);
};

/* Copy; returns 0 or -errno with kimg_error() set. */
int kimg_convert_run(struct kimg_convert *c);

/* Copy the sources' content as raw bytes to FD, a pipe or anything else
 * written in order (dst, sparse_size, compress, copy_offload and the
 * target_* fields are not used): every byte in order, zeros included,
 * never seeking.  progress, steps, rate_limit, salvage as above.  Returns
 * 0 or -errno with kimg_error() set. */
int kimg_convert_stream(struct kimg_convert *c, int fd);

/* Copy raw bytes read from IN_FD (a pipe: read once, in order, to its
 * end; src and nb_src are not used) into dst, or with dst NULL to OUT_FD
 * in order (a pipe into a pipe).  A length that is not a multiple of 512
 * is padded with zeros to the next one, as qemu shows such a raw file.
 * With KIMG_CONVERT_GROW dst (created empty) grows as the data arrives
 * (kimg_driver_can_grow); without it a stream longer than dst fails.
 * sparse_size, compress, target_is_zero, rate_limit as above; progress
 * is called with a total of 0 (unknown) until the end, then with
 * done == total.  Memory stays bounded (one 16 MiB window).  *SIZE: the
 * bytes written (the target's size).  0 or -errno with kimg_error() set. */
#define KIMG_CONVERT_GROW 0x1u
int kimg_convert_from_fd(struct kimg_convert *c, int in_fd, int out_fd, unsigned flags,
                         uint64_t *size);

#endif
