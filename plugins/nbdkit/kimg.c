/*
 * nbdkit-kimg-plugin — serves one image kimg reads (any format it has, with
 * its backing chain; a disk inside an OVA) as a raw NBD export through
 * nbdkit, using libkimg's public API alone (kimg.h; compiled with
 * -Iinclude only).  Its parameters, the write rules (read-only unless
 * readonly=false, and then only formats kimg writes in place) and the
 * thread model are in README.md beside this file.
 */
#define NBDKIT_API_VERSION 2
#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL
#include <nbdkit-plugin.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kimg.h"

#ifndef KIMG_VERSION
#define KIMG_VERSION "unknown"
#endif

/* Most extents one extents request answers: nbdkit sends what fits, and
 * the client asks again from where the answer stops. */
#define MAX_EXTENTS 65536
/* Transfers of this size or more from a buffer that is not 64-byte
 * aligned go through an aligned bounce buffer (libkimg's buffer rule:
 * the kernel copies into misaligned buffers several times slower on
 * some CPUs; the test suite makes a breach abort). */
#define BOUNCE_MIN 4096u

/* ---- configuration (set before any connection, then read only) ------- */

static char *cfg_file;              /* file=: the absolute path */
static char *cfg_format;            /* format=, or NULL: probe */
static unsigned cfg_disk;           /* disk=N of an OVA, 0: the first */
static bool cfg_disk_given;
static bool cfg_writable;           /* readonly=false */
static bool cfg_untrusted;          /* untrusted=true: kimg's --untrusted */
static bool cfg_share;              /* force-share=true: kimg's -U */
static struct kimg_opts *cfg_image_opts; /* image-opts=: instead of file= */

/* One connection's image.  Reads and block status share LOCK, every
 * request that changes the image takes it alone: libkimg reads one
 * handle from several threads at once (its engines do), and serializing
 * changes keeps the plugin off any driver's own write concurrency. */
struct handle {
    struct kimg *img;           /* NULL once kimg_unload closed it */
    bool writable;
    pthread_rwlock_t lock;
    struct handle *next, **prev;    /* in `handles` until closed */
};

/* The open handles.  nbdkit may unload the plugin without calling close
 * for a connection still being torn down (seen with --run: the client
 * has gone, the server exits): unload then closes what is left, so the
 * image's caches and metadata reach the file as on a clean close. */
static struct handle *handles;
static pthread_mutex_t handles_lock = PTHREAD_MUTEX_INITIALIZER;

/* H's image with H's lock taken (shared for reads, alone for changes),
 * or NULL (lock released, error set) once unload has closed it. */
static struct kimg *lock_img(struct handle *h, bool alone)
{
    if (alone)
        pthread_rwlock_wrlock(&h->lock);
    else
        pthread_rwlock_rdlock(&h->lock);
    if (h->img)
        return h->img;
    pthread_rwlock_unlock(&h->lock);
    nbdkit_error("the server is shutting down");
    nbdkit_set_error(ESHUTDOWN);
    return NULL;
}

/* Report a libkimg failure RET (a negative errno) of WHAT through
 * nbdkit_error and return -1: "WHAT: MESSAGE", with the message libkimg
 * set, the whole line escaped for a terminal (kimg_print_for_terminal:
 * it may quote names read from the image). */
static int report(int ret, const char *what)
{
    const char *msg = kimg_last_error();
    char *esc = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&esc, &len);
    if (f) {
        kimg_print_for_terminal(f, what);
        fputs(": ", f);
        kimg_print_for_terminal(f, msg ? msg : strerror(ret < 0 ? -ret : EIO));
        fclose(f);
    }
    nbdkit_error("%s", esc ? esc : "out of memory");
    free(esc);
    kimg_clear_error();
    nbdkit_set_error(ret < 0 && ret > -4096 ? -ret : EIO);
    return -1;
}

static int parse_flag(const char *key, const char *value, bool *out)
{
    int r = nbdkit_parse_bool(value);
    if (r < 0)
        return -1;
    (void)key;
    *out = r;
    return 0;
}

static int kimg_config(const char *key, const char *value)
{
    if (strcmp(key, "file") == 0) {
        free(cfg_file);
        /* absolute now: nbdkit changes to / when it runs in the background */
        cfg_file = nbdkit_realpath(value);
        return cfg_file ? 0 : -1;
    }
    if (strcmp(key, "format") == 0) {
        free(cfg_format);
        cfg_format = strdup(value);
        return cfg_format ? 0 : -1;
    }
    if (strcmp(key, "disk") == 0) {
        cfg_disk_given = true;
        return nbdkit_parse_unsigned("disk", value, &cfg_disk);
    }
    if (strcmp(key, "readonly") == 0) {
        bool ro;
        if (parse_flag(key, value, &ro) < 0)
            return -1;
        cfg_writable = !ro;
        return 0;
    }
    if (strcmp(key, "untrusted") == 0)
        return parse_flag(key, value, &cfg_untrusted);
    if (strcmp(key, "force-share") == 0)
        return parse_flag(key, value, &cfg_share);
    if (strcmp(key, "object") == 0) {
        /* loaded now (a file= secret is read before nbdkit changes folder) */
        kimg_clear_error();
        int ret = kimg_object_add(value, NULL);
        if (ret == 1) {
            nbdkit_error("object=help: see qemu-img's --object secret,help");
            return -1;
        }
        return ret < 0 ? report(ret, "object") : 0;
    }
    if (strcmp(key, "image-opts") == 0) {
        kimg_clear_error();
        kimg_opts_free(cfg_image_opts);
        cfg_image_opts = NULL;
        int ret = kimg_image_opts_parse(value, &cfg_image_opts);
        if (ret < 0)
            return report(ret, "image-opts");
        /* the file's name made absolute, as file='s */
        const char *name = kimg_opts_get(cfg_image_opts, "file.filename");
        if (name) {
            char *abs = nbdkit_realpath(name);
            if (!abs)
                return -1;
            ret = kimg_opts_set(&cfg_image_opts, "file.filename", abs);
            free(abs);
            if (ret < 0)
                return report(ret, "image-opts");
        }
        return 0;
    }
    nbdkit_error("unknown parameter '%s'", key);
    return -1;
}

static int kimg_config_complete(void)
{
    if (!cfg_file && !cfg_image_opts) {
        nbdkit_error("you must give file=PATH (or image-opts=...)");
        return -1;
    }
    if (cfg_file && cfg_image_opts) {
        nbdkit_error("file= and image-opts= name the image twice: give one");
        return -1;
    }
    if (cfg_image_opts && (cfg_format || cfg_disk_given)) {
        nbdkit_error("with image-opts=, the format is its driver= (no format= or disk=)");
        return -1;
    }
    if (cfg_disk_given && cfg_format) {
        nbdkit_error("disk= finds an archive's disk by probing: not with format=");
        return -1;
    }
    if (cfg_share && cfg_writable) {
        nbdkit_error("force-share=true is for read-only exports: not with readonly=false");
        return -1;
    }
    return 0;
}

static void kimg_unload(void)
{
    pthread_mutex_lock(&handles_lock);
    for (struct handle *h = handles; h; h = handles) {
        pthread_rwlock_wrlock(&h->lock);    /* requests in flight finish */
        kimg_clear_error();
        int ret = kimg_close(h->img);
        if (ret < 0)
            report(ret, "close");
        h->img = NULL;
        pthread_rwlock_unlock(&h->lock);
        handles = h->next;      /* close() frees it, if it still comes */
        if (handles)
            handles->prev = &handles;
        h->prev = NULL;
    }
    pthread_mutex_unlock(&handles_lock);
    free(cfg_file);
    free(cfg_format);
    kimg_opts_free(cfg_image_opts);
    kimg_secrets_clear();
}

#define kimg_config_help \
    "file=PATH            (required) The image to serve (or image-opts=).\n" \
    "format=FMT           Its format (default: probe; a probed raw image is\n" \
    "                     served read-only: give format=raw to write it).\n" \
    "disk=N               Disk N (1-based) of an OVA archive.\n" \
    "readonly=false       Serve it writable (only formats kimg writes in\n" \
    "                     place, e.g. raw and qcow2; default true).\n" \
    "untrusted=true       kimg's --untrusted: open no file but this one.\n" \
    "force-share=true     Take no locks (kimg's -U; read-only only).\n" \
    "object=SPEC          A secret, as qemu-img's --object secret,id=ID,...\n" \
    "image-opts=OPTS      The image named by options, as --image-opts\n" \
    "                     (driver=qcow2,file.filename=F,encrypt.key-secret=ID)."

static void list_format(const struct kimg_driver *drv, void *opaque)
{
    FILE *f = opaque;
    fprintf(f, "%s%s", ftell(f) ? "," : "", kimg_driver_name(drv));
}

static void kimg_dump_plugin(void)
{
    char *list = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&list, &len);
    if (f) {
        kimg_for_each_driver(list_format, f);
        fclose(f);
    }
    printf("kimg_version=%s\n", KIMG_VERSION);
    printf("kimg_formats=%s\n", list ? list : "");
    free(list);
}

/* ---- connections ------------------------------------------------------ */

static int open_image(struct kimg **img, unsigned flags)
{
    if (cfg_image_opts)
        return kimg_open_opts(img, cfg_image_opts, flags);
    return kimg_open_disk(img, cfg_file, cfg_format, flags | KIMG_OPEN_PATH, cfg_disk);
}

/* Images this server's connections hold open (counted down only once
 * kimg_close has dropped the image's locks). */
static int open_images;

/* Whether another connection of this server has the image open. */
static bool have_handles(void)
{
    pthread_mutex_lock(&handles_lock);
    bool any = open_images > 0;
    pthread_mutex_unlock(&handles_lock);
    return any;
}

/* A writable open whose write lock another connection of this server
 * holds waits for it, up to 5 s: a client that reconnects (qemu-img
 * convert -O raw onto an export first opens it to zero its first sector,
 * closes, then opens it again) may be in the new connection's open before
 * nbdkit has closed the old one.  A lock held by another process, or by a
 * connection that stays open, still fails (after the wait). */
static int open_image_waiting(struct kimg **img, unsigned flags)
{
    int ret = open_image(img, flags);
    for (int i = 0; ret == -EAGAIN && (flags & KIMG_OPEN_RDWR) && i < 500 && have_handles(); i++) {
        kimg_clear_error();
        nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000 * 1000 }, NULL);
        ret = open_image(img, flags);
    }
    return ret;
}

static void *kimg_nbd_open(int readonly)
{
    unsigned flags = (cfg_untrusted ? KIMG_OPEN_UNTRUSTED : 0) |
                     (cfg_share ? KIMG_OPEN_SHARE : 0);
    bool want_write = cfg_writable && !readonly;
    struct handle *h = calloc(1, sizeof(*h));
    if (!h) {
        nbdkit_error("calloc: %m");
        return NULL;
    }
    kimg_clear_error();
    int ret = open_image_waiting(&h->img, flags | (want_write ? KIMG_OPEN_RDWR : 0));
    if (ret < 0 && want_write &&
        (ret == -ENOTSUP || ret == -EROFS || ret == -EPERM || ret == -EACCES)) {
        /* a format kimg only reads, a probed raw image, a read-only file:
         * served read-only, as nbdkit's file plugin does */
        nbdkit_debug("kimg: not writable (%s): serving read-only",
                     kimg_last_error() ? kimg_last_error() : strerror(-ret));
        kimg_clear_error();
        ret = open_image(&h->img, flags);
    }
    if (ret < 0) {
        report(ret, cfg_file ? cfg_file : "image-opts");
        free(h);
        return NULL;
    }
    h->writable = kimg_is_writable(h->img);
    pthread_rwlock_init(&h->lock, NULL);
    pthread_mutex_lock(&handles_lock);
    open_images++;
    h->next = handles;
    if (handles)
        handles->prev = &h->next;
    h->prev = &handles;
    handles = h;
    pthread_mutex_unlock(&handles_lock);
    return h;
}

static void kimg_nbd_close(void *handle)
{
    struct handle *h = handle;
    pthread_mutex_lock(&handles_lock);
    if (h->prev) {
        *h->prev = h->next;
        if (h->next)
            h->next->prev = h->prev;
    }
    pthread_mutex_unlock(&handles_lock);
    kimg_clear_error();
    int ret = h->img ? kimg_close(h->img) : 0;
    if (ret < 0)
        report(ret, "close");
    pthread_mutex_lock(&handles_lock);
    open_images--;
    pthread_mutex_unlock(&handles_lock);
    pthread_rwlock_destroy(&h->lock);
    free(h);
}

static int64_t kimg_get_size(void *handle)
{
    struct handle *h = handle;
    return (int64_t)kimg_size(h->img);
}

static int kimg_can_write(void *handle)
{
    return ((struct handle *)handle)->writable;
}

static int kimg_can_multi_conn(void *handle)
{
    /* read-only: every connection's handle sees the same bytes; writable:
     * the image's write lock admits one connection at a time anyway */
    return !((struct handle *)handle)->writable;
}

static int kimg_can_zero(void *handle)
{
    return 1;   /* kimg_write_zeroes: the format's zero clusters or holes */
}

/* NBD_CMD_FLAG_FAST_ZERO: always advertised; a request the image cannot
 * zero without writing zeros (kimg_write_zeroes with KIMG_ZERO_FAST: a raw
 * file's hole or unwritten extent, a block device's zero-out that never
 * falls back, a qcow2 image's whole zero clusters) fails at once with
 * ENOTSUP and changes nothing, so a client (qemu-img convert, kimg
 * convert, nbdcopy) writes its zeros as it goes instead. */
static int kimg_can_fast_zero(void *handle)
{
    return 1;
}

static int kimg_can_fua(void *handle)
{
    return NBDKIT_FUA_EMULATE;  /* a flush after the write */
}

static int kimg_can_extents(void *handle)
{
    return 1;
}

/* ---- data ------------------------------------------------------------- */

/* An aligned bounce buffer of at least LEN bytes, one per thread. */
static __thread void *bounce;
static __thread size_t bounce_len;
static pthread_key_t bounce_key;
static pthread_once_t bounce_once = PTHREAD_ONCE_INIT;

static void bounce_key_init(void)
{
    pthread_key_create(&bounce_key, free);
}

static void *get_bounce(size_t len)
{
    if (bounce_len < len) {
        pthread_once(&bounce_once, bounce_key_init);
        free(bounce);
        bounce_len = 0;
        bounce = kimg_alloc_aligned(len);
        pthread_setspecific(bounce_key, bounce);
        if (!bounce)
            return NULL;
        bounce_len = len;
    }
    return bounce;
}

static bool misaligned(const void *buf, uint32_t count)
{
    return count >= BOUNCE_MIN && ((uintptr_t)buf & 63);
}

static int kimg_nbd_pread(void *handle, void *buf, uint32_t count, uint64_t offset,
                          uint32_t flags)
{
    struct handle *h = handle;
    void *io = misaligned(buf, count) ? get_bounce(count) : buf;
    if (!io) {
        nbdkit_error("out of memory");
        return -1;
    }
    kimg_clear_error();
    struct kimg *img = lock_img(h, false);
    if (!img)
        return -1;
    int ret = kimg_read(img, io, offset, count);
    pthread_rwlock_unlock(&h->lock);
    if (ret < 0)
        return report(ret, "read");
    if (io != buf)
        memcpy(buf, io, count);
    return 0;
}

static int kimg_nbd_pwrite(void *handle, const void *buf, uint32_t count, uint64_t offset,
                           uint32_t flags)
{
    struct handle *h = handle;
    const void *io = buf;
    if (misaligned(buf, count)) {
        void *b = get_bounce(count);
        if (!b) {
            nbdkit_error("out of memory");
            return -1;
        }
        io = memcpy(b, buf, count);
    }
    kimg_clear_error();
    struct kimg *img = lock_img(h, true);
    if (!img)
        return -1;
    int ret = kimg_write(img, io, offset, count);
    pthread_rwlock_unlock(&h->lock);
    return ret < 0 ? report(ret, "write") : 0;
}

static int kimg_nbd_zero(void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
    struct handle *h = handle;
    kimg_clear_error();
    struct kimg *img = lock_img(h, true);
    if (!img)
        return -1;
    int ret = kimg_write_zeroes(img, offset, count,
                                ((flags & NBDKIT_FLAG_MAY_TRIM) ? KIMG_ZERO_MAY_UNMAP : 0) |
                                ((flags & NBDKIT_FLAG_FAST_ZERO) ? KIMG_ZERO_FAST : 0));
    pthread_rwlock_unlock(&h->lock);
    if (ret == -ENOTSUP && (flags & NBDKIT_FLAG_FAST_ZERO)) {
        nbdkit_set_error(ENOTSUP);      /* not an error: the client's cue */
        return -1;
    }
    return ret < 0 ? report(ret, "zero") : 0;
}

static int kimg_nbd_trim(void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
    struct handle *h = handle;
    kimg_clear_error();
    struct kimg *img = lock_img(h, true);
    if (!img)
        return -1;
    int ret = kimg_discard(img, offset, count);     /* advisory */
    pthread_rwlock_unlock(&h->lock);
    return ret < 0 ? report(ret, "trim") : 0;
}

static int kimg_nbd_flush(void *handle, uint32_t flags)
{
    struct handle *h = handle;
    kimg_clear_error();
    struct kimg *img = lock_img(h, true);
    if (!img)
        return -1;
    int ret = kimg_flush(img);
    pthread_rwlock_unlock(&h->lock);
    return ret < 0 ? report(ret, "flush") : 0;
}

/* Block status through the chain, as qemu-nbd answers it: a range not
 * read from stored data is a hole, a range that reads as zeros is zero. */
static int kimg_nbd_extents(void *handle, uint32_t count, uint64_t offset, uint32_t flags,
                            struct nbdkit_extents *extents)
{
    struct handle *h = handle;
    uint64_t end = offset + count;
    int ret = 0, n = 0;
    kimg_clear_error();
    struct kimg *img = lock_img(h, false);
    if (!img)
        return -1;
    while (offset < end && n < MAX_EXTENTS) {
        struct kimg_extent e;
        ret = kimg_block_status(img, offset, end - offset, &e);
        if (ret < 0)
            break;
        uint32_t type = ((e.flags & KIMG_BS_DATA) ? 0 : NBDKIT_EXTENT_HOLE) |
                        ((e.flags & KIMG_BS_ZERO) ? NBDKIT_EXTENT_ZERO : 0);
        if (nbdkit_add_extent(extents, offset, e.length, type) < 0) {
            pthread_rwlock_unlock(&h->lock);
            return -1;
        }
        offset += e.length;
        n++;
        if (flags & NBDKIT_FLAG_REQ_ONE)
            break;
    }
    pthread_rwlock_unlock(&h->lock);
    return ret < 0 ? report(ret, "block status") : 0;
}

static struct nbdkit_plugin plugin = {
    .name = "kimg",
    .longname = "nbdkit kimg plugin",
    .version = KIMG_VERSION,
    .description = "Serve any image kimg reads (qcow2, vmdk, vhd, vhdx, vdi, luks, "
                   "a disk of an OVA) as a raw export",
    .unload = kimg_unload,
    .config = kimg_config,
    .config_complete = kimg_config_complete,
    .config_help = kimg_config_help,
    .magic_config_key = "file",
    .dump_plugin = kimg_dump_plugin,
    .open = kimg_nbd_open,
    .close = kimg_nbd_close,
    .get_size = kimg_get_size,
    .can_write = kimg_can_write,
    .can_flush = kimg_can_write,
    .can_trim = kimg_can_write,
    .can_zero = kimg_can_zero,
    .can_fast_zero = kimg_can_fast_zero,
    .can_fua = kimg_can_fua,
    .can_multi_conn = kimg_can_multi_conn,
    .can_extents = kimg_can_extents,
    .pread = kimg_nbd_pread,
    .pwrite = kimg_nbd_pwrite,
    .zero = kimg_nbd_zero,
    .trim = kimg_nbd_trim,
    .flush = kimg_nbd_flush,
    .extents = kimg_nbd_extents,
    .errno_is_preserved = 0,
};

NBDKIT_REGISTER_PLUGIN(plugin)
