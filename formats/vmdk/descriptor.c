/*
 * descriptor.c — the VMDK descriptor parser: text (a descriptor file, or
 * the descriptor embedded in a sparse extent) to struct vmdk_desc.  Takes
 * what VMware and qemu write (comments, CRLF, quotes, spacing, unknown
 * keys); checks every number and name; opens nothing.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "vmdk.h"

struct line {
    const char *p;      /* after leading blanks */
    size_t len;         /* without the line end and trailing blanks */
    unsigned no;
};

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

const char *vmdk_ext_type_name(enum vmdk_ext_type t)
{
    switch (t) {
    case VMDK_EXT_FLAT:       return "FLAT";
    case VMDK_EXT_VMFS:       return "VMFS";
    case VMDK_EXT_SPARSE:     return "SPARSE";
    case VMDK_EXT_VMFSSPARSE: return "VMFSSPARSE";
    case VMDK_EXT_ZERO:       return "ZERO";
    }
    return "?";
}

/* The next blank-separated token of L at *POS (advanced past it). */
static bool next_token(const struct line *l, size_t *pos, const char **tok, size_t *tlen)
{
    size_t i = *pos;
    while (i < l->len && is_blank(l->p[i]))
        i++;
    if (i == l->len)
        return false;
    size_t s = i;
    while (i < l->len && !is_blank(l->p[i]))
        i++;
    *tok = l->p + s;
    *tlen = i - s;
    *pos = i;
    return true;
}

static bool tok_is(const char *tok, size_t tlen, const char *word)
{
    return strlen(word) == tlen && !memcmp(tok, word, tlen);
}

/* A decimal number of at most 20 digits, no sign, no overflow. */
static bool parse_dec(const char *tok, size_t tlen, uint64_t *out)
{
    uint64_t v = 0;
    if (tlen == 0 || tlen > 20)
        return false;
    for (size_t i = 0; i < tlen; i++) {
        if (tok[i] < '0' || tok[i] > '9')
            return false;
        if (__builtin_mul_overflow(v, 10, &v) ||
            __builtin_add_overflow(v, (uint64_t)(tok[i] - '0'), &v))
            return false;
    }
    *out = v;
    return true;
}

/* A CID: 1-8 hex digits (VMware writes "fffffffe", qemu "%x"). */
static bool parse_cid(const char *tok, size_t tlen, uint32_t *out)
{
    uint32_t v = 0;
    if (tlen == 0 || tlen > 8)
        return false;
    for (size_t i = 0; i < tlen; i++) {
        char c = tok[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            d = (unsigned)(c - 'A' + 10);
        else
            return false;
        v = v << 4 | d;
    }
    *out = v;
    return true;
}

static int bad_line(const struct line *l, const char *why)
{
    /* the line is image text: the command escapes it for the terminal */
    int n = l->len > 200 ? 200 : (int)l->len;
    return kimg_fail(-EINVAL, "Invalid extent line %u (%s): %.*s", l->no, why, n, l->p);
}

/* ACCESS SECTORS TYPE ["FILE" [OFFSET]] */
static int parse_extent(const struct line *l, struct vmdk_desc *d)
{
    struct vmdk_desc_extent e = { .line = l->no };
    const char *tok;
    size_t tlen, pos = 0;

    next_token(l, &pos, &tok, &tlen);
    if (tok_is(tok, tlen, "RW"))
        e.access = VMDK_ACCESS_RW;
    else if (tok_is(tok, tlen, "RDONLY"))
        e.access = VMDK_ACCESS_RDONLY;
    else
        e.access = VMDK_ACCESS_NOACCESS;
    if (!next_token(l, &pos, &tok, &tlen) || !parse_dec(tok, tlen, &e.sectors))
        return bad_line(l, "bad sector count");
    if (e.sectors == 0 || e.sectors > VMDK_MAX_SECTORS)
        return bad_line(l, "sector count out of range");
    if (!next_token(l, &pos, &tok, &tlen))
        return bad_line(l, "no extent type");
    if (tok_is(tok, tlen, "FLAT"))
        e.type = VMDK_EXT_FLAT;
    else if (tok_is(tok, tlen, "VMFS"))
        e.type = VMDK_EXT_VMFS;
    else if (tok_is(tok, tlen, "SPARSE"))
        e.type = VMDK_EXT_SPARSE;
    else if (tok_is(tok, tlen, "VMFSSPARSE"))
        e.type = VMDK_EXT_VMFSSPARSE;
    else if (tok_is(tok, tlen, "ZERO"))
        e.type = VMDK_EXT_ZERO;
    else {
        int n = tlen > 32 ? 32 : (int)tlen;
        return kimg_fail(-ENOTSUP, "Unsupported extent type '%.*s' (line %u)", n, tok, l->no);
    }

    /* the file name, in double quotes (it may hold blanks) */
    while (pos < l->len && is_blank(l->p[pos]))
        pos++;
    if (e.type == VMDK_EXT_ZERO) {
        if (pos != l->len)
            return bad_line(l, "a ZERO extent names no file");
    } else {
        if (pos == l->len || l->p[pos] != '"')
            return bad_line(l, "no quoted file name");
        const char *name = l->p + pos + 1;
        const char *q = memchr(name, '"', l->len - pos - 1);
        if (!q)
            return bad_line(l, "unterminated file name");
        size_t nlen = (size_t)(q - name);
        if (nlen == 0 || nlen > VMDK_MAX_NAME)
            return bad_line(l, "file name empty or too long");
        pos = (size_t)(q - l->p) + 1;
        if (pos < l->len && !is_blank(l->p[pos]))
            return bad_line(l, "text after the file name");
        if (next_token(l, &pos, &tok, &tlen)) {
            if (e.type != VMDK_EXT_FLAT)
                return bad_line(l, "only FLAT extents take an offset");
            if (!parse_dec(tok, tlen, &e.offset) || e.offset > VMDK_MAX_SECTORS)
                return bad_line(l, "bad offset");
        } else if (e.type == VMDK_EXT_FLAT) {
            return bad_line(l, "a FLAT extent needs an offset");
        }
        e.file = strndup(name, nlen);
        if (!e.file)
            return -ENOMEM;
    }
    if (next_token(l, &pos, &tok, &tlen)) {
        free(e.file);
        return bad_line(l, "text after the extent");
    }
    if (d->nb_extents >= VMDK_MAX_EXTENTS) {
        free(e.file);
        return kimg_fail(-EINVAL, "VMDK descriptor lists more than %u extents",
                         VMDK_MAX_EXTENTS);
    }
    if (d->total_sectors + e.sectors > VMDK_MAX_SECTORS) {
        free(e.file);
        return kimg_fail(-EFBIG, "VMDK extents add up to more than %llu sectors",
                         (unsigned long long)VMDK_MAX_SECTORS);
    }
    if (d->nb_extents % 16 == 0) {
        struct vmdk_desc_extent *n = realloc(d->extents, (d->nb_extents + 16) * sizeof(*n));
        if (!n) {
            free(e.file);
            return -ENOMEM;
        }
        d->extents = n;
    }
    d->extents[d->nb_extents++] = e;
    d->total_sectors += e.sectors;
    return 0;
}

/* KEY = VALUE (VALUE optionally in double quotes); VAL and VLEN: the value
 * without its quotes.  false: not a key=value line. */
static bool split_kv(const struct line *l, const char **key, size_t *klen,
                     const char **val, size_t *vlen)
{
    const char *eq = memchr(l->p, '=', l->len);
    if (!eq)
        return false;
    size_t k = (size_t)(eq - l->p);
    while (k && is_blank(l->p[k - 1]))
        k--;
    size_t v = (size_t)(eq - l->p) + 1;
    while (v < l->len && is_blank(l->p[v]))
        v++;
    *key = l->p;
    *klen = k;
    *val = l->p + v;
    *vlen = l->len - v;
    if (*vlen >= 2 && (*val)[0] == '"' && (*val)[*vlen - 1] == '"') {
        (*val)++;
        *vlen -= 2;
    }
    return true;
}

static int set_string(char **dst, const char *key, const char *val, size_t vlen,
                      size_t max, unsigned no)
{
    if (*dst)
        return kimg_fail(-EINVAL, "VMDK descriptor line %u: %s given twice", no, key);
    if (vlen > max || memchr(val, '"', vlen))
        return kimg_fail(-EINVAL, "VMDK descriptor line %u: bad %s value", no, key);
    *dst = strndup(val, vlen);
    return *dst ? 0 : -ENOMEM;
}

static int parse_kv(const struct line *l, struct vmdk_desc *d, bool *have_version)
{
    const char *key, *val;
    size_t klen, vlen;
    if (!split_kv(l, &key, &klen, &val, &vlen))
        return 0;                       /* not ours: ignored, as qemu */
    if (tok_is(key, klen, "version")) {
        uint64_t v;
        if (*have_version)
            return kimg_fail(-EINVAL, "VMDK descriptor line %u: version given twice", l->no);
        if (!parse_dec(val, vlen, &v) || v < 1 || v > 3)
            return kimg_fail(-ENOTSUP, "Unsupported VMDK descriptor version (line %u)", l->no);
        d->version = (uint32_t)v;
        *have_version = true;
    } else if (tok_is(key, klen, "CID") || tok_is(key, klen, "parentCID")) {
        bool parent = klen == 9;
        bool *has = parent ? &d->has_parent_cid : &d->has_cid;
        if (*has)
            return kimg_fail(-EINVAL, "VMDK descriptor line %u: %s given twice", l->no,
                             parent ? "parentCID" : "CID");
        if (!parse_cid(val, vlen, parent ? &d->parent_cid : &d->cid))
            return kimg_fail(-EINVAL, "VMDK descriptor line %u: bad %s", l->no,
                             parent ? "parentCID" : "CID");
        *has = true;
    } else if (tok_is(key, klen, "createType")) {
        return set_string(&d->create_type, "createType", val, vlen, VMDK_MAX_CREATE_TYPE,
                          l->no);
    } else if (tok_is(key, klen, "parentFileNameHint")) {
        int ret = set_string(&d->parent_hint, "parentFileNameHint", val, vlen,
                             VMDK_MAX_NAME, l->no);
        if (ret == 0 && !*d->parent_hint)
            return kimg_fail(-EINVAL, "VMDK descriptor line %u: empty parentFileNameHint",
                             l->no);
        return ret;
    }
    return 0;
}

static bool is_extent_line(const struct line *l)
{
    static const char *const access[] = { "RW", "RDONLY", "NOACCESS" };
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(access[i]);
        if (l->len > n && !memcmp(l->p, access[i], n) && is_blank(l->p[n]))
            return true;
    }
    return false;
}

int vmdk_desc_parse(const char *text, size_t len, bool embedded, struct vmdk_desc *d)
{
    bool have_version = false;
    unsigned no = 0;
    int ret = 0;

    memset(d, 0, sizeof(*d));
    d->version = 1;
    if (len > VMDK_MAX_DESC_BYTES)
        return kimg_fail(-EFBIG, "VMDK descriptor larger than %u bytes", VMDK_MAX_DESC_BYTES);
    const char *nul = memchr(text, '\0', len);
    /* the text ends at the first NUL, as qemu reads it (a C string): an
     * embedded descriptor's sectors are padded with NULs, and so is a
     * descriptor file qemu rewrote (with what its buffer held after) */
    if (nul)
        len = (size_t)(nul - text);
    for (size_t pos = 0; pos < len && ret == 0;) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len;
        struct line l = { .p = text + pos, .len = end - pos, .no = ++no };
        pos = nl ? end + 1 : len;
        if (l.len > VMDK_MAX_LINE) {
            ret = kimg_fail(-EINVAL, "VMDK descriptor line %u is longer than %u bytes",
                            l.no, VMDK_MAX_LINE);
            break;
        }
        while (l.len && (is_blank(l.p[l.len - 1]) || l.p[l.len - 1] == '\r'))
            l.len--;
        while (l.len && is_blank(*l.p)) {
            l.p++;
            l.len--;
        }
        if (!l.len || *l.p == '#')
            continue;
        /* an embedded descriptor's extent lines describe the file holding
         * it: not used (as qemu), so not parsed either */
        if (!is_extent_line(&l))
            ret = parse_kv(&l, d, &have_version);
        else if (!embedded)
            ret = parse_extent(&l, d);
    }
    if (ret == 0 && !d->has_cid)
        ret = kimg_fail(-EINVAL, "invalid VMDK image descriptor: no CID");
    if (ret == 0 && !d->has_parent_cid)
        ret = kimg_fail(-EINVAL, "invalid VMDK image descriptor: no parentCID");
    if (ret < 0) {
        if (ret == -ENOMEM)
            kimg_error("out of memory");
        vmdk_desc_free(d);
    }
    return ret;
}

void vmdk_desc_free(struct vmdk_desc *d)
{
    for (size_t i = 0; i < d->nb_extents; i++)
        free(d->extents[i].file);
    free(d->extents);
    free(d->create_type);
    free(d->parent_hint);
    memset(d, 0, sizeof(*d));
}
