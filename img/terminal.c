/*
 * terminal.c — the one rule for printing a string read from an image or
 * an XML file (names, paths, snapshot names and IDs, bitmap names, domain
 * names) where a terminal may show it: every message and human output of
 * the command goes through kimg_print_for_terminal (contract in kimg.h).
 */
#include <stdio.h>
#include "kimg.h"

/* The length of the valid UTF-8 sequence at P (NUL-terminated), or 0:
 * shortest form only, no surrogates, nothing above U+10FFFF. */
static size_t utf8_len(const unsigned char *p)
{
    unsigned c = p[0];
    size_t n;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4;
    else
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] > 0x9f) ||
        (c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] > 0x8f))
        return 0;
    return n;
}

static size_t put_hex(FILE *out, unsigned c)
{
    fprintf(out, "\\x%02x", c);
    return 4;
}

size_t kimg_print_for_terminal(FILE *out, const char *s)
{
    size_t w = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t n = utf8_len(p);
        if (*p < 0x20 || *p == 0x7f || (n == 0 && *p < 0xa0)) {
            w += put_hex(out, *p++);            /* C0, DEL, a stray C1 byte */
        } else if (n == 2 && p[0] == 0xc2 && p[1] < 0xa0) {
            w += put_hex(out, p[0]);            /* C1 as UTF-8: U+0080-U+009F */
            w += put_hex(out, p[1]);
            p += 2;
        } else {
            if (n == 0)
                n = 1;                          /* other invalid bytes: as is */
            fwrite(p, 1, n, out);
            w += n;
            p += n;
        }
    }
    return w;
}
