/*
 * map.c — `kimg map`: the allocation map through the backing chain, as
 * qemu-img map prints it (JSON: one object per line with start, length,
 * depth, present, zero, data and offset; human: the data extents and the
 * file they live in), with adjacent equal extents merged; with
 * KIMG_QEMU_OUTPUT=8.2 or later, QEMU 8.2's JSON: each entry says whether
 * its data is stored compressed (qcow2 clusters, VMDK grains), and
 * compressed and plain data do not merge.  An OVA's disk
 * (--disk N) is mapped as its member: offsets are in the member, as
 * qemu-img map gives them for the member once extracted.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include "cmd.h"

struct entry {
    uint64_t start, length, offset;
    int depth;
    bool present, zero, data, has_offset;
    bool compressed;            /* shown from QEMU 8.2's output on */
    const char *file;
};

/* qemu-img 8.2's output and later: "compressed" in JSON entries */
static bool show_compressed;

static bool mergeable(const struct entry *a, const struct entry *b)
{
    if (a->length == 0 || a->zero != b->zero || a->data != b->data ||
        a->depth != b->depth || a->present != b->present || a->has_offset != b->has_offset)
        return false;
    if (show_compressed && a->compressed != b->compressed)
        return false;
    if ((a->file == NULL) != (b->file == NULL) || (a->file && strcmp(a->file, b->file)))
        return false;
    if (a->has_offset && a->offset + a->length != b->offset)
        return false;
    return true;
}

/* Print E; returns -1 if it cannot be shown in the human format. */
static int dump(const struct entry *e, struct entry *next, enum output_format out, bool first)
{
    if (out == OUTPUT_JSON) {
        printf("%s{ \"start\": %" PRIu64 ", \"length\": %" PRIu64 ", \"depth\": %d,"
               " \"present\": %s, \"zero\": %s, \"data\": %s",
               first ? "[" : ",\n", e->start, e->length, e->depth,
               e->present ? "true" : "false", e->zero ? "true" : "false",
               e->data ? "true" : "false");
        if (show_compressed)
            printf(", \"compressed\": %s", e->compressed ? "true" : "false");
        if (e->has_offset)
            printf(", \"offset\": %" PRIu64, e->offset);
        putchar('}');
        return 0;
    }
    if (e->data && !e->has_offset) {
        fprintf(stderr, "kimg: File contains external, encrypted or compressed clusters.\n");
        return -1;
    }
    if (e->data && !e->zero) {
        printf("%#-16" PRIx64 "%#-16" PRIx64 "%#-16" PRIx64, e->start, e->length,
               e->has_offset ? e->offset : 0);
        kimg_print_for_terminal(stdout, e->file ? e->file : "");
        putchar('\n');
    }
    /* the human format does not tell zero, ZERO and ZERO|DATA apart:
     * fold them so more extents merge */
    if (next && (!next->data || next->zero)) {
        next->data = false;
        next->zero = true;
    }
    return 0;
}

/* A byte count as qemu-img's cvtnum: suffixes allowed, 0..INT64_MAX; its
 * two messages (on one line). */
static int parse_offset_arg(const char *arg, const char *what, uint64_t *out)
{
    int r = kimg_parse_size(arg, out);
    if (r == -ERANGE || (r == 0 && *out > INT64_MAX)) {
        fprintf(stderr, "kimg: Invalid %s specified. Must be between 0 and %lld.\n", what,
                (long long)INT64_MAX);
        return -ERANGE;
    }
    if (r < 0) {
        fprintf(stderr, "kimg: Invalid %s specified. You may use k, M, G, T, P or E suffixes for "
                "kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.\n", what);
        return -EINVAL;
    }
    return 0;
}

int cmd_map(int argc, char **argv)
{
    static const char optstring[] = ":f:s:l:hU";
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "format", required_argument, NULL, 'f' },
        { "output", required_argument, NULL, OPT_OUTPUT },
        { "force-share", no_argument, NULL, 'U' },
        { "untrusted", no_argument, NULL, OPT_UNTRUSTED },
        { "start-offset", required_argument, NULL, 's' },
        { "max-length", required_argument, NULL, 'l' },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "disk", required_argument, NULL, OPT_DISK },
        { NULL, 0, NULL, 0 },
    };
    static const char *const help[] = {
        "-f, --format FMT              format of FILE (default: probed)",
        "--output human|json           output format (default: human)",
        "-U, --force-share             open without taking the image's locks",
        "--untrusted                   treat FILE as hostile (no backing files)",
        "-s, --start-offset OFFSET     start at OFFSET (k, M, G suffixes)",
        "-l, --max-length LENGTH       map at most LENGTH bytes",
        "--object OBJDEF               a secret for encrypted images",
        "--image-opts                  FILE is an option string (key=value,...)",
        "--disk N                      the Nth disk of an OVA archive",
        "-h, --help                    this help",
        NULL,
    };
    const char *fmt = NULL;
    enum output_format output = OUTPUT_HUMAN;
    unsigned flags = 0, disk = 0;
    bool image_opts = false;
    uint64_t start = 0, max_len = UINT64_MAX;
    int c;

    while ((c = getopt_long(argc, argv, optstring, longopts, NULL)) != -1) {
        switch (c) {
        case 'f': fmt = optarg; break;
        case 'U': flags |= KIMG_OPEN_SHARE; break;
        case OPT_UNTRUSTED: flags |= KIMG_OPEN_UNTRUSTED; break;
        case OPT_OUTPUT:
            if (parse_output_format(optarg, &output) < 0)
                return 1;
            break;
        case 's':   /* qemu-img's short forms of the two options */
        case OPT_START_OFFSET:
            if (parse_offset_arg(optarg, "start offset", &start) < 0)
                return 1;
            break;
        case 'l':
        case OPT_MAX_LENGTH:
            if (parse_offset_arg(optarg, "max length", &max_len) < 0)
                return 1;
            break;
        case OPT_DISK:
            if (cmd_parse_disk(optarg, &disk) < 0)
                return 1;
            break;
        case 'h': return cmd_help("map", optstring, longopts, help);
        case OPT_OBJECT:
            if (cmd_object(optarg))
                return 1;
            break;
        case OPT_IMAGE_OPTS: image_opts = true; break;
        default: return cmd_bad_option("map", argv, c);
        }
    }
    if (optind != argc - 1)
        return cmd_usage_error("map", "Expecting one image file name");
    const char *file = argv[optind];
    show_compressed = kimg_qemu_output() >= 802;
    struct kimg *img = cmd_open_image(file, image_opts, fmt, flags, disk);
    if (!img)
        return 1;

    uint64_t size = kimg_size(img);
    uint64_t end = max_len < size - (start < size ? start : size) ? start + max_len : size;
    struct entry cur = { 0 };
    bool first = true;
    int ret = 0;

    if (output == OUTPUT_HUMAN)
        printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
    for (uint64_t off = start; off < end;) {
        struct kimg_extent e;
        uint64_t n = end - off < (1ull << 30) ? end - off : (1ull << 30);
        if (kimg_block_status(img, off, n, &e) < 0) {
            ret = cmd_fail(file, "cannot read the allocation status");
            break;
        }
        struct entry next = {
            .start = off, .length = e.length, .depth = e.depth,
            .present = e.flags & KIMG_BS_ALLOCATED, .zero = e.flags & KIMG_BS_ZERO,
            .data = e.flags & KIMG_BS_DATA, .compressed = e.flags & KIMG_BS_COMPRESSED,
            .has_offset = e.flags & KIMG_BS_OFFSET_VALID, .offset = e.offset,
            .file = (e.flags & KIMG_BS_OFFSET_VALID) ? e.file : NULL,
        };
        off += e.length;
        if (cur.length && mergeable(&cur, &next)) {
            cur.length += next.length;
            continue;
        }
        if (cur.length) {
            if (dump(&cur, &next, output, first) < 0) {
                ret = 1;
                break;
            }
            first = false;
        }
        cur = next;
    }
    if (ret == 0 && cur.length) {
        if (dump(&cur, NULL, output, first) < 0)
            ret = 1;
        first = false;
    }
    if (output == OUTPUT_JSON && ret == 0) {
        if (first)   /* nothing mapped: qemu-img prints one empty entry */
            printf("[{ \"start\": %" PRIu64 ", \"length\": 0, \"depth\": 0, \"present\": false,"
                   " \"zero\": false, \"data\": false%s}", start,
                   show_compressed ? ", \"compressed\": false" : "");
        printf("]\n");
    }
    kimg_close(img);
    return ret;
}
