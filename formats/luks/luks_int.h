/*
 * luks_int.h — private to formats/luks: the parsed LUKS1 header (struct
 * luks), the on-disk field offsets (LUKS On-Disk Format Specification
 * 1.2.3, all integers big-endian) and the helpers shared by header.c,
 * keyslot.c and cipher.c.
 */
#ifndef KIMG_LUKS_INT_H
#define KIMG_LUKS_INT_H

#include <endian.h>
#include <pthread.h>
#include <string.h>
#include "luks.h"

#define LUKS_HDR_LEN          592u
#define LUKS_MAGIC_LEN        6
#define LUKS_VERSION          1
#define LUKS_NAME_LEN         32     /* cipher name, cipher mode, hash spec */
#define LUKS_DIGEST_LEN       20     /* the master-key digest */
#define LUKS_SALT_LEN         32
#define LUKS_UUID_LEN         40
#define LUKS_NUM_SLOTS        8
#define LUKS_KEY_SLOT_OFFSET  4096u  /* header + slot table, qemu's alignment */
#define LUKS_HDR_SECTORS      (LUKS_KEY_SLOT_OFFSET / LUKS_SECTOR)
#define LUKS_STRIPES          4000u
#define LUKS_SLOT_ACTIVE      0x00AC71F3u
#define LUKS_SLOT_INACTIVE    0x0000DEADu
#define LUKS_MAX_KEY_BYTES    64u    /* aes-256-xts; no cipher qemu offers needs more */
#define LUKS_MIN_ITERS        1000u  /* qemu's minimum for new slots and digests */
#define LUKS_ERASE_PASSES     16     /* qemu overwrites a removed slot's material 16x */

#define LUKS_OFF_VERSION      6
#define LUKS_OFF_CIPHER_NAME  8
#define LUKS_OFF_CIPHER_MODE  40
#define LUKS_OFF_HASH_SPEC    72
#define LUKS_OFF_PAYLOAD      104
#define LUKS_OFF_KEY_BYTES    108
#define LUKS_OFF_MK_DIGEST    112
#define LUKS_OFF_MK_SALT      132
#define LUKS_OFF_MK_ITERS     164
#define LUKS_OFF_UUID         168
#define LUKS_OFF_SLOTS        208
#define LUKS_SLOT_LEN         48     /* active, iters, salt[32], offset, stripes */

/* PBKDF2 work limits, in "HMAC blocks": iterations x ceil(key bytes /
 * digest bytes).  PBKDF2-HMAC-SHA256 runs ~6 M blocks/s on one core of
 * the development machine (qemu-img's own iter-time benchmark agrees), so
 * the default limit is ~10 s of one slot or digest check, the untrusted
 * one ~1 s.  Enforced at unlock time (info never derives a key). */
#define LUKS_MAX_WORK            ((uint64_t)64 * 1000 * 1000)
#define LUKS_MAX_WORK_UNTRUSTED  ((uint64_t)6 * 1000 * 1000)

struct luks_slot {
    bool active;
    uint32_t iters;
    uint8_t salt[LUKS_SALT_LEN];
    uint32_t key_offset;           /* sectors from the header's start */
    uint32_t stripes;
};

struct luks_cipher;                /* cipher.c: a keyed sector cipher */

struct luks {
    struct luks_io io;
    unsigned flags;
    /* names as stored (NUL-terminated) and their canonical meanings */
    char cipher_name[LUKS_NAME_LEN], cipher_mode_spec[LUKS_NAME_LEN];
    char hash_spec[LUKS_NAME_LEN];
    char cipher_alg[16];           /* qemu's name: "aes-256" */
    const char *cipher_mode;       /* "xts" */
    const char *ivgen_alg;         /* "plain64" */
    const char *ivgen_hash_alg;    /* essiv only, else NULL */
    const char *hash_alg;          /* "sha256" */
    uint32_t payload_offset;       /* sectors */
    uint32_t key_bytes;
    uint8_t mk_digest[LUKS_DIGEST_LEN];
    uint8_t mk_salt[LUKS_SALT_LEN];
    uint32_t mk_iters;
    char uuid[LUKS_UUID_LEN + 1];
    struct luks_slot slots[LUKS_NUM_SLOTS];
    uint8_t *mk;                   /* master key (key_bytes), NULL while locked */
    struct luks_cipher *cipher;    /* the payload cipher, once unlocked */
};

static inline uint32_t luks_be32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return be32toh(v);
}

static inline void luks_put_be32(uint8_t *p, uint32_t v)
{
    v = htobe32(v);
    memcpy(p, &v, 4);
}

/* header.c */
/* Parse BUF (LUKS_HDR_LEN bytes) into L's header fields, validating every
 * field against AREA_LEN (bytes the header area holds). 0 or -EINVAL. */
int luks_header_parse(struct luks *l, const uint8_t *buf, uint64_t area_len);
/* Serialize L's header fields into BUF (LUKS_HDR_LEN bytes). */
void luks_header_encode(const struct luks *l, uint8_t *buf);
/* Write L's header through L->io and sync. */
int luks_header_store(struct luks *l);
/* Resolve creation names into L's fields (cipher, mode, ivgen, hash,
 * key_bytes and the stored name strings). 0 or -EINVAL with qemu's words. */
int luks_header_setup(struct luks *l, const struct luks_params *p);
/* Sectors one slot's key material takes, rounded as qemu and cryptsetup do. */
uint64_t luks_slot_sectors(uint32_t key_bytes, uint32_t stripes);
/* Digest length of a hash qemu knows, 0 if unknown. */
unsigned luks_hash_len(const char *name);

/* cipher.c */
int luks_cipher_new(struct luks_cipher **out, const char *alg, const char *mode,
                    const char *ivgen, const char *ivhash, const uint8_t *key, size_t keylen);
void luks_cipher_free(struct luks_cipher *c);
/* luks_cipher_new2's FLAGS, for tests and benchmarks: force one path. */
#define LUKS_CIPHER_NETTLE 0x1u    /* nettle even where OpenSSL has the cipher */
#define LUKS_CIPHER_EVP    0x2u    /* OpenSSL through EVP_CipherInit_ex2 per sector */
/* A keyed sector cipher: ALG is qemu's name ("aes-256"), MODE ecb, cbc, xts
 * or ctr, IVGEN plain, plain64 or essiv (IVHASH: its hash, NULL: sha256),
 * KEY KEYLEN bytes (xts: both halves).  OpenSSL when it has ALG-MODE, else
 * nettle.  0, or -ENOTSUP/-EINVAL/-ENOMEM with kimg_error() set. */
int luks_cipher_new2(struct luks_cipher **out, const char *alg, const char *mode,
                     const char *ivgen, const char *ivhash, const uint8_t *key, size_t keylen,
                     unsigned flags);
/* Encrypt (ENC) or decrypt LEN bytes (multiple of 512) in place, the
 * first sector's IV number being SECTOR, each 512 bytes the next sector.
 * Thread-safe: any number of callers at once on one cipher. */
int luks_cipher_run(struct luks_cipher *c, uint64_t sector, uint8_t *buf, size_t len, bool enc);

/* keyslot.c */
int luks_pbkdf2(const char *hash, const uint8_t *pass, size_t passlen, const uint8_t *salt,
                size_t saltlen, uint32_t iters, uint8_t *out, size_t outlen);
/* AF split SRC (LEN bytes) into STRIPES stripes in DST (LEN*STRIPES), and
 * merge back, with HASH's diffuser (spec 1.2.3, section 2.4). */
int luks_af_split(const char *hash, const uint8_t *src, uint8_t *dst, size_t len,
                  uint32_t stripes);
int luks_af_merge(const char *hash, const uint8_t *src, uint8_t *dst, size_t len,
                  uint32_t stripes);
/* PBKDF2 iterations HASH runs in one second of thread CPU here for an
 * output of OUTLEN, the value qemu's qcrypto_pbkdf2_count_iters gives
 * (measured in 40 ms once per process and hash: keyslot.c). */
int luks_count_iters(const char *hash, size_t outlen, uint64_t *iters);
/* Deactivate slot I: the header (synced) first, then random bytes over its
 * key material (16 passes, synced).  No refusal: callers check. */
int luks_erase_slot(struct luks *l, int i);

#endif
