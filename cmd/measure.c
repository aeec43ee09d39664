/*
 * measure.c — `kimg measure`: the size a new image of format -O (raw by
 * default) created with -o options needs, for --size N bytes or for the
 * content of an image, printed as qemu-img 7.2 prints it ("required
 * size: N" ...; JSON keys in its order) with its checks, in its order.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include "cmd.h"

/* Options of qemu's file protocol that qemu-img accepts with any format;
 * they change no figure. */
static const struct kimg_optdesc protocol_opts[] = {
    { "nocow", KIMG_OPT_BOOL, NULL },
    { "extent_size_hint", KIMG_OPT_SIZE, NULL },
};
#define N_PROTOCOL_OPTS (sizeof(protocol_opts) / sizeof(protocol_opts[0]))

static bool is_protocol_opt(const char *key)
{
    for (size_t i = 0; i < N_PROTOCOL_OPTS; i++)
        if (!strcmp(key, protocol_opts[i].name))
            return true;
    return false;
}

/* Parse the -o strings (in order) and check them against DRV's create
 * options plus the protocol ones; *OUT gets them without the protocol
 * ones.  0, or -errno with a message set. */
static int build_opts(const struct kimg_driver *drv, char **texts, int n,
                      struct kimg_opts **out)
{
    struct kimg_opts *all = NULL, *kept = NULL;
    struct kimg_optdesc *desc = NULL;
    size_t nd = 0;
    int ret = 0;

    *out = NULL;
    if (n == 0)
        return 0;
    for (int i = 0; i < n && ret == 0; i++)
        ret = kimg_opts_parse(&all, texts[i]);
    if (ret < 0)
        goto out;
    const struct kimg_optdesc *own = kimg_driver_create_opts(drv);
    while (own[nd].name)
        nd++;
    desc = calloc(nd + N_PROTOCOL_OPTS + 1, sizeof(*desc));
    ret = -ENOMEM;
    if (!desc)
        goto out;
    memcpy(desc, own, nd * sizeof(*desc));
    memcpy(desc + nd, protocol_opts, sizeof(protocol_opts));
    ret = kimg_opts_validate(all, desc, kimg_driver_name(drv));
    if (ret < 0)
        goto out;
    ret = kimg_opts_parse(&kept, "");       /* an empty list, not NULL */
    for (int i = 0; i < kimg_opts_count(all) && ret == 0; i++)
        if (!is_protocol_opt(kimg_opts_key(all, i)))
            ret = kimg_opts_set(&kept, kimg_opts_key(all, i), kimg_opts_value(all, i));
out:
    free(desc);
    kimg_opts_free(all);
    if (ret < 0)
        kimg_opts_free(kept);
    else
        *out = kept;
    return ret;
}

/* -l: "snapshot.id=ID,snapshot.name=NAME" (either part) or an ID or name. */
static int load_snapshot(struct kimg *img, const char *arg)
{
    int ret;
    if (!kimg_can_load_snapshot(img)) {
        fprintf(stderr, "kimg: Failed to load snapshot: Block format '%s' used by device '' "
                "does not support temporarily loading internal snapshots\n", kimg_format_name(img));
        return -ENOTSUP;
    }
    if (strncmp(arg, "snapshot.", 9) != 0) {
        /* an ID, else a name (qemu's load_tmp_by_id_or_name) */
        ret = kimg_snapshot_load(img, arg, NULL);
        if (ret == -ENOENT) {
            kimg_clear_error();
            ret = kimg_snapshot_load(img, NULL, arg);
        }
    } else {
        struct kimg_opts *o = NULL;
        ret = kimg_opts_parse(&o, arg);
        for (int i = 0; ret == 0 && i < kimg_opts_count(o); i++)
            if (strcmp(kimg_opts_key(o, i), "snapshot.id") &&
                strcmp(kimg_opts_key(o, i), "snapshot.name"))
                ret = kimg_fail(-EINVAL, "Invalid parameter '%s'", kimg_opts_key(o, i));
        if (ret < 0) {
            kimg_opts_free(o);
            kimg_clear_error();
            cmd_error("Failed in parsing snapshot param '%s'", arg);
            return -EINVAL;
        }
        ret = kimg_snapshot_load(img, kimg_opts_get(o, "snapshot.id"),
                                 kimg_opts_get(o, "snapshot.name"));
        kimg_opts_free(o);
    }
    if (ret < 0) {
        const char *msg = kimg_last_error();
        cmd_error("Failed to load snapshot: %s", msg ? msg : strerror(-ret));
        kimg_clear_error();
    }
    return ret;
}

static int parse_size_arg(const char *arg, uint64_t *out)
{
    int r = kimg_parse_size(arg, out);
    if (r == -ERANGE || (r == 0 && *out > INT64_MAX)) {
        fprintf(stderr, "kimg: Invalid image size specified. Must be between 0 and %lld.\n",
                (long long)INT64_MAX);
        return -1;
    }
    if (r < 0) {
        /* qemu-img's first line; its second names the suffixes */
        cmd_error("Invalid image size specified. You may use k, M, G, T, P or E suffixes for");
        return -1;
    }
    return 0;
}

static void print_result(const struct kimg_measure *m, enum output_format output)
{
    if (output == OUTPUT_JSON) {
        /* qemu-img's key order (its dictionary's, not the schema's);
         * its JSON numbers are signed 64-bit: 2^63 prints negative */
        printf("{\n");
        if (m->has_bitmaps)
            printf("    \"bitmaps\": %" PRId64 ",\n", (int64_t)m->bitmaps);
        printf("    \"required\": %" PRId64 ",\n", (int64_t)m->required);
        printf("    \"fully-allocated\": %" PRId64 "\n}\n", (int64_t)m->fully_allocated);
        return;
    }
    printf("required size: %" PRIu64 "\n", m->required);
    printf("fully allocated size: %" PRIu64 "\n", m->fully_allocated);
    if (m->has_bitmaps)
        printf("bitmaps size: %" PRIu64 "\n", m->bitmaps);
}

int cmd_measure(int argc, char **argv)
{
    enum { OPT_SIZE = OPT_HELP + 1 };
    /* QEMU 10.1's long names and its -s for --size */
    static const char optstring[] = ":hf:O:o:l:Us:";
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "source-format", required_argument, NULL, 'f' },
        { "format", required_argument, NULL, 'f' },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "source-image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "snapshot", required_argument, NULL, 'l' },
        { "target-format", required_argument, NULL, 'O' },
        { "target-format-options", required_argument, NULL, 'o' },
        { "options", required_argument, NULL, 'o' },
        { "force-share", no_argument, NULL, 'U' },
        { "output", required_argument, NULL, OPT_OUTPUT },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "size", required_argument, NULL, OPT_SIZE },
        { "untrusted", no_argument, NULL, OPT_UNTRUSTED },
        { NULL, 0, NULL, 0 },
    };
    static const char *const help[] = {
        "-f, --format, --source-format FMT  format of FILE (default: probed)",
        "--image-opts, --source-image-opts  FILE is an option string (key=value,...)",
        "-l, --snapshot SNAPSHOT       measure this internal snapshot of FILE",
        "-O, --target-format FMT       format to measure for (default: raw)",
        "-o, --options, --target-format-options OPTS  its creation options",
        "-U, --force-share             open without taking the image's locks",
        "--output human|json           output format (default: human)",
        "--object OBJDEF               a secret for encrypted images",
        "-s, --size SIZE               measure a new image of SIZE instead of FILE",
        "--untrusted                   treat FILE as hostile (no backing files)",
        "-h, --help                    this help",
        NULL,
    };
    const char *fmt = NULL, *out_fmt = "raw", *snapshot = NULL, *filename = NULL;
    enum output_format output = OUTPUT_HUMAN;
    char **otexts = NULL;
    int n_otexts = 0, c, rc = 1;
    unsigned flags = 0;
    uint64_t size = 0;
    bool has_size = false;
    bool image_opts = false;
    struct kimg *src = NULL;
    struct kimg_opts *opts = NULL;
    struct kimg_measure m;

    otexts = calloc((size_t)argc, sizeof(*otexts));
    if (!otexts)
        return cmd_fail(NULL, strerror(ENOMEM));
    while ((c = getopt_long(argc, argv, optstring, longopts, NULL)) != -1) {
        switch (c) {
        case 'f': fmt = optarg; break;
        case 'O': out_fmt = optarg; break;
        case 'o': otexts[n_otexts++] = optarg; break;
        case 'l': snapshot = optarg; break;
        case 'U': flags |= KIMG_OPEN_SHARE; break;
        case OPT_UNTRUSTED: flags |= KIMG_OPEN_UNTRUSTED; break;
        case OPT_OUTPUT:
            if (parse_output_format(optarg, &output) < 0)
                goto out;
            break;
        case 's':
        case OPT_SIZE:
            if (parse_size_arg(optarg, &size) < 0)
                goto out;
            has_size = true;
            break;
        case 'h': rc = cmd_help("measure", optstring, longopts, help); goto out;
        case OPT_OBJECT:
            if (cmd_object(optarg)) {
                rc = 1;
                goto out;
            }
            break;
        case OPT_IMAGE_OPTS: image_opts = true; break;
        default: rc = cmd_bad_option("measure", argv, c); goto out;
        }
    }
    if (argc - optind > 1) {
        fprintf(stderr, "kimg: At most one filename argument is allowed.\n");
        goto out;
    }
    if (argc - optind == 1)
        filename = argv[optind];
    if (!filename && (fmt || snapshot)) {
        fprintf(stderr, "kimg: --image-opts, -f, and -l require a filename argument.\n");
        goto out;
    }
    if (filename && has_size) {
        fprintf(stderr, "kimg: --size N cannot be used together with a filename.\n");
        goto out;
    }
    if (!filename && !has_size) {
        fprintf(stderr, "kimg: Either --size N or one filename must be specified.\n");
        goto out;
    }

    if (filename) {
        src = cmd_open_image(filename, image_opts, fmt, flags, 0);   /* an OVA: its first disk */
        if (!src)
            goto out;
        if (snapshot && load_snapshot(src, snapshot) < 0)
            goto out;
    }

    const struct kimg_driver *drv = kimg_find_driver(out_fmt);
    if (!drv) {
        if (kimg_foreign_measure(out_fmt) == 0)
            kimg_error("Unknown file format '%s'", out_fmt);
        cmd_fail(NULL, NULL);
        goto out;
    }
    if (build_opts(drv, otexts, n_otexts, &opts) < 0) {
        cmd_fail(NULL, NULL);
        goto out;
    }
    if (kimg_measure(kimg_driver_name(drv), opts, size, src, &m) < 0) {
        cmd_fail(NULL, NULL);
        goto out;
    }
    print_result(&m, output);
    rc = 0;
out:
    kimg_opts_free(opts);
    if (src)
        kimg_close(src);
    free(otexts);
    return rc;
}
