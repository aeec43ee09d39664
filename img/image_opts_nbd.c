/*
 * image_opts_nbd.c — --image-opts with file.driver=nbd: qemu 7.2's NBD
 * driver options (file.server.type=unix|inet with server.path, or
 * server.host and server.port; the legacy file.path, file.host,
 * file.port; file.export; file.tls-creds), checked in qemu's order with
 * its messages, and the export opened through the NBD backend
 * (protocols/nbd/).  These names are the user's, like a typed URI.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "kimg/driver.h"
#include "kimg/opts.h"
#include "internal.h"

struct nbd_opts {
    char *type, *spath, *shost, *sport;     /* file.server.* */
    char *path, *host, *port;               /* qemu's legacy keys */
    char *export, *tls_creds, *tls_hostname, *reconnect, *timeout, *bitmap;
    bool any_server;                        /* some file.server.* given */
};

static void free_nbd_opts(struct nbd_opts *o)
{
    char **all[] = { &o->type, &o->spath, &o->shost, &o->sport, &o->path, &o->host,
                     &o->port, &o->export, &o->tls_creds, &o->tls_hostname, &o->reconnect,
                     &o->timeout, &o->bitmap };
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        free(*all[i]);
}

/* KEY's value, or NULL; a key given without "=" reads as "on" (qemu). */
static char *take(struct kimg_opts *opts, const char *key, bool *any)
{
    bool found;
    char *v = kimg_opts_take(opts, key, &found);
    if (found && any)
        *any = true;
    if (found && !v)
        v = strdup("on");
    return v;
}

/* Whether V is absent or a number that is 0 (qemu's defaults). */
static bool zero_or_absent(const char *v)
{
    if (!v)
        return true;
    char *end;
    unsigned long long n = strtoull(v, &end, 0);
    return *v && !*end && n == 0;
}

/* The address as qemu 7.2 takes it (nbd_process_legacy_socket_options,
 * then the SocketAddress visitor, then nbd_config): *SOCKET or *HOST and
 * *PORT point into O. */
static int address(struct nbd_opts *o, const char **socket, const char **host,
                   const char **port)
{
    *socket = *host = *port = NULL;
    if (o->any_server && (o->path || o->host || o->port))
        return kimg_fail(-EINVAL, "Cannot use 'server' and path/host/port at the same time");
    if (o->path && o->host)
        return kimg_fail(-EINVAL, "path and host may not be used at the same time");
    if (o->path) {
        *socket = o->path;
        return 0;
    }
    if (o->host) {
        *host = o->host;
        *port = o->port ? o->port : "10809";
        return 0;
    }
    if (!o->any_server)
        return kimg_fail(-EINVAL, "NBD server address missing");
    if (!o->type)
        return kimg_fail(-EINVAL, "Parameter 'type' is missing");
    if (!strcmp(o->type, "unix")) {
        if (!o->spath)
            return kimg_fail(-EINVAL, "Parameter 'path' is missing");
        *socket = o->spath;
        return 0;
    }
    if (!strcmp(o->type, "inet")) {
        if (!o->shost)
            return kimg_fail(-EINVAL, "Parameter 'host' is missing");
        if (!o->sport)
            return kimg_fail(-EINVAL, "Parameter 'port' is missing");
        *host = o->shost;
        *port = o->sport;
        return 0;
    }
    if (!strcmp(o->type, "vsock") || !strcmp(o->type, "fd"))
        return kimg_fail(-ENOTSUP, "server.type '%s' is not supported: kimg connects to NBD "
                         "servers over unix sockets ('unix') and TCP ('inet')", o->type);
    return kimg_fail(-EINVAL, "Parameter 'type' does not accept value '%.64s'", o->type);
}

int kimg_image_opts_nbd(struct kimg_opts *opts, unsigned *flags, struct kimg_file **out)
{
    struct nbd_opts o = { 0 };
    const char *socket, *host, *port;
    bool found;
    int ret;

    *out = NULL;
    o.type = take(opts, "file.server.type", &o.any_server);
    o.spath = take(opts, "file.server.path", &o.any_server);
    o.shost = take(opts, "file.server.host", &o.any_server);
    o.sport = take(opts, "file.server.port", &o.any_server);
    for (int i = 0; i < kimg_opts_count(opts); i++)
        o.any_server |= !strncmp(kimg_opts_key(opts, i), "file.server.", 12);
    o.path = take(opts, "file.path", NULL);
    o.host = take(opts, "file.host", NULL);
    o.port = take(opts, "file.port", NULL);
    o.export = take(opts, "file.export", NULL);
    o.tls_creds = take(opts, "file.tls-creds", NULL);
    o.tls_hostname = take(opts, "file.tls-hostname", NULL);
    o.reconnect = take(opts, "file.reconnect-delay", NULL);
    o.timeout = take(opts, "file.open-timeout", NULL);
    o.bitmap = take(opts, "file.x-dirty-bitmap", NULL);
    /* the block layer's options for any node */
    free(kimg_opts_take(opts, "file.node-name", &found));
    free(kimg_opts_take(opts, "file.cache.direct", &found));
    char *noflush = kimg_opts_take(opts, "file.cache.no-flush", &found);
    bool nf = false;
    if (found && kimg_parse_bool(noflush ? noflush : "on", &nf) < 0) {
        free(noflush);
        ret = kimg_fail(-EINVAL, "Parameter 'file.cache.no-flush' expects 'on' or 'off'");
        goto out;
    }
    free(noflush);
    if (nf)
        *flags |= KIMG_OPEN_NOSYNC;

    if ((ret = address(&o, &socket, &host, &port)) < 0)
        goto out;
    if (o.export && strlen(o.export) > 4096) {
        ret = kimg_fail(-EINVAL, "export name too long to send to server");
        goto out;
    }
    if (o.tls_creds) {
        /* kimg makes no TLS objects (--object takes secrets only) */
        ret = kimg_fail(-EINVAL, "No TLS credentials with id '%.64s'", o.tls_creds);
        goto out;
    }
    if (!zero_or_absent(o.reconnect) || !zero_or_absent(o.timeout)) {
        ret = kimg_fail(-ENOTSUP, "kimg does not reconnect to NBD servers: give "
                        "reconnect-delay and open-timeout as 0 or leave them out");
        goto out;
    }
    if (o.bitmap) {
        ret = kimg_fail(-ENOTSUP, "x-dirty-bitmap is not supported: kimg reads the export's "
                        "base:allocation only");
        goto out;
    }
    ret = kimg_nbd_open_server(out, socket, host, port, o.export,
                               (*flags & KIMG_OPEN_RDWR) ? KIMG_FILE_RDWR : 0);
    if (ret < 0)
        goto out;
    /* after the connection, as qemu checks what no driver took */
    for (int i = 0; i < kimg_opts_count(opts); i++) {
        const char *k = kimg_opts_key(opts, i);
        if (!strncmp(k, "file.", 5)) {
            ret = kimg_fail(-EINVAL, "Block protocol 'nbd' doesn't support the option '%.200s'",
                            k + 5);
            kimg_file_close(*out);
            *out = NULL;
            goto out;
        }
    }
out:
    free_nbd_opts(&o);
    return ret;
}
