/*
 * create.c — `kimg create`: qemu-img create's options, its "Formatting"
 * line and its `-o help` listing.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include "cmd.h"

/* Printed before the format checks its options and the file is made, as
 * qemu-img does: an option error follows it.  The size is the one asked
 * for (qemu-img shows size=1234 for an image it rounds up to 1536).  The
 * format says which options the line shows, in which order. */
static void print_formatting(const struct kimg_create_args *a)
{
    const struct kimg_shown_opt *list =
        kimg_driver_formatting_opts(kimg_find_driver(a->format));
    printf("Formatting '%s', fmt=%s", a->given_filename ? a->given_filename : a->filename,
           a->format);
    for (const struct kimg_shown_opt *o = list; o->name; o++) {
        const char *v = NULL;
        char buf[32];
        if (!strcmp(o->name, "size")) {
            snprintf(buf, sizeof(buf), "%" PRIu64, a->size);
            v = buf;
        } else if (!strcmp(o->name, "backing_file")) {
            v = a->backing_file ? a->backing_file : kimg_opts_get(a->opts, o->name);
        } else if (!strcmp(o->name, "backing_fmt")) {
            v = a->backing_format ? a->backing_format : kimg_opts_get(a->opts, o->name);
        } else {
            v = kimg_opts_get(a->opts, o->name);
            uint64_t n;
            if (v && o->is_size && kimg_parse_size(v, &n) == 0) {
                snprintf(buf, sizeof(buf), "%" PRIu64, n);
                v = buf;
            }
            if (!v)
                v = o->def;
        }
        if (v)
            printf(" %s=%s", o->name, v);
    }
    putchar('\n');
    fflush(stdout);
}

static int cmp_desc(const void *a, const void *b)
{
    return strcmp(((const struct kimg_optdesc *)a)->name,
                  ((const struct kimg_optdesc *)b)->name);
}

/* qemu-img's `-o help`: without a file name the format's own options
 * ("Supported FMT options:" and a note on the protocol level); with one,
 * the format's and the file protocol's merged ("Supported options:"). */
static int print_help(const char *fmt, bool with_file)
{
    const struct kimg_driver *drv = kimg_find_driver(fmt);
    static const char *const type_names[] = { "str", "size", "num", "bool (on/off)" };
    if (!drv) {
        fprintf(stderr, "kimg: Unknown file format '%s'\n", fmt);
        return 1;
    }
    /* without a file: the format's own, less what qemu has at the protocol */
    struct kimg_optdesc *all = with_file ? kimg_create_opts_merged(drv)
                                         : kimg_create_opts_own(drv);
    size_t n = 0;
    if (!all)
        return 1;
    while (all[n].name)
        n++;
    qsort(all, n, sizeof(*all), cmp_desc);
    if (with_file)
        printf("Supported options:\n");
    else
        printf("Supported %s options:\n", fmt);
    for (size_t i = 0; i < n; i++) {
        char buf[64];
        snprintf(buf, sizeof(buf), "%s=<%s>", all[i].name, type_names[all[i].type]);
        printf("  %-22s - %s\n", buf, all[i].help);
    }
    if (!with_file)
        printf("\nThe protocol level may support further options.\n"
               "Specify the target filename to include those options.\n");
    free(all);
    return 0;
}

int cmd_create(int argc, char **argv)
{
    /* QEMU 10.1's long names; -B is 10.1's letter for the backing
     * format, -F (7.2's) keeps working */
    static const char optstring[] = ":F:B:b:f:ho:qu";
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "format", required_argument, NULL, 'f' },
        { "options", required_argument, NULL, 'o' },
        { "backing", required_argument, NULL, 'b' },
        { "backing-format", required_argument, NULL, 'B' },
        { "backing-unsafe", no_argument, NULL, 'u' },
        { "quiet", no_argument, NULL, 'q' },
        { "object", required_argument, NULL, OPT_OBJECT },
        { NULL, 0, NULL, 0 },
    };
    static const char *const help[] = {
        "-f, --format FMT              format of the new image (default: raw)",
        "-o, --options OPTS            format options, key=value,... ('-o help' lists them)",
        "-b, --backing BACKING_FILE    create a copy-on-write overlay of BACKING_FILE",
        "-B, -F, --backing-format FMT  format of BACKING_FILE (-F: qemu-img 7.2's letter)",
        "-u, --backing-unsafe          do not fail when BACKING_FILE cannot be opened",
        "-q, --quiet                   no \"Formatting\" line",
        "--object OBJDEF               a secret for encryption (secret,id=ID,file=PATH)",
        "-h, --help                    this help",
        NULL,
    };
    struct kimg_create_args a = { .format = "raw" };
    bool quiet = false;
    int c, ret;

    while ((c = getopt_long(argc, argv, optstring, longopts, NULL)) != -1) {
        switch (c) {
        case 'F':
        case 'B': a.backing_format = optarg; break;
        case 'b': a.backing_file = optarg; break;
        case 'f': a.format = optarg; break;
        case 'u': a.unsafe = true; break;
        case 'q': quiet = true; break;
        case 'o':
            if (kimg_opts_parse(&a.opts, optarg) < 0) {
                kimg_opts_free(a.opts);
                return cmd_fail(NULL, "Invalid option list");
            }
            break;
        case 'h':
            kimg_opts_free(a.opts);
            return cmd_help("create", optstring, longopts, help);
        case OPT_OBJECT:
            if (cmd_object(optarg))
                return 1;
            break;
        default: return cmd_bad_option("create", argv, c);
        }
    }
    if (kimg_opts_wants_help(a.opts)) {
        ret = print_help(a.format, optind < argc);
        kimg_opts_free(a.opts);
        return ret;
    }
    if (optind >= argc) {
        kimg_opts_free(a.opts);
        return cmd_usage_error("create", "Expecting image file name");
    }
    a.filename = argv[optind++];
    if (optind < argc) {
        int r = kimg_parse_size(argv[optind], &a.size);
        if (r < 0 || a.size > INT64_MAX) {
            if (r == -ERANGE || (r == 0 && a.size > INT64_MAX))
                fprintf(stderr, "kimg: Invalid image size specified. Must be between 0 and %lld.\n",
                        (long long)INT64_MAX);
            else
                /* qemu-img's first line; its second names the suffixes */
                cmd_error("Invalid image size specified. You may use k, M, G, T, P "
                          "or E suffixes for");
            kimg_opts_free(a.opts);
            return 1;
        }
        a.size_given = true;
        optind++;
    }
    if (optind != argc) {
        kimg_opts_free(a.opts);
        return cmd_usage_error("create", "Unexpected argument: %s", argv[optind]);
    }
    if (!quiet)
        a.on_formatting = print_formatting;
    ret = kimg_create(&a);
    if (ret < 0)
        cmd_fail(a.filename, strerror(-ret));
    kimg_opts_free(a.opts);
    return ret < 0 ? 1 : 0;
}
