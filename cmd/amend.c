/*
 * amend.c — `kimg amend`: qemu-img amend's options (-o, repeated -o
 * accumulate; -f, -t, -p, -q, --force), its `-o help` listing of the amend
 * options, option errors in qemu-img's order and words (an option only
 * creation takes is named as such), then the driver's amend.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "cmd.h"

enum { OPT_FORCE = OPT_HELP + 200 };

static int cmp_desc(const void *a, const void *b)
{
    return strcmp(((const struct kimg_optdesc *)a)->name,
                  ((const struct kimg_optdesc *)b)->name);
}

static int print_help(const char *fmt)
{
    static const char *const type_names[] = { "str", "size", "num", "bool (on/off)" };
    const struct kimg_driver *drv = kimg_find_driver(fmt);
    const struct kimg_optdesc *desc;
    struct kimg_optdesc sorted[32];
    size_t n = 0;

    if (!drv) {
        fprintf(stderr, "kimg: Unknown file format '%s'\n", fmt);
        return 1;
    }
    if (!(desc = kimg_driver_amend_opts(drv))) {
        fprintf(stderr, "kimg: Format driver '%s' does not support option amendment\n", fmt);
        return 1;
    }
    while (desc[n].name && n < sizeof(sorted) / sizeof(sorted[0])) {
        sorted[n] = desc[n];
        n++;
    }
    qsort(sorted, n, sizeof(*sorted), cmp_desc);
    printf("Amend options for '%s':\n", fmt);
    for (size_t i = 0; i < n; i++) {
        char buf[64];
        snprintf(buf, sizeof(buf), "%s=<%s>", sorted[i].name, type_names[sorted[i].type]);
        printf("  %-22s - %s\n", buf, sorted[i].help);
    }
    return 0;
}

/* Options a format does not amend: qemu-img's message (its first line;
 * for an option only creation takes it adds "This option is only
 * supported for image creation"). */
static int check_options(const struct kimg_driver *drv, const struct kimg_opts *opts)
{
    if (kimg_opts_validate(opts, kimg_driver_amend_opts(drv), kimg_driver_name(drv)) == 0)
        return 0;
    cmd_fail(NULL, "Invalid option");
    return -EINVAL;
}

int cmd_amend(int argc, char **argv)
{
    /* QEMU 10.1's long names for qemu-img's options */
    static const char optstring[] = ":ho:f:t:pq";
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "options", required_argument, NULL, 'o' },
        { "format", required_argument, NULL, 'f' },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "cache", required_argument, NULL, 't' },
        { "force", no_argument, NULL, OPT_FORCE },
        { "progress", no_argument, NULL, 'p' },
        { "quiet", no_argument, NULL, 'q' },
        { "object", required_argument, NULL, OPT_OBJECT },
        { NULL, 0, NULL, 0 },
    };
    static const char *const help[] = {
        "-o, --options OPTS            the options to change, key=value,... (required; '-o help')",
        "-f, --format FMT              format of FILE (default: probed)",
        "--image-opts                  FILE is an option string (key=value,...)",
        "-t, --cache MODE              cache mode (default: writeback)",
        "--force                       allow unsafe changes, as qemu-img's --force",
        "-p, --progress                progress lines as qemu-img's",
        "-q, --quiet                   no progress",
        "--object OBJDEF               a secret for encrypted images",
        "-h, --help                    this help",
        NULL,
    };
    struct kimg_opts *opts = NULL;
    const char *fmt = NULL, *cache = "writeback", *file = NULL;
    bool progress = false, quiet = false, force = false;
    unsigned flags = KIMG_OPEN_RDWR;
    bool image_opts = false;
    struct kimg *img = NULL;
    int c, ret = 1;

    while ((c = getopt_long(argc, argv, optstring, longopts, NULL)) != -1) {
        switch (c) {
        case 'o':
            if (!*optarg) {
                fprintf(stderr, "kimg: Invalid option list: %s\n", optarg);
                kimg_opts_free(opts);
                return 1;
            }
            if (kimg_opts_parse(&opts, optarg) < 0) {
                kimg_opts_free(opts);
                return cmd_fail(NULL, "Invalid option list");
            }
            break;
        case 'f': fmt = optarg; break;
        case 't': cache = optarg; break;
        case 'p': progress = true; break;
        case 'q': quiet = true; break;
        case OPT_FORCE: force = true; break;
        case 'h': kimg_opts_free(opts); return cmd_help("amend", optstring, longopts, help);
        case OPT_OBJECT:
            if (cmd_object(optarg)) {
                kimg_opts_free(opts);
                return 1;
            }
            break;
        case OPT_IMAGE_OPTS: image_opts = true; break;
        default:
            kimg_opts_free(opts);
            return cmd_bad_option("amend", argv, c);
        }
    }
    if (!opts)
        return cmd_usage_error("amend", "Must specify options (-o)");
    if (quiet)
        progress = false;
    if (fmt && kimg_opts_wants_help(opts)) {
        ret = print_help(fmt);
        goto out;
    }
    if (optind != argc - 1) {
        fprintf(stderr, "kimg: Expecting one image file name\n");
        goto out;
    }
    file = argv[optind];
    if (cmd_cache_flags(cache, "cache", &flags) < 0)
        goto out;
    flags |= KIMG_OPEN_RDWR;
    if (!(img = cmd_open_image(file, image_opts, fmt, flags, 0)))
        goto out;
    if (kimg_opts_wants_help(opts)) {
        ret = print_help(kimg_format_name(img));
        goto out;
    }
    const struct kimg_driver *drv = kimg_find_driver(kimg_format_name(img));
    if (!drv || !kimg_driver_amend_opts(drv)) {
        fprintf(stderr, "kimg: Format driver '%s' does not support option amendment\n",
                kimg_format_name(img));
        goto out;
    }
    if (check_options(drv, opts) < 0)
        goto out;
    if (progress)
        cmd_progress(NULL, 0, 1);
    int r = kimg_amend(img, opts, force);
    if (progress)
        cmd_progress(NULL, 1, 1);   /* as qemu-img, also after a failure */
    if (r < 0) {
        cmd_fail(NULL, strerror(-r));   /* qemu-img names no file here */
        goto out;
    }
    ret = 0;
out:
    if (progress)
        printf("\n");  /* qemu-img ends its progress output so, whatever happened */
    if (img && kimg_close(img) < 0 && ret == 0)
        ret = cmd_fail(file, "close failed");
    kimg_opts_free(opts);
    return ret;
}
