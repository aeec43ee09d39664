/*
 * archive.h — archives of disk images as the core sees them: an OVA (a
 * tar with an OVF descriptor first, formats/ova/).  The core asks while
 * probing a file the user named; the chosen disk member is then read in
 * place through a window file (kimg/file.h) as an image of its own.
 */
#ifndef KIMG_ARCHIVE_H
#define KIMG_ARCHIVE_H

#include <stdint.h>
#include "kimg/file.h"

struct kimg_ova;

/* Whether FILE is an OVA and, if so, its layout: 1 when it is not one
 * (no tar header at its start, or a first member that is not an .ovf
 * descriptor: probing goes on); 0 with *OUT when it is one and its tar
 * walk, descriptor and manifest passed every check; -errno with
 * kimg_error() when it is an OVA kimg refuses.  Reads headers, the
 * descriptor and the manifest only. */
int kimg_ova_open(struct kimg_file *file, struct kimg_ova **out);
void kimg_ova_free(struct kimg_ova *o);
/* The number of disks the descriptor lists (>= 1), in its DiskSection's
 * order. */
unsigned kimg_ova_disk_count(const struct kimg_ova *o);
/* Disk I (1-based, <= the count): its member's name, data offset and size
 * in the archive. */
const char *kimg_ova_disk(const struct kimg_ova *o, unsigned i, uint64_t *off,
                          uint64_t *size);
/* With a manifest: check the descriptor's digest and disk I's against
 * it, reading both members whole (-EINVAL with a message naming the
 * member when one differs); without one: 0. */
int kimg_ova_verify(const struct kimg_ova *o, struct kimg_file *file, unsigned i);

#endif
