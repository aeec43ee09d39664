/*
 * foreign.h — formats kimg recognises but does not implement.
 */
#ifndef KIMG_FOREIGN_H
#define KIMG_FOREIGN_H

#include <stddef.h>
#include <stdint.h>

/* The name of the unsupported format whose magic starts BUF, or NULL. */
const char *kimg_foreign_format(const uint8_t *buf, size_t len);

#endif
