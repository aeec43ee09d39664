/*
 * strset.c — a set of strings (open addressing, FNV-1a), for a batch's
 * collision checks: every path, name, UUID and MAC the clones planned so
 * far, so each check is O(1) and a batch of thousands stays linear.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "clone.h"

static uint64_t hash(const char *kind, const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = kind; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;
    for (const char *p = s; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    return h;
}

static bool same(const char *entry, const char *kind, const char *s)
{
    size_t k = strlen(kind);
    return !strncmp(entry, kind, k) && entry[k] == ':' && !strcmp(entry + k + 1, s);
}

bool clone_strset_has(const struct clone_strset *set, const char *kind, const char *s)
{
    if (!set || !set->cap || !s)
        return false;
    for (size_t i = hash(kind, s) & (set->cap - 1);; i = (i + 1) & (set->cap - 1)) {
        if (!set->slots[i])
            return false;
        if (same(set->slots[i], kind, s))
            return true;
    }
}

int clone_strset_add(struct clone_strset *set, const char *kind, const char *s)
{
    if (!s || clone_strset_has(set, kind, s))
        return 0;
    if ((set->n + 1) * 2 > set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 256;
        char **slots = calloc(cap, sizeof(*slots));
        if (!slots)
            return -ENOMEM;
        for (size_t j = 0; j < set->cap; j++) {
            char *e = set->slots[j];
            if (!e)
                continue;
            const char *colon = strchr(e, ':');
            char kbuf[16];
            size_t kl = (size_t)(colon - e) < sizeof(kbuf) ? (size_t)(colon - e) : sizeof(kbuf) - 1;
            memcpy(kbuf, e, kl);
            kbuf[kl] = '\0';
            size_t i = hash(kbuf, colon + 1) & (cap - 1);
            while (slots[i])
                i = (i + 1) & (cap - 1);
            slots[i] = e;
        }
        free(set->slots);
        set->slots = slots;
        set->cap = cap;
    }
    size_t kl = strlen(kind), sl = strlen(s);
    char *e = malloc(kl + sl + 2);
    if (!e)
        return -ENOMEM;
    memcpy(e, kind, kl);
    e[kl] = ':';
    memcpy(e + kl + 1, s, sl + 1);
    size_t i = hash(kind, s) & (set->cap - 1);
    while (set->slots[i])
        i = (i + 1) & (set->cap - 1);
    set->slots[i] = e;
    set->n++;
    return 0;
}

void clone_strset_free(struct clone_strset *set)
{
    for (size_t i = 0; i < set->cap; i++)
        free(set->slots[i]);
    free(set->slots);
    memset(set, 0, sizeof(*set));
}
