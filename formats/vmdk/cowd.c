/*
 * cowd.c — the header of a vmfsSparse ("COWD") extent, ESX's redo log:
 * 2048 bytes of u32 fields (magic, version 1, flags, numSectors,
 * grainSize, gdOffset, numGDEntries, freeSector, then geometry or the
 * parent's name, which the descriptor gives anyway).  Grain tables have
 * 4096 entries, no zeroed grains; sparse.c does the rest.  The flags
 * (ESX sets 3) describe the redo log's state, not the layout: not read,
 * as qemu.
 */
#include <errno.h>
#include "sparse.h"

#define C_VERSION     4
#define C_FLAGS       8
#define C_SECTORS     12
#define C_GRAIN       16
#define C_GD          20
#define C_GD_ENTRIES  24
#define COWD_HDR_SIZE 2048u

int vmdk_cowd_decode(const uint8_t *b, size_t len, struct vmdk_sparse_hdr *h)
{
    if (len < COWD_HDR_SIZE)
        return kimg_fail(-EINVAL, "COWD header is truncated");
    memset(h, 0, sizeof(*h));
    h->version = vmdk_le32(b + C_VERSION);
    h->flags = vmdk_le32(b + C_FLAGS);
    h->capacity = vmdk_le32(b + C_SECTORS);
    h->grain_sectors = vmdk_le32(b + C_GRAIN);
    h->gd_off = vmdk_le32(b + C_GD);
    h->gd_entries = vmdk_le32(b + C_GD_ENTRIES);
    h->gtes = VMDK_COWD_GTES;
    if (h->version != 1)
        return kimg_fail(-ENOTSUP, "unsupported COWD version %u", h->version);
    return 0;
}
