/*
 * luks.h — LUKS1 for kimg: the on-disk header and key slots (the LUKS
 * On-Disk Format Specification 1.2.3, as qemu 7.2's crypto/block-luks.c
 * and cryptsetup write it), the anti-forensic splitter, PBKDF2 and the
 * sector ciphers (OpenSSL; nettle for the ciphers OpenSSL lacks; both
 * loaded on first use by lazylib/, so opening a header without its key
 * needs neither, and a missing one fails what needs it).  Two
 * users: the standalone "luks" format (formats/luks/luks.c: header at
 * offset 0, the payload at the header's payload offset) and encrypted qcow2
 * (formats/qcow2/crypto.c: the header in the clusters the CRYPTO header
 * extension names, the payload being qcow2's data clusters).
 *
 * Files (owner: the luks helper):
 *   header.c   parse/validate/serialize the 592-byte header and slot table
 *   keyslot.c  PBKDF2, AF split/merge, unlock, add/remove key slots
 *   cipher.c   sector encryption/decryption (xts, cbc, ecb, ctr; plain,
 *              plain64, essiv), thread-safe; AES through OpenSSL (AES-NI),
 *              AES-192-XTS, CAST5, Serpent and Twofish through nettle
 *   luks.c     the standalone "luks" format driver
 * This header is the contract with formats/qcow2 (the qcow2 helper uses
 * it at the same time): the declared functions keep their meaning; either
 * side may add.
 *
 * Key material (master key, derived keys, secrets) lives only in memory
 * this code allocates, is wiped with explicit_bzero before it is freed,
 * and never appears in a message or an output.
 */
#ifndef KIMG_LUKS_H
#define KIMG_LUKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "kimg/driver.h"
#include "kimg/json.h"

#define LUKS_SECTOR 512u

/* Where the header and key material live: offsets are relative to the
 * header's first byte.  LEN is how many bytes the area holds (the file's
 * size for the standalone format, the CRYPTO extension's length for
 * qcow2); nothing outside [0, LEN) is read or written. */
struct luks_io {
    void *opaque;
    int (*pread)(void *opaque, void *buf, size_t len, uint64_t off);
    int (*pwrite)(void *opaque, const void *buf, size_t len, uint64_t off);  /* NULL: read-only */
    int (*sync)(void *opaque);                                              /* NULL: none */
    uint64_t len;
};

/* Creation parameters, with qemu's option names; NULL/0 = qemu's default. */
struct luks_params {
    const char *cipher_alg;     /* "aes-256" (aes-128/192/256, cast5-128,
                                   serpent-*, twofish-*) */
    const char *cipher_mode;    /* "xts" (ecb, cbc, xts, ctr) */
    const char *ivgen_alg;      /* "plain64" (plain, plain64, essiv) */
    const char *ivgen_hash_alg; /* essiv's hash: "sha256" */
    const char *hash_alg;       /* PBKDF2 and AF hash: "sha256" */
    uint64_t iter_time_ms;      /* 2000 */
};

struct luks;                    /* an opened header; unlocked: the master key */

/* Limits an image cannot exceed (documented where they are set): PBKDF2
 * iterations per slot and for the master-key digest, so opening a hostile
 * image cannot spin for minutes; tighter under KIMG_OPEN_UNTRUSTED. */
#define LUKS_OPEN_UNTRUSTED 0x1u

/* Read and validate the header and slot table through IO: every field
 * bounded (key slots and stripes inside IO->len, iteration caps, names
 * NUL-terminated and known).  0 with *OUT (locked: no key yet), or
 * -errno with kimg_error() in qemu-img's wording where qemu has one. */
int luks_open(struct luks **out, const struct luks_io *io, unsigned flags);
void luks_close(struct luks *l);       /* wipes the key material */

/* Try SECRET against the active slots; 0 and the master key kept in L, or
 * -EPERM "Invalid password, cannot unlock any keyslot" (qemu's). */
int luks_unlock(struct luks *l, const uint8_t *secret, size_t len);
bool luks_unlocked(const struct luks *l);

/* Write a new header and one active key slot (slot 0) for SECRET through
 * IO with qemu 7.2's layout for both users: the header in 4096 bytes, 8
 * slots of key material each rounded up to 8 sectors, the payload right
 * after them (aes-256-xts: 2068480 bytes); IO->len must hold that much.
 * Iteration counts from iter-time as qemu benchmarks them (the digest's
 * divided by 8, both at least 1000).  0 with *OUT unlocked, or -errno.
 * *AREA_LEN (may be NULL): the bytes the header and key material take
 * (qcow2 allocates that many). */
int luks_create(struct luks **out, const struct luks_params *p, const uint8_t *secret,
                size_t len, const struct luks_io *io, uint64_t *area_len);
/* The option values of P checked as qemu's option visitor does, in its
 * order (cipher-alg, cipher-mode, ivgen-alg, ivgen-hash-alg, hash-alg):
 * -EINVAL "Parameter 'cipher-alg' does not accept value 'x'" for a name
 * qemu 7.2 does not know.  des and 3des pass (qemu knows them) and fail
 * later, in luks_create and luks_area_len, with qemu's "Algorithm 'des'
 * not supported": callers check the key secret in between, as qemu. */
int luks_params_check(const struct luks_params *p);
/* The bytes a header created with P takes (for qcow2's create and measure). */
int luks_area_len(const struct luks_params *p, uint64_t *area_len);

/* The header's payload offset in bytes (standalone format: where sector 0
 * of the guest lies). */
uint64_t luks_payload_offset(const struct luks *l);

/* Encrypt or decrypt LEN bytes (a multiple of 512) in place; SECTOR is the
 * IV's sector number of the first 512 bytes (qemu: the host offset / 512
 * for LUKS in qcow2, the guest offset / 512 for the standalone format).
 * L unlocked.  Thread-safe: any number of workers at once. */
int luks_encrypt(struct luks *l, uint64_t sector, void *buf, size_t len);
int luks_decrypt(struct luks *l, uint64_t sector, void *buf, size_t len);

/* qemu-img info's "encrypt" data object for this header ("format":
 * "luks" and the LUKS fields in qemu's order), or NULL (no memory). */
struct kimg_jv *luks_info(const struct luks *l);

/* amend: activate a slot with NEW_SECRET (slot -1: the first free one) or
 * deactivate slots (every slot OLD_SECRET opens, or slot number SLOT >= 0,
 * which OLD_SECRET must then open if given; the last active slot is never
 * erased: qemu's refusals and messages), crash-safe: at every
 * point the image opens with a key that opened it before.  L unlocked. */
int luks_add_slot(struct luks *l, int slot, const uint8_t *new_secret, size_t len,
                  uint64_t iter_time_ms);
int luks_remove_slots(struct luks *l, int slot, const uint8_t *old_secret, size_t len);
/* ITER_TIME_MS 0 above and below: qemu's default, 2000. */

/* amend --force over slot SLOT: a new key for it even if it is active.
 * Crash-safe: an active SLOT is first copied into a free slot (the old
 * key then opens through both), then gets the new key (material synced,
 * then the header), then the copy is erased; so at every point the volume
 * opens with the key SLOT held or, once the header names the new key, with
 * that.  With no free slot, SLOT is erased and then written (the other
 * seven slots open the volume meanwhile).  L unlocked. */
int luks_replace_slot(struct luks *l, int slot, const uint8_t *new_secret, size_t len,
                      uint64_t iter_time_ms);

/* qemu-img amend on the key slots, from amend options named PREFIX + the
 * LUKS names ("" for the luks format, "encrypt." for qcow2): state
 * (active|inactive), keyslot, new-secret, old-secret (secret ids, looked
 * up with kimg_secret_get), iter-time.  qemu 7.2's checks, order and
 * messages (crypto/block-luks.c's amend); FORCE is qemu-img's --force: an
 * active slot may be overwritten (luks_replace_slot) and an inactive one
 * erased again.  Deliberate difference: the last active slot is never
 * erased, even with FORCE (qemu does, and the data is then lost).
 * 0, or -errno with one kimg_error line; L unlocked. */
struct kimg_opts;
int luks_amend(struct luks *l, const struct kimg_opts *opts, const char *prefix, bool force);

#endif
