/*
 * checksum.h — the digest engine behind `kimg checksum`: a digest of an
 * image's guest-visible content that does not depend on its format, its
 * compression, its backing chain or the thread count.  Default: the
 * block-based construction of blkhash (blksum); or a plain digest.
 */
#ifndef KIMG_CHECKSUM_H
#define KIMG_CHECKSUM_H

#include <stdbool.h>
#include <stdint.h>
#include "kimg.h"

/*
 * The blkhash construction, with H the chosen OpenSSL digest and the
 * content cut into blocks of block_size bytes (the last one may be short):
 *
 *     H( H(block 0) || H(block 1) || ... || H(block n-1) || le64(length) )
 *
 * An all-zero full block, or one that block status says reads as zeros,
 * uses H(block_size zero bytes), computed once, and is never read (holes)
 * or never hashed (data that turns out to be zeros).  Empty content gives
 * H(le64(0)).  With `raw`, the result is H(content) instead: the digest of
 * `qemu-img convert -O raw` output, computed without a temporary file.
 */

#define KIMG_CHECKSUM_DEFAULT_ALGORITHM  "sha256"
#define KIMG_CHECKSUM_DEFAULT_BLOCK_SIZE (64u * 1024)
#define KIMG_CHECKSUM_MIN_BLOCK_SIZE     512u
#define KIMG_CHECKSUM_MAX_BLOCK_SIZE     (64u * 1024 * 1024)
#define KIMG_CHECKSUM_MAX_THREADS        256
#define KIMG_CHECKSUM_MAX_MD_SIZE        64     /* EVP_MAX_MD_SIZE */

struct kimg_checksum {
    const char *algorithm;      /* an OpenSSL digest name; NULL: sha256 */
    uint64_t block_size;        /* 0: 64 KiB; a multiple of 512 up to 64 MiB */
    int threads;                /* hash threads; 0: online CPUs */
    bool raw;                   /* plain digest of the content */
    /* progress: bytes of content done and total, at most ~1% steps */
    void (*progress)(void *opaque, uint64_t done, uint64_t total);
    void *opaque;
};

/* Check that ALGORITHM (NULL: sha256) names a digest OpenSSL can compute
 * here, with a fixed output size; 0 or -EINVAL with kimg_error() set
 * (-ENOTSUP: libcrypto.so.3, loaded on first use, could not be loaded). */
int kimg_checksum_check_algorithm(const char *algorithm);

/* Digest the content of IMG: MD receives *MD_LEN bytes (at most
 * KIMG_CHECKSUM_MAX_MD_SIZE).  Returns 0 or -errno with kimg_error() set. */
int kimg_checksum_run(struct kimg *img, const struct kimg_checksum *c,
                      unsigned char *md, unsigned *md_len);

#endif
