/*
 * lock.h — QEMU-compatible image locking: OFD byte-range locks at offsets
 * 100+i ("I hold permission i") and 200+i ("I do not share permission i"),
 * so kimg and a running QEMU never write one image at the same time.
 */
#ifndef KIMG_LOCK_H
#define KIMG_LOCK_H

#include <stdbool.h>

struct kimg;

/* Lock img->file for img->writable access; fails with QEMU's message when
 * another process holds a conflicting lock.  No-op for non-POSIX files. */
int kimg_lock_acquire(struct kimg *img);
void kimg_lock_release(struct kimg *img);
/* The same on a bare descriptor (create over an existing file); the locks
 * last as long as that descriptor stays open. */
int kimg_lock_fd(int fd, bool writable, const char *filename);
/* Lock F, a file IMG names (a VMDK extent, an external data file), as
 * IMG's own file is locked, never sharing writes: when IMG is writable,
 * or read-only with KIMG_OPEN_NO_WRITERS (convert's sources: qemu-img
 * convert of a flat VMDK whose extent a running guest writes fails, its
 * info, check, map, compare and dd do not); never when IMG takes no
 * locks (-U, KIMG_OPEN_NO_LOCK). */
int kimg_lock_named(struct kimg *img, struct kimg_file *f);

#endif
