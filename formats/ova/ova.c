/*
 * ova.c — an OVA archive as a whole (img/archive.h): detection (a tar whose
 * first member is an .ovf descriptor, as DSP0243 wants), the descriptor's
 * disks matched to members, the manifest (optional; when present it covers
 * the descriptor and every disk, and names no missing member), digests.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "archive.h"
#include "ova.h"

struct kimg_ova {
    struct ova_tar tar;
    struct ova_manifest mf;
    bool has_mf;
    unsigned nb_disks;
    unsigned disk[OVA_MAX_DISKS];   /* member index of each disk */
};

static bool has_suffix(const char *name, const char *suffix)
{
    size_t n = strlen(name), s = strlen(suffix);
    return n > s && !strcasecmp(name + n - s, suffix);
}

/* Member M's bytes (at most CAP), NUL-terminated. */
static int read_member(struct kimg_file *file, const struct ova_member *m, uint64_t cap,
                       const char *what, char **out)
{
    if (m->size > cap)
        return kimg_fail(-EFBIG, "the %s '%.200s' is larger than %llu KiB", what, m->name,
                         (unsigned long long)(cap >> 10));
    char *buf = kimg_alloc_aligned((size_t)m->size + 1);   /* free() releases it */
    if (!buf)
        return kimg_fail(-ENOMEM, "out of memory");
    int ret = m->size ? kimg_file_pread(file, buf, (size_t)m->size, m->offset) : 0;
    if (ret < 0) {
        free(buf);
        return ret;
    }
    buf[m->size] = '\0';
    *out = buf;
    return 0;
}

/* The manifest, if the archive has one: parsed, every entry naming a
 * member. */
static int load_manifest(struct kimg_ova *o, struct kimg_file *file)
{
    const struct ova_member *mf = NULL;
    for (unsigned i = 1; i < o->tar.n; i++) {
        if (!has_suffix(o->tar.m[i].name, ".mf"))
            continue;
        if (mf)
            return kimg_fail(-EINVAL, "the archive has two manifests ('%.200s', '%.200s')",
                             mf->name, o->tar.m[i].name);
        mf = &o->tar.m[i];
    }
    if (!mf)
        return 0;
    char *buf;
    int ret = read_member(file, mf, OVA_MAX_MF_BYTES, "manifest", &buf);
    if (ret < 0)
        return ret;
    ret = ova_manifest_parse(buf, (size_t)mf->size, &o->mf);
    free(buf);
    if (ret < 0)
        return ret;
    o->has_mf = true;
    for (unsigned i = 0; i < o->mf.n; i++)
        if (!ova_tar_find(&o->tar, o->mf.d[i].name))
            return kimg_fail(-EINVAL, "the manifest names '%.200s', which is not in the "
                             "archive", o->mf.d[i].name);
    return 0;
}

/* The descriptor's disks, each a member that is neither the descriptor
 * nor the manifest, of the size the descriptor gives (if it gives one). */
static int match_disks(struct kimg_ova *o, const struct ova_ovf *ovf)
{
    for (unsigned i = 0; i < ovf->n; i++) {
        const struct ova_member *m = ova_tar_find(&o->tar, ovf->d[i].href);
        if (!m)
            return kimg_fail(-ENOENT, "OVF disk file '%.200s' is not in the archive",
                             ovf->d[i].href);
        if (m == &o->tar.m[0] || has_suffix(m->name, ".mf"))
            return kimg_fail(-EINVAL, "OVF disk file '%.200s' is the descriptor or the "
                             "manifest", m->name);
        if (ovf->d[i].size >= 0 && (uint64_t)ovf->d[i].size != m->size)
            return kimg_fail(-EINVAL, "OVF disk file '%.200s' is %llu bytes in the archive, "
                             "%lld in the descriptor", m->name, (unsigned long long)m->size,
                             (long long)ovf->d[i].size);
        if (o->has_mf && !ova_manifest_find(&o->mf, m->name))
            return kimg_fail(-EINVAL, "OVF disk file '%.200s' has no digest in the manifest",
                             m->name);
        o->disk[o->nb_disks++] = (unsigned)(m - o->tar.m);
    }
    if (o->has_mf && !ova_manifest_find(&o->mf, o->tar.m[0].name))
        return kimg_fail(-EINVAL, "the descriptor '%.200s' has no digest in the manifest",
                         o->tar.m[0].name);
    return 0;
}

int kimg_ova_open(struct kimg_file *file, struct kimg_ova **out)
{
    uint8_t head[OVA_BLOCK] __attribute__((aligned(64)));
    struct ova_tar first;
    uint64_t size;
    int ret = kimg_file_size(file, &size);
    if (ret < 0)
        return ret;
    if (size < OVA_BLOCK || kimg_file_pread(file, head, OVA_BLOCK, 0) < 0 ||
        !ova_tar_is_header(head)) {
        kimg_clear_error();
        return 1;
    }
    /* a tar: an OVA if its first member is an .ovf file (a broken start
     * or anything else is a plain tar, read as raw as before) */
    if (ova_tar_walk(file, size, true, &first) < 0) {
        kimg_clear_error();
        return 1;
    }
    bool ova = first.n == 1 && has_suffix(first.m[0].name, ".ovf");
    ova_tar_free(&first);
    if (!ova)
        return 1;

    struct kimg_ova *o = calloc(1, sizeof(*o));
    struct ova_ovf ovf = { 0 };
    char *desc = NULL;
    if (!o)
        return kimg_fail(-ENOMEM, "out of memory");
    ret = ova_tar_walk(file, size, false, &o->tar);
    if (ret == 0 && o->tar.n == 0)      /* the first walk found a member */
        ret = kimg_fail(-EINVAL, "the archive changed while it was read");
    if (ret == 0)
        ret = read_member(file, &o->tar.m[0], OVA_MAX_OVF_BYTES, "OVF descriptor", &desc);
    if (ret == 0)
        ret = ova_ovf_parse(desc, (size_t)o->tar.m[0].size, &ovf);
    if (ret == 0)
        ret = load_manifest(o, file);
    if (ret == 0)
        ret = match_disks(o, &ovf);
    free(desc);
    ova_ovf_free(&ovf);
    if (ret < 0) {
        kimg_ova_free(o);
        return ret;
    }
    *out = o;
    return 0;
}

void kimg_ova_free(struct kimg_ova *o)
{
    if (!o)
        return;
    ova_tar_free(&o->tar);
    ova_manifest_free(&o->mf);
    free(o);
}

unsigned kimg_ova_disk_count(const struct kimg_ova *o)
{
    return o->nb_disks;
}

const char *kimg_ova_disk(const struct kimg_ova *o, unsigned i, uint64_t *off,
                          uint64_t *size)
{
    const struct ova_member *m = &o->tar.m[o->disk[i - 1]];
    *off = m->offset;
    *size = m->size;
    return m->name;
}

int kimg_ova_verify(const struct kimg_ova *o, struct kimg_file *file, unsigned i)
{
    if (!o->has_mf)
        return 0;
    const struct ova_member *ovf = &o->tar.m[0], *disk = &o->tar.m[o->disk[i - 1]];
    int ret = ova_manifest_verify(file, ovf, ova_manifest_find(&o->mf, ovf->name));
    return ret < 0 ? ret : ova_manifest_verify(file, disk, ova_manifest_find(&o->mf, disk->name));
}
