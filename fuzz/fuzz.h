/*
 * fuzz.h — the libFuzzer entry points, declared once so the targets build
 * warning-free with -Wmissing-prototypes, plus small helpers shared by the
 * targets (header-only: each target is one .c file linked on its own).
 */
#ifndef KIMG_FUZZ_H
#define KIMG_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A cursor over the input bytes: targets that need several values take
 * them from the front; reads past the end give zeros. */
struct fuzz_in {
    const uint8_t *p;
    size_t n;
};

static inline uint8_t fuzz_u8(struct fuzz_in *in)
{
    if (!in->n)
        return 0;
    in->n--;
    return *in->p++;
}

static inline uint64_t fuzz_u64(struct fuzz_in *in, unsigned bytes)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < bytes; i++)
        v = (v << 8) | fuzz_u8(in);
    return v;
}

/* Take up to MAX bytes (stopping after a NUL or at the end) as a
 * NUL-terminated string copied into BUF (BUFLEN > MAX). */
static inline size_t fuzz_take_str(struct fuzz_in *in, char *buf, size_t max)
{
    size_t k = 0;
    while (k < max && in->n) {
        uint8_t c = fuzz_u8(in);
        if (!c)
            break;
        buf[k++] = (char)c;
    }
    buf[k] = '\0';
    return k;
}

#endif
