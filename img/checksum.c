/*
 * checksum.c — the digest engine.  The caller's thread walks block status
 * and hands the content out in chunks to the engines' worker pool
 * (img/pool.c), whose workers digest each chunk's blocks; it then folds
 * the block digests into the outer digest in block order (the pool's
 * results come in submission order), so the result never depends on the
 * thread count.  Zero ranges are never read, zero blocks never hashed.
 * Data stored plainly in a host file (raw, uncompressed qcow2 clusters) is
 * read by the workers; with KIMG_MAP_SOURCES=1 it is hashed in place from
 * a read-only mapping of that file instead (the engines' source policy,
 * img/srcmap.h: a file that changes size while it is hashed fails the
 * digest either way).  Other
 * data (compressed, in memory files, partial blocks) is read into the
 * slot's buffer by the worker that hashes it (decompression on every
 * core), or by the caller's thread when one worker hashes everything
 * (--threads 1, --raw-digest: one worker takes the slots in order), so
 * that reading still runs ahead of hashing.  The digests are OpenSSL's,
 * loaded (lazylib/) by the two entry points.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "kimg/checksum.h"
#include "kimg/convert.h"
#include "kimg/file.h"
#include "pool.h"
#include "srcmap.h"
#include "internal.h"
#include "crypto_api.h"

#define NEEDS_CRYPTO "Computing a checksum"  /* the load error's subject */
#define CHUNK_TARGET   (2u << 20)          /* bytes read per slot */
#define RING_BYTES_MAX (256u << 20)        /* cap on all slot buffers */
#define ZERO_BATCH     1024u               /* zero-block digests per update */
#define ZERO_SLOT_MAX  65536u              /* blocks per zero slot (progress) */
#define MAX_MAPS       (2 * KIMG_MAX_CHAIN + 2) /* image + data file per layer */

enum slot_kind { KIND_DATA, KIND_ZERO };

/* A job of the pool. */
struct slot {
    enum slot_kind kind;
    uint64_t off, len;          /* guest range */
    uint8_t *buf;               /* the slot's own buffer */
    const uint8_t *data;        /* the data (KIND_DATA): buf, or in a mapping */
    const struct kimg_srcmap *map; /* data points into this mapping */
    bool load;                  /* the worker reads the data into buf first */
    uint8_t *md;                /* one digest per block (block mode) */
};

struct engine {
    struct kimg *img;
    const struct kimg_checksum *c;
    EVP_MD *md;
    bool xof;                   /* shake*: fixed-length XOF output */
    unsigned md_len;
    bool raw;
    uint64_t size, bs, chunk;
    unsigned char zero_md[KIMG_CHECKSUM_MAX_MD_SIZE];
    uint8_t *zero_mds;          /* ZERO_BATCH copies of zero_md */
    uint8_t *zeros;             /* chunk zero bytes (raw mode) */
    /* read-only mappings of the whole host files data is hashed from in
     * place; sm.data NULL: that file cannot be mapped (read it instead) */
    struct mapping {
        const struct kimg_file *file;
        struct kimg_srcmap sm;
    } maps[MAX_MAPS];
    int nmaps;
    bool worker_loads;          /* workers read their slots (>= 2 of them) */
    EVP_MD_CTX *outer;          /* block mode: the caller's; raw: the worker's */

    struct kimg_pool *pool;     /* jobs: struct slot */
    int threads;

    uint64_t done, last_report;
};

/* ---- digests ---------------------------------------------------------- */

static EVP_MD *fetch_md(const char *name, unsigned *len, bool *xof)
{
    if (!name || !*name)
        return NULL;
    EVP_MD *md = EVP_MD_fetch(NULL, name, NULL);
    if (!md)
        return NULL;
    int size = EVP_MD_get_size(md);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    /* usable here: a fixed output size, and the provider lets it start */
    bool usable = size > 0 && size <= KIMG_CHECKSUM_MAX_MD_SIZE && ctx &&
                  EVP_DigestInit_ex(ctx, md, NULL);
    EVP_MD_CTX_free(ctx);
    if (!usable) {
        EVP_MD_free(md);
        return NULL;
    }
    *len = (unsigned)size;
    *xof = (EVP_MD_get_flags(md) & EVP_MD_FLAG_XOF) != 0;
    return md;
}

int kimg_checksum_check_algorithm(const char *algorithm)
{
    unsigned len;
    bool xof;
    const char *name = algorithm ? algorithm : KIMG_CHECKSUM_DEFAULT_ALGORITHM;
    int ret = kimg_libcrypto_load(NEEDS_CRYPTO);
    if (ret < 0)
        return ret;
    EVP_MD *md = fetch_md(name, &len, &xof);
    if (!md)
        return kimg_fail(-EINVAL, "unknown or unavailable digest algorithm '%.64s' "
                         "(see 'openssl list -digest-algorithms')", name);
    EVP_MD_free(md);
    return 0;
}

static int final_md(struct engine *e, EVP_MD_CTX *ctx, unsigned char *out)
{
    int ok = e->xof ? EVP_DigestFinalXOF(ctx, out, e->md_len)
                    : EVP_DigestFinal_ex(ctx, out, NULL);
    return ok ? 0 : -EIO;
}

static int digest_once(struct engine *e, EVP_MD_CTX *ctx, const void *buf,
                       size_t len, unsigned char *out)
{
    if (!EVP_DigestInit_ex(ctx, e->md, NULL) || !EVP_DigestUpdate(ctx, buf, len))
        return -EIO;
    return final_md(e, ctx, out);
}

/* ---- workers ---------------------------------------------------------- */

/* Block mode: the digest of each block of a data slot. */
static int hash_blocks(struct engine *e, EVP_MD_CTX *ctx, struct slot *s)
{
    uint64_t nb = (s->len + e->bs - 1) / e->bs;
    for (uint64_t i = 0; i < nb; i++) {
        const uint8_t *p = s->data + i * e->bs;
        size_t n = (size_t)(s->len - i * e->bs < e->bs ? s->len - i * e->bs : e->bs);
        unsigned char *out = s->md + i * e->md_len;
        /* the last block may be short: blkhash digests it as it is */
        if (n == e->bs && kimg_buffer_is_zero(p, n))
            memcpy(out, e->zero_md, e->md_len);
        else if (digest_once(e, ctx, p, n, out) < 0)
            return -EIO;
    }
    return 0;
}

/* Raw mode: the one worker feeds slots into the single digest, in order. */
static int raw_update(struct engine *e, struct slot *s)
{
    if (s->kind == KIND_DATA)
        return EVP_DigestUpdate(e->outer, s->data, (size_t)s->len) ? 0 : -EIO;
    for (uint64_t left = s->len; left;) {
        size_t n = (size_t)(left < e->chunk ? left : e->chunk);
        if (!EVP_DigestUpdate(e->outer, e->zeros, n))
            return -EIO;
        left -= n;
    }
    return 0;
}

/* ---- reading --------------------------------------------------------- */

static int status(struct engine *e, uint64_t off, struct kimg_extent *ext)
{
    int ret = kimg_content_status(e->img, off, e->size - off, ext);
    if (ret < 0)
        kimg_error("error while reading block status at offset %llu",
                   (unsigned long long)off);
    else if (ext->length == 0 || ext->length > e->size - off)
        ret = kimg_fail(-EIO, "invalid block status at offset %llu",
                        (unsigned long long)off);
    return ret;
}

/* Read slot S's range into S->buf: data ranges read, zero ranges cleared.
 * Thread-safe (block status and reads of an image opened read-only). */
static int load(struct engine *e, struct slot *s)
{
    for (uint64_t got = 0; got < s->len;) {
        uint64_t off = s->off + got;
        struct kimg_extent ext;
        int ret = status(e, off, &ext);
        if (ret < 0)
            return ret;
        uint64_t n = ext.length < s->len - got ? ext.length : s->len - got;
        if (ext.flags & KIMG_BS_ZERO) {
            memset(s->buf + got, 0, (size_t)n);
        } else if ((ret = kimg_read(e->img, s->buf + got, off, n)) < 0) {
            kimg_error("error while reading at offset %llu", (unsigned long long)off);
            return ret;
        }
        got += n;
    }
    return 0;
}

/* Digest a slot on a worker (a pool job); data in a mapping is checked
 * after (srcmap.h).  LOCAL: the worker's digest context (block mode). */
static int work(void *opaque, void *local, void *job)
{
    struct engine *e = opaque;
    struct slot *s = job;
    if (s->kind == KIND_ZERO && !e->raw)
        return 0;               /* folded from the precomputed digest */
    if (!e->raw && !local)
        return kimg_fail(-ENOMEM, "out of memory");
    if (s->load) {
        int ret = load(e, s);
        if (ret < 0)
            return ret;
    }
    int ret = e->raw ? raw_update(e, s) : hash_blocks(e, local, s);
    if (s->map && kimg_srcmap_check(s->map) < 0)
        return -EIO;
    return ret;
}

static void *worker_init(void *opaque)
{
    struct engine *e = opaque;
    return e->raw ? NULL : EVP_MD_CTX_new();
}

static void worker_fini(void *opaque, void *local)
{
    EVP_MD_CTX_free(local);
}

/* ---- the caller's side: fold in order, read ahead ----------------------- */

static void report(struct engine *e, uint64_t n)
{
    e->done += n;
    if (!e->c->progress)
        return;
    if (e->done == e->size || (e->done - e->last_report) * 100 >= e->size) {
        e->c->progress(e->c->opaque, e->done, e->size);
        e->last_report = e->done;
    }
}

/* Block mode: append a slot's block digests to the outer digest. */
static int fold(struct engine *e, struct slot *s)
{
    if (e->raw)
        return 0;
    if (s->kind == KIND_DATA) {
        uint64_t nb = (s->len + e->bs - 1) / e->bs;
        return EVP_DigestUpdate(e->outer, s->md, (size_t)(nb * e->md_len)) ? 0 : -EIO;
    }
    for (uint64_t nb = s->len / e->bs; nb;) {
        uint64_t n = nb < ZERO_BATCH ? nb : ZERO_BATCH;
        if (!EVP_DigestUpdate(e->outer, e->zero_mds, (size_t)(n * e->md_len)))
            return -EIO;
        nb -= n;
    }
    return 0;
}

/* Fold finished slots, oldest first: those already done (WAIT false), or
 * until none is in flight (WAIT true). */
static int retire(struct engine *e, bool wait)
{
    int ret = 0;
    struct slot *s;
    while ((s = kimg_pool_take(e->pool, &ret, wait))) {
        if (ret == 0)
            ret = fold(e, s);
        if (ret == 0)
            report(e, s->len);
        kimg_pool_put(e->pool, s);
        if (ret < 0) {
            kimg_error("error computing the %s digest at offset %llu",
                       e->c->algorithm ? e->c->algorithm : KIMG_CHECKSUM_DEFAULT_ALGORITHM,
                       (unsigned long long)s->off);
            return ret;
        }
    }
    return 0;
}

static void submit(struct engine *e, struct slot *s, enum slot_kind kind,
                   uint64_t off, uint64_t len)
{
    s->kind = kind;
    s->off = off;
    s->len = len;
    /* a zero run in block mode is folded from the precomputed digest */
    if (kind == KIND_ZERO && !e->raw)
        kimg_pool_submit_done(e->pool, s);
    else
        kimg_pool_submit(e->pool, s);
}

/* A free slot, folding finished ones until there is one. */
static struct slot *next_slot(struct engine *e, int *ret)
{
    struct slot *s;
    *ret = 0;
    while (!(s = kimg_pool_get(e->pool))) {
        struct slot *d = kimg_pool_take(e->pool, ret, true);
        if (!d)
            continue;
        if (*ret == 0)
            *ret = fold(e, d);
        if (*ret == 0)
            report(e, d->len);
        kimg_pool_put(e->pool, d);
        if (*ret < 0) {
            kimg_error("error computing the %s digest at offset %llu",
                       e->c->algorithm ? e->c->algorithm : KIMG_CHECKSUM_DEFAULT_ALGORITHM,
                       (unsigned long long)d->off);
            return NULL;
        }
    }
    return s;
}

/* The length of the slot at POS (block-aligned), up to one chunk: it ends
 * early, at a block boundary, where a zero range of at least one whole
 * block starts, so that range goes to the zero path.  FIRST is the status
 * at POS.  Nothing is read. */
static int plan(struct engine *e, uint64_t pos, const struct kimg_extent *first,
                uint64_t *len)
{
    uint64_t want = e->size - pos < e->chunk ? e->size - pos : e->chunk;
    uint64_t got = 0;
    struct kimg_extent ext = *first;
    while (got < want) {
        uint64_t off = pos + got;
        int ret;
        if (got > 0 && (ret = status(e, off, &ext)) < 0)
            return ret;
        uint64_t n = ext.length < want - got ? ext.length : want - got;
        if (ext.flags & KIMG_BS_ZERO) {
            uint64_t to_boundary = e->bs - off % e->bs;
            if (got > 0 && to_boundary == e->bs && ext.length >= e->bs)
                break;
            if (n > to_boundary)
                n = to_boundary;
        }
        got += n;
    }
    *len = got;
    return 0;
}

/* The read-only mapping of all of FILE (made on first use), or NULL if it
 * cannot be mapped (a backend without mappings, O_DIRECT files, an empty
 * file, mmap refused, too many files). */
static const struct kimg_srcmap *file_mapping(struct engine *e, struct kimg_file *file)
{
    for (int i = 0; i < e->nmaps; i++)
        if (e->maps[i].file == file)
            return e->maps[i].sm.data ? &e->maps[i].sm : NULL;
    if (e->nmaps == MAX_MAPS)
        return NULL;
    struct mapping *m = &e->maps[e->nmaps++];
    uint64_t size;
    m->file = file;
    if (file->ops->get_size(file, &size) < 0 || size == 0 || size > SIZE_MAX ||
        kimg_srcmap_open(&m->sm, file, 0, size) < 0) {
        kimg_clear_error();
        m->sm.data = NULL;
        return NULL;
    }
    return &m->sm;
}

/* Point S at data stored plainly in a host file, in place: the run at POS
 * (status EXT) up to one chunk, in whole blocks unless it ends the
 * content.  False if that cannot be done (then it is read into S->buf). */
static bool map_slot(struct engine *e, struct slot *s, uint64_t pos,
                     const struct kimg_extent *ext, uint64_t *len)
{
    unsigned f = ext->flags & (KIMG_BS_DATA | KIMG_BS_ZERO | KIMG_BS_OFFSET_VALID |
                               KIMG_BS_COMPRESSED);
    if (f != (KIMG_BS_DATA | KIMG_BS_OFFSET_VALID) || !ext->host_file)
        return false;
    uint64_t n = ext->length < e->chunk ? ext->length : e->chunk;
    if (n < e->size - pos)
        n = n / e->bs * e->bs;
    if (n == 0)
        return false;
    const struct kimg_srcmap *m = file_mapping(e, ext->host_file);
    if (!m || ext->offset > m->len || n > m->len - ext->offset)
        return false;
    s->data = m->data + ext->offset;
    s->map = m;
    *len = n;
    return true;
}

static int walk(struct engine *e)
{
    uint64_t pos = 0;
    while (pos < e->size) {
        struct kimg_extent ext;
        struct slot *s;
        int ret = status(e, pos, &ext);
        if (ret < 0)
            return ret;
        uint64_t zero_len = ext.flags & KIMG_BS_ZERO ? ext.length / e->bs : 0;
        zero_len = (zero_len < ZERO_SLOT_MAX ? zero_len : ZERO_SLOT_MAX) * e->bs;
        if (!(s = next_slot(e, &ret)))
            return ret;
        if (zero_len) {
            /* whole blocks that read as zeros: not read, not hashed */
            submit(e, s, KIND_ZERO, pos, zero_len);
            pos += zero_len;
        } else {
            uint64_t len;
            s->load = false;
            if (!map_slot(e, s, pos, &ext, &len)) {
                s->data = s->buf;
                s->map = NULL;
                if ((ret = plan(e, pos, &ext, &len)) < 0)
                    return ret;
                s->off = pos;
                s->len = len;
                s->load = e->worker_loads;
                if (!s->load && (ret = load(e, s)) < 0)
                    return ret;
            }
            submit(e, s, KIND_DATA, pos, len);
            pos += len;
        }
        if ((ret = retire(e, false)) < 0)
            return ret;
    }
    return retire(e, true);
}

/* ---- setup and teardown ----------------------------------------------- */

static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > KIMG_CHECKSUM_MAX_THREADS ? KIMG_CHECKSUM_MAX_THREADS : (int)n;
}

/* Stop the workers, then free what they used. */
static void engine_free(struct engine *e)
{
    kimg_pool_stop(e->pool);
    for (int i = 0; e->pool && i < kimg_pool_slots(e->pool); i++) {
        struct slot *s = kimg_pool_job(e->pool, i);
        kimg_buffer_free(s->buf, (size_t)e->chunk);
        free(s->md);
    }
    kimg_pool_free(e->pool);
    e->pool = NULL;
    for (int i = 0; i < e->nmaps; i++)
        kimg_srcmap_close(&e->maps[i].sm);
    free(e->zero_mds);
    free(e->zeros);
    EVP_MD_CTX_free(e->outer);
    EVP_MD_free(e->md);
}

static int engine_init(struct engine *e)
{
    const struct kimg_checksum *c = e->c;
    const char *name = c->algorithm ? c->algorithm : KIMG_CHECKSUM_DEFAULT_ALGORITHM;

    e->md = fetch_md(name, &e->md_len, &e->xof);
    if (!e->md)
        return kimg_checksum_check_algorithm(name);
    e->bs = c->block_size ? c->block_size : KIMG_CHECKSUM_DEFAULT_BLOCK_SIZE;
    if (e->bs < KIMG_CHECKSUM_MIN_BLOCK_SIZE || e->bs > KIMG_CHECKSUM_MAX_BLOCK_SIZE ||
        e->bs % KIMG_CHECKSUM_MIN_BLOCK_SIZE)
        return kimg_fail(-EINVAL, "block size must be a multiple of 512 from 512 to 64M");
    e->chunk = e->bs >= CHUNK_TARGET ? e->bs : CHUNK_TARGET / e->bs * e->bs;
    e->raw = c->raw;

    int threads = c->threads > 0 ? c->threads : online_cpus();
    if (threads > KIMG_CHECKSUM_MAX_THREADS)
        threads = KIMG_CHECKSUM_MAX_THREADS;
    if (e->raw)
        threads = 1;            /* a plain digest is sequential */
    e->worker_loads = threads >= 2;
    /* enough slots to keep every thread busy while the reader refills */
    uint64_t nslots = 2 * (uint64_t)threads + 2;
    if (nslots * e->chunk > RING_BYTES_MAX)
        nslots = RING_BYTES_MAX / e->chunk;
    if (nslots < 4)
        nslots = 4;

    e->outer = EVP_MD_CTX_new();
    e->zero_mds = malloc(ZERO_BATCH * (size_t)e->md_len);
    if (!e->outer || !e->zero_mds)
        return kimg_fail(-ENOMEM, "out of memory");
    struct kimg_pool_def def = {
        .threads = threads, .slots = (int)nslots, .job_size = sizeof(struct slot),
        .run = work, .worker_init = worker_init, .worker_fini = worker_fini, .opaque = e,
    };
    e->pool = kimg_pool_new(&def);
    if (!e->pool)
        return -ENOMEM;
    for (int i = 0; i < (int)nslots; i++) {
        struct slot *s = kimg_pool_job(e->pool, i);
        s->buf = kimg_buffer_alloc((size_t)e->chunk);
        s->md = e->raw ? NULL : malloc((size_t)(e->chunk / e->bs * e->md_len));
        if (!s->buf || (!e->raw && !s->md))
            return kimg_fail(-ENOMEM, "out of memory");
    }

    /* the zero-block digest, once */
    uint8_t *zb = calloc(1, (size_t)(e->raw ? e->chunk : e->bs));
    if (!zb)
        return kimg_fail(-ENOMEM, "out of memory");
    int ret = digest_once(e, e->outer, zb, (size_t)e->bs, e->zero_md);
    if (e->raw)
        e->zeros = zb;
    else
        free(zb);
    if (ret < 0 || !EVP_DigestInit_ex(e->outer, e->md, NULL))
        return kimg_fail(-EIO, "cannot compute a %s digest", name);
    for (unsigned i = 0; i < ZERO_BATCH; i++)
        memcpy(e->zero_mds + (size_t)i * e->md_len, e->zero_md, e->md_len);
    return 0;
}

int kimg_checksum_run(struct kimg *img, const struct kimg_checksum *c,
                      unsigned char *md, unsigned *md_len)
{
    struct engine e = { .img = img, .c = c, .size = kimg_size(img) };
    int ret;

    /* before engine_init: engine_free calls OpenSSL */
    ret = kimg_libcrypto_load(NEEDS_CRYPTO);
    if (ret < 0)
        return ret;
    struct kimg_srcsizes sizes;
    kimg_srcmap_note_sizes(img, NULL, &sizes);
    ret = engine_init(&e);
    if (ret == 0) {
        if (c->progress)
            c->progress(c->opaque, 0, e.size);
        ret = walk(&e);
    }
    if (ret == 0)
        ret = kimg_srcmap_check_sizes(img, &sizes);
    if (ret == 0 && !e.raw) {
        /* the length, as 8 little-endian bytes, ends the outer message */
        unsigned char le[8];
        for (int i = 0; i < 8; i++)
            le[i] = (unsigned char)(e.size >> (8 * i));
        if (!EVP_DigestUpdate(e.outer, le, sizeof(le)))
            ret = -EIO;
    }
    if (ret == 0 && final_md(&e, e.outer, md) < 0)
        ret = -EIO;
    if (ret == -EIO && !kimg_last_error())
        kimg_error("error computing the digest");
    if (ret == 0)
        *md_len = e.md_len;
    engine_free(&e);
    return ret;
}
