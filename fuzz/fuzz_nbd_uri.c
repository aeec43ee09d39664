/*
 * fuzz_nbd_uri.c — the NBD name parser (protocols/nbd/uri.c) on arbitrary
 * strings, as typed by the user and as named by an image: no crash, no
 * UB, every refusal has a message, and the invariants of a parsed name
 * (its transport's fields set, nothing that opens a local file when it
 * came from an image, the display name reparsing to itself when it holds
 * only plain characters).  Nothing connects.
 */
#include <stdlib.h>
#include <string.h>
#include "fuzz.h"
#include "kimg.h"
#include "kimg/file.h"
#include "protocols/nbd/uri.h"

static bool plain(const char *s)
{
    return s && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-")
                == strlen(s);
}

static void check_one(const char *s, bool from_image)
{
    struct kimg_nbd_uri u;
    kimg_clear_error();
    int ret = kimg_nbd_uri_parse(s, from_image, &u);
    if (ret < 0) {
        if (!kimg_last_error())
            abort();
        kimg_nbd_uri_free(&u);
        return;
    }
    if (ret != 0 || !kimg_nbd_is_uri(s) || !u.name || !u.export || !kimg_nbd_is_uri(u.name))
        abort();
    if (u.unix_socket ? (!u.socket || u.host) : (!u.host || !u.port || u.socket))
        abort();
    if (from_image && (u.unix_socket || u.tls_psk_file || u.tls_certificates))
        abort();
    if ((u.tls_psk_file || u.tls_certificates || u.tls_username) && !u.tls)
        abort();
    /* the display name parses back to the same name */
    if (plain(u.export) && plain(u.unix_socket ? u.socket : u.host) && !u.tls_psk_file &&
        !u.tls_certificates && !u.tls_username) {
        struct kimg_nbd_uri v;
        if (kimg_nbd_uri_parse(u.name, false, &v) != 0 || strcmp(v.name, u.name) ||
            strcmp(v.export, u.export))
            abort();
        kimg_nbd_uri_free(&v);
    }
    kimg_nbd_uri_free(&u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 8192)
        return 0;
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    (void)kimg_nbd_is_uri(s);
    check_one(s, false);
    check_one(s, true);
    kimg_clear_error();
    free(s);
    return 0;
}
