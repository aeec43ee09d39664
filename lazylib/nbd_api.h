/*
 * lazylib/nbd_api.h — libnbd, loaded on the first NBD connection
 * (lazylib.h says why and how).  Include this instead of <libnbd.h>, and
 * call kimg_libnbd_load() before the first nbd_create().
 */
#ifndef KIMG_LAZYLIB_LIBNBD_H
#define KIMG_LAZYLIB_LIBNBD_H

#include <libnbd.h>
#include "lazylib.h"

#define KIMG_LIBNBD_SONAME "libnbd.so.0"

/* Every libnbd function kimg calls. */
#define KIMG_LIBNBD_FUNCS(X)                                                    \
    X(nbd_create) X(nbd_close) X(nbd_shutdown) X(nbd_get_error) X(nbd_get_errno) \
    X(nbd_set_export_name) X(nbd_set_tls) X(nbd_set_tls_psk_file)                \
    X(nbd_set_tls_certificates) X(nbd_set_tls_username) X(nbd_add_meta_context)  \
    X(nbd_connect_unix) X(nbd_connect_tcp) X(nbd_get_size) X(nbd_get_block_size) \
    X(nbd_is_read_only) X(nbd_can_zero) X(nbd_can_fast_zero) X(nbd_can_trim)     \
    X(nbd_can_flush) X(nbd_can_multi_conn) X(nbd_can_meta_context)               \
    X(nbd_aio_pread) X(nbd_aio_pwrite) X(nbd_aio_command_completed)              \
    X(nbd_aio_peek_command_completed) X(nbd_aio_is_closed) X(nbd_aio_is_dead)    \
    X(nbd_poll) X(nbd_zero) X(nbd_trim) X(nbd_flush) X(nbd_block_status)

struct kimg_libnbd_api {
    KIMG_LIBNBD_FUNCS(KIMG_LAZY_MEMBER)
};
extern struct kimg_libnbd_api kimg_libnbd;

/* 0, or -ENOTSUP with a message ("NBD support needs libnbd.so.0, which could not be loaded: ..."). */
int kimg_libnbd_load(void);

#ifndef KIMG_LAZYLIB_IMPL
#define nbd_create                      kimg_libnbd.nbd_create
#define nbd_close                       kimg_libnbd.nbd_close
#define nbd_shutdown                    kimg_libnbd.nbd_shutdown
#define nbd_get_error                   kimg_libnbd.nbd_get_error
#define nbd_get_errno                   kimg_libnbd.nbd_get_errno
#define nbd_set_export_name             kimg_libnbd.nbd_set_export_name
#define nbd_set_tls                     kimg_libnbd.nbd_set_tls
#define nbd_set_tls_psk_file            kimg_libnbd.nbd_set_tls_psk_file
#define nbd_set_tls_certificates        kimg_libnbd.nbd_set_tls_certificates
#define nbd_set_tls_username            kimg_libnbd.nbd_set_tls_username
#define nbd_add_meta_context            kimg_libnbd.nbd_add_meta_context
#define nbd_connect_unix                kimg_libnbd.nbd_connect_unix
#define nbd_connect_tcp                 kimg_libnbd.nbd_connect_tcp
#define nbd_get_size                    kimg_libnbd.nbd_get_size
#define nbd_get_block_size              kimg_libnbd.nbd_get_block_size
#define nbd_is_read_only                kimg_libnbd.nbd_is_read_only
#define nbd_can_zero                    kimg_libnbd.nbd_can_zero
#define nbd_can_fast_zero               kimg_libnbd.nbd_can_fast_zero
#define nbd_can_trim                    kimg_libnbd.nbd_can_trim
#define nbd_can_flush                   kimg_libnbd.nbd_can_flush
#define nbd_can_multi_conn              kimg_libnbd.nbd_can_multi_conn
#define nbd_can_meta_context            kimg_libnbd.nbd_can_meta_context
#define nbd_aio_pread                   kimg_libnbd.nbd_aio_pread
#define nbd_aio_pwrite                  kimg_libnbd.nbd_aio_pwrite
#define nbd_aio_command_completed       kimg_libnbd.nbd_aio_command_completed
#define nbd_aio_peek_command_completed  kimg_libnbd.nbd_aio_peek_command_completed
#define nbd_aio_is_closed               kimg_libnbd.nbd_aio_is_closed
#define nbd_aio_is_dead                 kimg_libnbd.nbd_aio_is_dead
#define nbd_poll                        kimg_libnbd.nbd_poll
#define nbd_zero                        kimg_libnbd.nbd_zero
#define nbd_trim                        kimg_libnbd.nbd_trim
#define nbd_flush                       kimg_libnbd.nbd_flush
#define nbd_block_status                kimg_libnbd.nbd_block_status
#endif

#endif
