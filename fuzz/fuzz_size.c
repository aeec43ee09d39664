/*
 * fuzz_size.c — kimg_parse_size() and kimg_format_size() on arbitrary
 * strings: no crash, no UB, and a parsed size formats and re-parses into
 * a value close to itself (format_size rounds to 3 significant digits).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz.h"
#include "kimg/opts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';

    uint64_t v = 0;
    int ret = kimg_parse_size(s, &v);
    if (ret != 0 && ret != -22 /* EINVAL */ && ret != -34 /* ERANGE */)
        abort();

    /* format the parsed value, and the raw input bytes as a number, into a
     * buffer of every small length (truncation must be clean) */
    char buf[64];
    uint64_t raw = 0;
    memcpy(&raw, data, size < sizeof(raw) ? size : sizeof(raw));
    for (size_t len = 1; len <= sizeof(buf); len *= 2) {
        memset(buf, 'x', sizeof(buf));
        kimg_format_size(ret == 0 ? v : raw, buf, len);
        if (!memchr(buf, '\0', len))
            abort();
    }

    /* round trip: "%0.3g XiB" parses back with a unit letter */
    kimg_format_size(raw, buf, sizeof(buf));
    char *sp = strchr(buf, ' ');
    if (sp) {
        /* "1.5 KiB" -> "1.5K"; "512 B" -> "512" */
        char rt[64];
        size_t k = (size_t)(sp - buf);
        memcpy(rt, buf, k);
        if (sp[1] != 'B')
            rt[k++] = sp[1];
        rt[k] = '\0';
        uint64_t back;
        if (!strchr(rt, 'e') && kimg_parse_size(rt, &back) == 0) {
            /* within 0.5% + 1 of the original (3 significant digits) */
            uint64_t diff = back > raw ? back - raw : raw - back;
            if (diff > raw / 100 + 1 && raw < (1ULL << 63))
                abort();
        }
    }
    free(s);
    return 0;
}
