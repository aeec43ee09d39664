/*
 * convert.c — `kimg convert`: qemu-img convert's options and messages over
 * the copy engine (img/convert.c).  A new target is written as
 * kimg/output.h says: whole or not at all, beside the real target when the
 * name is a symlink; devices and FIFOs in place.  -n writes in place.
 * Sources are opened as the user names them: an OVA archive is read as
 * its disk (--disk N, of every source; the first by default).
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "cmd.h"

#define MAX_SPARSE (16u << 20)

/* --progress=json: one object per line on stdout, at the start, about
 * every 1%, and at the end: bytes done, total, seconds since the start. */
struct json_progress {
    struct timespec start;
};

static void print_json_progress(void *opaque, uint64_t done, uint64_t total)
{
    struct json_progress *p = opaque;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double t = (double)(now.tv_sec - p->start.tv_sec) +
               (double)(now.tv_nsec - p->start.tv_nsec) / 1e9;
    printf("{\"done\": %llu, \"total\": %llu, \"elapsed\": %.3f}\n",
           (unsigned long long)done, (unsigned long long)total, t);
    fflush(stdout);
}

/* A new target that names an existing FIFO or character device: qemu-img
 * creates it as a file (open read-write, which does not wait for a FIFO's
 * reader) and fails there, a FIFO on its resize, a device smaller than the
 * source as "Cannot grow device files"; kimg fails alike, writing nothing. */
static int convert_special_target(const char *dst, const char *path, const char *fmt,
                                  uint64_t total)
{
    struct stat st;
    if (stat(path, &st) < 0 || !(S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode)))
        return 0;
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        cmd_error("%s: error while converting %s: Could not create '%s': %s",
                  dst, fmt, dst, strerror(errno));
        return -1;
    }
    int ret = 0;
    if (S_ISFIFO(st.st_mode)) {
        if (ftruncate(fd, 0) < 0) {
            cmd_error("%s: error while converting %s: Could not resize file: %s",
                      dst, fmt, strerror(errno));
            ret = -1;
        }
    } else {
        off_t end = lseek(fd, 0, SEEK_END);
        if (end >= 0 && (uint64_t)end < total) {
            cmd_error("%s: error while converting %s: Cannot grow device files", dst, fmt);
            ret = -1;
        }
    }
    close(fd);
    return ret;
}

/* Open the target convert just created, as qemu-img does: with the -o
 * options that name key secrets ("encrypt.key-secret", "key-secret":
 * its img_add_key_secrets) as open options, so an encrypted target opens
 * with its key; without such options as before. */
static int open_created(struct kimg **out, const char *path, const char *fmt, unsigned flags,
                        const struct kimg_opts *create_opts)
{
    struct kimg_opts *oo = NULL;
    int ret = 0;
    for (int i = 0; i < kimg_opts_count(create_opts) && ret == 0; i++) {
        const char *k = kimg_opts_key(create_opts, i);
        size_t n = strlen(k);
        if (n >= 10 && !strcmp(k + n - 10, "key-secret"))
            ret = kimg_opts_set(&oo, k, kimg_opts_value(create_opts, i));
    }
    if (ret == 0 && !oo)
        return kimg_open(out, path, fmt, flags);
    if (ret == 0 && (ret = kimg_opts_set(&oo, "driver", fmt)) == 0 &&
        (ret = kimg_opts_set(&oo, "file.filename", path)) == 0)
        ret = kimg_open_opts(out, oo, flags);
    kimg_opts_free(oo);
    return ret;
}

struct convert_args {
    const char *src_fmt, *out_fmt, *backing, *backing_fmt;
    const char *cache, *src_cache;
    struct kimg_opts *opts;
    bool compress, progress, quiet, no_create, target_is_zero, share, untrusted;
    bool copy_offload;
    bool image_opts, tgt_image_opts;    /* --image-opts, --target-image-opts */
    bool out_fmt_given;                 /* -O (refused with --target-image-opts) */
    bool progress_json;             /* --progress=json */
    bool show_steps;                /* -p: qemu-img's lines are being printed */
    char *level;                    /* -o compression_level (malloc'd) */
    uint64_t sparse;
    int in_flight;
};

int cmd_convert(int argc, char **argv)
{
    enum { OPT_TARGET_IS_ZERO = 300, OPT_PROGRESS, OPT_TARGET_IMAGE_OPTS };
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "force-share", no_argument, NULL, 'U' },
        { "target-is-zero", no_argument, NULL, OPT_TARGET_IS_ZERO },
        { "untrusted", no_argument, NULL, OPT_UNTRUSTED },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "target-image-opts", no_argument, NULL, OPT_TARGET_IMAGE_OPTS },
        { "progress", required_argument, NULL, OPT_PROGRESS },
        { "disk", required_argument, NULL, OPT_DISK },
        { NULL, 0, NULL, 0 },
    };
    struct convert_args a = { .out_fmt = "raw", .sparse = 4096, .cache = "unsafe",
                              .src_cache = "writeback" };
    int c, ret = 1;
    uint64_t m;
    const char *snapshot = NULL;   /* -l */
    unsigned disk = 0;             /* --disk: of every source (OVA archives) */

    while ((c = getopt_long(argc, argv, ":hf:O:B:F:Cco:l:S:pt:T:qnm:WU", longopts, NULL)) != -1) {
        switch (c) {
        case 'f': a.src_fmt = optarg; break;
        case 'O': a.out_fmt = optarg; a.out_fmt_given = true; break;
        case 'B': a.backing = optarg; break;
        case 'F': a.backing_fmt = optarg; break;
        case 'c': a.compress = true; break;
        case 'p': a.progress = true; break;
        case 'q': a.quiet = true; break;
        case 'n': a.no_create = true; break;
        case 'U': a.share = true; break;
        case 't': a.cache = optarg; break;
        case 'T': a.src_cache = optarg; break;
        case 'W': break;   /* out-of-order writes: accepted; data writes already
                              overlap, and the layout stays deterministic */
        case OPT_PROGRESS:
            if (!strcmp(optarg, "json")) {
                a.progress_json = true;
            } else if (!strcmp(optarg, "human")) {
                a.progress = true;
            } else {
                fprintf(stderr, "kimg: --progress: expected 'json' or 'human', not '%s'\n",
                        optarg);
                goto out;
            }
            break;
        case OPT_TARGET_IS_ZERO: a.target_is_zero = true; break;
        case OPT_UNTRUSTED: a.untrusted = true; break;
        case 'o':
            if (kimg_opts_parse(&a.opts, optarg) < 0) {
                cmd_fail(NULL, "Invalid option list");
                goto out;
            }
            break;
        case 'S':
            if (kimg_parse_size(optarg, &a.sparse) < 0) {
                /* qemu-img's first line; its second names the suffixes */
                cmd_error("Invalid buffer size for sparse output specified. You may use "
                          "k, M, G, T, P or E suffixes for");
                goto out;
            }
            if (a.sparse % 512 || a.sparse > MAX_SPARSE) {
                fprintf(stderr, "kimg: Invalid buffer size for sparse output specified. "
                        "Valid sizes are multiples of 512 up to %u. Select 0 to disable "
                        "sparse detection (fully allocates output).\n", MAX_SPARSE);
                goto out;
            }
            break;
        case 'm':
            if (kimg_parse_size(optarg, &m) < 0 || m < 1 || m > 16) {
                fprintf(stderr, "kimg: Invalid number of coroutines. Allowed number of "
                        "coroutines is between 1 and 16\n");
                goto out;
            }
            a.in_flight = (int)m;
            break;
        case 'C': a.copy_offload = true; break;
        case 'l':
            if (cmd_snapshot_load_opt(NULL, optarg, 0) < 0)
                goto out;
            snapshot = optarg;
            break;
        case OPT_DISK:
            if (cmd_parse_disk(optarg, &disk) < 0)
                goto out;
            break;
        case 'h': print_synopsis("convert"); ret = 0; goto out;
        case OPT_OBJECT:
            if (cmd_object(optarg)) {
                ret = 1;
                goto out;
            }
            break;
        case OPT_IMAGE_OPTS: a.image_opts = true; break;
        case OPT_TARGET_IMAGE_OPTS: a.tgt_image_opts = true; break;
        default: ret = cmd_bad_option("convert", argv, c); goto out;
        }
    }
    if (kimg_opts_wants_help(a.opts)) {
        kimg_opts_free(a.opts);
        /* with file names, the target's protocol options too (qemu-img) */
        char *help_argv[] = { "create", "-f", (char *)a.out_fmt, "-o", "help",
                              optind < argc ? argv[argc - 1] : NULL, NULL };
        optind = 0;
        return cmd_create(help_argv[5] ? 6 : 5, help_argv);
    }
    /* -o compression_level=N: how -c compresses, not a create option */
    bool has_level;
    a.level = kimg_opts_take(a.opts, "compression_level", &has_level);
    const char *level = a.level;
    if (has_level && !a.compress) {
        fprintf(stderr, "kimg: compression_level requires -c\n");
        goto out;
    }
    if (has_level && (!level || !*level || strspn(level, "0123456789") != strlen(level))) {
        fprintf(stderr, "kimg: Invalid compression_level '%s': expected a number\n",
                level ? level : "");
        goto out;
    }
    if (a.opts && kimg_opts_count(a.opts) == 0) {
        kimg_opts_free(a.opts);
        a.opts = NULL;
    }
    int nb_src = argc - optind - 1;
    if (nb_src < 1) {
        ret = cmd_usage_error("convert", "Must specify image file name");
        goto out;
    }
    if (a.tgt_image_opts && !a.no_create) {
        fprintf(stderr, "kimg: --target-image-opts requires use of -n flag\n");
        goto out;
    }
    if (a.target_is_zero && !a.no_create) {
        fprintf(stderr, "kimg: --target-is-zero requires use of -n flag\n");
        goto out;
    }
    if (a.no_create && (a.opts || a.backing)) {
        fprintf(stderr, "kimg: -o and -B have no effect with -n (the target exists)\n");
        goto out;
    }
    if (a.backing_fmt && !a.backing) {
        fprintf(stderr, "kimg: -F requires -B\n");
        goto out;
    }
    bool src_direct, src_sync;
    if (cmd_parse_cache(a.src_cache, "source cache", &src_direct, &src_sync) < 0)
        goto out;
    /* -p: qemu-img prints its first line here, after the option checks,
     * and ends the output with a newline whatever happens from here on */
    a.show_steps = a.progress && !a.quiet && !a.progress_json;
    if (a.show_steps) {
        cmd_progress_init(1.0f);
        cmd_progress_value(0.0f);
    }
    /* with --target-image-opts the target's format is known once it is open */
    const struct kimg_driver *out_drv = a.tgt_image_opts ? NULL : kimg_find_driver(a.out_fmt);
    if (!out_drv && !a.tgt_image_opts) {
        fprintf(stderr, "kimg: Unknown file format '%s'\n", a.out_fmt);
        goto out;
    }
    if (a.compress && out_drv && !kimg_driver_can_compress(out_drv)) {
        fprintf(stderr, "kimg: Compression not supported for this file format\n");
        goto out;
    }
    bool dst_direct, dst_sync;
    if (cmd_parse_cache(a.cache, "cache", &dst_direct, &dst_sync) < 0)
        goto out;

    const char *dst = argv[argc - 1];
    struct kimg **src = calloc((size_t)nb_src, sizeof(*src));
    struct kimg *out_img = NULL;
    struct kimg_output out = { 0 };
    uint64_t total = 0;
    if (!src)
        goto out;
    unsigned sflags = (a.share ? KIMG_OPEN_SHARE : 0) | (src_direct ? KIMG_OPEN_DIRECT : 0) |
                      (a.untrusted ? KIMG_OPEN_UNTRUSTED : 0);
    for (int i = 0; i < nb_src; i++) {
        src[i] = cmd_open_image(argv[optind + i], a.image_opts, a.src_fmt, sflags, disk);
        if (!src[i])
            goto close_src;
        /* -l: qemu-img loads the snapshot into the first source */
        if (snapshot && i == 0 && cmd_snapshot_load_opt(src[0], snapshot, nb_src) < 0)
            goto close_src;
        total += kimg_size(src[i]);
    }

    unsigned dflags = KIMG_OPEN_RDWR | (dst_direct ? KIMG_OPEN_DIRECT : 0) |
                      (dst_sync ? 0 : KIMG_OPEN_NOSYNC);
    /* the target's file ("file:NAME" is NAME; other protocols refused) */
    const char *dpath = dst;
    if (!a.tgt_image_opts && kimg_image_path(dst, &dpath) < 0) {
        cmd_fail(NULL, NULL);
        goto close_src;
    }
    int r = a.no_create ? 0 : kimg_output_begin(&out, dpath, KIMG_OUTPUT_REPLACE);
    if (r < 0) {
        cmd_error("%s: error while converting %s: Could not create '%s': %s",
                  dst, a.out_fmt, dst, strerror(-r));
        kimg_clear_error();
        goto close_src;
    }
    bool in_place = a.no_create || out.in_place;
    if (in_place && !a.no_create && convert_special_target(dst, dpath, a.out_fmt, total) < 0)
        goto close_src;
    if (in_place) {
        out_img = cmd_open_image(dst, a.tgt_image_opts, a.tgt_image_opts && !a.out_fmt_given
                                 ? NULL : a.out_fmt, dflags, 0);
        if (!out_img)
            goto close_src;
        if (a.compress && !kimg_can_compress(out_img)) {
            fprintf(stderr, "kimg: Compression not supported for this file format\n");
            goto close_src;
        }
        if (kimg_size(out_img) < total) {
            fprintf(stderr, "kimg: %s: the target is smaller than the source (%llu < %llu)\n",
                    dst, (unsigned long long)kimg_size(out_img), (unsigned long long)total);
            goto close_src;
        }
    } else {
        /* qemu-img: option errors alone, the image's creation errors
         * as "DST: error while converting FMT: why" */
        const struct kimg_driver *odrv = kimg_find_driver(a.out_fmt);
        struct kimg_optdesc *odesc = odrv ? kimg_create_opts_merged(odrv) : NULL;
        int bad = odesc && kimg_opts_validate(a.opts, odesc, kimg_driver_name(odrv)) < 0;
        free(odesc);
        if (bad) {
            cmd_fail(NULL, "Invalid option");
            goto close_src;
        }
        struct kimg_create_args ca = {
            .filename = out.path, .format = a.out_fmt, .size = total, .size_given = true,
            .backing_file = a.backing, .backing_format = a.backing_fmt, .opts = a.opts,
        };
        if (kimg_create(&ca) < 0) {
            const char *why = kimg_last_error();
            cmd_error("%s: error while converting %s: %s", dst, a.out_fmt,
                      why ? why : "cannot create the image");
            kimg_clear_error();
            goto close_src;
        }
        if ((r = open_created(&out_img, out.path, a.out_fmt, dflags, a.opts)) < 0) {
            /* qemu-img's "Could not open 'DST': why" (say an encrypted -B
             * backing file, which it cannot be given a key for) */
            const char *why = kimg_last_error();
            cmd_error("Could not open '%s': %s", dst, why ? why : strerror(-r));
            kimg_clear_error();
            goto close_src;
        }
    }

    struct kimg_convert cv = {
        .src = src, .nb_src = nb_src, .dst = out_img, .sparse_size = a.sparse,
        .compress = a.compress, .in_flight = a.in_flight, .copy_offload = a.copy_offload,
        .target_is_zero = a.target_is_zero ||
                          (!in_place && !a.backing && kimg_zero_init(out_img)),
        .target_has_backing = a.backing != NULL,
        /* zeros past the end of the new target's backing file are not
         * written (qemu-img: the length is only an optimisation, unknown
         * if the backing file is not open) */
        .backing_end_known = a.backing && !in_place && kimg_backing(out_img),
        .backing_end = a.backing && !in_place && kimg_backing(out_img)
                       ? (kimg_size(kimg_backing(out_img)) + 511) / 512 * 512 : 0,
        /* space the user asked to hold stays held: no reflinks */
        .own_blocks = in_place || (a.opts && kimg_opts_get(a.opts, "preallocation") &&
                                   strcmp(kimg_opts_get(a.opts, "preallocation"), "off")),
        .steps = a.show_steps ? cmd_progress : NULL,
    };
    struct json_progress jp;
    if (a.progress_json) {
        clock_gettime(CLOCK_MONOTONIC, &jp.start);
        cv.progress = print_json_progress;
        cv.opaque = &jp;
    }
    if (level) {
        r = kimg_set_write_option(out_img, "compression_level", level);
        if (r < 0) {
            fprintf(stderr, "kimg: %s\n", kimg_last_error());
            goto close_src;
        }
    }
    if (kimg_convert_run(&cv) < 0) {
        cmd_fail(dst, "error while converting");
        goto close_src;
    }
    if (a.show_steps)
        cmd_progress_value(100.0f);   /* as qemu-img: again, at the end */
    r = kimg_close(out_img);
    out_img = NULL;
    if (r < 0) {
        cmd_fail(dst, "error while writing the image");
        goto close_src;
    }
    r = kimg_output_commit(&out, dst_sync);
    if (r < 0) {
        fprintf(stderr, "kimg: %s: cannot rename the finished image into place: %s\n",
                dst, strerror(-r));
        kimg_clear_error();
        goto close_src;
    }
    ret = 0;
close_src:
    if (out_img)
        kimg_close(out_img);
    kimg_output_abort(&out);
    for (int i = 0; i < nb_src; i++)
        if (src[i])
            kimg_close(src[i]);
    free(src);
out:
    if (a.show_steps)
        printf("\n");
    kimg_opts_free(a.opts);
    free(a.level);
    return ret;
}
