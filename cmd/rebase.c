/*
 * rebase.c — `kimg rebase`: qemu-img rebase's options, messages and exit
 * codes over the rebase engine (img/rebase.c).  Safe mode opens the old
 * chain and the new backing file and keeps the overlay's content; -u only
 * rewrites the header; -b "" flattens (safe) or drops the reference (-u).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "cmd.h"

int cmd_rebase(int argc, char **argv)
{
    /* QEMU 10.1's long names; -B is 10.1's letter for the backing
     * format, -F (7.2's) keeps working */
    static const char optstring[] = ":hf:F:B:b:upt:T:qUc";
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "format", required_argument, NULL, 'f' },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "cache", required_argument, NULL, 't' },
        { "backing", required_argument, NULL, 'b' },
        { "backing-format", required_argument, NULL, 'B' },
        { "backing-cache", required_argument, NULL, 'T' },
        { "backing-unsafe", no_argument, NULL, 'u' },
        { "force-share", no_argument, NULL, 'U' },
        { "compress", no_argument, NULL, 'c' },
        { "progress", no_argument, NULL, 'p' },
        { "quiet", no_argument, NULL, 'q' },
        { "object", required_argument, NULL, OPT_OBJECT },
        { NULL, 0, NULL, 0 },
    };
    static const char *const help[] = {
        "-f, --format FMT              format of FILE (default: probed)",
        "--image-opts                  FILE is an option string (key=value,...)",
        "-t, --cache MODE              cache mode of FILE (default: writeback)",
        "-b, --backing BACKING_FILE    the new backing file ('' for none)",
        "-B, -F, --backing-format FMT  format of BACKING_FILE (-F: qemu-img 7.2's letter)",
        "-T, --backing-cache MODE      cache mode of the backing files (default: writeback)",
        "-u, --backing-unsafe          rewrite the header only, copy no data",
        "-U, --force-share             open the backing files without taking their locks",
        "-c, --compress                compress the clusters the copy writes (qemu-img 8.2's)",
        "-p, --progress                progress lines as qemu-img's",
        "-q, --quiet                   no progress",
        "--object OBJDEF               a secret for encrypted images",
        "-h, --help                    this help",
        NULL,
    };
    const char *fmt = NULL, *backing = NULL, *backing_fmt = NULL;
    const char *cache = "writeback", *src_cache = "writeback";
    bool unsafe = false, progress = false, quiet = false, share = false, compress = false;
    unsigned flags, src_flags;
    bool image_opts = false;
    int c;

    while ((c = getopt_long(argc, argv, optstring, longopts, NULL)) != -1) {
        switch (c) {
        case 'f': fmt = optarg; break;
        case 'F':
        case 'B': backing_fmt = optarg; break;
        case 'b': backing = optarg; break;
        case 'u': unsafe = true; break;
        case 'p': progress = true; break;
        case 'q': quiet = true; break;
        case 'U': share = true; break;
        case 'c': compress = true; break;
        case 't': cache = optarg; break;
        case 'T': src_cache = optarg; break;
        case 'h': return cmd_help("rebase", optstring, longopts, help);
        case OPT_OBJECT:
            if (cmd_object(optarg))
                return 1;
            break;
        case OPT_IMAGE_OPTS: image_opts = true; break;
        default: return cmd_bad_option("rebase", argv, c);
        }
    }
    if (optind != argc - 1)
        return cmd_usage_error("rebase", "Expecting one image file name");
    if (!backing && !unsafe)
        return cmd_usage_error("rebase", "Must specify backing file (-b) or use unsafe "
                               "mode (-u)");
    if (!backing)
        backing = "";
    if (cmd_cache_flags(cache, "cache", &flags) < 0 ||
        cmd_cache_flags(src_cache, "source cache", &src_flags) < 0)
        return 1;
    if (quiet)
        progress = false;

    const char *file = argv[optind];
    struct kimg *img = cmd_open_image(file, image_opts, fmt, KIMG_OPEN_RDWR | flags |
                                      (unsafe ? KIMG_OPEN_NO_BACKING : 0), 0);
    if (!img)
        return 1;
    struct kimg *nb = NULL;
    int ret = 1;
    /* -c (qemu-img 8.2; 7.2 has no -c): refused where the overlay cannot
     * take compressed clusters, with -u too, before anything else */
    if (compress && !kimg_can_compress(img)) {
        fprintf(stderr, "kimg: Compression not supported for this file format\n");
        goto out;
    }
    /* qemu-img checks -F against its format list whether or not the new
     * backing is opened (-u): a name it does not know is refused before
     * anything is written, so no image names a format qemu cannot open */
    if (backing_fmt && !kimg_qemu_knows_format(backing_fmt)) {
        fprintf(stderr, "kimg: Invalid format name: '%s'\n", backing_fmt);
        goto out;
    }
    if (!unsafe && *backing &&
        kimg_rebase_open_backing(img, backing, backing_fmt,
                                 src_flags | (share ? KIMG_OPEN_SHARE : 0), &nb) < 0) {
        cmd_fail(NULL, "Could not open new backing file");
        goto out;
    }
    if (*backing && !backing_fmt) {
        /* qemu-img 7.2 refuses to store a backing name without a format
         * (it says so after copying; nothing is written here) */
        cmd_error("Could not change the backing file to '%s': backing format must be "
                  "specified", backing);
        goto out;
    }
    struct kimg_rebase r = {
        .img = img, .backing = backing, .backing_format = backing_fmt,
        .new_backing = nb, .unsafe = unsafe, .compress = compress,
        .progress = progress ? cmd_progress : NULL,
    };
    if (kimg_rebase(&r) < 0) {
        cmd_fail(NULL, "rebase failed");
        goto out;
    }
    if (progress)
        printf("\n");
    ret = 0;
out:
    if (nb)
        kimg_close(nb);
    if (kimg_close(img) < 0 && ret == 0)
        ret = cmd_fail(file, "error while closing the image");
    return ret;
}
