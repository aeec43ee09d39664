/*
 * crypto.c — encrypted qcow2 (crypt_method 2: LUKS, 1: legacy AES): the
 * key from the open option encrypt.key-secret, the LUKS header in the
 * clusters the CRYPTO header extension names (formats/luks parses it, holds
 * the key slots and the ciphers: one LUKS parser in kimg), the legacy
 * AES-128-CBC cipher (OpenSSL EVP), guest data encrypted and decrypted in
 * whole 512-byte sectors with qemu's IVs (crypt_physical_offset: the host
 * offset for LUKS, the guest offset for AES), the create-time options, and
 * amend's key slots (formats/luks/amend.c, the area written in place).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto_api.h"
#include "qcow2.h"
#include "kimg/json.h"
#include "../luks/luks.h"

#define SECTOR 512u
#define KEY_OPT "encrypt.key-secret"

/* What every data access of an image opened without its key gets (only
 * a metadata open, KIMG_OPEN_NO_IO, gets that far): qemu's open error. */
int qcow2_crypto_refuse(void)
{
    return kimg_fail(-ENOKEY, "Parameter '" KEY_OPT "' is required for cipher");
}

int qcow2_crypto_check_io(const struct qcow2_state *s)
{
    if (!qcow2_encrypted(s) || s->crypto.ready)
        return 0;
    return qcow2_crypto_refuse();
}

/* ---- the LUKS area through the image file ----------------------------- */

/* The key material moves through an aligned copy (the file layer wants
 * large transfers from aligned buffers; the LUKS code's are its own). */
static int area_pread(void *opaque, void *buf, size_t len, uint64_t off)
{
    struct qcow2_state *s = opaque;
    if (off > s->crypto_hdr_length || len > s->crypto_hdr_length - off)
        return kimg_fail(-EIO, "LUKS read outside the encryption header area");
    uint8_t *b = kimg_alloc_aligned(len ? len : 1);
    if (!b)
        return -ENOMEM;
    int ret = kimg_file_pread_zero_eof(s->file, b, len, s->crypto_hdr_offset + off);
    if (ret == 0)
        memcpy(buf, b, len);
    explicit_bzero(b, len);
    free(b);
    return ret;
}

static int area_pwrite(void *opaque, const void *buf, size_t len, uint64_t off)
{
    struct qcow2_state *s = opaque;
    if (off > s->crypto_hdr_length || len > s->crypto_hdr_length - off)
        return kimg_fail(-EIO, "LUKS write outside the encryption header area");
    uint8_t *b = kimg_alloc_aligned(len ? len : 1);
    if (!b)
        return -ENOMEM;
    memcpy(b, buf, len);
    int ret = kimg_file_pwrite(s->file, b, len, s->crypto_hdr_offset + off);
    explicit_bzero(b, len);
    free(b);
    return ret;
}

static int area_sync(void *opaque)
{
    struct qcow2_state *s = opaque;
    return kimg_file_sync(s->file);
}

static void area_io(struct qcow2_state *s, struct luks_io *io, bool writable)
{
    memset(io, 0, sizeof(*io));
    io->opaque = s;
    io->pread = area_pread;
    io->pwrite = writable ? area_pwrite : NULL;
    io->sync = writable ? area_sync : NULL;
    io->len = s->crypto_hdr_length;
}

/* ---- open ----------------------------------------------------------------- */

/* The open option encrypt.format, checked against the header as qemu's
 * qcow2_update_options_prepare does. */
static int check_format_opt(struct qcow2_state *s)
{
    const char *fmt = kimg_open_opt(s->img, "encrypt.format");
    static const char *const names[] = { "", "aes", "luks" };
    if (!fmt)
        return 0;
    if (strcmp(fmt, "aes") && strcmp(fmt, "luks"))
        return kimg_fail(-EINVAL, "Parameter 'encrypt.format' does not accept value '%s'",
                         fmt);
    if (s->crypt_method == QCOW2_CRYPT_NONE)
        return kimg_fail(-EINVAL, "No encryption in image header, but options specified "
                         "format '%s'", fmt);
    if (strcmp(fmt, names[s->crypt_method]))
        return kimg_fail(-EINVAL, "Header reported '%s' encryption format but options "
                         "specify '%s'", names[s->crypt_method], fmt);
    return 0;
}

static int open_luks_area(struct qcow2_state *s, uint64_t file_size)
{
    /* qemu opens this one under NO_IO too, then crashes in info: refuse */
    if (!s->has_crypto_ext)
        return kimg_fail(-EINVAL, "Missing CRYPTO header for crypt method %" PRIu32,
                         s->crypt_method);
    uint64_t off = s->crypto_hdr_offset, len = s->crypto_hdr_length;
    if (off < s->cluster_size)
        return kimg_fail(-EINVAL, "Encryption header offset '%" PRIu64 "' overlaps the "
                         "qcow2 header", off);
    if (len > QCOW2_MAX_CRYPTO_HDR)
        return kimg_fail(-EFBIG, "Encryption header length %" PRIu64 " is too large", len);
    if (off > file_size || len > file_size - off)
        return kimg_fail(-EINVAL, "Encryption header extends past the end of the file");
    struct luks_io io;
    /* writable for amend's key slots (nothing else writes the area) */
    area_io(s, &io, s->img->writable);
    unsigned lflags = (s->img->flags & KIMG_OPEN_UNTRUSTED) ? LUKS_OPEN_UNTRUSTED : 0;
    return luks_open(&s->crypto.luks, &io, lflags);
}

int qcow2_crypto_open(struct qcow2_state *s, uint64_t file_size)
{
    int ret = check_format_opt(s);
    if (ret < 0)
        return ret;
    /* taken (so not refused as unknown) even for a plain image, as qemu */
    const char *id = kimg_open_opt(s->img, KEY_OPT);
    if (!qcow2_encrypted(s))
        return 0;
    if (s->crypt_method == QCOW2_CRYPT_LUKS) {
        ret = open_luks_area(s, file_size);
        if (ret < 0)
            return ret;
    }
    if (!id) {
        if (s->img->flags & KIMG_OPEN_NO_IO)
            return 0;
        return qcow2_crypto_refuse();
    }
    /* aes_run's OpenSSL, loaded here: nothing reaches it before ready
     * (LUKS loads its own, formats/luks) */
    if (s->crypt_method == QCOW2_CRYPT_AES &&
        (ret = kimg_libcrypto_load("qcow2 AES encryption")) < 0)
        return ret;
    uint8_t *secret;
    size_t len;
    ret = kimg_secret_get(id, &secret, &len);
    if (ret < 0)
        return ret;
    if (s->crypt_method == QCOW2_CRYPT_LUKS) {
        ret = luks_unlock(s->crypto.luks, secret, len);
    } else {
        /* qemu's qcow key: the password as a C string, cut or zero-padded
         * to 16 bytes */
        size_t n = strnlen((const char *)secret, len);
        memset(s->crypto.aes_key, 0, sizeof(s->crypto.aes_key));
        memcpy(s->crypto.aes_key, secret, n < 16 ? n : 16);
    }
    kimg_secret_free(secret, len);
    if (ret < 0)
        return ret;
    s->crypto.ready = true;
    return 0;
}

void qcow2_crypto_close(struct qcow2_state *s)
{
    if (s->crypto.luks)
        luks_close(s->crypto.luks);
    s->crypto.luks = NULL;
    explicit_bzero(s->crypto.aes_key, sizeof(s->crypto.aes_key));
    s->crypto.ready = false;
}

/* ---- data ------------------------------------------------------------------ */

/* Legacy qcow AES: AES-128-CBC, IV plain64 (the sector number, little
 * endian, zero-padded to 16 bytes), one sector at a time. */
static int aes_run(const uint8_t *key, bool enc, uint64_t sector, uint8_t *buf, uint64_t len)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int ret = 0;
    if (!ctx)
        return kimg_fail(-ENOMEM, "out of memory");
    if (EVP_CipherInit_ex(ctx, EVP_aes_128_cbc(), NULL, key, NULL, enc) != 1 ||
        EVP_CIPHER_CTX_set_padding(ctx, 0) != 1)
        ret = -EIO;
    for (uint64_t p = 0; ret == 0 && p < len; p += SECTOR, sector++) {
        uint8_t iv[16] = { 0 };
        int out = 0;
        for (int i = 0; i < 8; i++)
            iv[i] = (uint8_t)(sector >> (8 * i));
        if (EVP_CipherInit_ex(ctx, NULL, NULL, NULL, iv, enc) != 1 ||
            EVP_CipherUpdate(ctx, buf + p, &out, buf + p, SECTOR) != 1 || out != SECTOR)
            ret = -EIO;
    }
    EVP_CIPHER_CTX_free(ctx);
    if (ret < 0)
        return kimg_fail(ret, "AES %s failed", enc ? "encryption" : "decryption");
    return 0;
}

int qcow2_crypto_run(const struct qcow2_state *s, bool enc, uint64_t guest, uint64_t host,
                     void *buf, uint64_t len)
{
    int ret = qcow2_crypto_check_io(s);
    if (ret < 0 || !qcow2_encrypted(s) || !len)
        return ret;
    if ((guest | host | len) % SECTOR)
        return kimg_fail(-EINVAL, "qcow2: unaligned encryption request");
    if (s->crypt_method == QCOW2_CRYPT_AES)
        return aes_run(s->crypto.aes_key, enc, guest / SECTOR, buf, len);
    for (uint64_t p = 0; p < len;) {
        /* luks_encrypt takes a size_t: large requests in pieces */
        uint64_t n = len - p < (1u << 30) ? len - p : (1u << 30);
        ret = enc ? luks_encrypt(s->crypto.luks, (host + p) / SECTOR, (uint8_t *)buf + p, n)
                  : luks_decrypt(s->crypto.luks, (host + p) / SECTOR, (uint8_t *)buf + p, n);
        if (ret < 0)
            return ret;
        p += n;
    }
    return 0;
}

int qcow2_crypto_pread(const struct qcow2_state *s, void *buf, uint64_t len, uint64_t host,
                       uint64_t guest)
{
    if (!s->data_file)
        return kimg_fail(-EIO, "Cannot read guest data: the external data file is not open");
    if (host % SECTOR == 0 && len % SECTOR == 0) {
        int ret = kimg_file_pread_zero_eof(s->data_file, buf, len, host);
        return ret < 0 ? ret : qcow2_crypto_run(s, false, guest, host, buf, len);
    }
    /* whole sectors around it, decrypted, the asked part copied out */
    uint64_t head = host % SECTOR;
    uint64_t a = host - head, b = qcow2_align_up(host + len, SECTOR);
    uint8_t *tmp = kimg_alloc_aligned(b - a);
    if (!tmp)
        return -ENOMEM;
    int ret = kimg_file_pread_zero_eof(s->data_file, tmp, b - a, a);
    if (ret == 0)
        ret = qcow2_crypto_run(s, false, guest - head, a, tmp, b - a);
    if (ret == 0)
        memcpy(buf, tmp + head, len);
    explicit_bzero(tmp, b - a);
    free(tmp);
    return ret;
}

/* ---- amend: key slots -------------------------------------------------------- */

int qcow2_crypto_amend(struct qcow2_state *s, const struct kimg_opts *opts, bool force)
{
    if (s->crypt_method != QCOW2_CRYPT_LUKS || !s->crypto.luks)
        return kimg_fail(-ENOTSUP, "Only LUKS encryption options can be amended");
    int ret = qcow2_crypto_check_io(s);
    return ret < 0 ? ret : luks_amend(s->crypto.luks, opts, "encrypt.", force);
}

/* ---- info -------------------------------------------------------------------- */

struct kimg_jv *qcow2_crypto_info(const struct qcow2_state *s)
{
    if (s->crypt_method == QCOW2_CRYPT_AES) {
        struct kimg_jv *e = kimg_jv_object();
        if (e)
            kimg_jv_add_str(e, "format", "aes");
        return e;
    }
    if (s->crypt_method != QCOW2_CRYPT_LUKS || !s->crypto.luks)
        return NULL;
    return luks_info(s->crypto.luks);
}

/* ---- create ------------------------------------------------------------------ */

/* The encrypt.* create options as luks_params (strings borrowed). */
static int get_params(const struct kimg_opts *o, struct luks_params *p)
{
    memset(p, 0, sizeof(*p));
    p->cipher_alg = kimg_opts_get(o, "encrypt.cipher-alg");
    p->cipher_mode = kimg_opts_get(o, "encrypt.cipher-mode");
    p->ivgen_alg = kimg_opts_get(o, "encrypt.ivgen-alg");
    p->ivgen_hash_alg = kimg_opts_get(o, "encrypt.ivgen-hash-alg");
    p->hash_alg = kimg_opts_get(o, "encrypt.hash-alg");
    return kimg_opts_get_u64(o, "encrypt.iter-time", 0, &p->iter_time_ms);
}

/* Which format the options ask for: 0 none, else QCOW2_CRYPT_*; the
 * value as qemu maps it ("aes" is its "qcow", encryption=on the same). */
static int wanted_format(const struct kimg_opts *o, bool *legacy, int *method)
{
    int ret = kimg_opts_get_bool(o, "encryption", false, legacy);
    if (ret < 0)
        return ret;
    const char *fmt = kimg_opts_get(o, "encrypt.format");
    *method = QCOW2_CRYPT_NONE;
    if (*legacy || (fmt && (!strcmp(fmt, "aes") || !strcmp(fmt, "qcow"))))
        *method = QCOW2_CRYPT_AES;
    else if (fmt && !strcmp(fmt, "luks"))
        *method = QCOW2_CRYPT_LUKS;
    else if (fmt)
        return kimg_fail(-EINVAL, "Parameter 'format' does not accept value '%s'", fmt);
    return 0;
}

int qcow2_crypto_alias_check(const struct kimg_opts *o)
{
    bool legacy;
    int ret = kimg_opts_get_bool(o, "encryption", false, &legacy);
    if (ret < 0)
        return ret;
    if (legacy && kimg_opts_get(o, "encrypt.format"))
        return kimg_fail(-EINVAL, "'encrypt.format' and its alias 'encryption' can't be "
                         "used at the same time");
    return 0;
}

int qcow2_crypto_opts_check(const struct kimg_opts *o)
{
    bool legacy;
    int method, ret = wanted_format(o, &legacy, &method);
    if (ret < 0)
        return ret;
    for (int i = 0; i < kimg_opts_count(o); i++) {
        const char *k = kimg_opts_key(o, i);
        if (strncmp(k, "encrypt.", 8) || !strcmp(k, "encrypt.format"))
            continue;
        /* qemu's visitor: encrypt.* without a format has no struct to
         * go into; the qcow (AES) struct has only key-secret */
        if (method == QCOW2_CRYPT_NONE)
            return kimg_fail(-EINVAL, "Parameter 'encrypt.format' is missing");
        if (method == QCOW2_CRYPT_AES && strcmp(k, KEY_OPT))
            return kimg_fail(-EINVAL, "Parameter '%s' is unexpected", k);
    }
    if (method != QCOW2_CRYPT_LUKS)
        return 0;
    struct luks_params p;
    ret = get_params(o, &p);
    return ret < 0 ? ret : luks_params_check(&p);
}

/* The secret named by encrypt.key-secret, looked up (qemu's messages). */
static int get_secret(const struct kimg_opts *o, uint8_t **secret, size_t *len)
{
    const char *id = kimg_opts_get(o, KEY_OPT);
    if (!id)
        return kimg_fail(-EINVAL, "Parameter '" KEY_OPT "' is required for cipher");
    return kimg_secret_get(id, secret, len);
}

int qcow2_crypto_create_check(const struct kimg_opts *o, bool *on, uint64_t *area_len)
{
    struct luks_params p;
    bool legacy;
    int method, ret = wanted_format(o, &legacy, &method);
    *on = false;
    if (ret < 0)
        return ret;
    if (method == QCOW2_CRYPT_NONE)
        return 0;
    /* qemu's order: the LUKS option values, the key secret, the cipher */
    if (method == QCOW2_CRYPT_LUKS &&
        ((ret = get_params(o, &p)) < 0 || (ret = luks_params_check(&p)) < 0))
        return ret;
    uint8_t *secret;
    size_t len;
    ret = get_secret(o, &secret, &len);
    if (ret < 0)
        return ret;
    kimg_secret_free(secret, len);
    /* qemu-img 7.2 still writes these; qemu refuses to use them in its
     * system emulators, and kimg does not make new ones */
    if (method == QCOW2_CRYPT_AES)
        return kimg_fail(-ENOTSUP, "Use of AES-CBC encrypted qcow2 images is no longer "
                         "supported: use encrypt.format=luks");
    uint64_t n = 0;
    ret = luks_area_len(&p, &n);
    if (ret < 0)
        return ret;
    *on = true;
    if (area_len)
        *area_len = n;
    return 0;
}

int qcow2_crypto_create(struct qcow2_state *s, const struct kimg_opts *o)
{
    struct luks_params p;
    uint64_t area = 0, host;
    bool on;
    int ret = qcow2_crypto_create_check(o, &on, &area);
    if (ret < 0 || !on)
        return ret;
    ret = get_params(o, &p);
    if (ret < 0)
        return ret;
    /* whole clusters, zeroed so the tail has predictable content (qemu) */
    uint64_t clusters = qcow2_align_up(area, s->cluster_size) >> s->cluster_bits;
    ret = qcow2_alloc_clusters(s, clusters, &host);
    if (ret < 0)
        return ret;
    uint8_t *zero = kimg_alloc_aligned_zero(s->cluster_size);
    if (!zero)
        return -ENOMEM;
    for (uint64_t i = 0; ret == 0 && i < clusters; i++)
        ret = kimg_file_pwrite(s->file, zero, s->cluster_size, host + (i << s->cluster_bits));
    free(zero);
    if (ret < 0)
        return ret;
    s->crypt_method = QCOW2_CRYPT_LUKS;
    s->has_crypto_ext = true;
    s->crypto_hdr_offset = host;
    s->crypto_hdr_length = area;

    uint8_t *secret;
    size_t len;
    ret = get_secret(o, &secret, &len);
    if (ret < 0)
        return ret;
    struct luks_io io;
    uint64_t written = 0;
    area_io(s, &io, true);
    ret = luks_create(&s->crypto.luks, &p, secret, len, &io, &written);
    kimg_secret_free(secret, len);
    if (ret < 0)
        return ret;
    if (written > area)
        return kimg_fail(-EIO, "LUKS header larger than announced (%" PRIu64 " > %" PRIu64
                         " bytes)", written, area);
    s->crypto.ready = true;
    uint8_t ext[QCOW2_CRYPTO_EXT_LEN];
    qcow2_put_be64(ext, host);
    qcow2_put_be64(ext + 8, area);
    return qcow2_set_ext(s, QCOW2_EXT_CRYPTO, ext, sizeof(ext));
}
