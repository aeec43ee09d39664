/*
 * test_zero_scan.c — kimg_buffer_is_zero (img/convert.c), the engines'
 * zero scan, against a byte-by-byte reference: every start offset inside
 * a vector, lengths around each step's size (the head, the 128-byte
 * steps and the tail), and a single set byte at every place in the range
 * and just outside it (which must not count).  The scan decides which
 * ranges become holes, so a wrong answer loses data.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "kimg.h"
#include "internal.h"

static bool reference(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i])
            return false;
    return true;
}

int main(void)
{
    enum { SPAN = 1200, PAD = 64 };
    uint8_t *mem = kimg_alloc_aligned(SPAN + 2 * PAD + 64);
    if (!mem) {
        ok(0, "out of memory");
        return done_testing();
    }
    memset(mem, 0, SPAN + 2 * PAD + 64);
    unsigned long cases = 0, wrong = 0, zero_wrong = 0;
    for (size_t start = PAD; start < PAD + 33; start++) {
        for (size_t len = 0; len <= 700; len += (len < 300 ? 1 : 7)) {
            uint8_t *p = mem + start;
            if (!kimg_buffer_is_zero(p, len))
                zero_wrong++;
            /* one set byte: before, at every place inside, and after */
            for (long at = -1; at <= (long)len; at++) {
                p[at] = 0x80;
                bool want = reference(p, len);
                if (kimg_buffer_is_zero(p, len) != want)
                    wrong++;
                p[at] = 0;
                cases++;
            }
        }
    }
    ok(zero_wrong == 0, "all-zero ranges at 33 start offsets, lengths 0-700: zero");
    ok(wrong == 0, "one set byte before, inside or after the range: %lu cases, %lu wrong",
       cases, wrong);
    /* a long range: the set byte in the last step and in the tail */
    uint8_t *big = kimg_alloc_aligned(2 << 20);
    memset(big, 0, 2 << 20);
    ok(big && kimg_buffer_is_zero(big, 2 << 20), "2 MiB of zeros");
    big[(2 << 20) - 129] = 1;
    ok(!kimg_buffer_is_zero(big, 2 << 20), "a byte in the last 128-byte step");
    big[(2 << 20) - 129] = 0;
    big[(2 << 20) - 1] = 1;
    ok(!kimg_buffer_is_zero(big, 2 << 20), "the last byte");
    ok(!kimg_buffer_is_zero(big + 3, (2 << 20) - 3), "the last byte, misaligned start");
    ok(kimg_buffer_is_zero(big + 3, (2 << 20) - 4), "not counted when outside the range");
    free(big);
    free(mem);
    return done_testing();
}
