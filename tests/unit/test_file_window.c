/*
 * test_file_window.c — window files (img/file_window.c) over memory and
 * POSIX files: reads inside, across and past the window's end, a size that
 * follows a shrinking base, writes refused, block status and mappings
 * shifted and confined, kimg_file_underlying through one and two windows,
 * same-file identity, copy_range and has_copy_range through a window, and
 * ownership of the base on close and on a failed open.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tap.h"
#include "kimg.h"
#include "kimg/driver.h"

#define BASE 65536u
#define OFF  4608u      /* a tar member's kind of offset: 512-aligned */
#define LEN  20000u

static uint8_t data[BASE];

static void mem_cases(void)
{
    struct kimg_file *base, *w, *w2, *w3;
    uint8_t buf[LEN + 512] __attribute__((aligned(64)));
    uint64_t size, off;

    ok(kimg_file_open_mem(&base, "base", data, BASE, false, 0) == 0, "a memory base");
    ok(kimg_file_open_window(&w, base, OFF, LEN, "member", false) == 0, "a window on it");
    is_str(w->path, "member", "the window's path is its name");
    ok(kimg_file_size(w, &size) == 0 && size == LEN, "its size is its length");
    ok(kimg_file_pread(w, buf, LEN, 0) == 0 && !memcmp(buf, data + OFF, LEN),
       "a whole read is the base's bytes at OFF");
    ok(kimg_file_pread(w, buf, 100, LEN - 100) == 0 && !memcmp(buf, data + OFF + LEN - 100, 100),
       "a read ending at the window's end");
    memset(buf, 0xee, sizeof(buf));
    ok(kimg_file_pread(w, buf, 200, LEN - 100) == -EIO, "a read across the end fails");
    kimg_clear_error();
    ok(!memcmp(buf, data + OFF + LEN - 100, 100) && buf[100] == 0 && buf[199] == 0,
       "... its part inside is read, the rest zeros (as past a file's end)");
    ok(kimg_file_pread_zero_eof(w, buf, 200, LEN - 100) == 0 && buf[150] == 0,
       "pread_zero_eof past the end: zeros, never the base's next bytes");
    ok(kimg_file_pwrite(w, buf, 10, 0) < 0, "writes refused");
    kimg_clear_error();
    ok(kimg_file_truncate(w, 10) < 0 && kimg_file_zero(w, 0, 512, false) < 0,
       "truncate and zero refused");
    kimg_clear_error();
    ok(kimg_file_allocated(w) == LEN, "allocated: the window's length");

    struct kimg_file_map m = { 0 };
    ok(kimg_file_map(w, 512, 1024, &m) == 0 && m.data && !memcmp(m.data, data + OFF + 512, 1024),
       "a mapping shows the base at the shifted offset");
    kimg_file_unmap(w, &m);
    ok(kimg_file_map(w, LEN - 512, 1024, &m) == -ERANGE, "a mapping past the end: -ERANGE");

    off = 100;
    ok(kimg_file_underlying(w, &off, 50) == base && off == OFF + 100, "underlying: the base, shifted");
    off = LEN - 10;
    ok(kimg_file_underlying(w, &off, 50) == NULL, "underlying of a range leaving the window: NULL");
    ok(kimg_file_open_window(&w2, w, 1000, 2000, NULL, false) == 0, "a window on a window");
    off = 10;
    ok(kimg_file_underlying(w2, &off, 100) == base && off == OFF + 1000 + 10,
       "underlying through two windows");
    ok(kimg_file_pread(w2, buf, 2000, 0) == 0 && !memcmp(buf, data + OFF + 1000, 2000),
       "reads through two windows");
    off = 0;
    ok(kimg_file_underlying(base, &off, 10) == base && off == 0, "underlying of a plain file: itself");

    ok(kimg_file_open_window(&w3, base, OFF, LEN, NULL, false) == 0, "a second window, same range");
    ok(kimg_file_same(w, w3), "two windows on one range of one base: the same file");
    ok(!kimg_file_same(w, w2) && !kimg_file_same(w, base), "... not a different range, not the base");
    kimg_file_close(w3);
    kimg_file_close(w2);
    kimg_file_close(w);

    bool is_data;
    uint64_t pnum;
    ok(kimg_file_open_window(&w, base, OFF, LEN, NULL, true) == 0, "an owning window");
    ok(kimg_file_data_status(w, LEN - 100, 1000, &is_data, &pnum) == 0 && pnum <= 100,
       "block status clipped to the window");
    kimg_file_close(w);     /* closes base too (ASan would see a leak) */

    ok(kimg_file_open_mem(&base, "base", data, BASE, false, 0) == 0, "a new base");
    ok(kimg_file_open_window(&w, base, BASE - 100, 200, NULL, true) == -EINVAL,
       "a window past the base's end refused (and the owned base closed)");
    kimg_clear_error();
}

static void posix_cases(void)
{
    char path[] = "/tmp/kimg-window-XXXXXX", dst[] = "/tmp/kimg-window-dst-XXXXXX";
    struct kimg_file *base, *w, *out;
    uint8_t buf[LEN] __attribute__((aligned(64)));
    uint64_t size;
    int fd = mkstemp(path), dfd = mkstemp(dst);
    if (fd < 0 || dfd < 0 || write(fd, data, BASE) != BASE) {
        ok(0, "temporary files");
        return;
    }
    close(fd);
    close(dfd);
    ok(kimg_file_open(&base, path, 0) == 0 && kimg_file_open_window(&w, base, OFF, LEN, NULL,
                                                                    true) == 0,
       "a window on a POSIX file");
    ok(w->fd == base->fd, "its descriptor is the base's (locks, identity)");
    ok(kimg_file_has_copy_range(w), "copy_range offered through the window");
    ok(kimg_file_open(&out, dst, KIMG_FILE_RDWR) == 0, "a target");
    int r = kimg_file_copy_range(out, 0, w, 100, 5000);
    if (r == -EOPNOTSUPP || r == -EXDEV || r == -ENOSYS) {
        ok(1, "copy_file_range not available here (%d)", r);
    } else {
        ok(r == 0 && kimg_file_pread(out, buf, 5000, 0) == 0 && !memcmp(buf, data + OFF + 100, 5000),
           "copy_range from the window copies the member's bytes");
    }
    ok(kimg_file_copy_range(out, 0, w, LEN - 100, 5000) == -EOPNOTSUPP,
       "copy_range leaving the window: refused, nothing past it copied");
    ok(!kimg_file_is_device(w), "a window on a file is no device");
    /* the base shrinks under the window: its size follows */
    if (truncate(path, OFF + 1000) == 0)
        ok(kimg_file_size(w, &size) == 0 && size == 1000, "a base cut short: the window's size follows");
    if (truncate(path, OFF - 10) == 0)
        ok(kimg_file_size(w, &size) == 0 && size == 0, "a base cut before the window: size 0");
    kimg_file_close(out);
    kimg_file_close(w);
    unlink(path);
    unlink(dst);
}

int main(void)
{
    for (unsigned i = 0; i < BASE; i++)
        data[i] = (uint8_t)(i * 7 + (i >> 9));
    mem_cases();
    posix_cases();
    return done_testing();
}
