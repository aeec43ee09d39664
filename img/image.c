/*
 * image.c — the image handle: image names as qemu reads them ("file:",
 * NBD names kept for the NBD backend and the rules for those that images
 * hold, other protocols refused), format probing, opening a layer and its backing
 * chain (relative names, depth limit, loop detection, --untrusted),
 * the one place where requests are checked (ranges; writability and the
 * fence, with one errno), what the driver table says about a format
 * (kimg_cluster_size, kimg_maps_identity, ...), and the generic fallbacks
 * for optional driver callbacks.  The driver registry is drivers[] here.
 * kimg_open_disk opens a disk inside an OVA archive (img/archive.h) through
 * a window file; such a layer opens no other file.  A layer opened with
 * open options (img/image_opts.c) keeps them for its driver, hands
 * "backing.*" to its backing layer, and refuses the ones nobody read.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "kimg/driver.h"
#include "archive.h"
#include "foreign.h"
#include "kimg/json.h"
#include "lock.h"
#include "internal.h"
#include "tunables.h"

/* Files already open in the chain being built, for loop detection. */
struct chain_ids {
    dev_t dev[KIMG_MAX_CHAIN + 1];
    ino_t ino[KIMG_MAX_CHAIN + 1];
    int n;
    /* the open options of the chain's top layer (--image-opts), or NULL;
     * the first layer opened takes a copy (backing layers get none) */
    const struct kimg_opts *top_opts;
};

static int open_layer(struct kimg **out, const char *filename, const char *format,
                      unsigned flags, struct chain_ids *ids, struct kimg_file *file);
static int open_backing_with(struct kimg *img, struct chain_ids *ids,
                             const struct kimg_opts *bopts, const char *bdriver,
                             const char *bfile);

char *kimg_path_relative_to(const char *base, const char *name)
{
    const char *slash = strrchr(base, '/');
    /* a BASE that is an NBD name has no folder: names relative to it are
     * taken as they are (qemu: relative to the working directory) */
    if (kimg_nbd_is_uri(base))
        slash = NULL;
    if (!slash && name[0] != '/' && kimg_nbd_is_uri(name)) {
        /* a local file named like an NBD URI stays a local file */
        char *p = malloc(strlen(name) + 3);
        if (p)
            strcpy(stpcpy(p, "./"), name);
        return p;
    }
    if (name[0] == '/' || !slash)
        return strdup(name);
    size_t dirlen = (size_t)(slash - base) + 1;
    char *p = malloc(dirlen + strlen(name) + 1);
    if (!p)
        return NULL;
    memcpy(p, base, dirlen);
    strcpy(p + dirlen, name);
    return p;
}

/*
 * An image name as qemu reads one: a ':' before any '/' makes the part
 * before it a protocol.  "file:" names the local file after it (one prefix
 * taken off, as qemu: "file:file:x" is the file "file:x"); "json:" and the
 * other protocols are refused (kimg follows only local files), the ones
 * qemu does not know with its "Unknown protocol" message ("a:b.qcow2");
 * "./a:b.qcow2" is a plain path.  Used for names typed by the user and for
 * names stored in an image (backing and data files) alike; NBD names are
 * accepted here, and the callers for names stored in images apply the
 * remote rules (remote_name_ok).
 */
int kimg_image_path(const char *name, const char **path)
{
    static const char *const protocols[] = {
        "nbd", "http", "https", "ftp", "ftps", "ssh", "iscsi", "rbd", "gluster",
        "sheepdog", "nfs", "vxhs", "blkdebug", "blkverify", "null-co", "null-aio",
        "quorum", "host_device", "host_cdrom", "fat", "vvfat", "throttle",
        "replication", "copy-on-read", "nvme", "nvme-io_uring", "compress",
        "preallocate", "snapshot-access", "libblkio", NULL };
    size_t plen = strcspn(name, ":/");

    *path = name;
    if (!*name)
        return kimg_fail(-EINVAL, "The 'file' block driver requires a file name");
    if (name[plen] != ':')
        return 0;
    if (plen == 4 && !strncmp(name, "json", 4))
        return kimg_fail(-EINVAL, "refusing the 'json:' pseudo-protocol in '%.64s'", name);
    if (plen == 4 && !strncmp(name, "file", 4)) {
        *path = name + 5;
        if (!**path)
            return kimg_fail(-EINVAL, "The 'file' block driver requires a file name");
        /* *PATH would be taken for an NBD name (kimg_file_open) */
        if (kimg_nbd_is_uri(*path))
            return kimg_fail(-EINVAL, "the local file '%.64s' looks like an NBD name: name "
                             "it ./%.64s", *path, *path);
        return 0;
    }
    /* NBD names (protocols/nbd/): kimg_file_open connects to them */
    if (kimg_nbd_is_uri(name))
        return 0;
    /* qemu's scheme-style names: "nbd+unix:", "gluster+tcp:" */
    size_t base = strcspn(name, "+");
    if (base > plen)
        base = plen;
    for (int i = 0; protocols[i]; i++)
        if (strlen(protocols[i]) == base && !strncmp(name, protocols[i], base))
            return kimg_fail(-EINVAL, "refusing the non-file protocol in '%.64s'", name);
    return kimg_fail(-EINVAL, "Unknown protocol '%.*s'", (int)(plen > 64 ? 64 : plen), name);
}

/* KIMG_TEST_OPEN_PAUSE (tests): once, after the first layer opened */
static int test_open_paused;

static atomic_bool allow_remote_backing;

void kimg_set_allow_remote_backing(bool allow)
{
    atomic_store(&allow_remote_backing, allow);
}

/* May an image (IMG) make kimg connect to the NBD name NAME it stores
 * (WHAT: "backing file", "external data file")?  Not under --untrusted,
 * and not unless the user allowed it: an image from elsewhere must not
 * make kimg reach into the network (the README's NBD section). */
static int remote_name_ok(const struct kimg *img, const char *what, const char *name)
{
    if (img->flags & KIMG_OPEN_UNTRUSTED)
        return kimg_fail(-EPERM, "image needs the %s '%.200s'; refusing to open it under "
                         "--untrusted", what, name);
    if (!atomic_load(&allow_remote_backing))
        return kimg_fail(-EPERM, "image names the network %s '%.200s': not followed without "
                         "--allow-remote-backing", what, name);
    return 0;
}

static atomic_bool allow_nbd_local_backing;

void kimg_set_allow_nbd_local_backing(bool allow)
{
    atomic_store(&allow_nbd_local_backing, allow);
}

/* May an image read over NBD (IMG) make kimg open the local file NAME it
 * stores (WHAT: "backing file", "external data file")?  Not unless the
 * user allowed it: the export's bytes come from whoever runs the server,
 * who must not pick files on this host for kimg to read (their data would
 * flow into the output, which may go back to that server).  --untrusted
 * refuses every backing and data file before this is asked; names the
 * caller just wrote from its user's (KIMG_OPEN_OWN_NAMES) are opened. */
static int local_name_ok(const struct kimg *img, const char *what, const char *name)
{
    if (!kimg_file_is_nbd(img->file) || atomic_load(&allow_nbd_local_backing) ||
        (img->flags & KIMG_OPEN_OWN_NAMES))
        return 0;
    return kimg_fail(-EPERM, "image read over NBD names the local %s '%.200s': not followed "
                     "without --allow-nbd-local-backing", what, name);
}

/* A relative name (PATH, from kimg_image_path) in an image on an NBD
 * export: there is no folder to take it in (qemu: "Cannot generate a base
 * directory for NBD nodes"; nor does qemu-img info show a full name). */
static bool nbd_relative(const struct kimg *img, const char *path)
{
    return kimg_file_is_nbd(img->file) && path[0] != '/' && !kimg_nbd_is_uri(path);
}

static const struct kimg_driver *const drivers[] = {
    &kimg_qcow2_driver,
    &kimg_vpc_driver,
    &kimg_vdi_driver,
    &kimg_vhdx_driver,
    &kimg_vmdk_driver,
    &kimg_luks_driver,
    &kimg_raw_driver,
};

const struct kimg_driver *kimg_find_driver(const char *name)
{
    for (size_t i = 0; i < sizeof(drivers) / sizeof(drivers[0]); i++)
        if (!strcmp(drivers[i]->name, name))
            return drivers[i];
    return NULL;
}

void kimg_for_each_driver(void (*fn)(const struct kimg_driver *, void *), void *opaque)
{
    for (size_t i = 0; i < sizeof(drivers) / sizeof(drivers[0]); i++)
        fn(drivers[i], opaque);
}

static int probe(struct kimg_file *file, const char *filename,
                 const struct kimg_driver **out)
{
    uint8_t buf[4096] __attribute__((aligned(64)));
    uint64_t size;
    int ret = kimg_file_size(file, &size);
    if (ret < 0)
        return ret;
    size_t len = size < sizeof(buf) ? (size_t)size : sizeof(buf);
    ret = kimg_file_pread(file, buf, len, 0);
    if (ret < 0)
        return ret;
    /* the last 512 bytes, for formats signed at the end (probe_tail);
     * unreadable, only the head is probed */
    uint8_t tail[512] __attribute__((aligned(64)));
    size_t tlen = size < sizeof(tail) ? (size_t)size : sizeof(tail);
    if (kimg_file_pread(file, tail, tlen, size - tlen) < 0) {
        tlen = 0;
        kimg_clear_error();
    }
    int best = -1;
    for (size_t i = 0; i < sizeof(drivers) / sizeof(drivers[0]); i++) {
        int score = drivers[i]->probe ? drivers[i]->probe(buf, len, filename) : 0;
        if (drivers[i]->probe_tail) {
            int t = drivers[i]->probe_tail(tail, tlen, filename);
            score = t > score ? t : score;
        }
        if (score > best) {
            best = score;
            *out = drivers[i];
        }
    }
    /* a format we know of but do not implement is not raw */
    const char *foreign = best <= 1 ? kimg_foreign_format(buf, len) : NULL;
    if (foreign)
        return kimg_fail(-ENOTSUP, "image is in %s format, which kimg does not support "
                         "(give -f raw to read its bytes as a raw disk)", foreign);
    return 0;
}

static bool chain_seen(struct chain_ids *ids, const struct stat *st)
{
    for (int i = 0; i < ids->n; i++)
        if (ids->dev[i] == st->st_dev && ids->ino[i] == st->st_ino)
            return true;
    return false;
}

/* qemu's deprecated "backing=" (empty) open option: the image opens
 * without its backing file (unallocated ranges read as zeros, as qemu's
 * "backing": null); the stored name is still reported.  True if given
 * (the option then counts as used). */
static bool backing_empty(struct kimg *img)
{
    struct kimg_opts *o = img->open_opts;
    for (int i = 0; o && i < o->n; i++)
        if (!strcmp(o->v[i].key, "backing") && o->v[i].value && !*o->v[i].value) {
            o->v[i].used = true;
            return true;
        }
    return false;
}

static int open_backing(struct kimg *img, struct chain_ids *ids)
{
    int ret;

    if (!(img->flags & KIMG_OPEN_NO_BACKING) && backing_empty(img)) {
        const char *path;
        if (strncmp(img->backing_name, "json:", 5) &&
            kimg_image_path(img->backing_name, &path) == 0 && !nbd_relative(img, path))
            img->backing_path = kimg_path_relative_to(img->filename, path);
        kimg_clear_error();
        return 0;
    }

    /* "backing.*" open options go to the backing layer (its key, as
     * backing.encrypt.key-secret=ID); read here either way */
    struct kimg_opts *bopts = NULL;
    char *bdriver = NULL, *bfile = NULL, *bproto = NULL;
    bool found;
    /* not under qemu's BDRV_O_NO_BACKING (check aside): left unread, they
     * are refused (kimg_open_opts_check_used) */
    bool named_only = (img->flags & KIMG_OPEN_NO_BACKING) && !(img->flags & KIMG_OPEN_REPAIR);
    if (img->open_opts && !named_only &&
        (ret = kimg_open_opts_sub(img, "backing.", &bopts, &bdriver)) < 0)
        return ret;
    /* backing.file.filename=PATH (backing.file.driver=file|host_device)
     * opens PATH, relative to the working folder, in place of the name
     * the image stores (qemu's option; the stored name is unchanged) */
    if (bopts) {
        bproto = kimg_opts_take(bopts, "file.driver", &found);
        bfile = kimg_opts_take(bopts, "file.filename", &found);
    }
    if (bproto && strcmp(bproto, "file") && strcmp(bproto, "host_device"))
        ret = kimg_fail(-ENOTSUP, "Could not open backing file: file.driver '%.64s' is not "
                        "supported: kimg opens a format over a local file ('file') or "
                        "device ('host_device')", bproto);
    else
        ret = open_backing_with(img, ids, bopts, bdriver, bfile);
    kimg_opts_free(bopts);
    free(bdriver);
    free(bfile);
    free(bproto);
    return ret;
}

static int open_backing_with(struct kimg *img, struct chain_ids *ids,
                             const struct kimg_opts *bopts, const char *bdriver,
                             const char *bfile)
{
    const char *path;
    int ret;

    /* Named but not opened (info, check): report it, follow nothing. */
    if (img->flags & KIMG_OPEN_NO_BACKING) {
        if (strncmp(img->backing_name, "json:", 5) &&
            kimg_image_path(img->backing_name, &path) == 0 && !nbd_relative(img, path))
            img->backing_path = kimg_path_relative_to(img->filename, path);
        kimg_clear_error();
        return 0;
    }
    if (img->flags & KIMG_OPEN_ARCHIVE_MEMBER)
        return kimg_fail(-EPERM, "the disk needs the backing file '%.200s'; kimg opens "
                         "nothing outside the archive", img->backing_name);
    if (img->flags & KIMG_OPEN_UNTRUSTED)
        return kimg_fail(-EPERM, "image needs the backing file '%.200s'; refusing to open it "
                         "under --untrusted", img->backing_name);
    bool remote = false;
    if (bfile) {
        /* backing.file.filename: the user's name, opened as given */
        img->backing_path = strdup(bfile);
    } else {
        ret = kimg_image_path(img->backing_name, &path);
        if (ret < 0)
            return ret;
        /* an NBD backing file: connected to by name, with the remote rules */
        remote = kimg_nbd_is_uri(path);
        if (remote && (ret = remote_name_ok(img, "backing file", path)) < 0)
            return ret;
        if (nbd_relative(img, path))
            return kimg_fail(-EINVAL, "Cannot generate a base directory for NBD nodes");
        if (!remote && (ret = local_name_ok(img, "backing file", path)) < 0)
            return ret;
        img->backing_path = remote ? strdup(path) : kimg_path_relative_to(img->filename, path);
    }
    if (!img->backing_path)
        return -ENOMEM;
    if (ids->n > KIMG_MAX_CHAIN)
        return kimg_fail(-ELOOP, "backing chain longer than %d images", KIMG_MAX_CHAIN);

    unsigned bflags = img->flags & (KIMG_OPEN_SHARE | KIMG_OPEN_NO_LOCK | KIMG_OPEN_DIRECT |
                                     KIMG_OPEN_NO_IO | KIMG_OPEN_NO_WRITERS);
    struct kimg_file *rfile = NULL;
    if (remote && (ret = kimg_file_open(&rfile, path, KIMG_FILE_FROM_IMAGE)) < 0) {
        kimg_error_prefix("Could not open backing file: ");
        return ret;
    }
    ids->top_opts = bopts;
    ret = open_layer(&img->backing, img->backing_path, bdriver ? bdriver : img->backing_format,
                     bflags, ids, rfile);
    ids->top_opts = NULL;
    if (ret < 0) {
        /* qemu's wording: "Could not open backing file: " + the reason */
        if (kimg_last_error())
            kimg_error_prefix("Could not open backing file: ");
        else
            kimg_error("Could not open backing file: %s", strerror(-ret));
        return ret;
    }
    return 0;
}

static void free_layer(struct kimg *img)
{
    if (!img)
        return;
    kimg_lock_release(img);
    kimg_file_close(img->file);
    free(img->state);
    free(img->filename);
    free(img->backing_name);
    free(img->backing_format);
    free(img->backing_path);
    free(img->archive_member);
    kimg_opts_free(img->open_opts);
    free(img->opts_name);
    free(img);
}

static int open_layer(struct kimg **out, const char *filename, const char *format,
                      unsigned flags, struct chain_ids *ids, struct kimg_file *file)
{
    struct kimg *img;
    struct stat st;
    int ret;

    img = calloc(1, sizeof(*img));
    if (!img) {
        kimg_file_close(file);
        return -ENOMEM;
    }
    img->file = file;
    img->file_size_at_open = UINT64_MAX;
    img->flags = flags;
    img->writable = flags & KIMG_OPEN_RDWR;
    img->filename = strdup(filename);
    if (!img->filename) {
        kimg_file_close(file);
        free(img);
        return -ENOMEM;
    }
    if (ids->top_opts) {
        const struct kimg_opts *o = ids->top_opts;
        ids->top_opts = NULL;
        ret = kimg_opts_parse(&img->open_opts, "");
        for (int i = 0; ret == 0 && i < kimg_opts_count(o); i++)
            ret = kimg_opts_set(&img->open_opts, kimg_opts_key(o, i), kimg_opts_value(o, i));
        if (ret < 0)
            goto fail;
    }

    if (format) {
        img->drv = kimg_find_driver(format);
        if (!img->drv) {
            ret = kimg_fail(-EINVAL, "Unknown driver '%s'", format);
            goto fail;
        }
    }
    if (!img->file) {
        ret = kimg_file_open(&img->file, filename,
                             (img->writable ? KIMG_FILE_RDWR : 0) |
                             ((flags & KIMG_OPEN_DIRECT) ? KIMG_FILE_DIRECT : 0));
        if (ret < 0)
            goto fail;
    } else if (img->writable && !img->file->writable) {
        ret = kimg_fail(-EBADF, "file is read-only");
        goto fail;
    }
    img->file->nosync = flags & KIMG_OPEN_NOSYNC;
    if (kimg_file_is_nbd(img->file) && strcmp(img->filename, img->file->path)) {
        /* an export is shown by the name qemu-img shows (info, map) */
        char *canon = strdup(img->file->path);
        if (!canon) {
            ret = -ENOMEM;
            goto fail;
        }
        free(img->filename);
        img->filename = canon;
    }
    if (img->file->fd >= 0 && fstat(img->file->fd, &st) == 0) {
        if (chain_seen(ids, &st)) {
            ret = kimg_fail(-ELOOP, "Backing file loop detected: '%s' is already in the chain",
                            filename);
            goto fail;
        }
        ids->dev[ids->n] = st.st_dev;
        ids->ino[ids->n] = st.st_ino;
        ids->n++;
    }
    if (!img->drv) {
        ret = probe(img->file, filename, &img->drv);
        if (ret < 0)
            goto fail;
        img->probed = true;
        if ((img->drv->flags & KIMG_DRV_IDENTITY_MAP) && img->writable) {
            fputs("WARNING: Image format was not specified for '", stderr);
            kimg_print_for_terminal(stderr, filename);   /* may be a backing file name */
            fputs("' and probing guessed raw.\n"
                  "         Automatically detecting the format is dangerous for raw images, "
                  "write operations on block 0 will be restricted.\n"
                  "         Specify the 'raw' format explicitly to remove the restrictions.\n",
                  stderr);
            ret = kimg_fail(-EPERM, "refusing to write to an image whose format was guessed "
                            "as raw; give -f raw to write to it");
            goto fail;
        }
    }
    /* check -r on a format kimg only reads: opened read-only (the driver
     * never sees a writable open); the check door lets the driver say
     * whether it has anything to repair (qemu-img's exit 63 where qemu's
     * driver has no repair) */
    if ((flags & KIMG_OPEN_REPAIR) && img->writable && !img->drv->write)
        img->writable = false;
    if ((flags & KIMG_OPEN_SHARE) && img->writable) {
        ret = kimg_fail(-EINVAL, "force-share=on can only be used with read-only images");
        goto fail;
    }
    if (!(flags & (KIMG_OPEN_SHARE | KIMG_OPEN_NO_LOCK))) {
        ret = kimg_lock_acquire(img);
        if (ret < 0)
            goto fail;
    }
    if (img->drv->state_size) {
        img->state = calloc(1, img->drv->state_size);
        if (!img->state) {
            ret = -ENOMEM;
            goto fail;
        }
    }
    if (!img->file || img->file->ops->get_size(img->file, &img->file_size_at_open) < 0)
        img->file_size_at_open = UINT64_MAX;
    ret = img->drv->open(img);
    if (ret < 0)
        goto fail;
    kimg_test_pause(kimg_tunables()->test_open_pause, &test_open_paused);
    if (img->backing_name) {
        ret = open_backing(img, ids);
        if (ret < 0) {
            img->drv->close(img);
            goto fail;
        }
    }
    if (img->open_opts && (ret = kimg_open_opts_check_used(img)) < 0) {
        kimg_close(img);
        return ret;
    }
    *out = img;
    return 0;
fail:
    if (ret == -ENOMEM)
        kimg_error("out of memory");
    free_layer(img);
    return ret;
}

int kimg_open(struct kimg **out, const char *filename, const char *format,
              unsigned flags)
{
    struct chain_ids ids = { .n = 0 };
    const char *path = filename;
    if (!(flags & KIMG_OPEN_PATH) && !strncmp(filename, "json:", 5))
        return kimg_open_json_name(out, filename, format, flags);
    if (!(flags & KIMG_OPEN_PATH)) {
        int ret = kimg_image_path(filename, &path);
        if (ret < 0)
            return ret;
    }
    return open_layer(out, path, format, flags & ~(KIMG_OPEN_PATH | KIMG_OPEN_ARCHIVE_MEMBER),
                      &ids, NULL);
}

int kimg_open_layer_opts(struct kimg **out, const char *path, const char *format,
                         unsigned flags, const struct kimg_opts *opts, struct kimg_file *file)
{
    struct chain_ids ids = { .n = 0, .top_opts = opts };
    return open_layer(out, path, format, flags & ~(KIMG_OPEN_PATH | KIMG_OPEN_ARCHIVE_MEMBER),
                      &ids, file);
}

int kimg_open_file(struct kimg **out, struct kimg_file *file, const char *format,
                   unsigned flags)
{
    struct chain_ids ids = { .n = 0 };
    return open_layer(out, file->path, format, flags & ~KIMG_OPEN_ARCHIVE_MEMBER, &ids, file);
}

/* Disk DISK (1-based) of the OVA OVA in FILE (both taken over): its
 * digests checked when data will be read (not for NO_IO: info reads
 * metadata only), then its member opened through a window file and
 * probed as an image of its own, a layer that opens no other file. */
static int open_archive_disk(struct kimg **out, const char *filename, unsigned flags,
                             unsigned disk, struct kimg_ova *ova, struct kimg_file *file)
{
    struct chain_ids ids = { .n = 0 };
    unsigned n = kimg_ova_disk_count(ova);
    uint64_t off = 0, len = 0;
    char *name = NULL;
    int ret = 0;

    if (flags & KIMG_OPEN_RDWR)
        ret = kimg_fail(-EROFS, "an OVA archive is read only: convert its disk to change it");
    else if (disk > n)
        ret = kimg_fail(-EINVAL, "the archive has %u disk%s, not %u", n, n == 1 ? "" : "s",
                        disk);
    else if (!(name = strdup(kimg_ova_disk(ova, disk, &off, &len))))
        ret = kimg_fail(-ENOMEM, "out of memory");
    else if (!(flags & KIMG_OPEN_NO_IO))
        ret = kimg_ova_verify(ova, file, disk);
    kimg_ova_free(ova);
    struct kimg_file *win = NULL;
    if (ret < 0)
        kimg_file_close(file);
    else
        ret = kimg_file_open_window(&win, file, off, len, NULL, true);
    if (ret == 0)
        ret = open_layer(out, filename, NULL, flags | KIMG_OPEN_ARCHIVE_MEMBER, &ids, win);
    if (ret < 0) {
        if (name)
            kimg_error_prefix("disk %u ('%.200s') of the archive: ", disk, name);
        free(name);
        return ret;
    }
    (*out)->archive_member = name;
    (*out)->archive_disk = disk;
    (*out)->archive_disks = n;
    return 0;
}

static int open_disk(struct kimg **out, const char *path, const char *format, unsigned flags,
                     unsigned disk, struct kimg_file *file)
{
    struct chain_ids ids = { .n = 0 };
    struct kimg_ova *ova = NULL;
    int ret = 0;

    flags &= ~(KIMG_OPEN_PATH | KIMG_OPEN_ARCHIVE_MEMBER);
    if (format && disk)
        ret = kimg_fail(-EINVAL, "a disk of an archive is found by probing: not with a "
                        "format");
    else if (format)
        return open_layer(out, path, format, flags, &ids, file);
    else if (!file)
        ret = kimg_file_open(&file, path, ((flags & KIMG_OPEN_RDWR) ? KIMG_FILE_RDWR : 0) |
                             ((flags & KIMG_OPEN_DIRECT) ? KIMG_FILE_DIRECT : 0));
    if (ret == 0 && (ret = kimg_ova_open(file, &ova)) == 1) {
        if (!disk)
            return open_layer(out, path, NULL, flags, &ids, file);
        ret = kimg_fail(-EINVAL, "disk %u asked for, but the image is not an OVA archive",
                        disk);
    }
    if (ret == 0)
        return open_archive_disk(out, path, flags, disk ? disk : 1, ova, file);
    kimg_file_close(file);
    return ret;
}

int kimg_open_disk(struct kimg **out, const char *filename, const char *format,
                   unsigned flags, unsigned disk)
{
    const char *path = filename;
    if (!(flags & KIMG_OPEN_PATH) && !strncmp(filename, "json:", 5) && !disk)
        return kimg_open_json_name(out, filename, format, flags);
    if (!(flags & KIMG_OPEN_PATH)) {
        int ret = kimg_image_path(filename, &path);
        if (ret < 0)
            return ret;
    }
    return open_disk(out, path, format, flags, disk, NULL);
}

int kimg_open_file_disk(struct kimg **out, struct kimg_file *file, unsigned flags,
                        unsigned disk)
{
    return open_disk(out, file->path, NULL, flags, disk, file);
}

const char *kimg_archive_member(const struct kimg *img) { return img->archive_member; }
unsigned kimg_archive_disk(const struct kimg *img) { return img->archive_disk; }
unsigned kimg_archive_disk_count(const struct kimg *img) { return img->archive_disks; }

int kimg_close(struct kimg *img)
{
    int ret = 0;
    while (img) {
        struct kimg *next = img->backing;
        if (img->writable) {
            int r = kimg_flush(img);
            if (r < 0 && ret == 0)
                ret = r;
        }
        img->drv->close(img);
        free_layer(img);
        img = next;
    }
    return ret;
}

uint64_t kimg_size(const struct kimg *img) { return img->size; }
const char *kimg_filename(const struct kimg *img)
{
    return img->opts_name ? img->opts_name : img->filename;
}
const char *kimg_format_name(const struct kimg *img) { return img->drv->name; }
struct kimg *kimg_backing(const struct kimg *img) { return img->backing; }
bool kimg_is_writable(const struct kimg *img) { return kimg_writes_allowed(img); }
uint64_t kimg_cluster_size(const struct kimg *img) { return img->cluster_size; }

bool kimg_maps_identity(const struct kimg *img)
{
    return (img->drv->flags & KIMG_DRV_IDENTITY_MAP) != 0;
}

bool kimg_zero_init(const struct kimg *img)
{
    /* a raw image "created" on an NBD export keeps the export's bytes */
    if (kimg_file_is_nbd(img->file) && (img->drv->flags & KIMG_DRV_IDENTITY_MAP))
        return false;
    return !(img->drv->flags & KIMG_DRV_NO_ZERO_INIT);
}

bool kimg_can_compress(const struct kimg *img)
{
    return img->drv->compress_cluster && img->drv->write_compressed_data;
}

bool kimg_needs_compressed_writes(struct kimg *img)
{
    return img->drv->needs_compressed_writes && img->drv->needs_compressed_writes(img);
}

bool kimg_can_alloc_data(const struct kimg *img)
{
    return img->drv->alloc_data && img->drv->commit_data;
}

bool kimg_has_bitmaps(struct kimg *img)
{
    return img->drv->has_bitmaps && img->drv->has_bitmaps(img);
}

int kimg_create_opts_like(struct kimg *img, struct kimg_opts **opts)
{
    return img->drv->create_opts_like ? img->drv->create_opts_like(img, opts) : 0;
}

const char *kimg_backing_name(const struct kimg *img) { return img->backing_name; }

bool kimg_can_load_snapshot(const struct kimg *img)
{
    return img->drv->snapshot_load != NULL;
}

const char *kimg_driver_name(const struct kimg_driver *drv) { return drv->name; }

const struct kimg_optdesc *kimg_driver_create_opts(const struct kimg_driver *drv)
{
    static const struct kimg_optdesc none[] = { { NULL, 0, NULL } };
    return drv->create_opts ? drv->create_opts : none;
}

bool kimg_driver_can_compress(const struct kimg_driver *drv)
{
    return drv->write_compressed != NULL;
}

bool kimg_driver_can_grow(const struct kimg_driver *drv)
{
    return drv->truncate && !(drv->flags & KIMG_DRV_NO_GROW);
}

const struct kimg_shown_opt *kimg_driver_formatting_opts(const struct kimg_driver *drv)
{
    static const struct kimg_shown_opt size_only[] = {
        { "size", NULL, true }, { NULL, NULL, false },
    };
    return drv && drv->formatting_opts ? drv->formatting_opts : size_only;
}

const struct kimg_optdesc *kimg_driver_amend_opts(const struct kimg_driver *drv)
{
    return drv->amend ? drv->amend_opts : NULL;
}

void kimg_status_units(struct kimg *img, uint64_t *span, uint64_t *cluster)
{
    *span = 0;
    *cluster = 0;
    if (img->drv->status_units)
        img->drv->status_units(img, span, cluster);
}

/* ---- fencing --------------------------------------------------------------- */

void kimg_fence(struct kimg *img)
{
    __atomic_store_n(&img->fenced, true, __ATOMIC_RELEASE);
}

bool kimg_writes_allowed(const struct kimg *img)
{
    return img->writable && !__atomic_load_n(&img->fenced, __ATOMIC_ACQUIRE);
}

int kimg_check_writable(const struct kimg *img)
{
    if (!kimg_writes_allowed(img))
        return kimg_fail(-EBADF, "image is not writable (opened read-only, or fenced "
                         "after an error)");
    return 0;
}

/* ---- request checks ------------------------------------------------------ */

static int check_range(const struct kimg *img, uint64_t off, uint64_t len)
{
    uint64_t end;
    if (__builtin_add_overflow(off, len, &end) || end > img->size)
        return kimg_fail(-EINVAL, "request [%llu, +%llu) beyond the image size %llu",
                         (unsigned long long)off, (unsigned long long)len,
                         (unsigned long long)img->size);
    return 0;
}

/* Every write-type request: the image takes writes (one errno, one
 * message: kimg_check_writable), then the range. */
static int check_write(const struct kimg *img, uint64_t off, uint64_t len)
{
    int ret = kimg_check_writable(img);
    return ret < 0 ? ret : check_range(img, off, len);
}

int kimg_read(struct kimg *img, void *buf, uint64_t off, uint64_t len)
{
    int ret = check_range(img, off, len);
    if (ret < 0 || len == 0)
        return ret;
    return img->drv->read(img, buf, off, len);
}

int kimg_write(struct kimg *img, const void *buf, uint64_t off, uint64_t len)
{
    int ret = check_write(img, off, len);
    if (ret < 0 || len == 0)
        return ret;
    return img->drv->write(img, buf, off, len);
}

int kimg_read_backing(struct kimg *img, void *buf, uint64_t off, uint64_t len)
{
    struct kimg *b = img->backing;
    uint64_t n = 0;
    if (img->backing_name && !b && (img->flags & KIMG_OPEN_NO_BACKING))
        return kimg_fail(-ENOTSUP, "the backing file was not opened");
    if (b && off < b->size) {
        n = b->size - off < len ? b->size - off : len;
        int ret = b->drv->read(b, buf, off, n);
        if (ret < 0)
            return ret;
    }
    if (n < len)
        memset((char *)buf + n, 0, (size_t)(len - n));
    return 0;
}

/* Generic write-zeroes: write a zero buffer in chunks. */
static int zeroes_fallback(struct kimg *img, uint64_t off, uint64_t len)
{
    size_t chunk = len < (1u << 20) ? (size_t)len : (1u << 20);
    void *z = kimg_alloc_aligned_zero(chunk);   /* file.c's alignment rule */
    int ret = 0;
    if (!z)
        return -ENOMEM;
    while (len && ret == 0) {
        size_t n = len < chunk ? (size_t)len : chunk;
        ret = img->drv->write(img, z, off, n);
        off += n;
        len -= n;
    }
    free(z);
    return ret;
}

int kimg_write_zeroes(struct kimg *img, uint64_t off, uint64_t len, unsigned flags)
{
    /* a fast zero: only drivers that keep its promise (KIMG_DRV_FAST_ZERO);
     * zeroing a whole target ahead only on an NBD export */
    if ((flags & KIMG_ZERO_FAST) &&
        (!(img->drv->flags & KIMG_DRV_FAST_ZERO) || !img->drv->write_zeroes ||
         ((flags & KIMG_ZERO_AHEAD) && !kimg_file_is_nbd(img->file))))
        return -ENOTSUP;
    int ret = check_write(img, off, len);
    if (ret < 0 || len == 0)
        return ret;
    if (flags & KIMG_ZERO_FAST) {
        ret = img->drv->write_zeroes(img, off, len, flags);
        return ret == -ENOTSUP || ret == -EOPNOTSUPP ? -ENOTSUP : ret;
    }
    if (img->drv->write_zeroes) {
        ret = img->drv->write_zeroes(img, off, len, flags);
        if (ret != -ENOTSUP)
            return ret;
        kimg_clear_error();
    }
    return zeroes_fallback(img, off, len);
}

int kimg_discard(struct kimg *img, uint64_t off, uint64_t len)
{
    int ret = check_write(img, off, len);
    if (ret < 0 || len == 0)
        return ret;
    if (!img->drv->discard)
        return 0;     /* discard is advisory */
    ret = img->drv->discard(img, off, len);
    return ret == -ENOTSUP ? 0 : ret;
}

int kimg_write_compressed(struct kimg *img, const void *buf, uint64_t off,
                          uint64_t len)
{
    int ret = check_write(img, off, len);
    if (ret < 0 || len == 0)
        return ret;
    if (!img->drv->write_compressed)
        return kimg_fail(-ENOTSUP, "Compression not supported for this file format");
    return img->drv->write_compressed(img, buf, off, len);
}

int64_t kimg_compress_cluster(struct kimg *img, uint64_t off, const void *buf,
                              uint64_t len, void *dst, size_t cap)
{
    uint64_t end;
    if (!img->drv->compress_cluster)
        return -ENOTSUP;      /* (kimg_can_compress tells beforehand) */
    if (__builtin_add_overflow(off, len, &end) || end > img->size || len == 0)
        return -EINVAL;
    return img->drv->compress_cluster(img, off, buf, len, dst, cap);
}

int kimg_write_compressed_data(struct kimg *img, uint64_t off, uint64_t len,
                               const void *cdata, size_t clen)
{
    int ret = check_write(img, off, len);
    if (ret < 0)
        return ret;
    if (!img->drv->write_compressed_data)
        return kimg_fail(-ENOTSUP, "Compression not supported for this file format");
    return img->drv->write_compressed_data(img, off, len, cdata, clen);
}

int kimg_flush(struct kimg *img)
{
    if (!kimg_writes_allowed(img))
        return 0;
    if (img->drv->flush) {
        int ret = img->drv->flush(img);
        if (ret != -ENOTSUP)
            return ret;
    }
    return kimg_file_sync(img->file);
}

int kimg_truncate(struct kimg *img, uint64_t size, enum kimg_prealloc prealloc)
{
    int ret = kimg_check_writable(img);
    if (ret < 0)
        return ret;
    if (!img->drv->truncate)
        return kimg_fail(-ENOTSUP, "this format cannot be resized");
    return img->drv->truncate(img, size, prealloc);
}

int64_t kimg_alloc_data(struct kimg *img, uint64_t off, uint64_t len, uint64_t *host,
                        struct kimg_file **file)
{
    int ret = check_write(img, off, len);
    if (ret < 0 || len == 0)
        return ret;
    if (!kimg_can_alloc_data(img))
        return 0;       /* the range goes through kimg_write */
    int64_t n = img->drv->alloc_data(img, off, len, host, file);
    if (n > (int64_t)len)
        return kimg_fail(-EIO, "driver mapped more than asked for");
    return n;
}

int kimg_commit_data(struct kimg *img, uint64_t off, uint64_t len, uint64_t host)
{
    int ret = check_write(img, off, len);
    if (ret < 0 || len == 0)
        return ret;
    if (!kimg_can_alloc_data(img))
        return kimg_fail(-ENOTSUP, "this format takes no parallel data writes");
    return img->drv->commit_data(img, off, len, host);
}

bool kimg_transforms_data(struct kimg *img)
{
    return img->drv->transform_data && img->drv->transform_data(img, 0, 0, NULL, 0) == 0;
}

int kimg_transform_data(struct kimg *img, uint64_t off, uint64_t host, void *buf,
                        uint64_t len)
{
    if (!len)
        return 0;
    if (!img->drv->transform_data)
        return kimg_fail(-ENOTSUP, "this format stores data as given");
    return img->drv->transform_data(img, off, host, buf, len);
}

int kimg_set_write_option(struct kimg *img, const char *key, const char *value)
{
    int ret = kimg_check_writable(img);
    if (ret < 0)
        return ret;
    ret = img->drv->set_write_option ? img->drv->set_write_option(img, key, value)
                                     : -ENOTSUP;
    if (ret == -ENOTSUP && !kimg_last_error())
        kimg_error("%s is not supported for this format", key);
    return ret;
}

/* ---- block status -------------------------------------------------------- */

int kimg_layer_block_status(struct kimg *img, uint64_t off, uint64_t len,
                            struct kimg_extent *ext)
{
    int ret = check_range(img, off, len);
    if (ret < 0)
        return ret;
    if (len == 0)
        return kimg_fail(-EINVAL, "empty block status request");
    memset(ext, 0, sizeof(*ext));
    ext->start = off;
    ext->file = img->filename;
    if (img->drv->block_status) {
        ret = img->drv->block_status(img, off, len, ext);
        if (ret != -ENOTSUP) {
            if (ret < 0)
                return ret;
            if (ext->length == 0 || ext->length > len)
                return kimg_fail(-EIO, "driver returned a bad block status length");
            ext->start = off;
            ext->depth = 0;
            if (!(ext->flags & KIMG_BS_OFFSET_VALID))
                ext->host_file = NULL;
            else if (!ext->host_file && ext->file == img->filename)
                ext->host_file = img->file;
            return 0;
        }
        kimg_clear_error();
    }
    ext->length = len;
    ext->flags = KIMG_BS_DATA | KIMG_BS_ALLOCATED;
    return 0;
}

int kimg_block_status(struct kimg *img, uint64_t off, uint64_t len,
                      struct kimg_extent *ext)
{
    struct kimg *layer = img;
    int depth = 0;
    int ret = check_range(img, off, len);
    if (ret < 0)
        return ret;
    for (;;) {
        ret = kimg_layer_block_status(layer, off, len, ext);
        if (ret < 0)
            return ret;
        ext->depth = depth;
        if (ext->flags & KIMG_BS_ALLOCATED)
            return 0;
        len = ext->length;
        struct kimg *b = layer->backing;
        if (!b || off >= b->size) {
            /* decided by no layer: reads as zeros; a host offset the layer
             * reported (preallocated, or an unallocated subcluster of an
             * allocated cluster) is kept, as qemu-img map shows it */
            ext->flags = KIMG_BS_ZERO | (ext->flags & KIMG_BS_OFFSET_VALID);
            if (!(ext->flags & KIMG_BS_OFFSET_VALID))
                ext->offset = 0;
            return 0;
        }
        if (len > b->size - off)
            len = b->size - off;
        layer = b;
        depth++;
    }
}

/* kimg_block_status, refined for the engines that read data: where the
 * layer that decides a DATA range has content_status, its answer for that
 * range (zeros it need not read, or where the bytes lie).  The run never
 * grows past the block status one. */
int kimg_content_status(struct kimg *img, uint64_t off, uint64_t len,
                        struct kimg_extent *ext)
{
    int ret = kimg_block_status(img, off, len, ext);
    if (ret < 0 || !(ext->flags & KIMG_BS_DATA))
        return ret;
    struct kimg *layer = img;
    for (int d = 0; d < ext->depth && layer; d++)
        layer = layer->backing;
    if (!layer || !layer->drv->content_status)
        return 0;
    struct kimg_extent c = { .start = off, .file = layer->filename, .depth = ext->depth };
    ret = layer->drv->content_status(layer, off, ext->length, &c);
    if (ret == -ENOTSUP) {
        kimg_clear_error();
        return 0;
    }
    if (ret < 0)
        return ret;
    if (c.length == 0 || c.length > ext->length)
        return kimg_fail(-EIO, "driver returned a bad content status length");
    c.flags &= KIMG_BS_DATA | KIMG_BS_ZERO | KIMG_BS_OFFSET_VALID;
    c.flags |= ext->flags & KIMG_BS_ALLOCATED;
    if (!(c.flags & KIMG_BS_OFFSET_VALID)) {
        c.offset = 0;
        c.host_file = NULL;
    } else if (!c.host_file && c.file == layer->filename) {
        c.host_file = layer->file;
    }
    *ext = c;
    return 0;
}

/* ---- info and check ------------------------------------------------------ */

/* qemu's full backing name: a plain name relative to the image's folder; a
 * name with a protocol as it is.  A "file:" name keeps its prefix but
 * names the file kimg opens, in the image's folder (qemu would take it
 * relative to the working directory): the same text when that is the
 * image's folder. */
static char *full_backing_name(struct kimg *img)
{
    const char *name = img->backing_name, *path;
    size_t plen = strcspn(name, ":/");
    if (name[plen] != ':' && nbd_relative(img, name))
        return NULL;
    if (name[plen] != ':')
        return img->backing_path ? strdup(img->backing_path)
                                 : kimg_path_relative_to(img->filename, name);
    if (strncmp(name, "file:", 5) || !name[5])
        return strdup(name);
    path = name + 5;
    char *rel = img->backing_path ? strdup(img->backing_path)
                                  : kimg_path_relative_to(img->filename, path);
    char *full = rel ? malloc(strlen(rel) + 6) : NULL;
    if (full)
        sprintf(full, "file:%s", rel);
    free(rel);
    return full;
}

int kimg_get_info(struct kimg *img, struct kimg_info *info)
{
    memset(info, 0, sizeof(*info));
    info->virtual_size = img->size;
    info->actual_size = kimg_file_allocated(img->file);
    info->dirty_unknown = kimg_file_is_nbd(img->file) &&
                          (img->drv->flags & KIMG_DRV_IDENTITY_MAP);
    if (img->backing_name) {
        info->backing_filename = strdup(img->backing_name);
        info->full_backing_filename = full_backing_name(img);
        if (img->backing_format)
            info->backing_format = strdup(img->backing_format);
    }
    if (img->drv->info) {
        int ret = img->drv->info(img, info);
        if (ret < 0) {
            kimg_info_free(info);
            return ret;
        }
    }
    return 0;
}

void kimg_info_free(struct kimg_info *info)
{
    free(info->backing_filename);
    free(info->full_backing_filename);
    free(info->backing_format);
    for (size_t i = 0; i < info->nb_snapshots; i++) {
        free(info->snapshots[i].id);
        free(info->snapshots[i].name);
    }
    free(info->snapshots);
    kimg_jv_free(info->format_specific);
    memset(info, 0, sizeof(*info));
}

int kimg_check(struct kimg *img, struct kimg_check *res, unsigned fix)
{
    if (!img->drv->check)
        return -ENOTSUP;
    /* a read-only format (no write member, opened read-only for check -r):
     * its check refuses FIX (-ENOTSUP) or repairs nothing it must write */
    if (fix && img->drv->write) {
        int ret = kimg_check_writable(img);
        if (ret < 0)
            return ret;
    }
    return img->drv->check(img, res, fix);
}

int kimg_open_aux_file(struct kimg *img, const char *name, bool writable,
                       struct kimg_file **out)
{
    const char *path;
    if (img->flags & KIMG_OPEN_ARCHIVE_MEMBER)
        return kimg_fail(-EPERM, "the disk needs the external data file '%.200s'; kimg opens "
                         "nothing outside the archive", name);
    if (img->flags & KIMG_OPEN_UNTRUSTED)
        return kimg_fail(-EPERM, "image needs the external data file '%.200s'; refusing to "
                         "open it under --untrusted", name);
    int ret = kimg_image_path(name, &path);
    if (ret < 0)
        return ret;
    if (nbd_relative(img, path))
        return kimg_fail(-EINVAL, "Cannot generate a base directory for NBD nodes");
    if (kimg_nbd_is_uri(path)) {
        if ((ret = remote_name_ok(img, "external data file", path)) < 0)
            return ret;
        return kimg_file_open(out, path, KIMG_FILE_FROM_IMAGE |
                              (writable ? KIMG_FILE_RDWR : 0));
    }
    if ((ret = local_name_ok(img, "external data file", path)) < 0)
        return ret;
    char *full = kimg_path_relative_to(img->filename, path);
    if (!full)
        return -ENOMEM;
    ret = kimg_file_open(out, full, (writable ? KIMG_FILE_RDWR : 0) |
                         ((img->flags & KIMG_OPEN_DIRECT) ? KIMG_FILE_DIRECT : 0));
    free(full);
    if (ret == 0 && (ret = kimg_lock_named(img, *out)) < 0) {
        kimg_file_close(*out);
        *out = NULL;
    }
    return ret;
}
