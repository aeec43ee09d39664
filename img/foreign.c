/*
 * foreign.c — recognising image formats kimg does not implement (vmdk,
 * vdi, vhdx, qed, parallels, luks, ...) by their magic, so probing
 * never takes such an image for raw: a script would otherwise copy the
 * container's bytes as disk content.  `-f raw` still reads the bytes.
 */
#include <string.h>
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
    { "vdi", 0x40, "\x7f\x10\xda\xbe", 4 },
    { "vdi", 0, "<<< Oracle VM VirtualBox Disk Image >>>", 39 },
    { "vhdx", 0, "vhdxfile", 8 },
    { "qed", 0, "QED\0", 4 },
    { "parallels", 0, "WithoutFreeSpace", 16 },
    { "parallels", 0, "WithouFreSpacExt", 16 },
    { "luks", 0, "LUKS\xba\xbe", 6 },
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
