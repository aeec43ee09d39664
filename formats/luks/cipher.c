/*
 * cipher.c — LUKS sector ciphers: every cipher, mode and IV generator qemu
 * 7.2 offers (aes-128/192/256, cast5-128, serpent-*, twofish-*; xts, cbc,
 * ecb, ctr; plain, plain64, essiv), qemu's crypto/ivgen-*.c meanings
 * (little-endian sector numbers; essiv = the sector encrypted in ECB with
 * hash(key)).  Two libraries, no cipher code of our own:
 *  - OpenSSL for what its default provider has (AES-128/256 in every mode,
 *    AES-192 but XTS).  LUKS1 re-IVs every 512 bytes, and EVP_CipherInit_ex2
 *    costs about as much as ciphering the sector (OSSL_PARAM lookups for the
 *    key and IV lengths), so each worker drives the provider's own cipher
 *    functions (provider-cipher(7), looked up once through the EVP_CIPHER's
 *    provider) and only falls back to EVP when they cannot be found.
 *  - nettle for the rest (AES-192-XTS, CAST5, Serpent, Twofish) and for every
 *    essiv block: qemu-img on Debian uses nettle for exactly these, nettle
 *    has every key size qemu offers (libgcrypt has no 192-bit Twofish), and
 *    its keyed contexts are read-only while ciphering, so threads share them.
 * Both are loaded on first use (lazylib/): luks_cipher_new2 loads both,
 * every cipher needing nettle's description of it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "crypto_api.h"
#include "nettle_api.h"

#include "luks_int.h"

#define POOL_MAX 64            /* idle OpenSSL lanes kept per direction */
#define MAX_BLOCK 16           /* largest block size (aes, serpent, twofish) */

enum mode { M_ECB, M_CBC, M_XTS, M_CTR };
enum ivgen { IV_PLAIN, IV_PLAIN64, IV_ESSIV };

/* The provider's cipher functions (provider-cipher(7)). */
struct prov_fns {
    void *provctx;
    OSSL_FUNC_cipher_newctx_fn *newctx;
    OSSL_FUNC_cipher_freectx_fn *freectx;
    OSSL_FUNC_cipher_encrypt_init_fn *einit;
    OSSL_FUNC_cipher_decrypt_init_fn *dinit;
    OSSL_FUNC_cipher_update_fn *update;
    OSSL_FUNC_cipher_set_ctx_params_fn *set_params;
};

/* One worker's keyed OpenSSL state for one direction. */
struct lane {
    void *alg;                 /* provider context (fast path), or NULL */
    EVP_CIPHER_CTX *c;         /* EVP context (fallback), or NULL */
    struct lane *next;
};

/* A nettle cipher keyed for both directions (XTS: data key + tweak key). */
struct nkey {
    const struct nettle_cipher *nc;
    void *enc, *dec, *twk;     /* context_size bytes each; twk: xts only */
};

struct luks_cipher {
    enum mode mode;
    enum ivgen ivgen;
    size_t block, niv;         /* cipher block bytes; IV bytes (0: ecb) */
    /* OpenSSL (cipher != NULL) */
    EVP_CIPHER *cipher;
    struct prov_fns pf;
    bool fast;                 /* pf usable */
    uint8_t key[LUKS_MAX_KEY_BYTES];
    size_t keylen;
    pthread_mutex_t lock;
    struct lane *idle[2];      /* [enc] */
    int nidle[2];
    /* nettle (cipher == NULL) */
    struct nkey nk;
    /* essiv's ECB cipher, nettle, keyed with hash(key) */
    struct nkey essiv;
};

/* ---- nettle ------------------------------------------------------------- */

/* nettle's cipher for FAMILY with KEYBYTES-byte keys, or NULL (nettle
 * loaded: the descriptions are the library's variables, so the table is
 * built at each call, not a static initialiser). */
static const struct nettle_cipher *nettle_find(const char *family, size_t keybytes)
{
    const struct { const char *family; size_t kb; const struct nettle_cipher *nc; } t[] = {
        { "aes", 16, &nettle_aes128 }, { "aes", 24, &nettle_aes192 },
        { "aes", 32, &nettle_aes256 }, { "cast5", 16, &nettle_cast128 },
        { "serpent", 16, &nettle_serpent128 }, { "serpent", 24, &nettle_serpent192 },
        { "serpent", 32, &nettle_serpent256 }, { "twofish", 16, &nettle_twofish128 },
        { "twofish", 24, &nettle_twofish192 }, { "twofish", 32, &nettle_twofish256 },
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (!strcmp(t[i].family, family) && t[i].kb == keybytes)
            return t[i].nc;
    return NULL;
}

static void nkey_free(struct nkey *k)
{
    size_t n = k->nc ? k->nc->context_size : 0;
    void *p[3] = { k->enc, k->dec, k->twk };
    for (int i = 0; i < 3; i++)
        if (p[i]) {
            explicit_bzero(p[i], n);
            free(p[i]);
        }
    memset(k, 0, sizeof(*k));
}

/* Key NC with KEY (nc->key_size bytes; XTS: twice that, the second half
 * keying the tweak).  0 or -ENOMEM. */
static int nkey_init(struct nkey *k, const struct nettle_cipher *nc, const uint8_t *key,
                     bool xts)
{
    k->nc = nc;
    k->enc = calloc(1, nc->context_size);
    k->dec = calloc(1, nc->context_size);
    k->twk = xts ? calloc(1, nc->context_size) : NULL;
    if (!k->enc || !k->dec || (xts && !k->twk)) {
        nkey_free(k);
        return -ENOMEM;
    }
    nc->set_encrypt_key(k->enc, key);
    nc->set_decrypt_key(k->dec, key);
    if (xts)
        nc->set_encrypt_key(k->twk, key + nc->key_size);
    return 0;
}

/* LEN bytes (whole sectors) of one sector in place with nettle. */
static void nettle_sector(const struct luks_cipher *c, uint8_t *buf, size_t len, uint8_t *iv,
                          bool enc)
{
    const struct nettle_cipher *nc = c->nk.nc;

    switch (c->mode) {
    case M_ECB:
        (enc ? nc->encrypt : nc->decrypt)(enc ? c->nk.enc : c->nk.dec, len, buf, buf);
        break;
    case M_CBC:
        if (enc)
            cbc_encrypt(c->nk.enc, nc->encrypt, nc->block_size, iv, len, buf, buf);
        else
            cbc_decrypt(c->nk.dec, nc->decrypt, nc->block_size, iv, len, buf, buf);
        break;
    case M_CTR:
        ctr_crypt(c->nk.enc, nc->encrypt, nc->block_size, iv, len, buf, buf);
        break;
    case M_XTS:
        if (enc)
            xts_encrypt_message(c->nk.enc, c->nk.twk, nc->encrypt, iv, len, buf, buf);
        else
            xts_decrypt_message(c->nk.dec, c->nk.twk, nc->decrypt, nc->encrypt, iv, len, buf,
                                buf);
        break;
    }
}

/* ---- OpenSSL ------------------------------------------------------------ */

/* Whether NAME is one of the colon-separated NAMES (case-insensitive). */
static bool name_in(const char *names, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = names; p && *p;) {
        const char *e = strchr(p, ':');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == n && !strncasecmp(p, name, n))
            return true;
        p = e ? e + 1 : NULL;
    }
    return false;
}

/* Find CIPHER's implementation in its provider: true with c->pf filled. */
static bool prov_lookup(struct luks_cipher *c)
{
    const OSSL_PROVIDER *prov = EVP_CIPHER_get0_provider(c->cipher);
    const char *name = EVP_CIPHER_get0_name(c->cipher);
    int nocache = 0;
    const OSSL_ALGORITHM *algs, *a;

    if (!prov || !name)
        return false;
    algs = OSSL_PROVIDER_query_operation(prov, OSSL_OP_CIPHER, &nocache);
    for (a = algs; a && a->algorithm_names; a++) {
        if (!name_in(a->algorithm_names, name))
            continue;
        for (const OSSL_DISPATCH *d = a->implementation; d->function_id; d++)
            switch (d->function_id) {
            case OSSL_FUNC_CIPHER_NEWCTX:
                c->pf.newctx = OSSL_FUNC_cipher_newctx(d);
                break;
            case OSSL_FUNC_CIPHER_FREECTX:
                c->pf.freectx = OSSL_FUNC_cipher_freectx(d);
                break;
            case OSSL_FUNC_CIPHER_ENCRYPT_INIT:
                c->pf.einit = OSSL_FUNC_cipher_encrypt_init(d);
                break;
            case OSSL_FUNC_CIPHER_DECRYPT_INIT:
                c->pf.dinit = OSSL_FUNC_cipher_decrypt_init(d);
                break;
            case OSSL_FUNC_CIPHER_UPDATE:
                c->pf.update = OSSL_FUNC_cipher_update(d);
                break;
            case OSSL_FUNC_CIPHER_SET_CTX_PARAMS:
                c->pf.set_params = OSSL_FUNC_cipher_set_ctx_params(d);
                break;
            }
        break;
    }
    if (algs)
        OSSL_PROVIDER_unquery_operation(prov, OSSL_OP_CIPHER, algs);
    c->pf.provctx = OSSL_PROVIDER_get0_provider_ctx(prov);
    return c->pf.newctx && c->pf.freectx && c->pf.einit && c->pf.dinit && c->pf.update &&
           c->pf.set_params;
}

static void lane_free(struct luks_cipher *c, struct lane *l)
{
    if (!l)
        return;
    if (l->alg)
        c->pf.freectx(l->alg);
    EVP_CIPHER_CTX_free(l->c);
    free(l);
}

/* A new lane keyed for ENC; NULL if OpenSSL refuses. */
static struct lane *lane_new(struct luks_cipher *c, bool enc)
{
    struct lane *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    if (c->fast) {
        unsigned int zero = 0;
        OSSL_PARAM p[2] = { OSSL_PARAM_construct_uint(OSSL_CIPHER_PARAM_PADDING, &zero),
                            OSSL_PARAM_END };
        l->alg = c->pf.newctx(c->pf.provctx);
        if (l->alg && (enc ? c->pf.einit : c->pf.dinit)(l->alg, c->key, c->keylen, NULL, 0, NULL)
            && c->pf.set_params(l->alg, p))
            return l;
    } else {
        l->c = EVP_CIPHER_CTX_new();
        if (l->c && EVP_CipherInit_ex2(l->c, c->cipher, c->key, NULL, enc, NULL)) {
            EVP_CIPHER_CTX_set_padding(l->c, 0);
            return l;
        }
    }
    lane_free(c, l);
    return NULL;
}

/* A keyed lane for direction ENC: an idle one, or a new one. */
static struct lane *lane_get(struct luks_cipher *c, bool enc)
{
    struct lane *l;

    pthread_mutex_lock(&c->lock);
    l = c->idle[enc];
    if (l) {
        c->idle[enc] = l->next;
        c->nidle[enc]--;
    }
    pthread_mutex_unlock(&c->lock);
    return l ? l : lane_new(c, enc);
}

static void lane_put(struct luks_cipher *c, struct lane *l, bool enc)
{
    pthread_mutex_lock(&c->lock);
    if (c->nidle[enc] < POOL_MAX) {
        l->next = c->idle[enc];
        c->idle[enc] = l;
        c->nidle[enc]++;
        l = NULL;
    }
    pthread_mutex_unlock(&c->lock);
    lane_free(c, l);
}

/* LEN bytes in place from IV (NULL: ecb) through lane L. 0 or -EIO. */
static int ossl_run(const struct luks_cipher *c, struct lane *l, uint8_t *buf, size_t len,
                    const uint8_t *iv, bool enc)
{
    if (l->alg) {
        size_t n = 0;
        if (iv && !(enc ? c->pf.einit : c->pf.dinit)(l->alg, NULL, 0, iv, c->niv, NULL))
            return -EIO;
        return c->pf.update(l->alg, buf, &n, len, buf, len) && n == len ? 0 : -EIO;
    }
    int n = 0;
    if (iv && !EVP_CipherInit_ex2(l->c, NULL, NULL, iv, enc, NULL))
        return -EIO;
    return EVP_CipherUpdate(l->c, buf, &n, buf, (int)len) && (size_t)n == len ? 0 : -EIO;
}

/* ---- the cipher --------------------------------------------------------- */

int luks_cipher_new2(struct luks_cipher **out, const char *alg, const char *mode,
                     const char *ivgen, const char *ivhash, const uint8_t *key, size_t keylen,
                     unsigned flags)
{
    static const char *const modes[] = { "ecb", "cbc", "xts", "ctr" };
    char family[16], name[48];
    unsigned bits = 0;
    int n = 0, ret = -ENOTSUP;
    struct luks_cipher *c;

    *out = NULL;
    /* every cipher takes nettle's description of it; most run in OpenSSL */
    if ((ret = kimg_libcrypto_load("LUKS encryption")) < 0 ||
        (ret = kimg_libnettle_load("LUKS encryption")) < 0)
        return ret;
    ret = -ENOTSUP;
    if (sscanf(alg, "%15[a-z0-9]-%u%n", family, &bits, &n) != 2 || alg[n])
        return kimg_fail(-ENOTSUP, "Cipher '%s' is not supported", alg);
    if (keylen > LUKS_MAX_KEY_BYTES)
        return kimg_fail(-EINVAL, "LUKS key size %zu bytes is not supported", keylen);
    c = calloc(1, sizeof(*c));
    if (!c)
        return kimg_fail(-ENOMEM, "out of memory");
    pthread_mutex_init(&c->lock, NULL);
    c->mode = (enum mode)4;
    for (int i = 0; i < 4; i++)
        if (!strcmp(mode, modes[i]))
            c->mode = (enum mode)i;
    c->ivgen = !strcmp(ivgen, "plain") ? IV_PLAIN : !strcmp(ivgen, "plain64") ? IV_PLAIN64
                                                                             : IV_ESSIV;
    size_t kb = c->mode == M_XTS ? keylen / 2 : keylen;
    const struct nettle_cipher *nc = nettle_find(family, bits / 8);
    if (nc && c->mode == M_XTS && nc->block_size != 16) {
        /* qemu's words (cast5-128: 64-bit blocks) */
        luks_cipher_free(c);
        return kimg_fail(-ENOTSUP, "Unsupported cipher mode xts");
    }
    if (c->mode > M_CTR || !nc || kb != bits / 8 || (c->mode == M_XTS && kb * 2 != keylen))
        goto refuse;
    c->block = nc->block_size;
    c->niv = c->mode == M_ECB ? 0 : c->block;

    /* OpenSSL when its default library context has the cipher */
    if (!(flags & LUKS_CIPHER_NETTLE)) {
        snprintf(name, sizeof(name), "%s-%s", alg, mode);
        ERR_set_mark();
        c->cipher = EVP_CIPHER_fetch(NULL, name, NULL);
        ERR_pop_to_mark();
        if (c->cipher && ((size_t)EVP_CIPHER_get_key_length(c->cipher) != keylen ||
                          (size_t)EVP_CIPHER_get_iv_length(c->cipher) != c->niv)) {
            EVP_CIPHER_free(c->cipher);
            c->cipher = NULL;
        }
    }
    if (c->cipher) {
        memcpy(c->key, key, keylen);
        c->keylen = keylen;
        c->fast = !(flags & LUKS_CIPHER_EVP) && prov_lookup(c);
        /* one lane now: a cipher OpenSSL cannot key fails here, not later */
        struct lane *l = lane_new(c, true);
        if (!l)
            goto refuse;
        lane_put(c, l, true);
    } else if ((ret = nkey_init(&c->nk, nc, key, c->mode == M_XTS)) < 0) {
        goto fail;
    }

    if (c->ivgen == IV_ESSIV && c->niv > 0) {
        /* qemu: the essiv cipher is the same family keyed with the digest
         * (header.c allows only digests that are a key size of it) */
        const EVP_MD *md = EVP_get_digestbyname(ivhash ? ivhash : "sha256");
        uint8_t digest[EVP_MAX_MD_SIZE];
        unsigned int dlen = 0;
        const struct nettle_cipher *enc;
        if (!md || !EVP_Digest(key, keylen, digest, &dlen, md, NULL)) {
            luks_cipher_free(c);
            return kimg_fail(-ENOTSUP, "Hash algorithm '%s' not available",
                             ivhash ? ivhash : "sha256");
        }
        enc = nettle_find(family, dlen);
        ret = enc ? nkey_init(&c->essiv, enc, digest, false) : -ENOTSUP;
        explicit_bzero(digest, sizeof(digest));
        if (ret == -ENOMEM)
            goto fail;
        if (ret < 0) {
            luks_cipher_free(c);
            return kimg_fail(-ENOTSUP, "Cipher %s not supported with essiv", alg);
        }
    }
    *out = c;
    return 0;
refuse:
    luks_cipher_free(c);
    return kimg_fail(-ENOTSUP, "Cipher '%s-%s' with a %zu-byte key is not supported", alg,
                     mode, keylen);
fail:
    luks_cipher_free(c);
    return kimg_fail(ret, "cannot set up the LUKS cipher");
}

int luks_cipher_new(struct luks_cipher **out, const char *alg, const char *mode,
                    const char *ivgen, const char *ivhash, const uint8_t *key, size_t keylen)
{
    return luks_cipher_new2(out, alg, mode, ivgen, ivhash, key, keylen, 0);
}

void luks_cipher_free(struct luks_cipher *c)
{
    if (!c)
        return;
    for (int d = 0; d < 2; d++)
        while (c->idle[d]) {
            struct lane *l = c->idle[d];
            c->idle[d] = l->next;
            lane_free(c, l);
        }
    if (c->cipher)
        EVP_CIPHER_free(c->cipher);
    nkey_free(&c->nk);
    nkey_free(&c->essiv);
    pthread_mutex_destroy(&c->lock);
    explicit_bzero(c, sizeof(*c));
    free(c);
}

/* The IV of SECTOR into IV (c->niv bytes), qemu's ivgen. */
static void make_iv(const struct luks_cipher *c, uint64_t sector, uint8_t *iv)
{
    memset(iv, 0, c->niv);
    if (c->ivgen == IV_PLAIN) {
        uint32_t v = htole32((uint32_t)sector);
        memcpy(iv, &v, c->niv < 4 ? c->niv : 4);
        return;
    }
    uint64_t v = htole64(sector);
    memcpy(iv, &v, c->niv < 8 ? c->niv : 8);
    if (c->ivgen == IV_ESSIV) {
        /* the essiv cipher has the same block size as the sector cipher */
        const struct nettle_cipher *e = c->essiv.nc;
        e->encrypt(c->essiv.enc, e->block_size, iv, iv);
    }
}

int luks_cipher_run(struct luks_cipher *c, uint64_t sector, uint8_t *buf, size_t len, bool enc)
{
    uint8_t iv[MAX_BLOCK];
    struct lane *l = NULL;
    int ret = 0;

    if (len % LUKS_SECTOR)
        return kimg_fail(-EINVAL, "LUKS: length %zu is not a multiple of 512", len);
    if (c->cipher && !(l = lane_get(c, enc)))
        return kimg_fail(-ENOMEM, "cannot set up the LUKS cipher");
    if (c->niv == 0) {
        /* ecb: no IV, every sector alike, one call */
        ret = l ? ossl_run(c, l, buf, len, NULL, enc) : (nettle_sector(c, buf, len, NULL, enc), 0);
    } else {
        for (size_t off = 0; off < len; off += LUKS_SECTOR, sector++) {
            make_iv(c, sector, iv);
            if (!l) {
                nettle_sector(c, buf + off, LUKS_SECTOR, iv, enc);
            } else if ((ret = ossl_run(c, l, buf + off, LUKS_SECTOR, iv, enc)) < 0) {
                break;
            }
        }
    }
    if (l)
        lane_put(c, l, enc);
    explicit_bzero(iv, sizeof(iv));
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
