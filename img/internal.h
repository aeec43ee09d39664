/*
 * internal.h — what the library's own files (img/, formats/) share beyond
 * the public API (include/kimg.h) and the implementor API (kimg/driver.h):
 * the engines' doors into a driver's write path, and the layouts of
 * structs that are opaque to library users.  Never installed; cmd/ and
 * clone/ cannot include it (they compile with -Iinclude alone).  Smaller
 * internal modules keep their own headers here in img/ (pool.h, srcmap.h,
 * aio.h, lock.h, tunables.h, crash.h, foreign.h, convert_steps.h).
 */
#ifndef KIMG_INTERNAL_H
#define KIMG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "kimg.h"

/* ---- the engines' doors (img/image.c), each checked once there -------- */

/* Compressed clusters in two steps (driver.h's compress_cluster and
 * write_compressed_data): compress on any thread, then store.
 * kimg_compress_cluster returns the compressed length, -ENOSPC (store
 * plainly), or -ENOTSUP (the format or this cluster has no split path). */
int64_t kimg_compress_cluster(struct kimg *img, uint64_t off, const void *buf,
                              uint64_t len, void *dst, size_t cap);
int kimg_write_compressed_data(struct kimg *img, uint64_t off, uint64_t len,
                               const void *cdata, size_t clen);

/* The image takes parallel data writes (kimg_alloc_data, kimg_commit_data). */
bool kimg_can_alloc_data(const struct kimg *img);
/* Parallel data writes (the copy engine; driver.h's alloc_data and
 * commit_data state the contract): kimg_alloc_data gives guest range
 * [off, off+len) new host space at *HOST in *FILE and returns the bytes
 * mapped (0: write that range with kimg_write instead, as for every image
 * without kimg_can_alloc_data); kimg_commit_data links the range to it
 * once its data is written there. */
int64_t kimg_alloc_data(struct kimg *img, uint64_t off, uint64_t len, uint64_t *host,
                        struct kimg_file **file);
int kimg_commit_data(struct kimg *img, uint64_t off, uint64_t len, uint64_t host);
/* driver.h's transform_data: whether IMG transforms the data the copy
 * engine writes to alloc_data's space (encrypted qcow2), and the transform
 * itself, in place (thread-safe, no lock). */
bool kimg_transforms_data(struct kimg *img);
int kimg_transform_data(struct kimg *img, uint64_t off, uint64_t host, void *buf,
                        uint64_t len);
/* How qemu cuts this layer's block status replies (driver.h's
 * status_units); all zero (no cut) for a format that does not say. */
void kimg_status_units(struct kimg *img, uint64_t *span, uint64_t *cluster);

/* kimg_block_status for the engines that read the data (convert, compare
 * without -s, checksum): refined by the deciding layer's content_status
 * (kimg/driver.h), so zeros a format reports as data are not read.  What
 * qemu-img shows (map, measure, -p, compare -s) stays kimg_block_status. */
int kimg_content_status(struct kimg *img, uint64_t off, uint64_t len,
                        struct kimg_extent *ext);

/* Write all LEN bytes of BUF to the stream FD (a pipe: no offsets), again
 * after EINTR and short writes; AT is the stream offset for the message.
 * 0, or -errno with "error while writing at offset AT" (convert_stream.c). */
int kimg_write_fd_all(int fd, const uint8_t *buf, size_t len, uint64_t at);


/* ---- images opened with options (img/image.c, img/image_opts.c) ------- */

/* Open PATH (a local path, no prefix looked for; or FILE, taken over, when
 * not NULL, PATH its name) as FORMAT (NULL: probe)
 * with FLAGS, the top layer's open options a copy of OPTS (or none): the
 * driver reads them with kimg_open_opt; after the open (backing chain
 * included) one no driver read fails the open with qemu's message. */
/* A "json:{...}" name typed by the user (json_name.c): FORMAT from -f
 * (must agree with its "driver"), refused under --untrusted. */
int kimg_open_json_name(struct kimg **out, const char *name, const char *format,
                        unsigned flags);
int kimg_open_layer_opts(struct kimg **out, const char *path, const char *format,
                         unsigned flags, const struct kimg_opts *opts, struct kimg_file *file);
/* --image-opts' "file.*" for file.driver=nbd (taken out of OPTS; "file.driver"
 * already taken): the export opened into *OUT (KIMG_OPEN_RDWR in *FLAGS:
 * writable; cache.no-flush adds KIMG_OPEN_NOSYNC), qemu 7.2's checks and
 * messages (image_opts_nbd.c). */
int kimg_image_opts_nbd(struct kimg_opts *opts, unsigned *flags, struct kimg_file **out);
/* 0, or -EINVAL with "Block format 'F' does not support the option 'K'"
 * for the first of IMG's open options no driver read. */
int kimg_open_opts_check_used(struct kimg *img);
/* IMG's open options under PREFIX ("backing."), marked read, the prefix
 * taken off, into *OUT (NULL if none) for another layer, and its
 * "driver" (the format) into *DRIVER (NULL if none).  0 or -ENOMEM. */
int kimg_open_opts_sub(struct kimg *img, const char *prefix, struct kimg_opts **out,
                       char **driver);

/* ---- struct kimg_opts (img/opts.c; opaque in kimg/opts.h) ------------- */

struct kimg_opt {
    char *key;
    char *value;       /* NULL for a bare "key" (means "on" for booleans) */
    bool used;         /* a getter read it */
};

struct kimg_opts {
    struct kimg_opt *v;
    int n, cap;
};

#endif
