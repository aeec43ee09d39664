/*
 * fuzz_json.c — the JSON writer: builds a kimg_jv tree from the input (a
 * tiny bytecode: open object/array, close, string/key with arbitrary bytes,
 * numbers, bools, null), prints it pretty and "human", and checks that
 * kimg_json_print_string() always emits a valid, pure-ASCII JSON string
 * that decodes back to its input whenever the input was valid UTF-8.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz.h"
#include "kimg/json.h"

#define MAX_DEPTH 24
#define MAX_NODES 512
#define MAX_STR   300

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static size_t put_utf8(uint8_t *o, uint32_t cp)
{
    if (cp < 0x80) { o[0] = (uint8_t)cp; return 1; }
    if (cp < 0x800) {
        o[0] = (uint8_t)(0xc0 | (cp >> 6));
        o[1] = (uint8_t)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xe0 | (cp >> 12));
        o[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (uint8_t)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (uint8_t)(0xf0 | (cp >> 18));
    o[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (uint8_t)(0x80 | (cp & 0x3f));
    return 4;
}

/* Decode the JSON string literal J (exactly JLEN bytes, quotes included)
 * into OUT as UTF-8; aborts if it is not a valid pure-ASCII literal.
 * Sets *saw_fffd if U+FFFD appears. */
static size_t decode_literal(const char *j, size_t jlen, uint8_t *out, int *saw_fffd)
{
    size_t o = 0;
    if (jlen < 2 || j[0] != '"' || j[jlen - 1] != '"')
        abort();
    for (size_t i = 1; i < jlen - 1; i++) {
        unsigned char c = (unsigned char)j[i];
        if (c < 0x20 || c > 0x7e || c == '"')
            abort();               /* raw control, non-ASCII or bare quote */
        if (c != '\\') {
            out[o++] = c;
            continue;
        }
        if (++i >= jlen - 1)
            abort();
        switch (j[i]) {
        case '"': out[o++] = '"'; break;
        case '\\': out[o++] = '\\'; break;
        case '/': out[o++] = '/'; break;
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'n': out[o++] = '\n'; break;
        case 'r': out[o++] = '\r'; break;
        case 't': out[o++] = '\t'; break;
        case 'u': {
            uint32_t cp = 0;
            if (i + 4 >= jlen - 1)
                abort();
            for (int k = 1; k <= 4; k++) {
                int h = hexval(j[i + k]);
                if (h < 0)
                    abort();
                cp = cp << 4 | (uint32_t)h;
            }
            i += 4;
            if (cp >= 0xdc00 && cp <= 0xdfff)
                abort();           /* lone low surrogate */
            if (cp >= 0xd800 && cp <= 0xdbff) {
                uint32_t lo = 0;
                if (i + 6 >= jlen - 1 || j[i + 1] != '\\' || j[i + 2] != 'u')
                    abort();       /* lone high surrogate */
                for (int k = 3; k <= 6; k++) {
                    int h = hexval(j[i + k]);
                    if (h < 0)
                        abort();
                    lo = lo << 4 | (uint32_t)h;
                }
                if (lo < 0xdc00 || lo > 0xdfff)
                    abort();
                i += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            if (cp == 0)
                abort();           /* the input had no NUL */
            if (cp == 0xfffd)
                *saw_fffd = 1;
            o += put_utf8(out + o, cp);
            break;
        }
        default:
            abort();
        }
    }
    return o;
}

static void check_string(const char *s)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return;
    kimg_json_print_string(f, s);
    fclose(f);
    /* each input byte yields at most 6 output bytes (\uFFFD) */
    size_t slen = strlen(s);
    if (len > 6 * slen + 2)
        abort();
    uint8_t *dec = malloc(4 * len + 1);
    if (!dec)
        abort();
    int saw_fffd = 0;
    size_t n = decode_literal(buf, len, dec, &saw_fffd);
    if (!saw_fffd && (n != slen || memcmp(dec, s, n)))
        abort();                   /* valid UTF-8 must round-trip exactly */
    free(dec);
    free(buf);
}

struct builder {
    struct fuzz_in in;
    int nodes;
    char str[MAX_STR + 1];
};

static const char *take_str(struct builder *b)
{
    size_t max = fuzz_u8(&b->in);
    if (max > MAX_STR)
        max = MAX_STR;
    fuzz_take_str(&b->in, b->str, max);
    check_string(b->str);
    return b->str;
}

/* Parse one value; containers recurse until a close op or the input ends. */
static struct kimg_jv *build(struct builder *b, int depth)
{
    uint8_t op = fuzz_u8(&b->in);
    b->nodes++;
    switch (op % 8) {
    case 0:
    case 1: {
        bool obj = op % 8 == 0;
        struct kimg_jv *c = obj ? kimg_jv_object() : kimg_jv_array();
        while (b->in.n && b->nodes < MAX_NODES && depth < MAX_DEPTH) {
            if (b->in.p[0] % 8 == 7) {      /* close */
                fuzz_u8(&b->in);
                break;
            }
            if (obj) {
                char key[MAX_STR + 1];
                strcpy(key, take_str(b));
                struct kimg_jv *v = build(b, depth + 1);
                kimg_jv_add(c, key, v);
                if (kimg_jv_get(c, key) == NULL)
                    abort();
            } else {
                kimg_jv_add(c, NULL, build(b, depth + 1));
            }
        }
        return c;
    }
    case 2:
        return kimg_jv_string(take_str(b));
    case 3:
        return kimg_jv_int((int64_t)fuzz_u64(&b->in, 8));
    case 4:
        return kimg_jv_uint(fuzz_u64(&b->in, 8));
    case 5:
        return kimg_jv_bool(fuzz_u8(&b->in) & 1);
    case 6: {
        struct kimg_jv *v = calloc(1, sizeof(*v));  /* KIMG_JV_NULL */
        if (!v)
            abort();
        return v;
    }
    default:
        return kimg_jv_string(NULL);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536)
        return 0;

    /* the whole input as one string (up to its first NUL) */
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    check_string(s);
    free(s);

    struct builder b = { .in = { data, size } };
    struct kimg_jv *root = build(&b, 0);

    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (f) {
        kimg_jv_print(f, root, 0);
        fputc('\n', f);
        if (root->type == KIMG_JV_OBJECT || root->type == KIMG_JV_ARRAY)
            kimg_jv_print_human(f, root, 0);
        fclose(f);
        free(buf);
    }
    kimg_jv_free(root);
    return 0;
}
