/*
 * keyslot.c — LUKS1 key slots: PBKDF2 (OpenSSL), the anti-forensic
 * splitter (spec 1.2.3 section 2.4: stripes XOR-ed through a hash
 * diffuser), unlocking with a passphrase, creating a volume with qemu 7.2's
 * layout and iteration counts, and amend's add/remove/replace of slots
 * (crash-safe: key material goes into an inactive slot and is synced before
 * the header switches to it; a removed slot leaves the header, synced,
 * before its material is overwritten; an active slot is replaced through a
 * copy of it in a free slot, so a key that opened the volume opens it at
 * every point until the one header write that completes the change).
 * libcrypto is loaded (lazylib/) by each function here that calls it
 * first: luks_pbkdf2, af_run, store_key, luks_create, luks_erase_slot.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uuid/uuid.h>

#include "crypto_api.h"

#include "kimg/file.h"
#include "luks_int.h"

#define NEEDS_CRYPTO "LUKS encryption"       /* the load error's subject */

int luks_pbkdf2(const char *hash, const uint8_t *pass, size_t passlen, const uint8_t *salt,
                size_t saltlen, uint32_t iters, uint8_t *out, size_t outlen)
{
    int ret = kimg_libcrypto_load(NEEDS_CRYPTO);
    if (ret < 0)
        return ret;
    const EVP_MD *md = EVP_get_digestbyname(hash);
    if (!md)
        return kimg_fail(-ENOTSUP, "Hash algorithm '%s' not available", hash);
    if (iters > INT_MAX || passlen > INT_MAX || saltlen > INT_MAX || outlen > INT_MAX)
        return kimg_fail(-EINVAL, "PBKDF2 parameters out of range");
    if (!PKCS5_PBKDF2_HMAC((const char *)pass, (int)passlen, salt, (int)saltlen, (int)iters,
                           md, (int)outlen, out))
        return kimg_fail(-EIO, "PBKDF2 failed");
    return 0;
}

/* The spec's diffuser: each digest-sized block i of D replaced by
 * H(be32(i) || block), the last partial block truncated. */
static int diffuse(const EVP_MD *md, uint8_t *d, size_t len)
{
    size_t ds = (size_t)EVP_MD_get_size(md);
    uint8_t out[EVP_MAX_MD_SIZE], iv[4];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ret = 0;

    if (!ctx)
        return -ENOMEM;
    for (size_t off = 0, i = 0; off < len; off += ds, i++) {
        size_t n = len - off < ds ? len - off : ds;
        luks_put_be32(iv, (uint32_t)i);
        if (!EVP_DigestInit_ex(ctx, md, NULL) || !EVP_DigestUpdate(ctx, iv, 4) ||
            !EVP_DigestUpdate(ctx, d + off, n) || !EVP_DigestFinal_ex(ctx, out, NULL)) {
            ret = -EIO;
            break;
        }
        memcpy(d + off, out, n);
    }
    EVP_MD_CTX_free(ctx);
    explicit_bzero(out, sizeof(out));
    return ret;
}

/* Shared core: DST = stripes (split) or SRC's stripes merged (merge). */
static int af_run(const char *hash, const uint8_t *src, uint8_t *dst, size_t len,
                  uint32_t stripes, bool split)
{
    const EVP_MD *md;
    uint8_t *d;
    int ret = kimg_libcrypto_load(NEEDS_CRYPTO);

    if (ret < 0)
        return ret;
    md = EVP_get_digestbyname(hash);
    if (!md)
        return kimg_fail(-ENOTSUP, "Hash algorithm '%s' not available", hash);
    if (stripes == 0 || len == 0 || len > LUKS_MAX_KEY_BYTES)
        return kimg_fail(-EINVAL, "LUKS: bad anti-forensic split parameters");
    d = calloc(1, len);
    if (!d)
        return kimg_fail(-ENOMEM, "out of memory");
    for (uint32_t i = 0; i + 1 < stripes; i++) {
        uint8_t *s = split ? dst + (size_t)i * len : (uint8_t *)src + (size_t)i * len;
        if (split && RAND_bytes(s, (int)len) != 1) {
            ret = kimg_fail(-EIO, "cannot generate random bytes");
            break;
        }
        for (size_t j = 0; j < len; j++)
            d[j] ^= s[j];
        ret = diffuse(md, d, len);
        if (ret < 0) {
            kimg_error("LUKS: hash failed");
            break;
        }
    }
    if (ret == 0) {
        const uint8_t *last = src + (size_t)(split ? 0 : stripes - 1) * len;
        uint8_t *o = split ? dst + (size_t)(stripes - 1) * len : dst;
        for (size_t j = 0; j < len; j++)
            o[j] = d[j] ^ last[j];
    }
    explicit_bzero(d, len);
    free(d);
    return ret;
}

int luks_af_split(const char *hash, const uint8_t *src, uint8_t *dst, size_t len,
                  uint32_t stripes)
{
    return af_run(hash, src, dst, len, stripes, true);
}

int luks_af_merge(const char *hash, const uint8_t *src, uint8_t *dst, size_t len,
                  uint32_t stripes)
{
    return af_run(hash, src, dst, len, stripes, false);
}

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* PBKDF2-HMAC speed of one hash, in output blocks' iterations per CPU
 * second of this thread, measured once per process and hash.  qemu runs its
 * benchmark (qcrypto_pbkdf2_count_iters) until one run takes over 500 ms
 * of a millisecond-grained thread clock, and again for every key it
 * derives: a create costs it two such runs.  The thread clock here counts
 * nanoseconds, so 40 ms of work measures the same rate to well under 1%
 * (the iteration count is a machine-speed estimate in both tools: only
 * the time an unlock takes depends on it), and one measurement serves the
 * digest and every key slot of the run. */
#define BENCH_NS 40000000u
static struct bench_rate {
    char hash[16];
    uint64_t per_sec;
} bench_rates[8];
static unsigned bench_used;
static pthread_mutex_t bench_lock = PTHREAD_MUTEX_INITIALIZER;

static int bench_rate(const char *hash, uint64_t *per_sec)
{
    uint8_t key[32] = { 0 }, salt[LUKS_SALT_LEN] = { 0 }, out[64];
    size_t blk = luks_hash_len(hash);
    uint64_t n = 1u << 12, delta;
    int ret = 0;

    bool cacheable = strlen(hash) < sizeof(bench_rates[0].hash);

    if (blk == 0 || blk > sizeof(out))
        return kimg_fail(-ENOTSUP, "Hash algorithm '%s' not available", hash);
    pthread_mutex_lock(&bench_lock);
    for (unsigned i = 0; i < bench_used; i++)
        if (!strcmp(bench_rates[i].hash, hash)) {
            *per_sec = bench_rates[i].per_sec;
            goto out;
        }
    for (;;) {
        uint64_t start = thread_cpu_ns();
        ret = luks_pbkdf2(hash, key, sizeof(key), salt, sizeof(salt), (uint32_t)n, out, blk);
        if (ret < 0)
            goto out;
        delta = thread_cpu_ns() - start;
        if (delta >= BENCH_NS)
            break;
        /* aim 20% past the goal; at most x10 a round (a first run may
         * be slowed by a cold cache or a descheduled thread) */
        n = delta < BENCH_NS / 10 ? n * 10 : n * (BENCH_NS + BENCH_NS / 5) / delta + 1;
        if (n > INT_MAX / 2) {
            ret = kimg_fail(-ERANGE, "PBKDF2 benchmark out of range");
            goto out;
        }
    }
    *per_sec = n * 1000000000u / delta;
    if (cacheable && bench_used < sizeof(bench_rates) / sizeof(bench_rates[0])) {
        strcpy(bench_rates[bench_used].hash, hash);
        bench_rates[bench_used++].per_sec = *per_sec;
    }
out:
    pthread_mutex_unlock(&bench_lock);
    return ret;
}

int luks_count_iters(const char *hash, size_t outlen, uint64_t *iters)
{
    uint64_t per_sec;
    int ret = bench_rate(hash, &per_sec);

    if (ret < 0)
        return ret;
    if (outlen == 0 || outlen > LUKS_MAX_KEY_BYTES)
        return -EINVAL;
    /* the count whose run for OUTLEN bytes (each output block a full
     * PBKDF2 chain) takes one second, as qemu's value means */
    *iters = per_sec / ((outlen + luks_hash_len(hash) - 1) / luks_hash_len(hash));
    return 0;
}

/* PBKDF2 work in HMAC blocks (see LUKS_MAX_WORK). */
static uint64_t pbkdf2_work(const struct luks *l, uint32_t iters, size_t outlen)
{
    unsigned ds = luks_hash_len(l->hash_alg);
    return (uint64_t)iters * ((outlen + ds - 1) / ds);
}

/* Bytes of a slot's key material, whole sectors (what is read/written). */
static size_t material_len(const struct luks *l)
{
    size_t n = (size_t)l->key_bytes * LUKS_STRIPES;
    return (n + LUKS_SECTOR - 1) / LUKS_SECTOR * LUKS_SECTOR;
}

/* Derive slot I's key from SECRET, decrypt and merge its material into MK,
 * check the digest: 1 match, 0 no match, -errno. */
static int try_slot(struct luks *l, int i, const uint8_t *secret, size_t len, uint8_t *mk)
{
    const struct luks_slot *sl = &l->slots[i];
    size_t mlen = material_len(l);
    uint8_t slotkey[LUKS_MAX_KEY_BYTES], digest[LUKS_DIGEST_LEN];
    struct luks_cipher *c = NULL;
    uint8_t *mat = kimg_alloc_aligned(mlen);
    int ret;

    if (!mat)
        return kimg_fail(-ENOMEM, "out of memory");
    ret = luks_pbkdf2(l->hash_alg, secret, len, sl->salt, LUKS_SALT_LEN, sl->iters, slotkey,
                      l->key_bytes);
    if (ret == 0)
        ret = l->io.pread(l->io.opaque, mat, mlen, (uint64_t)sl->key_offset * LUKS_SECTOR);
    if (ret >= 0)
        ret = luks_cipher_new(&c, l->cipher_alg, l->cipher_mode, l->ivgen_alg,
                              l->ivgen_hash_alg, slotkey, l->key_bytes);
    if (ret >= 0)
        ret = luks_cipher_run(c, 0, mat, mlen, false);
    if (ret >= 0)
        ret = luks_af_merge(l->hash_alg, mat, mk, l->key_bytes, sl->stripes);
    if (ret >= 0)
        ret = luks_pbkdf2(l->hash_alg, mk, l->key_bytes, l->mk_salt, LUKS_SALT_LEN,
                          l->mk_iters, digest, LUKS_DIGEST_LEN);
    if (ret >= 0)
        ret = CRYPTO_memcmp(digest, l->mk_digest, LUKS_DIGEST_LEN) == 0;
    luks_cipher_free(c);
    explicit_bzero(slotkey, sizeof(slotkey));
    explicit_bzero(mat, mlen);
    free(mat);
    return ret;
}

/* Whether slot I and the digest are within the work limits. */
static bool within_limits(const struct luks *l, int i)
{
    uint64_t cap = l->flags & LUKS_OPEN_UNTRUSTED ? LUKS_MAX_WORK_UNTRUSTED : LUKS_MAX_WORK;
    return pbkdf2_work(l, l->slots[i].iters, l->key_bytes) <= cap &&
           pbkdf2_work(l, l->mk_iters, LUKS_DIGEST_LEN) <= cap;
}

static int set_master_key(struct luks *l, const uint8_t *mk)
{
    struct luks_cipher *c;
    int ret = luks_cipher_new(&c, l->cipher_alg, l->cipher_mode, l->ivgen_alg,
                              l->ivgen_hash_alg, mk, l->key_bytes);
    if (ret < 0)
        return ret;
    l->mk = malloc(l->key_bytes);
    if (!l->mk) {
        luks_cipher_free(c);
        return kimg_fail(-ENOMEM, "out of memory");
    }
    memcpy(l->mk, mk, l->key_bytes);
    l->cipher = c;
    return 0;
}

int luks_unlock(struct luks *l, const uint8_t *secret, size_t len)
{
    uint8_t mk[LUKS_MAX_KEY_BYTES];
    int ret = 0, over = -1;

    if (l->mk)
        return 0;
    for (int i = 0; i < LUKS_NUM_SLOTS && ret == 0; i++) {
        if (!l->slots[i].active)
            continue;
        if (!within_limits(l, i)) {
            over = i;
            continue;
        }
        ret = try_slot(l, i, secret, len, mk);
    }
    if (ret > 0)
        ret = set_master_key(l, mk);
    else if (ret == 0 && over >= 0)
        ret = kimg_fail(-EPERM, "LUKS key slot %d needs more PBKDF2 iterations than kimg "
                        "allows (%" PRIu64 " HMAC blocks%s)", over,
                        l->flags & LUKS_OPEN_UNTRUSTED ? LUKS_MAX_WORK_UNTRUSTED
                                                       : LUKS_MAX_WORK,
                        l->flags & LUKS_OPEN_UNTRUSTED ? " under --untrusted" : "");
    else if (ret == 0)
        ret = kimg_fail(-EPERM, "Invalid password, cannot unlock any keyslot");
    explicit_bzero(mk, sizeof(mk));
    return ret;
}

/* Write slot I's key material for SECRET and then the header naming it
 * active.  The slot must be inactive on disk (crash safety). */
static int store_key(struct luks *l, int i, const uint8_t *secret, size_t len,
                     uint64_t iter_time_ms)
{
    struct luks_slot *sl = &l->slots[i], old = *sl;
    size_t mlen = material_len(l);
    uint8_t slotkey[LUKS_MAX_KEY_BYTES];
    struct luks_cipher *c = NULL;
    uint64_t iters;
    int ret;

    if ((ret = kimg_libcrypto_load(NEEDS_CRYPTO)) < 0)
        return ret;
    uint8_t *mat = kimg_alloc_aligned(mlen);
    if (!mat)
        return kimg_fail(-ENOMEM, "out of memory");
    memset(mat, 0, mlen);
    if (RAND_bytes(sl->salt, LUKS_SALT_LEN) != 1) {
        ret = kimg_fail(-EIO, "cannot generate random bytes");
        goto out;
    }
    ret = luks_count_iters(l->hash_alg, l->key_bytes, &iters);
    if (ret < 0)
        goto out;
    if (iters > UINT64_MAX / iter_time_ms || iters * iter_time_ms / 1000 > UINT32_MAX) {
        ret = kimg_fail(-EINVAL, "PBKDF iterations %" PRIu64 " too large to scale", iters);
        goto out;
    }
    iters = iters * iter_time_ms / 1000;
    sl->iters = iters < LUKS_MIN_ITERS ? LUKS_MIN_ITERS : (uint32_t)iters;
    sl->stripes = LUKS_STRIPES;
    ret = luks_pbkdf2(l->hash_alg, secret, len, sl->salt, LUKS_SALT_LEN, sl->iters, slotkey,
                      l->key_bytes);
    if (ret == 0)
        ret = luks_af_split(l->hash_alg, l->mk, mat, l->key_bytes, LUKS_STRIPES);
    if (ret == 0)
        ret = luks_cipher_new(&c, l->cipher_alg, l->cipher_mode, l->ivgen_alg,
                              l->ivgen_hash_alg, slotkey, l->key_bytes);
    if (ret == 0)
        ret = luks_cipher_run(c, 0, mat, mlen, true);
    if (ret == 0)
        ret = l->io.pwrite(l->io.opaque, mat, mlen, (uint64_t)sl->key_offset * LUKS_SECTOR);
    if (ret >= 0 && l->io.sync)
        ret = l->io.sync(l->io.opaque);
    if (ret >= 0) {
        sl->active = true;
        ret = luks_header_store(l);
    }
out:
    if (ret < 0)
        *sl = old;
    luks_cipher_free(c);
    explicit_bzero(slotkey, sizeof(slotkey));
    explicit_bzero(mat, mlen);
    free(mat);
    return ret < 0 ? ret : 0;
}

int luks_create(struct luks **out, const struct luks_params *p, const uint8_t *secret,
                size_t len, const struct luks_io *io, uint64_t *area_len)
{
    uint64_t iter_time = p && p->iter_time_ms ? p->iter_time_ms : 2000, iters;
    uint8_t mk[LUKS_MAX_KEY_BYTES];
    uuid_t uu;
    int ret;

    *out = NULL;
    if (!io->pwrite)
        return kimg_fail(-EROFS, "LUKS: cannot create on a read-only file");
    struct luks *l = calloc(1, sizeof(*l));
    if (!l)
        return kimg_fail(-ENOMEM, "out of memory");
    l->io = *io;
    ret = luks_header_setup(l, p);
    if (ret < 0)
        goto fail;
    uint64_t split = luks_slot_sectors(l->key_bytes, LUKS_STRIPES);
    l->payload_offset = (uint32_t)(LUKS_HDR_SECTORS + LUKS_NUM_SLOTS * split);
    if (luks_payload_offset(l) > io->len) {
        ret = kimg_fail(-EINVAL, "LUKS: the header area (%" PRIu64 " bytes) does not fit in "
                        "%" PRIu64 " bytes", luks_payload_offset(l), io->len);
        goto fail;
    }
    for (int i = 0; i < LUKS_NUM_SLOTS; i++) {
        l->slots[i].stripes = LUKS_STRIPES;
        l->slots[i].key_offset = (uint32_t)(LUKS_HDR_SECTORS + i * split);
    }
    if ((ret = kimg_libcrypto_load(NEEDS_CRYPTO)) < 0)
        goto fail;
    if (RAND_bytes(mk, (int)l->key_bytes) != 1 ||
        RAND_bytes(l->mk_salt, LUKS_SALT_LEN) != 1) {
        ret = kimg_fail(-EIO, "cannot generate random bytes");
        goto fail;
    }
    /* qemu: one second's count for the digest, scaled to iter-time, / 8 */
    ret = luks_count_iters(l->hash_alg, LUKS_DIGEST_LEN, &iters);
    if (ret < 0)
        goto fail;
    if (iters > UINT64_MAX / iter_time || iters * iter_time / 1000 / 8 > UINT32_MAX) {
        ret = kimg_fail(-EINVAL, "PBKDF iterations %" PRIu64 " too large to scale", iters);
        goto fail;
    }
    iters = iters * iter_time / 1000 / 8;
    l->mk_iters = iters < LUKS_MIN_ITERS ? LUKS_MIN_ITERS : (uint32_t)iters;
    ret = luks_pbkdf2(l->hash_alg, mk, l->key_bytes, l->mk_salt, LUKS_SALT_LEN, l->mk_iters,
                      l->mk_digest, LUKS_DIGEST_LEN);
    if (ret < 0)
        goto fail;
    uuid_generate_random(uu);
    uuid_unparse_lower(uu, l->uuid);
    ret = set_master_key(l, mk);
    if (ret < 0)
        goto fail;
    ret = store_key(l, 0, secret, len, iter_time);
    if (ret < 0)
        goto fail;
    explicit_bzero(mk, sizeof(mk));
    if (area_len)
        *area_len = luks_payload_offset(l);
    *out = l;
    return 0;
fail:
    explicit_bzero(mk, sizeof(mk));
    luks_close(l);
    return ret;
}

int luks_add_slot(struct luks *l, int slot, const uint8_t *new_secret, size_t len,
                  uint64_t iter_time_ms)
{
    if (!l->mk)
        return kimg_fail(-ENOKEY, "LUKS volume is locked");
    if (slot >= LUKS_NUM_SLOTS)
        return kimg_fail(-EINVAL, "Invalid keyslot %d specified, must be between 0 and %d",
                         slot, LUKS_NUM_SLOTS - 1);
    if (slot < 0) {
        for (int i = 0; i < LUKS_NUM_SLOTS && slot < 0; i++)
            if (!l->slots[i].active)
                slot = i;
        if (slot < 0)
            return kimg_fail(-ENOSPC, "Can't add a keyslot - all keyslots are in use");
    } else if (l->slots[slot].active) {
        return kimg_fail(-EINVAL, "Refusing to overwrite active keyslot %i - please erase "
                         "it first", slot);
    }
    return store_key(l, slot, new_secret, len, iter_time_ms ? iter_time_ms : 2000);
}

/* Deactivate slot I: the header first (synced), then random bytes over
 * its key material, as qemu's qcrypto_block_luks_erase_key. */
int luks_erase_slot(struct luks *l, int i)
{
    struct luks_slot *sl = &l->slots[i], old = *sl;
    size_t mlen = material_len(l);
    /* before the header changes: the junk below needs libcrypto */
    int ret = kimg_libcrypto_load(NEEDS_CRYPTO);

    if (ret < 0)
        return ret;
    memset(sl->salt, 0, LUKS_SALT_LEN);
    sl->iters = 0;
    sl->active = false;
    ret = luks_header_store(l);
    if (ret < 0) {
        *sl = old;
        return ret;
    }
    uint8_t *junk = kimg_alloc_aligned(mlen);
    if (!junk)
        return kimg_fail(-ENOMEM, "out of memory");
    for (int pass = 0; pass < LUKS_ERASE_PASSES && ret >= 0; pass++) {
        if (RAND_bytes(junk, (int)mlen) != 1)
            ret = kimg_fail(-EIO, "cannot generate random bytes");
        else
            ret = l->io.pwrite(l->io.opaque, junk, mlen, (uint64_t)sl->key_offset * LUKS_SECTOR);
    }
    if (ret >= 0 && l->io.sync)
        ret = l->io.sync(l->io.opaque);
    free(junk);
    return ret < 0 ? ret : 0;
}

int luks_remove_slots(struct luks *l, int slot, const uint8_t *old_secret, size_t len)
{
    uint8_t mk[LUKS_MAX_KEY_BYTES];
    bool match[LUKS_NUM_SLOTS] = { false };
    int nactive = 0, nmatch = 0, ret = 0;

    if (!l->mk)
        return kimg_fail(-ENOKEY, "LUKS volume is locked");
    for (int i = 0; i < LUKS_NUM_SLOTS; i++)
        nactive += l->slots[i].active;
    if (slot >= 0) {
        if (slot >= LUKS_NUM_SLOTS)
            return kimg_fail(-EINVAL, "Invalid keyslot %d specified, must be between 0 and %d",
                             slot, LUKS_NUM_SLOTS - 1);
        if (old_secret) {
            ret = l->slots[slot].active && within_limits(l, slot) ?
                  try_slot(l, slot, old_secret, len, mk) : 0;
            explicit_bzero(mk, sizeof(mk));
            if (ret < 0)
                return ret;
            if (ret == 0)
                return kimg_fail(-EINVAL, "Given keyslot %d doesn't contain the given old "
                                 "password for erase operation", slot);
        }
        if (!l->slots[slot].active)
            return kimg_fail(-EINVAL, "Given keyslot %d is already erased (inactive) ", slot);
        if (nactive == 1)
            return kimg_fail(-EINVAL, "Attempt to erase the only active keyslot %d which will "
                             "erase all the data in the image irreversibly - refusing "
                             "operation", slot);
        return luks_erase_slot(l, slot);
    }
    if (!old_secret)
        return kimg_fail(-EINVAL, "To erase keyslot(s), either explicit keyslot index or the "
                         "password currently contained in them must be given");
    for (int i = 0; i < LUKS_NUM_SLOTS; i++) {
        if (!l->slots[i].active || !within_limits(l, i))
            continue;
        ret = try_slot(l, i, old_secret, len, mk);
        if (ret < 0)
            goto out;
        match[i] = ret > 0;
        nmatch += match[i];
    }
    ret = 0;
    if (nmatch == 0) {
        ret = kimg_fail(-EINVAL, "No keyslots match given (old) password for erase operation");
        goto out;
    }
    if (nmatch == nactive) {
        ret = kimg_fail(-EINVAL, "All the active keyslots match the (old) password that was "
                        "given and erasing them will erase all the data in the image "
                        "irreversibly - refusing operation");
        goto out;
    }
    for (int i = 0; i < LUKS_NUM_SLOTS && ret == 0; i++)
        if (match[i])
            ret = luks_erase_slot(l, i);
out:
    explicit_bzero(mk, sizeof(mk));
    return ret;
}

/* Copy active slot FROM into inactive slot TO: its key material (the
 * material's IVs count from the slot's first sector, so the bytes move
 * as they are) written and synced, then the header naming TO active with
 * FROM's salt and iterations.  Both slots then open with FROM's key. */
static int copy_slot(struct luks *l, int from, int to)
{
    struct luks_slot *dst = &l->slots[to], old = *dst;
    size_t mlen = material_len(l);
    uint8_t *mat = kimg_alloc_aligned(mlen);
    int ret;

    if (!mat)
        return kimg_fail(-ENOMEM, "out of memory");
    ret = l->io.pread(l->io.opaque, mat, mlen, (uint64_t)l->slots[from].key_offset * LUKS_SECTOR);
    if (ret >= 0)
        ret = l->io.pwrite(l->io.opaque, mat, mlen, (uint64_t)dst->key_offset * LUKS_SECTOR);
    if (ret >= 0 && l->io.sync)
        ret = l->io.sync(l->io.opaque);
    explicit_bzero(mat, mlen);
    free(mat);
    if (ret < 0)
        return ret;
    dst->active = true;
    dst->iters = l->slots[from].iters;
    dst->stripes = l->slots[from].stripes;
    memcpy(dst->salt, l->slots[from].salt, LUKS_SALT_LEN);
    ret = luks_header_store(l);
    if (ret < 0)
        *dst = old;
    return ret;
}

int luks_replace_slot(struct luks *l, int slot, const uint8_t *new_secret, size_t len,
                      uint64_t iter_time_ms)
{
    int spare = -1, ret;

    if (!l->mk)
        return kimg_fail(-ENOKEY, "LUKS volume is locked");
    if (slot < 0 || slot >= LUKS_NUM_SLOTS)
        return kimg_fail(-EINVAL, "Invalid keyslot %d specified, must be between 0 and %d",
                         slot, LUKS_NUM_SLOTS - 1);
    if (!l->slots[slot].active)
        return luks_add_slot(l, slot, new_secret, len, iter_time_ms);
    if (!iter_time_ms)
        iter_time_ms = 2000;
    for (int i = 0; i < LUKS_NUM_SLOTS && spare < 0; i++)
        if (!l->slots[i].active)
            spare = i;
    if (spare < 0) {
        /* every slot active: the seven others keep opening the volume */
        ret = luks_erase_slot(l, slot);
        return ret < 0 ? ret : store_key(l, slot, new_secret, len, iter_time_ms);
    }
    /* the old key in SPARE too; new material over SLOT (a crash leaves
     * SLOT unopenable, SPARE opens); one header write switches SLOT to
     * the new key; then SPARE is erased as any removed slot */
    ret = copy_slot(l, slot, spare);
    if (ret == 0)
        ret = store_key(l, slot, new_secret, len, iter_time_ms);
    if (ret == 0)
        ret = luks_erase_slot(l, spare);
    return ret;
}
