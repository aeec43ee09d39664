/*
 * lazylib/crypto_api.h — libcrypto (OpenSSL 3), loaded on first use: an
 * encrypted image opened with its key or created, a secret decrypted with
 * keyid=, a checksum, an OVA manifest checked (lazylib.h says why and
 * how).  Include this instead of OpenSSL's headers, and call
 * kimg_libcrypto_load() before the first OpenSSL call.  Every OpenSSL
 * header a user needs is included here, before the names are redirected:
 * one included after would declare a table member.  Memory is wiped with
 * explicit_bzero (glibc), not OPENSSL_cleanse, so that wiping a secret
 * never needs the library.
 */
#ifndef KIMG_LAZYLIB_LIBCRYPTO_H
#define KIMG_LAZYLIB_LIBCRYPTO_H

#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/provider.h>
#include <openssl/rand.h>
#include "lazylib.h"

#define KIMG_LIBCRYPTO_SONAME "libcrypto.so.3"

/* Every libcrypto function kimg calls (OSSL_FUNC_cipher_*() are inline
 * functions of core_dispatch.h, not calls into the library). */
#define KIMG_LIBCRYPTO_FUNCS(X)                                                     \
    X(EVP_MD_fetch) X(EVP_MD_free) X(EVP_get_digestbyname) X(EVP_MD_get_size)       \
    X(EVP_MD_get_flags) X(EVP_MD_CTX_new) X(EVP_MD_CTX_free) X(EVP_DigestInit_ex)   \
    X(EVP_DigestUpdate) X(EVP_DigestFinal_ex) X(EVP_DigestFinalXOF) X(EVP_Digest)   \
    X(EVP_CIPHER_fetch) X(EVP_CIPHER_free) X(EVP_CIPHER_get0_provider)              \
    X(EVP_CIPHER_get0_name) X(EVP_CIPHER_get_key_length) X(EVP_CIPHER_get_iv_length) \
    X(EVP_aes_128_cbc) X(EVP_aes_256_cbc) X(EVP_CIPHER_CTX_new) X(EVP_CIPHER_CTX_free) \
    X(EVP_CIPHER_CTX_set_padding) X(EVP_CipherInit_ex) X(EVP_CipherInit_ex2)        \
    X(EVP_CipherUpdate) X(EVP_DecryptInit_ex) X(EVP_DecryptUpdate)                  \
    X(EVP_DecryptFinal_ex) X(OSSL_PROVIDER_query_operation)                         \
    X(OSSL_PROVIDER_unquery_operation) X(OSSL_PROVIDER_get0_provider_ctx)           \
    X(OSSL_PARAM_construct_uint) X(ERR_set_mark) X(ERR_pop_to_mark)                 \
    X(PKCS5_PBKDF2_HMAC) X(RAND_bytes) X(CRYPTO_memcmp)

struct kimg_libcrypto_api {
    KIMG_LIBCRYPTO_FUNCS(KIMG_LAZY_MEMBER)
};
extern struct kimg_libcrypto_api kimg_libcrypto;

/* 0, or -ENOTSUP with a message naming WHAT needs it ("LUKS encryption
 * needs libcrypto.so.3, which could not be loaded: ..."). */
int kimg_libcrypto_load(const char *what);

#ifndef KIMG_LAZYLIB_IMPL
#define EVP_MD_fetch                    kimg_libcrypto.EVP_MD_fetch
#define EVP_MD_free                     kimg_libcrypto.EVP_MD_free
#define EVP_get_digestbyname            kimg_libcrypto.EVP_get_digestbyname
#define EVP_MD_get_size                 kimg_libcrypto.EVP_MD_get_size
#define EVP_MD_get_flags                kimg_libcrypto.EVP_MD_get_flags
#define EVP_MD_CTX_new                  kimg_libcrypto.EVP_MD_CTX_new
#define EVP_MD_CTX_free                 kimg_libcrypto.EVP_MD_CTX_free
#define EVP_DigestInit_ex               kimg_libcrypto.EVP_DigestInit_ex
#define EVP_DigestUpdate                kimg_libcrypto.EVP_DigestUpdate
#define EVP_DigestFinal_ex              kimg_libcrypto.EVP_DigestFinal_ex
#define EVP_DigestFinalXOF              kimg_libcrypto.EVP_DigestFinalXOF
#define EVP_Digest                      kimg_libcrypto.EVP_Digest
#define EVP_CIPHER_fetch                kimg_libcrypto.EVP_CIPHER_fetch
#define EVP_CIPHER_free                 kimg_libcrypto.EVP_CIPHER_free
#define EVP_CIPHER_get0_provider        kimg_libcrypto.EVP_CIPHER_get0_provider
#define EVP_CIPHER_get0_name            kimg_libcrypto.EVP_CIPHER_get0_name
#define EVP_CIPHER_get_key_length       kimg_libcrypto.EVP_CIPHER_get_key_length
#define EVP_CIPHER_get_iv_length        kimg_libcrypto.EVP_CIPHER_get_iv_length
#define EVP_aes_128_cbc                 kimg_libcrypto.EVP_aes_128_cbc
#define EVP_aes_256_cbc                 kimg_libcrypto.EVP_aes_256_cbc
#define EVP_CIPHER_CTX_new              kimg_libcrypto.EVP_CIPHER_CTX_new
#define EVP_CIPHER_CTX_free             kimg_libcrypto.EVP_CIPHER_CTX_free
#define EVP_CIPHER_CTX_set_padding      kimg_libcrypto.EVP_CIPHER_CTX_set_padding
#define EVP_CipherInit_ex               kimg_libcrypto.EVP_CipherInit_ex
#define EVP_CipherInit_ex2              kimg_libcrypto.EVP_CipherInit_ex2
#define EVP_CipherUpdate                kimg_libcrypto.EVP_CipherUpdate
#define EVP_DecryptInit_ex              kimg_libcrypto.EVP_DecryptInit_ex
#define EVP_DecryptUpdate               kimg_libcrypto.EVP_DecryptUpdate
#define EVP_DecryptFinal_ex             kimg_libcrypto.EVP_DecryptFinal_ex
#define OSSL_PROVIDER_query_operation   kimg_libcrypto.OSSL_PROVIDER_query_operation
#define OSSL_PROVIDER_unquery_operation kimg_libcrypto.OSSL_PROVIDER_unquery_operation
#define OSSL_PROVIDER_get0_provider_ctx kimg_libcrypto.OSSL_PROVIDER_get0_provider_ctx
#define OSSL_PARAM_construct_uint       kimg_libcrypto.OSSL_PARAM_construct_uint
#define ERR_set_mark                    kimg_libcrypto.ERR_set_mark
#define ERR_pop_to_mark                 kimg_libcrypto.ERR_pop_to_mark
#define PKCS5_PBKDF2_HMAC               kimg_libcrypto.PKCS5_PBKDF2_HMAC
#define RAND_bytes                      kimg_libcrypto.RAND_bytes
#define CRYPTO_memcmp                   kimg_libcrypto.CRYPTO_memcmp
/* wiping is explicit_bzero's (see above): a use of this fails the build */
#undef OPENSSL_cleanse
#define OPENSSL_cleanse                 kimg_use_explicit_bzero_not_OPENSSL_cleanse
#endif

#endif
