/*
 * cache.c — the metadata cache for L2 tables and refcount blocks: a fixed
 * number of cluster-sized slots (memory bounded whatever the file holds),
 * LRU replacement, write-back.  Ordering: before any dirty table of a cache
 * is written, its `depends` cache is flushed and the file synced, so a new
 * cluster's refcount reaches the disk before an L2 entry pointing at it.
 * qcow2_flush_caches writes back both caches, then the pending L1 entries
 * (cluster.c), and syncs: the one "everything on disk" step.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"

int qcow2_cache_init(struct qcow2_cache *c, struct qcow2_state *s, int n,
                     size_t table_size, const char *what)
{
    memset(c, 0, sizeof(*c));
    c->s = s;
    c->n = n;
    c->table_size = table_size;
    c->what = what;
    c->mem = kimg_alloc_aligned((size_t)n * table_size);
    c->slots = calloc((size_t)n, sizeof(*c->slots));
    if (!c->mem || !c->slots) {
        free(c->mem);
        free(c->slots);
        c->mem = NULL;
        c->slots = NULL;
        return -ENOMEM;
    }
    return 0;
}

void qcow2_cache_destroy(struct qcow2_cache *c)
{
    free(c->mem);
    free(c->slots);
    c->mem = NULL;
    c->slots = NULL;
    c->n = 0;
}

static uint8_t *slot_table(struct qcow2_cache *c, int i)
{
    return c->mem + (size_t)i * c->table_size;
}

static int slot_of(struct qcow2_cache *c, const uint8_t *table)
{
    return (int)((size_t)(table - c->mem) / c->table_size);
}

static int write_slot(struct qcow2_cache *c, int i)
{
    struct qcow2_cache_slot *sl = &c->slots[i];
    int ret;

    if (!sl->dirty)
        return 0;
    if (c->depends) {
        ret = qcow2_cache_flush(c->depends);
        if (ret < 0)
            return ret;
    }
    ret = kimg_file_pwrite(c->s->file, slot_table(c, i), c->table_size, sl->offset);
    if (ret < 0)
        return ret;
    sl->dirty = false;
    return 0;
}

int qcow2_cache_flush(struct qcow2_cache *c)
{
    bool any = false;
    int ret;

    for (int i = 0; i < c->n; i++)
        if (c->slots[i].offset && c->slots[i].dirty)
            any = true;
    if (!any)
        return 0;
    if (c->depends) {
        ret = qcow2_cache_flush(c->depends);
        if (ret < 0)
            return ret;
    }
    for (int i = 0; i < c->n; i++) {
        if (c->slots[i].offset && c->slots[i].dirty) {
            ret = write_slot(c, i);
            if (ret < 0)
                return ret;
        }
    }
    /* the tables that others depend on must be durable before them */
    return kimg_file_sync(c->s->file);
}

static int find_slot(struct qcow2_cache *c, uint64_t offset)
{
    for (int i = 0; i < c->n; i++)
        if (c->slots[i].offset == offset)
            return i;
    return -1;
}

/* Pick a slot for a new table: an empty one, else the least recently used
 * unreferenced one (written back first if dirty). */
static int evict(struct qcow2_cache *c)
{
    int best = -1;
    for (int i = 0; i < c->n; i++) {
        if (c->slots[i].refs)
            continue;
        if (!c->slots[i].offset)
            return i;
        if (best < 0 || c->slots[i].lru < c->slots[best].lru)
            best = i;
    }
    if (best < 0)
        return kimg_fail(-ENOSPC, "qcow2: all %s cache entries are in use", c->what);
    if (c->slots[best].dirty) {
        /* write back every dirty table at once: one dependency flush and
         * one sync for the lot, not one per eviction */
        int ret = qcow2_cache_flush(c);
        if (ret < 0)
            return ret;
    }
    c->slots[best].offset = 0;
    return best;
}

static int get(struct qcow2_cache *c, uint64_t offset, uint8_t **table, bool read)
{
    int i, ret;

    if (!offset || (offset & c->s->cluster_mask))
        return qcow2_signal_corruption(c->s, "%s offset %#" PRIx64 " invalid",
                                       c->what, offset);
    i = find_slot(c, offset);
    if (i < 0) {
        i = evict(c);
        if (i < 0)
            return i;
        if (read) {
            ret = kimg_file_pread(c->s->file, slot_table(c, i), c->table_size, offset);
            if (ret < 0)
                return ret;
        } else {
            memset(slot_table(c, i), 0, c->table_size);
        }
        c->slots[i].offset = offset;
        c->slots[i].dirty = false;
    } else if (!read) {
        memset(slot_table(c, i), 0, c->table_size);
    }
    c->slots[i].refs++;
    c->slots[i].lru = ++c->counter;
    *table = slot_table(c, i);
    return 0;
}

int qcow2_cache_get(struct qcow2_cache *c, uint64_t offset, uint8_t **table)
{
    return get(c, offset, table, true);
}

int qcow2_cache_get_empty(struct qcow2_cache *c, uint64_t offset, uint8_t **table)
{
    return get(c, offset, table, false);
}

void qcow2_cache_put(struct qcow2_cache *c, uint8_t *table)
{
    if (!table)
        return;
    int i = slot_of(c, table);
    if (c->slots[i].refs > 0)
        c->slots[i].refs--;
}

void qcow2_cache_mark_dirty(struct qcow2_cache *c, uint8_t *table)
{
    c->slots[slot_of(c, table)].dirty = true;
}

void qcow2_cache_discard(struct qcow2_cache *c, uint64_t offset)
{
    int i = find_slot(c, offset);
    if (i >= 0 && offset) {
        c->slots[i].offset = 0;
        c->slots[i].dirty = false;
        c->slots[i].refs = 0;
    }
}

void qcow2_cache_clear(struct qcow2_cache *c)
{
    for (int i = 0; i < c->n; i++) {
        c->slots[i].offset = 0;
        c->slots[i].dirty = false;
        c->slots[i].refs = 0;
    }
}

int qcow2_flush_caches(struct qcow2_state *s)
{
    qcow2_assert_locked(s);
    int ret = qcow2_cache_flush(&s->l2_cache);
    if (ret < 0)
        return ret;
    ret = qcow2_cache_flush(&s->rb_cache);
    if (ret < 0)
        return ret;
    /* the L2 tables are on disk: now the L1 entries pointing at them */
    ret = qcow2_l1_write_pending(s);
    if (ret < 0)
        return ret;
    ret = kimg_file_sync(s->file);
    if (ret < 0)
        return ret;
    if (s->data_file && s->data_file != s->file)
        ret = kimg_file_sync(s->data_file);
    return ret;
}
