/*
 * info.c — `kimg info`: qemu-img info's human and JSON output (same keys,
 * same order), --backing-chain, -U, and kimg's --untrusted.  An OVA
 * archive lists every disk (--disk N: that one): a block each, with an
 * "archive member" line after "image:"; in JSON an array of objects (as
 * --backing-chain gives), each ending with "archive-member" and
 * "archive-disk" (--disk N: that one object).  With KIMG_QEMU_OUTPUT=8.0
 * or later, QEMU 8.0's block graph too: each image's "children" (its
 * image file, data file or extent files: kimg_get_children) in JSON, and a
 * "Child node '/NAME':" block for each in the human output.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "cmd.h"

/* One image's info as qemu-img's JSON object. */
static struct kimg_jv *info_to_json(struct kimg *img, const struct kimg_info *info)
{
    struct kimg_jv *o = kimg_jv_object();
    if (info->nb_snapshots) {
        struct kimg_jv *arr = kimg_jv_add(o, "snapshots", kimg_jv_array());
        for (size_t i = 0; i < info->nb_snapshots; i++) {
            const struct kimg_snapshot_info *s = &info->snapshots[i];
            struct kimg_jv *so = kimg_jv_add(arr, NULL, kimg_jv_object());
            if (s->has_icount)
                kimg_jv_add_uint(so, "icount", s->icount);
            kimg_jv_add_uint(so, "vm-clock-nsec", s->vm_clock_nsec % 1000000000u);
            kimg_jv_add_str(so, "name", s->name);
            kimg_jv_add_uint(so, "date-sec", s->date_sec);
            kimg_jv_add_uint(so, "date-nsec", s->date_nsec);
            kimg_jv_add_uint(so, "vm-clock-sec", s->vm_clock_nsec / 1000000000u);
            kimg_jv_add_str(so, "id", s->id);
            kimg_jv_add_uint(so, "vm-state-size", s->vm_state_size);
        }
    }
    kimg_jv_add_uint(o, "virtual-size", info->virtual_size);
    kimg_jv_add_str(o, "filename", kimg_filename(img));
    if (info->cluster_size)
        kimg_jv_add_uint(o, "cluster-size", info->cluster_size);
    kimg_jv_add_str(o, "format", kimg_format_name(img));
    if (info->actual_size >= 0)
        kimg_jv_add_int(o, "actual-size", info->actual_size);
    if (info->encrypted)
        kimg_jv_add_bool(o, "encrypted", true);
    if (info->backing_filename) {
        kimg_jv_add_str(o, "backing-filename", info->backing_filename);
        if (info->full_backing_filename)
            kimg_jv_add_str(o, "full-backing-filename", info->full_backing_filename);
        if (info->backing_format)
            kimg_jv_add_str(o, "backing-filename-format", info->backing_format);
    }
    if (!info->dirty_unknown)
        kimg_jv_add_bool(o, "dirty-flag", info->dirty);
    return o;
}

/* A child node's format-specific data ({"extent-size-hint": N} or {}). */
static struct kimg_jv *child_specific(const struct kimg_child_info *c)
{
    struct kimg_jv *fs = kimg_jv_object();
    kimg_jv_add_str(fs, "type", "file");
    struct kimg_jv *data = kimg_jv_add(fs, "data", kimg_jv_object());
    if (c->extent_size_hint)
        kimg_jv_add_uint(data, "extent-size-hint", c->extent_size_hint);
    return fs;
}

/* QEMU 8.0's "children" of IMG (KIMG_QEMU_OUTPUT): each child's own info,
 * with its children (a file has none).  NULL after printing the error. */
static struct kimg_jv *children_to_json(struct kimg *img)
{
    struct kimg_child_info *c;
    int n = kimg_get_children(img, &c);
    if (n < 0) {
        cmd_fail(kimg_filename(img), "cannot list the image's files");
        return NULL;
    }
    struct kimg_jv *arr = kimg_jv_array();
    for (int i = 0; i < n; i++) {
        struct kimg_jv *ch = kimg_jv_add(arr, NULL, kimg_jv_object());
        kimg_jv_add_str(ch, "name", c[i].name);
        struct kimg_jv *o = kimg_jv_add(ch, "info", kimg_jv_object());
        kimg_jv_add_str(o, "filename", c[i].filename);
        kimg_jv_add_str(o, "format", c[i].protocol);
        kimg_jv_add_bool(o, "dirty-flag", false);
        if (c[i].actual_size >= 0)
            kimg_jv_add_int(o, "actual-size", c[i].actual_size);
        kimg_jv_add_uint(o, "virtual-size", c[i].length);
        if (c[i].has_specific)
            kimg_jv_add(o, "format-specific", child_specific(&c[i]));
        kimg_jv_add(o, "children", kimg_jv_array());
    }
    free(c);
    return arr;
}

/* QEMU 8.0's human blocks for IMG's children: "Child node '/NAME':" and
 * the node's lines one level in, as its protocol nodes print them.  0, or
 * 1 after printing the error. */
static int print_children_human(struct kimg *img)
{
    struct kimg_child_info *c;
    int n = kimg_get_children(img, &c);
    if (n < 0)
        return cmd_fail(kimg_filename(img), "cannot list the image's files");
    for (int i = 0; i < n; i++) {
        char len[32], dsize[32];
        kimg_format_size(c[i].length, len, sizeof(len));
        if (c[i].actual_size >= 0)
            kimg_format_size((uint64_t)c[i].actual_size, dsize, sizeof(dsize));
        else
            strcpy(dsize, "unavailable");
        printf("Child node '/%s':\n    filename: ", c[i].name);
        kimg_print_for_terminal(stdout, c[i].filename);
        printf("\n    protocol type: %s\n    file length: %s (%" PRIu64 " bytes)\n"
               "    disk size: %s\n", c[i].protocol, len, c[i].length, dsize);
        /* qemu prints the header only above something to show */
        if (c[i].extent_size_hint)
            printf("    Format specific information:\n        extent size hint: %" PRIu32 "\n",
                   c[i].extent_size_hint);
    }
    free(c);
    return 0;
}

static void print_human(struct kimg *img, const struct kimg_info *info)
{
    char vsize[32], dsize[32];
    kimg_format_size(info->virtual_size, vsize, sizeof(vsize));
    if (info->actual_size >= 0)
        kimg_format_size((uint64_t)info->actual_size, dsize, sizeof(dsize));
    else
        strcpy(dsize, "unavailable");
    printf("image: ");
    kimg_print_for_terminal(stdout, kimg_filename(img));
    if (kimg_archive_member(img)) {
        printf("\narchive member: ");
        kimg_print_for_terminal(stdout, kimg_archive_member(img));
        printf(" (disk %u of %u)", kimg_archive_disk(img), kimg_archive_disk_count(img));
    }
    printf("\nfile format: %s\nvirtual size: %s (%" PRIu64 " bytes)\ndisk size: %s\n",
           kimg_format_name(img), vsize, info->virtual_size, dsize);
    if (info->encrypted)
        printf("encrypted: yes\n");
    if (info->cluster_size)
        printf("cluster_size: %" PRIu64 "\n", info->cluster_size);
    if (info->dirty)
        printf("cleanly shut down: no\n");
    if (info->backing_filename) {
        printf("backing file: ");
        kimg_print_for_terminal(stdout, info->backing_filename);
        if (!info->full_backing_filename) {
            printf(" (cannot determine actual path)");
        } else if (strcmp(info->backing_filename, info->full_backing_filename)) {
            printf(" (actual path: ");
            kimg_print_for_terminal(stdout, info->full_backing_filename);
            printf(")");
        }
        printf("\n");
    }
    if (info->backing_format) {
        printf("backing file format: ");
        kimg_print_for_terminal(stdout, info->backing_format);
        printf("\n");
    }
    if (info->nb_snapshots) {
        print_snapshot_list(info->snapshots, info->nb_snapshots);
    }
    if (info->format_specific) {
        struct kimg_jv *data = kimg_jv_get(info->format_specific, "data");
        printf("Format specific information:\n");
        if (data)
            kimg_jv_print_human(stdout, data, 1);
    }
}

int cmd_info(int argc, char **argv)
{
    static const char optstring[] = ":f:hU";
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "format", required_argument, NULL, 'f' },
        { "output", required_argument, NULL, OPT_OUTPUT },
        { "backing-chain", no_argument, NULL, OPT_BACKING_CHAIN },
        { "force-share", no_argument, NULL, 'U' },
        { "untrusted", no_argument, NULL, OPT_UNTRUSTED },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "disk", required_argument, NULL, OPT_DISK },
        { NULL, 0, NULL, 0 },
    };
    static const char *const help[] = {
        "-f, --format FMT              format of FILE (default: probed)",
        "--output human|json           output format (default: human)",
        "--backing-chain               every image of the backing chain",
        "-U, --force-share             open without taking the image's locks",
        "--untrusted                   treat FILE as hostile (no backing files)",
        "--object OBJDEF               a secret for encrypted images",
        "--image-opts                  FILE is an option string (key=value,...)",
        "--disk N                      the Nth disk of an OVA archive (default: the first)",
        "-h, --help                    this help",
        NULL,
    };
    const char *fmt = NULL;
    enum output_format output = OUTPUT_HUMAN;
    bool chain = false, image_opts = false;
    unsigned flags = 0, disk = 0;
    int c;

    while ((c = getopt_long(argc, argv, optstring, longopts, NULL)) != -1) {
        switch (c) {
        case 'f': fmt = optarg; break;
        case 'U': flags |= KIMG_OPEN_SHARE; break;
        case OPT_OUTPUT:
            if (parse_output_format(optarg, &output) < 0)
                return 1;
            break;
        case OPT_BACKING_CHAIN: chain = true; break;
        case OPT_UNTRUSTED: flags |= KIMG_OPEN_UNTRUSTED; break;
        case OPT_DISK:
            if (cmd_parse_disk(optarg, &disk) < 0)
                return 1;
            break;
        case 'h': return cmd_help("info", optstring, longopts, help);
        case OPT_OBJECT:
            if (cmd_object(optarg))
                return 1;
            break;
        case OPT_IMAGE_OPTS: image_opts = true; break;
        default: return cmd_bad_option("info", argv, c);
        }
    }
    if (optind != argc - 1)
        return cmd_usage_error("info", "Expecting one image file name");
    const char *file = argv[optind];

    /* Metadata only: encrypted images open without their key, as in
     * qemu-img info (which opens with BDRV_O_NO_IO). */
    flags |= KIMG_OPEN_NO_IO;
    /* Without --backing-chain the backing file is named, not opened (as
     * qemu-img info does); --untrusted refuses to follow it at all. */
    if (!chain)
        flags |= KIMG_OPEN_NO_BACKING;
    else if (flags & KIMG_OPEN_UNTRUSTED)
        return cmd_usage_error("info", "--backing-chain opens other files; not with --untrusted");
    struct kimg *img = cmd_open_image(file, image_opts, fmt, flags, disk);
    if (!img)
        return 1;

    int ret = 0;
    bool first = true;
    /* QEMU 8.0's output and later: every node's children (its block graph) */
    bool graph = kimg_qemu_output() >= 800;
    /* an archive without --disk: every disk it lists, in turn */
    unsigned ndisks = kimg_archive_member(img) && !disk ? kimg_archive_disk_count(img) : 1;
    bool array = output == OUTPUT_JSON && (chain || (kimg_archive_member(img) && !disk));
    if (array)
        printf("[");
    for (unsigned d = 1; d <= ndisks && ret == 0; d++) {
        if (d > 1 && !(img = cmd_open_disk(file, fmt, flags, d))) {
            ret = 1;
            break;
        }
        /* a layer opened without its backing file (qemu's "backing=" open
         * option) still names it: --backing-chain opens it by that name,
         * as qemu-img does; BYNAME holds such opens until the end */
        struct kimg *byname[KIMG_MAX_CHAIN + 1];
        int nbyname = 0;
        for (struct kimg *layer = img, *next; layer; layer = next) {
            struct kimg_info info;
            if (kimg_get_info(layer, &info) < 0) {
                ret = cmd_fail(kimg_filename(layer), "cannot read image info");
                break;
            }
            if (output == OUTPUT_JSON) {
                struct kimg_jv *o = info_to_json(layer, &info);
                if (info.format_specific) {
                    kimg_jv_add(o, "format-specific", info.format_specific);
                    info.format_specific = NULL;
                }
                struct kimg_jv *children = graph ? children_to_json(layer) : NULL;
                if (graph && !children) {
                    kimg_jv_free(o);
                    kimg_info_free(&info);
                    ret = 1;
                    break;
                }
                if (children)
                    kimg_jv_add(o, "children", children);
                if (kimg_archive_member(layer)) {
                    kimg_jv_add_str(o, "archive-member", kimg_archive_member(layer));
                    kimg_jv_add_uint(o, "archive-disk", kimg_archive_disk(layer));
                }
                if (array) {
                    printf(first ? "\n    " : ",\n    ");
                    kimg_jv_print(stdout, o, 1);
                } else {
                    kimg_jv_print(stdout, o, 0);
                    printf("\n");
                }
                kimg_jv_free(o);
            } else {
                if (!first)
                    printf("\n");
                print_human(layer, &info);
                if (graph && print_children_human(layer)) {
                    kimg_info_free(&info);
                    ret = 1;
                    break;
                }
            }
            first = false;
            next = chain ? kimg_backing(layer) : NULL;
            if (chain && !next && info.full_backing_filename && nbyname <= KIMG_MAX_CHAIN) {
                next = cmd_open_image(info.full_backing_filename, false, info.backing_format,
                                      flags, 0);
                if (!next)
                    ret = 1;
                else
                    byname[nbyname++] = next;
            }
            kimg_info_free(&info);
        }
        while (nbyname > 0)
            kimg_close(byname[--nbyname]);
        if (d < ndisks) {
            kimg_close(img);
            img = NULL;
        }
    }
    if (array)
        printf("\n]\n");
    if (!img)
        return ret;
    int cret = kimg_close(img);
    if (cret < 0 && ret == 0)
        ret = cmd_fail(file, "close failed");
    return ret;
}
