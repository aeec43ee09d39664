/*
 * ovf.c — an OVA's OVF descriptor (DSP0243 1.x, 2.x) through libxml2, from
 * memory, network off, DTDs and entities refused (nothing loaded or
 * expanded), at most OVA_MAX_OVF_BYTES: References/File (id, href, size,
 * compression, chunkSize) and DiskSection/Disk (fileRef), in order.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "ova.h"
#include "xml_api.h"

#define OVF_NS1 "http://schemas.dmtf.org/ovf/envelope/1"
#define OVF_NS2 "http://schemas.dmtf.org/ovf/envelope/2"

static bool ovf_ns(const xmlNode *n)
{
    return n->ns && n->ns->href && (!strcmp((const char *)n->ns->href, OVF_NS1) ||
                                    !strcmp((const char *)n->ns->href, OVF_NS2));
}

static bool is_elem(const xmlNode *n, const char *name)
{
    return n->type == XML_ELEMENT_NODE && ovf_ns(n) && !strcmp((const char *)n->name, name);
}

/* An attribute in the OVF namespace (ovf:href), or unqualified (some
 * exporters write href="..."); a malloc'd copy or NULL. */
static char *attr(const xmlNode *n, const char *name)
{
    xmlChar *v = xmlGetNsProp(n, (const xmlChar *)name, n->ns ? n->ns->href : NULL);
    if (!v)
        v = xmlGetNoNsProp(n, (const xmlChar *)name);
    if (!v)
        return NULL;
    char *s = strdup((const char *)v);
    xmlFree(v);
    return s;
}

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

/* libxml2's generic error channel (encoding converters write "I/O error
 * : encoder error" there even with XML_PARSE_NOERROR): silenced while
 * parsing, so a bad document gives kimg's one error line alone. */
static void quiet(void *ctx, const char *msg, ...) { }

static int parse_doc(const char *buf, size_t len, xmlDocPtr *out)
{
    *out = NULL;
    if (len > OVA_MAX_OVF_BYTES)
        return kimg_fail(-EFBIG, "the OVF descriptor is larger than %u MiB",
                         OVA_MAX_OVF_BYTES >> 20);
    if (len == 0)
        return kimg_fail(-EINVAL, "the OVF descriptor is empty");
    int r = kimg_libxml_load();
    if (r < 0)
        return r;
    xmlParserCtxtPtr ctxt = xmlNewParserCtxt();
    if (!ctxt)
        return -ENOMEM;
    ctxt->sax->internalSubset = refuse_dtd;
    ctxt->sax->externalSubset = refuse_dtd;
    ctxt->sax->entityDecl = refuse_entity;
    ctxt->_private = NULL;
    int opts = XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING;
#if LIBXML_VERSION >= 21300
    opts |= XML_PARSE_NO_XXE;
#endif
    xmlGenericErrorFunc saved = xmlGenericError;
    void *saved_ctx = xmlGenericErrorContext;
    xmlSetGenericErrorFunc(NULL, quiet);
    xmlDocPtr doc = xmlCtxtReadMemory(ctxt, buf, (int)len, NULL, NULL, opts);
    xmlSetGenericErrorFunc(saved_ctx, saved);
    int ret = 0;
    if (ctxt->_private || (doc && (doc->intSubset || doc->extSubset)))
        ret = kimg_fail(-EINVAL, "the OVF descriptor has a DOCTYPE; refusing DTDs and "
                        "entities");
    else if (!doc || !ctxt->wellFormed)
        ret = kimg_fail(-EINVAL, "the OVF descriptor is not well-formed XML (line %d)",
                        ctxt->input ? ctxt->input->line : 0);
    xmlFreeParserCtxt(ctxt);
    if (ret < 0) {
        xmlFreeDoc(doc);
        return ret;
    }
    *out = doc;
    return 0;
}

/* One References/File: its id, href and the facts kimg checks. */
struct file_ref {
    char *id, *href;
    int64_t size;
};

static int parse_size(const char *s, int64_t *out)
{
    int64_t v = 0;
    if (!*s || strlen(s) > 19)
        return -EINVAL;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (INT64_MAX - 9) / 10)
            return -EINVAL;
        v = v * 10 + (*s - '0');
    }
    *out = v;
    return 0;
}

static int parse_file(const xmlNode *n, struct file_ref *f)
{
    char *comp = attr(n, "compression"), *chunk = attr(n, "chunkSize"), *size = attr(n, "size");
    int ret = 0;
    f->id = attr(n, "id");
    f->href = attr(n, "href");
    f->size = -1;
    if (!f->id || !f->href)
        ret = kimg_fail(-EINVAL, "the OVF descriptor has a File without ovf:id or ovf:href");
    else if (comp && strcmp(comp, "identity"))
        ret = kimg_fail(-ENOTSUP, "OVF file '%.200s' is compressed (ovf:compression=\"%.20s\"); "
                        "kimg reads uncompressed members only: unpack the archive and "
                        "gunzip it", f->href, comp);
    else if (chunk)
        ret = kimg_fail(-ENOTSUP, "OVF file '%.200s' is split in chunks (ovf:chunkSize); "
                        "kimg does not join chunks", f->href);
    else if (size && parse_size(size, &f->size) < 0)
        ret = kimg_fail(-EINVAL, "OVF file '%.200s' has a bad ovf:size", f->href);
    else if (!*f->href || strchr(f->href, '/') || strchr(f->href, ':') || strstr(f->href, ".."))
        ret = kimg_fail(-EINVAL, "OVF file '%.200s' is not a plain member name; kimg reads "
                        "nothing outside the archive", f->href);
    free(comp);
    free(chunk);
    free(size);
    return ret;
}

static void free_refs(struct file_ref *r, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        free(r[i].id);
        free(r[i].href);
    }
    free(r);
}

static int add_disk(struct ova_ovf *o, const struct file_ref *f)
{
    if (o->n >= OVA_MAX_DISKS)
        return kimg_fail(-EINVAL, "the OVF descriptor lists more than %u disks", OVA_MAX_DISKS);
    for (unsigned i = 0; i < o->n; i++)
        if (!strcmp(o->d[i].href, f->href))
            return kimg_fail(-EINVAL, "two OVF disks use the file '%.200s'", f->href);
    struct ova_ovf_disk *d = realloc(o->d, (o->n + 1) * sizeof(*d));
    if (!d)
        return -ENOMEM;
    o->d = d;
    if (!(d[o->n].href = strdup(f->href)))
        return -ENOMEM;
    d[o->n++].size = f->size;
    return 0;
}

/* The sections kimg reads, with the References parsed into R (*NR). */
static int walk(xmlNode *root, struct ova_ovf *o, struct file_ref **r, unsigned *nr)
{
    xmlNode *disks = NULL;
    int ret = 0;
    for (xmlNode *c = root->children; c && ret == 0; c = c->next) {
        if (is_elem(c, "References")) {
            for (xmlNode *f = c->children; f && ret == 0; f = f->next) {
                if (!is_elem(f, "File"))
                    continue;
                if (*nr >= OVA_MAX_MEMBERS) {
                    ret = kimg_fail(-EINVAL, "the OVF descriptor lists more than %u files",
                                    OVA_MAX_MEMBERS);
                    break;
                }
                struct file_ref *nrf = realloc(*r, (*nr + 1) * sizeof(**r));
                if (!nrf)
                    return -ENOMEM;
                *r = nrf;
                memset(&nrf[*nr], 0, sizeof(nrf[*nr]));
                ret = parse_file(f, &nrf[(*nr)++]);
            }
        } else if (is_elem(c, "DiskSection") && !disks) {
            disks = c;
        }
    }
    for (xmlNode *d = disks ? disks->children : NULL; d && ret == 0; d = d->next) {
        if (!is_elem(d, "Disk"))
            continue;
        char *ref = attr(d, "fileRef");
        const struct file_ref *f = NULL;
        for (unsigned i = 0; ref && i < *nr && !f; i++)
            if (!strcmp((*r)[i].id, ref))
                f = &(*r)[i];
        if (ref && !f)
            ret = kimg_fail(-EINVAL, "OVF disk file reference '%.200s' names no File in "
                            "the References", ref);
        else if (f)
            ret = add_disk(o, f);   /* no fileRef: a blank disk to create */
        free(ref);
    }
    return ret;
}

int ova_ovf_parse(const char *buf, size_t len, struct ova_ovf *out)
{
    xmlDocPtr doc;
    struct ova_ovf o = { 0 };
    struct file_ref *refs = NULL;
    unsigned nrefs = 0;
    int ret = parse_doc(buf, len, &doc);
    if (ret < 0)
        return ret;
    xmlNode *root = xmlDocGetRootElement(doc);
    if (!root || !is_elem(root, "Envelope"))
        ret = kimg_fail(-EINVAL, "the OVF descriptor is not an OVF Envelope (namespace %s or "
                        "%s)", OVF_NS1, OVF_NS2);
    else
        ret = walk(root, &o, &refs, &nrefs);
    free_refs(refs, nrefs);
    xmlFreeDoc(doc);
    if (ret == 0 && o.n == 0)
        ret = kimg_fail(-EINVAL, "the OVF descriptor lists no disk with a file");
    if (ret < 0) {
        if (ret == -ENOMEM)
            kimg_error("out of memory");
        ova_ovf_free(&o);
        return ret;
    }
    *out = o;
    return 0;
}

void ova_ovf_free(struct ova_ovf *o)
{
    for (unsigned i = 0; i < o->n; i++)
        free(o->d[i].href);
    free(o->d);
    o->d = NULL;
    o->n = 0;
}
