/*
 * convert_clusters.h — -c's two halves, shared by the copy engine
 * (convert.c, convert_work.c) and convert from a pipe
 * (convert_pipe_compress.c): workers compress a range's clusters into a
 * buffer (convert_compress_clusters), one thread stores them in order
 * (convert_store_clusters).  Both in convert_work.c.
 */
#ifndef KIMG_CONVERT_CLUSTERS_H
#define KIMG_CONVERT_CLUSTERS_H

#include <stddef.h>
#include <stdint.h>
#include "kimg/convert.h"

#define CLEN_ZERO INT64_MIN     /* an all-zero cluster, left to be zeros */

void convert_compress_clusters(const struct kimg_convert *c, uint64_t cluster, uint64_t off,
                               const uint8_t *data, uint64_t len, uint8_t *cbuf, size_t cap,
                               int64_t *clen, uint32_t nclen);
int convert_store_clusters(const struct kimg_convert *c, uint64_t cluster, uint64_t off,
                           const uint8_t *data, uint64_t len, const uint8_t *cbuf,
                           const int64_t *clen);

#endif
