/*
 * bitmap.c — `kimg bitmap`: qemu-img bitmap's options and messages.
 * (--merge SOURCE | --add | --remove | --clear | --enable | --disable)...
 * [-b SOURCE_FILE [-F SOURCE_FMT]] [-g GRANULARITY] [--object OBJ]
 * [--image-opts | -f FMT] FILENAME BITMAP.  The operations run in the
 * order given, each one saved on its own (kimg_bitmap_change); the first
 * that fails stops the rest, the ones before it stay, as in qemu-img.
 * With --add, --disable also makes the added bitmap disabled (and still
 * runs where it stands: qemu-img's rule).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "cmd.h"

enum { OPT_ADD = 512, OPT_REMOVE, OPT_CLEAR, OPT_ENABLE, OPT_DISABLE, OPT_MERGE };

#define MAX_OPS 64

static const char *action_name(enum kimg_bitmap_action a)
{
    static const char *const names[] = { "add", "remove", "clear", "enable", "disable",
                                         "merge" };
    return names[a];
}

/* -g: qemu-img's cvtnum checks; the range is the operation's. */
static int parse_granularity(const char *arg, uint64_t *out)
{
    if (kimg_parse_size(arg, out) < 0) {
        kimg_clear_error();
        if (arg[0] == '-' || strtoull(arg, NULL, 10) > (uint64_t)INT64_MAX ||
            (strlen(arg) > 1 && strchr("PE", arg[strlen(arg) - 1])))
            cmd_error("Invalid granularity specified. Must be between 0 and %lld.",
                      (long long)INT64_MAX);
        else
            cmd_error("Invalid granularity specified. You may use k, M, G, T, P or E "
                      "suffixes for kilobytes, megabytes, gigabytes, terabytes, petabytes "
                      "and exabytes.");
        return -1;
    }
    if (*out > (uint64_t)INT64_MAX) {
        cmd_error("Invalid granularity specified. Must be between 0 and %lld.",
                  (long long)INT64_MAX);
        return -1;
    }
    return 0;
}

int cmd_bitmap(int argc, char **argv)
{
    static const char optstring[] = ":hf:b:F:g:";
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "add", no_argument, NULL, OPT_ADD },
        { "remove", no_argument, NULL, OPT_REMOVE },
        { "clear", no_argument, NULL, OPT_CLEAR },
        { "enable", no_argument, NULL, OPT_ENABLE },
        { "disable", no_argument, NULL, OPT_DISABLE },
        { "merge", required_argument, NULL, OPT_MERGE },
        { "granularity", required_argument, NULL, 'g' },
        { "source-file", required_argument, NULL, 'b' },
        { "source-format", required_argument, NULL, 'F' },
        { "format", required_argument, NULL, 'f' },
        { NULL, 0, NULL, 0 },
    };
    static const char *const help[] = {
        "-f, --format FMT              format of FILE (default: probed)",
        "--image-opts                  FILE is an option string (key=value,...)",
        "--object OBJDEF               a secret for encrypted images",
        "--add                         create BITMAP (enabled unless --disable)",
        "-g, --granularity SIZE        granularity of the added bitmap",
        "--remove                      delete BITMAP",
        "--clear                       clear every bit of BITMAP",
        "--enable, --disable           start or stop recording writes in BITMAP",
        "--merge SOURCE                merge bitmap SOURCE into BITMAP",
        "-b, --source-file FILE        with --merge, SOURCE is in FILE",
        "-F, --source-format FMT       format of that FILE",
        "-h, --help                    this help",
        NULL,
    };
    struct kimg_bitmap_op ops[MAX_OPS];
    const char *fmt = NULL, *src_file = NULL, *src_fmt = NULL;
    uint64_t gran = 0;
    bool image_opts = false, add = false, disable = false, have_gran = false;
    int nops = 0, c;

    memset(ops, 0, sizeof(ops));
    while ((c = getopt_long(argc, argv, optstring, longopts, NULL)) != -1) {
        int a = -1;
        const char *src_name = NULL;
        switch (c) {
        case 'h': return cmd_help("bitmap", optstring, longopts, help);
        case 'f': fmt = optarg; break;
        case 'b': src_file = optarg; break;
        case 'F': src_fmt = optarg; break;
        case 'g':
            if (parse_granularity(optarg, &gran) < 0)
                return 1;
            have_gran = true;
            break;
        case OPT_OBJECT:
            if (cmd_object(optarg))
                return 1;
            break;
        case OPT_IMAGE_OPTS: image_opts = true; break;
        case OPT_ADD: a = KIMG_BITMAP_ADD; add = true; break;
        case OPT_REMOVE: a = KIMG_BITMAP_REMOVE; break;
        case OPT_CLEAR: a = KIMG_BITMAP_CLEAR; break;
        case OPT_ENABLE: a = KIMG_BITMAP_ENABLE; break;
        case OPT_DISABLE: a = KIMG_BITMAP_DISABLE; disable = true; break;
        case OPT_MERGE: a = KIMG_BITMAP_MERGE; src_name = optarg; break;
        default: return cmd_bad_option("bitmap", argv, c);
        }
        if (a >= 0) {
            if (nops == MAX_OPS)
                return cmd_usage_error("bitmap", "at most %d operations in one run", MAX_OPS);
            ops[nops].action = (enum kimg_bitmap_action)a;
            ops[nops++].src_name = src_name;
        }
    }
    if (!nops)
        return cmd_usage_error("bitmap", "Need at least one of --add, --remove, --clear, "
                               "--enable, --disable, or --merge");
    if (have_gran && !add)
        return cmd_usage_error("bitmap", "granularity only supported with --add");
    if (src_fmt && !src_file)
        return cmd_usage_error("bitmap", "-F only supported with -b");
    bool merge = false;
    for (int i = 0; i < nops; i++)
        merge |= ops[i].action == KIMG_BITMAP_MERGE;
    if (src_file && !merge)
        return cmd_usage_error("bitmap", "Merge bitmap source file only supported with "
                               "--merge");
    if (optind != argc - 2)
        return cmd_usage_error("bitmap", "Expecting filename and bitmap name");
    if (image_opts && fmt) {
        cmd_error("--image-opts and --format are mutually exclusive");
        return 1;
    }
    const char *file = argv[optind], *name = argv[optind + 1];

    struct kimg *img = cmd_open_image(file, image_opts, fmt, KIMG_OPEN_RDWR, 0);
    if (!img)
        return 1;
    struct kimg *src = NULL;
    if (src_file) {
        src = cmd_open(src_file, src_fmt, 0);
        if (!src) {
            kimg_close(img);
            return 1;
        }
    }
    int ret = 0;
    for (int i = 0; i < nops && !ret; i++) {
        struct kimg_bitmap_op *op = &ops[i];
        op->name = name;
        op->granularity = gran;
        op->disabled = op->action == KIMG_BITMAP_ADD && add && disable;
        op->src = src;
        if (kimg_bitmap_change(img, op) < 0) {
            const char *msg = kimg_last_error();
            cmd_error("Operation %s on bitmap %s failed: %s", action_name(op->action), name,
                      msg ? msg : "unknown error");
            kimg_clear_error();
            ret = 1;
        }
    }
    if (src)
        kimg_close(src);
    if (kimg_close(img) < 0 && ret == 0)
        ret = cmd_fail(file, "close failed");
    return ret;
}
