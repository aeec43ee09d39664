/*
 * lazylib/nettle_api.h — nettle (libnettle.so.8), loaded with libcrypto
 * when a LUKS cipher is set up (lazylib.h says why and how).  Include this
 * instead of nettle's headers, and call kimg_libnettle_load() before the
 * first nettle call.  nettle's cipher descriptions (nettle_aes128, ...) are
 * variables of the library: the table holds their addresses, and the
 * names read through them (&nettle_aes128 is the library's object, not a
 * constant: no static initialiser can take it).  cbc_encrypt and the
 * like are nettle's own macros over the nettle_* functions listed.
 */
#ifndef KIMG_LAZYLIB_LIBNETTLE_H
#define KIMG_LAZYLIB_LIBNETTLE_H

#include <nettle/cbc.h>
#include <nettle/ctr.h>
#include <nettle/nettle-meta.h>
#include <nettle/xts.h>
#include "lazylib.h"

#define KIMG_LIBNETTLE_SONAME "libnettle.so.8"

/* Every nettle function kimg calls. */
#define KIMG_LIBNETTLE_FUNCS(X)                                                 \
    X(nettle_cbc_encrypt) X(nettle_cbc_decrypt) X(nettle_ctr_crypt)             \
    X(nettle_xts_encrypt_message) X(nettle_xts_decrypt_message)

/* Every nettle variable kimg reads (const struct nettle_cipher). */
#define KIMG_LIBNETTLE_DATA(X)                                                  \
    X(nettle_aes128) X(nettle_aes192) X(nettle_aes256) X(nettle_cast128)        \
    X(nettle_serpent128) X(nettle_serpent192) X(nettle_serpent256)              \
    X(nettle_twofish128) X(nettle_twofish192) X(nettle_twofish256)

struct kimg_libnettle_api {
    KIMG_LIBNETTLE_FUNCS(KIMG_LAZY_MEMBER)
    KIMG_LIBNETTLE_DATA(KIMG_LAZY_DATA_MEMBER)      /* nettle_aes128_var: &nettle_aes128 */
};
extern struct kimg_libnettle_api kimg_libnettle;

/* 0, or -ENOTSUP with a message naming WHAT needs it ("LUKS encryption
 * needs libnettle.so.8, which could not be loaded: ..."). */
int kimg_libnettle_load(const char *what);

#ifndef KIMG_LAZYLIB_IMPL
#define nettle_cbc_encrypt              kimg_libnettle.nettle_cbc_encrypt
#define nettle_cbc_decrypt              kimg_libnettle.nettle_cbc_decrypt
#define nettle_ctr_crypt                kimg_libnettle.nettle_ctr_crypt
#define nettle_xts_encrypt_message      kimg_libnettle.nettle_xts_encrypt_message
#define nettle_xts_decrypt_message      kimg_libnettle.nettle_xts_decrypt_message
#define nettle_aes128                   (*kimg_libnettle.nettle_aes128_var)
#define nettle_aes192                   (*kimg_libnettle.nettle_aes192_var)
#define nettle_aes256                   (*kimg_libnettle.nettle_aes256_var)
#define nettle_cast128                  (*kimg_libnettle.nettle_cast128_var)
#define nettle_serpent128               (*kimg_libnettle.nettle_serpent128_var)
#define nettle_serpent192               (*kimg_libnettle.nettle_serpent192_var)
#define nettle_serpent256               (*kimg_libnettle.nettle_serpent256_var)
#define nettle_twofish128               (*kimg_libnettle.nettle_twofish128_var)
#define nettle_twofish192               (*kimg_libnettle.nettle_twofish192_var)
#define nettle_twofish256               (*kimg_libnettle.nettle_twofish256_var)
#endif

#endif
