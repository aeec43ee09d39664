/*
 * tar.c — the tar walk of an OVA: ustar/GNU headers and checksums, octal or
 * base-256 sizes, pax "path"/"size" records and GNU long names.  Regular
 * files only (links, devices, folders, sparse files refuse the archive);
 * headers only are read, each step advances, caps bound the walk.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "ova.h"

/* Header fields (POSIX ustar; GNU tar shares these offsets). */
#define H_NAME      0
#define H_SIZE      124
#define H_CHKSUM    148
#define H_TYPE      156
#define H_MAGIC     257
#define H_PREFIX    345

static bool is_zero_block(const uint8_t *b)
{
    for (unsigned i = 0; i < OVA_BLOCK; i++)
        if (b[i])
            return false;
    return true;
}

/* A numeric field: octal digits (leading spaces, then NUL or space to
 * the end) or GNU base-256 (first byte 0x80, big-endian, non-negative,
 * below 2^63).  -EINVAL when it is neither. */
static int parse_number(const uint8_t *p, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    size_t i = 0;
    if (p[0] == 0x80) {
        for (i = 1; i < n; i++) {
            if (v >> 55)
                return -EINVAL;
            v = (v << 8) | p[i];
        }
        if (v > INT64_MAX)
            return -EINVAL;
        *out = v;
        return 0;
    }
    while (i < n && p[i] == ' ')
        i++;
    size_t start = i;
    for (; i < n && p[i] >= '0' && p[i] <= '7'; i++) {
        if (v >> 60)
            return -EINVAL;
        v = v * 8 + (uint64_t)(p[i] - '0');
    }
    if (i == start)
        return -EINVAL;
    for (; i < n; i++)
        if (p[i] != ' ' && p[i] != '\0')
            return -EINVAL;
    *out = v;
    return 0;
}

bool ova_tar_is_header(const uint8_t *b)
{
    bool posix = !memcmp(b + H_MAGIC, "ustar\0" "00", 8);
    bool gnu = !memcmp(b + H_MAGIC, "ustar  \0", 8);
    uint64_t want;
    if ((!posix && !gnu) || parse_number(b + H_CHKSUM, 8, &want) < 0)
        return false;
    /* the sum of the header's bytes with the checksum field as spaces;
     * old tars summed signed chars: either is accepted, as by GNU tar */
    uint64_t usum = 8 * ' ';
    int64_t ssum = 8 * ' ';
    for (unsigned i = 0; i < OVA_BLOCK; i++) {
        if (i >= H_CHKSUM && i < H_CHKSUM + 8)
            continue;
        usum += b[i];
        ssum += (int8_t)b[i];
    }
    return want == usum || (int64_t)want == ssum;
}

/* The NUL-terminated copy of field P (at most N bytes). */
static char *field_str(const uint8_t *p, size_t n)
{
    size_t len = strnlen((const char *)p, n);
    char *s = malloc(len + 1);
    if (s) {
        memcpy(s, p, len);
        s[len] = '\0';
    }
    return s;
}

/* The name a ustar header gives: "prefix/name" (POSIX), or name. */
static char *header_name(const uint8_t *b)
{
    char *name = field_str(b + H_NAME, 100);
    if (!name || memcmp(b + H_MAGIC, "ustar\0", 6) || !b[H_PREFIX])
        return name;
    char *prefix = field_str(b + H_PREFIX, 155);
    char *full = prefix ? malloc(strlen(prefix) + strlen(name) + 2) : NULL;
    if (full)
        sprintf(full, "%s/%s", prefix, name);
    free(prefix);
    free(name);
    return full;
}

/* A member name kimg takes: not empty, at most OVA_MAX_NAME bytes, no
 * '/' (members live at the archive's top, as OVF wants), no "..". */
static int check_name(const char *name)
{
    size_t len = strlen(name);
    if (!len)
        return kimg_fail(-EINVAL, "the archive has a member with an empty name");
    if (len > OVA_MAX_NAME)
        return kimg_fail(-EINVAL, "the archive has a member name longer than %u bytes",
                         OVA_MAX_NAME);
    if (strchr(name, '/') || strstr(name, ".."))
        return kimg_fail(-EINVAL, "member '%.200s': a name with '/' or '..' (an OVA's "
                         "members are plain file names)", name);
    return 0;
}

static const char *type_word(uint8_t t)
{
    switch (t) {
    case '1': return "a hard link";
    case '2': return "a symbolic link";
    case '3': return "a character device";
    case '4': return "a block device";
    case '5': return "a folder";
    case '6': return "a FIFO";
    case '7': return "a contiguous file";
    case 'S': return "a sparse file";
    default:  return "not a regular file";
    }
}

/* What the pax and GNU headers before a member say about it. */
struct pending {
    char *name;
    uint64_t size;
    bool has_size;
};

static void pending_clear(struct pending *p)
{
    free(p->name);
    memset(p, 0, sizeof(*p));
}

/* Read data of SIZE bytes at OFF (a pax header's or a long name's). */
static int read_small(struct kimg_file *file, uint64_t off, uint64_t size, char **out)
{
    char *buf = kimg_alloc_aligned(size + 1);     /* free() releases it */
    if (!buf)
        return -ENOMEM;
    int ret = size ? kimg_file_pread(file, buf, (size_t)size, off) : 0;
    if (ret < 0) {
        free(buf);
        return ret;
    }
    buf[size] = '\0';
    *out = buf;
    return 0;
}

/* pax records "LEN key=value\n" (LEN counts the whole record, in
 * decimal): "path" and "size" are kept for the next member, GNU sparse
 * keys refused, the rest ignored. */
static int parse_pax(const char *buf, size_t len, struct pending *p)
{
    size_t pos = 0;
    while (pos < len) {
        size_t rlen = 0, i = pos;
        while (i < len && buf[i] >= '0' && buf[i] <= '9' && rlen <= len)
            rlen = rlen * 10 + (size_t)(buf[i++] - '0');
        if (i == pos || i >= len || buf[i] != ' ' || rlen > len - pos || rlen < i - pos + 3 ||
            buf[pos + rlen - 1] != '\n')
            return kimg_fail(-EINVAL, "a malformed pax extended header");
        const char *key = buf + i + 1, *end = buf + pos + rlen - 1;
        const char *eq = memchr(key, '=', (size_t)(end - key));
        if (!eq || eq == key || memchr(key, '\0', (size_t)(end - key)))
            return kimg_fail(-EINVAL, "a malformed pax extended header");
        size_t klen = (size_t)(eq - key), vlen = (size_t)(end - eq - 1);
        const char *val = eq + 1;
        if (klen == 4 && !memcmp(key, "path", 4)) {
            free(p->name);
            if (!(p->name = malloc(vlen + 1)))
                return -ENOMEM;
            memcpy(p->name, val, vlen);
            p->name[vlen] = '\0';
        } else if (klen == 4 && !memcmp(key, "size", 4)) {
            uint64_t v = 0;
            if (!vlen || vlen > 19)
                return kimg_fail(-EINVAL, "a pax header with a bad size");
            for (size_t k = 0; k < vlen; k++) {
                if (val[k] < '0' || val[k] > '9')
                    return kimg_fail(-EINVAL, "a pax header with a bad size");
                v = v * 10 + (uint64_t)(val[k] - '0');
            }
            p->size = v;
            p->has_size = true;
        } else if (klen > 11 && !memcmp(key, "GNU.sparse.", 11)) {
            return kimg_fail(-EINVAL, "the archive holds a sparse file; an OVA's members "
                             "are regular files");
        }
        pos += rlen;
    }
    return 0;
}

static int add_member(struct ova_tar *t, char *name, uint64_t off, uint64_t size,
                      bool check)
{
    int ret = check ? check_name(name) : 0;
    for (unsigned i = 0; ret == 0 && i < t->n; i++)
        if (!strcmp(t->m[i].name, name))
            ret = kimg_fail(-EINVAL, "member '%.200s' appears twice in the archive", name);
    if (ret == 0 && t->n >= OVA_MAX_MEMBERS)
        ret = kimg_fail(-EINVAL, "the archive has more than %u members", OVA_MAX_MEMBERS);
    if (ret < 0) {
        free(name);
        return ret;
    }
    if ((t->n & (t->n - 1)) == 0) {
        struct ova_member *m = realloc(t->m, (t->n ? 2 * t->n : 8) * sizeof(*m));
        if (!m) {
            free(name);
            return -ENOMEM;
        }
        t->m = m;
    }
    t->m[t->n++] = (struct ova_member){ .name = name, .offset = off, .size = size };
    return 0;
}

int ova_tar_walk(struct kimg_file *file, uint64_t size, bool first_only, struct ova_tar *out)
{
    uint8_t b[OVA_BLOCK] __attribute__((aligned(64)));
    struct ova_tar t = { 0 };
    struct pending p = { 0 };
    uint64_t off = 0;
    int ret = 0;

    for (unsigned headers = 0;; headers++) {
        if (off == size)
            break;                      /* no end blocks: accepted, as GNU tar */
        if (size - off < OVA_BLOCK) {
            ret = kimg_fail(-EINVAL, "the archive ends inside a header (offset %llu)",
                            (unsigned long long)off);
            break;
        }
        if (headers >= OVA_MAX_HEADERS) {
            ret = kimg_fail(-EINVAL, "the archive has more than %u headers", OVA_MAX_HEADERS);
            break;
        }
        if ((ret = kimg_file_pread(file, b, OVA_BLOCK, off)) < 0)
            break;
        if (is_zero_block(b))
            break;                      /* the end-of-archive block */
        if (!ova_tar_is_header(b)) {
            ret = kimg_fail(-EINVAL, "a damaged tar header at offset %llu (bad magic or "
                            "checksum)", (unsigned long long)off);
            break;
        }
        uint64_t dsize, data = off + OVA_BLOCK, next;
        if (parse_number(b + H_SIZE, 12, &dsize) < 0) {
            ret = kimg_fail(-EINVAL, "a tar header with a bad size at offset %llu",
                            (unsigned long long)off);
            break;
        }
        uint8_t type = b[H_TYPE];
        if ((type == '0' || type == '\0') && p.has_size)
            dsize = p.size;             /* pax "size" overrides the header's */
        if (dsize > size - data || __builtin_add_overflow(data, dsize, &next) ||
            __builtin_add_overflow(next, (OVA_BLOCK - next % OVA_BLOCK) % OVA_BLOCK, &next)) {
            ret = kimg_fail(-EINVAL, "a tar member at offset %llu ends past the end of the "
                            "archive", (unsigned long long)off);
            break;
        }
        if (type == 'x' || type == 'L') {
            char *data_buf;
            if (dsize > (type == 'x' ? OVA_MAX_PAX_BYTES : OVA_MAX_NAME + 1)) {
                ret = kimg_fail(-EINVAL, "a %s of %llu bytes at offset %llu is too large",
                                type == 'x' ? "pax extended header" : "GNU long name",
                                (unsigned long long)dsize, (unsigned long long)off);
                break;
            }
            if ((ret = read_small(file, data, dsize, &data_buf)) < 0)
                break;
            if (type == 'x') {
                ret = parse_pax(data_buf, (size_t)dsize, &p);
                free(data_buf);
            } else {
                free(p.name);
                p.name = data_buf;      /* NUL-terminated at its first NUL */
            }
            if (ret < 0)
                break;
        } else if (type == 'g' || type == 'K') {
            /* a global pax header (nothing in it applies to a member
             * kimg reads); a GNU long link name (its link is refused) */
        } else if (type == '0' || type == '\0') {
            char *name = p.name ? p.name : header_name(b);
            p.name = NULL;
            if (!name) {
                ret = -ENOMEM;
                break;
            }
            if ((ret = add_member(&t, name, data, dsize, !first_only)) < 0)
                break;
            pending_clear(&p);
            if (first_only)
                break;
        } else if (first_only) {
            break;                      /* the first member is not a file */
        } else {
            char *name = p.name ? p.name : header_name(b);
            p.name = NULL;
            ret = kimg_fail(-EINVAL, "member '%.200s' is %s; an OVA holds regular files only",
                            name ? name : "?", type_word(type));
            free(name);
            break;
        }
        off = next;
    }
    pending_clear(&p);
    if (ret < 0) {
        if (ret == -ENOMEM)
            kimg_error("out of memory");
        ova_tar_free(&t);
        return ret;
    }
    *out = t;
    return 0;
}

void ova_tar_free(struct ova_tar *t)
{
    for (unsigned i = 0; i < t->n; i++)
        free(t->m[i].name);
    free(t->m);
    t->m = NULL;
    t->n = 0;
}

const struct ova_member *ova_tar_find(const struct ova_tar *t, const char *name)
{
    for (unsigned i = 0; i < t->n; i++)
        if (!strcmp(t->m[i].name, name))
            return &t->m[i];
    return NULL;
}
