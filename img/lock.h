/*
 * lock.h — QEMU-compatible image locking: OFD byte-range locks at offsets
 * 100+i ("I hold permission i") and 200+i ("I do not share permission i"),
 * so kimg and a running QEMU never write one image at the same time.
 */
#ifndef KIMG_LOCK_H
#define KIMG_LOCK_H

struct kimg;

/* Lock img->file for img->writable access; fails with QEMU's message when
 * another process holds a conflicting lock.  No-op for non-POSIX files. */
int kimg_lock_acquire(struct kimg *img);
void kimg_lock_release(struct kimg *img);

#endif
