/*
 * children.c — an open layer's child nodes as QEMU 8.0's block graph has
 * them (kimg_get_children; qemu-img info's "children" from that version
 * on): the image file ("file"), and what the driver opened beside it
 * (aux_files: a qcow2's external "data-file", a VMDK descriptor's
 * "extents.N").  qemu keeps a node's children newest first, and a driver
 * attaches its image file before anything else, so the order is the
 * driver's files from last to first, then "file".
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kimg/driver.h"
#include "internal.h"

#define MAX_AUX 4096u           /* VMDK descriptors list at most this many
                                   extents (vmdk/descriptor.c caps them) */

static void fill(struct kimg_child_info *c, const char *name, struct kimg_file *f,
                 const char *filename)
{
    snprintf(c->name, sizeof(c->name), "%s", name);
    c->filename = filename;
    bool nbd = kimg_file_is_nbd(f), dev = !nbd && kimg_file_is_device(f);
    c->protocol = nbd ? "nbd" : dev ? "host_device" : "file";
    /* qemu's file driver alone reports format-specific data; the length
     * and allocation as its getlength and allocated-size give them */
    c->has_specific = !nbd && !dev;
    uint64_t len = 0;
    c->length = kimg_file_size(f, &len) == 0 ? len : 0;
    c->actual_size = nbd ? -1 : kimg_file_allocated(f);
    if (c->actual_size < 0)
        c->actual_size = -1;
    c->extent_size_hint = c->has_specific ? kimg_file_extent_size_hint(f) : 0;
}

int kimg_get_children(struct kimg *img, struct kimg_child_info **out)
{
    *out = NULL;
    struct kimg_aux_file *aux = NULL;
    size_t naux = 0;
    if (img->drv->aux_files) {
        aux = calloc(MAX_AUX, sizeof(*aux));
        if (!aux)
            return kimg_fail(-ENOMEM, "out of memory");
        naux = img->drv->aux_files(img, aux, MAX_AUX);
    }
    struct kimg_child_info *c = calloc(naux + 1, sizeof(*c));
    if (!c) {
        free(aux);
        return kimg_fail(-ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < naux; i++)
        fill(&c[i], aux[naux - 1 - i].name, aux[naux - 1 - i].file, aux[naux - 1 - i].path);
    /* the image file is named as the layer is, unless the layer shows a
     * json: name built from its open options: then by its own path */
    fill(&c[naux], "file", img->file, img->opts_name ? img->file->path : kimg_filename(img));
    free(aux);
    *out = c;
    return (int)(naux + 1);
}
