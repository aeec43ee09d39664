/*
 * tpm.c — --copy-tpm-state: the template's emulated TPM state, the folder
 * libvirt keeps for swtpm under STATEDIR/UUID (tpm2/, tpm1.2/), copied to
 * STATEDIR/NEW-UUID with its modes (and owners, as root).  Checked before
 * any write (only folders and regular files, capped); each file is an
 * UNDO output and each folder a registered one (kimg/output.h), so a
 * failure or a signal removes them all.  The clone then shares the
 * template's TPM identity.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "kimg.h"
#include "clone.h"

#define TPM_MAX_DEPTH 4

/* Walk SRC: count entries and bytes, refuse anything but folders and
 * regular files. */
static int check_tree(const char *src, int depth, int *entries, uint64_t *bytes)
{
    DIR *d = opendir(src);
    if (!d)
        return kimg_fail(-errno, "--copy-tpm-state: %s: %s", src, strerror(errno));
    int r = 0;
    struct dirent *e;
    while (r == 0 && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char path[PATH_MAX];
        struct stat st;
        if (snprintf(path, sizeof(path), "%s/%s", src, e->d_name) >= (int)sizeof(path)) {
            r = kimg_fail(-ENAMETOOLONG, "--copy-tpm-state: %s: a name is too long", src);
            break;
        }
        if (++*entries > CLONE_TPM_MAX_ENTRIES) {
            r = kimg_fail(-E2BIG, "--copy-tpm-state: %s holds more than %d entries", src,
                          CLONE_TPM_MAX_ENTRIES);
            break;
        }
        if (lstat(path, &st) < 0) {
            r = kimg_fail(-errno, "--copy-tpm-state: %s: %s", path, strerror(errno));
        } else if (S_ISDIR(st.st_mode)) {
            r = depth >= TPM_MAX_DEPTH
                ? kimg_fail(-ELOOP, "--copy-tpm-state: %s: folders nested too deep", path)
                : check_tree(path, depth + 1, entries, bytes);
        } else if (S_ISREG(st.st_mode)) {
            *bytes += (uint64_t)st.st_size;
            if (*bytes > CLONE_TPM_MAX_BYTES)
                r = kimg_fail(-EFBIG, "--copy-tpm-state: %s holds more than %u MiB", src,
                              CLONE_TPM_MAX_BYTES >> 20);
        } else {
            r = kimg_fail(-EINVAL, "--copy-tpm-state: %s is not a file or folder; refused",
                          path);
        }
    }
    closedir(d);
    return r;
}

int clone_tpm_plan(struct clone_plan *p, const struct clone_opts *o)
{
    if (!o->copy_tpm_state || !clone_dom_has_emulated_tpm(p->dom))
        return 0;
    const char *dir = o->tpm_state_dir ? o->tpm_state_dir : CLONE_TPM_STATE_DIR;
    char old_uuid[37];
    if (!p->dom->uuid || clone_uuid_parse(p->dom->uuid, old_uuid) < 0) {
        kimg_clear_error();
        return kimg_fail(-EINVAL, "--copy-tpm-state: the template has no valid <uuid>, which "
                         "names its TPM state folder");
    }
    int r = clone_check_text("--tpm-state-dir", dir, CLONE_MAX_PATH);
    if (r < 0)
        return r;
    char *abs = clone_abspath(dir);
    if (!abs)
        return -ENOMEM;
    struct stat st;
    if (asprintf(&p->tpm_src, "%s/%s", abs, old_uuid) < 0 ||
        asprintf(&p->tpm_dst, "%s/%s", abs, p->uuid) < 0) {
        p->tpm_src = p->tpm_dst = NULL;
        free(abs);
        return -ENOMEM;
    }
    free(abs);
    if (lstat(p->tpm_src, &st) < 0 && errno == ENOENT) {
        /* never started: swtpm makes the state at the first start */
        free(p->tpm_src);
        free(p->tpm_dst);
        p->tpm_src = p->tpm_dst = NULL;
        return 0;
    }
    if (lstat(p->tpm_src, &st) < 0)
        return kimg_fail(-errno, "--copy-tpm-state: %s: %s", p->tpm_src, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return kimg_fail(-ENOTDIR, "--copy-tpm-state: %s is not a folder", p->tpm_src);
    if (lstat(p->tpm_dst, &st) == 0)
        return kimg_fail(-EEXIST, "--copy-tpm-state: %s already exists; kimg clone never "
                         "overwrites", p->tpm_dst);
    char *parent = clone_dirname(p->tpm_dst);
    if (!parent)
        return -ENOMEM;
    r = access(parent, W_OK | X_OK) < 0
        ? kimg_fail(-EACCES, "--copy-tpm-state: the folder %s is not writable", parent) : 0;
    free(parent);
    int entries = 0;
    uint64_t bytes = 0;
    if (r == 0 && (r = check_tree(p->tpm_src, 1, &entries, &bytes)) == 0)
        p->tpm_entries = entries + 1;   /* and the folder itself */
    return r;
}

static int note_made(struct clone_plan *p, const char *path, bool is_dir)
{
    char **m = realloc(p->tpm_made, (size_t)(p->nb_tpm_made + 1) * sizeof(*m));
    if (m)
        p->tpm_made = m;
    bool *md = realloc(p->tpm_made_dir, (size_t)(p->nb_tpm_made + 1) * sizeof(*md));
    if (md)
        p->tpm_made_dir = md;
    if (!m || !md || !(m[p->nb_tpm_made] = strdup(path)))
        return -ENOMEM;
    md[p->nb_tpm_made++] = is_dir;
    return 0;
}

static void keep_owner(const char *path, const struct stat *st)
{
    if (geteuid() == 0 && lchown(path, st->st_uid, st->st_gid) < 0) {
        /* best effort, as for disk copies */
    }
}

static int copy_file(struct clone_plan *p, const char *src, const char *dst,
                     const struct stat *st)
{
    struct kimg_output out = { 0 };
    int r = kimg_output_begin(&out, dst, KIMG_OUTPUT_UNDO);
    if (r < 0)
        return r;
    int in = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    int fd = open(out.path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    if (in < 0 || fd < 0)
        r = kimg_fail(-errno, "--copy-tpm-state: %s: %s", in < 0 ? src : dst, strerror(errno));
    if (r == 0 && (fchmod(fd, st->st_mode & 07777) < 0))
        r = kimg_fail(-errno, "--copy-tpm-state: %s: %s", dst, strerror(errno));
    if (r == 0)
        keep_owner(out.path, st);
    char buf[65536];
    while (r == 0) {
        ssize_t n = read(in, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = kimg_fail(-errno, "--copy-tpm-state: %s: %s", src, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        for (ssize_t done = 0; done < n && r == 0;) {
            ssize_t w = write(fd, buf + done, (size_t)(n - done));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0)
                r = kimg_fail(-errno, "--copy-tpm-state: %s: %s", dst, strerror(errno));
            else
                done += w;
        }
    }
    if (r == 0 && fsync(fd) < 0)
        r = kimg_fail(-errno, "--copy-tpm-state: %s: %s", dst, strerror(errno));
    if (in >= 0)
        close(in);
    if (fd >= 0)
        close(fd);
    if (r == 0)
        r = kimg_output_commit(&out, true);
    if (r < 0) {
        kimg_output_abort(&out);
        return r;
    }
    return note_made(p, dst, false);
}

/* "--copy-tpm-state: " before the current message. */
static int rewrap_tpm(int r)
{
    const char *m = kimg_last_error();
    char *copy = m ? strdup(m) : NULL;
    kimg_clear_error();
    kimg_error("--copy-tpm-state: %s", copy ? copy : strerror(-r));
    free(copy);
    return r;
}

static int copy_tree(struct clone_plan *p, const char *src, const char *dst)
{
    struct stat st;
    if (lstat(src, &st) < 0)
        return kimg_fail(-errno, "--copy-tpm-state: %s: %s", src, strerror(errno));
    /* registered, so a signal removes it (after the files) */
    int r = kimg_output_mkdir(dst, 0700);
    if (r < 0)
        return rewrap_tpm(r);
    r = note_made(p, dst, true);
    if (r < 0)
        return r;
    DIR *d = opendir(src);
    if (!d)
        return kimg_fail(-errno, "--copy-tpm-state: %s: %s", src, strerror(errno));
    struct dirent *e;
    while (r == 0 && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char s[PATH_MAX], t[PATH_MAX];
        struct stat es;
        if (snprintf(s, sizeof(s), "%s/%s", src, e->d_name) >= (int)sizeof(s) ||
            snprintf(t, sizeof(t), "%s/%s", dst, e->d_name) >= (int)sizeof(t)) {
            r = kimg_fail(-ENAMETOOLONG, "--copy-tpm-state: %s: a name is too long", src);
            break;
        }
        if (lstat(s, &es) < 0)
            r = kimg_fail(-errno, "--copy-tpm-state: %s: %s", s, strerror(errno));
        else if (S_ISDIR(es.st_mode))
            r = copy_tree(p, s, t);
        else if (S_ISREG(es.st_mode))
            r = copy_file(p, s, t, &es);
        else   /* changed since the plan checked it */
            r = kimg_fail(-EINVAL, "--copy-tpm-state: %s is not a file or folder; refused", s);
    }
    closedir(d);
    /* the folder's own mode and owner last (it may not be writable) */
    if (r == 0 && chmod(dst, st.st_mode & 07777) < 0)
        r = kimg_fail(-errno, "--copy-tpm-state: %s: %s", dst, strerror(errno));
    if (r == 0)
        keep_owner(dst, &st);
    return r;
}

int clone_tpm_copy(struct clone_plan *p)
{
    if (!p->tpm_src)
        return 0;
    return copy_tree(p, p->tpm_src, p->tpm_dst);
}

void clone_tpm_remove(struct clone_plan *p, bool files_too)
{
    /* the folders writable first (their modes were copied), then the
     * entries, deepest (latest made) first */
    for (int i = 0; i < p->nb_tpm_made; i++)
        if (p->tpm_made_dir[i] && chmod(p->tpm_made[i], 0700) < 0) {
            /* gone already */
        }
    for (int i = p->nb_tpm_made - 1; i >= 0; i--) {
        if (p->tpm_made_dir[i])
            rmdir(p->tpm_made[i]);
        else if (files_too)
            unlink(p->tpm_made[i]);
    }
    p->nb_tpm_made = 0;
}
