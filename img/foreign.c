/*
 * foreign.c — recognising image formats kimg does not implement (qcow
 * version 1, qed, parallels, ...) by their magic, so probing
 * never takes such an image for raw: a script would otherwise copy the
 * container's bytes as disk content.  `-f raw` still reads the bytes.
 * Also qemu-img 7.2's list of format names and which of them it cannot
 * measure, for the commands' messages (no format name is compared
 * outside formats/, the registry and this file).
 */
#include <errno.h>
#include <string.h>
#include "kimg.h"
#include "foreign.h"

struct magic {
    const char *format;
    size_t offset;
    const char *bytes;
    size_t len;
};

static const struct magic magics[] = {
    { "vmdk", 0, "KDMV", 4 },
    { "vmdk", 0, "# Disk DescriptorFile", 21 },
    { "qcow", 0, "QFI\xfb\0\0\0\1", 8 },   /* qcow version 1 */
    { "qed", 0, "QED\0", 4 },
    { "parallels", 0, "WithoutFreeSpace", 16 },
    { "parallels", 0, "WithouFreSpacExt", 16 },
    { "bochs", 0, "Bochs Virtual HD Image", 22 },
    { "cloop", 0, "#!/bin/sh\n#V2.0 Format", 22 },
    { "dmg", 0, "koly", 4 },            /* rarely at 0; usually a trailer */
};

const char *kimg_foreign_format(const uint8_t *buf, size_t len)
{
    for (size_t i = 0; i < sizeof(magics) / sizeof(magics[0]); i++) {
        const struct magic *m = &magics[i];
        if (m->offset + m->len <= len && !memcmp(buf + m->offset, m->bytes, m->len))
            return m->format;
    }
    return NULL;
}

/* qemu-img 7.2 checks -F against the format drivers it has (bdrv_find_format:
 * its "Supported formats" list). */
bool kimg_qemu_knows_format(const char *fmt)
{
    static const char *const known[] = {
        "blkdebug", "blklogwrites", "blkverify", "bochs", "cloop", "compress",
        "copy-before-write", "copy-on-read", "dmg", "file", "ftp", "ftps", "gluster",
        "host_cdrom", "host_device", "http", "https", "iscsi", "iser", "luks", "nbd",
        "nfs", "null-aio", "null-co", "nvme", "parallels", "preallocate", "qcow", "qcow2",
        "qed", "quorum", "raw", "rbd", "replication", "snapshot-access", "ssh",
        "throttle", "vdi", "vhdx", "vmdk", "vpc", "vvfat",
    };
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (!strcmp(fmt, known[i]))
            return true;
    return false;
}

int kimg_foreign_measure(const char *fmt)
{
    static const char *const no_measure[] = {
        "qcow", "qed", "vdi", "vhdx", "vmdk", "vpc", "parallels", "file",
    };
    static const char *const no_create[] = {
        "bochs", "cloop", "dmg", "vvfat", "blkdebug", "null-co", "null-aio",
    };
    for (size_t i = 0; i < sizeof(no_measure) / sizeof(no_measure[0]); i++)
        if (!strcmp(fmt, no_measure[i]))
            return kimg_fail(-ENOTSUP, "Block driver '%s' does not support size measurement",
                             fmt);
    for (size_t i = 0; i < sizeof(no_create) / sizeof(no_create[0]); i++)
        if (!strcmp(fmt, no_create[i]))
            return kimg_fail(-ENOTSUP, "Format driver '%s' does not support image creation",
                             fmt);
    return 0;
}
