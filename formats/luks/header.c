/*
 * header.c — the LUKS1 header: parse and validate the 592-byte header and
 * its key-slot table (every field bounded, names NUL-terminated and known,
 * checks and messages as qemu 7.2's qcrypto_block_luks_check_header and
 * _parse_header), serialize it, resolve creation names, the layout qemu
 * writes, open/close and qemu-img info's "encrypt" object.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "luks_int.h"

static const uint8_t luks_magic[LUKS_MAGIC_LEN] = { 'L', 'U', 'K', 'S', 0xba, 0xbe };

static const char *const cipher_modes[] = { "ecb", "cbc", "xts", "ctr", NULL };
static const char *const ivgens[] = { "plain", "plain64", "essiv", NULL };

/* qemu's QCryptoHashAlgorithm names and digest lengths */
static const struct { const char *name; unsigned digest; } hashes[] = {
    { "md5", 16 }, { "sha1", 20 }, { "sha224", 28 }, { "sha256", 32 },
    { "sha384", 48 }, { "sha512", 64 }, { "ripemd160", 20 },
};

/* qemu's cipher name + key size -> algorithm table (block-luks.c) */
static const struct { const char *name; unsigned sizes[4]; } ciphers[] = {
    { "aes", { 16, 24, 32, 0 } },
    { "cast5", { 16, 0 } },
    { "serpent", { 16, 24, 32, 0 } },
    { "twofish", { 16, 24, 32, 0 } },
};

static const char *lookup(const char *const *names, const char *s)
{
    for (int i = 0; names[i]; i++)
        if (!strcmp(names[i], s))
            return names[i];
    return NULL;
}

static int lookup_hash(const char *s)
{
    for (size_t i = 0; i < sizeof(hashes) / sizeof(hashes[0]); i++)
        if (!strcmp(hashes[i].name, s))
            return (int)i;
    return -1;
}

unsigned luks_hash_len(const char *name)
{
    int i = name ? lookup_hash(name) : -1;
    return i < 0 ? 0 : hashes[i].digest;
}

/* Copy a NUL-terminated string from a fixed-size field; -1 if no NUL. */
static int field_string(char *out, const uint8_t *p, size_t len)
{
    const uint8_t *nul = memchr(p, 0, len);
    if (!nul)
        return -1;
    memcpy(out, p, (size_t)(nul - p) + 1);
    return 0;
}

/* Bytes shown in messages: printable ASCII only. */
static void printable(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
            *s = '?';
}

uint64_t luks_slot_sectors(uint32_t key_bytes, uint32_t stripes)
{
    uint64_t sectors = ((uint64_t)key_bytes * stripes + LUKS_SECTOR - 1) / LUKS_SECTOR;
    return (sectors + LUKS_HDR_SECTORS - 1) / LUKS_HDR_SECTORS * LUKS_HDR_SECTORS;
}

/* The family ("aes") and key size of NAME with KEY_BYTES (xts: halved) as
 * qemu's table knows it; writes "aes-256" into ALG.  -EINVAL if unknown. */
static int resolve_cipher(const char *name, uint32_t key_bytes, const char *mode,
                          char *alg, size_t alglen, const char **family)
{
    uint32_t kb = key_bytes;
    if (!strcmp(mode, "xts"))
        kb /= 2;
    for (size_t i = 0; i < sizeof(ciphers) / sizeof(ciphers[0]); i++) {
        if (strcmp(ciphers[i].name, name))
            continue;
        for (int j = 0; ciphers[i].sizes[j]; j++)
            if (ciphers[i].sizes[j] == kb && (strcmp(mode, "xts") || kb * 2 == key_bytes)) {
                *family = ciphers[i].name;
                snprintf(alg, alglen, "%s-%u", ciphers[i].name, kb * 8);
                return 0;
            }
    }
    return kimg_fail(-EINVAL, "Algorithm '%s' with key size %" PRIu32 " bytes not supported",
                     name, kb);
}

/* The ESSIV cipher is the same family keyed with the hash's digest. */
static int check_essiv(const char *family, const char *alg, unsigned kb, unsigned digest)
{
    if (digest == kb)
        return 0;
    if (!strcmp(family, "cast5"))
        return kimg_fail(-EINVAL, "Cipher %s not supported with essiv", alg);
    if (digest != 16 && digest != 24 && digest != 32)
        return kimg_fail(-EINVAL, "No %s cipher with key size %u available",
                         !strcmp(family, "aes") ? "AES" :
                         !strcmp(family, "serpent") ? "Serpent" : "Twofish", digest);
    return 0;
}

static int parse_slots(struct luks *l, const uint8_t *buf)
{
    for (int i = 0; i < LUKS_NUM_SLOTS; i++) {
        const uint8_t *p = buf + LUKS_OFF_SLOTS + i * LUKS_SLOT_LEN;
        struct luks_slot *sl = &l->slots[i];
        uint32_t active = luks_be32(p);
        sl->iters = luks_be32(p + 4);
        memcpy(sl->salt, p + 8, LUKS_SALT_LEN);
        sl->key_offset = luks_be32(p + 40);
        sl->stripes = luks_be32(p + 44);
        if (sl->stripes != LUKS_STRIPES)
            return kimg_fail(-EINVAL, "Keyslot %d is corrupted (stripes %" PRIu32 " != %u)",
                             i, sl->stripes, LUKS_STRIPES);
        if (active != LUKS_SLOT_ACTIVE && active != LUKS_SLOT_INACTIVE)
            return kimg_fail(-EINVAL, "Keyslot %d state (active/disable) is corrupted", i);
        sl->active = active == LUKS_SLOT_ACTIVE;
        if (sl->active && sl->iters == 0)
            return kimg_fail(-EINVAL, "Keyslot %d iteration count is zero", i);
        if (sl->key_offset < LUKS_HDR_SECTORS)
            return kimg_fail(-EINVAL, "Keyslot %d is overlapping with the LUKS header", i);
        uint64_t end = (uint64_t)sl->key_offset + luks_slot_sectors(l->key_bytes, sl->stripes);
        if (end > l->payload_offset)
            return kimg_fail(-EINVAL, "Keyslot %d is overlapping with the encrypted payload", i);
    }
    for (int i = 0; i < LUKS_NUM_SLOTS; i++) {
        uint64_t s1 = l->slots[i].key_offset;
        uint64_t e1 = s1 + luks_slot_sectors(l->key_bytes, l->slots[i].stripes);
        for (int j = i + 1; j < LUKS_NUM_SLOTS; j++) {
            uint64_t s2 = l->slots[j].key_offset;
            uint64_t e2 = s2 + luks_slot_sectors(l->key_bytes, l->slots[j].stripes);
            if (e1 > s2 && e2 > s1)
                return kimg_fail(-EINVAL, "Keyslots %d and %d are overlapping in the header",
                                 i, j);
        }
    }
    return 0;
}

/* "<mode>-<ivgen>[:<ivhash>]", e.g. "xts-plain64", "cbc-essiv:sha256" */
static int parse_mode(struct luks *l)
{
    char mode[LUKS_NAME_LEN];
    char *ivgen, *ivhash;
    const char *family = "";
    int ivhash_idx = -1, ret;

    memcpy(mode, l->cipher_mode_spec, sizeof(mode));
    ivgen = strchr(mode, '-');
    if (!ivgen)
        return kimg_fail(-EINVAL, "Unexpected cipher mode string format '%s'", mode);
    *ivgen++ = '\0';
    ivhash = strchr(ivgen, ':');
    if (ivhash) {
        *ivhash++ = '\0';
        ivhash_idx = lookup_hash(ivhash);
        if (ivhash_idx < 0)
            return kimg_fail(-EINVAL, "Hash algorithm '%s' not supported", ivhash);
    }
    l->cipher_mode = lookup(cipher_modes, mode);
    if (!l->cipher_mode)
        return kimg_fail(-EINVAL, "Cipher mode '%s' not supported", mode);
    ret = resolve_cipher(l->cipher_name, l->key_bytes, l->cipher_mode, l->cipher_alg,
                         sizeof(l->cipher_alg), &family);
    if (ret < 0)
        return ret;
    int hash_idx = lookup_hash(l->hash_spec);
    if (hash_idx < 0)
        return kimg_fail(-EINVAL, "Hash algorithm '%s' not supported", l->hash_spec);
    l->hash_alg = hashes[hash_idx].name;
    l->ivgen_alg = lookup(ivgens, ivgen);
    if (!l->ivgen_alg)
        return kimg_fail(-EINVAL, "IV generator '%s' not supported", ivgen);
    l->ivgen_hash_alg = NULL;
    if (!strcmp(l->ivgen_alg, "essiv")) {
        if (ivhash_idx < 0)
            return kimg_fail(-EINVAL, "Missing IV generator hash specification");
        uint32_t kb = !strcmp(l->cipher_mode, "xts") ? l->key_bytes / 2 : l->key_bytes;
        ret = check_essiv(family, l->cipher_alg, kb, hashes[ivhash_idx].digest);
        if (ret < 0)
            return ret;
        l->ivgen_hash_alg = hashes[ivhash_idx].name;
    }
    /* plain/plain64 ignore a hash name, as dm-crypt and qemu do */
    return 0;
}

int luks_header_parse(struct luks *l, const uint8_t *buf, uint64_t area_len)
{
    if (area_len < LUKS_HDR_LEN)
        return kimg_fail(-EINVAL, "LUKS header is truncated");
    if (memcmp(buf, luks_magic, LUKS_MAGIC_LEN))
        return kimg_fail(-EINVAL, "Volume is not in LUKS format");
    uint16_t version = (uint16_t)(buf[LUKS_OFF_VERSION] << 8 | buf[LUKS_OFF_VERSION + 1]);
    if (version != LUKS_VERSION)
        return kimg_fail(-EINVAL, "LUKS version %u is not supported", version);
    if (field_string(l->cipher_name, buf + LUKS_OFF_CIPHER_NAME, LUKS_NAME_LEN) < 0)
        return kimg_fail(-EINVAL, "LUKS header cipher name is not NUL terminated");
    if (field_string(l->cipher_mode_spec, buf + LUKS_OFF_CIPHER_MODE, LUKS_NAME_LEN) < 0)
        return kimg_fail(-EINVAL, "LUKS header cipher mode is not NUL terminated");
    if (field_string(l->hash_spec, buf + LUKS_OFF_HASH_SPEC, LUKS_NAME_LEN) < 0)
        return kimg_fail(-EINVAL, "LUKS header hash spec is not NUL terminated");
    printable(l->cipher_name);
    printable(l->cipher_mode_spec);
    printable(l->hash_spec);
    l->payload_offset = luks_be32(buf + LUKS_OFF_PAYLOAD);
    l->key_bytes = luks_be32(buf + LUKS_OFF_KEY_BYTES);
    memcpy(l->mk_digest, buf + LUKS_OFF_MK_DIGEST, LUKS_DIGEST_LEN);
    memcpy(l->mk_salt, buf + LUKS_OFF_MK_SALT, LUKS_SALT_LEN);
    l->mk_iters = luks_be32(buf + LUKS_OFF_MK_ITERS);
    memcpy(l->uuid, buf + LUKS_OFF_UUID, LUKS_UUID_LEN);
    l->uuid[LUKS_UUID_LEN] = '\0';       /* qemu: g_strndup(uuid, 40) */
    printable(l->uuid);

    if (l->key_bytes == 0 || l->key_bytes > LUKS_MAX_KEY_BYTES)
        return kimg_fail(-EINVAL, "LUKS key size %" PRIu32 " bytes is not supported",
                         l->key_bytes);
    if (l->payload_offset < LUKS_HDR_SECTORS)
        return kimg_fail(-EINVAL, "LUKS payload is overlapping with the header");
    if ((uint64_t)l->payload_offset * LUKS_SECTOR > area_len)
        return kimg_fail(-EINVAL, "LUKS payload offset %" PRIu64 " is past the end of the "
                         "encryption header area (%" PRIu64 " bytes)",
                         (uint64_t)l->payload_offset * LUKS_SECTOR, area_len);
    if (l->mk_iters == 0)
        return kimg_fail(-EINVAL, "LUKS key iteration count is zero");
    int ret = parse_slots(l, buf);
    if (ret < 0)
        return ret;
    return parse_mode(l);
}

void luks_header_encode(const struct luks *l, uint8_t *buf)
{
    memset(buf, 0, LUKS_HDR_LEN);
    memcpy(buf, luks_magic, LUKS_MAGIC_LEN);
    buf[LUKS_OFF_VERSION] = 0;
    buf[LUKS_OFF_VERSION + 1] = LUKS_VERSION;
    memcpy(buf + LUKS_OFF_CIPHER_NAME, l->cipher_name, strlen(l->cipher_name));
    memcpy(buf + LUKS_OFF_CIPHER_MODE, l->cipher_mode_spec, strlen(l->cipher_mode_spec));
    memcpy(buf + LUKS_OFF_HASH_SPEC, l->hash_spec, strlen(l->hash_spec));
    luks_put_be32(buf + LUKS_OFF_PAYLOAD, l->payload_offset);
    luks_put_be32(buf + LUKS_OFF_KEY_BYTES, l->key_bytes);
    memcpy(buf + LUKS_OFF_MK_DIGEST, l->mk_digest, LUKS_DIGEST_LEN);
    memcpy(buf + LUKS_OFF_MK_SALT, l->mk_salt, LUKS_SALT_LEN);
    luks_put_be32(buf + LUKS_OFF_MK_ITERS, l->mk_iters);
    memcpy(buf + LUKS_OFF_UUID, l->uuid, strnlen(l->uuid, LUKS_UUID_LEN));
    for (int i = 0; i < LUKS_NUM_SLOTS; i++) {
        uint8_t *p = buf + LUKS_OFF_SLOTS + i * LUKS_SLOT_LEN;
        const struct luks_slot *sl = &l->slots[i];
        luks_put_be32(p, sl->active ? LUKS_SLOT_ACTIVE : LUKS_SLOT_INACTIVE);
        luks_put_be32(p + 4, sl->iters);
        memcpy(p + 8, sl->salt, LUKS_SALT_LEN);
        luks_put_be32(p + 40, sl->key_offset);
        luks_put_be32(p + 44, sl->stripes);
    }
}

int luks_header_store(struct luks *l)
{
    uint8_t buf[LUKS_HDR_LEN] __attribute__((aligned(64)));
    int ret;

    if (!l->io.pwrite)
        return kimg_fail(-EROFS, "LUKS header is read-only");
    luks_header_encode(l, buf);
    ret = l->io.pwrite(l->io.opaque, buf, sizeof(buf), 0);
    if (ret >= 0 && l->io.sync)
        ret = l->io.sync(l->io.opaque);
    return ret < 0 ? ret : 0;
}

/* qemu 7.2's QCryptoCipherAlgorithm values (what its option visitor
 * takes) and the LUKS cipher family and key size of each; des and 3des
 * pass the visitor and are refused by the LUKS layer (family NULL). */
static const struct { const char *name, *family; unsigned bits; } cipher_enum[] = {
    { "aes-128", "aes", 128 }, { "aes-192", "aes", 192 }, { "aes-256", "aes", 256 },
    { "des", NULL, 0 }, { "3des", NULL, 0 }, { "cast5-128", "cast5", 128 },
    { "serpent-128", "serpent", 128 }, { "serpent-192", "serpent", 192 },
    { "serpent-256", "serpent", 256 }, { "twofish-128", "twofish", 128 },
    { "twofish-192", "twofish", 192 }, { "twofish-256", "twofish", 256 },
};

static int lookup_cipher(const char *s)
{
    for (size_t i = 0; i < sizeof(cipher_enum) / sizeof(cipher_enum[0]); i++)
        if (!strcmp(cipher_enum[i].name, s))
            return (int)i;
    return -1;
}

static int not_accepted(const char *name, const char *value)
{
    return kimg_fail(-EINVAL, "Parameter '%s' does not accept value '%s'", name, value);
}

int luks_params_check(const struct luks_params *p)
{
    if (!p)
        return 0;
    /* the visitor's order: QCryptoBlockCreateOptionsLUKS's members */
    if (p->cipher_alg && lookup_cipher(p->cipher_alg) < 0)
        return not_accepted("cipher-alg", p->cipher_alg);
    if (p->cipher_mode && !lookup(cipher_modes, p->cipher_mode))
        return not_accepted("cipher-mode", p->cipher_mode);
    if (p->ivgen_alg && !lookup(ivgens, p->ivgen_alg))
        return not_accepted("ivgen-alg", p->ivgen_alg);
    if (p->ivgen_hash_alg && lookup_hash(p->ivgen_hash_alg) < 0)
        return not_accepted("ivgen-hash-alg", p->ivgen_hash_alg);
    if (p->hash_alg && lookup_hash(p->hash_alg) < 0)
        return not_accepted("hash-alg", p->hash_alg);
    return 0;
}

int luks_header_setup(struct luks *l, const struct luks_params *p)
{
    const char *alg = p && p->cipher_alg ? p->cipher_alg : "aes-256";
    const char *mode = p && p->cipher_mode ? p->cipher_mode : "xts";
    const char *ivgen = p && p->ivgen_alg ? p->ivgen_alg : "plain64";
    const char *hash = p && p->hash_alg ? p->hash_alg : "sha256";
    const char *ivhash = p ? p->ivgen_hash_alg : NULL;
    int ret = luks_params_check(p);

    if (ret < 0)
        return ret;
    int c = lookup_cipher(alg);
    if (!cipher_enum[c].family)   /* qemu's qcrypto_block_luks_cipher_alg_lookup */
        return kimg_fail(-EINVAL, "Algorithm '%s' not supported", alg);
    /* qemu: essiv defaults its hash to sha256; plain(64) record no hash */
    if (!strcmp(ivgen, "essiv")) {
        if (!ivhash)
            ivhash = "sha256";
        snprintf(l->cipher_mode_spec, sizeof(l->cipher_mode_spec), "%s-%s:%s", mode, ivgen,
                 ivhash);
    } else {
        snprintf(l->cipher_mode_spec, sizeof(l->cipher_mode_spec), "%s-%s", mode, ivgen);
    }
    snprintf(l->cipher_name, sizeof(l->cipher_name), "%s", cipher_enum[c].family);
    snprintf(l->hash_spec, sizeof(l->hash_spec), "%s", hash);
    l->key_bytes = cipher_enum[c].bits / 8 * (!strcmp(mode, "xts") ? 2 : 1);
    return parse_mode(l);
}

int luks_area_len(const struct luks_params *p, uint64_t *area_len)
{
    struct luks *l = calloc(1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    int ret = luks_header_setup(l, p);
    if (ret == 0) {
        /* the cipher itself, as qemu's measure and create make it before
         * any key slot (cast5 with xts: "Unsupported cipher mode xts") */
        uint8_t key[LUKS_MAX_KEY_BYTES];
        struct luks_cipher *c = NULL;
        for (size_t i = 0; i < sizeof(key); i++)   /* xts: unequal halves */
            key[i] = (uint8_t)(i * 7 + 1);
        ret = luks_cipher_new(&c, l->cipher_alg, l->cipher_mode, l->ivgen_alg,
                              l->ivgen_hash_alg, key, l->key_bytes);
        luks_cipher_free(c);
    }
    if (ret == 0)
        *area_len = (LUKS_HDR_SECTORS + LUKS_NUM_SLOTS *
                     luks_slot_sectors(l->key_bytes, LUKS_STRIPES)) * LUKS_SECTOR;
    free(l);
    return ret;
}

int luks_open(struct luks **out, const struct luks_io *io, unsigned flags)
{
    uint8_t buf[LUKS_HDR_LEN] __attribute__((aligned(64)));
    int ret;

    *out = NULL;
    if (io->len < LUKS_HDR_LEN)
        return kimg_fail(-EINVAL, "LUKS header is truncated");
    ret = io->pread(io->opaque, buf, sizeof(buf), 0);
    if (ret < 0)
        return ret;
    struct luks *l = calloc(1, sizeof(*l));
    if (!l)
        return kimg_fail(-ENOMEM, "out of memory");
    l->io = *io;
    l->flags = flags;
    ret = luks_header_parse(l, buf, io->len);
    if (ret < 0) {
        free(l);
        return ret;
    }
    *out = l;
    return 0;
}

void luks_close(struct luks *l)
{
    if (!l)
        return;
    if (l->mk) {
        explicit_bzero(l->mk, l->key_bytes);
        free(l->mk);
    }
    luks_cipher_free(l->cipher);
    explicit_bzero(l, sizeof(*l));
    free(l);
}

bool luks_unlocked(const struct luks *l)
{
    return l && l->mk;
}

uint64_t luks_payload_offset(const struct luks *l)
{
    return (uint64_t)l->payload_offset * LUKS_SECTOR;
}

struct kimg_jv *luks_info(const struct luks *l)
{
    struct kimg_jv *slots = kimg_jv_array();
    struct kimg_jv *e = kimg_jv_object();

    if (!e || !slots)
        goto fail;
    for (int i = 0; i < LUKS_NUM_SLOTS; i++) {
        const struct luks_slot *sl = &l->slots[i];
        struct kimg_jv *o = kimg_jv_object();
        if (!o)
            goto fail;
        /* qemu's QDict order; iters and stripes only for active slots */
        kimg_jv_add_bool(o, "active", sl->active);
        if (sl->active)
            kimg_jv_add_uint(o, "iters", sl->iters);
        kimg_jv_add_uint(o, "key-offset", (uint64_t)sl->key_offset * LUKS_SECTOR);
        if (sl->active)
            kimg_jv_add_uint(o, "stripes", sl->stripes);
        kimg_jv_add(slots, NULL, o);
    }
    kimg_jv_add_str(e, "ivgen-alg", l->ivgen_alg);
    kimg_jv_add_str(e, "hash-alg", l->hash_alg);
    kimg_jv_add_str(e, "cipher-alg", l->cipher_alg);
    kimg_jv_add_str(e, "uuid", l->uuid);
    if (l->ivgen_hash_alg)
        kimg_jv_add_str(e, "ivgen-hash-alg", l->ivgen_hash_alg);
    kimg_jv_add_str(e, "format", "luks");
    kimg_jv_add_str(e, "cipher-mode", l->cipher_mode);
    kimg_jv_add(e, "slots", slots);
    kimg_jv_add_uint(e, "payload-offset", luks_payload_offset(l));
    kimg_jv_add_uint(e, "master-key-iters", l->mk_iters);
    return e;
fail:
    kimg_jv_free(e);
    kimg_jv_free(slots);
    return NULL;
}
