/*
 * check.h — the qcow2 consistency check and repair (formats/qcow2/check.c),
 * the `check` member of the qcow2 driver table.
 */
#ifndef KIMG_QCOW2_CHECK_H
#define KIMG_QCOW2_CHECK_H

#include "kimg/driver.h"

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

/* 1: `check -r all` also clears an L2 entry (to a zero cluster; v2:
 * unallocated) or an L1 entry pointing one cluster or more past the end of
 * the file (it reads as zeros either way), so the re-check comes out clean.
 * qemu-img 7.2 does not (it only fixes the COPIED flag and the re-check
 * still reports the error), and kimg matches qemu-img by default. */
#ifndef QCOW2_CHECK_CLEAR_PAST_EOF
#define QCOW2_CHECK_CLEAR_PAST_EOF 0
#endif

#endif
