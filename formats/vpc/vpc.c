/*
 * vpc.c — the VHD driver table (qemu's format name "vpc"): probing (the
 * footer copy at 0 of a dynamic disk, the footer at the end of a fixed
 * one), open (which footer counts, disk types: differencing refused),
 * close and info; create in create.c, writes in write.c.  No check
 * callback: `kimg check` exits 63 as qemu-img does for vpc.
 */
#include <errno.h>
#include <stdlib.h>
#include "vpc.h"

static int vpc_probe(const uint8_t *buf, size_t len, const char *filename)
{
    return vpc_has_cookie(buf, len) ? 100 : 0;
}

/* a fixed VHD is its data followed by the footer: its only signature is
 * at the end (qemu-img 7.2 probes it as raw and reads the footer as guest
 * data) */
static int vpc_probe_tail(const uint8_t *tail, size_t len, const char *filename)
{
    return vpc_has_cookie(tail, len) ? 100 : 0;
}

static int refuse_type(uint32_t type)
{
    if (type == VPC_TYPE_DIFF)
        return kimg_fail(-ENOTSUP, "differencing VHDs are not supported (the image needs "
                         "its parent disk to be read)");
    return kimg_fail(-ENOTSUP, "unsupported VHD disk type %u", type);
}

static int open_fixed(struct kimg *img, const struct vpc_footer *f)
{
    struct vpc_state *s = img->state;
    uint64_t data = s->file_size - VPC_FOOTER_SIZE;
    int ret = vpc_virtual_size(f, &img->size);
    if (ret < 0)
        return ret;
    /* qemu would read the footer and zeros past the end as guest data */
    if (img->size > data)
        return kimg_fail(-EINVAL, "fixed VHD of %llu bytes holds only %llu bytes of data: "
                         "the image has been truncated", (unsigned long long)img->size,
                         (unsigned long long)data);
    s->type = VPC_TYPE_FIXED;
    return 0;
}

static int open_dynamic(struct kimg *img, const struct vpc_footer *f)
{
    struct vpc_state *s = img->state;
    uint8_t buf[VPC_DYN_HEADER_SIZE] __attribute__((aligned(64)));
    struct vpc_dyn_header h;
    uint64_t end;
    int ret;

    if (f->data_offset < VPC_FOOTER_SIZE ||
        __builtin_add_overflow(f->data_offset, VPC_DYN_HEADER_SIZE, &end) ||
        end > s->file_size)
        return kimg_fail(-EINVAL, "dynamic disk header offset %llu lies outside the file "
                         "(%llu bytes)", (unsigned long long)f->data_offset,
                         (unsigned long long)s->file_size);
    if ((ret = kimg_file_pread(img->file, buf, sizeof(buf), f->data_offset)) < 0 ||
        (ret = vpc_parse_dyn_header(buf, &h)) < 0 ||
        (ret = vpc_virtual_size(f, &img->size)) < 0)
        return ret;
    s->type = VPC_TYPE_DYNAMIC;
    ret = vpc_load_bat(img, f->data_offset, &h);
    if (ret == 0 && img->writable)
        ret = vpc_prepare_writes(img, f->data_offset, &h);
    if (ret < 0) {
        free(s->bat);
        s->bat = NULL;
    }
    return ret;
}

/*
 * Which footer counts, as qemu: the copy at offset 0 when there is one (a
 * dynamic disk), else the footer in the last 512 bytes, which must be a
 * fixed disk's.  A copy at 0 that says "fixed" is guest data of a fixed
 * disk (a VHD stored in a VHD), so the end decides then.
 */
static int vpc_open(struct kimg *img)
{
    struct vpc_state *s = img->state;
    uint8_t buf[VPC_FOOTER_SIZE] __attribute__((aligned(64)));
    struct vpc_footer f;
    int ret;

    if ((ret = kimg_file_size(img->file, &s->file_size)) < 0)
        return ret;
    if (s->file_size < VPC_FOOTER_SIZE)
        return kimg_fail(-EINVAL, "File too small for a VHD header");
    if ((ret = kimg_file_pread(img->file, buf, sizeof(buf), 0)) < 0)
        return ret;
    if (vpc_has_cookie(buf, sizeof(buf))) {
        if ((ret = vpc_parse_footer(buf, &f)) < 0)
            return ret;
        if (f.type == VPC_TYPE_DYNAMIC) {
            /* the block is the allocation unit (kimg_cluster_size),
             * except for writing: a write of part of a new block leaves
             * the rest a hole, so the copy engine may skip zero runs of
             * any size there, as qemu-img's does */
            if ((ret = open_dynamic(img, &f)) == 0 && !img->writable)
                img->cluster_size = s->block_size;
            return ret;
        }
        if (f.type != VPC_TYPE_FIXED)
            return refuse_type(f.type);
    }
    if ((ret = kimg_file_pread(img->file, buf, sizeof(buf),
                               s->file_size - VPC_FOOTER_SIZE)) < 0 ||
        (ret = vpc_parse_footer(buf, &f)) < 0)
        return ret;
    if (f.type == VPC_TYPE_DYNAMIC)
        return kimg_fail(-EINVAL, "invalid VPC image: a dynamic disk's footer at the end, "
                         "but no copy of it at offset 0");
    if (f.type != VPC_TYPE_FIXED)
        return refuse_type(f.type);
    return open_fixed(img, &f);
}

static void vpc_close(struct kimg *img)
{
    struct vpc_state *s = img->state;
    free(s->bat);
    s->bat = NULL;
    if (s->lock_init)
        pthread_mutex_destroy(&s->lock);
    s->lock_init = false;
}

/* qemu-img shows a dynamic disk's block size as its cluster size, and
 * nothing format-specific */
static int vpc_info(struct kimg *img, struct kimg_info *info)
{
    struct vpc_state *s = img->state;
    if (s->type == VPC_TYPE_DYNAMIC)
        info->cluster_size = s->block_size;
    return 0;
}

const struct kimg_driver kimg_vpc_driver = {
    .name = "vpc",
    .state_size = sizeof(struct vpc_state),
    .create_opts = vpc_create_opts,
    .probe = vpc_probe,
    .open = vpc_open,
    .close = vpc_close,
    .create = vpc_create,
    .read = vpc_read,
    .write = vpc_write,
    .write_zeroes = vpc_write_zeroes,
    .flush = vpc_flush,
    .block_status = vpc_block_status,
    .info = vpc_info,
    .alloc_data = vpc_alloc_data,
    .commit_data = vpc_commit_data,
    .formatting_opts = vpc_formatting_opts,
    .probe_tail = vpc_probe_tail,
};
