/*
 * convert.c — `kimg convert`: qemu-img convert's options and messages over
 * the copy engine (img/convert.c).  A new target is written as
 * kimg/output.h says: whole or not at all, beside the real target when the
 * name is a symlink; devices and FIFOs in place.  -n writes in place.
 * Sources are opened as the user names them: an OVA archive is read as
 * its disk (--disk N, of every source; the first by default).  A source
 * that is a pipe is read once, in order (cmd/convert_pipe.c).
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
#include "convert.h"

#define MAX_SPARSE (16u << 20)

/* --progress=json (convert.h) */
void convert_print_json_progress(void *opaque, uint64_t done, uint64_t total)
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

/* A new raw target that is a pipe (pve-storage exports with "convert -f
 * F -O raw FILE /dev/stdout"): streamed in order, zeros included
 * (kimg_convert_stream).  qemu-img 7.2 cannot (its file driver resizes
 * the target and fails: "Could not resize file: Invalid argument"); kimg
 * does for raw without options, backing file or bitmaps, and fails as
 * qemu-img for any other format.  Returns 1 if streamed, 0 if not a
 * case for it, -1 on failure (said). */
static int convert_to_pipe(const char *dst, const char *path, const char *fmt,
                           bool plain_raw, struct kimg_convert *cv)
{
    struct stat st;
    if (!plain_raw || stat(path, &st) < 0 || !S_ISFIFO(st.st_mode))
        return 0;
    /* standard output as it is (no reopening); a named FIFO opened for
     * writing, which waits for its reader as any writer does */
    bool is_stdout = !strcmp(path, "/dev/stdout");
    struct stat so;
    if (!is_stdout && fstat(STDOUT_FILENO, &so) == 0 && so.st_dev == st.st_dev &&
        so.st_ino == st.st_ino)
        is_stdout = true;
    int fd = is_stdout ? STDOUT_FILENO : open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        cmd_error("%s: error while converting %s: Could not create '%s': %s",
                  dst, fmt, dst, strerror(errno));
        return -1;
    }
    /* a reader that goes away is EPIPE on write, not a silent death */
    signal(SIGPIPE, SIG_IGN);
    int r = kimg_convert_stream(cv, fd);
    if (fd != STDOUT_FILENO && close(fd) < 0 && r == 0)
        r = kimg_fail(-errno, "error while closing: %s", strerror(errno));
    if (r < 0) {
        cmd_fail(dst, "error while converting");
        return -1;
    }
    return 1;
}

/* Open the target convert just created, as qemu-img does: with the -o
 * options that name key secrets ("encrypt.key-secret", "key-secret":
 * its img_add_key_secrets) as open options, so an encrypted target opens
 * with its key; without such options as before. */
int convert_open_created(struct kimg **out, const char *path, const char *fmt, unsigned flags,
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

/* --salvage: qemu-img's warning for each 512-byte piece read as zeros
 * (offsets of the source; not with -q, as qemu-img). */
static void print_salvaged(void *opaque, int src, uint64_t off, uint64_t len, int err)
{
    (void)opaque;
    (void)src;
    for (uint64_t end = off + len; off < end; off += 512)
        fprintf(stderr, "kimg: warning: error while reading offset %llu: %s\n",
                (unsigned long long)off, strerror(-err));
}

/* --salvage: qemu-img's warning for each 512 bytes whose block status
 * failed (they are read as data). */
static void print_status_salvaged(void *opaque, int src, uint64_t off, uint64_t len, int err)
{
    (void)opaque;
    (void)src;
    for (uint64_t end = off + len; off < end; off += 512)
        fprintf(stderr, "kimg: warning: error while reading block status at offset %llu: %s\n",
                (unsigned long long)off, strerror(-err));
}

/* --bitmaps, before anything is written (qemu-img's checks and order):
 * one source, one that can hold bitmaps, none of them inconsistent but
 * with --skip-broken-bitmaps. */
static int bitmaps_check_source(struct kimg **src, int nb_src, bool skip)
{
    struct kimg_bitmap_info *list;
    size_t n;
    if (nb_src > 1) {
        cmd_error("Copying bitmaps only possible with single source");
        return -1;
    }
    int r = kimg_bitmap_list(src[0], &list, &n);
    if (r == -ENOTSUP) {
        cmd_error("Source lacks bitmap support");
        return -1;
    }
    if (r < 0)
        return cmd_fail(kimg_filename(src[0]), "cannot list the bitmaps"), -1;
    for (size_t i = 0; i < n && !skip; i++)
        if (list[i].in_use) {
            cmd_error("Cannot copy inconsistent bitmap '%s' (try --skip-broken-bitmaps, or "
                      "remove it with 'kimg bitmap --remove')", list[i].name);
            r = -1;
            break;
        }
    kimg_bitmap_list_free(list, n);
    return r < 0 ? -1 : 0;
}

/* --bitmaps, after the data: each consistent bitmap of SRC made in DST
 * with its granularity and state, then its bits merged in.  qemu-img
 * walks them last first (its list is newest first) and stops at a name
 * DST already has, then stores the ones it made in SRC's order: the same
 * bitmaps end up in the same order here. */
static int bitmaps_copy(struct kimg *src, struct kimg *dst)
{
    struct kimg_bitmap_info *list, *have;
    size_t n, nh, first = 0;
    const char *clash = NULL;
    int r = kimg_bitmap_list(src, &list, &n);
    if (r < 0)
        return cmd_fail(kimg_filename(src), "cannot list the bitmaps"), -1;
    r = kimg_bitmap_list(dst, &have, &nh);
    if (r < 0) {
        kimg_bitmap_list_free(list, n);
        return cmd_fail(kimg_filename(dst), "cannot list the bitmaps"), -1;
    }
    for (size_t i = n; i-- > 0 && !clash;) {
        for (size_t k = 0; k < nh && !clash; k++)
            if (!strcmp(have[k].name, list[i].name)) {
                clash = list[i].name;
                first = i + 1;
            }
        if (!clash && list[i].in_use) {
            fputs("kimg: warning: Skipping inconsistent bitmap '", stderr);
            kimg_print_for_terminal(stderr, list[i].name);
            fputs("'\n", stderr);
        }
    }
    for (size_t i = first; i < n && r == 0; i++) {
        if (list[i].in_use)
            continue;
        struct kimg_bitmap_op add = { .action = KIMG_BITMAP_ADD, .name = list[i].name,
                                      .granularity = list[i].granularity,
                                      .disabled = !list[i].enabled };
        struct kimg_bitmap_op merge = { .action = KIMG_BITMAP_MERGE, .name = list[i].name,
                                        .src = src, .src_name = list[i].name };
        const char *what = "create";
        r = kimg_bitmap_change(dst, &add);
        if (r == 0) {
            what = "populate";
            r = kimg_bitmap_change(dst, &merge);
        }
        if (r < 0) {
            const char *msg = kimg_last_error();
            cmd_error("Failed to %s bitmap %s: %s", what, list[i].name,
                      msg ? msg : "unknown error");
            kimg_clear_error();
        }
    }
    if (r == 0 && clash) {
        cmd_error("Failed to create bitmap %s: Bitmap already exists: %s", clash, clash);
        r = -1;
    }
    kimg_bitmap_list_free(have, nh);
    kimg_bitmap_list_free(list, n);
    return r < 0 ? -1 : 0;
}

int cmd_convert(int argc, char **argv)
{
    enum { OPT_TARGET_IS_ZERO = 300, OPT_PROGRESS, OPT_TARGET_IMAGE_OPTS, OPT_BITMAPS,
           OPT_SKIP_BROKEN, OPT_SALVAGE };
    /* QEMU 10.1's long names.  -b is 10.1's letter for the backing file;
     * -B (7.2's, kept by 10.1 too) keeps working.  --progress alone is
     * 10.1's -p; kimg's --progress=json|human keeps its meaning. */
    static const char optstring[] = ":hf:O:b:B:F:Cco:l:S:pt:T:qnm:r:WU";
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "source-format", required_argument, NULL, 'f' },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "source-cache", required_argument, NULL, 'T' },
        { "snapshot", required_argument, NULL, 'l' },
        { "bitmaps", no_argument, NULL, OPT_BITMAPS },
        { "skip-broken-bitmaps", no_argument, NULL, OPT_SKIP_BROKEN },
        { "target-format", required_argument, NULL, 'O' },
        { "target-image-opts", no_argument, NULL, OPT_TARGET_IMAGE_OPTS },
        { "target-format-options", required_argument, NULL, 'o' },
        { "target-cache", required_argument, NULL, 't' },
        { "backing", required_argument, NULL, 'b' },
        { "backing-format", required_argument, NULL, 'F' },
        { "sparse-size", required_argument, NULL, 'S' },
        { "no-create", no_argument, NULL, 'n' },
        { "target-is-zero", no_argument, NULL, OPT_TARGET_IS_ZERO },
        { "compress", no_argument, NULL, 'c' },   /* in 10.1's help, not its table */
        { "force-share", no_argument, NULL, 'U' },
        { "parallel", required_argument, NULL, 'm' },
        { "rate-limit", required_argument, NULL, 'r' },
        { "salvage", no_argument, NULL, OPT_SALVAGE },
        { "oob-writes", no_argument, NULL, 'W' },
        { "copy-range-offloading", no_argument, NULL, 'C' },
        { "progress", optional_argument, NULL, OPT_PROGRESS },
        { "quiet", no_argument, NULL, 'q' },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "untrusted", no_argument, NULL, OPT_UNTRUSTED },
        { "disk", required_argument, NULL, OPT_DISK },
        { NULL, 0, NULL, 0 },
    };
    static const char *const help[] = {
        "-f, --source-format FMT        format of every source (default: probed; a pipe: -f raw)",
        "--image-opts                   each source is an option string (key=value,...)",
        "-T, --source-cache MODE        cache mode of the sources (default: writeback)",
        "-l, --snapshot SNAPSHOT        read this internal snapshot of the source",
        "--bitmaps                      copy the persistent dirty bitmaps too",
        "--skip-broken-bitmaps          with --bitmaps, skip inconsistent bitmaps",
        "-O, --target-format FMT        format of the target (default: raw)",
        "--target-image-opts            the target is an option string (needs -n)",
        "-o, --target-format-options O  creation options of the target ('-o help')",
        "-t, --target-cache MODE        cache mode of the target (default: unsafe)",
        "-b, -B, --backing FILE         the target is an overlay of FILE (-B: 7.2's letter)",
        "-F, --backing-format FMT       format of the backing file",
        "-S, --sparse-size SIZE         zero runs of this size become holes (default: 4k)",
        "-n, --no-create                write into an existing target",
        "--target-is-zero               with -n, the target reads as zeros already",
        "-c, --compress                 compressed output (formats that compress)",
        "-U, --force-share              open the sources without taking their locks",
        "-m, --parallel N               requests in flight, 1 to 16 (default: 8)",
        "-r, --rate-limit RATE          write at most RATE bytes per second (k, M, G...)",
        "--salvage                      unreadable source data becomes zeros, with a warning",
        "-W, --oob-writes               out-of-order writes (accepted, layout unchanged)",
        "-C, --copy-range-offloading    copy in the kernel (a raw target file, no -c)",
        "-p, --progress                 progress lines as qemu-img's",
        "--progress=json|human          progress as JSON lines on stderr, or as -p",
        "-q, --quiet                    no progress",
        "--object OBJDEF                a secret for encrypted images",
        "--untrusted                    treat the sources as hostile (no backing files)",
        "--disk N                       the Nth disk of an OVA source",
        "-h, --help                     this help",
        NULL,
    };
    struct convert_args a = { .out_fmt = "raw", .sparse = 4096, .cache = "unsafe",
                              .src_cache = "writeback" };
    int c, ret = 1;
    uint64_t m;
    const char *snapshot = NULL;   /* -l */
    int spool_fd = -1;             /* a pipe's data held for a format that cannot grow */
    char spool_name[32];
    unsigned disk = 0;             /* --disk: of every source (OVA archives) */

    while ((c = getopt_long(argc, argv, optstring, longopts, NULL)) != -1) {
        switch (c) {
        case 'f': a.src_fmt = optarg; break;
        case 'O': a.out_fmt = optarg; a.out_fmt_given = true; break;
        case 'b':
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
            /* "--progress json" (a separate word) as before the
             * argument became optional */
            if (!optarg && optind < argc &&
                (!strcmp(argv[optind], "json") || !strcmp(argv[optind], "human")))
                optarg = argv[optind++];
            if (!optarg) {
                a.progress = true;
            } else if (!strcmp(optarg, "json")) {
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
        case OPT_BITMAPS: a.bitmaps = true; break;
        case OPT_SALVAGE: a.salvage = true; break;
        case OPT_SKIP_BROKEN: a.skip_broken = true; break;
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
        case 'r':
            /* qemu-img's cvtnum: 10M is 10 MiB/s; 0 is no limit.  Its
             * two-line message on one line (as commit -r) */
            if (kimg_parse_size(optarg, &a.rate) < 0) {
                kimg_clear_error();
                cmd_error("Invalid rate limit specified. You may use k, M, G, T, P or E "
                          "suffixes for kilobytes, megabytes, gigabytes, terabytes, "
                          "petabytes and exabytes.");
                goto out;
            }
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
        case 'h': ret = cmd_help("convert", optstring, longopts, help); goto out;
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
    if (a.salvage && a.copy_offload) {
        fprintf(stderr, "kimg: Cannot use copy offloading in salvaging mode\n");
        goto out;
    }
    if (a.skip_broken && !a.bitmaps) {
        fprintf(stderr, "kimg: Use of --skip-broken-bitmaps requires --bitmaps\n");
        goto out;
    }
    /* -n -B (vdsm, for every layer with a parent): the target's own
     * backing file supplies what the sources' top layer does not hold, so
     * only that is copied; the name is not opened (qemu-img 7.2 neither) */
    if (a.no_create && a.opts) {
        fprintf(stderr, "kimg: -o has no effect when skipping image creation\n");
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
    /* a target that is our standard output, a pipe: the data goes there,
     * so no progress may (-p and --progress=json print on stdout) */
    struct stat tst, ost;
    if (stat(argv[argc - 1], &tst) == 0 && S_ISFIFO(tst.st_mode) &&
        fstat(STDOUT_FILENO, &ost) == 0 && tst.st_dev == ost.st_dev && tst.st_ino == ost.st_ino) {
        a.show_steps = false;
        a.progress_json = false;
    }
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
    /* Proxmox's "zeroinit:" target prefix (its qemu's zeroinit filter):
     * the existing target reads as zeros, as --target-is-zero says */
    if (a.no_create && !a.tgt_image_opts && !strncmp(dst, "zeroinit:", 9)) {
        dst += 9;
        a.target_is_zero = true;
    }
    /* a source that is a pipe, a FIFO or a socket: read once, in order,
     * into a target that grows as the data arrives (cmd/convert_pipe.c),
     * or, for a format that cannot grow, held in an unnamed temporary
     * file converted from here on as the source */
    for (int i = 0; i < nb_src && !a.image_opts; i++)
        if (convert_is_stream(argv[optind + i])) {
            unsigned pflags = KIMG_OPEN_RDWR | (dst_direct ? KIMG_OPEN_DIRECT : 0) |
                              (dst_sync ? 0 : KIMG_OPEN_NOSYNC);
            int r = convert_from_pipe(&a, argv + optind, nb_src, dst, snapshot, disk, pflags,
                                      &spool_fd);
            if (r >= 0) {
                ret = r;
                goto out;
            }
            snprintf(spool_name, sizeof(spool_name), "/proc/self/fd/%d", spool_fd);
            argv[optind + i] = spool_name;
            break;
        }
    struct kimg **src = calloc((size_t)nb_src, sizeof(*src));
    struct kimg *out_img = NULL;
    struct kimg_output out = { 0 };
    uint64_t total = 0;
    if (!src)
        goto out;
    unsigned sflags = (a.share ? KIMG_OPEN_SHARE : 0) | (src_direct ? KIMG_OPEN_DIRECT : 0) |
                      (a.untrusted ? KIMG_OPEN_UNTRUSTED : 0) | KIMG_OPEN_NO_WRITERS;
    for (int i = 0; i < nb_src; i++) {
        src[i] = cmd_open_image(argv[optind + i], a.image_opts, a.src_fmt, sflags, disk);
        if (!src[i])
            goto close_src;
        /* -l: qemu-img loads the snapshot into the first source */
        if (snapshot && i == 0 && cmd_snapshot_load_opt(src[0], snapshot, nb_src) < 0)
            goto close_src;
        total += kimg_size(src[i]);
    }
    if (a.bitmaps && bitmaps_check_source(src, nb_src, a.skip_broken) < 0)
        goto close_src;

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
    if (in_place && !a.no_create) {
        struct kimg_convert scv = {
            .src = src, .nb_src = nb_src, .rate_limit = a.rate, .salvage = a.salvage,
            .salvaged = a.salvage && !a.quiet ? print_salvaged : NULL,
            .status_salvaged = a.salvage && !a.quiet ? print_status_salvaged : NULL,
            .steps = a.show_steps ? cmd_progress : NULL,
        };
        struct json_progress sjp;
        if (a.progress_json) {
            clock_gettime(CLOCK_MONOTONIC, &sjp.start);
            scv.progress = convert_print_json_progress;
            scv.opaque = &sjp;
        }
        int sr = convert_to_pipe(dst, dpath, a.out_fmt, !strcmp(a.out_fmt, "raw") && !a.opts &&
                                 !a.backing && !a.bitmaps && !a.compress && !a.copy_offload,
                                 &scv);
        if (sr < 0)
            goto close_src;
        if (sr > 0) {
            if (a.show_steps)
                cmd_progress_value(100.0f);
            ret = 0;
            goto close_src;
        }
    }
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
            .final_name = dpath,
        };
        if (kimg_create(&ca) < 0) {
            const char *why = kimg_last_error();
            cmd_error("%s: error while converting %s: %s", dst, a.out_fmt,
                      why ? why : "cannot create the image");
            kimg_clear_error();
            goto close_src;
        }
        /* the -B name it holds is the user's (on an NBD export too) */
        if ((r = convert_open_created(&out_img, out.path, a.out_fmt,
                                      dflags | KIMG_OPEN_OWN_NAMES, a.opts)) < 0) {
            /* qemu-img's "Could not open 'DST': why" (say an encrypted -B
             * backing file, which it cannot be given a key for) */
            const char *why = kimg_last_error();
            cmd_error("Could not open '%s': %s", dst, why ? why : strerror(-r));
            kimg_clear_error();
            goto close_src;
        }
    }

    /* qemu-img's check of the target's cluster size (bdrv_get_info): a
     * format that compresses but has no cluster here (a flat or split
     * flat VMDK), or one larger than its 2 MiB copy buffer */
    if (a.compress && (kimg_cluster_size(out_img) == 0 ||
                       kimg_cluster_size(out_img) > 2 * 1024 * 1024)) {
        fprintf(stderr, "kimg: invalid cluster size\n");
        goto close_src;
    }
    if (a.bitmaps) {
        struct kimg_bitmap_info *none;
        size_t nn;
        if (kimg_bitmap_list(out_img, &none, &nn) == -ENOTSUP) {
            cmd_error("Format driver '%s' does not support bitmaps", kimg_format_name(out_img));
            goto close_src;
        }
        kimg_clear_error();
        kimg_bitmap_list_free(none, nn);
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
        .rate_limit = a.rate,
        .salvage = a.salvage,
        .salvaged = a.salvage && !a.quiet ? print_salvaged : NULL,
        .status_salvaged = a.salvage && !a.quiet ? print_status_salvaged : NULL,
    };
    struct json_progress jp;
    if (a.progress_json) {
        clock_gettime(CLOCK_MONOTONIC, &jp.start);
        cv.progress = convert_print_json_progress;
        cv.opaque = &jp;
    }
    if (level) {
        r = kimg_set_write_option(out_img, "compression_level", level);
        if (r < 0) {
            fprintf(stderr, "kimg: %s\n", kimg_last_error());
            goto close_src;
        }
    }
    /* an NBD export that does not read as zeros is zeroed ahead of the
     * copy when the server can do that fast, writing nothing (one request,
     * not one per zero range of the source); the copy then skips the
     * source's zeros.  Where the server says it would be slow, the zeros
     * are written as the copy reaches them.  qemu-img did this for every
     * target up to QEMU 5.0 and dropped it in 5.1 ("Don't pre-zero
     * images": counterproductive on local files); kimg never does it on
     * local files (KIMG_ZERO_AHEAD). */
    if (!cv.target_is_zero && !a.backing && a.sparse && !a.compress && total) {
        r = kimg_write_zeroes(out_img, 0, total,
                              KIMG_ZERO_MAY_UNMAP | KIMG_ZERO_FAST | KIMG_ZERO_AHEAD);
        if (r == 0) {
            cv.target_is_zero = true;
        } else if (r != -ENOTSUP) {
            cmd_fail(dst, "error while converting");
            goto close_src;
        }
    }
    if (kimg_convert_run(&cv) < 0) {
        cmd_fail(dst, "error while converting");
        goto close_src;
    }
    if (a.bitmaps && bitmaps_copy(src[0], out_img) < 0)
        goto close_src;
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
    if (spool_fd >= 0)
        close(spool_fd);
    if (a.show_steps)
        printf("\n");
    kimg_opts_free(a.opts);
    free(a.level);
    return ret;
}
