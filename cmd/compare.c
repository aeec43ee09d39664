/*
 * compare.c — `kimg compare`: options, opening the two images, and what
 * qemu-img prints for the result of the compare engine (img/compare.c).
 * Exit codes as qemu-img's: 0 equal, 1 different, 2 error opening, 3 error
 * checking allocation, 4 read error.  Errors are reported even with -q,
 * as qemu-img does.  --disk N and --disk2 N pick the disk of an OVA
 * archive given as filename1 and filename2 (as -f and -F their formats).
 */
#include <inttypes.h>
#include "cmd.h"

enum { CMP_EOPEN = 2 };

/* What qemu-img prints for result RET of C. */
static int report(const struct kimg_compare *c, int ret, bool quiet)
{
    if (ret == KIMG_COMPARE_DIFF && c->diff == KIMG_COMPARE_STRICT_SIZE) {
        if (!quiet)
            printf("Strict mode: Image size mismatch!\n");
        return ret;
    }
    if (c->tail && !quiet)
        printf("Warning: Image size mismatch!\n");
    if (ret == KIMG_COMPARE_DIFF) {
        if (quiet)
            return ret;
        if (c->diff == KIMG_COMPARE_STRICT_STATUS)
            printf("Strict mode: Offset %" PRIu64 " block status mismatch!\n", c->offset);
        else
            printf("Content mismatch at offset %" PRIu64 "!\n", c->offset);
    } else if (ret != KIMG_COMPARE_SAME) {
        fflush(stdout);
        fprintf(stderr, "kimg: %s\n", kimg_last_error() ? kimg_last_error() : "I/O error");
    } else if (!quiet) {
        printf("Images are identical.\n");
    }
    return ret;
}

int cmd_compare(int argc, char **argv)
{
    /* QEMU 10.1's long names for qemu-img's options */
    static const char optstring[] = ":hf:F:T:pqsU";
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "a-format", required_argument, NULL, 'f' },
        { "b-format", required_argument, NULL, 'F' },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "strict", no_argument, NULL, 's' },
        { "cache", required_argument, NULL, 'T' },
        { "force-share", no_argument, NULL, 'U' },
        { "progress", no_argument, NULL, 'p' },
        { "quiet", no_argument, NULL, 'q' },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "untrusted", no_argument, NULL, OPT_UNTRUSTED },
        { "disk", required_argument, NULL, OPT_DISK },
        { "disk2", required_argument, NULL, OPT_DISK2 },
        { NULL, 0, NULL, 0 },
    };
    static const char *const help[] = {
        "-f, --a-format FMT            format of FILE1 (default: probed)",
        "-F, --b-format FMT            format of FILE2 (default: probed)",
        "--image-opts                  FILE1 and FILE2 are option strings (key=value,...)",
        "-s, --strict                  sizes and allocation must match too",
        "-T, --cache MODE              cache mode (accepted)",
        "-U, --force-share             open without taking the images' locks",
        "-p, --progress                progress (accepted; the comparison prints none)",
        "-q, --quiet                   no output, the exit code only",
        "--object OBJDEF               a secret for encrypted images",
        "--untrusted                   treat both files as hostile (no backing files)",
        "--disk N, --disk2 N           the Nth disk of FILE1 / FILE2 when an OVA archive",
        "-h, --help                    this help",
        NULL,
    };
    const char *fmt1 = NULL, *fmt2 = NULL;
    unsigned flags = 0, disk1 = 0, disk2 = 0;
    bool strict = false, quiet = false, image_opts = false;
    int c;

    while ((c = getopt_long(argc, argv, optstring, longopts, NULL)) != -1) {
        switch (c) {
        case 'f': fmt1 = optarg; break;
        case 'F': fmt2 = optarg; break;
        case 'T': break;
        case 'p': break;   /* progress: the comparison is quick; accepted */
        case 'q': quiet = true; break;
        case 's': strict = true; break;
        case 'U': flags |= KIMG_OPEN_SHARE; break;
        case OPT_UNTRUSTED: flags |= KIMG_OPEN_UNTRUSTED; break;
        case OPT_DISK:
        case OPT_DISK2:
            if (cmd_parse_disk(optarg, c == OPT_DISK ? &disk1 : &disk2) < 0)
                return CMP_EOPEN;
            break;
        case 'h': return cmd_help("compare", optstring, longopts, help);
        case OPT_OBJECT:
            if (cmd_object(optarg))
                return CMP_EOPEN;   /* qemu-img compare exits 2 here */
            break;
        case OPT_IMAGE_OPTS: image_opts = true; break;
        default:
            return cmd_bad_option("compare", argv, c);
        }
    }
    if (optind != argc - 2)
        return cmd_usage_error("compare", "Expecting two image file names");
    struct kimg_compare cmp = { .name_a = argv[optind], .name_b = argv[optind + 1],
                                .strict = strict };
    int ret = CMP_EOPEN;
    cmp.a = cmd_open_image(cmp.name_a, image_opts, fmt1, flags, disk1);
    if (!cmp.a)
        return CMP_EOPEN;
    cmp.b = cmd_open_image(cmp.name_b, image_opts, fmt2, flags, disk2);
    if (cmp.b) {
        kimg_clear_error();
        ret = report(&cmp, kimg_compare_run(&cmp), quiet);
        kimg_close(cmp.b);
    }
    kimg_close(cmp.a);
    return ret;
}
