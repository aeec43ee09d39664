/*
 * tunables.h — every KIMG_* environment variable the library reads, read
 * once into one struct (img/tunables.c).  Nothing else in img/, formats/,
 * cmd/ or clone/ calls getenv; README.md "Tunables and test hooks" lists
 * each variable with one line, and tests/cli/092-tunables.t checks that the
 * table and the list in tunables.c name the same variables.
 *
 * Parsing, one rule per kind:
 *   flag    on when set to a non-empty value other than "0" (=1 is the
 *           documented spelling); unset, "" or "0" is off;
 *   number  a plain decimal number (digits only, fits in 64 bits); unset,
 *           empty or anything else (a sign, a suffix, spaces) leaves the
 *           default.  Bad values are ignored silently: a library does not
 *           print, and every hook is off by default;
 *   path    the value as is (the environment's own string); unset or empty
 *           is off (NULL).
 */
#ifndef KIMG_TUNABLES_H
#define KIMG_TUNABLES_H

#include <stdbool.h>
#include <stdint.h>

struct kimg_tunables {
    /* engine switches: compare paths, measure, work around a host */
    bool convert_no_map;          /* KIMG_CONVERT_NO_MAP: convert reads sources through
                                     their drivers (no plain host reads, no reflinks) */
    bool map_sources;             /* KIMG_MAP_SOURCES: engines map plainly stored
                                     source data instead of reading it (srcmap.h) */
    bool convert_no_reflink;      /* KIMG_CONVERT_NO_REFLINK: copy, never clone extents */
    bool no_populate;             /* KIMG_NO_POPULATE: mapped source pages fault in one
                                     by one, not mapped per job (img/srcmap.c) */
    bool convert_serial;          /* KIMG_CONVERT_SERIAL: one qcow2 writer, no
                                     parallel cluster allocation */
    bool convert_parallel_writes; /* KIMG_CONVERT_PARALLEL_WRITES: every worker writes */
    bool commit_serial;           /* KIMG_COMMIT_SERIAL: commit copies on one thread */
    bool no_libdeflate;           /* KIMG_NO_LIBDEFLATE: zlib decodes deflate clusters */
    uint64_t bitmap_mem;          /* KIMG_BITMAP_MEM: dirty-bitmap page budget in
                                     bytes; 0 = the driver's default (it caps) */
    uint64_t nbd_conns;           /* KIMG_NBD_CONNS: at most this many connections
                                     to one NBD export; 0 = the default */
    /* output: which qemu-img's output the command line reproduces */
    const char *qemu_output;      /* KIMG_QEMU_OUTPUT: a QEMU version ("8.2"); NULL =
                                     7.2's output (cmd/output_gen.c checks it) */
    /* test hooks: make rare paths happen on demand */
    uint64_t convert_write_lag;   /* KIMG_CONVERT_WRITE_LAG: hold data writes back
                                     this many jobs; 0 = off */
    bool check_align;             /* KIMG_CHECK_ALIGN: a large transfer from a
                                     misaligned buffer aborts */
    bool empty_incremental;       /* KIMG_EMPTY_INCREMENTAL: commit empties the top
                                     step by step, as when one switch is too big */
    int64_t crash_after;          /* KIMG_CRASH_AFTER: die before file change N+1;
                                     -1 = off (img/crash.c) */
    bool crash_lose;              /* KIMG_CRASH_LOSE set to a number (needs
                                     KIMG_CRASH_AFTER): power-failure model */
    uint64_t crash_seed;          /* its value: the seed of the lost subset */
    const char *test_map_pause;   /* KIMG_TEST_MAP_PAUSE: the first source mapping
                                     creates this file and waits (up to 60 s)
                                     until it is removed (img/srcmap.c); NULL = off */
    const char *test_open_pause;  /* KIMG_TEST_OPEN_PAUSE: the same, once the first
                                     image opened has been opened (img/image.c) */
};

/* The values, read from the environment on the first call (thread-safe);
 * later changes to the environment are not seen.  Never NULL. */
const struct kimg_tunables *kimg_tunables(void);

/* Read the environment again.  Only where no other thread can be using the
 * library: a test's forked child that has just called setenv(). */
void kimg_tunables_reload(void);

/* A test hook's pause: unless PATH is NULL or *DONE was already set (set
 * here: once per hook and process), create PATH and wait until it is
 * removed, at most 60 s. */
void kimg_test_pause(const char *path, int *done);

#endif
