/*
 * run.c — one `kimg clone` run, of one clone or a batch (repeatable -n, or
 * -n 'web-{n}' --count N): build and check every clone's plan before
 * anything is written, rewrite the XML, copy the storage into temporary
 * files (a batch's full copies of one source disk in one read, fanout.c),
 * rename them into place, then print the XML (NUL-terminated documents for
 * a batch) and write the report.  Any failure, or SIGINT, SIGTERM, SIGHUP
 * or SIGPIPE (kimg/output.h), removes every file the run created; with
 * --keep-going a failed clone's files are removed and the others kept.
 * --print-xml writes no storage.
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

#define CLONE_MAX_BATCH 10000
/* a batch holds every clone's parsed and serialised XML until the end:
 * their total size is capped (a 5 KiB domain: 6,000 clones) */
#define CLONE_MAX_BATCH_XML (32u << 20)

static bool writes_storage(const struct clone_disk_plan *d)
{
    return d->action == CLONE_COPY || d->action == CLONE_LINK || d->action == CLONE_REFLINK;
}

static void warnings(const struct clone_plan *p, const struct clone_opts *o)
{
    if (o->quiet)
        return;
    if (o->nvram && !p->has_nvram)
        fprintf(stderr, "kimg: warning: --nvram ignored: the domain has no <nvram>\n");
    if (p->notes.graphics_ports)
        fprintf(stderr, "kimg: warning: graphics ports and sockets set to automatic, in "
                "order to avoid conflicting\n");
    if (o->copy_tpm_state && !clone_dom_has_emulated_tpm(p->dom))
        fprintf(stderr, "kimg: warning: --copy-tpm-state ignored: the domain has no emulated "
                "TPM\n");
    else if (o->copy_tpm_state && p->tpm_src)
        fprintf(stderr, "kimg: warning: --copy-tpm-state: the clone gets a copy of the "
                "template's TPM state and shares its TPM identity (endorsement key, sealed "
                "secrets)\n");
    else if (o->copy_tpm_state)
        fprintf(stderr, "kimg: warning: --copy-tpm-state: the template has no TPM state yet "
                "(never started); the clone starts with an empty TPM\n");
    else if (p->notes.tpm)
        fprintf(stderr, "kimg: warning: the emulated TPM's state is not copied; the clone "
                "starts with an empty TPM\n");
}

static struct clone_disk_plan *disk_of(struct clone_plan *p, int j)
{
    return j < p->nb_disks ? &p->disks[j] : &p->nvram;
}

/* ---- the batch ---------------------------------------------------------------- */

struct batch {
    const struct clone_opts *o;
    int n;
    struct clone_opts *opts;    /* one per clone */
    struct clone_plan *plans;
    int nb_built;
    char **xml;
    size_t *xml_len;
    char **owned;               /* expanded strings */
    int nb_owned, cap_owned;
    const char **files;         /* n * nb_files expanded --file values */
    int failures;
    char *first_auto;           /* --auto-clone batch: the first clone's name */
    struct clone_strset seen;   /* what the plans built so far use */
};

static char *own(struct batch *b, char *s)
{
    if (!s)
        return NULL;
    if (b->nb_owned == b->cap_owned) {
        int cap = b->cap_owned ? b->cap_owned * 2 : 16;
        char **m = realloc(b->owned, (size_t)cap * sizeof(*m));
        if (!m) {
            free(s);
            return NULL;
        }
        b->owned = m;
        b->cap_owned = cap;
    }
    return b->owned[b->nb_owned++] = s;
}

static void batch_free(struct batch *b)
{
    for (int i = 0; i < b->nb_built; i++)
        clone_plan_free(&b->plans[i]);
    for (int i = 0; b->xml && i < b->n; i++)
        free(b->xml[i]);
    for (int i = 0; i < b->nb_owned; i++)
        free(b->owned[i]);
    free(b->owned);
    free(b->xml);
    free(b->xml_len);
    free(b->plans);
    free(b->opts);
    free(b->files);
    clone_strset_free(&b->seen);
}

/* How many clones, and is it a batch; refuse what a batch cannot share. */
static int batch_size(const struct clone_opts *o, int *n)
{
    *n = 1;
    if (o->count < 0 || o->count > CLONE_MAX_BATCH)
        return kimg_fail(-EINVAL, "--count must be 1 to %d", CLONE_MAX_BATCH);
    if (o->count) {
        if (o->nb_names > 1)
            return kimg_fail(-EINVAL, "--count takes one --name template, such as "
                             "--name 'web-{n}'; %d --name given", o->nb_names);
        if (o->nb_names == 1 && !clone_has_placeholder(o->names[0], false))
            return kimg_fail(-EINVAL, "--count %d: the --name '%s' has no {n}; give a "
                             "template such as --name 'web-{n}'", o->count, o->names[0]);
        *n = o->count;
    } else if (o->nb_names > 1) {
        *n = o->nb_names;
    }
    if (o->nb_names > CLONE_MAX_BATCH)
        return kimg_fail(-EINVAL, "at most %d clones in one run", CLONE_MAX_BATCH);
    if (!o->batch)
        return 0;
    if (o->uuid)
        return kimg_fail(-EINVAL, "--uuid gives one clone its UUID; a batch's clones get "
                         "random ones");
    for (int i = 0; i < o->nb_macs; i++)
        if (strcmp(o->macs[i], "RANDOM"))
            return kimg_fail(-EINVAL, "--mac %s gives one clone its MAC; a batch's clones "
                             "get random ones (or --mac RANDOM)", o->macs[i]);
    for (int i = 0; i < o->nb_files; i++)
        if (!clone_has_placeholder(o->files[i], true))
            return kimg_fail(-EINVAL, "--file %s: a batch needs a template with {n} or "
                             "{name}, one file per clone", o->files[i]);
    if (o->nvram && !clone_has_placeholder(o->nvram, true))
        return kimg_fail(-EINVAL, "--nvram %s: a batch needs a template with {n} or {name}",
                         o->nvram);
    return 0;
}

/* --output-xml for clone I: a template, or a folder (FOLDER/NAME.xml). */
static int output_path(struct batch *b, int i, const char *name)
{
    const char *t = b->o->output_xml;
    struct stat st;
    if (!t || !b->o->batch)
        return 0;
    char *p;
    if (clone_has_placeholder(t, true))
        p = clone_expand(t, i + 1, name);
    else if (stat(t, &st) == 0 && S_ISDIR(st.st_mode))
        p = asprintf(&p, "%s%s%s.xml", t, t[strlen(t) - 1] == '/' ? "" : "/", name) < 0
            ? NULL : p;
    else
        return kimg_fail(-EINVAL, "--output-xml %s: a batch needs a folder or a template "
                         "with {n} or {name}", t);
    if (!own(b, p))
        return -ENOMEM;
    b->opts[i].output_xml = p;
    for (int k = 0; k < i; k++)
        if (b->opts[k].output_xml && !strcmp(b->opts[k].output_xml, p))
            return kimg_fail(-EINVAL, "--output-xml %s: two clones would write %s", t, p);
    return 0;
}

static int build_plans(struct batch *b)
{
    const struct clone_opts *o = b->o;
    int r;
    for (int i = 0; i < b->n; i++) {
        struct clone_opts *ci = &b->opts[i];
        *ci = *o;
        ci->index = i + 1;
        /* the name: -n number i, the template's, or (--auto-clone) the
         * automatic name after the previous clone's */
        if (o->count && o->nb_names == 1) {
            if (!(ci->name = own(b, clone_expand(o->names[0], i + 1, NULL))))
                return -ENOMEM;
        } else if (o->nb_names > i) {
            ci->name = o->names[i];
        } else if (i == 0 && b->first_auto) {
            ci->name = b->first_auto;
        } else if (i > 0) {
            if (!(ci->name = own(b, clone_auto_name(b->plans[i - 1].new_name))))
                return -ENOMEM;
        }
        if (o->batch && ci->name) {
            if (o->nb_files) {
                ci->files = b->files + (size_t)i * (size_t)o->nb_files;
                for (int k = 0; k < o->nb_files; k++)
                    if (!(ci->files[k] = own(b, clone_expand(o->files[k], i + 1, ci->name))))
                        return -ENOMEM;
            }
            if (o->nvram && !(ci->nvram = own(b, clone_expand(o->nvram, i + 1, ci->name))))
                return -ENOMEM;
            if ((r = output_path(b, i, ci->name)) < 0)
                return r;
        }
        b->nb_built = i + 1;
        if ((r = clone_plan_build_batch(&b->plans[i], ci, o->batch ? &b->seen : NULL,
                                        i > 0 ? &b->plans[0] : NULL)) < 0)
            return r;
        if (o->batch && !ci->name) {
            /* --auto-clone: the first name is known only now; plan again
             * with it, so the templates are expanded */
            if (!(b->first_auto = own(b, strdup(b->plans[i].new_name))))
                return -ENOMEM;
            i--;
            clone_plan_free(&b->plans[i + 1]);
            b->nb_built = i + 1;
            continue;
        }
        if ((r = clone_plan_rewrite(&b->plans[i])) < 0 ||
            (r = clone_dom_serialize(b->plans[i].dom, &b->xml[i], &b->xml_len[i])) < 0)
            return r;
        if (i == 0 && o->batch && (uint64_t)b->xml_len[0] * (uint64_t)b->n > CLONE_MAX_BATCH_XML)
            return kimg_fail(-E2BIG, "a batch of %d clones of a %zu-byte domain XML is too "
                             "big for one run (at most %u MiB of XML); split it", b->n,
                             b->xml_len[0], CLONE_MAX_BATCH_XML >> 20);
        if (o->batch && (r = clone_plan_note(&b->seen, &b->plans[i])) < 0)
            return r;
        if (i > 0) {
            /* the clone's XML is text now: drop its tree, so memory grows
             * by its text and plan only; its disks' targets are the
             * template's, as the first plan has them */
            struct clone_plan *p = &b->plans[i];
            for (int j = 0; j <= p->nb_disks; j++) {
                /* the strings that point into the tree: the first plan's */
                struct clone_disk_plan *d = disk_of(p, j), *d0 = disk_of(&b->plans[0], j);
                const char *fmt = d->src_format;
                if (j < p->nb_disks && d->target != d->target_buf)
                    d->target = d0->target;
                d->src_format = d0->src_format;
                if (d->dst_format == fmt)
                    d->dst_format = d0->dst_format;
            }
            clone_dom_free(p->dom);
            p->dom = NULL;
        }
    }
    return 0;
}

/* Every file and folder the run makes stays registered (kimg/output.h)
 * until it ends, for the undo: refuse, before writing, a batch that makes
 * more than the registry holds. */
static int check_outputs(struct batch *b)
{
    uint64_t n = b->o->report_json ? 1 : 0;
    for (int i = 0; i < b->n; i++) {
        const struct clone_plan *p = &b->plans[i];
        for (int j = 0; j <= p->nb_disks; j++)
            n += !b->o->print_xml && writes_storage(j < p->nb_disks ? &p->disks[j] : &p->nvram);
        n += (b->o->print_xml ? 0 : (uint64_t)p->tpm_entries) + (b->opts[i].output_xml != NULL);
    }
    if (n > KIMG_OUTPUT_MAX)
        return kimg_fail(-E2BIG, "a batch of %d clones makes %llu files; kimg clone makes at "
                         "most %d in one run; split it", b->n, (unsigned long long)n,
                         KIMG_OUTPUT_MAX);
    return 0;
}

/* ---- writing ---------------------------------------------------------------------- */


/* Clone I failed (keep-going): say why, drop its temporary files. */
static void clone_failed(struct batch *b, int i, int r)
{
    struct clone_plan *p = &b->plans[i];
    const char *m = kimg_last_error();
    p->failed = true;
    p->error = strdup(m ? m : strerror(-r));
    kimg_clear_error();
    fputs("kimg: ", stderr);
    kimg_print_for_terminal(stderr, p->error ? p->error : "error");
    fputc('\n', stderr);
    for (int j = 0; j <= p->nb_disks; j++)
        kimg_output_abort(&disk_of(p, j)->out);
    b->failures++;
}

/* Every clone's copy of disk J (J == nb_disks: the nvram). */
static int write_disk(struct batch *b, int j)
{
    struct clone_disk_plan **ds = calloc((size_t)b->n, sizeof(*ds));
    int *who = calloc((size_t)b->n, sizeof(*who)), *res = calloc((size_t)b->n, sizeof(*res));
    int nd = 0, r = 0;
    bool kg = b->o->keep_going;
    if (!ds || !who || !res) {
        r = -ENOMEM;
        goto out;
    }
    for (int i = 0; i < b->n; i++) {
        struct clone_plan *p = &b->plans[i];
        struct clone_disk_plan *d = disk_of(p, j);
        if (p->failed || !writes_storage(d))
            continue;
        if ((r = clone_copy_begin(d)) < 0) {
            if (!kg)
                goto out;
            clone_failed(b, i, r);
            r = 0;
            continue;
        }
        ds[nd] = d;
        who[nd++] = i;
    }
    if (nd == 0)
        goto out;
    /* --nonsparse copies never share extents (the engine's own_blocks) */
    if (nd >= 2 && ds[0]->action == CLONE_COPY && ds[0]->img &&
        (b->o->nonsparse || !clone_fs_reflinks(ds[0], ds[1]))) {
        /* one read of the source for every clone */
        char **errs = calloc((size_t)nd, sizeof(*errs));
        if (!errs) {
            r = -ENOMEM;
            goto out;
        }
        r = clone_fanout_copy(ds, nd, b->o, kg, res, errs);
        if (r == 0 || kg) {
            r = 0;
            for (int k = 0; k < nd; k++) {
                if (res[k] >= 0)
                    continue;
                kimg_clear_error();     /* each failed clone's own message */
                kimg_error("%s", errs[k] ? errs[k] : strerror(-res[k]));
                clone_failed(b, who[k], res[k]);
            }
        }
        for (int k = 0; k < nd; k++)
            free(errs[k]);
        free(errs);
        goto out;
    }
    /* one at a time: overlays, reflinks, and copies the engine reflinks */
    for (int k = 0; k < nd; k++) {
        if ((r = clone_copy_disk(ds[k], b->o)) < 0) {
            if (!kg)
                goto out;
            clone_failed(b, who[k], r);
            r = 0;
        }
    }
out:
    free(ds);
    free(who);
    free(res);
    return r;
}

/* Rename clone I's files into place and write its XML file. */
static int commit_clone(struct batch *b, int i)
{
    struct clone_plan *p = &b->plans[i];
    const struct clone_opts *ci = &b->opts[i];
    int r = 0;
    for (int j = 0; j <= p->nb_disks && r == 0; j++) {
        struct clone_disk_plan *d = disk_of(p, j);
        if (writes_storage(d) && !ci->print_xml)
            r = kimg_output_commit(&d->out, true);
    }
    if (r == 0 && !ci->print_xml)
        r = clone_tpm_copy(p);
    if (r == 0 && ci->output_xml)
        r = clone_write_file(ci->output_xml, b->xml[i], b->xml_len[i]);
    if (r < 0 && b->o->keep_going) {
        clone_tpm_remove(p, true);
        /* its files were new (never a replace): remove those renamed */
        for (int j = 0; j <= p->nb_disks; j++) {
            struct clone_disk_plan *d = disk_of(p, j);
            if (writes_storage(d) && !ci->print_xml && !d->out.path && d->dst)
                unlink(d->dst);
        }
        clone_failed(b, i, r);
        r = 0;
    }
    return r;
}

static int write_report(struct batch *b)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    if (!m)
        return -ENOMEM;
    int r = b->o->batch ? clone_report_write_batch(m, b->plans, b->n, b->o->print_xml)
                        : clone_report_write(m, &b->plans[0], b->o->print_xml);
    if (fclose(m) != 0 && r == 0)
        r = -ENOMEM;
    if (r == 0)
        r = clone_write_file(b->o->report_json, buf, len);
    free(buf);
    return r;
}

static int print_xml(struct batch *b)
{
    for (int i = 0; i < b->n; i++) {
        if (b->plans[i].failed || b->opts[i].output_xml)
            continue;
        /* a batch's documents each end with a NUL byte (read -d '') */
        if (fwrite(b->xml[i], 1, b->xml_len[i], stdout) != b->xml_len[i] ||
            (b->o->batch && fputc('\0', stdout) == EOF))
            break;
    }
    if (fflush(stdout) != 0 || ferror(stdout))
        return kimg_fail(-EIO, "cannot write the new domain XML to stdout: %s",
                         strerror(errno ? errno : EIO));
    return 0;
}

int clone_run(const struct clone_opts *o_in)
{
    struct clone_opts o = *o_in;
    struct batch b = { .o = &o };
    int r = batch_size(&o, &b.n);
    if (r < 0)
        return r;
    o.batch = o.count > 0 || o.nb_names > 1;
    if (o.batch && (r = batch_size(&o, &b.n)) < 0)
        return r;
    if (!o.name && o.nb_names)
        o.name = o.names[0];
    b.opts = calloc((size_t)b.n, sizeof(*b.opts));
    b.plans = calloc((size_t)b.n, sizeof(*b.plans));
    b.xml = calloc((size_t)b.n, sizeof(*b.xml));
    b.xml_len = calloc((size_t)b.n, sizeof(*b.xml_len));
    b.files = calloc((size_t)b.n * (size_t)(o.nb_files + 1), sizeof(*b.files));
    if (!b.opts || !b.plans || !b.xml || !b.xml_len || !b.files) {
        r = -ENOMEM;
        goto out;
    }
    if ((r = build_plans(&b)) < 0 || (r = check_outputs(&b)) < 0)
        goto out;
    warnings(&b.plans[0], &o);

    if (!o.print_xml) {
        for (int j = 0; j <= b.plans[0].nb_disks && r == 0; j++)
            r = write_disk(&b, j);
    }
    for (int i = 0; i < b.n && r == 0; i++)
        if (!b.plans[i].failed)
            r = commit_clone(&b, i);
    if (r == 0 && o.report_json)
        r = write_report(&b);
    if (r == 0)
        r = print_xml(&b);
    /* every file made, or none (--keep-going: those of completed clones) */
    if (r < 0) {
        kimg_output_undo_all();
        for (int i = 0; i < b.nb_built; i++)
            clone_tpm_remove(&b.plans[i], true);   /* its folders */
    } else {
        kimg_output_forget_all();
    }
    if (r == 0 && !o.print_xml && !o.quiet) {
        for (int i = 0; i < b.n; i++) {
            if (b.plans[i].failed)
                continue;
            fputs("Clone '", stderr);
            kimg_print_for_terminal(stderr, b.plans[i].new_name);   /* may come from the XML */
            fputs("' created successfully.\n", stderr);
        }
    }
    if (r == 0 && b.failures)
        r = kimg_fail(-EIO, "%d of %d clones failed; the other %d were created", b.failures,
                      b.n, b.n - b.failures);
out:
    batch_free(&b);
    return r;
}
