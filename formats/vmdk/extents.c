/*
 * extents.c — the extents of an open VMDK: opening the files a descriptor
 * names (through the core's kimg_open_named_file, the security boundary;
 * each file once under --untrusted), and the FLAT, VMFS and ZERO extents'
 * reads and block status.  Sparse extents are the sparse half's.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "vmdk.h"
#include "kimg/output.h"

void vmdk_free_extents(struct vmdk_state *s)
{
    for (size_t i = 0; i < s->nb_ext; i++) {
        struct vmdk_extent *e = &s->ext[i];
        if (e->sparse)
            vmdk_sparse_close(e->sparse);
        if (e->own_file)
            kimg_file_close(e->file);
        free(e->path);
    }
    free(s->ext);
    s->ext = NULL;
    s->nb_ext = 0;
}

/* Under --untrusted each file serves one extent, and none is the image. */
static int check_once(struct kimg *img, struct vmdk_state *s, struct kimg_file *f,
                      const char *name)
{
    if (!(img->flags & KIMG_OPEN_UNTRUSTED))
        return 0;
    bool seen = kimg_file_same(f, img->file);
    for (size_t i = 0; i + 1 < s->nb_ext && !seen; i++)     /* the last is F's */
        seen = s->ext[i].file && kimg_file_same(f, s->ext[i].file);
    if (seen)
        return kimg_fail(-EPERM, "refusing extent '%.200s' under --untrusted: the file "
                         "serves another extent or is the descriptor", name);
    return 0;
}

static int open_flat(struct kimg *img, struct vmdk_extent *e,
                     const struct vmdk_desc_extent *de)
{
    uint64_t end = e->flat_offset + e->size;   /* both < 2^53: no overflow */
    if (end <= e->file_size)
        return 0;
    if (img->flags & KIMG_OPEN_UNTRUSTED)
        return kimg_fail(-EINVAL, "extent '%.200s' holds %llu bytes, the descriptor needs "
                         "%llu", de->file, (unsigned long long)e->file_size,
                         (unsigned long long)end);
    /* qemu-img reads the missing tail as zeros without a word */
    fputs("kimg: warning: extent '", stderr);
    kimg_print_for_terminal(stderr, e->path);
    fprintf(stderr, "' is shorter than the descriptor says (%llu bytes, %llu needed): the "
            "rest reads as zeros\n", (unsigned long long)e->file_size,
            (unsigned long long)end);
    return 0;
}

static int open_sparse(struct vmdk_extent *e, const struct vmdk_desc_extent *de)
{
    int ret = vmdk_sparse_open(e->file, e->file_size, &e->sparse, &e->sinfo);
    if (ret < 0)
        return ret;
    if (e->sinfo.capacity != e->size)
        return kimg_fail(-EINVAL, "extent '%.200s' holds %llu bytes, the descriptor says "
                         "%llu", de->file, (unsigned long long)e->sinfo.capacity,
                         (unsigned long long)e->size);
    return 0;
}

/* An earlier extent of D naming the same file as extent I (trusted
 * images only: under --untrusted every file serves one extent), whose
 * open file extent I shares: a twoGbMaxExtent descriptor of 4096 lines
 * naming one file costs one descriptor, not 4096. */
static struct vmdk_extent *same_name(struct kimg *img, struct vmdk_state *s,
                                     const struct vmdk_desc *d, size_t i)
{
    if (img->flags & KIMG_OPEN_UNTRUSTED)
        return NULL;
    for (size_t j = 0; j < i; j++)
        if (s->ext[j].file && !strcmp(d->extents[j].file, d->extents[i].file))
            return &s->ext[j];
    return NULL;
}

static int open_one(struct kimg *img, struct vmdk_state *s, const struct vmdk_desc *d,
                    uint64_t start)
{
    const struct vmdk_desc_extent *de = &d->extents[s->nb_ext];
    struct vmdk_extent *e = &s->ext[s->nb_ext], *twin;
    int ret;

    memset(e, 0, sizeof(*e));
    e->type = de->type;
    e->start = start;
    e->size = de->sectors * VMDK_SECTOR;
    e->format = vmdk_ext_type_name(de->type);
    if (de->access == VMDK_ACCESS_NOACCESS)
        return kimg_fail(-EACCES, "extent %zu of the descriptor is NOACCESS: its data "
                         "cannot be read", s->nb_ext);
    if (de->type == VMDK_EXT_ZERO) {
        s->nb_ext++;
        return 0;
    }
    twin = same_name(img, s, d, s->nb_ext);
    if (twin) {
        e->file = twin->file;
    } else {
        ret = kimg_open_named_file(img, de->file, "extent", &e->file);
        if (ret < 0)
            return ret;
        e->own_file = true;
    }
    s->nb_ext++;              /* from here vmdk_free_extents frees it */
    e->path = strdup(e->file->path);
    if (!e->path)
        return -ENOMEM;
    if ((ret = check_once(img, s, e->file, de->file)) < 0 ||
        (ret = kimg_file_size(e->file, &e->file_size)) < 0)
        return ret;
    if (de->type == VMDK_EXT_FLAT || de->type == VMDK_EXT_VMFS) {
        e->flat_offset = de->offset * VMDK_SECTOR;
        return open_flat(img, e, de);
    }
    return open_sparse(e, de);
}

int vmdk_open_extents(struct kimg *img, const struct vmdk_desc *d, struct vmdk_state *s)
{
    uint64_t start = 0;
    if (d->nb_extents == 0)
        return kimg_fail(-EINVAL, "VMDK descriptor lists no extent");
    s->ext = calloc(d->nb_extents, sizeof(*s->ext));
    if (!s->ext)
        return -ENOMEM;
    for (size_t i = 0; i < d->nb_extents; i++) {
        int ret = open_one(img, s, d, start);
        if (ret < 0)
            return ret;
        start += s->ext[s->nb_ext - 1].size;
    }
    return 0;
}

struct vmdk_extent *vmdk_find_extent(struct vmdk_state *s, uint64_t off)
{
    size_t lo = 0, hi = s->nb_ext;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->ext[mid].start <= off)
            lo = mid;
        else
            hi = mid;
    }
    return &s->ext[lo];
}

int vmdk_flat_read(struct vmdk_extent *e, void *buf, uint64_t off, uint64_t len)
{
    if (e->type == VMDK_EXT_ZERO) {
        memset(buf, 0, len);
        return 0;
    }
    return kimg_file_pread_zero_eof(e->file, buf, len, e->flat_offset + off);
}

/* As qemu: a FLAT extent is data at its offset, the file's holes (and,
 * kimg only, what lies past a short file's end) read as zeros; a ZERO
 * extent is allocated zeros. */
void vmdk_flat_status(struct vmdk_extent *e, uint64_t off, uint64_t len,
                      struct kimg_extent *ext)
{
    uint64_t host = e->flat_offset + off;
    bool is_data, had_error = kimg_last_error() != NULL;
    uint64_t pnum;

    ext->length = len;
    if (e->type == VMDK_EXT_ZERO) {
        ext->flags = KIMG_BS_ZERO | KIMG_BS_ALLOCATED;
        return;
    }
    if (host >= e->file_size) {
        ext->flags = KIMG_BS_ZERO | KIMG_BS_ALLOCATED;
        return;
    }
    if (len > e->file_size - host)
        ext->length = len = e->file_size - host;
    ext->flags = KIMG_BS_DATA | KIMG_BS_ALLOCATED | KIMG_BS_OFFSET_VALID;
    ext->offset = host;
    ext->file = e->path;
    ext->host_file = e->file;
    if (kimg_file_data_status(e->file, host, len, &is_data, &pnum) == 0 && pnum >= 1) {
        if (pnum < len)
            ext->length = pnum;
        if (!is_data)
            ext->flags |= KIMG_BS_ZERO;
    } else if (!had_error) {
        kimg_clear_error();     /* no hole information: all data, as qemu */
    }
}
