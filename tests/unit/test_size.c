/*
 * test_size.c — kimg_parse_size against qemu-img's answers (recorded from
 * `qemu-img create -f raw x SIZE` with qemu-img 7.2), and the human sizes
 * of qemu's size_to_str.
 */
#include <errno.h>
#include "tests/unit/tap.h"
#include "kimg/opts.h"

struct size_case { const char *text; int ret; uint64_t value; };

static const struct size_case cases[] = {
    { "1.5G", 0, 1610612736ull }, { "512b", 0, 512 }, { "1k", 0, 1024 },
    { "1K", 0, 1024 }, { "0x1000", 0, 4096 }, { " 1k", 0, 1024 },
    { "0.5k", 0, 512 }, { "1.0001k", 0, 1024 }, { "1.3333333M", 0, 1398101 },
    { "1T", 0, 1099511627776ull }, { "0", 0, 0 }, { "1.g", 0, 1073741824ull },
    { "5.", 0, 5 }, { "0X10", 0, 16 }, { "00010k", 0, 10240 },
    { "1.5e", 0, 1729382256910270464ull }, { "+1k", 0, 1024 },
    { "9223372036854775807", 0, 9223372036854775807ull },
    { "8191P", 0, 9222246136947933184ull }, { "7.99999E", 0, 9223360507639729792ull },
    { "1.9999999999999999999k", 0, 1024 }, { "0x10k", 0, 16384 },
    { "1KiB", -EINVAL, 0 }, { "1.5", -EINVAL, 0 }, { "1.5b", -EINVAL, 0 },
    { "-1", -EINVAL, 0 }, { "1e3", -EINVAL, 0 }, { "1k ", -EINVAL, 0 },
    { "1kb", -EINVAL, 0 }, { ".5k", -EINVAL, 0 }, { "0x1.8k", -EINVAL, 0 },
    { "0x10.5k", -EINVAL, 0 }, { "1.25", -EINVAL, 0 }, { "2.5B", -EINVAL, 0 },
    { "1.5kB", -EINVAL, 0 }, { "1,5k", -EINVAL, 0 }, { "", -EINVAL, 0 },
    { "k", -EINVAL, 0 }, { "16E", -ERANGE, 0 }, { "18446744073709551616", -ERANGE, 0 },
};

struct human_case { uint64_t size; const char *text; };
static const struct human_case human[] = {
    { 0, "0 B" }, { 512, "512 B" }, { 4096, "4 KiB" }, { 339968, "332 KiB" },
    { 10485760, "10 MiB" }, { 1572864, "1.5 MiB" }, { 1023, "0.999 KiB" },
    { 1000 * 1024, "0.977 MiB" }, { 32212254720ull, "30 GiB" },
};

int main(void)
{
    size_t n = sizeof(cases) / sizeof(cases[0]);
    size_t nh = sizeof(human) / sizeof(human[0]);
    plan((int)(n + nh));
    for (size_t i = 0; i < n; i++) {
        uint64_t v = 0;
        int r = kimg_parse_size(cases[i].text, &v);
        ok(r == cases[i].ret && (r < 0 || v == cases[i].value),
           "parse_size(\"%s\") = %d/%llu (want %d/%llu)", cases[i].text, r,
           (unsigned long long)v, cases[i].ret, (unsigned long long)cases[i].value);
    }
    for (size_t i = 0; i < nh; i++) {
        char buf[32];
        kimg_format_size(human[i].size, buf, sizeof(buf));
        is_str(buf, human[i].text, "format_size");
    }
    return done_testing();
}
