/*
 * compare.h — the engine behind `kimg compare`: guest-visible content of
 * two images, across formats and backing chains, as qemu-img compare
 * decides it.  The engine prints nothing; the result says what the
 * command prints.
 */
#ifndef KIMG_COMPARE_H
#define KIMG_COMPARE_H

#include <stdbool.h>
#include <stdint.h>
#include "kimg.h"

/* Results, qemu-img compare's exit codes. */
enum kimg_compare_result {
    KIMG_COMPARE_SAME = 0,
    KIMG_COMPARE_DIFF = 1,
    KIMG_COMPARE_ESTATUS = 3,   /* error checking allocation (block status) */
    KIMG_COMPARE_EREAD = 4,     /* read error, or out of memory or threads */
};

/* What a KIMG_COMPARE_DIFF is. */
enum kimg_compare_diff {
    KIMG_COMPARE_CONTENT,       /* content differs at `offset` */
    KIMG_COMPARE_STRICT_SIZE,   /* strict: the sizes differ */
    KIMG_COMPARE_STRICT_STATUS, /* strict: block status differs at `offset` */
};

struct kimg_compare {
    struct kimg *a, *b;
    const char *name_a, *name_b;  /* in error messages, as the user named them */
    bool strict;                  /* -s: sizes and allocation must match too */
    /* results */
    enum kimg_compare_diff diff;  /* for KIMG_COMPARE_DIFF */
    uint64_t offset;              /* first difference (whole 512-byte sectors) */
    bool tail;                    /* the sizes differ (not strict) and the
                                     common part was equal: the comparison
                                     went on into the larger image's tail
                                     (qemu-img warns before its result) */
};

/*
 * Compare C->a and C->b.  Ranges that block status proves to read as zeros
 * in both are not read; the rest is compared in order, the first
 * difference or error ending the run, as a walk from the start would.
 * Returns a KIMG_COMPARE_* result; for ESTATUS and EREAD kimg_error() holds
 * the line to print (qemu-img's wording, without "kimg: ").
 */
int kimg_compare_run(struct kimg_compare *c);

#endif
