/*
 * amend.c — qemu-img amend on LUKS key slots, for both users of the
 * library (the luks format's options "state", "keyslot", ..., qcow2's
 * "encrypt.state", ...): the options read and refused in the order and
 * words of qemu 7.2's crypto/block-luks.c (amend_add_keyslot,
 * amend_erase_keyslots), then the crash-safe slot changes of keyslot.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "luks_int.h"
#include "kimg/opts.h"

struct amend_args {
    const char *state, *news, *olds;
    bool has_slot, has_iter;
    uint64_t slot, iter;
};

/* PREFIX + NAME, looked up in O. */
static const char *get(const struct kimg_opts *o, const char *prefix, const char *name)
{
    char key[64];
    snprintf(key, sizeof(key), "%s%s", prefix, name);
    return kimg_opts_get(o, key);
}

static int get_num(const struct kimg_opts *o, const char *prefix, const char *name,
                   bool *has, uint64_t *v)
{
    char key[64];
    snprintf(key, sizeof(key), "%s%s", prefix, name);
    *has = kimg_opts_get(o, key) != NULL;
    return kimg_opts_get_u64(o, key, 0, v);
}

static int bad_slot(uint64_t slot)
{
    /* qemu prints its int with %u */
    return kimg_fail(-EINVAL, "Invalid keyslot %" PRIu32 " specified, must be between 0 and %d",
                     (uint32_t)slot, LUKS_NUM_SLOTS - 1);
}

/* The secret named ID, or -errno with qemu's message. */
static int secret(const char *id, uint8_t **key, size_t *len)
{
    return kimg_secret_get(id, key, len);
}

static int add(struct luks *l, const struct amend_args *a, bool force)
{
    int slot = -1, ret;
    uint8_t *key;
    size_t klen;

    if (!a->news)
        return kimg_fail(-EINVAL, "'new-secret' is required to activate a keyslot");
    if (a->olds)
        return kimg_fail(-EINVAL, "'old-secret' must not be given when activating keyslots");
    if (a->has_slot) {
        if (a->slot >= LUKS_NUM_SLOTS)
            return bad_slot(a->slot);
        slot = (int)a->slot;
    } else {
        for (int i = 0; i < LUKS_NUM_SLOTS && slot < 0; i++)
            if (!l->slots[i].active)
                slot = i;
        if (slot < 0)
            return kimg_fail(-ENOSPC, "Can't add a keyslot - all keyslots are in use");
    }
    if (!force && l->slots[slot].active)
        return kimg_fail(-EINVAL, "Refusing to overwrite active keyslot %i - please erase it "
                         "first", slot);
    if ((ret = secret(a->news, &key, &klen)) < 0)
        return ret;
    /* qemu takes iter-time=0 as given (its minimum iteration count): 1 ms
     * is the closest the library's "0 = default" contract allows */
    uint64_t it = !a->has_iter ? 2000 : a->iter ? a->iter : 1;
    ret = l->slots[slot].active ? luks_replace_slot(l, slot, key, klen, it)
                                : luks_add_slot(l, slot, key, klen, it);
    kimg_secret_free(key, klen);
    return ret;
}

static int erase(struct luks *l, const struct amend_args *a, bool force)
{
    uint8_t *key = NULL;
    size_t klen = 0;
    int ret;

    if (a->news)
        return kimg_fail(-EINVAL, "'new-secret' must not be given when erasing keyslots");
    if (a->has_iter)
        return kimg_fail(-EINVAL, "'iter-time' must not be given when erasing keyslots");
    if (a->olds && (ret = secret(a->olds, &key, &klen)) < 0)
        return ret;
    if (a->has_slot && a->slot >= LUKS_NUM_SLOTS)
        ret = bad_slot(a->slot);
    else if (a->has_slot && force && !a->olds && !l->slots[a->slot].active)
        ret = luks_erase_slot(l, (int)a->slot);  /* qemu --force: erased again */
    else
        ret = luks_remove_slots(l, a->has_slot ? (int)a->slot : -1, key, klen);
    kimg_secret_free(key, klen);
    return ret;
}

int luks_amend(struct luks *l, const struct kimg_opts *opts, const char *prefix, bool force)
{
    struct amend_args a;
    int ret;

    if (!luks_unlocked(l))
        return kimg_fail(-ENOKEY, "LUKS volume is locked");
    memset(&a, 0, sizeof(a));
    a.state = get(opts, prefix, "state");
    a.news = get(opts, prefix, "new-secret");
    a.olds = get(opts, prefix, "old-secret");
    if ((ret = get_num(opts, prefix, "keyslot", &a.has_slot, &a.slot)) < 0 ||
        (ret = get_num(opts, prefix, "iter-time", &a.has_iter, &a.iter)) < 0)
        return ret;
    /* qemu's option visitor: the state first, unprefixed */
    if (!a.state)
        return kimg_fail(-EINVAL, "Parameter 'state' is missing");
    if (!strcmp(a.state, "active"))
        return add(l, &a, force);
    if (!strcmp(a.state, "inactive"))
        return erase(l, &a, force);
    return kimg_fail(-EINVAL, "Parameter 'state' does not accept value '%s'", a.state);
}
