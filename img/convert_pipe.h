/*
 * convert_pipe.h — convert from a pipe's private parts: -c compresses a
 * window's clusters on the engines' worker pool (convert_pipe_compress.c)
 * and stores them in order.
 */
#ifndef KIMG_CONVERT_PIPE_H
#define KIMG_CONVERT_PIPE_H

#include <stddef.h>
#include <stdint.h>
#include "kimg/convert.h"
#include "ratelimit.h"

struct pipe_compress;

/* Workers for windows of up to WLEN bytes cut in clusters of UNIT bytes
 * into c->dst; NULL with kimg_error() set. */
struct pipe_compress *pipe_compress_new(struct kimg_convert *c, size_t wlen, size_t unit);
/* LEN bytes at BUF (a multiple of 512; the last cluster may be short)
 * to target offset OFF: zero clusters as zeros (-S 0: compressed too),
 * the others compressed on the workers, all stored in order. */
int pipe_compress_window(struct pipe_compress *pc, struct kimg_ratelimit *rl,
                         const uint8_t *buf, uint64_t off, size_t len);
void pipe_compress_free(struct pipe_compress *pc);

#endif
