/*
 * commit.c — `kimg commit`: qemu-img commit's options, messages and exit
 * codes over the commit engine (img/commit.c).  The top's data goes into
 * its backing file (or the base named with -b, which implies -d, as in
 * qemu-img); the top is then emptied unless -d.
 */
#include <errno.h>
#include <stdio.h>
#include "cmd.h"

int cmd_commit(int argc, char **argv)
{
    /* QEMU 10.1's long names for qemu-img's options */
    static const char optstring[] = ":hf:t:b:dpqr:";
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "format", required_argument, NULL, 'f' },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "cache", required_argument, NULL, 't' },
        { "drop", no_argument, NULL, 'd' },
        { "base", required_argument, NULL, 'b' },
        { "rate-limit", required_argument, NULL, 'r' },
        { "progress", no_argument, NULL, 'p' },
        { "quiet", no_argument, NULL, 'q' },
        { "object", required_argument, NULL, OPT_OBJECT },
        { NULL, 0, NULL, 0 },
    };
    static const char *const help[] = {
        "-f, --format FMT              format of FILE (default: probed)",
        "--image-opts                  FILE is an option string (key=value,...)",
        "-t, --cache MODE              cache mode (default: writeback)",
        "-d, --drop                    keep FILE's data (do not empty it)",
        "-b, --base BASE               commit into BASE, an image of the chain (implies -d)",
        "-r, --rate-limit RATE         at most RATE bytes per second (k, M, G suffixes)",
        "-p, --progress                progress lines as qemu-img's",
        "-q, --quiet                   no \"Image committed.\" line",
        "--object OBJDEF               a secret for encrypted images",
        "-h, --help                    this help",
        NULL,
    };
    struct kimg_commit cm = { 0 };
    const char *cache = "writeback";
    bool progress = false, quiet = false, image_opts = false;
    int c;

    while ((c = getopt_long(argc, argv, optstring, longopts, NULL)) != -1) {
        switch (c) {
        case 'f': cm.format = optarg; break;
        case 't': cache = optarg; break;
        case 'b': cm.base = optarg; break;
        case 'd': cm.keep_top = true; break;
        case 'p': progress = true; break;
        case 'q': quiet = true; break;
        case 'r':
            if (kimg_parse_size(optarg, &cm.rate) < 0) {
                kimg_clear_error();
                fprintf(stderr, "kimg: Invalid rate limit specified. You may use k, M, G, "
                        "T, P or E suffixes for kilobytes, megabytes, gigabytes, "
                        "terabytes, petabytes and exabytes.\n");
                return 1;
            }
            break;
        case 'h': return cmd_help("commit", optstring, longopts, help);
        case OPT_OBJECT:
            if (cmd_object(optarg))
                return 1;
            break;
        case OPT_IMAGE_OPTS: image_opts = true; break;
        default: return cmd_bad_option("commit", argv, c);
        }
    }
    if (optind != argc - 1)
        return cmd_usage_error("commit", "Expecting one image file name");
    if (cmd_cache_flags(cache, "cache", &cm.flags) < 0)
        return 1;
    if (quiet)
        progress = false;
    cm.filename = argv[optind];
    cm.progress = progress ? cmd_progress : NULL;
    struct kimg_opts *opts = NULL;
    if (image_opts && cm.format) {
        cmd_error("--image-opts and --format are mutually exclusive");
        return 1;
    }
    if (image_opts && kimg_image_opts_parse(cm.filename, &opts) < 0)
        return cmd_fail(NULL, "invalid option string");
    cm.open_opts = opts;
    int ret = kimg_commit(&cm);
    kimg_opts_free(opts);
    if (ret < 0)
        return cmd_fail(NULL, "commit failed");
    if (progress)
        printf("\n");
    if (!quiet)
        printf("Image committed.\n");
    return 0;
}
