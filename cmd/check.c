/*
 * check.c — `kimg check`: qemu-img check's report (human or JSON), repair
 * modes (-r leaks|all) with the re-check after a repair, and its exit
 * codes: 0 clean, 1 check not completed, 2 corruptions, 3 leaks only,
 * 63 the format has no check.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include "cmd.h"

static void print_json(const char *file, const char *fmt, const struct kimg_check *r)
{
    struct kimg_jv *o = kimg_jv_object();
    kimg_jv_add_str(o, "filename", file);
    kimg_jv_add_str(o, "format", fmt);
    kimg_jv_add_uint(o, "check-errors", r->check_errors);
    if (r->image_end_offset)
        kimg_jv_add_uint(o, "image-end-offset", r->image_end_offset);
    if (r->corruptions)
        kimg_jv_add_uint(o, "corruptions", r->corruptions);
    if (r->leaks)
        kimg_jv_add_uint(o, "leaks", r->leaks);
    if (r->corruptions_fixed)
        kimg_jv_add_uint(o, "corruptions-fixed", r->corruptions_fixed);
    if (r->leaks_fixed)
        kimg_jv_add_uint(o, "leaks-fixed", r->leaks_fixed);
    if (r->total_clusters)
        kimg_jv_add_uint(o, "total-clusters", r->total_clusters);
    if (r->allocated_clusters)
        kimg_jv_add_uint(o, "allocated-clusters", r->allocated_clusters);
    if (r->fragmented_clusters)
        kimg_jv_add_uint(o, "fragmented-clusters", r->fragmented_clusters);
    if (r->compressed_clusters)
        kimg_jv_add_uint(o, "compressed-clusters", r->compressed_clusters);
    kimg_jv_print(stdout, o, 0);
    printf("\n");
    kimg_jv_free(o);
}

static void print_human(const struct kimg_check *r, bool quiet)
{
    if (quiet)
        return;
    if (!(r->corruptions || r->leaks || r->check_errors)) {
        printf("No errors were found on the image.\n");
    } else {
        if (r->corruptions)
            printf("\n%" PRIu64 " errors were found on the image.\n"
                   "Data may be corrupted, or further writes to the image may corrupt it.\n",
                   r->corruptions);
        if (r->leaks)
            printf("\n%" PRIu64 " leaked clusters were found on the image.\n"
                   "This means waste of disk space, but no harm to data.\n", r->leaks);
        if (r->check_errors)
            printf("\n%" PRIu64 " internal errors have occurred during the check.\n",
                   r->check_errors);
    }
    if (r->total_clusters && r->allocated_clusters)
        printf("%" PRIu64 "/%" PRIu64 " = %0.2f%% allocated, %0.2f%% fragmented, "
               "%0.2f%% compressed clusters\n",
               r->allocated_clusters, r->total_clusters,
               r->allocated_clusters * 100.0 / r->total_clusters,
               r->fragmented_clusters * 100.0 / r->allocated_clusters,
               r->compressed_clusters * 100.0 / r->allocated_clusters);
    if (r->image_end_offset)
        printf("Image end offset: %" PRIu64 "\n", r->image_end_offset);
}

int cmd_check(int argc, char **argv)
{
    /* QEMU 10.1's long names for qemu-img's options */
    static const char optstring[] = ":hf:r:T:qU";
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "format", required_argument, NULL, 'f' },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "cache", required_argument, NULL, 'T' },
        { "repair", required_argument, NULL, 'r' },
        { "force-share", no_argument, NULL, 'U' },
        { "output", required_argument, NULL, OPT_OUTPUT },
        { "quiet", no_argument, NULL, 'q' },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "untrusted", no_argument, NULL, OPT_UNTRUSTED },
        { "disk", required_argument, NULL, OPT_DISK },
        { NULL, 0, NULL, 0 },
    };
    static const char *const help[] = {
        "-f, --format FMT              format of FILE (default: probed)",
        "--image-opts                  FILE is an option string (key=value,...)",
        "-T, --cache MODE              cache mode (accepted; the check reads through)",
        "-r, --repair leaks|all        repair leaks, or every error (opens read-write)",
        "-U, --force-share             open without taking the image's locks",
        "--output human|json           output format (default: human)",
        "-q, --quiet                   no output, the exit code only",
        "--object OBJDEF               a secret for encrypted images",
        "--untrusted                   treat FILE as hostile (no backing files)",
        "--disk N                      the Nth disk of an OVA archive",
        "-h, --help                    this help",
        NULL,
    };
    const char *fmt = NULL;
    enum output_format output = OUTPUT_HUMAN;
    unsigned flags = 0, fix = 0, disk = 0;
    bool quiet = false;
    bool image_opts = false;
    int c;

    while ((c = getopt_long(argc, argv, optstring, longopts, NULL)) != -1) {
        switch (c) {
        case 'f': fmt = optarg; break;
        case 'r':
            if (!strcmp(optarg, "leaks"))
                fix = KIMG_CHECK_FIX_LEAKS;
            else if (!strcmp(optarg, "all"))
                fix = KIMG_CHECK_FIX_LEAKS | KIMG_CHECK_FIX_ERRORS;
            else
                return cmd_usage_error("check", "Unknown option value for -r "
                                       "(expecting 'leaks' or 'all'): %s", optarg);
            break;
        case 'T': break;   /* cache mode: accepted, the check reads through */
        case 'q': quiet = true; break;
        case 'U': flags |= KIMG_OPEN_SHARE; break;
        case OPT_UNTRUSTED: flags |= KIMG_OPEN_UNTRUSTED; break;
        case OPT_OUTPUT:
            if (parse_output_format(optarg, &output) < 0)
                return 1;
            break;
        case OPT_DISK:
            if (cmd_parse_disk(optarg, &disk) < 0)
                return 1;
            break;
        case 'h': return cmd_help("check", optstring, longopts, help);
        case OPT_OBJECT:
            if (cmd_object(optarg))
                return 1;
            break;
        case OPT_IMAGE_OPTS: image_opts = true; break;
        default: return cmd_bad_option("check", argv, c);
        }
    }
    if (optind != argc - 1)
        return cmd_usage_error("check", "Expecting one image file name");
    const char *file = argv[optind];
    if (fix && (flags & KIMG_OPEN_SHARE))
        return cmd_usage_error("check", "Could not open '%s': force-share=on can only be "
                               "used with read-only images", file);

    /* The check looks at this layer's metadata only: no backing file. */
    flags |= KIMG_OPEN_NO_BACKING | KIMG_OPEN_REPAIR;
    if (fix)
        flags |= KIMG_OPEN_RDWR;
    struct kimg *img = cmd_open_image(file, image_opts, fmt, flags, disk);
    if (!img)
        return 1;

    /* -q quiets the report on stdout only: the per-problem lines and the
     * errors still go to stderr, as qemu-img prints them */
    struct kimg_check r = { .log = stderr };
    int ret = kimg_check(img, &r, fix);
    if (ret == -ENOTSUP) {
        kimg_close(img);
        kimg_clear_error();
        fprintf(stderr, "kimg: This image format does not support checks\n");
        return 63;
    }
    if (ret == 0 && (r.corruptions_fixed || r.leaks_fixed)) {
        uint64_t cf = r.corruptions_fixed, lf = r.leaks_fixed;
        if (output == OUTPUT_HUMAN && !quiet)
            printf("The following inconsistencies were found and repaired:\n\n"
                   "    %" PRIu64 " leaked clusters\n    %" PRIu64 " corruptions\n\n"
                   "Double checking the fixed image now...\n", lf, cf);
        memset(&r, 0, sizeof(r));
        r.log = stderr;
        ret = kimg_check(img, &r, 0);
        r.corruptions_fixed = cf;
        r.leaks_fixed = lf;
    }
    /* the report is printed whenever the check ran, even with internal
     * errors, then those turn the exit code into 1 (as qemu-img) */
    if (ret == 0) {
        if (output == OUTPUT_JSON)
            print_json(file, kimg_format_name(img), &r);
        else
            print_human(&r, quiet);
    }
    if (ret < 0 || r.check_errors) {
        if (ret < 0)
            cmd_error("Check failed: %s", kimg_last_error() ? kimg_last_error()
                                                            : strerror(-ret));
        else
            fprintf(stderr, "kimg: Check failed\n");
        kimg_close(img);
        return 1;
    }
    if (kimg_close(img) < 0)
        return cmd_fail(file, "close failed");
    if (r.corruptions)
        return 2;
    if (r.leaks)
        return 3;
    return 0;
}
