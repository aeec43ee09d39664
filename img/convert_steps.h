/*
 * convert_steps.h — the progress steps qemu-img's convert prints with -p,
 * reproduced for kimg's copy engine (see convert_steps.c).
 */
#ifndef KIMG_CONVERT_STEPS_H
#define KIMG_CONVERT_STEPS_H

#include <stdbool.h>
#include <stdint.h>
#include "kimg/convert.h"

struct convert_steps {
    struct kimg_convert *c;
    bool active;                /* c->steps is set and no error was seen */
    uint64_t *src_sectors;      /* each source's length in 512-byte sectors */
    uint64_t total_sectors;
    uint64_t buf_sectors;       /* the largest piece of data counted at once */
    uint64_t cluster_sectors;   /* -c: the target's cluster */
    int64_t backing_sectors;    /* -B: the target's backing length, or -1 */
    /* the walk */
    uint64_t sector, next_status;
    int status;
    /* the last block status reply, if it ended where the status changes
     * (or where qemu cuts anyway): later pieces inside it need no query */
    int cache_src;
    uint64_t cache_start, cache_end;
    struct kimg_extent cache;
    bool cut_by_span;           /* the last query stopped at a unit's end */
    uint64_t allocated, done;
};

/* Measure the work qemu-img would count (a walk over the sources' block
 * status); TARGET_CLUSTER: the target's cluster size (-c).  Leaves the
 * steps inactive (no callback) when c->steps is NULL or the walk fails. */
void convert_steps_start(struct convert_steps *q, struct kimg_convert *c,
                         uint64_t target_cluster);
/* The copy has started on every byte of the target before TO: report the
 * pieces qemu-img would have started by then. */
void convert_steps_advance(struct convert_steps *q, uint64_t to);
void convert_steps_free(struct convert_steps *q);

#endif
