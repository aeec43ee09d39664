/*
 * resize.c — `kimg resize`: qemu-img resize's options, size syntax
 * ([+|-]SIZE, taken off the end of the command line before the options
 * are parsed, so "-1G" is no option), its refusals (shrinking without
 * --shrink, preallocation when not growing) and its "Image resized." line.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include "cmd.h"

enum { OPT_PREALLOCATION = OPT_HELP + 100, OPT_SHRINK };

/* qemu's PreallocMode names; -1 if unknown. */
static int parse_prealloc(const char *s)
{
    static const char *const names[] = { "off", "metadata", "falloc", "full" };
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, names[i]))
            return i;
    return -1;
}

/* Open FILE read-write.  Without -f, a file probed as raw is resized as
 * qemu-img does (with its warning): a new length touches no guest data,
 * so the block-0 danger of a guessed raw image does not arise. */
static struct kimg *open_rw(const char *file, const char *fmt)
{
    struct kimg *probe;
    if (!fmt && kimg_open(&probe, file, NULL, KIMG_OPEN_NO_BACKING) == 0) {
        /* a format whose guest block 0 is the file's: raw */
        const char *guessed = kimg_maps_identity(probe) ? kimg_format_name(probe) : NULL;
        kimg_close(probe);
        if (guessed) {
            fprintf(stderr,
                    "WARNING: Image format was not specified for '%s' and probing "
                    "guessed raw.\n"
                    "         Automatically detecting the format is dangerous for raw "
                    "images, write operations on block 0 will be restricted.\n"
                    "         Specify the 'raw' format explicitly to remove the "
                    "restrictions.\n", file);
            fmt = guessed;
        }
    }
    kimg_clear_error();
    return cmd_open(file, fmt, KIMG_OPEN_RDWR);
}

int cmd_resize(int argc, char **argv)
{
    /* QEMU 10.1's long names for qemu-img's options */
    static const char optstring[] = ":f:hq";
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "format", required_argument, NULL, 'f' },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "preallocation", required_argument, NULL, OPT_PREALLOCATION },
        { "shrink", no_argument, NULL, OPT_SHRINK },
        { "quiet", no_argument, NULL, 'q' },
        { "object", required_argument, NULL, OPT_OBJECT },
        { NULL, 0, NULL, 0 },
    };
    static const char *const help[] = {
        "-f, --format FMT              format of FILE (default: probed)",
        "--image-opts                  FILE is an option string (key=value,...)",
        "--preallocation MODE          off, metadata, falloc or full for the new area",
        "--shrink                      allow a smaller size (the data past it is lost)",
        "-q, --quiet                   no \"Image resized.\" line",
        "--object OBJDEF               a secret for encrypted images",
        "-h, --help                    this help",
        NULL,
    };
    const char *fmt = NULL, *size_arg;
    int prealloc = KIMG_PREALLOC_OFF, relative = 0, c;
    bool quiet = false, shrink = false;
    bool image_opts = false;

    if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        return cmd_help("resize", optstring, longopts, help);
    }
    if (argc < 3) {
        return cmd_usage_error("resize", "Not enough arguments");
    }
    /* the size comes off the end first: "-1G" must not look like an option */
    size_arg = argv[--argc];
    while ((c = getopt_long(argc, argv, optstring, longopts, NULL)) != -1) {
        switch (c) {
        case 'f': fmt = optarg; break;
        case 'q': quiet = true; break;
        case 'h': return cmd_help("resize", optstring, longopts, help);
        case OPT_PREALLOCATION:
            prealloc = parse_prealloc(optarg);
            if (prealloc < 0) {
                fprintf(stderr, "kimg: Invalid preallocation mode '%s'\n", optarg);
                return 1;
            }
            break;
        case OPT_SHRINK: shrink = true; break;
        case OPT_OBJECT:
            if (cmd_object(optarg))
                return 1;
            break;
        case OPT_IMAGE_OPTS: image_opts = true; break;
        default: return cmd_bad_option("resize", argv, c);
        }
    }
    if (optind != argc - 1)
        return cmd_usage_error("resize", "Expecting image file name and size");
    const char *file = argv[optind];

    if (*size_arg == '+' || *size_arg == '-') {
        relative = *size_arg == '+' ? 1 : -1;
        size_arg++;
    }
    uint64_t n;
    if (*size_arg == '+' || *size_arg == '-' || kimg_parse_size(size_arg, &n) < 0) {
        /* qemu-img's first line; two more explain the suffixes */
        cmd_error("Parameter 'size' expects a non-negative number below 2^64");
        return 1;
    }

    struct kimg *img = image_opts ? cmd_open_image(file, true, fmt, KIMG_OPEN_RDWR, 0)
                                  : open_rw(file, fmt);
    if (!img)
        return 1;
    int64_t cur = (int64_t)kimg_size(img);
    /* qemu computes in int64_t: a huge size wraps negative */
    int64_t total = relative ? (int64_t)((uint64_t)cur + (uint64_t)relative * n) : (int64_t)n;
    const char *err = NULL;
    if (total <= 0)
        err = "New image size must be positive";
    else if (total <= cur && prealloc != KIMG_PREALLOC_OFF)
        err = "Preallocation can only be used for growing images";
    else if (total < cur && !shrink)
        err = "Use the --shrink option to perform a shrink operation.";
    if (err) {
        cmd_error("%s", err);
        kimg_close(img);
        return 1;
    }
    int ret = kimg_truncate(img, (uint64_t)total, (enum kimg_prealloc)prealloc);
    if (ret < 0) {
        cmd_fail(NULL, strerror(-ret));   /* qemu-img names no file here */
        kimg_close(img);
        return 1;
    }
    if (kimg_close(img) < 0)
        return cmd_fail(file, "close failed");
    if (!quiet)
        printf("Image resized.\n");
    return 0;
}
