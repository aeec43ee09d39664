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
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { NULL, 0, NULL, 0 },
    };
    struct kimg_commit cm = { 0 };
    const char *cache = "writeback";
    bool progress = false, quiet = false, image_opts = false;
    int c;

    while ((c = getopt_long(argc, argv, ":hf:t:b:dpqr:", longopts, NULL)) != -1) {
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
        case 'h': print_synopsis("commit"); return 0;
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
