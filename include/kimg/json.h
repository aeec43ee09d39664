/*
 * json.h — a small ordered JSON value tree and a writer with qemu-img's
 * layout (4-space indent, "key": value, object members in the order of
 * qemu's QDict iteration, so output matches qemu-img's byte for byte), plus the
 * one-line form and a "human" dump (qemu's "key: value" with '-' -> ' ').
 * Strings are escaped on output, so names taken from images are safe.
 */
#ifndef KIMG_JSON_H
#define KIMG_JSON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum kimg_jv_type { KIMG_JV_NULL, KIMG_JV_BOOL, KIMG_JV_INT, KIMG_JV_UINT,
                    KIMG_JV_STRING, KIMG_JV_ARRAY, KIMG_JV_OBJECT };

struct kimg_jv {
    enum kimg_jv_type type;
    bool b;
    int64_t i;
    uint64_t u;
    char *s;
    /* arrays and objects: */
    char **keys;           /* objects only */
    struct kimg_jv **items;
    int n, cap;
};

struct kimg_jv *kimg_jv_object(void);
struct kimg_jv *kimg_jv_array(void);
struct kimg_jv *kimg_jv_string(const char *s);
struct kimg_jv *kimg_jv_bool(bool b);
struct kimg_jv *kimg_jv_int(int64_t i);
struct kimg_jv *kimg_jv_uint(uint64_t u);
void kimg_jv_free(struct kimg_jv *v);

/* Append (objects: key, array: key NULL); takes ownership of VAL; returns VAL. */
struct kimg_jv *kimg_jv_add(struct kimg_jv *obj, const char *key, struct kimg_jv *val);
struct kimg_jv *kimg_jv_get(const struct kimg_jv *obj, const char *key);
/* Shorthands for objects. */
void kimg_jv_add_str(struct kimg_jv *obj, const char *key, const char *s);
void kimg_jv_add_bool(struct kimg_jv *obj, const char *key, bool b);
void kimg_jv_add_int(struct kimg_jv *obj, const char *key, int64_t i);
void kimg_jv_add_uint(struct kimg_jv *obj, const char *key, uint64_t u);

/* qemu-img's pretty layout, starting at INDENT levels, no final newline. */
void kimg_jv_print(FILE *out, const struct kimg_jv *v, int indent);
/* qemu's human dump of an object's or array's members ("key: value", '-' in
 * keys shown as ' ', nested containers one level deeper). */
void kimg_jv_print_human(FILE *out, const struct kimg_jv *v, int indent);
/* JSON string with escapes (quotes included). */
void kimg_json_print_string(FILE *out, const char *s);

#endif
