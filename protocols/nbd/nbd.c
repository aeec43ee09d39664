/*
 * protocols/nbd/nbd.c — the NBD file backend: an export reached through
 * libnbd as a struct kimg_file (kimg/file.h).  Reads and writes are split
 * into pieces kept in flight together with libnbd's asynchronous calls;
 * when the server allows multi-conn, callers on other threads get
 * connections of their own (opened as they are needed, up to NBD_CONNS).
 * The POSIX, memory and window backends stay in img/ (file.c,
 * file_window.c): this folder holds the network protocols only.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kimg.h"
#include "kimg/file.h"
#include "uri.h"
#include "tunables.h"
#include "nbd_api.h"

#define NBD_CONNS   4                   /* connections with multi-conn */
#define NBD_QD      16                  /* requests in flight per call */
#define NBD_PIECE   (1u << 20)          /* bytes per request, at most */
#define NBD_BIG     (1u << 30)          /* per zero, trim, block status */

struct nbd_conn {
    struct nbd_handle *h;
    pthread_mutex_t lock;               /* one caller at a time polls H */
};

struct nbd_file {
    struct kimg_file f;                 /* first: a struct kimg_file * is this */
    struct kimg_nbd_uri u;
    pthread_mutex_t pool_lock;          /* opening connections */
    pthread_mutex_t rmw_lock;           /* unaligned (read-modify-write) writes */
    struct nbd_conn conn[NBD_CONNS];
    atomic_uint nconn, next;
    atomic_uint maxconn;                /* lowered when the server refuses one */
    uint64_t size;
    uint32_t align, piece;              /* the server's minimum block; piece size */
    bool can_zero, can_trim, can_flush, can_extents, can_fast_zero;
};

static const struct kimg_file_ops nbd_ops;

static struct nbd_file *nf(struct kimg_file *f)
{
    return (struct nbd_file *)f;
}

/* libnbd's last message (this thread's), without the name of the libnbd
 * call it starts with ("nbd_connect_unix: ") nor a bare "connect: " (the
 * reason then reads as qemu's: "Connection refused"). */
static const char *nbd_msg(void)
{
    const char *m = nbd_get_error();
    if (!m || !*m)
        return "NBD error";
    if (!strncmp(m, "nbd_", 4) && strstr(m, ": "))
        m = strstr(m, ": ") + 2;
    if (!strncmp(m, "connect: ", 9))
        m += 9;
    return m;
}

static int nbd_err(void)
{
    int e = nbd_get_errno();
    return e > 0 ? -e : -EIO;
}

/* A new connection to U's export, with the base:allocation context asked
 * for; -errno with a message (the reason: the caller names the image). */
static int connect_one(const struct kimg_nbd_uri *u, struct nbd_handle **out)
{
    int ret = kimg_libnbd_load();
    if (ret < 0)
        return ret;
    struct nbd_handle *h = nbd_create();
    if (!h)
        return kimg_fail(-ENOMEM, "%s", nbd_msg());
    int r = nbd_set_export_name(h, u->export);
    if (r == 0 && u->tls)
        r = nbd_set_tls(h, LIBNBD_TLS_REQUIRE);
    if (r == 0 && u->tls_psk_file)
        r = nbd_set_tls_psk_file(h, u->tls_psk_file);
    if (r == 0 && u->tls_certificates)
        r = nbd_set_tls_certificates(h, u->tls_certificates);
    if (r == 0 && u->tls_username)
        r = nbd_set_tls_username(h, u->tls_username);
    if (r == 0)
        r = nbd_add_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION);
    if (r == 0)
        r = u->unix_socket ? nbd_connect_unix(h, u->socket)
                           : nbd_connect_tcp(h, u->host, u->port);
    if (r < 0) {
        int err = nbd_err();
        /* qemu's words, then libnbd's reason */
        kimg_fail(err, "Failed to connect to '%.200s%s%.16s': %s",
                  u->unix_socket ? u->socket : u->host, u->unix_socket ? "" : ":",
                  u->unix_socket ? "" : u->port, nbd_msg());
        nbd_close(h);
        return err;
    }
    *out = h;
    return 0;
}

/* A connection for this call, locked: a free one, else a new one while
 * the server allows more, else the caller waits for one. */
static struct nbd_conn *get_conn(struct nbd_file *n)
{
    unsigned cnt = atomic_load(&n->nconn);
    unsigned start = atomic_fetch_add(&n->next, 1);
    for (unsigned i = 0; i < cnt; i++) {
        struct nbd_conn *c = &n->conn[(start + i) % cnt];
        if (pthread_mutex_trylock(&c->lock) == 0)
            return c;
    }
    if (cnt < atomic_load(&n->maxconn)) {
        struct nbd_conn *c = NULL;
        bool had_msg = kimg_last_error() != NULL;
        pthread_mutex_lock(&n->pool_lock);
        unsigned k = atomic_load(&n->nconn);
        struct nbd_handle *h;
        if (k < atomic_load(&n->maxconn)) {
            if (connect_one(&n->u, &h) == 0) {
                c = &n->conn[k];
                c->h = h;
                pthread_mutex_lock(&c->lock);
                atomic_store(&n->nconn, k + 1);
            } else {
                atomic_store(&n->maxconn, k);   /* no more tries */
            }
        }
        pthread_mutex_unlock(&n->pool_lock);
        if (!c && !had_msg)
            kimg_clear_error();     /* a refused extra connection is no error */
        if (c)
            return c;
        cnt = atomic_load(&n->nconn);
    }
    struct nbd_conn *c = &n->conn[start % cnt];
    pthread_mutex_lock(&c->lock);
    return c;
}

static void put_conn(struct nbd_conn *c)
{
    pthread_mutex_unlock(&c->lock);
}

/* Retire the completed requests on H: *INFLIGHT less, the first failure
 * into *ERR. */
static void retire(struct nbd_handle *h, unsigned *inflight, int *err)
{
    int64_t ck;
    while (*inflight && (ck = nbd_aio_peek_command_completed(h)) > 0) {
        if (nbd_aio_command_completed(h, ck) < 0 && !*err)
            *err = nbd_err();
        (*inflight)--;
    }
}

/* [off, off+len) read into BUF (WRITE false) or written from it, in pieces
 * of at most n->piece bytes, NBD_QD of them in flight, on one connection.
 * The range is inside the export and aligned to n->align. */
static int transfer(struct nbd_file *n, bool write, void *buf, size_t len, uint64_t off)
{
    struct nbd_conn *c = get_conn(n);
    struct nbd_handle *h = c->h;
    size_t pos = 0;
    unsigned inflight = 0;
    int err = 0;
    while (!err && (pos < len || inflight)) {
        while (!err && pos < len && inflight < NBD_QD) {
            size_t k = len - pos < n->piece ? len - pos : n->piece;
            int64_t ck = write
                ? nbd_aio_pwrite(h, (char *)buf + pos, k, off + pos, NBD_NULL_COMPLETION, 0)
                : nbd_aio_pread(h, (char *)buf + pos, k, off + pos, NBD_NULL_COMPLETION, 0);
            if (ck < 0)
                err = nbd_err();
            else {
                inflight++;
                pos += k;
            }
        }
        retire(h, &inflight, &err);
        /* a failed request: the others still own BUF, so wait for them
         * unless the connection itself is gone */
        if (inflight && nbd_poll(h, -1) < 0) {
            if (!err)
                err = nbd_err();
            break;
        }
        if (err && inflight && (nbd_aio_is_dead(h) || nbd_aio_is_closed(h)))
            break;
    }
    while (err && inflight && !nbd_aio_is_dead(h) && !nbd_aio_is_closed(h)) {
        retire(h, &inflight, &err);
        if (inflight && nbd_poll(h, -1) < 0)
            break;
    }
    if (err)
        kimg_fail(err, "%s '%.200s' at offset %llu: %s", write ? "Could not write to" :
                  "Could not read from", n->f.path, (unsigned long long)off, nbd_msg());
    put_conn(c);
    return err;
}

/* Bounce a request that is not aligned to the server's minimum block:
 * the covering aligned range read; for a write, changed and written back
 * under rmw_lock (concurrent unaligned writes to one block would race;
 * an aligned write racing with one to the same block is the caller's). */
static int transfer_unaligned(struct nbd_file *n, bool write, void *buf, size_t len,
                              uint64_t off)
{
    uint64_t a = n->align, start = off / a * a;
    uint64_t end = (off + len + a - 1) / a * a;
    if (end > n->size)
        return kimg_fail(-EIO, "'%.200s': a request at %llu past the export's last whole "
                         "block", n->f.path, (unsigned long long)off);
    char *b = kimg_alloc_aligned((size_t)(end - start));
    if (!b)
        return kimg_fail(-ENOMEM, "out of memory");
    if (write)
        pthread_mutex_lock(&n->rmw_lock);
    int ret = transfer(n, false, b, (size_t)(end - start), start);
    if (ret == 0 && write) {
        memcpy(b + (off - start), buf, len);
        ret = transfer(n, true, b, (size_t)(end - start), start);
    } else if (ret == 0)
        memcpy(buf, b + (off - start), len);
    if (write)
        pthread_mutex_unlock(&n->rmw_lock);
    free(b);
    return ret;
}

static int io(struct nbd_file *n, bool write, void *buf, size_t len, uint64_t off)
{
    if (!len)
        return 0;
    if ((off | len) % n->align)
        return transfer_unaligned(n, write, buf, len, off);
    return transfer(n, write, buf, len, off);
}

/* As the POSIX backend: bytes past the end read as zeros, and the call
 * says -ENODATA (kimg_file_pread's "past the end" error). */
static int nbd_file_pread(struct kimg_file *f, void *buf, size_t len, uint64_t off)
{
    struct nbd_file *n = nf(f);
    size_t in = off >= n->size ? 0 : (n->size - off < len ? (size_t)(n->size - off) : len);
    int ret = io(n, false, buf, in, off);
    if (ret < 0)
        return ret;
    if (in < len) {
        memset((char *)buf + in, 0, len - in);
        return -ENODATA;
    }
    return 0;
}

/* An export has a fixed size: a write past its end fails with -ENOSPC. */
static int nbd_file_pwrite(struct kimg_file *f, const void *buf, size_t len, uint64_t off)
{
    struct nbd_file *n = nf(f);
    if (!f->writable)
        return -EBADF;
    if (off > n->size || len > n->size - off)
        return kimg_fail(-ENOSPC, "Could not write to '%.200s': %zu bytes at offset %llu "
                         "do not fit in the export (%llu bytes)", f->path, len,
                         (unsigned long long)off, (unsigned long long)n->size);
    return io(n, true, (void *)buf, len, off);
}

static int nbd_file_get_size(struct kimg_file *f, uint64_t *size)
{
    *size = nf(f)->size;
    return 0;
}

/* An export cannot be resized: a size up to its own is accepted and
 * changes nothing (a format created onto it, as qemu's NBD driver for a
 * truncate that need not be exact), a larger one fails ("Cannot grow NBD
 * nodes"). */
static int nbd_file_truncate(struct kimg_file *f, uint64_t size)
{
    if (size <= nf(f)->size)
        return 0;
    return kimg_fail(-EFBIG, "Cannot grow NBD nodes");     /* qemu's words */
}

/* A simple command (zero, trim, flush) on one connection. */
static int simple(struct nbd_file *n, int which, uint64_t off, uint64_t len, uint32_t flags)
{
    struct nbd_conn *c = get_conn(n);
    int r = which == 0 ? nbd_zero(c->h, len, off, flags)
          : which == 1 ? nbd_trim(c->h, len, off, flags) : nbd_flush(c->h, 0);
    int err = r < 0 ? nbd_err() : 0;
    if (err)
        kimg_fail(err, "'%.200s': %s", n->f.path, nbd_msg());
    put_conn(c);
    return err;
}

/* Writes the zeros itself when the server has no write-zeroes (or the
 * range is not aligned to its block). */
static int write_zeros(struct nbd_file *n, uint64_t off, uint64_t len)
{
    size_t chunk = len < (1u << 22) ? (size_t)len : (1u << 22);
    void *z = kimg_alloc_aligned_zero(chunk);
    if (!z)
        return kimg_fail(-ENOMEM, "out of memory");
    int ret = 0;
    while (ret == 0 && len) {
        size_t k = len < chunk ? (size_t)len : chunk;
        ret = io(n, true, z, k, off);
        off += k;
        len -= k;
    }
    free(z);
    return ret;
}

/* NBD_CMD_WRITE_ZEROES; PUNCH false asks the server to keep the range
 * allocated (NO_HOLE).  Fast zero is not asked for here: these zeros
 * stand for data the engine would otherwise send, so a zero the server
 * carries out slowly is still no worse; fast zero is for a whole target
 * zeroed ahead of a copy (nbd_file_zero_fast). */
static int nbd_file_zero(struct kimg_file *f, uint64_t off, uint64_t len, bool punch)
{
    struct nbd_file *n = nf(f);
    if (!f->writable)
        return -EBADF;
    if (off > n->size || len > n->size - off)
        return kimg_fail(-ENOSPC, "Could not zero '%.200s': %llu bytes at offset %llu do not "
                         "fit in the export", f->path, (unsigned long long)len,
                         (unsigned long long)off);
    if (!n->can_zero || (off | len) % n->align)
        return write_zeros(n, off, len);
    int ret = 0;
    while (ret == 0 && len) {
        uint64_t k = len < NBD_BIG ? len : NBD_BIG;
        ret = simple(n, 0, off, k, punch ? 0 : LIBNBD_CMD_FLAG_NO_HOLE);
        off += k;
        len -= k;
    }
    return ret;
}

/* NBD_CMD_WRITE_ZEROES with NBD_CMD_FLAG_FAST_ZERO (NO_HOLE unless PUNCH): the
 * server zeros the range only if that is fast, else fails at once with
 * ENOTSUP and writes nothing, so a caller with a cheaper plan (a convert
 * that can write its zeros as it goes) loses one round trip.  -ENOTSUP
 * without a message when the export has no fast zero, the range is not
 * on its block size or the server says the zero would be slow (a part
 * may then be zeroed already). */
static int nbd_file_zero_fast(struct kimg_file *f, uint64_t off, uint64_t len, bool punch)
{
    struct nbd_file *n = nf(f);
    if (!f->writable)
        return -EBADF;
    if (!n->can_zero || !n->can_fast_zero || (off | len) % n->align ||
        off > n->size || len > n->size - off)
        return -ENOTSUP;
    int ret = 0;
    while (ret == 0 && len) {
        uint64_t k = len < NBD_BIG ? len : NBD_BIG;
        ret = simple(n, 0, off, k,
                     LIBNBD_CMD_FLAG_FAST_ZERO | (punch ? 0 : LIBNBD_CMD_FLAG_NO_HOLE));
        off += k;
        len -= k;
    }
    if (ret == -ENOTSUP || ret == -EOPNOTSUPP) {
        kimg_clear_error();
        return -ENOTSUP;
    }
    return ret;
}

static int nbd_file_discard(struct kimg_file *f, uint64_t off, uint64_t len)
{
    struct nbd_file *n = nf(f);
    if (!f->writable)
        return -EBADF;
    if (!n->can_trim || (off | len) % n->align)
        return -EOPNOTSUPP;
    int ret = 0;
    while (ret == 0 && len) {
        uint64_t k = len < NBD_BIG ? len : NBD_BIG;
        ret = simple(n, 1, off, k, 0);
        off += k;
        len -= k;
    }
    return ret;
}

static int nbd_file_allocate(struct kimg_file *f, uint64_t off, uint64_t len)
{
    return 0;
}

/* With multi-conn one flush covers every connection's completed writes;
 * without it there is one connection. */
static int nbd_file_sync(struct kimg_file *f)
{
    struct nbd_file *n = nf(f);
    return n->can_flush && n->f.writable ? simple(n, 2, 0, 0, 0) : 0;
}

struct extent_run {
    bool have, is_data;
    uint64_t len;
};

static int extent_cb(void *opaque, const char *ctx, uint64_t off, uint32_t *e, size_t n,
                     int *error)
{
    struct extent_run *r = opaque;
    if (strcmp(ctx, LIBNBD_CONTEXT_BASE_ALLOCATION) || r->have || n < 2)
        return 0;
    /* a hole reads as zeros only with the zero bit too (a hole over a
     * server-side backing file may not) */
    r->is_data = (e[1] & (LIBNBD_STATE_HOLE | LIBNBD_STATE_ZERO)) !=
                 (LIBNBD_STATE_HOLE | LIBNBD_STATE_ZERO);
    r->len = e[0];
    r->have = true;
    return 0;
}

/* base:allocation at OFF: the first extent the server reports (at most
 * LEN); all data when the server has no such context. */
static int nbd_file_data_status(struct kimg_file *f, uint64_t off, uint64_t len,
                                bool *is_data, uint64_t *pnum)
{
    struct nbd_file *n = nf(f);
    uint64_t left = off < n->size ? n->size - off : 0;
    if (len > left)
        len = left;
    *is_data = true;
    *pnum = len ? len : 1;
    if (!n->can_extents || !len)
        return 0;
    if (len > NBD_BIG)
        len = NBD_BIG;
    struct extent_run r = { .have = false };
    struct nbd_conn *c = get_conn(n);
    int ret = nbd_block_status(c->h, len, off,
                               (nbd_extent_callback){ .callback = extent_cb, .user_data = &r },
                               0);
    int err = ret < 0 ? nbd_err() : 0;
    if (err)
        kimg_fail(err, "'%.200s': block status at offset %llu: %s", f->path,
                  (unsigned long long)off, nbd_msg());
    put_conn(c);
    if (err)
        return err;
    if (r.have && r.len) {
        *is_data = r.is_data;
        *pnum = r.len < len ? r.len : len;
    }
    return 0;
}

/* The host's allocation is not known over NBD (qemu-img: "unavailable"). */
static int64_t nbd_file_allocated(struct kimg_file *f)
{
    return -1;
}

static void nbd_file_close(struct kimg_file *f)
{
    struct nbd_file *n = nf(f);
    unsigned cnt = atomic_load(&n->nconn);
    for (unsigned i = 0; i < cnt; i++) {
        nbd_shutdown(n->conn[i].h, 0);
        nbd_close(n->conn[i].h);
        pthread_mutex_destroy(&n->conn[i].lock);
    }
    pthread_mutex_destroy(&n->pool_lock);
    pthread_mutex_destroy(&n->rmw_lock);
    kimg_nbd_uri_free(&n->u);
}

/* No map, clone, copy_range or aio_prep: the engines read and write. */
static const struct kimg_file_ops nbd_ops = {
    .pread = nbd_file_pread, .pwrite = nbd_file_pwrite, .get_size = nbd_file_get_size,
    .truncate = nbd_file_truncate, .sync = nbd_file_sync, .zero = nbd_file_zero,
    .discard = nbd_file_discard, .allocate = nbd_file_allocate,
    .zero_fast = nbd_file_zero_fast,
    .data_status = nbd_file_data_status, .allocated = nbd_file_allocated,
    .close = nbd_file_close,
};

bool kimg_file_is_nbd(const struct kimg_file *f)
{
    return f && f->ops == &nbd_ops;
}

static int open_parsed(struct kimg_file **out, struct nbd_file *n, int ret, unsigned flags);

int kimg_nbd_open(struct kimg_file **out, const char *name, unsigned flags)
{
    struct nbd_file *n = calloc(1, sizeof(*n));
    if (!n)
        return kimg_fail(-ENOMEM, "out of memory");
    int ret = kimg_nbd_uri_parse(name, flags & KIMG_FILE_FROM_IMAGE, &n->u);
    return open_parsed(out, n, ret, flags);
}

int kimg_nbd_open_server(struct kimg_file **out, const char *socket, const char *host,
                         const char *port, const char *export, unsigned flags)
{
    struct nbd_file *n = calloc(1, sizeof(*n));
    if (!n)
        return kimg_fail(-ENOMEM, "out of memory");
    int ret = kimg_nbd_uri_from_parts(&n->u, socket, host, port, export);
    return open_parsed(out, n, ret, flags);
}

/* Connect N (its name parsed into N->u with result RET) and fill it in;
 * N is freed on failure. */
static int open_parsed(struct kimg_file **out, struct nbd_file *n, int ret, unsigned flags)
{
    struct nbd_handle *h = NULL;
    if (ret == 0)
        ret = connect_one(&n->u, &h);
    if (ret < 0) {
        kimg_nbd_uri_free(&n->u);
        free(n);
        return ret;
    }
    int64_t size = nbd_get_size(h);
    int64_t minb = nbd_get_block_size(h, LIBNBD_SIZE_MINIMUM);
    int64_t maxb = nbd_get_block_size(h, LIBNBD_SIZE_MAXIMUM);
    bool rw = flags & (KIMG_FILE_RDWR | KIMG_FILE_CREATE);
    if (size < 0)
        ret = kimg_fail(nbd_err(), "%s", nbd_msg());
    else if (rw && nbd_is_read_only(h) == 1)
        ret = kimg_fail(-EROFS, "the NBD export is read-only");
    else if (minb > 65536 || (minb > 0 && (minb & (minb - 1))))
        ret = kimg_fail(-EINVAL, "the NBD export's minimum block size %lld is not usable",
                        (long long)minb);
    if (ret < 0) {
        nbd_close(h);
        kimg_nbd_uri_free(&n->u);
        free(n);
        return ret;
    }
    n->size = (uint64_t)size;
    n->align = minb > 1 ? (uint32_t)minb : 1;
    n->piece = NBD_PIECE;
    if (maxb > 0 && (uint64_t)maxb < n->piece)
        n->piece = (uint32_t)maxb / n->align * n->align;
    if (n->piece < n->align)
        n->piece = n->align;
    n->can_zero = nbd_can_zero(h) == 1;
    n->can_trim = nbd_can_trim(h) == 1;
    n->can_flush = nbd_can_flush(h) == 1;
    n->can_fast_zero = nbd_can_fast_zero(h) == 1;
    n->can_extents = nbd_can_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
    /* more connections only where the server promises they see one
     * another's writes and flushes (multi-conn) */
    unsigned maxconn = nbd_can_multi_conn(h) == 1 ? NBD_CONNS : 1;
    uint64_t m = kimg_tunables()->nbd_conns;    /* for measuring */
    if (m >= 1 && m < maxconn)
        maxconn = (unsigned)m;
    atomic_store(&n->maxconn, maxconn);
    pthread_mutex_init(&n->pool_lock, NULL);
    pthread_mutex_init(&n->rmw_lock, NULL);
    for (unsigned i = 0; i < NBD_CONNS; i++)
        pthread_mutex_init(&n->conn[i].lock, NULL);
    n->conn[0].h = h;
    atomic_store(&n->nconn, 1);
    n->f.ops = &nbd_ops;
    n->f.fd = -1;
    n->f.writable = rw;
    n->f.align = 1;
    n->f.path = strdup(n->u.name);
    if (!n->f.path) {
        nbd_file_close(&n->f);
        free(n);
        return kimg_fail(-ENOMEM, "out of memory");
    }
    *out = &n->f;
    return 0;
}
