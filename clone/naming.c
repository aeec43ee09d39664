/*
 * naming.c — virt-clone's naming rules, offline: the --auto-clone domain
 * name ("web01" -> "web01-clone", "x-clone2" -> "x-clone3"), the automatic
 * disk path (extension kept, "-clone" or the new name, "-1", "-2" on
 * collision), domain name checks, and lexical path helpers.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "kimg.h"
#include "clone.h"

char *clone_auto_name(const char *old)
{
    /* virt-clone matches "-clone[1-9]*$" (so "x-clone10" became
     * "x-clone10-clone"); any digits are taken here */
    size_t n = strlen(old), d = n;
    while (d > 0 && old[d - 1] >= '0' && old[d - 1] <= '9')
        d--;
    char *out;
    if (d >= 6 && !memcmp(old + d - 6, "-clone", 6)) {
        unsigned long long num = 0;
        bool overflow = false;
        for (size_t i = d; i < n; i++) {
            if (num > (ULLONG_MAX - 9) / 10)
                overflow = true;
            num = num * 10 + (unsigned long long)(old[i] - '0');
        }
        if (!overflow && n - d <= 18) {
            if (asprintf(&out, "%.*s%llu", (int)d, old, num + 1) < 0)
                return NULL;
            return out;
        }
    }
    if (asprintf(&out, "%s-clone", old) < 0)
        return NULL;
    return out;
}

int clone_check_name(const char *name)
{
    if (!*name)
        return kimg_fail(-EINVAL, "the new domain name is empty");
    int r = clone_check_text("the new domain name", name, CLONE_MAX_NAME);
    if (r < 0)
        return r;
    if (strchr(name, '/'))
        return kimg_fail(-EINVAL, "the new domain name '%s' contains '/'", name);
    if (!strcmp(name, ".") || !strcmp(name, ".."))
        return kimg_fail(-EINVAL, "'%s' is not a usable domain name", name);
    return 0;
}

const char *clone_basename(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

char *clone_dirname(const char *path)
{
    const char *s = strrchr(path, '/');
    if (!s)
        return strdup(".");
    if (s == path)
        return strdup("/");
    return strndup(path, (size_t)(s - path));
}

char *clone_abspath(const char *path)
{
    char *joined;
    if (path[0] == '/') {
        joined = strdup(path);
    } else {
        char *cwd = getcwd(NULL, 0);
        if (!cwd)
            return NULL;
        int r = asprintf(&joined, "%s/%s", cwd, path);
        free(cwd);
        if (r < 0)
            return NULL;
    }
    if (!joined)
        return NULL;
    /* normalise in place: split on '/', drop "" and ".", pop on ".." */
    size_t n = strlen(joined);
    char *out = malloc(n + 2);
    if (!out) {
        free(joined);
        return NULL;
    }
    size_t k = 0;
    char *save = NULL;
    for (char *tok = strtok_r(joined, "/", &save); tok; tok = strtok_r(NULL, "/", &save)) {
        if (!strcmp(tok, "."))
            continue;
        if (!strcmp(tok, "..")) {
            while (k > 0 && out[k - 1] != '/')
                k--;
            if (k > 0)
                k--;
            continue;
        }
        out[k++] = '/';
        size_t t = strlen(tok);
        memcpy(out + k, tok, t);
        k += t;
    }
    if (k == 0)
        out[k++] = '/';
    out[k] = '\0';
    free(joined);
    return out;
}

int clone_auto_path(const char *orig, const char *old_name, const char *new_name, bool batch,
                    clone_taken_fn taken, void *opaque, char **out)
{
    *out = NULL;
    char *dir = clone_dirname(orig);
    if (!dir)
        return -ENOMEM;
    const char *base = clone_basename(orig);
    /* the extension is looked for in the base name only (virt-clone split
     * the whole path, so "/a.b/disk" kept ".b/disk" as an "extension") */
    const char *dot = strrchr(base, '.');
    size_t stem_len = strlen(base);
    const char *ext = "";
    if (dot && strlen(dot + 1) <= 7) {
        stem_len = (size_t)(dot - base);
        ext = dot;
    }
    char *stem;
    if (old_name && strlen(old_name) == stem_len && !memcmp(base, old_name, stem_len))
        stem = strdup(new_name);
    else if (asprintf(&stem, "%.*s-%s", (int)stem_len, base, batch ? new_name : "clone") < 0)
        stem = NULL;
    if (!stem) {
        free(dir);
        return -ENOMEM;
    }
    const char *sep = strcmp(dir, "/") ? "/" : "";
    int ret = -EEXIST;
    for (long i = 0; i <= 100000; i++) {
        char *cand;
        int r = i == 0 ? asprintf(&cand, "%s%s%s%s", dir, sep, stem, ext)
                       : asprintf(&cand, "%s%s%s-%ld%s", dir, sep, stem, i, ext);
        if (r < 0) {
            ret = -ENOMEM;
            break;
        }
        if (!taken || !taken(cand, opaque)) {
            *out = cand;
            ret = 0;
            break;
        }
        free(cand);
    }
    if (ret == -EEXIST)
        kimg_error("%s: no free name for its clone", orig);
    free(dir);
    free(stem);
    return ret;
}

/* ---- batch templates ("{n}" from 1, "{name}" the clone's name) ---------- */

bool clone_has_placeholder(const char *tmpl, bool name_too)
{
    return strstr(tmpl, "{n}") || (name_too && strstr(tmpl, "{name}"));
}

char *clone_expand(const char *tmpl, int n, const char *name)
{
    char num[16];
    snprintf(num, sizeof(num), "%d", n);
    size_t cap = strlen(tmpl) + 1, k = 0;
    for (const char *s = tmpl; (s = strchr(s, '{')); s++)
        cap += sizeof(num) + (name ? strlen(name) : 0);
    char *out = malloc(cap);
    if (!out)
        return NULL;
    for (const char *s = tmpl; *s;) {
        if (!strncmp(s, "{n}", 3)) {
            k += (size_t)sprintf(out + k, "%s", num);
            s += 3;
        } else if (name && !strncmp(s, "{name}", 6)) {
            memcpy(out + k, name, strlen(name));
            k += strlen(name);
            s += 6;
        } else {
            out[k++] = *s++;
        }
    }
    out[k] = '\0';
    return out;
}
