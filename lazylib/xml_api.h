/*
 * lazylib/xml_api.h — libxml2, loaded on the first XML document or NBD
 * URI kimg parses (lazylib.h says why and how).  Include this instead of
 * libxml2's headers, and call kimg_libxml_load() before the first libxml2
 * call.  xmlFree is a variable in libxml2 (its allocator hook), reached
 * through a pointer here; xmlGenericError and xmlGenericErrorContext are
 * libxml2's own macros over the functions listed.
 */
#ifndef KIMG_LAZYLIB_LIBXML_H
#define KIMG_LAZYLIB_LIBXML_H

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/uri.h>
#include <libxml/xmlerror.h>
#include <libxml/xmlsave.h>
#include <libxml/xmlversion.h>
#include "lazylib.h"

#define KIMG_LIBXML_SONAME "libxml2.so.2"

/* Every libxml2 function kimg calls. */
#define KIMG_LIBXML_FUNCS(X)                                                      \
    X(xmlInitParser) X(xmlNewParserCtxt) X(xmlFreeParserCtxt) X(xmlCtxtReadMemory) \
    X(xmlCtxtGetLastError) X(xmlStopParser) X(xmlSetGenericErrorFunc)              \
    X(__xmlGenericError) X(__xmlGenericErrorContext) X(xmlFreeDoc)                 \
    X(xmlDocGetRootElement) X(xmlGetNoNsProp) X(xmlGetNsProp) X(xmlHasProp)        \
    X(xmlHasNsProp) X(xmlSetProp) X(xmlUnsetProp) X(xmlNodeGetContent)             \
    X(xmlNewDocNode) X(xmlNewDocText) X(xmlAddChild) X(xmlAddNextSibling)          \
    X(xmlAddPrevSibling) X(xmlUnlinkNode) X(xmlFreeNode) X(xmlCheckUTF8)           \
    X(xmlBufferCreate) X(xmlBufferFree) X(xmlBufferContent) X(xmlBufferLength)     \
    X(xmlSaveToBuffer) X(xmlSaveDoc) X(xmlSaveClose)                               \
    X(xmlParseURI) X(xmlFreeURI) X(xmlURIUnescapeString)

struct kimg_libxml_api {
    KIMG_LIBXML_FUNCS(KIMG_LAZY_MEMBER)
    xmlFreeFunc *xmlFree_var;           /* &xmlFree */
};
extern struct kimg_libxml_api kimg_libxml;

/* 0, or -ENOTSUP with a message ("XML and URI parsing needs libxml2.so.2, ..."). */
int kimg_libxml_load(void);

#ifndef KIMG_LAZYLIB_IMPL
#define xmlFree                         (*kimg_libxml.xmlFree_var)
#define xmlInitParser                   kimg_libxml.xmlInitParser
#define xmlNewParserCtxt                kimg_libxml.xmlNewParserCtxt
#define xmlFreeParserCtxt               kimg_libxml.xmlFreeParserCtxt
#define xmlCtxtReadMemory               kimg_libxml.xmlCtxtReadMemory
#define xmlCtxtGetLastError             kimg_libxml.xmlCtxtGetLastError
#define xmlStopParser                   kimg_libxml.xmlStopParser
#define xmlSetGenericErrorFunc          kimg_libxml.xmlSetGenericErrorFunc
#define __xmlGenericError               kimg_libxml.__xmlGenericError
#define __xmlGenericErrorContext        kimg_libxml.__xmlGenericErrorContext
#define xmlFreeDoc                      kimg_libxml.xmlFreeDoc
#define xmlDocGetRootElement            kimg_libxml.xmlDocGetRootElement
#define xmlGetNoNsProp                  kimg_libxml.xmlGetNoNsProp
#define xmlGetNsProp                    kimg_libxml.xmlGetNsProp
#define xmlHasProp                      kimg_libxml.xmlHasProp
#define xmlHasNsProp                    kimg_libxml.xmlHasNsProp
#define xmlSetProp                      kimg_libxml.xmlSetProp
#define xmlUnsetProp                    kimg_libxml.xmlUnsetProp
#define xmlNodeGetContent               kimg_libxml.xmlNodeGetContent
#define xmlNewDocNode                   kimg_libxml.xmlNewDocNode
#define xmlNewDocText                   kimg_libxml.xmlNewDocText
#define xmlAddChild                     kimg_libxml.xmlAddChild
#define xmlAddNextSibling               kimg_libxml.xmlAddNextSibling
#define xmlAddPrevSibling               kimg_libxml.xmlAddPrevSibling
#define xmlUnlinkNode                   kimg_libxml.xmlUnlinkNode
#define xmlFreeNode                     kimg_libxml.xmlFreeNode
#define xmlCheckUTF8                    kimg_libxml.xmlCheckUTF8
#define xmlBufferCreate                 kimg_libxml.xmlBufferCreate
#define xmlBufferFree                   kimg_libxml.xmlBufferFree
#define xmlBufferContent                kimg_libxml.xmlBufferContent
#define xmlBufferLength                 kimg_libxml.xmlBufferLength
#define xmlSaveToBuffer                 kimg_libxml.xmlSaveToBuffer
#define xmlSaveDoc                      kimg_libxml.xmlSaveDoc
#define xmlSaveClose                    kimg_libxml.xmlSaveClose
#define xmlParseURI                     kimg_libxml.xmlParseURI
#define xmlFreeURI                      kimg_libxml.xmlFreeURI
#define xmlURIUnescapeString            kimg_libxml.xmlURIUnescapeString
#endif

#endif
