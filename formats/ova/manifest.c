/*
 * manifest.c — an OVA's manifest (.mf): "SHA1|SHA256|SHA512(name)= hex"
 * lines (VirtualBox's "SHA1 (name) = hex" too; blank lines and CRLF
 * tolerated, anything else refused), and a member's check against its
 * line: its bytes mapped (img/srcmap.c guards) or read, through EVP
 * (libcrypto, loaded on the first check: lazylib/).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "crypto_api.h"
#include "ova.h"
#include "srcmap.h"

#define DIGEST_CHUNK (32u << 20)

static const struct {
    const char *name;
    unsigned md_len;
} algs[] = {
    { "SHA1", 20 }, { "SHA256", 32 }, { "SHA512", 64 },
};

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* One line (LEN bytes, no newline) into D. */
static int parse_line(const char *s, size_t len, unsigned lineno, struct ova_digest *d)
{
    const char *open = memchr(s, '(', len);
    const char *close = NULL;
    for (size_t i = len; i > 0 && !close; i--)
        if (s[i - 1] == ')')
            close = s + i - 1;
    if (!open || !close || close < open || memchr(s, '\0', len))
        return kimg_fail(-EINVAL, "manifest line %u is not ALGORITHM(NAME)= DIGEST", lineno);
    size_t alen = (size_t)(open - s);
    while (alen && s[alen - 1] == ' ')
        alen--;                 /* VirtualBox: "SHA1 (name) = hex" */
    for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++)
        if (strlen(algs[i].name) == alen && !memcmp(s, algs[i].name, alen)) {
            d->alg = algs[i].name;
            d->md_len = algs[i].md_len;
        }
    if (!d->alg)
        return kimg_fail(-EINVAL, "manifest line %u: digest '%.*s' is not SHA1, SHA256 or "
                         "SHA512", lineno, (int)(alen > 16 ? 16 : alen), s);
    const char *p = close + 1, *end = s + len;
    while (p < end && *p == ' ')
        p++;
    if (p == end || *p++ != '=')
        return kimg_fail(-EINVAL, "manifest line %u is not ALGORITHM(NAME)= DIGEST", lineno);
    while (p < end && *p == ' ')
        p++;
    while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    if ((size_t)(end - p) != 2 * d->md_len)
        return kimg_fail(-EINVAL, "manifest line %u: the %s digest is not %u hex digits",
                         lineno, d->alg, 2 * d->md_len);
    for (unsigned i = 0; i < d->md_len; i++) {
        int hi = hexval(p[2 * i]), lo = hexval(p[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return kimg_fail(-EINVAL, "manifest line %u: the digest is not hexadecimal", lineno);
        d->md[i] = (uint8_t)(hi << 4 | lo);
    }
    size_t nlen = (size_t)(close - open - 1);
    if (!nlen || nlen > OVA_MAX_NAME)
        return kimg_fail(-EINVAL, "manifest line %u: a bad member name", lineno);
    if (!(d->name = malloc(nlen + 1)))
        return -ENOMEM;
    memcpy(d->name, open + 1, nlen);
    d->name[nlen] = '\0';
    return 0;
}

int ova_manifest_parse(const char *buf, size_t len, struct ova_manifest *out)
{
    struct ova_manifest m = { 0 };
    unsigned lineno = 0;
    int ret = 0;
    if (len > OVA_MAX_MF_BYTES)
        return kimg_fail(-EFBIG, "the manifest is larger than %u MiB", OVA_MAX_MF_BYTES >> 20);
    for (size_t pos = 0; pos < len && ret == 0;) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        size_t llen = nl ? (size_t)(nl - (buf + pos)) : len - pos;
        const char *line = buf + pos;
        pos += llen + (nl ? 1 : 0);
        lineno++;
        if (llen && line[llen - 1] == '\r')
            llen--;
        if (!llen)
            continue;
        if (m.n >= OVA_MAX_MEMBERS) {
            ret = kimg_fail(-EINVAL, "the manifest has more than %u lines", OVA_MAX_MEMBERS);
            break;
        }
        if ((m.n & (m.n - 1)) == 0) {
            struct ova_digest *d = realloc(m.d, (m.n ? 2 * m.n : 8) * sizeof(*d));
            if (!d) {
                ret = -ENOMEM;
                break;
            }
            m.d = d;
        }
        memset(&m.d[m.n], 0, sizeof(m.d[m.n]));
        ret = parse_line(line, llen, lineno, &m.d[m.n]);
        if (ret < 0)
            break;
        if (ova_manifest_find(&m, m.d[m.n].name)) {
            ret = kimg_fail(-EINVAL, "the manifest names '%.200s' twice", m.d[m.n].name);
            free(m.d[m.n].name);
            break;
        }
        m.n++;
    }
    if (ret < 0) {
        if (ret == -ENOMEM)
            kimg_error("out of memory");
        ova_manifest_free(&m);
        return ret;
    }
    *out = m;
    return 0;
}

void ova_manifest_free(struct ova_manifest *m)
{
    for (unsigned i = 0; i < m->n; i++)
        free(m->d[i].name);
    free(m->d);
    m->d = NULL;
    m->n = 0;
}

const struct ova_digest *ova_manifest_find(const struct ova_manifest *m, const char *name)
{
    for (unsigned i = 0; i < m->n; i++)
        if (!strcmp(m->d[i].name, name))
            return &m->d[i];
    return NULL;
}

/* Add LEN bytes at OFF of FILE to CTX: through a guarded mapping (no copy:
 * the digest is the cost of a manifest), else through reads into BUF. */
static int digest_range(EVP_MD_CTX *ctx, struct kimg_file *file, uint64_t off, size_t len,
                        uint8_t *buf)
{
    struct kimg_srcmap sm;
    int ret = kimg_srcmap_open(&sm, file, off, len);
    if (ret == 0) {
        int ok = EVP_DigestUpdate(ctx, sm.data, len);
        ret = kimg_srcmap_check(&sm);
        kimg_srcmap_close(&sm);
        return ret < 0 ? ret : ok ? 0 : kimg_fail(-EIO, "cannot compute a digest");
    }
    if (ret == -EIO)
        return ret;             /* the file shrank: srcmap said so */
    ret = kimg_file_pread(file, buf, len, off);
    if (ret == 0 && !EVP_DigestUpdate(ctx, buf, len))
        ret = kimg_fail(-EIO, "cannot compute a digest");
    return ret;
}

int ova_manifest_verify(struct kimg_file *file, const struct ova_member *m,
                        const struct ova_digest *d)
{
    int ret = kimg_libcrypto_load("OVA manifest verification");
    if (ret < 0)
        return ret;
    const EVP_MD *md = EVP_get_digestbyname(d->alg);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    size_t chunk = m->size < DIGEST_CHUNK ? (size_t)m->size : DIGEST_CHUNK;
    uint8_t *buf = kimg_alloc_aligned(chunk);
    uint8_t got[EVP_MAX_MD_SIZE];
    unsigned got_len = 0;

    if (!md || !ctx || !buf || !EVP_DigestInit_ex(ctx, md, NULL))
        ret = kimg_fail(-ENOMEM, "cannot compute a %s digest", d->alg);
    for (uint64_t pos = 0; ret == 0 && pos < m->size;) {
        size_t n = m->size - pos < chunk ? (size_t)(m->size - pos) : chunk;
        ret = digest_range(ctx, file, m->offset + pos, n, buf);
        pos += n;
    }
    if (ret == 0 && !EVP_DigestFinal_ex(ctx, got, &got_len))
        ret = kimg_fail(-EIO, "cannot compute a %s digest", d->alg);
    if (ret == 0 && (got_len != d->md_len || memcmp(got, d->md, got_len)))
        ret = kimg_fail(-EINVAL, "member '%.200s' does not match its %s digest in the "
                        "manifest; refusing the archive", m->name, d->alg);
    free(buf);
    EVP_MD_CTX_free(ctx);
    return ret;
}
