/*
 * opts.c — qemu-style option lists ("-o a=b,c=d", ",," escapes a comma),
 * their validation against a driver's table, and the size syntax of
 * qemu-img ("1.5G", "512b", "0x1000"), plus qemu's human size format.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kimg.h"
#include "kimg/opts.h"
#include "internal.h"

/* ---- sizes --------------------------------------------------------------- */

static int suffix_shift(char c)
{
    switch (tolower((unsigned char)c)) {
    case 'b': return 0;
    case 'k': return 10;
    case 'm': return 20;
    case 'g': return 30;
    case 't': return 40;
    case 'p': return 50;
    case 'e': return 60;
    default:  return -1;
    }
}

int kimg_parse_size(const char *text, uint64_t *out)
{
    const char *p = text;
    char *end;
    uint64_t val, mul = 1;
    double fraction = 0;
    bool has_fraction = false, hex = false;
    int shift = -1;

    while (isspace((unsigned char)*p))
        p++;
    if (*p == '+')
        p++;
    if (!isdigit((unsigned char)*p))
        return -EINVAL;
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        if (!isxdigit((unsigned char)p[2]))
            return -EINVAL;
        hex = true;
    }
    errno = 0;
    val = strtoull(p, &end, hex ? 16 : 10);
    if (errno == ERANGE)
        return -ERANGE;
    if (*end == '.') {
        if (hex)
            return -EINVAL;
        /* the fraction: digits after the point, as a value in [0, 1) */
        const char *f = end + 1;
        char buf[32] = "0.";
        size_t n = 0;
        while (isdigit((unsigned char)f[n]))
            n++;
        if (n > 0) {
            size_t take = n < sizeof(buf) - 3 ? n : sizeof(buf) - 3;
            memcpy(buf + 2, f, take);
            buf[2 + take] = '\0';
            fraction = strtod(buf, NULL);
            if (fraction >= 1.0)   /* rounded up past the precision: drop */
                fraction = 0;
            has_fraction = fraction > 0;
        }
        end = (char *)f + n;
    }
    if (*end) {
        shift = suffix_shift(*end);
        if (shift < 0 || end[1] != '\0')
            return -EINVAL;
        mul = 1ULL << shift;
    }
    /* a fraction needs a unit above bytes: "1.5" and "1.5b" are refused */
    if (has_fraction && shift <= 0)
        return -EINVAL;
    uint64_t frac_bytes = (uint64_t)(fraction * (double)mul);
    uint64_t r;
    if (__builtin_mul_overflow(val, mul, &r) ||
        __builtin_add_overflow(r, frac_bytes, &r))
        return -ERANGE;
    *out = r;
    return 0;
}

void kimg_format_size(uint64_t size, char *buf, size_t buflen)
{
    static const char *const units[] = { "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei" };
    int e, i;

    /* pick the unit whose value is below 1000 (so 1000 KiB prints as 0.977 MiB) */
    frexp((double)size / (1000.0 / 1024.0), &e);
    i = (e - 1) / 10;
    if (i < 0)
        i = 0;
    if (i > 6)
        i = 6;
    snprintf(buf, buflen, "%0.3g %sB", (double)size / (double)(1ULL << (i * 10)),
             units[i]);
}

int kimg_parse_bool(const char *text, bool *out)
{
    if (!text || !strcmp(text, "on") || !strcmp(text, "yes") || !strcmp(text, "true")) {
        *out = true;
        return 0;
    }
    if (!strcmp(text, "off") || !strcmp(text, "no") || !strcmp(text, "false")) {
        *out = false;
        return 0;
    }
    return -EINVAL;
}

/* ---- option lists -------------------------------------------------------- */

static struct kimg_opt *find(const struct kimg_opts *opts, const char *key)
{
    if (!opts)
        return NULL;
    for (int i = opts->n - 1; i >= 0; i--)
        if (!strcmp(opts->v[i].key, key))
            return &opts->v[i];
    return NULL;
}

int kimg_opts_set(struct kimg_opts **popts, const char *key, const char *value)
{
    struct kimg_opts *opts = *popts;
    if (!opts) {
        opts = calloc(1, sizeof(*opts));
        if (!opts)
            return -ENOMEM;
        *popts = opts;
    }
    struct kimg_opt *o = find(opts, key);
    if (o) {
        char *v = value ? strdup(value) : NULL;
        if (value && !v)
            return -ENOMEM;
        free(o->value);
        o->value = v;
        return 0;
    }
    if (opts->n == opts->cap) {
        int cap = opts->cap ? opts->cap * 2 : 8;
        struct kimg_opt *nv = realloc(opts->v, (size_t)cap * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        opts->v = nv;
        opts->cap = cap;
    }
    o = &opts->v[opts->n];
    o->key = strdup(key);
    o->value = value ? strdup(value) : NULL;
    o->used = false;
    if (!o->key || (value && !o->value)) {
        free(o->key);
        free(o->value);
        return -ENOMEM;
    }
    opts->n++;
    return 0;
}

/* Copy one element of TEXT (up to an unescaped STOP or ',') into a new
 * string, turning ",," into ","; *pp advances past it. */
static char *take_token(const char **pp, char stop)
{
    const char *p = *pp;
    size_t len = strlen(p);
    char *out = malloc(len + 1), *o = out;
    if (!out)
        return NULL;
    while (*p) {
        if (*p == ',') {
            if (p[1] == ',') {
                *o++ = ',';
                p += 2;
                continue;
            }
            break;
        }
        if (stop && *p == stop)
            break;
        *o++ = *p++;
    }
    *o = '\0';
    *pp = p;
    return out;
}

int kimg_opts_parse(struct kimg_opts **opts, const char *text)
{
    const char *p = text;
    int ret = 0;

    if (!*opts) {
        *opts = calloc(1, sizeof(**opts));
        if (!*opts)
            return -ENOMEM;
    }
    while (*p) {
        char *key = take_token(&p, '='), *value = NULL;
        if (!key)
            return -ENOMEM;
        if (*p == '=') {
            p++;
            value = take_token(&p, 0);
            if (!value) {
                free(key);
                return -ENOMEM;
            }
        }
        if (!*key) {
            free(key);
            free(value);
            return kimg_fail(-EINVAL, "Invalid option list: %s", text);
        }
        ret = kimg_opts_set(opts, key, value);
        free(key);
        free(value);
        if (ret < 0)
            return ret;
        if (*p == ',')
            p++;
    }
    return 0;
}

void kimg_opts_free(struct kimg_opts *opts)
{
    if (!opts)
        return;
    for (int i = 0; i < opts->n; i++) {
        free(opts->v[i].key);
        free(opts->v[i].value);
    }
    free(opts->v);
    free(opts);
}

bool kimg_opts_wants_help(const struct kimg_opts *opts)
{
    return find(opts, "help") || find(opts, "?");
}

int kimg_opts_count(const struct kimg_opts *opts)
{
    return opts ? opts->n : 0;
}

const char *kimg_opts_key(const struct kimg_opts *opts, int i)
{
    return opts->v[i].key;
}

const char *kimg_opts_value(const struct kimg_opts *opts, int i)
{
    return opts->v[i].value;
}

char *kimg_opts_take(struct kimg_opts *opts, const char *key, bool *found)
{
    char *val = NULL;
    *found = false;
    for (int i = 0; opts && i < opts->n;) {
        if (strcmp(opts->v[i].key, key)) {
            i++;
            continue;
        }
        *found = true;
        free(val);
        val = opts->v[i].value;     /* later values override earlier ones */
        free(opts->v[i].key);
        memmove(&opts->v[i], &opts->v[i + 1], (size_t)(opts->n - i - 1) * sizeof(opts->v[0]));
        opts->n--;
    }
    return val;
}

int kimg_opts_validate(const struct kimg_opts *opts,
                       const struct kimg_optdesc *desc, const char *fmtname)
{
    if (!opts)
        return 0;
    for (int i = 0; i < opts->n; i++) {
        const struct kimg_opt *o = &opts->v[i];
        const struct kimg_optdesc *d = desc;
        while (d && d->name && strcmp(d->name, o->key))
            d++;
        if (!d || !d->name)
            return kimg_fail(-EINVAL, "Invalid parameter '%s'", o->key);
        uint64_t u;
        bool b;
        switch (d->type) {
        case KIMG_OPT_SIZE:
            if (!o->value || kimg_parse_size(o->value, &u) < 0)
                /* qemu's first line; its next two explain the suffixes */
                return kimg_fail(-EINVAL, "Parameter '%s' expects a non-negative number "
                                 "below 2^64", o->key);
            break;
        case KIMG_OPT_NUMBER: {
            char *end;
            if (!o->value || !*o->value || *o->value == '-')
                return kimg_fail(-EINVAL, "Parameter '%s' expects a number", o->key);
            errno = 0;
            (void)strtoull(o->value, &end, 0);
            if (*end || errno)
                return kimg_fail(-EINVAL, "Parameter '%s' expects a number", o->key);
            break;
        }
        case KIMG_OPT_BOOL:
            if (kimg_parse_bool(o->value, &b) < 0)
                return kimg_fail(-EINVAL, "Parameter '%s' expects 'on' or 'off'", o->key);
            break;
        case KIMG_OPT_STRING:
            if (!o->value)
                return kimg_fail(-EINVAL, "Parameter '%s' expects a value", o->key);
            break;
        }
    }
    (void)fmtname;
    return 0;
}

const char *kimg_opts_get(const struct kimg_opts *opts, const char *key)
{
    struct kimg_opt *o = find(opts, key);
    if (!o)
        return NULL;
    o->used = true;
    return o->value ? o->value : "on";
}

int kimg_opts_get_size(const struct kimg_opts *opts, const char *key,
                       uint64_t def, uint64_t *out)
{
    const char *v = kimg_opts_get(opts, key);
    if (!v) {
        *out = def;
        return 0;
    }
    if (kimg_parse_size(v, out) < 0)
        return kimg_fail(-EINVAL, "Parameter '%s' expects a size", key);
    return 0;
}

int kimg_opts_get_u64(const struct kimg_opts *opts, const char *key,
                      uint64_t def, uint64_t *out)
{
    const char *v = kimg_opts_get(opts, key);
    char *end;
    if (!v) {
        *out = def;
        return 0;
    }
    errno = 0;
    if (*v == '-' || !*v)
        return kimg_fail(-EINVAL, "Parameter '%s' expects a number", key);
    *out = strtoull(v, &end, 0);
    if (*end || errno)
        return kimg_fail(-EINVAL, "Parameter '%s' expects a number", key);
    return 0;
}

int kimg_opts_get_bool(const struct kimg_opts *opts, const char *key,
                       bool def, bool *out)
{
    struct kimg_opt *o = find(opts, key);
    if (!o) {
        *out = def;
        return 0;
    }
    o->used = true;
    if (kimg_parse_bool(o->value, out) < 0)
        return kimg_fail(-EINVAL, "Parameter '%s' expects 'on' or 'off'", key);
    return 0;
}
