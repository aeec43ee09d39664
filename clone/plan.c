/*
 * plan.c — what a clone will do, decided and checked before anything is
 * written: the new name, UUID and MACs, which disks are cloned, shared or
 * refused, where each copy goes (--file or virt-clone's automatic paths),
 * the nvram, and every refusal (existing destinations, missing folders or
 * sources, network disks, bad values).  Sources are opened read-only here.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include "kimg.h"
#include "clone.h"

#define TMP_SUFFIX_LEN 14   /* "." + ".kimg-XXXXXX" + margin */

const char *clone_action_name(enum clone_action a)
{
    switch (a) {
    case CLONE_SHARE: return "share";
    case CLONE_COPY: return "copy";
    case CLONE_LINK: return "linked";
    case CLONE_REFLINK: return "reflink";
    case CLONE_PRESERVE: return "preserve";
    case CLONE_REPOINT: return "repoint";
    }
    return "?";
}

static bool in_list(const char *s, const char **list, int n)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(s, list[i]))
            return true;
    return false;
}

/* Replace the current error message with "PREFIX: message". */
static int rewrap(int err, const char *prefix)
{
    const char *m = kimg_last_error();
    char *copy = strdup(m ? m : strerror(-err));
    kimg_clear_error();
    kimg_error("%s: %s", prefix, copy ? copy : "error");
    free(copy);
    return err;
}

/* ---- paths in use ------------------------------------------------------------- */

/* Every path the plan reads or writes, for collision checks. */
static bool path_used_one(const struct clone_plan *p, const char *path)
{
    for (int i = 0; i < p->nb_logs; i++)
        if (p->logs[i] && !strcmp(p->logs[i], path))
            return true;
    for (int i = 0; i < p->nb_disks; i++) {
        const struct clone_disk_plan *d = &p->disks[i];
        if ((d->src && !strcmp(d->src, path)) || (d->dst && !strcmp(d->dst, path)))
            return true;
    }
    if (p->has_nvram && ((p->nvram.src && !strcmp(p->nvram.src, path)) ||
                         (p->nvram.dst && !strcmp(p->nvram.dst, path))))
        return true;
    return false;
}

/* ... and every path of the batch's earlier plans */
static bool path_used(const struct clone_plan *p, const char *path)
{
    if (path_used_one(p, path))
        return true;
    return clone_strset_has(p->seen, "path", path);
}

static bool auto_path_taken(const char *path, void *opaque)
{
    struct stat st;
    return lstat(path, &st) == 0 || errno != ENOENT || path_used(opaque, path);
}

/* A new file will be made at DST: its folder must exist and be writable,
 * and DST must not exist (no overwrite, ever) or be used twice. */
static int check_new_file(const struct clone_plan *p, const char *dst, const char *what)
{
    struct stat st;
    if (strlen(clone_basename(dst)) + TMP_SUFFIX_LEN > NAME_MAX)
        return kimg_fail(-ENAMETOOLONG, "%s: %s: the file name is too long", what, dst);
    if (lstat(dst, &st) == 0)
        return kimg_fail(-EEXIST, "%s: %s already exists; kimg clone never overwrites a file",
                         what, dst);
    if (errno != ENOENT)
        return kimg_fail(-errno, "%s: %s: %s", what, dst, strerror(errno));
    if (path_used(p, dst))
        return kimg_fail(-EEXIST, "%s: %s is already used by another disk of this %s",
                         what, dst, p->seen ? "batch" : "clone");
    char *dir = clone_dirname(dst);
    if (!dir)
        return -ENOMEM;
    int ret = 0;
    if (stat(dir, &st) < 0)
        ret = kimg_fail(-ENOENT, "%s: %s: the folder %s does not exist", what, dst, dir);
    else if (!S_ISDIR(st.st_mode))
        ret = kimg_fail(-ENOTDIR, "%s: %s: %s is not a folder", what, dst, dir);
    else if (access(dir, W_OK | X_OK) < 0)
        ret = kimg_fail(-EACCES, "%s: %s: the folder %s is not writable", what, dst, dir);
    free(dir);
    return ret;
}

/* ---- name, uuid, macs ---------------------------------------------------------------- */

static int plan_identity(struct clone_plan *p, const struct clone_opts *o)
{
    struct clone_dom *dom = p->dom;
    int r;
    if (!(p->old_name = strdup(dom->name)))
        return -ENOMEM;
    p->new_name = o->name ? strdup(o->name) : clone_auto_name(dom->name);
    if (!p->new_name)
        return -ENOMEM;
    if ((r = clone_check_name(p->new_name)) < 0)
        return r;
    if (!strcmp(p->new_name, dom->name))
        return kimg_fail(-EINVAL, "the new name '%s' is the original's; a clone needs its "
                         "own name (--name)", p->new_name);
    if (clone_strset_has(p->seen, "name", p->new_name))
            return kimg_fail(-EINVAL, "the name '%s' is given to two clones of the batch",
                             p->new_name);

    char old_uuid[37] = "";
    if (dom->uuid && clone_uuid_parse(dom->uuid, old_uuid) < 0) {
        kimg_clear_error();
        old_uuid[0] = '\0';
    }
    if (o->uuid) {
        if ((r = clone_uuid_parse(o->uuid, p->uuid)) < 0)
            return r;
        if (!strcmp(p->uuid, old_uuid))
            return kimg_fail(-EINVAL, "--uuid %s is the original's UUID", o->uuid);
    } else {
        bool again;
        do {
            clone_uuid_random(p->uuid);
            again = !strcmp(p->uuid, old_uuid);
            again |= clone_strset_has(p->seen, "uuid", p->uuid);
        } while (again);
    }
    clone_uuid_random(p->genid);

    /* MACs: --mac values in interface order, random ones for the rest,
     * all different from each other and from the original's */
    p->nb_macs = dom->nb_nics;
    p->macs = calloc((size_t)dom->nb_nics + 1, sizeof(*p->macs));
    if (!p->macs)
        return -ENOMEM;
    if (o->nb_macs > dom->nb_nics)
        return kimg_fail(-EINVAL, "%d --mac given but the domain has %d interface%s",
                         o->nb_macs, dom->nb_nics, dom->nb_nics == 1 ? "" : "s");
    uint8_t mac[6];
    for (int i = 0; i < o->nb_macs; i++) {
        if (!strcmp(o->macs[i], "RANDOM"))
            continue;
        if ((r = clone_mac_parse(o->macs[i], mac)) < 0)
            return r;
        clone_mac_format(mac, p->macs[i]);
        for (int j = 0; j < i; j++)
            if (!strcmp(p->macs[j], p->macs[i]))
                return kimg_fail(-EINVAL, "--mac %s is given twice", o->macs[i]);
        if (clone_strset_has(p->seen, "mac", p->macs[i]))
                    return kimg_fail(-EINVAL, "--mac %s is given to two clones of the batch",
                                     o->macs[i]);
    }
    for (int i = 0; i < p->nb_macs; i++) {
        if (p->macs[i][0])
            continue;
        for (int tries = 0;; tries++) {
            if (tries > 1000)
                return kimg_fail(-EAGAIN, "cannot find a free random MAC address");
            if ((r = clone_mac_random(mac)) < 0)
                return r;
            char s[18];
            clone_mac_format(mac, s);
            bool used = false;
            for (int j = 0; j < p->nb_macs; j++)
                if (!strcmp(p->macs[j], s) ||
                    (dom->nics[j].mac && !strcasecmp(dom->nics[j].mac, s)))
                    used = true;
            if (clone_strset_has(p->seen, "mac", s))   /* the batch's other clones */
                used = true;
            if (!used) {
                memcpy(p->macs[i], s, sizeof(s));
                break;
            }
        }
    }
    return 0;
}

/* ---- disks ------------------------------------------------------------------------- */

static int check_targets(const struct clone_dom *dom, const char **list, int n,
                         const char *opt)
{
    for (int i = 0; i < n; i++) {
        bool found = false;
        for (int j = 0; j < dom->nb_disks; j++)
            if (dom->disks[j].target && !strcmp(dom->disks[j].target, list[i]))
                found = true;
        if (!found)
            return kimg_fail(-EINVAL, "%s %s: the domain has no disk with target '%s'",
                             opt, list[i], list[i]);
    }
    return 0;
}

/* Decide share or clone for each disk; refuse disks that cannot be cloned. */
static int plan_classify(struct clone_plan *p, const struct clone_opts *o)
{
    struct clone_dom *dom = p->dom;
    int r;
    if ((r = check_targets(dom, o->skip, o->nb_skip, "--skip-copy")) < 0 ||
        (r = check_targets(dom, o->force, o->nb_force, "--force-copy")) < 0)
        return r;
    p->disks = calloc((size_t)dom->nb_disks + 1, sizeof(*p->disks));
    if (!p->disks)
        return -ENOMEM;
    p->nb_disks = dom->nb_disks;
    for (int i = 0; i < dom->nb_disks; i++) {
        const struct clone_xdisk *x = &dom->disks[i];
        struct clone_disk_plan *d = &p->disks[i];
        d->index = i;
        if (x->target) {
            d->target = x->target;
            for (int j = 0; j < i; j++)
                if (dom->disks[j].target && !strcmp(dom->disks[j].target, x->target))
                    return kimg_fail(-EINVAL, "two disks have the target '%s'", x->target);
        } else {
            snprintf(d->target_buf, sizeof(d->target_buf), "disk %d", i + 1);
            d->target = d->target_buf;
        }
        d->src_format = x->format ? x->format : "raw";
        bool local = !strcmp(x->type, "file") || !strcmp(x->type, "block");
        bool empty = local && !x->source;
        bool skip = x->target && in_list(x->target, o->skip, o->nb_skip);
        bool force = x->target && in_list(x->target, o->force, o->nb_force);
        if (skip && force)
            return kimg_fail(-EINVAL, "%s: both --skip-copy and --force-copy", d->target);
        d->why = empty ? "empty" : x->readonly ? "readonly" : x->shareable ? "shareable" : NULL;
        if (skip)
            d->why = "skip-copy";
        else if (force)
            d->why = NULL;
        d->remote = x->nbd;
        if (x->source && !(d->src = x->nbd ? strdup(x->source) : clone_abspath(x->source)))
            return -ENOMEM;
        if (d->why) {
            d->action = CLONE_SHARE;
            continue;
        }
        if (!strcmp(x->type, "network") && !x->nbd)
            return kimg_fail(-EINVAL, "%s: a network disk (%s) cannot be cloned; share it "
                             "with --skip-copy %s", d->target,
                             x->protocol ? x->protocol : "unknown protocol", d->target);
        /* an nbd disk is read through kimg's NBD client and copied into a
         * local file (--file); a linked clone would have to name the
         * export as its backing file, which kimg does not follow from an
         * image by default (--allow-remote-backing) and libvirt would
         * have to reach too */
        if (x->nbd && (o->linked || o->reflink) && !o->preserve)
            return kimg_fail(-EINVAL, "%s: an nbd disk cannot be %s; copy it (without %s) or "
                             "share it with --skip-copy %s", d->target,
                             o->linked ? "the base of a linked clone" : "reflinked",
                             o->linked ? "--linked" : "--reflink", d->target);
        if (!local && !x->nbd)
            return kimg_fail(-EINVAL, "%s: a disk of type '%s' cannot be cloned offline; share "
                             "it with --skip-copy %s", d->target, x->type, d->target);
        if (empty)
            return kimg_fail(-EINVAL, "--force-copy %s: the disk has no storage to copy",
                             d->target);
        d->action = o->preserve ? CLONE_PRESERVE : o->linked ? CLONE_LINK :
                    o->reflink ? CLONE_REFLINK : CLONE_COPY;
    }
    return 0;
}

/* Open a source read-only (shared lock: refused while a VM writes it). */
static int open_source(const struct clone_plan *p, struct clone_disk_plan *d)
{
    struct stat st = { .st_mode = S_IFREG };
    if (d->remote) {
        /* an NBD export: reached (and any error said) by kimg_open below */
    } else if (stat(d->src, &st) < 0) {
        if (errno == ENOENT)
            return kimg_fail(-ENOENT, "%s: the source %s does not exist", d->target, d->src);
        return kimg_fail(-errno, "%s: %s: %s", d->target, d->src, strerror(errno));
    }
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
        return kimg_fail(-EINVAL, "%s: the source %s is not a file or block device",
                         d->target, d->src);
    if (!kimg_find_driver(d->src_format)) {
        if (d->action == CLONE_REFLINK && S_ISREG(st.st_mode)) {
            d->size = (uint64_t)st.st_size;   /* copied byte for byte */
            return 0;
        }
        return kimg_fail(-ENOTSUP, "%s: kimg cannot copy the format '%s' of %s; share it with "
                         "--skip-copy %s", d->target, d->src_format, d->src, d->target);
    }
    /* a batch: the first clone's handle on the same source (its checks
     * ran there), instead of another open image per clone */
    const struct clone_plan *f = p->first;
    for (int i = 0; f && i <= f->nb_disks; i++) {
        const struct clone_disk_plan *o = i < f->nb_disks ? &f->disks[i] : &f->nvram;
        if (o->img && o->src && !strcmp(o->src, d->src) && !strcmp(o->src_format, d->src_format)) {
            d->img = o->img;
            d->img_borrowed = true;
            d->size = o->size;
            break;
        }
    }
    char prefix[PATH_MAX + 64];
    snprintf(prefix, sizeof(prefix), "%s: %s", d->target, d->src);
    int r = d->img ? 0 : kimg_open(&d->img, d->src, d->src_format, 0);
    if (r < 0)
        return rewrap(r, prefix);
    d->size = kimg_size(d->img);
    if (d->action == CLONE_REFLINK && S_ISBLK(st.st_mode))
        return kimg_fail(-EINVAL, "%s: --reflink needs a file; %s is a block device",
                         d->target, d->src);
    return 0;
}

/* The backing name a linked clone at DST records for SRC: the bare name
 * in the same folder, else the absolute path. */
static char *backing_name_for(const char *src, const char *dst)
{
    char *sd = clone_dirname(src), *dd = clone_dirname(dst);
    char *r = NULL;
    if (sd && dd)
        r = strdup(strcmp(sd, dd) ? src : clone_basename(src));
    free(sd);
    free(dd);
    return r;
}

static int plan_destinations(struct clone_plan *p, const struct clone_opts *o)
{
    int ncopy = 0, r;
    for (int i = 0; i < p->nb_disks; i++)
        if (p->disks[i].action != CLONE_SHARE)
            ncopy++;
    if (o->nb_files > ncopy)
        return kimg_fail(-EINVAL, "%d --file given but the domain has %d disk%s to clone",
                         o->nb_files, ncopy, ncopy == 1 ? "" : "s");
    if (o->nb_files < ncopy && (o->preserve || !o->auto_clone)) {
        char list[256] = "";
        size_t k = 0;
        for (int i = 0; i < p->nb_disks && k < sizeof(list) - 40; i++)
            if (p->disks[i].action != CLONE_SHARE)
                k += (size_t)snprintf(list + k, sizeof(list) - k, "%s%s", k ? ", " : "",
                                      p->disks[i].target);
        return kimg_fail(-EINVAL, "%d disk%s to clone (%s) but %d --file given; %s", ncopy,
                         ncopy == 1 ? "" : "s", list, o->nb_files,
                         o->preserve ? "--preserve-data needs an existing --file for each"
                                     : "give one --file per disk, or --auto-clone");
    }
    int j = 0;
    for (int i = 0; i < p->nb_disks; i++) {
        struct clone_disk_plan *d = &p->disks[i];
        if (d->action == CLONE_SHARE)
            continue;
        if (j < o->nb_files) {
            if ((r = clone_check_text("--file", o->files[j], CLONE_MAX_PATH)) < 0)
                return rewrap(r, d->target);
            if (!*o->files[j])
                return kimg_fail(-EINVAL, "%s: --file is empty", d->target);
            if (!(d->dst = clone_abspath(o->files[j])))
                return -ENOMEM;
            j++;
            if (d->src && !strcmp(d->dst, d->src))
                return kimg_fail(-EINVAL, "%s: --file %s is the disk's own source%s", d->target,
                                 d->dst, o->preserve ? "; share it with --skip-copy instead" : "");
        } else if (d->remote) {
            return kimg_fail(-EINVAL, "%s: an nbd disk needs a --file for its copy (no file "
                             "name follows from an NBD export)", d->target);
        } else {
            char *dst;
            if ((r = clone_auto_path(d->src, p->old_name, p->new_name, p->seen != NULL,
                                     auto_path_taken, p,
                                     &dst)) < 0)
                return rewrap(r, d->target);
            d->dst = dst;
            if ((r = clone_check_text("the automatic path", dst, CLONE_MAX_PATH)) < 0)
                return rewrap(r, d->target);
        }
        if (d->action == CLONE_PRESERVE) {
            struct stat st;
            if (stat(d->dst, &st) < 0)
                return kimg_fail(-ENOENT, "%s: --preserve-data: %s does not exist", d->target,
                                 d->dst);
            if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
                return kimg_fail(-EINVAL, "%s: --preserve-data: %s is not a file or block "
                                 "device", d->target, d->dst);
            d->dst_is_block = S_ISBLK(st.st_mode);
            d->dst_format = d->src_format;
            for (int k = 0; k < i; k++)
                if (p->disks[k].dst && !strcmp(p->disks[k].dst, d->dst))
                    return kimg_fail(-EINVAL, "%s: %s is used by two disks", d->target, d->dst);
            for (int k = 0; k < p->nb_disks; k++)
                if (p->disks[k].src && !strcmp(p->disks[k].src, d->dst))
                    return kimg_fail(-EINVAL, "%s: %s is the source of %s", d->target, d->dst,
                                     p->disks[k].target);
            continue;
        }
        /* check_new_file sees this disk's own dst: hide it while checking */
        char *dst = d->dst;
        d->dst = NULL;
        r = check_new_file(p, dst, d->target);
        d->dst = dst;
        if (r < 0)
            return r;
        if ((r = open_source(p, d)) < 0)
            return r;
        d->dst_format = d->action == CLONE_LINK ? "qcow2" : d->src_format;
        if (d->action == CLONE_LINK && !(d->backing = backing_name_for(d->src, d->dst)))
            return -ENOMEM;
        if (d->action == CLONE_REFLINK && d->img && kimg_backing_name(d->img) &&
            kimg_backing_name(d->img)[0] != '/') {
            char *sd = clone_dirname(d->src), *dd = clone_dirname(d->dst);
            bool same = sd && dd && !strcmp(sd, dd);
            free(sd);
            free(dd);
            if (!same)
                return kimg_fail(-EINVAL, "%s: --reflink copies %s as it is, and its backing "
                                 "file name '%.200s' is relative to its folder; clone it into "
                                 "the same folder, or without --reflink", d->target, d->src,
                                 kimg_backing_name(d->img));
        }
    }
    return 0;
}

/* ---- nvram ---------------------------------------------------------------------------- */

static int plan_nvram(struct clone_plan *p, const struct clone_opts *o)
{
    struct clone_disk_plan *n = &p->nvram;
    n->index = -1;
    n->target = "nvram";
    n->action = CLONE_SHARE;
    if (!p->dom->nvram)
        return 0;
    p->has_nvram = true;
    n->src_format = p->dom->nvram_format ? p->dom->nvram_format : "raw";
    if (!(n->src = clone_abspath(p->dom->nvram)))
        return -ENOMEM;
    int r;
    if (o->nvram) {
        if ((r = clone_check_text("--nvram", o->nvram, CLONE_MAX_PATH)) < 0)
            return r;
        if (!*o->nvram)
            return kimg_fail(-EINVAL, "--nvram is empty");
        n->dst = clone_abspath(o->nvram);
    } else {
        /* NAME_VARS with the original's own extension (virt-clone 5.0: a
         * .qcow2 nvram stays .qcow2), .fd when it has none */
        char *dir = clone_dirname(n->src);
        const char *dot = strrchr(clone_basename(n->src), '.');
        const char *ext = dot && dot[1] && strlen(dot) <= 8 ? dot : ".fd";
        if (dir && asprintf(&n->dst, "%s%s%s_VARS%s", dir, strcmp(dir, "/") ? "/" : "",
                            p->new_name, ext) < 0)
            n->dst = NULL;
        free(dir);
    }
    if (!n->dst)
        return -ENOMEM;
    if (!strcmp(n->dst, n->src))
        return kimg_fail(-EINVAL, "nvram: %s is the original's nvram", n->dst);
    n->dst_format = n->src_format;
    if (o->preserve) {
        n->action = CLONE_REPOINT;   /* as virt-clone: the file is left as it is */
        return 0;
    }
    char *dst = n->dst;
    n->dst = NULL;
    r = check_new_file(p, dst, "nvram");
    n->dst = dst;
    if (r < 0)
        return r;
    struct stat st;
    if (stat(n->src, &st) < 0 && errno == ENOENT) {
        /* never started: libvirt makes it from the template, as for the original */
        n->action = CLONE_REPOINT;
        return 0;
    }
    n->action = o->reflink ? CLONE_REFLINK : CLONE_COPY;
    return open_source(p, n);
}

/* ---- serial and console log files ------------------------------------------------ */

/* virt-clone 5.0: a serial or console of type 'file' writes to a new
 * log, named as a disk copy is (NAME.log, or x-clone.log); the console
 * that mirrors a serial keeps sharing its path.  Nothing is copied. */
static int plan_logs(struct clone_plan *p)
{
    int n = clone_dom_nb_logs(p->dom);
    if (n > CLONE_MAX_DISKS)
        return kimg_fail(-E2BIG, "more than %d serial and console files", CLONE_MAX_DISKS);
    if (!(p->logs = calloc((size_t)n + 1, sizeof(*p->logs))))
        return -ENOMEM;
    char **old = calloc((size_t)n + 1, sizeof(*old));
    if (!old)
        return -ENOMEM;
    p->log_src = old;           /* kept for --report-json */
    int r = 0;
    p->nb_logs = n;
    for (int i = 0; i < n && r == 0; i++) {
        const char *path = clone_dom_log_path(p->dom, i);
        if (!path || !*path)
            continue;
        if ((r = clone_check_text("a serial file path", path, CLONE_MAX_PATH)) < 0)
            break;
        if (!(old[i] = clone_abspath(path))) {
            r = -ENOMEM;
            break;
        }
        for (int k = 0; k < i; k++)
            if (old[k] && !strcmp(old[k], old[i]) && p->logs[k])
                p->logs[i] = strdup(p->logs[k]);
        if (p->logs[i])
            continue;
        if ((r = clone_auto_path(old[i], p->old_name, p->new_name, p->seen != NULL,
                                 auto_path_taken, p,
                                 &p->logs[i])) < 0)
            r = rewrap(r, "serial file");
        else if ((r = clone_check_text("the automatic path", p->logs[i], CLONE_MAX_PATH)) < 0)
            r = rewrap(r, "serial file");
    }
    return r;
}

/* ---- outputs and space ------------------------------------------------------------------ */

static int check_output(const struct clone_plan *p, const char *path, const char *opt)
{
    if (!path)
        return 0;
    if (!*path)
        return kimg_fail(-EINVAL, "%s is empty", opt);
    char *abs = clone_abspath(path), *dir = abs ? clone_dirname(abs) : NULL;
    char *orig = clone_abspath(p->opts->original_xml);
    int ret = 0;
    struct stat st;
    if (!abs || !dir || !orig)
        ret = -ENOMEM;
    else if (path_used(p, abs))
        ret = kimg_fail(-EINVAL, "%s %s: that is a disk or nvram file of the clone", opt, path);
    else if (!strcmp(abs, orig))
        ret = kimg_fail(-EINVAL, "%s %s: that is the original domain XML", opt, path);
    else if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
        ret = kimg_fail(-ENOENT, "%s %s: the folder %s does not exist", opt, path, dir);
    else if (stat(abs, &st) == 0 && S_ISDIR(st.st_mode))   /* devices, FIFOs: in place */
        ret = kimg_fail(-EISDIR, "%s %s: is a folder", opt, path);
    else if (p->opts->batch && !strcmp(opt, "--output-xml") && lstat(abs, &st) == 0 &&
             !S_ISCHR(st.st_mode) && !S_ISFIFO(st.st_mode))
        /* a batch makes its files new, the XML ones too */
        ret = kimg_fail(-EEXIST, "%s %s already exists; a batch never overwrites a file",
                        opt, path);
    free(abs);
    free(dir);
    free(orig);
    return ret;
}

/* --nonsparse allocates every byte: refuse a copy that cannot fit. */
static int check_space(const struct clone_plan *p)
{
    if (!p->opts->nonsparse || p->opts->preserve)
        return 0;
    for (int i = 0; i < p->nb_disks; i++) {
        const struct clone_disk_plan *d = &p->disks[i];
        if (d->action != CLONE_COPY)
            continue;
        char *dir = clone_dirname(d->dst);
        struct statvfs vfs;
        struct stat st;
        if (!dir)
            return -ENOMEM;
        int ok = statvfs(dir, &vfs) == 0 && stat(dir, &st) == 0;
        uint64_t need = 0;
        for (int k = 0; ok && k < p->nb_disks; k++) {
            struct stat st2;
            char *d2 = NULL;
            if (p->disks[k].action == CLONE_COPY && (d2 = clone_dirname(p->disks[k].dst)) &&
                stat(d2, &st2) == 0 && st2.st_dev == st.st_dev)
                need += p->disks[k].size;
            free(d2);
        }
        uint64_t avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
        if (ok && need > avail) {
            char a[32], b[32];
            kimg_format_size(need, a, sizeof(a));
            kimg_format_size(avail, b, sizeof(b));
            int r = kimg_fail(-ENOSPC, "--nonsparse: the clones in %s need %s but the "
                              "filesystem has %s free", dir, a, b);
            free(dir);
            return r;
        }
        free(dir);
    }
    return 0;
}

/* ---- the whole plan ---------------------------------------------------------------------- */

int clone_plan_build(struct clone_plan *p, const struct clone_opts *o)
{
    return clone_plan_build_batch(p, o, NULL, NULL);
}

int clone_plan_note(struct clone_strset *seen, const struct clone_plan *p)
{
    int r = clone_strset_add(seen, "name", p->new_name);
    if (r == 0)
        r = clone_strset_add(seen, "uuid", p->uuid);
    for (int i = 0; r == 0 && i < p->nb_macs; i++)
        r = clone_strset_add(seen, "mac", p->macs[i]);
    for (int i = 0; r == 0 && i <= p->nb_disks; i++) {
        const struct clone_disk_plan *d = i < p->nb_disks ? &p->disks[i] : &p->nvram;
        if ((r = clone_strset_add(seen, "path", d->src)) == 0)
            r = clone_strset_add(seen, "path", d->dst);
    }
    for (int i = 0; r == 0 && i < p->nb_logs; i++)
        r = clone_strset_add(seen, "path", p->logs[i]);
    return r;
}

int clone_plan_build_batch(struct clone_plan *p, const struct clone_opts *o,
                           const struct clone_strset *seen, const struct clone_plan *first)
{
    memset(p, 0, sizeof(*p));
    p->opts = o;
    p->seen = seen;
    p->first = first;
    p->nvram.index = -1;
    if (!o->original_xml)
        return kimg_fail(-EINVAL, "--original-xml FILE is required (kimg clone works "
                         "offline: virsh dumpxml --inactive NAME > FILE)");
    if (!o->name && !o->auto_clone)
        return kimg_fail(-EINVAL, "A name is required for the new virtual machine, use "
                         "'--name NEW_VM_NAME' to specify one.");
    if (o->nb_files == 0 && !o->auto_clone)
        return kimg_fail(-EINVAL, "Either --auto-clone or --file is required, use "
                         "'--auto-clone or --file' and try again.");
    if (o->linked && (o->reflink || o->preserve || o->nonsparse))
        return kimg_fail(-EINVAL, "--linked cannot be combined with %s",
                         o->reflink ? "--reflink" : o->preserve ? "--preserve-data" :
                         "--nonsparse");
    int r;
    if ((r = clone_dom_parse_file(&p->dom, o->original_xml)) < 0 ||
        (r = plan_identity(p, o)) < 0 ||
        (r = plan_classify(p, o)) < 0 ||
        (r = plan_destinations(p, o)) < 0 ||
        (r = plan_nvram(p, o)) < 0 ||
        (r = plan_logs(p)) < 0 ||
        (r = clone_tpm_plan(p, o)) < 0 ||
        (r = check_output(p, o->output_xml, "--output-xml")) < 0 ||
        (r = check_output(p, o->report_json, "--report-json")) < 0 ||
        (r = check_space(p)) < 0)
        return r;
    return 0;
}

int clone_plan_rewrite(struct clone_plan *p)
{
    struct clone_dom *dom = p->dom;
    int r;
    if ((r = clone_dom_set_name(dom, p->new_name)) < 0 ||
        (r = clone_dom_set_uuid(dom, p->uuid)) < 0 ||
        (r = clone_dom_make_unique(dom, p->genid, &p->notes)) < 0)
        return r;
    for (int i = 0; i < p->nb_macs; i++)
        if ((r = clone_dom_set_mac(dom, i, p->macs[i])) < 0)
            return r;
    for (int i = 0; i < p->nb_disks; i++) {
        const struct clone_disk_plan *d = &p->disks[i];
        switch (d->action) {
        case CLONE_SHARE:
        case CLONE_REPOINT:
            break;
        case CLONE_COPY:
            r = clone_dom_set_disk(dom, i, d->dst, false, NULL, true, NULL, NULL);
            break;
        case CLONE_LINK:
            r = clone_dom_set_disk(dom, i, d->dst, false, "qcow2", false, d->src, d->src_format);
            break;
        case CLONE_REFLINK:
            r = clone_dom_set_disk(dom, i, d->dst, false, NULL, false, NULL, NULL);
            break;
        case CLONE_PRESERVE:
            r = clone_dom_set_disk(dom, i, d->dst, d->dst_is_block, NULL, true, NULL, NULL);
            break;
        }
        if (r < 0)
            return r;
    }
    if (p->has_nvram && (r = clone_dom_set_nvram(dom, p->nvram.dst)) < 0)
        return r;
    for (int i = 0; i < p->nb_logs; i++)
        if (p->logs[i] && (r = clone_dom_set_log_path(dom, i, p->logs[i])) < 0)
            return r;
    return 0;
}

static void free_disk_plan(struct clone_disk_plan *d)
{
    if (d->img && !d->img_borrowed)
        kimg_close(d->img);
    free(d->src);
    free(d->dst);
    free(d->backing);
}

void clone_plan_free(struct clone_plan *p)
{
    for (int i = 0; i < p->nb_disks; i++)
        free_disk_plan(&p->disks[i]);
    free_disk_plan(&p->nvram);
    free(p->disks);
    free(p->macs);
    free(p->old_name);
    free(p->new_name);
    for (int i = 0; i < p->nb_logs; i++) {
        free(p->logs[i]);
        if (p->log_src)
            free(p->log_src[i]);
    }
    free(p->logs);
    free(p->log_src);
    free(p->error);
    free(p->tpm_src);
    free(p->tpm_dst);
    for (int i = 0; i < p->nb_tpm_made; i++)
        free(p->tpm_made[i]);
    free(p->tpm_made);
    free(p->tpm_made_dir);
    clone_dom_free(p->dom);
    memset(p, 0, sizeof(*p));
}
