/*
 * protocols/nbd/uri.h — NBD image names (uri.c) for the NBD file backend
 * (nbd.c) and the fuzz target: the URI forms libnbd and qemu take and
 * qemu's legacy "nbd:" forms, split into what a connection needs.
 */
#ifndef KIMG_NBD_URI_H
#define KIMG_NBD_URI_H

#include <stdbool.h>

#define KIMG_NBD_DEFAULT_PORT "10809"

struct kimg_nbd_uri {
    bool unix_socket;       /* over a unix socket (SOCKET), else TCP */
    bool tls;               /* nbds: TLS required */
    char *host, *port;      /* TCP: host (no brackets), port ("10809") */
    char *socket;           /* unix: the socket's path */
    char *export;           /* the export's name ("" when none) */
    char *tls_psk_file, *tls_certificates, *tls_username;   /* or NULL */
    char *name;             /* the name as qemu shows it (info, messages) */
    bool export_given;      /* an empty export named explicitly (--image-opts
                               file.export=): qemu shows it as "/" */
};

/* Parse NAME into U (zeroed first; free with kimg_nbd_uri_free even on
 * failure).  FROM_IMAGE: the name came from an image (a backing or data
 * file name), so nothing in it may make libnbd open a local file: a unix
 * socket, tls-psk-file= and tls-certificates= are refused.  Returns 0 or
 * -EINVAL with a kimg_fail message (the name cut to 200 bytes). */
int kimg_nbd_uri_parse(const char *name, bool from_image, struct kimg_nbd_uri *u);
void kimg_nbd_uri_free(struct kimg_nbd_uri *u);
/* Fill U (zeroed first; free with kimg_nbd_uri_free even on failure) from
 * the parts qemu's NBD options give (--image-opts file.server.*): SOCKET
 * (a unix socket) or HOST and PORT (TCP; PORT a number or a service
 * name), EXPORT (NULL: none given).  The user's own names: nothing is
 * refused as local.  0 or -EINVAL/-ENOMEM with a kimg_fail message. */
int kimg_nbd_uri_from_parts(struct kimg_nbd_uri *u, const char *socket, const char *host,
                            const char *port, const char *export);

#endif
