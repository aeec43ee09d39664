/*
 * snapshot.c — `kimg snapshot`: qemu-img snapshot's options (-l list,
 * -c create, -a apply, -d delete, -q, -U), listing, messages and exit
 * codes; and convert's -l option (load a snapshot read-only).
 * Selection as qemu-img 7.2: -a takes an ID or else a name; -d takes a
 * name, and (kimg's addition) an ID when no snapshot has that name.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "cmd.h"

/* qemu-img copies the name into a 256-byte buffer: longer names are cut. */
#define QEMU_SN_NAME_MAX 255

static int list(struct kimg *img, const char *file)
{
    struct kimg_info info;
    memset(&info, 0, sizeof(info));
    if (kimg_get_info(img, &info) < 0)
        return cmd_fail(file, "cannot read the snapshot table");
    if (info.nb_snapshots) {
        print_snapshot_list(info.snapshots, info.nb_snapshots);
    }
    kimg_info_free(&info);
    return 0;
}

/* qemu-img refuses to apply a snapshot while the image has persistent
 * bitmaps.  Asked before the read-write open, which would drop bitmaps
 * that track writes. */
static int has_bitmaps(const char *file, bool image_opts, const char *fmt,
                       unsigned flags)
{
    struct kimg *img;
    unsigned ro = (flags & ~KIMG_OPEN_RDWR) | KIMG_OPEN_NO_IO;

    if ((image_opts ? kimg_open_image_opts(&img, file, ro) : kimg_open(&img, file, fmt, ro)) < 0) {
        kimg_clear_error();
        return 0;       /* the real open reports it */
    }
    int found = kimg_has_bitmaps(img);
    kimg_close(img);
    kimg_clear_error();
    return found;
}

/* -d NAME: the first snapshot with that name (qemu-img); else, kimg's
 * addition, NAME as an ID.  The ID of the one to delete into BUF. */
static int resolve_delete(struct kimg *img, const char *arg, char **id)
{
    struct kimg_info info;
    memset(&info, 0, sizeof(info));
    *id = NULL;
    if (kimg_get_info(img, &info) < 0)
        return -1;
    for (size_t i = 0; i < info.nb_snapshots && !*id; i++)
        if (!strcmp(info.snapshots[i].name, arg))
            *id = strdup(info.snapshots[i].id);
    for (size_t i = 0; i < info.nb_snapshots && !*id; i++)
        if (!strcmp(info.snapshots[i].id, arg))
            *id = strdup(info.snapshots[i].id);
    kimg_info_free(&info);
    return 0;
}

static int sn_fail(const char *what, const char *name)
{
    const char *msg = kimg_last_error();
    cmd_error("Could not %s snapshot '%s': %s", what, name, msg ? msg : "unknown error");
    kimg_clear_error();
    return 1;
}

enum action { NONE, LIST, CREATE, APPLY, DELETE };

int cmd_snapshot(int argc, char **argv)
{
    /* QEMU 10.1's long names and its -f (7.2's snapshot probes only) */
    static const char optstring[] = ":f:la:c:d:hqU";
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "format", required_argument, NULL, 'f' },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "list", no_argument, NULL, 'l' },
        { "apply", required_argument, NULL, 'a' },
        { "create", required_argument, NULL, 'c' },
        { "delete", required_argument, NULL, 'd' },
        { "force-share", no_argument, NULL, 'U' },
        { "quiet", no_argument, NULL, 'q' },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "untrusted", no_argument, NULL, OPT_UNTRUSTED },
        { NULL, 0, NULL, 0 },
    };
    static const char *const help[] = {
        "-f, --format FMT              format of FILE (default: probed)",
        "--image-opts                  FILE is an option string (key=value,...)",
        "-l, --list                    list the snapshots (the default action)",
        "-c, --create SNAPSHOT         create a snapshot named SNAPSHOT",
        "-a, --apply SNAPSHOT          revert the disk to SNAPSHOT",
        "-d, --delete SNAPSHOT         delete SNAPSHOT (by name, or ID)",
        "-U, --force-share             open without taking the image's locks (-l only)",
        "-q, --quiet                   no output but the listing",
        "--object OBJDEF               a secret for encrypted images",
        "--untrusted                   treat FILE as hostile (no backing files)",
        "-h, --help                    this help",
        NULL,
    };
    enum action action = NONE;
    const char *name = NULL, *fmt = NULL;
    unsigned flags = 0;
    bool image_opts = false;
    int c;

    while ((c = getopt_long(argc, argv, optstring, longopts, NULL)) != -1) {
        enum action a = NONE;
        switch (c) {
        case 'l': a = LIST; break;
        case 'c': a = CREATE; break;
        case 'a': a = APPLY; break;
        case 'd': a = DELETE; break;
        case 'f': fmt = optarg; break;
        case 'q': break;      /* nothing is printed but the listing */
        case 'U': flags |= KIMG_OPEN_SHARE; break;
        case OPT_UNTRUSTED: flags |= KIMG_OPEN_UNTRUSTED; break;
        case 'h': return cmd_help("snapshot", optstring, longopts, help);
        case OPT_OBJECT:
            if (cmd_object(optarg))
                return 1;
            break;
        case OPT_IMAGE_OPTS: image_opts = true; break;
        default: return cmd_bad_option("snapshot", argv, c);
        }
        if (a != NONE) {
            if (action != NONE)
                return cmd_usage_error("snapshot", "Cannot mix '-l', '-a', '-c', '-d'");
            action = a;
            name = a == LIST ? NULL : optarg;
        }
    }
    if (optind != argc - 1)
        return cmd_usage_error("snapshot", "Expecting one image file name");
    const char *file = argv[optind];

    /* everything but -l writes (with no action qemu-img opens read-write
     * and does nothing) */
    if (action != LIST)
        flags |= KIMG_OPEN_RDWR;
    if ((flags & KIMG_OPEN_SHARE) && (flags & KIMG_OPEN_RDWR)) {
        cmd_error("Could not open '%s': force-share=on can only be used with read-only "
                  "images", file);
        return 1;
    }
    if (action == APPLY && has_bitmaps(file, image_opts, fmt, flags)) {
        cmd_error("Could not apply snapshot '%s': Device has active dirty bitmaps", name);
        return 1;
    }
    struct kimg *img = cmd_open_image(file, image_opts, fmt, flags, 0);
    if (!img)
        return 1;

    int ret = 0;
    char cut[QEMU_SN_NAME_MAX + 1], *id = NULL;
    switch (action) {
    case NONE:
        break;
    case LIST:
        ret = list(img, file);
        break;
    case CREATE:
        snprintf(cut, sizeof(cut), "%s", name);
        if (kimg_snapshot_create(img, cut) < 0)
            ret = sn_fail("create", name);
        break;
    case APPLY:
        if (kimg_snapshot_apply(img, name) < 0)
            ret = sn_fail("apply", name);
        break;
    case DELETE:
        if (resolve_delete(img, name, &id) < 0) {
            ret = sn_fail("delete", name);
        } else if (!id) {
            cmd_error("Could not delete snapshot '%s': snapshot not found", name);
            ret = 1;
        } else if (kimg_snapshot_delete(img, id) < 0) {
            ret = sn_fail("delete", name);
        }
        free(id);
        break;
    }
    if (kimg_close(img) < 0 && ret == 0)
        ret = cmd_fail(file, "close failed");
    return ret;
}

/* convert -l: "snapshot.id=ID,snapshot.name=NAME" (either or both; ",,"
 * is a literal comma, as in qemu's option syntax) or a bare ID-or-name. */
struct sn_spec {
    char *id, *name;
    bool by_id_or_name;
};

static void spec_free(struct sn_spec *sp)
{
    free(sp->id);
    free(sp->name);
    memset(sp, 0, sizeof(*sp));
}

static int spec_parse(const char *arg, struct sn_spec *sp)
{
    memset(sp, 0, sizeof(*sp));
    if (strncmp(arg, "snapshot.", 9)) {
        sp->name = strdup(arg);
        sp->by_id_or_name = true;
        return sp->name ? 0 : -ENOMEM;
    }
    const char *p = arg;
    size_t kl = 0;
    while (*p) {
        /* one key=value, ",," inside the value standing for "," */
        kl = strcspn(p, "=,");
        if (p[kl] != '=')
            goto bad;
        char **slot = NULL;
        if (kl == 11 && !strncmp(p, "snapshot.id", 11))
            slot = &sp->id;
        else if (kl == 13 && !strncmp(p, "snapshot.name", 13))
            slot = &sp->name;
        else
            goto bad;
        const char *v = p + kl + 1;
        char *val = malloc(strlen(v) + 1), *o = val;
        if (!val)
            return -ENOMEM;
        while (*v) {
            if (*v == ',') {
                if (v[1] != ',')
                    break;
                v++;
            }
            *o++ = *v++;
        }
        *o = '\0';
        free(*slot);
        *slot = val;
        p = *v ? v + 1 : v;
    }
    return 0;
bad:    /* qemu-img's two lines in one */
    cmd_error("Failed in parsing snapshot param '%s': Invalid parameter '%.*s'", arg, (int)kl, p);
    spec_free(sp);
    return -EINVAL;
}

int cmd_snapshot_load_opt(struct kimg *img, const char *arg, int nb_sources)
{
    struct sn_spec sp;
    int ret = spec_parse(arg, &sp);
    if (ret < 0)
        return -1;
    if (!img) {
        ret = 0;
    } else if (sp.by_id_or_name && nb_sources > 1) {
        fprintf(stderr, "kimg: No support for concatenating multiple snapshot\n");
        spec_free(&sp);
        return -1;
    } else if (sp.by_id_or_name) {
        /* qemu's bdrv_snapshot_load_tmp_by_id_or_name: by ID, then by
         * name when that found none or failed with -EINVAL (an unaligned
         * L1 table: "Can't find snapshot" unless a name matches) */
        ret = kimg_snapshot_load(img, sp.name, NULL);
        if (ret == -ENOENT || ret == -EINVAL) {
            kimg_clear_error();
            ret = kimg_snapshot_load(img, NULL, sp.name);
        }
    } else if (!sp.id && !sp.name) {
        ret = kimg_fail(-EINVAL, "snapshot_id and name are both NULL");
    } else {
        ret = kimg_snapshot_load(img, sp.id, sp.name);
    }
    spec_free(&sp);
    if (ret < 0) {
        const char *msg = kimg_last_error();
        cmd_error("Failed to load snapshot: %s", msg ? msg : strerror(-ret));
        kimg_clear_error();
        return -1;
    }
    return 0;
}
