/*
 * luks.c — the standalone "luks" format (qemu's block/crypto.c): a LUKS1
 * header at offset 0, the encrypted guest data from the header's payload
 * offset to the file's end.  Probe, open (the key from the open option
 * "key-secret"; info without one under KIMG_OPEN_NO_IO), reads and writes
 * through the sector cipher (IV = guest offset / 512), create, resize,
 * measure, and amend of the key slots.  The driver table is at the bottom.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "luks_int.h"
#include "kimg/opts.h"

#define CHUNK (1u << 20)        /* bounce buffer for writes */

struct luks_state {
    struct luks *l;
    uint64_t payload;           /* bytes */
    pthread_mutex_t rmw;        /* serializes partial-sector writes */
};

static const struct kimg_optdesc luks_create_opts[] = {
    { "size", KIMG_OPT_SIZE, "Virtual disk size" },
    { "key-secret", KIMG_OPT_STRING, "ID of the secret that provides the keyslot passphrase" },
    { "cipher-alg", KIMG_OPT_STRING, "Name of encryption cipher algorithm" },
    { "cipher-mode", KIMG_OPT_STRING, "Name of encryption cipher mode" },
    { "ivgen-alg", KIMG_OPT_STRING, "Name of IV generator algorithm" },
    { "ivgen-hash-alg", KIMG_OPT_STRING, "Name of IV generator hash algorithm" },
    { "hash-alg", KIMG_OPT_STRING, "Name of encryption hash algorithm" },
    { "iter-time", KIMG_OPT_NUMBER, "Time to spend in PBKDF in milliseconds" },
    { NULL, 0, NULL },
};

/* qemu-img's "Formatting" line: the options given, in this order */
static const struct kimg_shown_opt luks_shown[] = {
    { "size", NULL, true }, { "key-secret", NULL, false }, { "cipher-alg", NULL, false },
    { "cipher-mode", NULL, false }, { "ivgen-alg", NULL, false },
    { "ivgen-hash-alg", NULL, false }, { "hash-alg", NULL, false },
    { "iter-time", NULL, false }, { NULL, NULL, false },
};

static const struct kimg_optdesc luks_amend_opts[] = {
    { "iter-time", KIMG_OPT_NUMBER, "Time to spend in PBKDF in milliseconds" },
    { "keyslot", KIMG_OPT_NUMBER, "Select a single keyslot to modify explicitly" },
    { "new-secret", KIMG_OPT_STRING,
      "New secret to set in the matching keyslots. Empty string to erase" },
    { "old-secret", KIMG_OPT_STRING, "Select all keyslots that match this password" },
    { "state", KIMG_OPT_STRING, "Select new state of affected keyslots (active/inactive)" },
    { NULL, 0, NULL },
};

/* ---- the library's I/O on the image file -------------------------------- */

static int io_pread(void *o, void *buf, size_t len, uint64_t off)
{
    return kimg_file_pread_zero_eof(o, buf, len, off);
}

static int io_pwrite(void *o, const void *buf, size_t len, uint64_t off)
{
    return kimg_file_pwrite(o, buf, len, off);
}

static int io_sync(void *o)
{
    return kimg_file_sync(o);
}

static int file_io(struct kimg_file *f, bool writable, struct luks_io *io)
{
    io->opaque = f;
    io->pread = io_pread;
    io->pwrite = writable ? io_pwrite : NULL;
    io->sync = writable ? io_sync : NULL;
    return kimg_file_size(f, &io->len);
}

/* The secret named ID (a create or open option) into *DATA. */
static int get_secret(const char *id, uint8_t **data, size_t *len)
{
    if (!id)
        return kimg_fail(-EINVAL, "Parameter 'key-secret' is required for cipher");
    return kimg_secret_get(id, data, len);
}

static int unlock_with(struct luks *l, const char *id)
{
    uint8_t *key;
    size_t len;
    int ret = get_secret(id, &key, &len);
    if (ret < 0)
        return ret;
    ret = luks_unlock(l, key, len);
    kimg_secret_free(key, len);
    return ret;
}

/* ---- probe, open, close ---------------------------------------------------- */

static int luks_probe(const uint8_t *buf, size_t len, const char *filename)
{
    return len >= 6 && !memcmp(buf, "LUKS\xba\xbe", 6) ? 100 : 0;
}

static int luks_drv_open(struct kimg *img)
{
    struct luks_state *s = img->state;
    struct luks_io io;
    int ret;

    if ((ret = file_io(img->file, img->writable, &io)) < 0)
        return ret;
    ret = luks_open(&s->l, &io, img->flags & KIMG_OPEN_UNTRUSTED ? LUKS_OPEN_UNTRUSTED : 0);
    if (ret < 0)
        return ret;
    const char *id = kimg_open_opt(img, "key-secret");
    /* qemu opens a volume without its key for metadata (info) only */
    if (id || !(img->flags & KIMG_OPEN_NO_IO) || img->writable)
        ret = unlock_with(s->l, id);
    if (ret < 0) {
        luks_close(s->l);
        s->l = NULL;
        return ret;
    }
    s->payload = luks_payload_offset(s->l);
    /* luks_open checked payload <= len; a file that ends inside a sector
     * has its last sector whole, as qemu's block layer counts sectors */
    img->size = (io.len - s->payload + LUKS_SECTOR - 1) / LUKS_SECTOR * LUKS_SECTOR;
    pthread_mutex_init(&s->rmw, NULL);
    return 0;
}

static void luks_drv_close(struct kimg *img)
{
    struct luks_state *s = img->state;
    luks_close(s->l);
    s->l = NULL;
    pthread_mutex_destroy(&s->rmw);
}

/* ---- data ------------------------------------------------------------------ */

static int locked(const struct luks_state *s)
{
    return luks_unlocked(s->l) ? 0 : kimg_fail(-ENOKEY, "Parameter 'key-secret' is "
                                                "required for cipher");
}

/* Read and decrypt the whole sectors [A, A+N) (guest bytes) into BUF. */
static int read_sectors(struct kimg *img, uint8_t *buf, uint64_t a, size_t n)
{
    struct luks_state *s = img->state;
    int ret = kimg_file_pread_zero_eof(img->file, buf, n, s->payload + a);
    return ret < 0 ? ret : luks_decrypt(s->l, a / LUKS_SECTOR, buf, n);
}

static int luks_drv_read(struct kimg *img, void *buf, uint64_t off, uint64_t len)
{
    struct luks_state *s = img->state;
    int ret = locked(s);
    if (ret < 0)
        return ret;
    if (off % LUKS_SECTOR == 0 && len % LUKS_SECTOR == 0)
        return read_sectors(img, buf, off, (size_t)len);
    /* partial sectors: through a bounce buffer, a chunk at a time */
    uint8_t *b = kimg_alloc_aligned(CHUNK);
    if (!b)
        return kimg_fail(-ENOMEM, "out of memory");
    while (len > 0 && ret == 0) {
        uint64_t a = off / LUKS_SECTOR * LUKS_SECTOR;
        uint64_t n = off - a + len;
        n = n > CHUNK ? CHUNK : (n + LUKS_SECTOR - 1) / LUKS_SECTOR * LUKS_SECTOR;
        ret = read_sectors(img, b, a, (size_t)n);
        uint64_t take = n - (off - a) < len ? n - (off - a) : len;
        if (ret == 0)
            memcpy(buf, b + (off - a), (size_t)take);
        buf = (uint8_t *)buf + take;
        off += take;
        len -= take;
    }
    explicit_bzero(b, CHUNK);
    free(b);
    return ret;
}

static int luks_drv_write(struct kimg *img, const void *buf, uint64_t off, uint64_t len)
{
    struct luks_state *s = img->state;
    bool partial = off % LUKS_SECTOR || len % LUKS_SECTOR;
    int ret = locked(s);
    if (ret < 0)
        return ret;
    uint8_t *b = kimg_alloc_aligned(CHUNK);
    if (!b)
        return kimg_fail(-ENOMEM, "out of memory");
    if (partial)
        pthread_mutex_lock(&s->rmw);
    while (len > 0 && ret == 0) {
        uint64_t a = off / LUKS_SECTOR * LUKS_SECTOR;
        uint64_t n = off - a + len;
        n = n > CHUNK ? CHUNK : (n + LUKS_SECTOR - 1) / LUKS_SECTOR * LUKS_SECTOR;
        uint64_t take = n - (off - a) < len ? n - (off - a) : len;
        if (off != a || take % LUKS_SECTOR)
            ret = read_sectors(img, b, a, (size_t)n);
        if (ret == 0) {
            memcpy(b + (off - a), buf, (size_t)take);
            ret = luks_encrypt(s->l, a / LUKS_SECTOR, b, (size_t)n);
        }
        if (ret == 0)
            ret = kimg_file_pwrite(img->file, b, (size_t)n, s->payload + a);
        buf = (const uint8_t *)buf + take;
        off += take;
        len -= take;
    }
    if (partial)
        pthread_mutex_unlock(&s->rmw);
    explicit_bzero(b, CHUNK);
    free(b);
    return ret;
}

static int luks_drv_flush(struct kimg *img)
{
    return kimg_file_sync(img->file);
}

/* As qemu's: every byte is data (unwritten ranges decrypt to noise), with
 * no host offset: the bytes in the file are ciphertext, so no engine may
 * copy them plainly (and map refuses its human form, as qemu-img). */
static int luks_drv_block_status(struct kimg *img, uint64_t off, uint64_t len,
                                 struct kimg_extent *ext)
{
    ext->length = len;
    ext->flags = KIMG_BS_ALLOCATED | KIMG_BS_DATA;
    return 0;
}

/* Resize: the file cut or extended at payload + SIZE, as qemu.  A grown
 * area reads as noise (what zeros decrypt to), like a new luks image's
 * unwritten data (KIMG_DRV_NO_ZERO_INIT); falloc reserves it, as qemu.
 * preallocation=full writes the encryption of zeros there, so the guest
 * reads zeros (but for a partial last sector, cut with the file): qemu
 * 7.2 writes plain zeros, which decrypt to noise.  metadata is refused
 * with qemu's message.  The size counts whole sectors, as at open. */
static int luks_drv_truncate(struct kimg *img, uint64_t size, enum kimg_prealloc prealloc)
{
    struct luks_state *s = img->state;
    uint64_t old = img->size;
    if (prealloc == KIMG_PREALLOC_METADATA)
        return kimg_fail(-ENOTSUP, "Unsupported preallocation mode: metadata");
    int ret = prealloc == KIMG_PREALLOC_FULL && size > old ? locked(s) : 0;
    if (ret == 0)
        ret = kimg_file_truncate(img->file, s->payload + size);
    if (ret == 0 && size > old && prealloc == KIMG_PREALLOC_FALLOC)
        ret = kimg_file_allocate(img->file, s->payload + old, size - old);
    if (ret == 0)
        img->size = (size + LUKS_SECTOR - 1) / LUKS_SECTOR * LUKS_SECTOR;
    if (ret == 0 && size > old && prealloc == KIMG_PREALLOC_FULL) {
        uint8_t *z = kimg_alloc_aligned_zero(CHUNK);
        if (!z)
            return kimg_fail(-ENOMEM, "out of memory");
        for (uint64_t p = old; ret == 0 && p < size; p += CHUNK - (p % CHUNK))
            ret = luks_drv_write(img, z, p, size - p < CHUNK - p % CHUNK ? size - p
                                                                        : CHUNK - p % CHUNK);
        free(z);
        /* a partial last sector was written whole: the file ends where
         * the size says */
        if (ret == 0)
            ret = kimg_file_truncate(img->file, s->payload + size);
    }
    return ret;
}

static int luks_drv_info(struct kimg *img, struct kimg_info *info)
{
    struct luks_state *s = img->state;
    struct kimg_jv *fs = kimg_jv_object(), *e = luks_info(s->l), *d = kimg_jv_object();
    if (!fs || !e || !d) {
        kimg_jv_free(fs);
        kimg_jv_free(e);
        kimg_jv_free(d);
        return kimg_fail(-ENOMEM, "out of memory");
    }
    /* qemu's standalone block: the encrypt object without its "format" */
    for (int i = 0; i < e->n; i++)
        if (strcmp(e->keys[i], "format")) {
            kimg_jv_add(d, e->keys[i], e->items[i]);
            e->items[i] = NULL;
        }
    kimg_jv_free(e);
    kimg_jv_add_str(fs, "type", "luks");
    kimg_jv_add(fs, "data", d);
    info->format_specific = fs;
    info->encrypted = true;
    return 0;
}

/* ---- create, measure -------------------------------------------------------- */

static int get_params(struct kimg_opts *o, struct luks_params *p)
{
    uint64_t it = 0;
    memset(p, 0, sizeof(*p));
    p->cipher_alg = kimg_opts_get(o, "cipher-alg");
    p->cipher_mode = kimg_opts_get(o, "cipher-mode");
    p->ivgen_alg = kimg_opts_get(o, "ivgen-alg");
    p->ivgen_hash_alg = kimg_opts_get(o, "ivgen-hash-alg");
    p->hash_alg = kimg_opts_get(o, "hash-alg");
    if (kimg_opts_get(o, "iter-time")) {
        int ret = kimg_opts_get_u64(o, "iter-time", 0, &it);
        if (ret < 0)
            return ret;
        if (it == 0)
            return kimg_fail(-EINVAL, "iter-time must be larger than 0");
    }
    p->iter_time_ms = it;
    return 0;
}

static int luks_drv_create(const struct kimg_create_args *a)
{
    struct luks_params p;
    struct luks_io io;
    struct luks *l = NULL;
    struct kimg_file *f;
    uint64_t area, end;
    uint8_t *key = NULL;
    size_t klen = 0;
    int ret;

    if (a->backing_file)
        return kimg_fail(-ENOTSUP, "Backing file not supported for file format 'luks'");
    /* qemu's order: option values, the key secret, then the cipher */
    if ((ret = get_params(a->opts, &p)) < 0 || (ret = luks_params_check(&p)) < 0)
        return ret;
    if ((ret = get_secret(kimg_opts_get(a->opts, "key-secret"), &key, &klen)) < 0)
        return ret;
    if ((ret = luks_area_len(&p, &area)) < 0) {
        kimg_secret_free(key, klen);
        return ret;
    }
    if (__builtin_add_overflow(area, a->size, &end)) {
        kimg_secret_free(key, klen);
        return kimg_fail(-EFBIG, "Image size too large");
    }
    ret = kimg_file_open(&f, a->filename, KIMG_FILE_CREATE | KIMG_FILE_RDWR | KIMG_FILE_TRUNC);
    if (ret < 0) {
        kimg_secret_free(key, klen);
        return ret;
    }
    ret = kimg_create_file_attrs(a->opts, f);
    if (ret == 0)
        ret = kimg_file_truncate(f, end);
    if (ret == 0)
        ret = file_io(f, true, &io);
    if (ret == 0)
        ret = luks_create(&l, &p, key, klen, &io, NULL);
    kimg_secret_free(key, klen);
    luks_close(l);
    if (ret == 0)
        ret = kimg_file_sync(f);
    kimg_file_close(f);
    return ret;
}

static int luks_drv_measure(struct kimg_opts *opts, uint64_t size, struct kimg *src,
                            struct kimg_measure *out)
{
    struct luks_params p;
    uint64_t area;
    int ret;

    uint8_t *key = NULL;
    size_t klen = 0;

    /* qemu's order: option values, the key secret (looked up), the cipher */
    if ((ret = get_params(opts, &p)) < 0 || (ret = luks_params_check(&p)) < 0)
        return ret;
    if ((ret = get_secret(kimg_opts_get(opts, "key-secret"), &key, &klen)) < 0)
        return ret;
    kimg_secret_free(key, klen);
    if ((ret = luks_area_len(&p, &area)) < 0)
        return ret;
    if (src)
        size = kimg_size(src);
    out->required = area + size;
    out->fully_allocated = out->required;
    return 0;
}

/* ---- amend: key slots ------------------------------------------------------- */

static int luks_drv_amend(struct kimg *img, struct kimg_opts *opts, bool force)
{
    struct luks_state *s = img->state;
    int ret = locked(s);
    return ret < 0 ? ret : luks_amend(s->l, opts, "", force);
}

const struct kimg_driver kimg_luks_driver = {
    .name = "luks",
    .state_size = sizeof(struct luks_state),
    .create_opts = luks_create_opts,
    .probe = luks_probe,
    .open = luks_drv_open,
    .close = luks_drv_close,
    .create = luks_drv_create,
    .read = luks_drv_read,
    .write = luks_drv_write,
    .flush = luks_drv_flush,
    .block_status = luks_drv_block_status,
    .truncate = luks_drv_truncate,
    .info = luks_drv_info,
    .amend = luks_drv_amend,
    .measure = luks_drv_measure,
    .flags = KIMG_DRV_NO_ZERO_INIT,
    .formatting_opts = luks_shown,
    .amend_opts = luks_amend_opts,
};
