/*
 * floor.c — the page-cache floor for `make bench`: how long the kernel
 * takes to accept a source's data into a new file's page cache, which
 * every buffered conversion whose output holds that data plainly must
 * wait for.  A buffered file takes one writer at a time (the kernel copies
 * into its page cache under the file's inode lock), so this part of a
 * conversion is serial however many threads a tool has; reading, format
 * work and zero detection can overlap with it, this cannot.
 *
 * It creates DST as large as SRC, then writes at each of SRC's data
 * extents (SEEK_DATA/SEEK_HOLE) from one thread, 2 MiB at a time, without
 * fsync (as `convert -t unsafe`), from one reused page-aligned 2 MiB
 * buffer holding SRC's first data (reading SRC is a tool's work, done on
 * other threads; the copy into the page cache does not depend on the
 * bytes), and prints the seconds that took.  It used to write from a
 * mapping of SRC, and in a VM that floor was twice what qemu-img took
 * (likely from nested TLB misses on the mapped pages).  Each
 * write is cut 4 KiB after a 2 MiB point with 2 MiB still to go, as kimg's
 * buffered writes are (img/file.c, buffered_pwrite): otherwise the kernel
 * builds 2 MiB folios, which on a VM with free page reporting cost a host
 * page fault per 4 KiB and made this floor itself up to five times slower
 * than the tools it measures.
 *
 *   floor SRC DST      prints seconds; exit 0, or 1 with a message
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PIECE (2 << 20)

static int fail(const char *what)
{
    fprintf(stderr, "floor: %s: %s\n", what, strerror(errno));
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: floor SRC DST\n");
        return 1;
    }
    int in = open(argv[1], O_RDONLY);
    struct stat st;
    if (in < 0 || fstat(in, &st) < 0)
        return fail(argv[1]);
    int out = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out < 0 || ftruncate(out, st.st_size) < 0)
        return fail(argv[2]);
    if (st.st_size == 0)
        return 0;
    char *src;
    if (posix_memalign((void **)&src, 4096, PIECE) != 0)
        return fail("posix_memalign");
    off_t first = lseek(in, 0, SEEK_DATA);
    ssize_t got = first < 0 ? 0 : pread(in, src, PIECE, first);
    if (got < 0)
        return fail("pread");
    memset(src + got, 0x5a, PIECE - (size_t)got);  /* never all zeros */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (off_t data = 0; (data = lseek(in, data, SEEK_DATA)) >= 0;) {
        off_t hole = lseek(in, data, SEEK_HOLE);
        if (hole < 0)
            return fail("SEEK_HOLE");
        while (data < hole) {
            size_t n = hole - data < PIECE ? (size_t)(hole - data) : PIECE;
            off_t p = (data + PIECE - 1) / PIECE * PIECE;   /* next 2 MiB point */
            if (p < hole && hole - p >= PIECE && p + 4096 - data < (off_t)n)
                n = (size_t)(p + 4096 - data);
            if (pwrite(out, src, n, data) != (ssize_t)n)
                return fail("pwrite");
            data += (off_t)n;
        }
    }
    if (errno != ENXIO)
        return fail("SEEK_DATA");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("%.3f\n", (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
    return 0;
}
