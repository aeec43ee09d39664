/*
 * test_file_folio.c — the POSIX backend's buffered writes never ask the
 * kernel for a 2 MiB page-cache folio (img/file.c, buffered_pwrite: on a
 * VM with free page reporting those come from memory the host took back).
 * This program defines pwrite itself, so the library's calls land here
 * (an executable's definition wins over libc's), records each piece and
 * forwards it to the kernel; it then checks that every write of every
 * shape arrived whole, that no piece reaches a 2 MiB boundary with 2 MiB
 * or more still to go, and that a piece is cut only where one must be.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "tap.h"
#include "kimg.h"
#include "kimg/file.h"

#define MiB (1ull << 20)
#define PMD (2 * MiB)

static int watched_fd = -1;
static struct { uint64_t off, len; } pieces[64];
static int npieces;

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
    if (fd == watched_fd && npieces < 64) {
        pieces[npieces].off = (uint64_t)off;
        pieces[npieces].len = len;
        npieces++;
    }
    return syscall(SYS_pwrite64, fd, buf, len, off);
}

/* the kernel would build a PMD folio for this piece */
static int reaches_pmd(uint64_t off, uint64_t len)
{
    uint64_t end = off + len;
    for (uint64_t p = (off + PMD - 1) & ~(PMD - 1); p < end; p += PMD)
        if (end - p >= PMD)
            return 1;
    return 0;
}

static void one(struct kimg_file *f, uint8_t *buf, uint8_t *back, uint64_t off, uint64_t len,
                int want_pieces)
{
    for (uint64_t i = 0; i < len; i++)
        buf[i] = (uint8_t)((off + i) * 2654435761u >> 24);
    npieces = 0;
    ok(kimg_file_pwrite(f, buf, len, off) == 0, "write %llu bytes at %llu",
       (unsigned long long)len, (unsigned long long)off);
    int bad = 0;
    uint64_t at = off;
    for (int i = 0; i < npieces; i++) {
        bad |= pieces[i].off != at || reaches_pmd(pieces[i].off, pieces[i].len);
        at += pieces[i].len;
    }
    ok(!bad && at == off + len, "  in %d contiguous pieces, none building a 2 MiB folio", npieces);
    is_u64((uint64_t)npieces, (uint64_t)want_pieces, "  pieces");
    memset(back, 0, len);
    ok(kimg_file_pread(f, back, len, off) == 0 && !memcmp(back, buf, len), "  reads back");
}

int main(void)
{
    char path[] = "/tmp/kimg-folio-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        skip_all("no temporary file");
    close(fd);
    struct kimg_file *f;
    if (kimg_file_open(&f, path, KIMG_FILE_RDWR) != 0) {
        unlink(path);
        skip_all("cannot open the temporary file");
    }
    watched_fd = f->fd;
    uint8_t *buf = kimg_alloc_aligned(9 * MiB), *back = kimg_alloc_aligned(9 * MiB);
    if (!buf || !back)
        return 1;

    one(f, buf, back, 0, PMD, 2);                    /* the engine's chunk: cut at 4 KiB */
    one(f, buf, back, 4 * MiB, 2 * PMD, 3);          /* two boundaries with 2 MiB to go */
    one(f, buf, back, 1 * MiB, PMD, 1);              /* crosses a boundary, 1 MiB to go */
    one(f, buf, back, 1 * MiB, 3 * MiB, 2);          /* 2 MiB to go from 2 MiB */
    one(f, buf, back, 3 * MiB + 4096, 6 * MiB, 3);   /* two cuts, then a short tail */
    one(f, buf, back, 0, PMD - 512, 1);              /* short of a PMD: untouched */
    one(f, buf, back, 0, 65536, 1);                  /* small */
    one(f, buf, back, 8 * MiB - 4096, 4096 + PMD - 1, 1); /* 2 MiB - 1 to go: no cut */
    one(f, buf, back, 8 * MiB - 4096, 4096 + PMD, 2);     /* exactly 2 MiB to go: cut */

    kimg_file_close(f);
    unlink(path);
    free(buf);
    free(back);
    return done_testing();
}
