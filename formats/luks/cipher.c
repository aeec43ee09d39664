/*
 * cipher.c — LUKS sector ciphers through OpenSSL EVP: aes-{128,192,256} in
 * xts, cbc, ecb and ctr, with the plain, plain64 and essiv IV generators
 * (qemu's crypto/ivgen-*.c meanings: little-endian sector numbers, essiv =
 * the plain64 block encrypted with hash(key)).  Keyed contexts are pooled
 * per direction, so concurrent callers never share one and a sector only
 * resets the IV (no re-keying per 512 bytes).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "luks_int.h"

#define POOL_MAX 64            /* idle contexts kept per direction */

struct ctx_pair {
    EVP_CIPHER_CTX *c;         /* the sector cipher, keyed */
    EVP_CIPHER_CTX *essiv;     /* essiv's ECB cipher, keyed (essiv only) */
    struct ctx_pair *next;
};

enum ivgen { IV_PLAIN, IV_PLAIN64, IV_ESSIV };

struct luks_cipher {
    EVP_CIPHER *cipher, *essiv_cipher;
    uint8_t key[LUKS_MAX_KEY_BYTES];
    uint8_t essiv_key[64];
    size_t keylen, essiv_keylen;
    enum ivgen ivgen;
    int niv;                   /* IV bytes of the cipher (0: ecb) */
    pthread_mutex_t lock;
    struct ctx_pair *idle[2];  /* [enc] */
    int nidle[2];
};

static void pair_free(struct ctx_pair *p)
{
    if (!p)
        return;
    EVP_CIPHER_CTX_free(p->c);
    EVP_CIPHER_CTX_free(p->essiv);
    free(p);
}

int luks_cipher_new(struct luks_cipher **out, const char *alg, const char *mode,
                    const char *ivgen, const char *ivhash, const uint8_t *key, size_t keylen)
{
    char name[48];
    struct luks_cipher *c;

    *out = NULL;
    if (strncmp(alg, "aes-", 4))
        return kimg_fail(-ENOTSUP, "Cipher '%s' is not supported by kimg (OpenSSL offers AES "
                         "only)", alg);
    if (keylen > LUKS_MAX_KEY_BYTES)
        return kimg_fail(-EINVAL, "LUKS key size %zu bytes is not supported", keylen);
    snprintf(name, sizeof(name), "%s-%s", alg, mode);
    c = calloc(1, sizeof(*c));
    if (!c)
        return kimg_fail(-ENOMEM, "out of memory");
    pthread_mutex_init(&c->lock, NULL);
    c->cipher = EVP_CIPHER_fetch(NULL, name, NULL);
    if (!c->cipher || (size_t)EVP_CIPHER_get_key_length(c->cipher) != keylen) {
        luks_cipher_free(c);
        return kimg_fail(-ENOTSUP, "Cipher '%s' with a %zu-byte key is not available", name,
                         keylen);
    }
    memcpy(c->key, key, keylen);
    c->keylen = keylen;
    c->niv = EVP_CIPHER_get_iv_length(c->cipher);
    c->ivgen = !strcmp(ivgen, "plain") ? IV_PLAIN : !strcmp(ivgen, "plain64") ? IV_PLAIN64
                                                                             : IV_ESSIV;
    if (c->ivgen == IV_ESSIV && c->niv > 0) {
        const EVP_MD *md = EVP_get_digestbyname(ivhash ? ivhash : "sha256");
        unsigned int dlen = 0;
        if (!md || !EVP_Digest(key, keylen, c->essiv_key, &dlen, md, NULL)) {
            luks_cipher_free(c);
            return kimg_fail(-ENOTSUP, "Hash algorithm '%s' not available", ivhash);
        }
        c->essiv_keylen = dlen;
        snprintf(name, sizeof(name), "aes-%u-ecb", dlen * 8);
        c->essiv_cipher = EVP_CIPHER_fetch(NULL, name, NULL);
        if (!c->essiv_cipher) {
            luks_cipher_free(c);
            return kimg_fail(-ENOTSUP, "No AES cipher with key size %u available", dlen);
        }
    }
    *out = c;
    return 0;
}

void luks_cipher_free(struct luks_cipher *c)
{
    if (!c)
        return;
    for (int d = 0; d < 2; d++)
        while (c->idle[d]) {
            struct ctx_pair *p = c->idle[d];
            c->idle[d] = p->next;
            pair_free(p);
        }
    EVP_CIPHER_free(c->cipher);
    EVP_CIPHER_free(c->essiv_cipher);
    pthread_mutex_destroy(&c->lock);
    OPENSSL_cleanse(c, sizeof(*c));
    free(c);
}

/* A keyed context pair for direction ENC: an idle one, or a new one. */
static struct ctx_pair *pair_get(struct luks_cipher *c, bool enc)
{
    struct ctx_pair *p;

    pthread_mutex_lock(&c->lock);
    p = c->idle[enc];
    if (p) {
        c->idle[enc] = p->next;
        c->nidle[enc]--;
    }
    pthread_mutex_unlock(&c->lock);
    if (p)
        return p;
    p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->c = EVP_CIPHER_CTX_new();
    if (!p->c || !EVP_CipherInit_ex2(p->c, c->cipher, c->key, NULL, enc, NULL))
        goto fail;
    EVP_CIPHER_CTX_set_padding(p->c, 0);
    if (c->essiv_cipher) {
        p->essiv = EVP_CIPHER_CTX_new();
        if (!p->essiv || !EVP_CipherInit_ex2(p->essiv, c->essiv_cipher, c->essiv_key, NULL,
                                             1, NULL))
            goto fail;
        EVP_CIPHER_CTX_set_padding(p->essiv, 0);
    }
    return p;
fail:
    pair_free(p);
    return NULL;
}

static void pair_put(struct luks_cipher *c, struct ctx_pair *p, bool enc)
{
    pthread_mutex_lock(&c->lock);
    if (c->nidle[enc] < POOL_MAX) {
        p->next = c->idle[enc];
        c->idle[enc] = p;
        c->nidle[enc]++;
        p = NULL;
    }
    pthread_mutex_unlock(&c->lock);
    pair_free(p);
}

/* The IV of SECTOR into IV (c->niv bytes). */
static int make_iv(const struct luks_cipher *c, struct ctx_pair *p, uint64_t sector,
                   uint8_t *iv)
{
    uint8_t blk[32];
    int n;

    memset(iv, 0, (size_t)c->niv);
    if (c->ivgen == IV_PLAIN) {
        uint32_t v = htole32((uint32_t)sector);
        memcpy(iv, &v, c->niv < 4 ? (size_t)c->niv : 4);
        return 0;
    }
    uint64_t v = htole64(sector);
    if (c->ivgen == IV_PLAIN64) {
        memcpy(iv, &v, c->niv < 8 ? (size_t)c->niv : 8);
        return 0;
    }
    /* essiv: encrypt the plain64 block (max(niv, 16) bytes) */
    memset(blk, 0, sizeof(blk));
    memcpy(blk, &v, 8);
    size_t nblk = c->niv > 16 ? (size_t)c->niv : 16;
    if (!EVP_CipherUpdate(p->essiv, blk, &n, blk, (int)nblk))
        return -EIO;
    memcpy(iv, blk, (size_t)c->niv);
    return 0;
}

int luks_cipher_run(struct luks_cipher *c, uint64_t sector, uint8_t *buf, size_t len, bool enc)
{
    uint8_t iv[32];
    int n, ret = 0;

    if (len % LUKS_SECTOR)
        return kimg_fail(-EINVAL, "LUKS: length %zu is not a multiple of 512", len);
    struct ctx_pair *p = pair_get(c, enc);
    if (!p)
        return kimg_fail(-ENOMEM, "cannot set up the LUKS cipher");
    for (size_t off = 0; off < len; off += LUKS_SECTOR, sector++) {
        if (c->niv > 0) {
            ret = make_iv(c, p, sector, iv);
            if (ret < 0 || !EVP_CipherInit_ex2(p->c, NULL, NULL, iv, enc, NULL)) {
                ret = -EIO;
                break;
            }
        }
        if (!EVP_CipherUpdate(p->c, buf + off, &n, buf + off, LUKS_SECTOR) ||
            n != LUKS_SECTOR) {
            ret = -EIO;
            break;
        }
    }
    pair_put(c, p, enc);
    OPENSSL_cleanse(iv, sizeof(iv));
    if (ret < 0)
        return kimg_fail(ret, "LUKS: cannot %s sector %llu", enc ? "encrypt" : "decrypt",
                         (unsigned long long)sector);
    return 0;
}

int luks_encrypt(struct luks *l, uint64_t sector, void *buf, size_t len)
{
    if (!l->cipher)
        return kimg_fail(-ENOKEY, "LUKS volume is locked");
    return luks_cipher_run(l->cipher, sector, buf, len, true);
}

int luks_decrypt(struct luks *l, uint64_t sector, void *buf, size_t len)
{
    if (!l->cipher)
        return kimg_fail(-ENOKEY, "LUKS volume is locked");
    return luks_cipher_run(l->cipher, sector, buf, len, false);
}
