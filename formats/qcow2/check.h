/*
 * check.h — the qcow2 consistency check and repair (formats/qcow2/check.c),
 * the `check` member of the qcow2 driver table.
 */
#ifndef KIMG_QCOW2_CHECK_H
#define KIMG_QCOW2_CHECK_H

#include "driver.h"

/*
 * Check IMG (a qcow2 layer opened with KIMG_OPEN_REPAIR, read-only unless
 * FIX is non-zero) as `qemu-img check` does: count every reference to each
 * host cluster, compare with the stored refcounts, check the COPIED flags;
 * per-problem lines in qemu-img's wording go to res->log.  FIX
 * (KIMG_CHECK_FIX_LEAKS / KIMG_CHECK_FIX_ERRORS) repairs what it can.
 * Returns 0 when the check ran to the end (res tells what it found), or a
 * negative errno when it could not (res->check_errors counts why).
 */
int qcow2_check(struct kimg *img, struct kimg_check *res, unsigned fix);

/* Most host clusters the check accepts (one 32-bit counter each). */
#define QCOW2_CHECK_MAX_CLUSTERS (1ULL << 28)
/* L2 entries the check may visit (all tables, all snapshots): the larger
 * of this and (snapshots + 1) * file size / 8. */
#define QCOW2_CHECK_MIN_L2_BUDGET (1ULL << 32)

#endif
