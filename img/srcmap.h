/*
 * srcmap.h — the engines' one policy for reading source data in place
 * (convert, compare, checksum): a read-only mapping of a host file range
 * through the file layer (kimg_file_map), guarded by one SIGBUS handler.
 *
 * The policy: a source file that changes size while an engine runs is an
 * error, never silently zeros.  An access to a mapped page past the file's
 * new end raises SIGBUS; the handler (srcmap.c) replaces the whole mapping
 * with zero pages, so the access and any later one complete harmlessly,
 * and marks the mapping; kimg_srcmap_check() then fails.  A kernel copy
 * from such a page (a pwrite from the mapping) fails with EFAULT instead:
 * the check also compares the file's size with the range, so the engine
 * reports the source, not the write.  Faults outside the registered
 * mappings get the handler that was there before.
 *
 * Mapping is off unless KIMG_MAP_SOURCES=1: kimg_srcmap_open and
 * kimg_srcwins_get then say -EOPNOTSUPP and every engine reads into its
 * own page-aligned buffers, as it does for what cannot be mapped.  A
 * mapping saves the kernel's copy into a buffer, but each 4 KiB page of
 * it costs the CPU a TLB miss (the likely reason; the VM measured has no
 * hardware counters); in a VM with nested paging that miss walks two sets
 * of page tables, and on a 2-vCPU AMD EPYC guest (2026-12-07)
 * writing 1.4 GiB into a new file's page cache took 0.75-1.1 s from a
 * mapping and 0.30-0.35 s from a reused 2 MiB buffer; convert raw to
 * qcow2 went from 1.0 s to 0.34 s (qemu-img: 0.48 s), and compare from
 * 1.8 s of CPU to 0.45 s (README.md, "Performance").  A buffer that is
 * reused stays in the TLB and the cache, on any host.
 */
#ifndef KIMG_SRCMAP_H
#define KIMG_SRCMAP_H

#include <stdbool.h>
#include <stdint.h>
#include "kimg/file.h"
#include "kimg.h"

struct kimg_srcmap {
    const uint8_t *data;        /* the range's first byte, NULL: not mapped */
    struct kimg_file *file;
    uint64_t off, len;
    struct kimg_file_map m;
    int slot;                   /* in the SIGBUS registry; -1: cannot fault */
};

/* Map [off, off+len) of F read-only.  0; -EIO with a kimg_error() when
 * the range is no longer inside the file (it shrank after the caller saw
 * the range in it: the caller fails); other -errno without a message when
 * the backend cannot map it (the caller reads instead). */
int kimg_srcmap_open(struct kimg_srcmap *sm, struct kimg_file *f, uint64_t off, uint64_t len);
/* 0 if every access through SM so far read the file's data; -EIO with a
 * kimg_error() naming the file when it changed size (caught fault, or the
 * file is now shorter than the range).  Call it after the last access
 * whose result is used, before the result is.  Thread-safe. */
int kimg_srcmap_check(const struct kimg_srcmap *sm);
/* Unmap (no-op on an unmapped SM; SM can be opened again). */
void kimg_srcmap_close(struct kimg_srcmap *sm);

/* Shared windows: engines that map many small ranges of a file in turn
 * (a convert or compare job of 2 MiB each) share larger mappings, so the
 * kernel sets up and tears down (TLB shootdowns on every core) a mapping
 * per window, not per job.  A window stays while a job uses it, and the
 * newest window of each file while idle; older idle ones are unmapped.
 * Thread-safe. */
struct kimg_srcwins;
/* Windows of WINDOW bytes (a power of two); NULL when out of memory. */
struct kimg_srcwins *kimg_srcwins_new(uint64_t window);
void kimg_srcwins_free(struct kimg_srcwins *w);
/* [off, off+len) of F, read-only: *MAP is the window holding it (for
 * kimg_srcmap_check and kimg_srcwins_put), *DATA the range's first byte.
 * Errors as kimg_srcmap_open (-EIO with a message: the file shrank). */
int kimg_srcwins_get(struct kimg_srcwins *w, struct kimg_file *f, uint64_t off, uint64_t len,
                     struct kimg_srcmap **map, const uint8_t **data);
void kimg_srcwins_put(struct kimg_srcwins *w, struct kimg_srcmap *map);

/* The same policy for what is not mapped: a source's file that changes
 * size makes block status call the lost range a hole and reads return
 * zeros.  An engine notes the sizes of IMG's files (every layer of its
 * chain) when it starts and checks them when it ends, before it reports
 * success: -EIO with a kimg_error() naming the file that changed. */
struct kimg_srcsizes {
    int n;
    uint64_t size[KIMG_MAX_CHAIN + 1];  /* UINT64_MAX: unknown, not checked */
};
/* Layers whose file is WRITTEN (the run's target, e.g. commit's base in
 * its top's chain; may be NULL) are not checked. */
void kimg_srcmap_note_sizes(struct kimg *img, struct kimg_file *written,
                            struct kimg_srcsizes *s);
int kimg_srcmap_check_sizes(struct kimg *img, const struct kimg_srcsizes *s);

#endif
