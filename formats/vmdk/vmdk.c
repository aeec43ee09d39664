/*
 * vmdk.c — the VMDK driver table, read-only: probing as qemu's
 * vmdk_probe, open (a descriptor file and its extents, or a sparse file
 * with or without an embedded descriptor), the parent hint and the
 * CID/parentCID check, reads and block status dispatched over the
 * extents, info (qemu-img's format-specific block) and check; writes
 * into a single-file sparse image (monolithicSparse, or a new
 * streamOptimized one compressed on the copy engine's workers; write.c)
 * and its CID, and into the flat and split images convert makes (their
 * extents members of its output, kimg/output.h).  Creation: create.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "vmdk.h"

/* ---- probe ---------------------------------------------------------- */

/* qemu's rule: a sparse magic, or "version=1|2|3" as the first line that
 * is not a comment or blank.  A file that starts "# Disk DescriptorFile"
 * without it scores 50 (kimg only): a damaged descriptor is refused with
 * the parser's message rather than read as a raw disk. */
static int vmdk_probe(const uint8_t *buf, size_t len, const char *filename)
{
    const char *p = (const char *)buf, *end = p + len;
    static const char head[] = "# Disk DescriptorFile";

    (void)filename;
    if (vmdk_sparse_magic(buf, len))
        return 100;
    while (p < end) {
        if (*p == '#') {
            while (p < end && *p != '\n')
                p++;
            if (p < end)
                p++;
            continue;
        }
        if (*p == ' ') {
            while (p < end && *p == ' ')
                p++;
            if (p < end && *p == '\r')
                p++;
            if (p == end || *p != '\n')
                break;
            p++;
            continue;
        }
        for (char v = '1'; v <= '3'; v++) {
            char line[] = "version=X\r\n";
            line[8] = v;
            if ((size_t)(end - p) >= 10 && !memcmp(p, line, 9) && p[9] == '\n')
                return 100;
            if ((size_t)(end - p) >= 11 && !memcmp(p, line, 11))
                return 100;
        }
        break;
    }
    return len >= sizeof(head) - 1 && !memcmp(buf, head, sizeof(head) - 1) ? 50 : 0;
}

/* ---- open ----------------------------------------------------------- */

static int read_text(struct kimg_file *f, uint64_t off, uint64_t len, char **out)
{
    char *buf = kimg_alloc_aligned(len ? len : 1);   /* (file.c's alignment rule) */
    if (!buf)
        return -ENOMEM;
    int ret = kimg_file_pread(f, buf, len, off);
    if (ret < 0) {
        free(buf);
        return ret;
    }
    *out = buf;
    return 0;
}

/* The createTypes a descriptor file may have, as qemu 7.2 takes them
 * (a monolithic or stream-optimized disk is one sparse file, not a
 * descriptor of its own). */
static int check_create_type(const char *ct)
{
    static const char *const ok[] = {
        "monolithicFlat", "vmfs", "vmfsSparse", "twoGbMaxExtentSparse",
        "twoGbMaxExtentFlat",
    };
    if (!ct)
        return kimg_fail(-EINVAL, "invalid VMDK image descriptor: no createType");
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (!strcmp(ct, ok[i]))
            return 0;
    return kimg_fail(-ENOTSUP, "Unsupported image type '%.200s'", ct);
}

static int take_desc_fields(struct kimg *img, struct vmdk_state *s, struct vmdk_desc *d)
{
    s->cid = d->cid;
    s->parent_cid = d->parent_cid;
    if (d->parent_hint) {
        /* qemu: the parent of a VMDK is a VMDK; the core opens it (not
         * under --untrusted), relative to this image's folder */
        img->backing_name = d->parent_hint;
        d->parent_hint = NULL;
        img->backing_format = strdup("vmdk");
        if (!img->backing_format)
            return -ENOMEM;
    }
    return 0;
}

static int open_descriptor_file(struct kimg *img, struct vmdk_state *s, uint64_t size)
{
    struct vmdk_desc d;
    char *text;
    int ret;

    if (size > VMDK_MAX_DESC_BYTES)
        return kimg_fail(-EFBIG, "VMDK descriptor file larger than %u bytes",
                         VMDK_MAX_DESC_BYTES);
    if ((ret = read_text(img->file, 0, size, &text)) < 0)
        return ret;
    ret = vmdk_desc_parse(text, size, false, &d);
    free(text);
    if (ret < 0)
        return ret;
    if ((ret = check_create_type(d.create_type)) == 0 &&
        (ret = vmdk_open_extents(img, &d, s)) == 0) {
        s->create_type = d.create_type;
        d.create_type = NULL;
        img->size = d.total_sectors * VMDK_SECTOR;
        ret = take_desc_fields(img, s, &d);
    }
    vmdk_desc_free(&d);
    return ret;
}

/* A monolithicSparse or streamOptimized file: one sparse extent, the
 * file itself.  Its embedded descriptor gives the CIDs and the parent
 * hint; its extent lines are not used (as qemu). */
static int open_sparse_file(struct kimg *img, struct vmdk_state *s, uint64_t size)
{
    struct vmdk_extent *e;
    int ret;

    s->ext = calloc(1, sizeof(*s->ext));
    if (!s->ext)
        return -ENOMEM;
    e = &s->ext[0];
    e->file = img->file;
    e->file_size = size;
    e->format = "";           /* qemu shows no type for it */
    e->path = strdup(img->filename);
    if (!e->path)
        return -ENOMEM;
    s->nb_ext = 1;
    ret = vmdk_sparse_open(img->file, size, &e->sparse, &e->sinfo);
    if (ret < 0)
        return ret;
    e->type = e->sinfo.cowd ? VMDK_EXT_VMFSSPARSE : VMDK_EXT_SPARSE;
    e->size = e->sinfo.capacity;
    if (e->size % VMDK_SECTOR || e->size == 0 || e->size > VMDK_MAX_SECTORS * VMDK_SECTOR)
        return kimg_fail(-EINVAL, "invalid VMDK capacity of %llu bytes",
                         (unsigned long long)e->size);
    img->size = e->size;
    s->create_type = strdup(e->sinfo.cowd ? "vmfsSparse" :
                            e->sinfo.compressed ? "streamOptimized" : "monolithicSparse");
    if (!s->create_type)
        return -ENOMEM;
    s->parent_cid = 0xffffffffu;
    if (!e->sinfo.desc_size) {
        /* CID 0, no parent.  qemu-img refuses such a file ("Invalid
         * argument": it finds no CID); kimg reads it but says what it
         * may be, since the extents of a twoGbMaxExtentSparse disk and
         * ESX delta extents look like this and read alone lose the rest */
        fputs("kimg: warning: '", stderr);
        kimg_print_for_terminal(stderr, img->filename);
        fputs("' is a VMDK sparse extent without a descriptor: if it is one extent of "
              "a larger disk or a delta disk, open the descriptor that names it\n", stderr);
        return 0;
    }
    uint64_t dend;
    if (e->sinfo.desc_size > VMDK_MAX_DESC_BYTES ||
        __builtin_add_overflow(e->sinfo.desc_offset, e->sinfo.desc_size, &dend) ||
        dend > size)
        return kimg_fail(-EINVAL, "embedded VMDK descriptor (%llu bytes at %llu) lies "
                         "outside the file or is larger than %u bytes",
                         (unsigned long long)e->sinfo.desc_size,
                         (unsigned long long)e->sinfo.desc_offset, VMDK_MAX_DESC_BYTES);
    struct vmdk_desc d;
    char *text;
    if ((ret = read_text(img->file, e->sinfo.desc_offset, e->sinfo.desc_size, &text)) < 0)
        return ret;
    ret = vmdk_desc_parse(text, e->sinfo.desc_size, true, &d);
    free(text);
    if (ret < 0)
        return ret;
    ret = take_desc_fields(img, s, &d);
    vmdk_desc_free(&d);
    return ret;
}

/* qemu's cluster size for the image: the grain size when every extent is
 * sparse with the same grain size and compression, none otherwise */
static uint64_t image_cluster_size(const struct vmdk_state *s)
{
    const struct vmdk_extent *a = &s->ext[0];
    if (!a->sparse)
        return 0;
    for (size_t i = 1; i < s->nb_ext; i++) {
        const struct vmdk_extent *b = &s->ext[i];
        if (!b->sparse || b->sinfo.compressed != a->sinfo.compressed ||
            b->sinfo.grain_size != a->sinfo.grain_size)
            return 0;
    }
    return a->sinfo.grain_size;
}

static void vmdk_close(struct kimg *img)
{
    struct vmdk_state *s = img->state;
    vmdk_free_extents(s);
    free(s->create_type);
    s->create_type = NULL;
}

/* monolithicSparse or streamOptimized: one sparse extent, the file itself */
static bool single_file(struct kimg *img)
{
    struct vmdk_state *s = img->state;
    return s->nb_ext == 1 && s->ext[0].sparse && s->ext[0].file == img->file;
}

/* A flat or split image kimg writes in place: every extent a FLAT (or
 * VMFS) one, or a hosted SPARSE one (not a stream, not COWD), in a file
 * of its own.  0, or -ENOTSUP naming the first extent that is not. */
static int extents_writable(const struct vmdk_state *s)
{
    for (size_t i = 0; i < s->nb_ext; i++) {
        const struct vmdk_extent *e = &s->ext[i];
        bool flat = e->type == VMDK_EXT_FLAT || e->type == VMDK_EXT_VMFS;
        bool sparse = e->type == VMDK_EXT_SPARSE && e->sparse && !e->sinfo.compressed &&
                      !e->sinfo.cowd;
        if (!e->file || !e->own_file || !(flat || sparse))
            return kimg_fail(-ENOTSUP, "kimg cannot write this VMDK: its extent %zu is %s%s",
                             i, !e->file ? "a ZERO extent"
                                : !e->own_file ? "in a file another extent uses"
                                : e->sinfo.compressed ? "stream-optimized (compressed)"
                                : "of type ", !e->file || !e->own_file ||
                                e->sinfo.compressed ? "" : e->format);
    }
    return s->nb_ext > 0 ? 0 : kimg_fail(-ENOTSUP, "kimg cannot write a VMDK without extents");
}

static int enable_extents(struct vmdk_state *s)
{
    for (size_t i = 0; i < s->nb_ext; i++)
        if (s->ext[i].sparse) {
            int ret = vmdk_sparse_enable_write(s->ext[i].sparse);
            if (ret < 0)
                return ret;
        }
    return 0;
}

static int vmdk_open(struct kimg *img)
{
    struct vmdk_state *s = img->state;
    uint8_t head[4];
    uint64_t size;
    int ret;

    if ((ret = kimg_file_size(img->file, &size)) < 0)
        return ret;
    if (size < sizeof(head))
        return kimg_fail(-EINVAL, "File is too small, not a valid image");
    if ((ret = kimg_file_pread(img->file, head, sizeof(head), 0)) < 0)
        return ret;
    if (vmdk_sparse_magic(head, sizeof(head)))
        ret = open_sparse_file(img, s, size);
    else
        ret = open_descriptor_file(img, s, size);
    if (ret == 0)
        img->cluster_size = image_cluster_size(s);
    /* check -r: qemu's vmdk has no repair; the image is not written */
    if (ret == 0 && img->writable && !(img->flags & KIMG_OPEN_REPAIR)) {
        /* single-file sparse VMDKs (a stream one only as kimg makes it),
         * and flat and split ones whose extents are all flat or hosted
         * sparse, in files of their own */
        if (single_file(img))
            ret = vmdk_sparse_enable_write(s->ext[0].sparse);
        else if ((ret = extents_writable(s)) == 0)
            ret = enable_extents(s);
    }
    if (ret < 0) {
        if (ret == -ENOMEM)
            kimg_error("out of memory");
        vmdk_close(img);
        free(img->backing_name);
        free(img->backing_format);
        img->backing_name = img->backing_format = NULL;
    }
    return ret;
}

/* ---- reads and block status ----------------------------------------- */

/*
 * The CID/parentCID check, as qemu's vmdk_is_cid_valid: before a read
 * goes to the parent, the parent (a VMDK) must still carry the CID this
 * delta disk was made against; if it changed, the parent was written
 * since and the delta's content is no longer what it was.  qemu then
 * fails the read with a bare "Invalid argument"; kimg says why, and
 * fails block status below this layer too (the engines read the parent
 * through it), so `map` refuses such a chain where qemu-img shows it.
 */
static int check_parent_cid(struct kimg *img)
{
    struct vmdk_state *s = img->state;
    int v = __atomic_load_n(&s->cid_checked, __ATOMIC_ACQUIRE);
    if (v == 0) {
        struct kimg *b = img->backing;
        v = 1;
        if (b && b->drv != &kimg_vmdk_driver)
            v = -2;
        else if (b && ((struct vmdk_state *)b->state)->cid != s->parent_cid)
            v = -1;
        __atomic_store_n(&s->cid_checked, v, __ATOMIC_RELEASE);
    }
    if (v == -2)
        return kimg_fail(-EINVAL, "the parent of a VMDK delta disk must be a VMDK image");
    if (v < 0) {
        struct vmdk_state *bs = img->backing->state;
        return kimg_fail(-EINVAL, "the parent image '%.200s' has changed since this delta "
                         "disk was made (its CID is %08x, the delta's parentCID %08x)",
                         img->backing->filename, bs->cid, s->parent_cid);
    }
    return 0;
}

static int read_parent(struct kimg *img, void *buf, uint64_t off, uint64_t len)
{
    if (img->backing) {
        int ret = check_parent_cid(img);
        if (ret < 0)
            return ret;
    }
    return kimg_read_backing(img, buf, off, len);
}

static int sparse_run(struct vmdk_extent *e, uint64_t rel, uint64_t len,
                      struct vmdk_grain_run *run)
{
    int ret = vmdk_sparse_status(e->sparse, rel, len, run);
    if (ret < 0)
        return ret;
    if (run->length == 0 || run->length > len)
        return kimg_fail(-EIO, "VMDK sparse extent returned a bad run length");
    return 0;
}

static int read_sparse(struct kimg *img, struct vmdk_extent *e, uint8_t *buf,
                       uint64_t rel, uint64_t len)
{
    while (len) {
        struct vmdk_grain_run run;
        int ret = sparse_run(e, rel, len, &run);
        if (ret < 0)
            return ret;
        uint64_t n = run.length;
        switch (run.kind) {
        case VMDK_GRAIN_UNALLOCATED:
            ret = read_parent(img, buf, e->start + rel, n);
            break;
        case VMDK_GRAIN_ZERO:
            memset(buf, 0, n);
            break;
        default:
            ret = vmdk_sparse_read(e->sparse, buf, rel, n);
            break;
        }
        if (ret < 0)
            return ret;
        buf += n;
        rel += n;
        len -= n;
    }
    return 0;
}

static int vmdk_read(struct kimg *img, void *buf, uint64_t off, uint64_t len)
{
    struct vmdk_state *s = img->state;
    uint8_t *p = buf;
    while (len) {
        struct vmdk_extent *e = vmdk_find_extent(s, off);
        uint64_t rel = off - e->start;
        uint64_t n = e->size - rel < len ? e->size - rel : len;
        int ret = e->sparse ? read_sparse(img, e, p, rel, n) : vmdk_flat_read(e, p, rel, n);
        if (ret < 0)
            return ret;
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

static int vmdk_block_status(struct kimg *img, uint64_t off, uint64_t len,
                             struct kimg_extent *ext)
{
    struct vmdk_state *s = img->state;
    struct vmdk_extent *e = vmdk_find_extent(s, off);
    uint64_t rel = off - e->start;
    struct vmdk_grain_run run;

    if (len > e->size - rel)
        len = e->size - rel;
    if (!e->sparse) {
        vmdk_flat_status(e, rel, len, ext);
        return 0;
    }
    int ret = sparse_run(e, rel, len, &run);
    if (ret < 0)
        return ret;
    ext->length = run.length;
    switch (run.kind) {
    case VMDK_GRAIN_UNALLOCATED:
        /* the chain goes on below: the engines read the parent's data
         * through its own block status, so the check is made here too */
        if (img->backing && (ret = check_parent_cid(img)) < 0)
            return ret;
        ext->flags = 0;
        break;
    case VMDK_GRAIN_ZERO:
        ext->flags = KIMG_BS_ZERO | KIMG_BS_ALLOCATED;
        break;
    case VMDK_GRAIN_DATA:
        ext->flags = KIMG_BS_DATA | KIMG_BS_ALLOCATED | KIMG_BS_OFFSET_VALID;
        ext->offset = run.host;
        ext->file = e->path;
        ext->host_file = e->file;
        break;
    case VMDK_GRAIN_COMPRESSED:
        ext->flags = KIMG_BS_DATA | KIMG_BS_ALLOCATED | KIMG_BS_COMPRESSED;
        break;
    }
    return 0;
}

/* qemu's block status answers one grain at a time on sparse extents (the
 * whole extent on flat ones): convert -p counts its work in those */
static void vmdk_status_units(struct kimg *img, uint64_t *span, uint64_t *cluster)
{
    struct vmdk_state *s = img->state;
    uint64_t g = image_cluster_size(s);
    *span = g;
    *cluster = g;
}

/* ---- info and check ------------------------------------------------- */

static struct kimg_jv *extent_json(const struct vmdk_extent *e)
{
    struct kimg_jv *o = kimg_jv_object();
    if (!o)
        return NULL;
    /* qemu's VmdkExtentInfo, in its order (the printer orders as QDict) */
    if (e->path)
        kimg_jv_add_str(o, "filename", e->path);
    kimg_jv_add_str(o, "format", e->format);
    kimg_jv_add_uint(o, "virtual-size", e->size);
    if (e->sparse)
        kimg_jv_add_uint(o, "cluster-size", e->sinfo.grain_size);
    if (e->sparse && e->sinfo.compressed)
        kimg_jv_add_bool(o, "compressed", true);
    return o;
}

/* Every extent in a file of its own is a child node "extents.N", N its
 * place among all the extents (qemu numbers them as it adds them). */
static size_t vmdk_aux_files(struct kimg *img, struct kimg_aux_file *out, size_t max)
{
    struct vmdk_state *s = img->state;
    size_t n = 0;
    for (size_t i = 0; i < s->nb_ext && n < max; i++) {
        struct vmdk_extent *e = &s->ext[i];
        if (!e->file || e->file == img->file)
            continue;
        snprintf(out[n].name, sizeof(out[n].name), "extents.%zu", i);
        out[n].file = e->file;
        out[n].path = e->path;
        n++;
    }
    return n;
}

static int vmdk_info(struct kimg *img, struct kimg_info *info)
{
    struct vmdk_state *s = img->state;
    struct kimg_jv *top = kimg_jv_object(), *d = kimg_jv_object(), *arr = kimg_jv_array();

    info->cluster_size = img->cluster_size;
    /* qemu counts every extent's file but the image's own (a file two
     * extents name twice) */
    for (size_t i = 0; i < s->nb_ext && info->actual_size >= 0; i++) {
        if (!s->ext[i].file || s->ext[i].file == img->file)
            continue;
        int64_t a = kimg_file_allocated(s->ext[i].file);
        info->actual_size = a < 0 ? -1 : info->actual_size + a;
    }
    if (!top || !d || !arr)
        goto oom;
    kimg_jv_add_str(top, "type", "vmdk");
    kimg_jv_add_str(d, "create-type", s->create_type);
    kimg_jv_add_uint(d, "cid", s->cid);
    kimg_jv_add_uint(d, "parent-cid", s->parent_cid);
    for (size_t i = 0; i < s->nb_ext; i++) {
        struct kimg_jv *o = extent_json(&s->ext[i]);
        if (!o)
            goto oom;
        kimg_jv_add(arr, NULL, o);
    }
    kimg_jv_add(d, "extents", arr);
    kimg_jv_add(top, "data", d);
    info->format_specific = top;
    return 0;
oom:
    kimg_jv_free(top);
    kimg_jv_free(d);
    kimg_jv_free(arr);
    return kimg_fail(-ENOMEM, "out of memory");
}

/* qemu's vmdk check: every allocated grain inside its file (the sparse
 * half), every flat extent's data starting inside its file; no repair. */
static int vmdk_check(struct kimg *img, struct kimg_check *res, unsigned fix)
{
    struct vmdk_state *s = img->state;
    if (fix)
        return -ENOTSUP;        /* as qemu's vmdk: no repair (exit 63) */
    for (size_t i = 0; i < s->nb_ext; i++) {
        struct vmdk_extent *e = &s->ext[i];
        int ret = 0;
        if (e->sparse) {
            ret = vmdk_sparse_check_at(e->sparse, res, e->start);
        } else if (e->file && e->flat_offset >= e->file_size) {
            if (res->log)
                fprintf(res->log, "ERROR: cluster offset for sector %llu points after EOF\n",
                        (unsigned long long)(e->start / VMDK_SECTOR));
            res->corruptions++;
            ret = kimg_fail(-EINVAL, "Invalid argument");
        }
        if (ret < 0)
            return ret;
    }
    return 0;
}

/* ---- writes (a new streamOptimized image; vmdk_open allowed them) ---- */

static int sparse_write(struct kimg *img, const uint8_t *p, uint64_t off, uint64_t len);
static int vmdk_write(struct kimg *img, const void *buf, uint64_t off, uint64_t len);

static struct vmdk_sparse *stream_of(struct kimg *img)
{
    struct vmdk_state *s = img->state;
    return s->ext[0].sparse;
}

static int64_t vmdk_compress_cluster(struct kimg *img, uint64_t off, const void *buf,
                                     uint64_t len, void *dst, size_t cap)
{
    struct vmdk_state *s = img->state;
    if (!s->ext[0].sinfo.compressed)
        return -ENOTSUP;        /* qemu stores -c data plainly in a sparse extent */
    return vmdk_stream_compress(stream_of(img), off, buf, len, dst, cap);
}

static int vmdk_write_compressed_data(struct kimg *img, uint64_t off, uint64_t len,
                                      const void *cdata, size_t clen)
{
    (void)len;
    return vmdk_stream_store(stream_of(img), off, cdata, clen);
}

/* Compress on the calling thread (kimg_write, and -c targets without the
 * split path): whole grains only, as qemu. */
static int vmdk_write_compressed(struct kimg *img, const void *buf, uint64_t off,
                                 uint64_t len)
{
    struct vmdk_state *s = img->state;
    if (!single_file(img) || !s->ext[0].sinfo.compressed)
        return vmdk_write(img, buf, off, len);   /* qemu: stored plainly */
    struct vmdk_sparse *sp = stream_of(img);
    size_t cap = vmdk_stream_bound(sp);
    uint8_t *c = malloc(cap);
    if (!c)
        return kimg_fail(-ENOMEM, "out of memory");
    int64_t n = vmdk_stream_compress(sp, off, buf, len, c, cap);
    int ret = n < 0 ? (int)n : vmdk_stream_store(sp, off, c, (size_t)n);
    if (n == -ENOSPC)
        ret = kimg_fail(-EIO, "compression failed");
    free(c);
    return ret;
}

static int stream_write(struct kimg *img, const uint8_t *p, uint64_t off, uint64_t len)
{
    uint64_t g = img->cluster_size;
    if (off % g)
        return kimg_fail(-EINVAL, "a streamOptimized VMDK takes whole grains only");
    while (len) {
        uint64_t n = len < g ? len : g;
        int ret = vmdk_write_compressed(img, p, off, n);
        if (ret < 0)
            return ret;
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

static int write_cid(struct kimg *img, uint32_t cid);

/* Extent E (a hosted sparse one) at its offset REL: allocated grains in
 * place; a new grain whole, its other bytes from what it read as before
 * (zeros or the parent's). */
static int sparse_extent_write(struct kimg *img, struct vmdk_extent *e, const uint8_t *p,
                               uint64_t rel, uint64_t len)
{
    uint64_t gs = e->sinfo.grain_size;
    uint8_t *tmp = NULL;
    int ret = 0;
    while (len && ret == 0) {
        uint64_t in = rel % gs, gstart = rel - in;
        uint64_t glen = e->size - gstart < gs ? e->size - gstart : gs;
        uint64_t n = glen - in < len ? glen - in : len;
        struct vmdk_grain_run run;
        if ((ret = sparse_run(e, rel, n, &run)) < 0)
            break;
        if (run.kind == VMDK_GRAIN_DATA && run.length == n) {
            ret = vmdk_sparse_write_at(e->sparse, run.host, p, n);
        } else {
            if (!tmp && !(tmp = kimg_alloc_aligned_zero(gs))) {
                ret = kimg_fail(-ENOMEM, "out of memory");
                break;
            }
            memset(tmp, 0, gs);
            if (n < glen)
                ret = read_sparse(img, e, tmp, gstart, glen);
            memcpy(tmp + in, p, n);
            if (ret == 0)
                ret = vmdk_sparse_alloc_grain(e->sparse, gstart / gs, tmp);
        }
        p += n;
        rel += n;
        len -= n;
    }
    free(tmp);
    return ret;
}

/* A single-file sparse image (monolithicSparse). */
static int sparse_write(struct kimg *img, const uint8_t *p, uint64_t off, uint64_t len)
{
    struct vmdk_state *s = img->state;
    int ret = 0;
    if (!s->cid_updated) {
        /* qemu: a new CID at the first write since open, so that delta
         * disks made on this image see that it changed */
        if ((ret = write_cid(img, vmdk_random_cid())) < 0)
            return ret;
        s->cid_updated = true;
    }
    ret = sparse_extent_write(img, &s->ext[0], p, off, len);
    if (ret < 0)
        kimg_fence(img);
    return ret;
}

static int write_desc_cid(struct kimg *img, uint32_t cid);

/* A flat or split image: each extent's part, in place in a
 * flat extent's file (what is never written stays a hole), through the
 * sparse half in a sparse one.  The first write renews the CID in the
 * descriptor file, as qemu's (which then holds whole sectors). */
static int extents_write(struct kimg *img, const uint8_t *p, uint64_t off, uint64_t len)
{
    struct vmdk_state *s = img->state;
    int ret = 0;
    if (!__atomic_exchange_n(&s->cid_updated, true, __ATOMIC_ACQ_REL))
        ret = write_desc_cid(img, vmdk_random_cid());
    while (len && ret == 0) {
        struct vmdk_extent *e = vmdk_find_extent(s, off);
        uint64_t rel = off - e->start;
        uint64_t n = e->size - rel < len ? e->size - rel : len;
        ret = e->sparse ? sparse_extent_write(img, e, p, rel, n)
                        : kimg_file_pwrite(e->file, p, n, e->flat_offset + rel);
        p += n;
        off += n;
        len -= n;
    }
    if (ret < 0)
        kimg_fence(img);
    return ret;
}

static int vmdk_write(struct kimg *img, const void *buf, uint64_t off, uint64_t len)
{
    struct vmdk_state *s = img->state;
    if (!single_file(img))
        return extents_write(img, buf, off, len);
    return s->ext[0].sinfo.compressed ? stream_write(img, buf, off, len)
                                      : sparse_write(img, buf, off, len);
}

/* Zeros into a flat or split image: holes punched (or zeros
 * written) in flat extents, zeroed-grain entries in sparse ones that have
 * the feature; -ENOTSUP (the core writes zeros) where they cannot be. */
static int extents_write_zeroes(struct kimg *img, uint64_t off, uint64_t len,
                                unsigned flags)
{
    struct vmdk_state *s = img->state;
    while (len) {
        struct vmdk_extent *e = vmdk_find_extent(s, off);
        uint64_t rel = off - e->start;
        uint64_t n = e->size - rel < len ? e->size - rel : len;
        int ret = 0;
        if (!e->sparse) {
            ret = kimg_file_zero(e->file, e->flat_offset + rel, n,
                                 (flags & KIMG_ZERO_MAY_UNMAP) != 0);
        } else {
            uint64_t gs = e->sinfo.grain_size;
            if (rel % gs || (n % gs && rel + n != e->size))
                return -ENOTSUP;
            for (uint64_t g = rel / gs; g * gs < rel + n && ret == 0; g++)
                ret = vmdk_sparse_zero_grain(e->sparse, g);
        }
        if (ret < 0)
            return ret;
        off += n;
        len -= n;
    }
    return 0;
}

/* qemu's zeroed-grain writes: whole grains of a sparse extent with the
 * feature become zeroed-grain entries; the rest is written as data */
static int vmdk_write_zeroes(struct kimg *img, uint64_t off, uint64_t len, unsigned flags)
{
    struct vmdk_state *s = img->state;
    if (!single_file(img))
        return extents_write_zeroes(img, off, len, flags);
    struct vmdk_extent *e = &s->ext[0];
    uint64_t gs = e->sinfo.grain_size;
    (void)flags;
    if (e->sinfo.compressed || off % gs || (len % gs && off + len != e->size))
        return -ENOTSUP;
    for (uint64_t g = off / gs; g * gs < off + len; g++) {
        int ret = vmdk_sparse_zero_grain(e->sparse, g);
        if (ret < 0)
            return ret;
    }
    return 0;
}

/* Replace the CID line of the embedded descriptor (qemu's vmdk_write_cid). */
static int write_cid(struct kimg *img, uint32_t cid)
{
    struct vmdk_state *s = img->state;
    struct vmdk_extent *e = &s->ext[0];
    uint64_t off = e->sinfo.desc_offset, size = e->sinfo.desc_size;
    if (!size)
        return 0;
    char *text = kimg_alloc_aligned_zero(size + 32), *out = kimg_alloc_aligned_zero(size + 32);
    int ret = text && out ? kimg_file_pread(img->file, text, size, off) : -ENOMEM;
    if (ret == 0) {
        char *line = strstr(text, "\nCID=");
        char *end = line ? strchr(line + 1, '\n') : NULL;
        if (!end) {
            ret = kimg_fail(-EINVAL, "the descriptor has no CID line to update");
        } else {
            int n = snprintf(out, size + 32, "%.*s\nCID=%x%s", (int)(line - text), text,
                             cid, end);
            if (n < 0 || (uint64_t)n >= size)
                ret = kimg_fail(-ENOSPC, "the descriptor has no room for its new CID");
            else
                ret = kimg_file_pwrite(img->file, out, size, off);
        }
    }
    if (ret == 0)
        s->cid = cid;
    free(text);
    free(out);
    return ret == -ENOMEM ? kimg_fail(ret, "out of memory") : ret;
}

/* A flat or split image: every sparse extent's new grains
 * linked after their data is synced, every extent file synced, then the
 * descriptor file. */
static int extents_flush(struct kimg *img)
{
    struct vmdk_state *s = img->state;
    int ret = 0;
    for (size_t i = 0; i < s->nb_ext && ret == 0; i++) {
        struct vmdk_extent *e = &s->ext[i];
        if (e->sparse)
            ret = vmdk_sparse_commit(e->sparse);
        if (ret == 0 && e->file && e->own_file)
            ret = kimg_file_sync(e->file);
    }
    if (ret == 0)
        ret = kimg_file_sync(img->file);
    if (ret < 0)
        kimg_fence(img);
    return ret;
}

/* Replace the CID line of a descriptor file, as qemu's vmdk_write_cid
 * leaves it: the text padded with zeros to whole sectors. */
static int write_desc_cid(struct kimg *img, uint32_t cid)
{
    struct vmdk_state *s = img->state;
    uint64_t size;
    int ret = kimg_file_size(img->file, &size);
    if (ret < 0)
        return ret;
    if (size > VMDK_MAX_DESC_BYTES)
        return kimg_fail(-EFBIG, "VMDK descriptor file larger than %u bytes",
                         VMDK_MAX_DESC_BYTES);
    size_t cap = (size_t)size + VMDK_SECTOR + 32;
    char *text = kimg_alloc_aligned_zero(cap), *out = kimg_alloc_aligned_zero(cap);
    ret = text && out ? kimg_file_pread(img->file, text, size, 0) : -ENOMEM;
    if (ret == 0) {
        char *line = strstr(text, "\nCID=");
        char *end = line ? strchr(line + 1, '\n') : NULL;
        if (!end) {
            ret = kimg_fail(-EINVAL, "the descriptor has no CID line to update");
        } else {
            int n = snprintf(out, cap, "%.*s\nCID=%x%s", (int)(line - text), text, cid, end);
            size_t len = n < 0 ? 0 : ((size_t)n + VMDK_SECTOR - 1) / VMDK_SECTOR * VMDK_SECTOR;
            if (n < 0 || len > cap)
                ret = kimg_fail(-ENOSPC, "the descriptor has no room for its new CID");
            else
                ret = kimg_file_pwrite(img->file, out, len, 0);
        }
    }
    if (ret == 0)
        s->cid = cid;
    free(text);
    free(out);
    return ret == -ENOMEM ? kimg_fail(ret, "out of memory") : ret;
}

static int vmdk_flush(struct kimg *img)
{
    uint32_t cid;
    struct vmdk_state *s = img->state;
    if (!single_file(img))
        return img->writable ? extents_flush(img) : 0;   /* open checked the extents */
    if (s->nb_ext != 1 || !s->ext[0].sparse)
        return 0;
    if (!s->ext[0].sinfo.compressed) {
        int r = vmdk_sparse_commit(stream_of(img));
        if (r == 0)
            r = kimg_file_sync(img->file);
        if (r < 0)
            kimg_fence(img);
        return r;
    }
    int ret = vmdk_stream_finish(stream_of(img), &cid);
    if (ret == 0)
        return 0;               /* not a stream made writable: nothing to do */
    if (ret > 0)
        ret = write_cid(img, cid);
    if (ret == 0)
        ret = kimg_file_sync(img->file);
    if (ret < 0)
        kimg_fence(img);
    return ret;
}

/* qemu's bdi.needs_compressed_writes: convert writes a stream image
 * through the compressed path, -c or not */
static bool vmdk_needs_compressed_writes(struct kimg *img)
{
    struct vmdk_state *s = img->state;
    return img->writable && s->nb_ext == 1 && s->ext[0].sinfo.compressed;
}

const struct kimg_driver kimg_vmdk_driver = {
    .name = "vmdk",
    .state_size = sizeof(struct vmdk_state),
    .probe = vmdk_probe,
    .open = vmdk_open,
    .close = vmdk_close,
    .read = vmdk_read,
    .block_status = vmdk_block_status,
    .info = vmdk_info,
    .aux_files = vmdk_aux_files,
    .check = vmdk_check,
    .status_units = vmdk_status_units,
    .create = vmdk_create,
    .create_opts = vmdk_create_opts,
    .formatting_opts = vmdk_formatting_opts,
    .write = vmdk_write,
    .write_zeroes = vmdk_write_zeroes,
    .flush = vmdk_flush,
    .write_compressed = vmdk_write_compressed,
    .compress_cluster = vmdk_compress_cluster,
    .write_compressed_data = vmdk_write_compressed_data,
    .needs_compressed_writes = vmdk_needs_compressed_writes,
};
