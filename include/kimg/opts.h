/*
 * opts.h — qemu-style option strings ("a=b,c=d", ",," for a literal comma)
 * and sizes ("1.5G": k M G T P E are powers of 1024, case-insensitive,
 * fractions allowed, a trailing "b"/"B" ignored, "KiB" rejected).
 */
#ifndef KIMG_OPTS_H
#define KIMG_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum kimg_opt_type {
    KIMG_OPT_STRING,
    KIMG_OPT_SIZE,
    KIMG_OPT_NUMBER,
    KIMG_OPT_BOOL,     /* on/off (also true/false, yes/no) */
};

struct kimg_optdesc {
    const char *name;
    enum kimg_opt_type type;
    const char *help;
};

/* An option list; opaque (its layout: img/internal.h).  A NULL list is
 * an empty one for every function below. */
struct kimg_opts;

/* Append the options in TEXT to *OPTS (allocating it if NULL).  Later
 * values of a key override earlier ones.  Sets kimg_error on bad syntax. */
int kimg_opts_parse(struct kimg_opts **opts, const char *text);
void kimg_opts_free(struct kimg_opts *opts);
/* Set KEY (replaces). */
int kimg_opts_set(struct kimg_opts **opts, const char *key, const char *value);
/* Refuse keys not in DESC, and values that do not parse as their type. */
int kimg_opts_validate(const struct kimg_opts *opts,
                       const struct kimg_optdesc *desc, const char *fmtname);
/* "help" given as a key, as in "-o help". */
bool kimg_opts_wants_help(const struct kimg_opts *opts);

/* Walking a list: how many keys it holds (each once: a key given again
 * replaced the earlier value in its place), and the I-th key and value
 * (0 <= I < count; the value NULL for a bare "key"), in first-given order. */
int kimg_opts_count(const struct kimg_opts *opts);
const char *kimg_opts_key(const struct kimg_opts *opts, int i);
const char *kimg_opts_value(const struct kimg_opts *opts, int i);
/* Take KEY out of OPTS (an option for the caller, not for the format):
 * returns its value, malloc'd for the caller to free, or NULL if absent
 * or bare; *FOUND tells a bare "key" from an absent one. */
char *kimg_opts_take(struct kimg_opts *opts, const char *key, bool *found);

/* Getters: return 0 and set *out (DEF when absent), or a negative errno
 * with a message when the value does not parse. */
const char *kimg_opts_get(const struct kimg_opts *opts, const char *key);
int kimg_opts_get_size(const struct kimg_opts *opts, const char *key,
                       uint64_t def, uint64_t *out);
int kimg_opts_get_u64(const struct kimg_opts *opts, const char *key,
                      uint64_t def, uint64_t *out);
int kimg_opts_get_bool(const struct kimg_opts *opts, const char *key,
                       bool def, bool *out);

/* Sizes as qemu-img parses them.  kimg_parse_size: the whole string must be
 * a size; returns 0 or -EINVAL / -ERANGE (no message set). */
int kimg_parse_size(const char *text, uint64_t *out);
int kimg_parse_bool(const char *text, bool *out);
/* "10 MiB", "1.5 GiB", "512 B": qemu's size_to_str(). */
void kimg_format_size(uint64_t size, char *buf, size_t buflen);

#endif
