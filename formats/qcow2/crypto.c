/*
 * crypto.c — encrypted qcow2 images (crypt_method 1: legacy AES, 2: LUKS):
 * kimg decrypts nothing.  Such an image opens only for metadata (info:
 * KIMG_OPEN_NO_IO, read-only), with its LUKS1 header parsed and validated
 * field by field for the "encrypt" info block qemu-img prints; every guest
 * data access fails with one message.  LUKS1 layout: the LUKS On-Disk
 * Format Specification 1.2.3; names and checks as qemu 7.2's crypto/block-luks.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"
#include "kimg/json.h"

/* ---- LUKS1 on-disk header (big-endian) --------------------------------- */

#define LUKS_HDR_LEN          592
#define LUKS_MAGIC_LEN        6
#define LUKS_VERSION          1
#define LUKS_NAME_LEN         32     /* cipher name, cipher mode, hash spec */
#define LUKS_UUID_LEN         40
#define LUKS_SECTOR           512u
#define LUKS_KEY_SLOT_OFFSET  4096u  /* header + slot table, qemu's alignment */
#define LUKS_HDR_SECTORS      (LUKS_KEY_SLOT_OFFSET / LUKS_SECTOR)
#define LUKS_STRIPES          4000u
#define LUKS_SLOT_ACTIVE      0x00AC71F3u
#define LUKS_SLOT_INACTIVE    0x0000DEADu

#define OFF_VERSION           6
#define OFF_CIPHER_NAME       8
#define OFF_CIPHER_MODE       40
#define OFF_HASH_SPEC         72
#define OFF_PAYLOAD           104
#define OFF_KEY_BYTES         108
#define OFF_MK_ITERS          164
#define OFF_UUID              168
#define OFF_SLOTS             208
#define SLOT_LEN              48     /* active, iters, salt[32], offset, stripes */

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

/* Copy a NUL-terminated string from a fixed-size field; -1 if the field
 * has no NUL. */
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

/* Key material sectors of one slot, as qemu (and cryptsetup) count them:
 * key_bytes * stripes rounded up to sectors, then to the header size. */
static uint64_t slot_sectors(uint32_t key_bytes, uint32_t stripes)
{
    uint64_t sectors = ((uint64_t)key_bytes * stripes + LUKS_SECTOR - 1) / LUKS_SECTOR;
    return qcow2_align_up(sectors, LUKS_HDR_SECTORS);
}

int qcow2_luks_parse(const uint8_t *buf, size_t len, uint64_t area_len,
                     struct qcow2_luks *out)
{
    char name[LUKS_NAME_LEN], mode[LUKS_NAME_LEN], hash[LUKS_NAME_LEN];
    char *ivgen, *ivhash;

    memset(out, 0, sizeof(*out));
    if (len < LUKS_HDR_LEN || area_len < LUKS_HDR_LEN)
        return kimg_fail(-EINVAL, "LUKS header is truncated");
    if (memcmp(buf, luks_magic, LUKS_MAGIC_LEN))
        return kimg_fail(-EINVAL, "Volume is not in LUKS format");
    uint16_t version = qcow2_be16(buf + OFF_VERSION);
    if (version != LUKS_VERSION)
        return kimg_fail(-EINVAL, "LUKS version %u is not supported", version);
    if (field_string(name, buf + OFF_CIPHER_NAME, LUKS_NAME_LEN) < 0)
        return kimg_fail(-EINVAL, "LUKS header cipher name is not NUL terminated");
    if (field_string(mode, buf + OFF_CIPHER_MODE, LUKS_NAME_LEN) < 0)
        return kimg_fail(-EINVAL, "LUKS header cipher mode is not NUL terminated");
    if (field_string(hash, buf + OFF_HASH_SPEC, LUKS_NAME_LEN) < 0)
        return kimg_fail(-EINVAL, "LUKS header hash spec is not NUL terminated");
    printable(name);
    printable(mode);
    printable(hash);
    out->payload_offset_sector = qcow2_be32(buf + OFF_PAYLOAD);
    out->key_bytes = qcow2_be32(buf + OFF_KEY_BYTES);
    out->mk_iters = qcow2_be32(buf + OFF_MK_ITERS);
    memcpy(out->uuid, buf + OFF_UUID, LUKS_UUID_LEN);
    out->uuid[LUKS_UUID_LEN] = '\0';     /* qemu: g_strndup(uuid, 40) */

    /* the header and slot checks of qemu's qcrypto_block_luks_check_header */
    if (out->payload_offset_sector < LUKS_HDR_SECTORS)
        return kimg_fail(-EINVAL, "LUKS payload is overlapping with the header");
    if ((uint64_t)out->payload_offset_sector * LUKS_SECTOR > area_len)
        return kimg_fail(-EINVAL, "LUKS payload offset %" PRIu64 " is past the end of the "
                         "encryption header area (%" PRIu64 " bytes)",
                         (uint64_t)out->payload_offset_sector * LUKS_SECTOR, area_len);
    if (out->mk_iters == 0)
        return kimg_fail(-EINVAL, "LUKS key iteration count is zero");
    for (int i = 0; i < QCOW2_LUKS_SLOTS; i++) {
        const uint8_t *p = buf + OFF_SLOTS + i * SLOT_LEN;
        struct qcow2_luks_slot *sl = &out->slots[i];
        uint32_t active = qcow2_be32(p);
        sl->iters = qcow2_be32(p + 4);
        sl->key_offset_sector = qcow2_be32(p + 40);
        sl->stripes = qcow2_be32(p + 44);
        if (sl->stripes != LUKS_STRIPES)
            return kimg_fail(-EINVAL, "Keyslot %d is corrupted (stripes %" PRIu32 " != %u)",
                             i, sl->stripes, LUKS_STRIPES);
        if (active != LUKS_SLOT_ACTIVE && active != LUKS_SLOT_INACTIVE)
            return kimg_fail(-EINVAL, "Keyslot %d state (active/disable) is corrupted", i);
        sl->active = active == LUKS_SLOT_ACTIVE;
        if (sl->active && sl->iters == 0)
            return kimg_fail(-EINVAL, "Keyslot %d iteration count is zero", i);
        if (sl->key_offset_sector < LUKS_HDR_SECTORS)
            return kimg_fail(-EINVAL, "Keyslot %d is overlapping with the LUKS header", i);
        uint64_t end = (uint64_t)sl->key_offset_sector + slot_sectors(out->key_bytes, sl->stripes);
        if (end > out->payload_offset_sector)
            return kimg_fail(-EINVAL, "Keyslot %d is overlapping with the encrypted payload", i);
    }
    for (int i = 0; i < QCOW2_LUKS_SLOTS; i++) {
        uint64_t s1 = out->slots[i].key_offset_sector;
        uint64_t e1 = s1 + slot_sectors(out->key_bytes, out->slots[i].stripes);
        for (int j = i + 1; j < QCOW2_LUKS_SLOTS; j++) {
            uint64_t s2 = out->slots[j].key_offset_sector;
            uint64_t e2 = s2 + slot_sectors(out->key_bytes, out->slots[j].stripes);
            if (e1 > s2 && e2 > s1)
                return kimg_fail(-EINVAL, "Keyslots %d and %d are overlapping in the header",
                                 i, j);
        }
    }

    /* "<mode>-<ivgen>[:<ivhash>]", e.g. "xts-plain64", "cbc-essiv:sha256" */
    ivgen = strchr(mode, '-');
    if (!ivgen)
        return kimg_fail(-EINVAL, "Unexpected cipher mode string format '%s'", mode);
    *ivgen++ = '\0';
    ivhash = strchr(ivgen, ':');
    int ivhash_idx = -1;
    if (ivhash) {
        *ivhash++ = '\0';
        ivhash_idx = lookup_hash(ivhash);
        if (ivhash_idx < 0)
            return kimg_fail(-EINVAL, "Hash algorithm '%s' not supported", ivhash);
    }
    out->cipher_mode = lookup(cipher_modes, mode);
    if (!out->cipher_mode)
        return kimg_fail(-EINVAL, "Cipher mode '%s' not supported", mode);

    uint32_t kb = out->key_bytes;
    if (!strcmp(out->cipher_mode, "xts"))
        kb /= 2;
    unsigned bits = 0;
    const char *family = NULL;
    for (size_t i = 0; !family && i < sizeof(ciphers) / sizeof(ciphers[0]); i++) {
        if (strcmp(ciphers[i].name, name))
            continue;
        for (int j = 0; ciphers[i].sizes[j]; j++)
            if (ciphers[i].sizes[j] == kb) {
                family = ciphers[i].name;
                bits = kb * 8;
            }
    }
    if (!family)
        return kimg_fail(-EINVAL, "Algorithm '%s' with key size %" PRIu32 " bytes not "
                         "supported", name, kb);
    snprintf(out->cipher_alg, sizeof(out->cipher_alg), "%s-%u", family, bits);

    int hash_idx = lookup_hash(hash);
    if (hash_idx < 0)
        return kimg_fail(-EINVAL, "Hash algorithm '%s' not supported", hash);
    out->hash_alg = hashes[hash_idx].name;
    out->ivgen_alg = lookup(ivgens, ivgen);
    if (!out->ivgen_alg)
        return kimg_fail(-EINVAL, "IV generator '%s' not supported", ivgen);
    if (!strcmp(out->ivgen_alg, "essiv")) {
        if (ivhash_idx < 0)
            return kimg_fail(-EINVAL, "Missing IV generator hash specification");
        /* the ESSIV cipher is the same family keyed with the hash digest */
        unsigned digest = hashes[ivhash_idx].digest;
        if (digest != kb) {
            if (!strcmp(family, "cast5"))
                return kimg_fail(-EINVAL, "Cipher %s not supported with essiv",
                                 out->cipher_alg);
            if (digest != 16 && digest != 24 && digest != 32)
                return kimg_fail(-EINVAL, "No %s cipher with key size %u available",
                                 !strcmp(family, "aes") ? "AES" :
                                 !strcmp(family, "serpent") ? "Serpent" : "Twofish",
                                 digest);
        }
        out->ivgen_hash_alg = hashes[ivhash_idx].name;
    }
    /* plain/plain64 ignore a hash name, as dm-crypt and qemu do */
    return 0;
}

int qcow2_crypto_refuse(void)
{
    return kimg_fail(-ENOKEY, "encrypted images are not supported (cannot decrypt)");
}

int qcow2_crypto_open(struct qcow2_state *s, uint64_t file_size, unsigned flags,
                      bool writable)
{
    uint8_t hdr[LUKS_HDR_LEN];
    int ret;

    if (s->crypt_method == QCOW2_CRYPT_NONE)
        return 0;
    if (!(flags & KIMG_OPEN_NO_IO) || writable)
        return qcow2_crypto_refuse();
    if (s->crypt_method == QCOW2_CRYPT_AES)
        return 0;   /* no header: the key is the password itself */
    /* qemu opens this one under NO_IO too, then crashes in info: refuse */
    if (!s->has_crypto_ext)
        return kimg_fail(-EINVAL, "Missing CRYPTO header for crypt method %" PRIu32,
                         s->crypt_method);

    uint64_t off = s->crypto_hdr_offset, len = s->crypto_hdr_length;
    if (off < s->cluster_size)
        return kimg_fail(-EINVAL, "Encryption header offset '%" PRIu64 "' overlaps the "
                         "qcow2 header", off);
    if (len < LUKS_HDR_LEN)
        return kimg_fail(-EINVAL, "Encryption header length %" PRIu64 " is too small "
                         "for a LUKS header", len);
    if (len > QCOW2_MAX_CRYPTO_HDR)
        return kimg_fail(-EFBIG, "Encryption header length %" PRIu64 " is too large", len);
    if (off > file_size || len > file_size - off)
        return kimg_fail(-EINVAL, "Encryption header extends past the end of the file");
    ret = kimg_file_pread(s->file, hdr, sizeof(hdr), off);
    if (ret < 0)
        return ret;
    s->luks = malloc(sizeof(*s->luks));
    if (!s->luks)
        return -ENOMEM;
    ret = qcow2_luks_parse(hdr, sizeof(hdr), len, s->luks);
    if (ret < 0) {
        free(s->luks);
        s->luks = NULL;
    }
    return ret;
}

struct kimg_jv *qcow2_crypto_info(const struct qcow2_state *s)
{
    struct kimg_jv *e;

    if (s->crypt_method == QCOW2_CRYPT_AES) {
        e = kimg_jv_object();
        if (e)
            kimg_jv_add_str(e, "format", "aes");
        return e;
    }
    if (s->crypt_method != QCOW2_CRYPT_LUKS || !s->luks)
        return NULL;
    const struct qcow2_luks *l = s->luks;
    struct kimg_jv *slots = kimg_jv_array();
    e = kimg_jv_object();
    if (!e || !slots) {
        kimg_jv_free(e);
        kimg_jv_free(slots);
        return NULL;
    }
    for (int i = 0; i < QCOW2_LUKS_SLOTS; i++) {
        const struct qcow2_luks_slot *sl = &l->slots[i];
        struct kimg_jv *o = kimg_jv_object();
        if (!o) {
            kimg_jv_free(e);
            kimg_jv_free(slots);
            return NULL;
        }
        /* qemu's QDict order; iters and stripes only for active slots */
        kimg_jv_add_bool(o, "active", sl->active);
        if (sl->active)
            kimg_jv_add_uint(o, "iters", sl->iters);
        kimg_jv_add_uint(o, "key-offset", (uint64_t)sl->key_offset_sector * LUKS_SECTOR);
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
    kimg_jv_add_uint(e, "payload-offset", (uint64_t)l->payload_offset_sector * LUKS_SECTOR);
    kimg_jv_add_uint(e, "master-key-iters", l->mk_iters);
    return e;
}
