/*
 * domxml.c — libvirt domain XML for clones: parse an untrusted document
 * with libxml2 (no network, no DTD and so no entities, size and count
 * caps), find what a clone changes (name, uuid, disks, interfaces, nvram,
 * ports, sockets), edit the tree in place and serialise it, so comments,
 * namespaces, metadata and unknown elements keep their text.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "kimg.h"
#include "clone.h"
#include "xml_api.h"

/* ---- small tree helpers -------------------------------------------------- */

static bool is_elem(const xmlNode *n, const char *name)
{
    return n && n->type == XML_ELEMENT_NODE && n->ns == NULL &&
           !strcmp((const char *)n->name, name);
}

static xmlNode *child_elem(const xmlNode *parent, const char *name)
{
    for (xmlNode *c = parent->children; c; c = c->next)
        if (is_elem(c, name))
            return c;
    return NULL;
}

/* An attribute without namespace, copied (malloc'd), or NULL. */
static char *attr(const xmlNode *n, const char *name)
{
    xmlChar *v = xmlGetNoNsProp(n, BAD_CAST name);
    if (!v)
        return NULL;
    char *s = strdup((const char *)v);
    xmlFree(v);
    return s;
}

static bool attr_is(const xmlNode *n, const char *name, const char *value)
{
    xmlChar *v = xmlGetNoNsProp(n, BAD_CAST name);
    bool r = v && !strcmp((const char *)v, value);
    xmlFree(v);
    return r;
}

static char *text_of(const xmlNode *n)
{
    xmlChar *v = xmlNodeGetContent(n);
    if (!v)
        return strdup("");
    char *s = strdup((const char *)v);
    xmlFree(v);
    return s;
}

static bool is_blank_text(const xmlNode *n)
{
    if (!n || n->type != XML_TEXT_NODE || !n->content)
        return false;
    for (const xmlChar *p = n->content; *p; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            return false;
    return true;
}

/* Unlink and free N with the indentation before it. */
static void remove_node(xmlNode *n)
{
    xmlNode *ws = n->prev;
    if (is_blank_text(ws)) {
        xmlUnlinkNode(ws);
        xmlFreeNode(ws);
    }
    xmlUnlinkNode(n);
    xmlFreeNode(n);
}

static int set_text(xmlNode *n, const char *s)
{
    xmlNode *c = n->children;
    while (c) {
        xmlNode *next = c->next;
        xmlUnlinkNode(c);
        xmlFreeNode(c);
        c = next;
    }
    xmlNode *t = xmlNewDocText(n->doc, BAD_CAST s);
    if (!t)
        return -ENOMEM;
    xmlAddChild(n, t);
    return 0;
}

static int set_attr(xmlNode *n, const char *name, const char *value)
{
    return xmlSetProp(n, BAD_CAST name, BAD_CAST value) ? 0 : -ENOMEM;
}

static void unset_attr(xmlNode *n, const char *name)
{
    xmlUnsetProp(n, BAD_CAST name);
}

/* Insert NEW after REF, indented as REF is. */
static int insert_after(xmlNode *ref, xmlNode *node)
{
    xmlNode *ws = is_blank_text(ref->prev) ? ref->prev : NULL;
    if (!xmlAddNextSibling(ref, node))
        return -ENOMEM;
    if (ws) {
        xmlNode *copy = xmlNewDocText(ref->doc, ws->content);
        if (!copy || !xmlAddPrevSibling(node, copy))
            return -ENOMEM;
    }
    return 0;
}

/* The indentation before N (the blank text before it), or "". */
static const char *indent_of(const xmlNode *n)
{
    return is_blank_text(n->prev) ? (const char *)n->prev->content : "";
}

/* Insert NODE as the first element child of PARENT, indented like the
 * other children (or one step deeper than PARENT when it has none). */
static int insert_first(xmlNode *parent, xmlNode *node)
{
    xmlNode *first = NULL;
    for (xmlNode *c = parent->children; c; c = c->next)
        if (c->type == XML_ELEMENT_NODE) {
            first = c;
            break;
        }
    if (first) {
        xmlNode *ws = is_blank_text(first->prev) ? first->prev : NULL;
        if (!xmlAddPrevSibling(first, node))
            return -ENOMEM;
        if (ws) {
            xmlNode *copy = xmlNewDocText(parent->doc, ws->content);
            if (!copy || !xmlAddPrevSibling(first, copy))
                return -ENOMEM;
        }
        return 0;
    }
    /* no element children: only blank text (or nothing) may be there */
    bool only_blank = true;
    for (xmlNode *c = parent->children; c; c = c->next)
        if (!is_blank_text(c))
            only_blank = false;
    const char *pind = indent_of(parent);
    if (!only_blank || !*pind) {
        return xmlAddChild(parent, node) ? 0 : -ENOMEM;
    }
    while (parent->children) {
        xmlNode *c = parent->children;
        xmlUnlinkNode(c);
        xmlFreeNode(c);
    }
    size_t n = strlen(pind);
    char *cind = malloc(n + 3);
    if (!cind)
        return -ENOMEM;
    memcpy(cind, pind, n);
    memcpy(cind + n, "  ", 3);
    xmlNode *a = xmlNewDocText(parent->doc, BAD_CAST cind);
    xmlNode *b = xmlNewDocText(parent->doc, BAD_CAST pind);
    free(cind);
    if (!a || !b) {
        xmlFreeNode(a);
        xmlFreeNode(b);
        return -ENOMEM;
    }
    xmlAddChild(parent, a);
    xmlAddChild(parent, node);
    xmlAddChild(parent, b);
    return 0;
}

/* ---- checks on strings ----------------------------------------------------- */

int clone_check_text(const char *what, const char *s, size_t max)
{
    size_t len = strlen(s);
    if (len > max)
        return kimg_fail(-EINVAL, "%s is too long (%zu bytes, at most %zu)", what, len, max);
    /* libxml2's UTF-8 check: loaded here too, as a name or path may be
     * checked before any XML is parsed (lazylib/) */
    int r = kimg_libxml_load();
    if (r < 0)
        return r;
    if (!xmlCheckUTF8(BAD_CAST s))
        return kimg_fail(-EINVAL, "%s is not valid UTF-8", what);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return kimg_fail(-EINVAL, "%s contains a control character (\\x%02x)", what, *p);
    return 0;
}

/* ---- parsing ------------------------------------------------------------------ */

/* SAX hooks: a DOCTYPE (and so any entity declaration) stops the parse. */
static void refuse_dtd(void *ctx, const xmlChar *name, const xmlChar *ext, const xmlChar *sys)
{
    xmlParserCtxtPtr ctxt = ctx;
    ctxt->_private = (void *)1;
    xmlStopParser(ctxt);
}

static void refuse_entity(void *ctx, const xmlChar *name, int type, const xmlChar *pub,
                          const xmlChar *sys, xmlChar *content)
{
    xmlParserCtxtPtr ctxt = ctx;
    ctxt->_private = (void *)1;
    xmlStopParser(ctxt);
}

static void free_disk(struct clone_xdisk *d)
{
    free(d->type);
    free(d->device);
    free(d->target);
    free(d->format);
    free(d->source);
    free(d->protocol);
}

void clone_dom_free(struct clone_dom *dom)
{
    if (!dom)
        return;
    for (int i = 0; i < dom->nb_disks; i++)
        free_disk(&dom->disks[i]);
    for (int i = 0; i < dom->nb_nics; i++) {
        free(dom->nics[i].type);
        free(dom->nics[i].mac);
    }
    free(dom->disks);
    free(dom->nics);
    free(dom->name);
    free(dom->uuid);
    free(dom->nvram);
    free(dom->nvram_format);
    if (dom->doc)
        xmlFreeDoc(dom->doc);
    free(dom);
}

/* A path attribute of an XML element: checked, or NULL when absent/empty. */
static int path_attr(const xmlNode *n, const char *name, const char *label, char **out)
{
    *out = attr(n, name);
    if (*out && !**out) {
        free(*out);
        *out = NULL;
    }
    if (*out && strlen(*out) > CLONE_MAX_PATH)
        return kimg_fail(-EINVAL, "%s: a %s path is longer than %d bytes", label,
                         (const char *)n->name, CLONE_MAX_PATH);
    return 0;
}

/* Append S to B percent-encoded (all but RFC 3986's unreserved and
 * KEEP): an export name in a URI's path, a socket path in its query. */
static void uri_append(FILE *b, const char *s, const char *keep)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            strchr("-._~", *p) || strchr(keep, *p))
            fputc(*p, b);
        else
            fprintf(b, "%%%02X", *p);
    }
}

/* An nbd network disk's <source protocol='nbd' [name='EXPORT'] [tls='yes']>
 * with its first <host name='H' [port='P']/> or <host transport='unix'
 * socket='PATH'/>, as libvirt writes them, as the URI kimg opens:
 * nbd://H:P/EXPORT or nbd+unix:///EXPORT?socket=PATH (nbds... with TLS). */
static int nbd_source_uri(const xmlNode *src, const char *label, char **out)
{
    xmlNode *h = child_elem(src, "host");
    if (!h)
        return kimg_fail(-EINVAL, "%s: an nbd disk has no <host>", label);
    char *name = attr(src, "name"), *tls = attr(src, "tls"), *transport = attr(h, "transport");
    char *host = attr(h, "name"), *port = attr(h, "port"), *sock = attr(h, "socket");
    bool unix_sock = transport && !strcmp(transport, "unix");
    bool secure = tls && !strcmp(tls, "yes");
    int r = 0;
    if (transport && !unix_sock && strcmp(transport, "tcp"))
        r = kimg_fail(-EINVAL, "%s: an nbd disk's <host transport> is neither tcp nor unix", label);
    else if (unix_sock ? !sock || !*sock : !host || !*host)
        r = kimg_fail(-EINVAL, "%s: an nbd disk's <host> has no %s", label,
                      unix_sock ? "socket" : "name");
    else if ((name && clone_check_text("an nbd export name", name, 4096) < 0) ||
             (host && clone_check_text("an nbd host name", host, 255) < 0) ||
             (sock && clone_check_text("an nbd socket path", sock, CLONE_MAX_PATH) < 0))
        r = -EINVAL;
    if (r == 0 && !unix_sock && port) {
        char *end;
        long v = strtol(port, &end, 10);
        if (!*port || *end || v < 1 || v > 65535)
            r = kimg_fail(-EINVAL, "%s: an nbd disk's <host port> is not a port number", label);
    }
    if (r == 0 && !unix_sock &&
        strspn(host, strchr(host, ':') ? "0123456789abcdefABCDEF:." /* IPv6 */
                                       : "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                         "0123456789.-_") != strlen(host))
        r = kimg_fail(-EINVAL, "%s: an nbd disk's <host name> is not a host name", label);
    char *uri = NULL;
    size_t len = 0;
    FILE *b = r == 0 ? open_memstream(&uri, &len) : NULL;
    if (r == 0 && !b)
        r = -ENOMEM;
    if (b) {
        if (unix_sock) {
            fputs(secure ? "nbds+unix:///" : "nbd+unix:///", b);
            uri_append(b, name ? name : "", "/");
            fputs("?socket=", b);
            uri_append(b, sock, "/");
        } else {
            fputs(secure ? "nbds://" : "nbd://", b);
            if (strchr(host, ':'))      /* an IPv6 address */
                fprintf(b, "[%s]", host);
            else
                fputs(host, b);
            if (port)
                fprintf(b, ":%s", port);
            fputc('/', b);
            uri_append(b, name ? name : "", "/");
        }
        if (fclose(b) != 0) {
            free(uri);
            uri = NULL;
            r = -ENOMEM;
        }
    }
    free(name);
    free(tls);
    free(transport);
    free(host);
    free(port);
    free(sock);
    *out = r == 0 ? uri : NULL;
    return r;
}

static int parse_disk(struct clone_xdisk *d, xmlNode *n, const char *label)
{
    d->node = n;
    d->type = attr(n, "type");
    d->device = attr(n, "device");
    if (!d->type)
        d->type = strdup("file");
    if (!d->device)
        d->device = strdup("disk");
    if (!d->type || !d->device)
        return -ENOMEM;
    for (xmlNode *c = n->children; c; c = c->next) {
        if (is_elem(c, "driver") && !d->format)
            d->format = attr(c, "type");
        else if (is_elem(c, "target") && !d->target)
            d->target = attr(c, "dev");
        else if (is_elem(c, "readonly"))
            d->readonly = true;
        else if (is_elem(c, "shareable"))
            d->shareable = true;
        else if (is_elem(c, "transient") && attr_is(c, "shareBacking", "yes"))
            d->shareable = true;
        else if (is_elem(c, "backingStore"))
            d->has_backing_store = true;
        else if (is_elem(c, "source") && !d->source && !d->protocol) {
            int r = 0;
            if (!strcmp(d->type, "file"))
                r = path_attr(c, "file", label, &d->source);
            else if (!strcmp(d->type, "block"))
                r = path_attr(c, "dev", label, &d->source);
            else if (!strcmp(d->type, "dir"))
                r = path_attr(c, "dir", label, &d->source);
            else if (!strcmp(d->type, "network")) {
                d->protocol = attr(c, "protocol");
                if (d->protocol && !strcmp(d->protocol, "nbd")) {
                    r = nbd_source_uri(c, label, &d->source);
                    d->nbd = r == 0;
                }
            }
            if (r < 0)
                return r;
        }
    }
    if (d->target && clone_check_text("a disk target", d->target, 64) < 0)
        return kimg_fail(-EINVAL, "%s: a disk has a bad <target dev>", label);
    if (d->format && clone_check_text("a disk format", d->format, 32) < 0)
        return kimg_fail(-EINVAL, "%s: a disk has a bad <driver type>", label);
    return 0;
}

static int parse_devices(struct clone_dom *dom, xmlNode *devices, const char *label)
{
    int nd = 0, nn = 0;
    for (xmlNode *c = devices->children; c; c = c->next) {
        if (is_elem(c, "disk"))
            nd++;
        else if (is_elem(c, "interface"))
            nn++;
    }
    if (nd > CLONE_MAX_DISKS)
        return kimg_fail(-E2BIG, "%s: %d disks; kimg clones at most %d", label, nd, CLONE_MAX_DISKS);
    if (nn > CLONE_MAX_NICS)
        return kimg_fail(-E2BIG, "%s: %d interfaces; kimg clones at most %d", label, nn,
                         CLONE_MAX_NICS);
    dom->disks = calloc((size_t)nd + 1, sizeof(*dom->disks));
    dom->nics = calloc((size_t)nn + 1, sizeof(*dom->nics));
    if (!dom->disks || !dom->nics)
        return -ENOMEM;
    for (xmlNode *c = devices->children; c; c = c->next) {
        if (is_elem(c, "disk")) {
            int r = parse_disk(&dom->disks[dom->nb_disks++], c, label);
            if (r < 0)
                return r;
        } else if (is_elem(c, "interface")) {
            struct clone_xnic *nic = &dom->nics[dom->nb_nics++];
            nic->node = c;
            nic->type = attr(c, "type");
            xmlNode *m = child_elem(c, "mac");
            if (m)
                nic->mac = attr(m, "address");
            if (nic->mac && strlen(nic->mac) > 64)
                return kimg_fail(-EINVAL, "%s: an interface has a bad <mac address>", label);
        }
    }
    return 0;
}

static int parse_os(struct clone_dom *dom, xmlNode *os, const char *label)
{
    xmlNode *nv = child_elem(os, "nvram");
    if (!nv)
        return 0;
    dom->nvram_format = attr(nv, "format");
    xmlNode *src = child_elem(nv, "source");
    if (src) {
        /* libvirt >= 8.5: <nvram type='file'><source file='...'/></nvram> */
        int r = path_attr(src, "file", label, &dom->nvram);
        if (r < 0)
            return r;
    } else {
        char *t = text_of(nv);
        if (!t)
            return -ENOMEM;
        if (strlen(t) > CLONE_MAX_PATH) {
            free(t);
            return kimg_fail(-EINVAL, "%s: the <nvram> path is longer than %d bytes", label,
                             CLONE_MAX_PATH);
        }
        if (*t)
            dom->nvram = t;
        else
            free(t);
    }
    if (dom->nvram_format && clone_check_text("the nvram format", dom->nvram_format, 32) < 0)
        return kimg_fail(-EINVAL, "%s: bad <nvram format>", label);
    return 0;
}

/* Walk the tree: the singletons and the devices a clone changes. */
static int parse_tree(struct clone_dom *dom, const char *label)
{
    xmlNode *root = xmlDocGetRootElement(dom->doc);
    if (!root || root->type != XML_ELEMENT_NODE || strcmp((const char *)root->name, "domain"))
        return kimg_fail(-EINVAL, "%s: not a libvirt domain XML (the root element is <%.40s>, "
                         "not <domain>)", label, root ? (const char *)root->name : "");
    if (root->ns)
        return kimg_fail(-EINVAL, "%s: the <domain> element has a namespace; libvirt's has none",
                         label);
    dom->root = root;
    xmlNode *name = NULL, *uuid = NULL, *os = NULL, *devices = NULL;
    for (xmlNode *c = root->children; c; c = c->next) {
        xmlNode **slot = is_elem(c, "name") ? &name : is_elem(c, "uuid") ? &uuid :
                         is_elem(c, "os") ? &os : is_elem(c, "devices") ? &devices : NULL;
        if (!slot)
            continue;
        if (*slot)
            return kimg_fail(-EINVAL, "%s: more than one <%s> element", label,
                             (const char *)c->name);
        *slot = c;
    }
    if (!name)
        return kimg_fail(-EINVAL, "%s: the domain has no <name>", label);
    if (!(dom->name = text_of(name)))
        return -ENOMEM;
    if (!*dom->name || clone_check_text("the domain name", dom->name, 1024) < 0) {
        kimg_clear_error();
        return kimg_fail(-EINVAL, "%s: the domain's <name> is empty or not a valid name", label);
    }
    if (uuid) {
        if (!(dom->uuid = text_of(uuid)))
            return -ENOMEM;
        if (strlen(dom->uuid) > 64)
            return kimg_fail(-EINVAL, "%s: the <uuid> is not a UUID", label);
    }
    int r;
    if (os && (r = parse_os(dom, os, label)) < 0)
        return r;
    if (devices && (r = parse_devices(dom, devices, label)) < 0)
        return r;
    if (!dom->disks) {
        dom->disks = calloc(1, sizeof(*dom->disks));
        dom->nics = calloc(1, sizeof(*dom->nics));
        if (!dom->disks || !dom->nics)
            return -ENOMEM;
    }
    return 0;
}

/* One line from libxml2's last error: "line N: message". */
static void parse_error(xmlParserCtxtPtr ctxt, const char *label)
{
    const xmlError *e = ctxt ? xmlCtxtGetLastError(ctxt) : NULL;
    if (!e || !e->message) {
        kimg_error("%s: not well-formed XML", label);
        return;
    }
    char msg[160];
    size_t k = 0;
    for (const char *p = e->message; *p && k < sizeof(msg) - 1; p++)
        msg[k++] = (*p == '\n' || *p == '\r' || *p == '\t') ? ' ' :
                   ((unsigned char)*p < 0x20 ? '?' : *p);
    while (k && msg[k - 1] == ' ')
        k--;
    msg[k] = '\0';
    kimg_error("%s: line %d: malformed XML: %s", label, e->line, msg);
}

int clone_dom_parse_memory(struct clone_dom **out, const char *buf, size_t len,
                           const char *label)
{
    *out = NULL;
    if (len > CLONE_MAX_XML_BYTES)
        return kimg_fail(-EFBIG, "%s: the domain XML is larger than %u MiB", label,
                         CLONE_MAX_XML_BYTES >> 20);
    if (len == 0)
        return kimg_fail(-EINVAL, "%s: the domain XML is empty", label);
    int r = kimg_libxml_load();
    if (r < 0)
        return r;
    struct clone_dom *dom = calloc(1, sizeof(*dom));
    if (!dom)
        return -ENOMEM;
    /* keep an XML declaration if the document had one */
    size_t i = 0;
    if (len >= 3 && !memcmp(buf, "\xef\xbb\xbf", 3))
        i = 3;
    dom->has_decl = len - i >= 5 && !memcmp(buf + i, "<?xml", 5);

    xmlParserCtxtPtr ctxt = xmlNewParserCtxt();
    if (!ctxt) {
        free(dom);
        return -ENOMEM;
    }
    ctxt->sax->internalSubset = refuse_dtd;
    ctxt->sax->externalSubset = refuse_dtd;
    ctxt->sax->entityDecl = refuse_entity;
    ctxt->_private = NULL;
    int opts = XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING;
#if LIBXML_VERSION >= 21300
    opts |= XML_PARSE_NO_XXE;
#endif
    dom->doc = xmlCtxtReadMemory(ctxt, buf, (int)len, NULL, NULL, opts);
    int ret = 0;
    if (ctxt->_private) {
        ret = kimg_fail(-EINVAL, "%s: the domain XML has a DOCTYPE; refusing DTDs and entities "
                        "(libvirt never writes them)", label);
    } else if (!dom->doc || !ctxt->wellFormed) {
        parse_error(ctxt, label);
        ret = -EINVAL;
    } else if (dom->doc->intSubset || dom->doc->extSubset) {
        ret = kimg_fail(-EINVAL, "%s: the domain XML has a DOCTYPE; refusing DTDs", label);
    }
    xmlFreeParserCtxt(ctxt);
    if (ret == 0)
        ret = parse_tree(dom, label);
    if (ret < 0) {
        clone_dom_free(dom);
        return ret;
    }
    *out = dom;
    return 0;
}

int clone_dom_parse_file(struct clone_dom **out, const char *path)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return kimg_fail(-errno, "%s: cannot open the domain XML: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return kimg_fail(-EINVAL, "%s: the domain XML is not a regular file", path);
    }
    if ((uint64_t)st.st_size > CLONE_MAX_XML_BYTES) {
        close(fd);
        return kimg_fail(-EFBIG, "%s: the domain XML is larger than %u MiB", path,
                         CLONE_MAX_XML_BYTES >> 20);
    }
    /* read to EOF, never more than the cap + 1 (the file may grow) */
    size_t cap = (size_t)st.st_size + 1, len = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    for (;;) {
        if (len == cap) {
            if (cap > CLONE_MAX_XML_BYTES)
                break;
            size_t ncap = cap * 2 > CLONE_MAX_XML_BYTES + 1 ? CLONE_MAX_XML_BYTES + 1 : cap * 2;
            char *nb = realloc(buf, ncap + 1);
            if (!nb) {
                free(buf);
                close(fd);
                return -ENOMEM;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            free(buf);
            close(fd);
            return kimg_fail(-e, "%s: cannot read the domain XML: %s", path, strerror(e));
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    int ret = clone_dom_parse_memory(out, buf, len, path);
    free(buf);
    return ret;
}

/* ---- edits ---------------------------------------------------------------------- */

int clone_dom_set_name(struct clone_dom *dom, const char *name)
{
    xmlNode *n = child_elem(dom->root, "name");
    return n ? set_text(n, name) : -EINVAL;
}

int clone_dom_set_uuid(struct clone_dom *dom, const char *uuid)
{
    int r;
    xmlNode *u = child_elem(dom->root, "uuid");
    if (u) {
        if ((r = set_text(u, uuid)) < 0)
            return r;
    } else {
        xmlNode *name = child_elem(dom->root, "name");
        u = xmlNewDocNode(dom->doc, NULL, BAD_CAST "uuid", NULL);
        if (!u || !name || (r = set_text(u, uuid)) < 0 || (r = insert_after(name, u)) < 0) {
            xmlFreeNode(u);
            return -ENOMEM;
        }
    }
    /* <sysinfo type='smbios'><system><entry name='uuid'> must match */
    for (xmlNode *s = dom->root->children; s; s = s->next) {
        if (!is_elem(s, "sysinfo"))
            continue;
        for (xmlNode *sys = s->children; sys; sys = sys->next) {
            if (!is_elem(sys, "system"))
                continue;
            for (xmlNode *e = sys->children; e; e = e->next)
                if (is_elem(e, "entry") && attr_is(e, "name", "uuid") &&
                    (r = set_text(e, uuid)) < 0)
                    return r;
        }
    }
    return 0;
}

int clone_dom_set_mac(struct clone_dom *dom, int i, const char *mac)
{
    if (i < 0 || i >= dom->nb_nics)
        return -EINVAL;
    xmlNode *nic = dom->nics[i].node;
    xmlNode *m = child_elem(nic, "mac");
    if (m)
        return set_attr(m, "address", mac);
    m = xmlNewDocNode(dom->doc, NULL, BAD_CAST "mac", NULL);
    if (!m || set_attr(m, "address", mac) < 0 || insert_first(nic, m) < 0) {
        xmlFreeNode(m);
        return -ENOMEM;
    }
    return 0;
}

/* A port attribute that names a fixed port (not "-1", the automatic one). */
static bool fixed_port(const xmlNode *n, const char *name)
{
    xmlChar *v = xmlGetNoNsProp(n, BAD_CAST name);
    bool r = v && strcmp((const char *)v, "-1") && strcmp((const char *)v, "0");
    xmlFree(v);
    return r;
}

static int unique_graphics(xmlNode *g, struct clone_unique_notes *notes)
{
    static const char *const ports[] = { "port", "tlsPort", "websocket" };
    bool changed = false;
    for (size_t k = 0; k < sizeof(ports) / sizeof(ports[0]); k++)
        if (fixed_port(g, ports[k])) {
            if (set_attr(g, ports[k], "-1") < 0)
                return -ENOMEM;
            changed = true;
        }
    if (changed)
        unset_attr(g, "autoport");   /* port -1 means automatic (virt-clone drops it too) */
    /* a fixed unix socket would be shared by both guests: libvirt makes one */
    if (xmlHasProp(g, BAD_CAST "socket")) {
        unset_attr(g, "socket");
        changed = true;
    }
    for (xmlNode *l = g->children; l; l = l->next)
        if (is_elem(l, "listen") && attr_is(l, "type", "socket") &&
            xmlHasProp(l, BAD_CAST "socket")) {
            unset_attr(l, "socket");
            changed = true;
        }
    if (changed)
        notes->graphics_ports++;
    return 0;
}

/* virt-clone's rule: a unix channel whose socket path contains its target
 * name (the guest agent's "org.qemu.guest_agent.0") loses the path, so
 * libvirt makes one under the new name. */
static void unique_channel(xmlNode *ch, struct clone_unique_notes *notes)
{
    if (!attr_is(ch, "type", "unix"))
        return;
    xmlNode *src = child_elem(ch, "source"), *tgt = child_elem(ch, "target");
    if (!src || !tgt)
        return;
    xmlChar *path = xmlGetNoNsProp(src, BAD_CAST "path");
    xmlChar *tname = xmlGetNoNsProp(tgt, BAD_CAST "name");
    if (path && tname && *tname && strstr((const char *)path, (const char *)tname)) {
        unset_attr(src, "path");
        notes->channel_paths++;
    }
    xmlFree(path);
    xmlFree(tname);
}

int clone_dom_make_unique(struct clone_dom *dom, const char *new_genid,
                          struct clone_unique_notes *notes)
{
    memset(notes, 0, sizeof(*notes));
    unset_attr(dom->root, "id");
    xmlNode *c = dom->root->children;
    while (c) {
        xmlNode *next = c->next;
        if (is_elem(c, "title")) {
            remove_node(c);
        } else if (is_elem(c, "genid") && new_genid) {
            char *t = text_of(c);
            bool has_value = t && *t;
            free(t);
            if (has_value) {
                if (set_text(c, new_genid) < 0)
                    return -ENOMEM;
                notes->genid = true;
            }
        }
        c = next;
    }
    xmlNode *devices = child_elem(dom->root, "devices");
    if (!devices)
        return 0;
    for (xmlNode *d = devices->children; d; d = d->next) {
        if (is_elem(d, "graphics")) {
            if (unique_graphics(d, notes) < 0)
                return -ENOMEM;
        } else if (is_elem(d, "channel")) {
            unique_channel(d, notes);
        } else if (is_elem(d, "interface")) {
            xmlNode *t = child_elem(d, "target");
            if (t && xmlHasProp(t, BAD_CAST "dev")) {
                unset_attr(t, "dev");
                if (!t->properties && !t->children)
                    remove_node(t);
            }
        } else if (is_elem(d, "vsock")) {
            xmlNode *cid = child_elem(d, "cid");
            if (cid && !attr_is(cid, "auto", "yes") && xmlHasProp(cid, BAD_CAST "address")) {
                unset_attr(cid, "address");
                if (set_attr(cid, "auto", "yes") < 0)
                    return -ENOMEM;
                notes->vsock_cids++;
            }
        } else if (is_elem(d, "tpm")) {
            xmlNode *b = child_elem(d, "backend");
            if (b && attr_is(b, "type", "emulator"))
                notes->tpm = true;
        }
    }
    return 0;
}

bool clone_dom_has_emulated_tpm(struct clone_dom *dom)
{
    xmlNode *devices = child_elem(dom->root, "devices");
    for (xmlNode *d = devices ? devices->children : NULL; d; d = d->next) {
        xmlNode *b = is_elem(d, "tpm") ? child_elem(d, "backend") : NULL;
        if (b && attr_is(b, "type", "emulator"))
            return true;
    }
    return false;
}

/* <backingStore type='file'><format type='F'/><source file='B'/>OLD</backingStore> */
static xmlNode *new_backing_store(xmlDoc *doc, const char *backing, const char *bfmt,
                                  const char *ind, xmlNode *old)
{
    xmlNode *bs = xmlNewDocNode(doc, NULL, BAD_CAST "backingStore", NULL);
    xmlNode *f = xmlNewDocNode(doc, NULL, BAD_CAST "format", NULL);
    xmlNode *s = xmlNewDocNode(doc, NULL, BAD_CAST "source", NULL);
    size_t n = strlen(ind);
    char *inner = malloc(n + 3);
    if (!bs || !f || !s || !inner || set_attr(bs, "type", "file") < 0 ||
        set_attr(f, "type", bfmt) < 0 || set_attr(s, "file", backing) < 0) {
        xmlFreeNode(bs);
        xmlFreeNode(f);
        xmlFreeNode(s);
        free(inner);
        return NULL;
    }
    memcpy(inner, ind, n);
    memcpy(inner + n, "  ", 3);
    xmlAddChild(bs, xmlNewDocText(doc, BAD_CAST inner));
    xmlAddChild(bs, f);
    xmlAddChild(bs, xmlNewDocText(doc, BAD_CAST inner));
    xmlAddChild(bs, s);
    if (old) {
        xmlAddChild(bs, xmlNewDocText(doc, BAD_CAST inner));
        xmlAddChild(bs, old);
    }
    xmlAddChild(bs, xmlNewDocText(doc, BAD_CAST ind));
    free(inner);
    return bs;
}

/* Does a <backingStore> describe a backing file (not the empty "none")? */
static bool backing_store_has_content(const xmlNode *bs)
{
    for (const xmlNode *c = bs->children; c; c = c->next)
        if (c->type == XML_ELEMENT_NODE)
            return true;
    return bs->properties != NULL;
}

int clone_dom_set_disk(struct clone_dom *dom, int i, const char *path, bool is_block,
                       const char *format, bool standalone, const char *backing,
                       const char *backing_format)
{
    if (i < 0 || i >= dom->nb_disks)
        return -EINVAL;
    xmlNode *disk = dom->disks[i].node;
    if (set_attr(disk, "type", is_block ? "block" : "file") < 0)
        return -ENOMEM;
    xmlNode *src = child_elem(disk, "source");
    if (!src) {
        src = xmlNewDocNode(dom->doc, NULL, BAD_CAST "source", NULL);
        if (!src || insert_first(disk, src) < 0) {
            xmlFreeNode(src);
            return -ENOMEM;
        }
    }
    /* the old location's attributes go; others (startupPolicy, index) stay */
    static const char *const where[] = { "file", "dev", "dir", "protocol", "name", "pool",
                                         "volume", "mode", "type", "managed", "namespace" };
    for (size_t k = 0; k < sizeof(where) / sizeof(where[0]); k++)
        unset_attr(src, where[k]);
    xmlNode *c = src->children;
    while (c) {   /* <host> of network sources, <reservations> of LUNs */
        xmlNode *next = c->next;
        if (is_elem(c, "host") || is_elem(c, "auth") || is_elem(c, "config") ||
            is_elem(c, "snapshot") || is_elem(c, "initiator") || is_elem(c, "address"))
            remove_node(c);
        c = next;
    }
    if (set_attr(src, is_block ? "dev" : "file", path) < 0)
        return -ENOMEM;
    if (format) {
        xmlNode *drv = child_elem(disk, "driver");
        if (!drv) {
            drv = xmlNewDocNode(dom->doc, NULL, BAD_CAST "driver", NULL);
            if (!drv || set_attr(drv, "name", "qemu") < 0 || insert_first(disk, drv) < 0) {
                xmlFreeNode(drv);
                return -ENOMEM;
            }
        }
        if (set_attr(drv, "type", format) < 0)
            return -ENOMEM;
    }
    xmlNode *bs = child_elem(disk, "backingStore");
    if (backing) {
        if (!bs)
            return 0;     /* libvirt reads the chain from the image */
        const char *ind = indent_of(bs);
        xmlNode *ref = bs->prev;
        xmlNode *parent = bs->parent;
        xmlUnlinkNode(bs);
        xmlNode *nbs = new_backing_store(dom->doc, backing, backing_format,
                                         *ind == '\n' ? ind : "\n", bs);
        if (!nbs) {
            xmlFreeNode(bs);
            return -ENOMEM;
        }
        if (ref)
            xmlAddNextSibling(ref, nbs);
        else
            xmlAddChild(parent, nbs);
    } else if (standalone && bs && backing_store_has_content(bs)) {
        remove_node(bs);   /* the clone stands alone; libvirt probes it */
    }
    return 0;
}

int clone_dom_set_nvram(struct clone_dom *dom, const char *path)
{
    xmlNode *os = child_elem(dom->root, "os");
    xmlNode *nv = os ? child_elem(os, "nvram") : NULL;
    if (!nv)
        return -EINVAL;
    xmlNode *src = child_elem(nv, "source");
    if (src)
        return set_attr(src, "file", path);
    return set_text(nv, path);
}

/* ---- serial and console log files ------------------------------------------ */

/* The <source> of the I-th serial or console device of type 'file' that
 * has a path, or NULL. */
static xmlNode *log_source(struct clone_dom *dom, int i)
{
    xmlNode *devices = child_elem(dom->root, "devices");
    int k = 0;
    for (xmlNode *c = devices ? devices->children : NULL; c; c = c->next) {
        if (!(is_elem(c, "serial") || is_elem(c, "console")) || !attr_is(c, "type", "file"))
            continue;
        xmlNode *src = child_elem(c, "source");
        if (!src || !xmlHasNsProp(src, BAD_CAST "path", NULL))
            continue;
        if (k++ == i)
            return src;
    }
    return NULL;
}

int clone_dom_nb_logs(struct clone_dom *dom)
{
    int n = 0;
    while (n <= CLONE_MAX_DISKS && log_source(dom, n))
        n++;
    return n;
}

const char *clone_dom_log_path(struct clone_dom *dom, int i)
{
    xmlNode *src = log_source(dom, i);
    xmlAttr *a = src ? xmlHasNsProp(src, BAD_CAST "path", NULL) : NULL;
    if (!a || !a->children || a->children->type != XML_TEXT_NODE)
        return NULL;
    return (const char *)a->children->content;
}

int clone_dom_set_log_path(struct clone_dom *dom, int i, const char *path)
{
    xmlNode *src = log_source(dom, i);
    return src ? set_attr(src, "path", path) : -EINVAL;
}

int clone_dom_serialize(struct clone_dom *dom, char **out, size_t *len)
{
    *out = NULL;
    xmlBufferPtr buf = xmlBufferCreate();
    if (!buf)
        return -ENOMEM;
    xmlSaveCtxtPtr save = xmlSaveToBuffer(buf, "UTF-8", dom->has_decl ? 0 : XML_SAVE_NO_DECL);
    if (!save) {
        xmlBufferFree(buf);
        return -ENOMEM;
    }
    long r = xmlSaveDoc(save, dom->doc);
    if (xmlSaveClose(save) < 0 || r < 0) {
        xmlBufferFree(buf);
        return kimg_fail(-EIO, "cannot serialise the new domain XML");
    }
    size_t n = (size_t)xmlBufferLength(buf);
    char *s = malloc(n + 2);
    if (!s) {
        xmlBufferFree(buf);
        return -ENOMEM;
    }
    memcpy(s, xmlBufferContent(buf), n);
    xmlBufferFree(buf);
    if (!n || s[n - 1] != '\n')
        s[n++] = '\n';
    s[n] = '\0';
    *out = s;
    *len = n;
    return 0;
}
