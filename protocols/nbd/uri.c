/*
 * protocols/nbd/uri.c — NBD image names: the URI forms (nbd://, nbds://,
 * nbd+unix://, nbds+unix://, split by libxml2's RFC 3986 parser) and
 * qemu's legacy "nbd:unix:PATH[:exportname=NAME]" and
 * "nbd:HOST:PORT[:exportname=NAME]", into a struct kimg_nbd_uri, with the
 * name as qemu-img shows it and the rule for names that came from images.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kimg.h"
#include "kimg/file.h"
#include "uri.h"
#include "xml_api.h"

#define NBD_MAX_STRING 4096     /* the protocol's limit on an export name */

static const char *const schemes[] = {
    "nbd", "nbds", "nbd+tcp", "nbds+tcp", "nbd+unix", "nbds+unix", NULL
};

bool kimg_nbd_is_uri(const char *name)
{
    size_t n = strcspn(name, ":/?#");
    if (name[n] != ':')
        return false;
    for (int i = 0; schemes[i]; i++)
        if (strlen(schemes[i]) == n && !strncmp(name, schemes[i], n))
            return true;
    return false;
}

void kimg_nbd_uri_free(struct kimg_nbd_uri *u)
{
    free(u->host);
    free(u->port);
    free(u->socket);
    free(u->export);
    free(u->tls_psk_file);
    free(u->tls_certificates);
    free(u->tls_username);
    free(u->name);
    memset(u, 0, sizeof(*u));
}

static int bad(const char *name, const char *why)
{
    return kimg_fail(-EINVAL, "Invalid NBD name '%.200s': %s", name, why);
}

/* A port: decimal digits, 1-65535. */
static bool port_ok(const char *p)
{
    unsigned long v = 0;
    if (!*p || strlen(p) > 5)
        return false;
    for (const char *c = p; *c; c++) {
        if (*c < '0' || *c > '9')
            return false;
        v = v * 10 + (unsigned long)(*c - '0');
    }
    return v >= 1 && v <= 65535;
}

/* qemu's nbd_refresh_filename: nbd://HOST[:PORT][/EXPORT] (the default
 * port left out, an IPv6 host in brackets), nbd+unix://[/EXPORT]?socket=
 * PATH; TLS (which qemu names through objects, not URIs) as nbds. */
static int make_name(struct kimg_nbd_uri *u)
{
    const char *s = u->tls ? "s" : "";
    const char *ex = u->export[0] || u->export_given ? "/" : "";
    int n;
    if (u->unix_socket)
        n = asprintf(&u->name, "nbd%s+unix://%s%s?socket=%s", s, ex, u->export, u->socket);
    else {
        bool v6 = strchr(u->host, ':') != NULL;
        bool dflt = !strcmp(u->port, KIMG_NBD_DEFAULT_PORT);
        n = asprintf(&u->name, "nbd%s://%s%s%s%s%s%s%s", s, v6 ? "[" : "", u->host,
                     v6 ? "]" : "", dflt ? "" : ":", dflt ? "" : u->port, ex, u->export);
    }
    if (n < 0) {
        u->name = NULL;
        return kimg_fail(-ENOMEM, "out of memory");
    }
    return 0;
}

/* *DST = the first LEN bytes of SRC (LEN -1: all of it) */
static int set_str(char **dst, const char *src, size_t len)
{
    free(*dst);
    *dst = len == (size_t)-1 ? strdup(src) : strndup(src, len);
    return *dst ? 0 : kimg_fail(-ENOMEM, "out of memory");
}

/* "nbd:unix:PATH[:exportname=NAME]", "nbd:HOST:PORT[:exportname=NAME]"
 * (HOST may be "[v6]"), as qemu's nbd_parse_filename. */
static int parse_legacy(const char *name, struct kimg_nbd_uri *u)
{
    const char *spec = name + 4;
    const char *en = strstr(spec, ":exportname=");
    size_t speclen = en ? (size_t)(en - spec) : strlen(spec);
    int ret = set_str(&u->export, en ? en + strlen(":exportname=") : "", (size_t)-1);
    if (ret < 0)
        return ret;
    if (speclen >= 5 && !strncmp(spec, "unix:", 5)) {
        u->unix_socket = true;
        if (speclen == 5)
            return bad(name, "no socket path");
        return set_str(&u->socket, spec + 5, speclen - 5);
    }
    const char *colon;
    size_t hostlen;
    if (spec[0] == '[') {
        const char *close = memchr(spec, ']', speclen);
        if (!close || close[1] != ':')
            return bad(name, "expected [HOST]:PORT");
        colon = close + 1;
        ret = set_str(&u->host, spec + 1, (size_t)(close - spec - 1));
    } else {
        colon = memchr(spec, ':', speclen);
        if (!colon)
            return bad(name, "expected unix:PATH or HOST:PORT");
        hostlen = (size_t)(colon - spec);
        ret = set_str(&u->host, hostlen ? spec : "localhost", hostlen ? hostlen : (size_t)-1);
    }
    if (ret == 0)
        ret = set_str(&u->port, colon + 1, (size_t)(spec + speclen - colon - 1));
    if (ret == 0 && !port_ok(u->port))
        ret = bad(name, "the port is not a number from 1 to 65535");
    if (ret == 0)   /* in decimal without leading zeros, as a URI's port */
        snprintf(u->port, strlen(u->port) + 1, "%lu", strtoul(u->port, NULL, 10));
    return ret;
}

/* One query parameter KEY=VALUE (VALUE still percent-encoded). */
static int query_param(const char *name, struct kimg_nbd_uri *u, const char *key, size_t klen,
                       const char *val, size_t vlen, bool from_image)
{
    char **dst = NULL;
    bool local = true;      /* names a local file */
    if (klen == 6 && !strncmp(key, "socket", 6)) {
        if (!u->unix_socket)
            return bad(name, "socket= is for nbd+unix:// names only");
        dst = &u->socket;
    } else if (klen == 12 && !strncmp(key, "tls-psk-file", 12)) {
        dst = &u->tls_psk_file;
    } else if (klen == 16 && !strncmp(key, "tls-certificates", 16)) {
        dst = &u->tls_certificates;
    } else {
        local = false;
    }
    if (!dst)
        return kimg_fail(-EINVAL, "Invalid NBD name '%.200s': unknown parameter '%.*s'", name,
                         (int)(klen > 64 ? 64 : klen), key);
    if (local && from_image)
        return kimg_fail(-EPERM, "refusing the NBD name '%.200s' named by an image: its "
                         "'%.*s=' would open a local file", name, (int)klen, key);
    if (dst != &u->socket && !u->tls)
        return bad(name, "TLS parameters need an nbds:// name");
    if (*dst)
        return bad(name, "a parameter is given twice");
    char *raw = strndup(val, vlen);
    if (!raw)
        return kimg_fail(-ENOMEM, "out of memory");
    *dst = xmlURIUnescapeString(raw, 0, NULL);
    free(raw);
    if (!*dst)
        return kimg_fail(-ENOMEM, "out of memory");
    if (!**dst)
        return bad(name, "an empty parameter");
    return 0;
}

static int parse_uri(const char *name, struct kimg_nbd_uri *u, bool from_image)
{
    int ret = kimg_libxml_load();
    if (ret < 0)
        return ret;
    xmlURIPtr x = xmlParseURI(name);
    if (!x)
        return bad(name, "not a URI");
    const char *sch = x->scheme ? x->scheme : "";
    u->tls = !strncmp(sch, "nbds", 4);
    u->unix_socket = strstr(sch, "+unix") != NULL;
    if (x->fragment || x->opaque || x->authority)
        ret = bad(name, "unexpected fragment or authority");
    else if (x->user && !u->tls)
        ret = bad(name, "a user name is for TLS (nbds://) only");
    else if (u->unix_socket && (x->server || x->port > 0))
        ret = bad(name, "a unix socket name has no host or port");
    else if (x->port < -1 || x->port > 65535)
        ret = bad(name, "the port is not a number from 1 to 65535");
    if (ret < 0)
        goto out;
    const char *path = x->path ? x->path : "";
    if (*path == '/')
        path++;
    if ((ret = set_str(&u->export, path, (size_t)-1)) < 0)
        goto out;
    if (x->user && (ret = set_str(&u->tls_username, x->user, (size_t)-1)) < 0)
        goto out;
    if (!u->unix_socket) {
        const char *h = x->server && *x->server ? x->server : "localhost";
        size_t hl = strlen(h);
        if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') {
            h++;
            hl -= 2;
        }
        if (!hl) {
            ret = bad(name, "an empty host");
            goto out;
        }
        char port[16];
        snprintf(port, sizeof(port), "%d", x->port > 0 ? x->port : 10809);
        if ((ret = set_str(&u->host, h, hl)) < 0 || (ret = set_str(&u->port, port, (size_t)-1)) < 0)
            goto out;
    }
    for (const char *q = x->query_raw; q && *q;) {
        size_t len = strcspn(q, "&;");
        const char *eq = memchr(q, '=', len);
        if (len) {
            if (!eq) {
                ret = bad(name, "a parameter without '='");
                goto out;
            }
            ret = query_param(name, u, q, (size_t)(eq - q), eq + 1, len - (size_t)(eq - q) - 1,
                              from_image);
            if (ret < 0)
                goto out;
        }
        q += len + (q[len] != 0);
    }
    if (u->unix_socket && !u->socket)
        ret = bad(name, "nbd+unix:// needs ?socket=PATH");
out:
    xmlFreeURI(x);
    return ret;
}

int kimg_nbd_uri_parse(const char *name, bool from_image, struct kimg_nbd_uri *u)
{
    int ret;
    memset(u, 0, sizeof(*u));
    if (!kimg_nbd_is_uri(name))
        return bad(name, "not an NBD name");
    if (!strncmp(name, "nbd:", 4) && strncmp(name, "nbd://", 6))
        ret = parse_legacy(name, u);
    else
        ret = parse_uri(name, u, from_image);
    if (ret < 0)
        return ret;
    if (strlen(u->export) > NBD_MAX_STRING)
        return bad(name, "the export name is longer than 4096 bytes");
    if (u->unix_socket && from_image)
        return kimg_fail(-EPERM, "refusing the NBD name '%.200s' named by an image: a unix "
                         "socket is a local file", name);
    if (!u->unix_socket && (!*u->host || strchr(u->host, '/')))
        return bad(name, "an empty host name, or one with '/'");
    return make_name(u);
}

int kimg_nbd_uri_from_parts(struct kimg_nbd_uri *u, const char *socket, const char *host,
                            const char *port, const char *export)
{
    memset(u, 0, sizeof(*u));
    u->unix_socket = socket != NULL;
    u->export_given = export != NULL;
    int ret = set_str(&u->export, export ? export : "", (size_t)-1);
    if (ret == 0 && socket)
        ret = set_str(&u->socket, socket, (size_t)-1);
    if (ret == 0 && !socket)
        ret = set_str(&u->host, host ? host : "", (size_t)-1);
    if (ret == 0 && !socket)
        ret = set_str(&u->port, port ? port : KIMG_NBD_DEFAULT_PORT, (size_t)-1);
    if (ret < 0)
        return ret;
    if (strlen(u->export) > NBD_MAX_STRING)
        return kimg_fail(-EINVAL, "the NBD export name is longer than 4096 bytes");
    if (socket && !*socket)
        return kimg_fail(-EINVAL, "an empty NBD socket path");
    if (!socket && (!*u->host || !*u->port))
        return kimg_fail(-EINVAL, "an empty NBD host or port");
    return make_name(u);
}
