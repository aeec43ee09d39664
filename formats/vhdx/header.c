/*
 * header.c — a VHDX file's header section: the file identifier, the two
 * headers (the current one chosen by sequence number, CRC-32C checked)
 * and the region table that places the BAT and the metadata region.
 * Field offsets from [MS-VHDX] 2.2.
 */
#include <errno.h>
#include <isa-l/crc.h>
#include <stdlib.h>
#include "vhdx.h"

/* header */
#define H_SIGNATURE     0
#define H_CHECKSUM      4
#define H_SEQUENCE      8
#define H_LOG_GUID      48
#define H_LOG_VERSION   64
#define H_VERSION       66
#define H_LOG_LENGTH    68
#define H_LOG_OFFSET    72
/* region table */
#define R_SIGNATURE     0
#define R_CHECKSUM      4
#define R_COUNT         8
#define R_ENTRIES       16
#define R_ENTRY_SIZE    32
#define RE_OFFSET       16
#define RE_LENGTH       24
#define RE_FLAGS        28
#define RE_REQUIRED     1u

const uint8_t vhdx_bat_guid[16] = {
    0x66, 0x77, 0xc2, 0x2d, 0x23, 0xf6, 0x00, 0x42,
    0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08,
};
const uint8_t vhdx_metadata_guid[16] = {
    0x06, 0xa2, 0x7c, 0x8b, 0x90, 0x47, 0x9a, 0x4b,
    0xb8, 0xfe, 0x57, 0x5f, 0x05, 0x0f, 0x88, 0x6e,
};

/* isa-l's crc32_iscsi takes the running value without the final
 * inversion: start at ~0 and invert the result (checked against headers
 * qemu-img wrote, tests/cli/710-vhdx-info.t) */
uint32_t vhdx_crc(const uint8_t *buf, size_t len, size_t csum_off)
{
    static const uint8_t zero[4];
    uint32_t crc = crc32_iscsi((unsigned char *)buf, (int)csum_off, 0xffffffffu);
    crc = crc32_iscsi((unsigned char *)zero, 4, crc);
    crc = crc32_iscsi((unsigned char *)buf + csum_off + 4, (int)(len - csum_off - 4), crc);
    return ~crc;
}

bool vhdx_has_signature(const uint8_t *buf, size_t len)
{
    return len >= 8 && !memcmp(buf, "vhdxfile", 8);
}

struct hdr {
    bool valid;
    uint64_t seq;
    uint8_t raw[H_LOG_OFFSET + 8];      /* the fields, for the equality test */
};

static int read_header(struct kimg *img, uint64_t off, struct hdr *h)
{
    uint8_t *buf = kimg_alloc_aligned(VHDX_HEADER_SIZE);
    if (!buf)
        return -ENOMEM;
    int ret = kimg_file_pread(img->file, buf, VHDX_HEADER_SIZE, off);
    if (ret == 0) {
        memcpy(h->raw, buf, sizeof(h->raw));
        h->valid = !memcmp(buf + H_SIGNATURE, "head", 4) &&
                   vhdx_crc(buf, VHDX_HEADER_SIZE, H_CHECKSUM) == vhdx_le32(buf + H_CHECKSUM) &&
                   vhdx_le16(buf + H_VERSION) == 1;
        h->seq = vhdx_le64(buf + H_SEQUENCE);
    }
    free(buf);
    return ret;
}

int vhdx_open_headers(struct kimg *img)
{
    struct vhdx_state *s = img->state;
    struct hdr h[2];
    int ret, cur;

    if ((ret = read_header(img, VHDX_HEADER1_OFFSET, &h[0])) < 0 ||
        (ret = read_header(img, VHDX_HEADER2_OFFSET, &h[1])) < 0)
        return ret;
    if (h[0].valid && h[1].valid) {
        /* equal sequence numbers: only identical headers (Disk2VHD writes
         * two such) are not a contradiction */
        if (h[0].seq == h[1].seq && memcmp(h[0].raw, h[1].raw, sizeof(h[0].raw)))
            return kimg_fail(-EINVAL, "No valid VHDX header found: both headers have "
                             "sequence number %llu but differ", (unsigned long long)h[0].seq);
        cur = h[1].seq > h[0].seq;
    } else if (h[0].valid || h[1].valid) {
        cur = h[1].valid;
    } else {
        return kimg_fail(-EINVAL, "No valid VHDX header found");
    }

    s->cur_header = cur;
    s->hdr_seq = h[cur].seq;
    const uint8_t *b = h[cur].raw;
    memcpy(s->log_guid, b + H_LOG_GUID, 16);
    s->log_length = vhdx_le32(b + H_LOG_LENGTH);
    s->log_offset = vhdx_le64(b + H_LOG_OFFSET);
    uint16_t log_version = vhdx_le16(b + H_LOG_VERSION);
    if (log_version != 0)
        return kimg_fail(-ENOTSUP, "unsupported VHDX log version %u", log_version);
    if (s->log_length % VHDX_MIB || s->log_offset % VHDX_MIB ||
        (s->log_length && s->log_offset < VHDX_HEADER_SECTION))
        return kimg_fail(-EINVAL, "VHDX log at offset %llu (%u bytes) is not placed on "
                         "1 MiB boundaries after the header section",
                         (unsigned long long)s->log_offset, s->log_length);
    if (s->log_length && (s->log_offset > s->file_size ||
                          s->file_size - s->log_offset < s->log_length))
        return kimg_fail(-EINVAL, "VHDX log at offset %llu (%u bytes) lies past the end of "
                         "the file (%llu bytes)", (unsigned long long)s->log_offset,
                         s->log_length, (unsigned long long)s->file_size);
    return 0;
}

/* One region table copy: -EILSEQ (no message) when its signature or
 * checksum is bad, so that the other copy can be tried. */
static int parse_regions(struct kimg *img, const uint8_t *buf)
{
    struct vhdx_state *s = img->state;
    struct { uint64_t start, end; } seen[VHDX_MAX_ENTRIES];
    bool have_bat = false, have_meta = false;

    if (memcmp(buf + R_SIGNATURE, "regi", 4) ||
        vhdx_crc(buf, VHDX_RTABLE_SIZE, R_CHECKSUM) != vhdx_le32(buf + R_CHECKSUM))
        return -EILSEQ;
    uint32_t n = vhdx_le32(buf + R_COUNT);
    if (n > VHDX_MAX_ENTRIES)
        return kimg_fail(-EINVAL, "VHDX region table has %u entries (at most %u)", n,
                         VHDX_MAX_ENTRIES);
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *e = buf + R_ENTRIES + (size_t)i * R_ENTRY_SIZE;
        uint64_t off = vhdx_le64(e + RE_OFFSET);
        uint32_t len = vhdx_le32(e + RE_LENGTH);
        uint32_t flags = vhdx_le32(e + RE_FLAGS);
        bool is_bat = !memcmp(e, vhdx_bat_guid, 16), is_meta = !memcmp(e, vhdx_metadata_guid, 16);

        if (off % VHDX_MIB || len % VHDX_MIB || len == 0 || off < VHDX_HEADER_SECTION)
            return kimg_fail(-EINVAL, "VHDX region %u at offset %llu (%u bytes) is not "
                             "placed on 1 MiB boundaries after the header section", i,
                             (unsigned long long)off, len);
        if (off > s->eff_size || s->eff_size - off < len)
            return kimg_fail(-EINVAL, "VHDX region %u at offset %llu (%u bytes) lies past "
                             "the end of the file (%llu bytes)", i, (unsigned long long)off,
                             len, (unsigned long long)s->eff_size);
        if (s->log_length &&
            vhdx_ranges_overlap(off, off + len, s->log_offset, s->log_offset + s->log_length))
            return kimg_fail(-EINVAL, "VHDX region %u at offset %llu overlaps the log", i,
                             (unsigned long long)off);
        for (uint32_t k = 0; k < i; k++)
            if (vhdx_ranges_overlap(off, off + len, seen[k].start, seen[k].end))
                return kimg_fail(-EINVAL, "VHDX regions %u and %u overlap", k, i);
        seen[i].start = off;
        seen[i].end = off + len;
        if ((is_bat && have_bat) || (is_meta && have_meta))
            return kimg_fail(-EINVAL, "VHDX region table names the %s region twice",
                             is_bat ? "BAT" : "metadata");
        if (is_bat) {
            have_bat = true;
            s->bat_offset = off;
            s->bat_length = len;
        } else if (is_meta) {
            have_meta = true;
            s->meta_offset = off;
            s->meta_length = len;
        } else if (flags & RE_REQUIRED) {
            /* the specification: an implementation must not open a file
             * with a required region it does not know */
            return kimg_fail(-ENOTSUP, "VHDX region %u has an unknown type and is marked "
                             "required: kimg cannot read this image", i);
        }
    }
    if (!have_bat || !have_meta)
        return kimg_fail(-EINVAL, "VHDX region table has no %s region",
                         have_bat ? "metadata" : "BAT");
    return 0;
}

int vhdx_open_regions(struct kimg *img)
{
    uint8_t *buf = kimg_alloc_aligned(VHDX_RTABLE_SIZE);
    int ret;

    if (!buf)
        return -ENOMEM;
    ret = vhdx_pread(img, buf, VHDX_RTABLE_SIZE, VHDX_RTABLE1_OFFSET);
    if (ret == 0)
        ret = parse_regions(img, buf);
    /* the copy at 256 KiB exists for a damaged first one (qemu reads the
     * first only) */
    if (ret == -EILSEQ) {
        ret = vhdx_pread(img, buf, VHDX_RTABLE_SIZE, VHDX_RTABLE2_OFFSET);
        if (ret == 0)
            ret = parse_regions(img, buf);
        if (ret == -EILSEQ)
            ret = kimg_fail(-EINVAL, "no valid VHDX region table: both copies have a bad "
                            "signature or checksum");
    }
    free(buf);
    return ret;
}
