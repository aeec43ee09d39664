/*
 * convert.h — what cmd/convert.c shares with cmd/convert_pipe.c (convert
 * from a pipe): the parsed options and two helpers.
 */
#ifndef KIMG_CMD_CONVERT_H
#define KIMG_CMD_CONVERT_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include "cmd.h"

struct convert_args {
    const char *src_fmt, *out_fmt, *backing, *backing_fmt;
    const char *cache, *src_cache;
    struct kimg_opts *opts;
    bool compress, progress, quiet, no_create, target_is_zero, share, untrusted;
    bool copy_offload;
    bool salvage;                       /* --salvage */
    bool bitmaps, skip_broken;          /* --bitmaps, --skip-broken-bitmaps */
    bool image_opts, tgt_image_opts;    /* --image-opts, --target-image-opts */
    bool out_fmt_given;                 /* -O (refused with --target-image-opts) */
    bool progress_json;             /* --progress=json */
    bool show_steps;                /* -p: qemu-img's lines are being printed */
    char *level;                    /* -o compression_level (malloc'd) */
    uint64_t sparse;
    uint64_t rate;                  /* -r: bytes per second, 0: no limit */
    int in_flight;
};

/* --progress=json: one object per line on stdout, at the start, about
 * every 1%, and at the end: bytes done, total, seconds since the start. */
struct json_progress {
    struct timespec start;
};
void convert_print_json_progress(void *opaque, uint64_t done, uint64_t total);

/* Open the target convert just created (with the -o options that name
 * key secrets as open options). */
int convert_open_created(struct kimg **out, const char *path, const char *fmt, unsigned flags,
                         const struct kimg_opts *create_opts);

/* convert_pipe.c: whether NAME is a pipe, a FIFO or a socket (a source
 * that can only be read once, in order). */
bool convert_is_stream(const char *name);
/* Convert from the pipe among SRCS (which must be the only source) into
 * DST: the command's exit code.  SNAPSHOT (-l) and DISK (--disk) are
 * refused.  Or -1 for a target format that cannot grow: the stream is
 * then held in an unnamed temporary raw file whose descriptor is in
 * *SPOOLED (open while it is read as /proc/self/fd/N; closing it frees
 * it), for the caller to convert as a file. */
int convert_from_pipe(struct convert_args *a, char **srcs, int nb_src, const char *dst,
                      const char *snapshot, unsigned disk, unsigned dflags, int *spooled);

#endif
