/*
 * calib.c — `make bench`'s calibration of the machine, so that a table
 * taken on one host can be read against another's: the kernel's copy speed
 * from the page cache into a page-aligned and into a misaligned (+16 bytes,
 * as malloc returns large blocks) user buffer, and memcpy's speed with a
 * cache-sized and a 128 MiB working set.  Each figure is the best of five
 * passes, in GB/s.
 *
 *   calib FILE     FILE: a scratch path (256 MiB is written there, removed)
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PIECE (2u << 20)
#define FILE_SIZE (256u << 20)

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* best GB/s of five passes preading the whole file into BUF */
static double pread_speed(int fd, char *buf)
{
    double best = 0;
    for (int pass = 0; pass < 5; pass++) {
        double t = now();
        for (size_t off = 0; off < FILE_SIZE; off += PIECE)
            if (pread(fd, buf, PIECE, (off_t)off) != (ssize_t)PIECE)
                return -1;
        t = now() - t;
        if (FILE_SIZE / t / 1e9 > best)
            best = FILE_SIZE / t / 1e9;
    }
    return best;
}

/* best GB/s of five passes copying SET bytes (in PIECE pieces) */
static double memcpy_speed(size_t set)
{
    char *a = aligned_alloc(4096, set), *b = aligned_alloc(4096, set);
    double best = 0;
    if (!a || !b)
        return -1;
    memset(a, 1, set);
    memset(b, 2, set);
    size_t piece = set < PIECE ? set : PIECE;
    size_t total = 256u << 20;
    for (int pass = 0; pass < 5; pass++) {
        double t = now();
        for (size_t done = 0; done < total; done += piece) {
            size_t at = done % set;
            memcpy(b + at, a + at, piece);
            __asm__ volatile("" ::: "memory");
        }
        t = now() - t;
        if (total / t / 1e9 > best)
            best = total / t / 1e9;
    }
    free(a);
    free(b);
    return best;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: calib SCRATCH-FILE\n");
        return 1;
    }
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    char *buf = aligned_alloc(4096, PIECE + 4096);
    if (fd < 0 || !buf) {
        perror("calib");
        return 1;
    }
    memset(buf, 0x5a, PIECE + 4096);
    for (size_t off = 0; off < FILE_SIZE; off += PIECE)
        if (pwrite(fd, buf, PIECE, (off_t)off) != (ssize_t)PIECE) {
            perror("calib: write");
            return 1;
        }
    double aligned = pread_speed(fd, buf);
    double misaligned = pread_speed(fd, buf + 16);
    close(fd);
    unlink(argv[1]);
    printf("page-cache read %.1f GB/s aligned, %.1f GB/s misaligned (+16); "
           "memcpy %.1f GB/s (1 MiB set), %.1f GB/s (128 MiB set)\n",
           aligned, misaligned, memcpy_speed(1u << 20), memcpy_speed(128u << 20));
    return 0;
}
