/*
 * create.c — new VMDK images as qemu-img 7.2 makes them: the options
 * (subformat, adapter_type, hwversion, toolsversion, compat6,
 * zeroed_grain, backing_file), qemu's refusals in its words, the
 * descriptor text (qemu's template: the ddb keys VMware reads) and the
 * files of each subformat (the sparse extent's empty layout: sparse.h).
 *
 * Files: monolithicSparse and streamOptimized are one sparse file with the
 * descriptor embedded at sector 1 (its extent line names the file by the
 * name it will have: args->final_name when the caller creates it under a
 * temporary name); monolithicFlat is a descriptor file NAME.vmdk plus
 * NAME-flat.vmdk; the twoGbMaxExtent* subformats are a descriptor plus
 * NAME-s001.vmdk (or -f001) ... of 2 GiB each; made by convert, these are
 * members of its output (kimg/output.h) and appear with the descriptor.
 * On failure every file this call made is removed (the core removes the
 * image file).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include "sparse.h"
#include "vmdk.h"
#include "kimg/output.h"

const struct kimg_optdesc vmdk_create_opts[] = {
    { "adapter_type", KIMG_OPT_STRING, "Virtual adapter type, can be one of ide (default), "
      "lsilogic, buslogic or legacyESX" },
    { "backing_file", KIMG_OPT_STRING, "File name of a base image" },
    { "backing_fmt", KIMG_OPT_STRING, "Must be 'vmdk' if present" },
    { "compat6", KIMG_OPT_BOOL, "VMDK version 6 image" },
    { "hwversion", KIMG_OPT_STRING, "VMDK hardware version" },
    { "size", KIMG_OPT_SIZE, "Virtual disk size" },
    { "subformat", KIMG_OPT_STRING, "VMDK flat extent format, can be one of "
      "{monolithicSparse (default) | monolithicFlat | twoGbMaxExtentSparse | "
      "twoGbMaxExtentFlat | streamOptimized} " },
    { "toolsversion", KIMG_OPT_STRING, "VMware guest tools version" },
    { "zeroed_grain", KIMG_OPT_BOOL,
      "Enable efficient zero writes using the zeroed-grain GTE feature" },
    { NULL, 0, NULL },
};

/* qemu-img's "Formatting" line for vmdk: these, in this order */
const struct kimg_shown_opt vmdk_formatting_opts[] = {
    { "size", NULL, true }, { "adapter_type", NULL, false },
    { "backing_file", NULL, false }, { "backing_fmt", NULL, false },
    { "compat6", "off", false }, { "hwversion", "undefined", false },
    { "toolsversion", NULL, false }, { "subformat", NULL, false },
    { "zeroed_grain", NULL, false }, { "nocow", NULL, false },
    { "preallocation", NULL, false }, { "extent_size_hint", NULL, true },
    { NULL, NULL, false },
};

enum subformat { MONO_SPARSE, MONO_FLAT, SPLIT_SPARSE, SPLIT_FLAT, STREAM };
static const char *const subformat_names[] = {
    "monolithicSparse", "monolithicFlat", "twoGbMaxExtentSparse", "twoGbMaxExtentFlat",
    "streamOptimized",
};
static const char *const adapter_names[] = { "ide", "buslogic", "lsilogic", "legacyESX" };

#define SPLIT_SIZE     0x80000000ull    /* twoGbMaxExtent*: 2 GiB per extent */
#define DESC_SECTORS   20u              /* the embedded descriptor's room */
#define GRAIN_SECTORS  128u             /* 64 KiB grains */
#define GTES           512u

struct vmdk_params {
    enum subformat sub;
    const char *adapter, *hw, *tools;
    bool zeroed;
    uint32_t parent_cid;
    char *parent_line;          /* parentFileNameHint="..." (no newline, as qemu) or "" */
};

static int pick(const char *v, const char *const *names, size_t n, int def)
{
    if (!v)
        return def;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v, names[i]))
            return (int)i;
    return kimg_fail(-EINVAL, "invalid parameter value: %s", v);
}

uint32_t vmdk_random_cid(void)
{
    uint32_t v = 0;
    if (getrandom(&v, sizeof(v), 0) != sizeof(v))
        v = (uint32_t)getpid() * 2654435761u;
    return v;
}

/* The sparse extent's empty layout as qemu's vmdk_init_extent lays it:
 * header, descriptor room (sectors 1..20), redundant GD and its GTs, GD
 * and its GTs, grains from the next grain boundary. */
static void vmdk_sparse_layout(uint64_t capacity, struct vmdk_layout *l)
{
    uint64_t sectors = capacity / VMDK_SECTOR;
    uint64_t grains = (sectors + GRAIN_SECTORS - 1) / GRAIN_SECTORS;
    l->gt_sectors = GTES * 4 / VMDK_SECTOR;
    l->gt_count = (grains + GTES - 1) / GTES;
    l->gd_sectors = (l->gt_count * 4 + VMDK_SECTOR - 1) / VMDK_SECTOR;
    l->rgd = 1 + DESC_SECTORS;
    l->gd = l->rgd + l->gd_sectors + l->gt_sectors * l->gt_count;
    uint64_t end = l->gd + l->gd_sectors + l->gt_sectors * l->gt_count;
    l->grain_off = (end + GRAIN_SECTORS - 1) / GRAIN_SECTORS * GRAIN_SECTORS;
}

static void put32(uint8_t *p, uint32_t v) { v = htole32(v); memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { v = htole64(v); memcpy(p, &v, 8); }

/* The KDMV header (512 bytes) for a sparse extent of CAPACITY bytes. */
static void vmdk_sparse_header(uint8_t *h, uint64_t capacity, bool compress, bool zeroed)
{
    struct vmdk_layout l;
    vmdk_sparse_layout(capacity, &l);
    memset(h, 0, VMDK_SECTOR);
    memcpy(h, "KDMV", 4);
    put32(h + 4, compress ? 3 : zeroed ? 2 : 1);
    put32(h + 8, 0x3u | (compress ? 0x30000u : 0) | (zeroed ? 0x4u : 0));
    put64(h + 12, capacity / VMDK_SECTOR);
    put64(h + 20, GRAIN_SECTORS);
    /* qemu gives every sparse extent the descriptor room, embedded
     * descriptor or not (split extents: sectors 1..20 stay empty) */
    put64(h + 28, 1);
    put64(h + 36, DESC_SECTORS);
    put32(h + 44, GTES);
    put64(h + 48, l.rgd);
    put64(h + 56, l.gd);
    put64(h + 64, l.grain_off);
    h[72] = 0;
    h[73] = '\n'; h[74] = ' '; h[75] = '\r'; h[76] = '\n';
    h[77] = compress ? 1 : 0;
}

/* Write an empty sparse extent of CAPACITY bytes into F. */
static int init_sparse(struct kimg_file *f, uint64_t capacity, bool compress, bool zeroed)
{
    struct vmdk_layout l;
    vmdk_sparse_layout(capacity, &l);
    uint8_t hdr[VMDK_SECTOR];
    vmdk_sparse_header(hdr, capacity, compress, zeroed);
    int ret = kimg_file_pwrite(f, hdr, sizeof(hdr), 0);
    if (ret == 0)
        ret = kimg_file_truncate(f, l.grain_off * VMDK_SECTOR);
    if (ret < 0 || !l.gt_count)
        return ret;
    size_t gdb = (size_t)l.gd_sectors * VMDK_SECTOR;
    uint8_t *gd = kimg_alloc_aligned_zero(gdb);
    if (!gd)
        return kimg_fail(-ENOMEM, "out of memory");
    uint64_t dirs[2] = { l.rgd, l.gd };
    for (int d = 0; d < 2 && ret == 0; d++) {
        for (uint64_t i = 0; i < l.gt_count; i++)
            put32(gd + 4 * i, (uint32_t)(dirs[d] + l.gd_sectors + i * l.gt_sectors));
        ret = kimg_file_pwrite(f, gd, gdb, dirs[d] * VMDK_SECTOR);
    }
    free(gd);
    return ret;
}

/* NAME's folder part ("" or "dir/"), stem and extension (".vmdk" or ""),
 * split as qemu's filename_decompose. */
static void decompose(const char *name, char **dir, char **stem, char **ext)
{
    const char *p = strrchr(name, '/');
    p = p ? p + 1 : name;
    const char *q = strrchr(p, '.');
    *dir = strndup(name, (size_t)(p - name));
    *stem = q ? strndup(p, (size_t)(q - p)) : strdup(p);
    *ext = strdup(q ? q : "");
}

/* Write the text TEXT at OFF of F from an aligned copy (file.c's rule). */
static int write_text(struct kimg_file *f, const char *text, uint64_t off)
{
    size_t n = strlen(text);
    char *b = kimg_alloc_aligned(n + 1);
    if (!b)
        return kimg_fail(-ENOMEM, "out of memory");
    memcpy(b, text, n);
    int ret = kimg_file_pwrite(f, b, n, off);
    free(b);
    return ret;
}

static int make_desc(const struct kimg_create_args *a, const struct vmdk_params *p,
                     const char *extent_lines, uint32_t cid, char **out)
{
    unsigned heads = strcmp(p->adapter, "ide") ? 255 : 16;
    char *s = NULL;
    int n = asprintf(&s,
        "# Disk DescriptorFile\nversion=1\nCID=%" PRIx32 "\nparentCID=%" PRIx32 "\n"
        "createType=\"%s\"\n%s\n# Extent description\n%s\n# The Disk Data Base\n#DDB\n\n"
        "ddb.virtualHWVersion = \"%s\"\nddb.geometry.cylinders = \"%" PRId64 "\"\n"
        "ddb.geometry.heads = \"%u\"\nddb.geometry.sectors = \"63\"\n"
        "ddb.adapterType = \"%s\"\nddb.toolsVersion = \"%s\"\n",
        cid, p->parent_cid, subformat_names[p->sub], p->parent_line, extent_lines, p->hw,
        (int64_t)(a->size / (63ull * heads * VMDK_SECTOR)), heads, p->adapter, p->tools);
    if (n < 0)
        return kimg_fail(-ENOMEM, "out of memory");
    *out = s;
    return 0;
}

static int parse_params(const struct kimg_create_args *a, struct vmdk_params *p)
{
    const struct kimg_opts *o = a->opts;
    bool compat6 = false;
    int ad = pick(kimg_opts_get(o, "adapter_type"), adapter_names, 4, 0);
    if (ad < 0)
        return ad;
    int sub = pick(kimg_opts_get(o, "subformat"), subformat_names, 5, MONO_SPARSE);
    if (sub < 0)
        return sub;
    int ret = kimg_opts_get_bool(o, "compat6", false, &compat6);
    if (ret == 0)
        ret = kimg_opts_get_bool(o, "zeroed_grain", false, &p->zeroed);
    if (ret < 0)
        return ret;
    if (a->backing_format && strcmp(a->backing_format, "vmdk"))
        return kimg_fail(-EINVAL, "backing_file must be a vmdk image");
    p->sub = (enum subformat)sub;
    p->adapter = adapter_names[ad];
    p->hw = kimg_opts_get(o, "hwversion");
    p->tools = kimg_opts_get(o, "toolsversion");
    if (compat6) {
        if (p->hw)
            return kimg_fail(-EINVAL, "compat6 cannot be enabled with hwversion set");
        p->hw = "6";
    }
    if (!p->hw)
        p->hw = "4";
    if (!p->tools)
        p->tools = "2147483647";
    bool flat = p->sub == MONO_FLAT || p->sub == SPLIT_FLAT;
    if (flat && a->backing_file)
        return kimg_fail(-ENOTSUP, "Flat image can't have backing file");
    if (flat && p->zeroed)
        return kimg_fail(-ENOTSUP, "Flat image can't enable zeroed grain");
    return 0;
}

/* The parent's CID (qemu: the backing file, resolved against the new
 * image, must open as a VMDK). */
static int parent_cid(const struct kimg_create_args *a, struct vmdk_params *p)
{
    p->parent_cid = 0xffffffffu;
    p->parent_line = strdup("");
    if (!p->parent_line)
        return -ENOMEM;
    if (!a->backing_file)
        return 0;
    char *path = kimg_path_relative_to(a->final_name ? a->final_name : a->filename,
                                       a->backing_file);
    if (!path)
        return -ENOMEM;
    struct kimg *b;
    int ret = kimg_open(&b, path, NULL, KIMG_OPEN_PATH | KIMG_OPEN_SHARE |
                        KIMG_OPEN_NO_BACKING | KIMG_OPEN_NO_IO);
    free(path);
    if (ret < 0)
        return ret;
    if (b->drv != &kimg_vmdk_driver) {
        ret = kimg_fail(-EINVAL, "Invalid backing file format: %s. Must be vmdk",
                        b->drv->name);
    } else {
        p->parent_cid = ((struct vmdk_state *)b->state)->cid;
    }
    kimg_close(b);
    if (ret < 0)
        return ret;
    free(p->parent_line);
    if (asprintf(&p->parent_line, "parentFileNameHint=\"%s\"", a->backing_file) < 0) {
        p->parent_line = NULL;
        return -ENOMEM;
    }
    return 0;
}

static int create_file(const char *path, const struct kimg_create_args *a,
                       struct kimg_file **out)
{
    int ret = kimg_file_open(out, path, KIMG_FILE_RDWR | KIMG_FILE_CREATE | KIMG_FILE_TRUNC);
    if (ret < 0)
        return kimg_fail(ret, "Could not create '%s': %s", path, strerror(-ret));
    return kimg_create_file_attrs(a->opts, *out);
}

/* monolithicSparse / streamOptimized: one file, the descriptor inside. */
static int create_monolithic(const struct kimg_create_args *a, struct vmdk_params *p)
{
    const char *name = a->final_name ? a->final_name : a->filename;
    const char *base = strrchr(name, '/') ? strrchr(name, '/') + 1 : name;
    char *line = NULL, *desc = NULL;
    struct kimg_file *f = NULL;
    int ret = asprintf(&line, "RW %" PRIu64 " SPARSE \"%s\"\n", a->size / VMDK_SECTOR, base);
    if (ret < 0)
        return kimg_fail(-ENOMEM, "out of memory");
    ret = make_desc(a, p, line, vmdk_random_cid(), &desc);
    if (ret == 0 && strlen(desc) >= DESC_SECTORS * VMDK_SECTOR)
        ret = kimg_fail(-EINVAL, "the descriptor does not fit in the %u bytes a "
                        "sparse VMDK holds for it", DESC_SECTORS * VMDK_SECTOR);
    if (ret == 0)
        ret = create_file(a->filename, a, &f);
    if (ret == 0)
        ret = init_sparse(f, a->size, p->sub == STREAM, p->zeroed);
    if (ret == 0)
        ret = write_text(f, desc, VMDK_SECTOR);
    if (ret == 0)
        ret = kimg_file_sync(f);
    if (f)
        kimg_file_close(f);
    free(line);
    free(desc);
    return ret;
}

/* One extent file of a flat or split image, N bytes of guest data. */
static int create_extent_file(const struct kimg_create_args *a, const char *path,
                              uint64_t n, bool flat, bool zeroed)
{
    struct kimg_file *f = NULL;
    int ret = create_file(path, a, &f);
    if (ret == 0)
        ret = flat ? kimg_file_truncate(f, n) : init_sparse(f, n, false, zeroed);
    if (ret == 0)
        ret = kimg_file_sync(f);
    if (f)
        kimg_file_close(f);
    return ret;
}

/* Flat and split: the extent files, then the descriptor file naming them.
 * Made under their own names (kimg create), or, when the caller makes
 * the image under a temporary name (convert), as members of that output
 * (kimg/output.h): each extent under a temporary name of its own,
 * renamed into place with the descriptor, which comes last.  On failure
 * every extent file made under its own name is removed (members: by the
 * caller's abort). */
static int create_extents(const struct kimg_create_args *a, struct vmdk_params *p)
{
    bool flat = p->sub == MONO_FLAT || p->sub == SPLIT_FLAT;
    bool split = p->sub == SPLIT_SPARSE || p->sub == SPLIT_FLAT;
    bool members = a->final_name && strcmp(a->final_name, a->filename);
    char *dir, *stem, *ext, *lines = strdup(""), *desc = NULL;
    decompose(members ? a->final_name : a->filename, &dir, &stem, &ext);
    uint64_t nfiles = split ? (a->size + SPLIT_SIZE - 1) / SPLIT_SIZE : 1;
    char **made = calloc(nfiles + 1, sizeof(*made));
    int ret = dir && stem && ext && lines && made ? 0 : kimg_fail(-ENOMEM, "out of memory");
    unsigned idx = 1;
    for (uint64_t done = 0; ret == 0 && done < a->size; idx++) {
        uint64_t n = split && a->size - done > SPLIT_SIZE ? SPLIT_SIZE : a->size - done;
        char *rel = NULL, *path = NULL, *nl = NULL, *tmp = NULL;
        if ((split ? asprintf(&rel, "%s-%c%03u%s", stem, flat ? 'f' : 's', idx, ext)
                   : asprintf(&rel, "%s-flat%s", stem, ext)) < 0 ||
            asprintf(&path, "%s%s", dir, rel) < 0 ||
            asprintf(&nl, "%sRW %" PRIu64 " %s \"%s\"%s\n", lines, n / VMDK_SECTOR,
                     flat ? "FLAT" : "SPARSE", rel, flat ? " 0" : "") < 0) {
            ret = kimg_fail(-ENOMEM, "out of memory");
            free(path);
        } else {
            free(lines);
            lines = nl;
            nl = NULL;
            if (members) {
                ret = kimg_output_add_member(a->filename, path, rel, &tmp);
                if (ret == -ENOENT)
                    ret = kimg_fail(-ENOTSUP, "kimg cannot make a %s VMDK under a temporary "
                                    "name here (its files could not appear together); "
                                    "create it with 'kimg create' first",
                                    subformat_names[p->sub]);
                free(path);
            } else {
                made[idx - 1] = path;
            }
            if (ret == 0)
                ret = create_extent_file(a, members ? tmp : path, n, flat, p->zeroed);
        }
        free(tmp);
        free(nl);
        free(rel);
        done += n;
    }
    if (ret == 0)
        ret = make_desc(a, p, lines, vmdk_random_cid(), &desc);
    struct kimg_file *f = NULL;
    if (ret == 0)
        ret = create_file(a->filename, a, &f);
    if (ret == 0)
        ret = write_text(f, desc, 0);
    if (ret == 0)
        ret = kimg_file_sync(f);
    if (f)
        kimg_file_close(f);
    for (uint64_t i = 0; made && i < nfiles; i++) {
        if (ret < 0 && made[i])
            unlink(made[i]);
        free(made[i]);
    }
    free(made);
    free(dir);
    free(stem);
    free(ext);
    free(lines);
    free(desc);
    return ret;
}

int vmdk_create(const struct kimg_create_args *a)
{
    struct vmdk_params p = { 0 };
    int ret = parse_params(a, &p);
    if (ret == 0)
        ret = parent_cid(a, &p);
    if (ret == 0 && (a->size > VMDK_MAX_SECTORS * VMDK_SECTOR))
        ret = kimg_fail(-EFBIG, "VMDK images are at most %llu bytes",
                        (unsigned long long)(VMDK_MAX_SECTORS * VMDK_SECTOR));
    /* never make what kimg cannot open (qemu-img makes both): a sparse
     * extent over VMDK_MAX_CAPACITY, more split files than a descriptor
     * may list */
    bool split = p.sub == SPLIT_SPARSE || p.sub == SPLIT_FLAT;
    if (ret == 0 && (p.sub == MONO_SPARSE || p.sub == STREAM) && a->size > VMDK_MAX_CAPACITY)
        ret = kimg_fail(-EFBIG, "a sparse VMDK of %llu bytes is larger than kimg's limit "
                        "of %llu bytes (64 TiB)", (unsigned long long)a->size,
                        (unsigned long long)VMDK_MAX_CAPACITY);
    if (ret == 0 && split && a->size > VMDK_MAX_EXTENTS * SPLIT_SIZE)
        ret = kimg_fail(-EFBIG, "a %s VMDK of %llu bytes needs more than %u extent files, "
                        "kimg's limit (disks up to %llu bytes)",
                        p.sub == SPLIT_SPARSE ? "twoGbMaxExtentSparse" : "twoGbMaxExtentFlat",
                        (unsigned long long)a->size, VMDK_MAX_EXTENTS,
                        (unsigned long long)(VMDK_MAX_EXTENTS * SPLIT_SIZE));
    if (ret == 0)
        ret = p.sub == MONO_SPARSE || p.sub == STREAM ? create_monolithic(a, &p)
                                                      : create_extents(a, &p);
    free(p.parent_line);
    if (ret == -ENOMEM)
        kimg_error("out of memory");
    return ret;
}

/* the driver table's create member (vmdk.c) */
int vmdk_create(const struct kimg_create_args *a);
