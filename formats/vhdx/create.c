/*
 * create.c — `create -f vhdx` and `convert -O vhdx`: qemu-img 7.2's
 * options (subformat, block_size with its defaults by size, log_size,
 * block_state_zero), its checks and words, and the layout it writes: the
 * header section, an empty log at 1 MiB, the BAT after it, the metadata
 * region after the BAT, payload blocks from 5 MiB past the BAT's end.
 * The file identifier ("vhdxfile") is written last, after everything
 * else, so a failed create never leaves a file that probes as VHDX.
 */
#include <errno.h>
#include <stdlib.h>
#include <uuid/uuid.h>
#include "vhdx.h"

const struct kimg_optdesc vhdx_create_opts[] = {
    { "size", KIMG_OPT_SIZE, "Virtual disk size; max of 64TB." },
    { "log_size", KIMG_OPT_SIZE, "Log size; min 1MB." },
    { "block_size", KIMG_OPT_SIZE,
      "Block Size; min 1MB, max 256MB. 0 means auto-calculate based on image size." },
    { "subformat", KIMG_OPT_STRING,
      "VHDX format type, can be either 'dynamic' or 'fixed'. Default is 'dynamic'." },
    { "block_state_zero", KIMG_OPT_BOOL,
      "Force use of payload blocks of type 'ZERO'. Non-standard, but default.  Do not set "
      "to 'off' when using 'qemu-img convert' with subformat=dynamic." },
    { NULL, 0, NULL },
};

/* qemu-img's "Formatting ..." line for vhdx: its options in its order,
 * log_size and block_size always (with their defaults), then the file
 * protocol's when given. */
const struct kimg_shown_opt vhdx_formatting_opts[] = {
    { "size", NULL, true }, { "log_size", "1048576", true }, { "block_size", "0", true },
    { "subformat", NULL, false }, { "block_state_zero", NULL, false },
    { "nocow", NULL, false }, { "preallocation", NULL, false },
    { "extent_size_hint", NULL, true },
    { NULL, NULL, false },
};

#define TiB (1ull << 40)
#define GiB (1ull << 30)
#define META_ITEMS_OFF  (64u << 10)     /* the items follow the 64 KiB table */
#define DATA_GAP        (5 * VHDX_MIB)  /* BAT end to the first block (qemu) */
#define BAT_CHUNK       VHDX_MIB

void vhdx_new_guid(uint8_t out[16])
{
    uuid_t u;
    uuid_generate(u);
    memcpy(out, u, 16);
}

struct params {
    uint64_t size;
    uint64_t log_size;
    uint32_t block_size;
    bool fixed, zero_blocks;
};

/* qemu's vhdx_co_create_opts and vhdx_co_create, in their order: sizes
 * rounded up to whole MiB first (block_size capped at 256 MiB, 0 = by
 * size), then checked. */
static int parse_params(const struct kimg_create_args *a, struct params *p)
{
    const struct kimg_opts *o = a->opts;
    uint64_t u;
    int ret;

    const char *v = kimg_opts_get(o, "preallocation");
    if (v && strcmp(v, "off") && strcmp(v, "falloc") && strcmp(v, "full"))
        return kimg_fail(-EINVAL, "invalid parameter value: %s", v);
    v = kimg_opts_get(o, "subformat");
    if (!v || !strcmp(v, "dynamic"))
        p->fixed = false;
    else if (!strcmp(v, "fixed"))
        p->fixed = true;
    else
        return kimg_fail(-EINVAL, "Parameter 'subformat' does not accept value '%s'", v);
    if ((ret = kimg_opts_get_bool(o, "block_state_zero", true, &p->zero_blocks)) < 0)
        return ret;

    p->size = a->size;
    if (p->size > VHDX_MAX_SIZE)
        return kimg_fail(-EINVAL, "Image size too large; max of 64TB");

    if ((ret = kimg_opts_get_size(o, "log_size", VHDX_MIB, &u)) < 0)
        return ret;
    u = u > UINT64_MAX - (VHDX_MIB - 1) ? UINT64_MAX : (u + VHDX_MIB - 1) & ~(VHDX_MIB - 1);
    if (u > UINT32_MAX)
        return kimg_fail(-EINVAL, "Log size must be smaller than 4 GB");
    if (u < VHDX_MIB)
        return kimg_fail(-EINVAL, "Log size must be a multiple of 1 MB");
    p->log_size = u;

    if ((ret = kimg_opts_get_size(o, "block_size", 0, &u)) < 0)
        return ret;
    u = u > UINT64_MAX - (VHDX_MIB - 1) ? UINT64_MAX : (u + VHDX_MIB - 1) & ~(VHDX_MIB - 1);
    if (u > VHDX_BLOCK_MAX)
        u = VHDX_BLOCK_MAX;
    if (u == 0)
        u = p->size > 32 * TiB ? 64 * VHDX_MIB : p->size > 100 * GiB ? 32 * VHDX_MIB
          : p->size > GiB ? 16 * VHDX_MIB : 8 * VHDX_MIB;
    if (u & (u - 1))
        return kimg_fail(-EINVAL, "Block size must be a power of two");
    p->block_size = (uint32_t)u;
    return 0;
}

/* A header: sequence SEQ, the GUIDs given, an empty log at 1 MiB. */
static void build_header(uint8_t *h, uint64_t seq, const uint8_t *fw, const uint8_t *dw,
                         uint32_t log_size)
{
    memset(h, 0, VHDX_HEADER_SIZE);
    memcpy(h, "head", 4);
    vhdx_put64(h + VHDX_H_SEQUENCE, seq);
    memcpy(h + VHDX_H_FILE_WRITE_GUID, fw, 16);
    memcpy(h + VHDX_H_DATA_WRITE_GUID, dw, 16);
    vhdx_put16(h + 64, 0);              /* log version */
    vhdx_put16(h + 66, 1);              /* version */
    vhdx_put32(h + 68, log_size);
    vhdx_put64(h + 72, VHDX_HEADER_SECTION);
    vhdx_put32(h + VHDX_H_CHECKSUM, vhdx_crc(h, VHDX_HEADER_SIZE, VHDX_H_CHECKSUM));
}

/* The region table: the BAT and the metadata region, both marked
 * required (as Hyper-V writes them; qemu leaves the bit clear). */
static void build_regions(uint8_t *r, uint64_t bat_off, uint32_t bat_len, uint64_t meta_off)
{
    memset(r, 0, VHDX_RTABLE_SIZE);
    memcpy(r, "regi", 4);
    vhdx_put32(r + 8, 2);
    memcpy(r + 16, vhdx_bat_guid, 16);
    vhdx_put64(r + 32, bat_off);
    vhdx_put32(r + 40, bat_len);
    vhdx_put32(r + 44, 1);
    memcpy(r + 48, vhdx_metadata_guid, 16);
    vhdx_put64(r + 64, meta_off);
    vhdx_put32(r + 72, VHDX_MIB);
    vhdx_put32(r + 76, 1);
    vhdx_put32(r + 4, vhdx_crc(r, VHDX_RTABLE_SIZE, 4));
}

/* The metadata table and its five items (qemu's order, offsets, flags:
 * IsRequired on all, IsVirtualDisk on all but the file parameters;
 * 512-byte logical and physical sectors, as qemu-img writes). */
static void build_metadata(uint8_t *m, const struct params *p)
{
    static const uint32_t len[5] = { 8, 8, 16, 4, 4 };
    uint32_t off = META_ITEMS_OFF;
    memset(m, 0, META_ITEMS_OFF + 64);
    memcpy(m, "metadata", 8);
    vhdx_put16(m + 10, 5);
    for (unsigned i = 0; i < 5; i++) {
        uint8_t *e = m + 32 + 32 * i;
        memcpy(e, vhdx_item_guid(i), 16);
        vhdx_put32(e + 16, off);
        vhdx_put32(e + 20, len[i]);
        vhdx_put32(e + 24, i == VHDX_IT_PARAMS ? 4u : 6u);
        off += len[i];
    }
    uint8_t *it = m + META_ITEMS_OFF;
    vhdx_put32(it, p->block_size);
    vhdx_put32(it + 4, p->fixed ? 1u : 0u);     /* LeaveBlockAllocated */
    vhdx_put64(it + 8, p->size);
    vhdx_new_guid(it + 16);                     /* page 83 data */
    vhdx_put32(it + 32, 512);
    vhdx_put32(it + 36, 512);
}

/* The BAT, in 1 MiB pieces: fixed disks FULLY_PRESENT at qemu's places
 * (block B at DATA + B * block_size), or every block ZERO with
 * block_state_zero (qemu's default; offset 0, as Hyper-V requires);
 * dynamic disks without it are all NOT_PRESENT: nothing to write. */
static int write_bat(struct kimg_file *f, const struct params *p, uint64_t bat_off,
                     uint64_t entries, uint64_t chunk_ratio, uint64_t data)
{
    if (!p->fixed && !p->zero_blocks)
        return 0;
    uint8_t *buf = kimg_alloc_aligned(BAT_CHUNK);
    if (!buf)
        return -ENOMEM;
    int ret = 0;
    uint64_t blocks = (p->size + p->block_size - 1) / p->block_size;
    if (!blocks)
        entries = 0;
    for (uint64_t pos = 0; pos < entries && ret == 0; pos += BAT_CHUNK / 8) {
        uint64_t n = entries - pos < BAT_CHUNK / 8 ? entries - pos : BAT_CHUNK / 8;
        memset(buf, 0, n * 8);
        for (uint64_t k = 0; k < n; k++) {
            uint64_t i = pos + k;
            if ((i + 1) % (chunk_ratio + 1) == 0)
                continue;                       /* a sector bitmap entry */
            uint64_t b = i - i / (chunk_ratio + 1);
            if (b >= blocks)
                continue;
            uint64_t e = p->zero_blocks ? VHDX_PAYLOAD_ZERO
                       : (data + b * p->block_size) | VHDX_PAYLOAD_FULLY_PRESENT;
            vhdx_put64(buf + k * 8, e);
        }
        ret = kimg_file_pwrite(f, buf, (size_t)n * 8, bat_off + pos * 8);
    }
    free(buf);
    return ret;
}

static int write_layout(struct kimg_file *f, const struct params *p)
{
    uint64_t chunk_ratio = ((uint64_t)1 << 23) * 512 / p->block_size;
    uint64_t blocks = (p->size + p->block_size - 1) / p->block_size;
    /* (for a size of 0 qemu counts (uint32_t)-1 / chunk_ratio entries, an
     * unsigned underflow its open repeats: an image with a smaller BAT
     * region does not open in qemu) */
    uint64_t entries = blocks ? blocks + (blocks - 1) / chunk_ratio : UINT32_MAX / chunk_ratio;
    uint64_t bat_len = (entries * 8 + VHDX_MIB - 1) & ~(VHDX_MIB - 1);
    uint64_t bat_off = VHDX_HEADER_SECTION + p->log_size;
    uint64_t meta_off = bat_off + bat_len;
    uint64_t data = bat_off + bat_len + DATA_GAP;
    uint8_t *buf = kimg_alloc_aligned_zero(VHDX_RTABLE_SIZE + META_ITEMS_OFF + 64);
    uint8_t fw[16], dw[16];
    int ret;

    if (!buf)
        return -ENOMEM;
    /* the file's length first (fixed: every block's place), then the BAT,
     * metadata, region tables, headers, and the identifier last */
    ret = kimg_file_truncate(f, p->fixed ? data + p->size : data);
    if (ret == 0)
        ret = write_bat(f, p, bat_off, entries, chunk_ratio, data);
    if (ret == 0) {
        build_metadata(buf, p);
        ret = kimg_file_pwrite(f, buf, META_ITEMS_OFF + 64, meta_off);
    }
    if (ret == 0) {
        build_regions(buf, bat_off, (uint32_t)bat_len, meta_off);
        ret = kimg_file_pwrite(f, buf, VHDX_RTABLE_SIZE, VHDX_RTABLE1_OFFSET);
        if (ret == 0)
            ret = kimg_file_pwrite(f, buf, VHDX_RTABLE_SIZE, VHDX_RTABLE2_OFFSET);
    }
    if (ret == 0) {
        uint64_t seq;
        uuid_t r;
        uuid_generate_random(r);
        memcpy(&seq, r, sizeof(seq));
        seq = (seq >> 33) + 1;      /* random, with room to grow, as qemu's */
        vhdx_new_guid(fw);
        vhdx_new_guid(dw);
        build_header(buf, seq, fw, dw, (uint32_t)p->log_size);
        ret = kimg_file_pwrite(f, buf, VHDX_HEADER_SIZE, VHDX_HEADER1_OFFSET);
        if (ret == 0) {
            build_header(buf, seq + 1, fw, dw, (uint32_t)p->log_size);
            ret = kimg_file_pwrite(f, buf, VHDX_HEADER_SIZE, VHDX_HEADER2_OFFSET);
        }
    }
    if (ret == 0)
        ret = kimg_file_sync(f);
    if (ret == 0) {
        /* the file identifier: the signature and the creator (UTF-16) */
        static const char creator[] = "kimg";
        memset(buf, 0, 4096);
        memcpy(buf, "vhdxfile", 8);
        for (size_t i = 0; creator[i]; i++)
            buf[8 + 2 * i] = (uint8_t)creator[i];
        ret = kimg_file_pwrite(f, buf, 4096, 0);
    }
    if (ret == 0)
        ret = kimg_file_sync(f);
    free(buf);
    return ret;
}

int vhdx_create(const struct kimg_create_args *args)
{
    struct params p;
    struct kimg_file *f = NULL;
    int ret = parse_params(args, &p);
    if (ret < 0)
        return ret;
    ret = kimg_file_open(&f, args->filename, KIMG_FILE_RDWR | KIMG_FILE_CREATE | KIMG_FILE_TRUNC);
    if (ret < 0)
        return ret;
    ret = kimg_create_file_attrs(args->opts, f);
    if (ret == 0)
        ret = write_layout(f, &p);
    kimg_file_close(f);
    return ret;
}
