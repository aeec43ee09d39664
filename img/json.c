/*
 * json.c — an ordered JSON value tree and its writers: qemu-img's pretty
 * layout (4-space indent), and qemu's human "key: value" dump used by
 * `info` for format-specific data.  Strings are escaped as qemu escapes
 * them (control and non-ASCII characters as \uXXXX, bad UTF-8 as U+FFFD).
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include "kimg/json.h"
#include "kimg.h"

static struct kimg_jv *jv_new(enum kimg_jv_type t)
{
    struct kimg_jv *v = calloc(1, sizeof(*v));
    if (!v)
        abort();   /* tiny fixed-size allocations: out of memory is fatal */
    v->type = t;
    return v;
}

struct kimg_jv *kimg_jv_object(void) { return jv_new(KIMG_JV_OBJECT); }
struct kimg_jv *kimg_jv_array(void)  { return jv_new(KIMG_JV_ARRAY); }

struct kimg_jv *kimg_jv_string(const char *s)
{
    struct kimg_jv *v = jv_new(KIMG_JV_STRING);
    v->s = strdup(s ? s : "");
    if (!v->s)
        abort();
    return v;
}

struct kimg_jv *kimg_jv_bool(bool b)
{
    struct kimg_jv *v = jv_new(KIMG_JV_BOOL);
    v->b = b;
    return v;
}

struct kimg_jv *kimg_jv_int(int64_t i)
{
    struct kimg_jv *v = jv_new(KIMG_JV_INT);
    v->i = i;
    return v;
}

struct kimg_jv *kimg_jv_uint(uint64_t u)
{
    struct kimg_jv *v = jv_new(KIMG_JV_UINT);
    v->u = u;
    return v;
}

void kimg_jv_free(struct kimg_jv *v)
{
    if (!v)
        return;
    for (int i = 0; i < v->n; i++) {
        if (v->keys)
            free(v->keys[i]);
        kimg_jv_free(v->items[i]);
    }
    free(v->keys);
    free(v->items);
    free(v->s);
    free(v);
}

struct kimg_jv *kimg_jv_add(struct kimg_jv *obj, const char *key, struct kimg_jv *val)
{
    if (obj->n == obj->cap) {
        int cap = obj->cap ? obj->cap * 2 : 8;
        obj->items = realloc(obj->items, (size_t)cap * sizeof(*obj->items));
        if (obj->type == KIMG_JV_OBJECT)
            obj->keys = realloc(obj->keys, (size_t)cap * sizeof(*obj->keys));
        if (!obj->items || (obj->type == KIMG_JV_OBJECT && !obj->keys))
            abort();
        obj->cap = cap;
    }
    if (obj->type == KIMG_JV_OBJECT) {
        obj->keys[obj->n] = strdup(key);
        if (!obj->keys[obj->n])
            abort();
    }
    obj->items[obj->n++] = val;
    return val;
}

struct kimg_jv *kimg_jv_get(const struct kimg_jv *obj, const char *key)
{
    if (!obj || obj->type != KIMG_JV_OBJECT)
        return NULL;
    for (int i = 0; i < obj->n; i++)
        if (!strcmp(obj->keys[i], key))
            return obj->items[i];
    return NULL;
}

void kimg_jv_add_str(struct kimg_jv *o, const char *k, const char *s) { kimg_jv_add(o, k, kimg_jv_string(s)); }
void kimg_jv_add_bool(struct kimg_jv *o, const char *k, bool b) { kimg_jv_add(o, k, kimg_jv_bool(b)); }
void kimg_jv_add_int(struct kimg_jv *o, const char *k, int64_t i) { kimg_jv_add(o, k, kimg_jv_int(i)); }
void kimg_jv_add_uint(struct kimg_jv *o, const char *k, uint64_t u) { kimg_jv_add(o, k, kimg_jv_uint(u)); }

/* Decode one UTF-8 sequence at S; returns its length and sets *cp, or
 * returns 1 with *cp = -1 for an invalid byte. */
static int utf8_decode(const unsigned char *s, int32_t *cp)
{
    int len;
    int32_t c;
    if (s[0] < 0x80) { *cp = s[0]; return 1; }
    if ((s[0] & 0xe0) == 0xc0) { len = 2; c = s[0] & 0x1f; }
    else if ((s[0] & 0xf0) == 0xe0) { len = 3; c = s[0] & 0x0f; }
    else if ((s[0] & 0xf8) == 0xf0) { len = 4; c = s[0] & 0x07; }
    else { *cp = -1; return 1; }
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) { *cp = -1; return 1; }
        c = (c << 6) | (s[i] & 0x3f);
    }
    /* overlong forms, surrogates, out of range */
    static const int32_t min[5] = { 0, 0, 0x80, 0x800, 0x10000 };
    if (c < min[len] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) {
        *cp = -1;
        return 1;
    }
    *cp = c;
    return len;
}

void kimg_json_print_string(FILE *out, const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    fputc('"', out);
    while (*s) {
        int32_t cp;
        int n = utf8_decode(s, &cp);
        s += n;
        switch (cp) {
        case '"':  fputs("\\\"", out); continue;
        case '\\': fputs("\\\\", out); continue;
        case '\b': fputs("\\b", out); continue;
        case '\f': fputs("\\f", out); continue;
        case '\n': fputs("\\n", out); continue;
        case '\r': fputs("\\r", out); continue;
        case '\t': fputs("\\t", out); continue;
        default: break;
        }
        if (cp < 0)
            cp = 0xfffd;
        if (cp >= 0x20 && cp < 0x7f) {
            fputc(cp, out);
        } else if (cp < 0x10000) {
            fprintf(out, "\\u%04X", (unsigned)cp);
        } else {
            cp -= 0x10000;
            fprintf(out, "\\u%04X\\u%04X", 0xd800u + ((unsigned)cp >> 10),
                    0xdc00u + ((unsigned)cp & 0x3ff));
        }
    }
    fputc('"', out);
}

/*
 * qemu prints objects in the iteration order of its QDict: 512 hash buckets
 * in order, the newest entry first within a bucket.  Reproducing that
 * order makes every object kimg prints match qemu-img's byte for byte.
 * The hash is the one QDict uses (tdb's): a length-seeded shifted byte sum
 * through a linear congruential step.
 */
static unsigned qdict_bucket(const char *key)
{
    uint32_t v = 0x238F13AFu * (uint32_t)strlen(key);
    for (unsigned i = 0; key[i]; i++)
        v += (uint32_t)(unsigned char)key[i] << (i * 5 % 24);
    return (1103515243u * v + 12345u) % 512u;
}

/* The members' indices in qemu's order (caller frees). */
static int *qdict_order(const struct kimg_jv *v)
{
    int *idx = malloc((size_t)(v->n ? v->n : 1) * sizeof(*idx));
    unsigned *bucket = malloc((size_t)(v->n ? v->n : 1) * sizeof(*bucket));
    if (!idx || !bucket)
        abort();
    for (int i = 0; i < v->n; i++) {
        idx[i] = i;
        bucket[i] = qdict_bucket(v->keys[i]);
    }
    /* insertion sort: bucket ascending, then newest first */
    for (int i = 1; i < v->n; i++) {
        int x = idx[i], j = i - 1;
        while (j >= 0 && (bucket[idx[j]] > bucket[x] ||
                          (bucket[idx[j]] == bucket[x] && idx[j] < x))) {
            idx[j + 1] = idx[j];
            j--;
        }
        idx[j + 1] = x;
    }
    free(bucket);
    return idx;
}

static void pad(FILE *out, int indent)
{
    fprintf(out, "%*s", indent * 4, "");
}

void kimg_jv_print(FILE *out, const struct kimg_jv *v, int indent)
{
    switch (v->type) {
    case KIMG_JV_NULL:   fputs("null", out); break;
    case KIMG_JV_BOOL:   fputs(v->b ? "true" : "false", out); break;
    case KIMG_JV_INT:    fprintf(out, "%" PRId64, v->i); break;
    case KIMG_JV_UINT:   fprintf(out, "%" PRIu64, v->u); break;
    case KIMG_JV_STRING: kimg_json_print_string(out, v->s); break;
    case KIMG_JV_ARRAY:
    case KIMG_JV_OBJECT: {
        bool obj = v->type == KIMG_JV_OBJECT;
        int *order = obj ? qdict_order(v) : NULL;
        fputc(obj ? '{' : '[', out);
        for (int k = 0; k < v->n; k++) {
            int i = obj ? order[k] : k;
            fputs(k ? ",\n" : "\n", out);
            pad(out, indent + 1);
            if (obj) {
                kimg_json_print_string(out, v->keys[i]);
                fputs(": ", out);
            }
            kimg_jv_print(out, v->items[i], indent + 1);
        }
        free(order);
        /* an empty container too spans two lines in qemu's layout */
        fputc('\n', out);
        pad(out, indent);
        fputc(obj ? '}' : ']', out);
        break;
    }
    }
}

/* qemu's dump of a QObject for humans: scalars after "key: ", containers
 * on their own lines one level deeper, list items as "[i]:". */
static void human_scalar(FILE *out, const struct kimg_jv *v)
{
    switch (v->type) {
    case KIMG_JV_BOOL:   fputs(v->b ? "true" : "false", out); break;
    case KIMG_JV_INT:    fprintf(out, "%" PRId64, v->i); break;
    case KIMG_JV_UINT:   fprintf(out, "%" PRIu64, v->u); break;
    case KIMG_JV_STRING: kimg_print_for_terminal(out, v->s); break;   /* from the image */
    default:             fputs("null", out); break;
    }
}

void kimg_jv_print_human(FILE *out, const struct kimg_jv *v, int indent)
{
    int *order = v->type == KIMG_JV_OBJECT ? qdict_order(v) : NULL;
    for (int k = 0; k < v->n; k++) {
        int i = order ? order[k] : k;
        const struct kimg_jv *item = v->items[i];
        bool container = item->type == KIMG_JV_OBJECT || item->type == KIMG_JV_ARRAY;
        pad(out, indent);
        if (v->type == KIMG_JV_OBJECT) {
            for (const char *c = v->keys[i]; *c; c++)
                fputc(*c == '-' ? ' ' : *c, out);
        } else {
            fprintf(out, "[%d]", i);
        }
        fputc(':', out);
        if (container) {
            fputc('\n', out);
            kimg_jv_print_human(out, item, indent + 1);
        } else {
            fputc(' ', out);
            human_scalar(out, item);
            fputc('\n', out);
        }
    }
    free(order);
}
