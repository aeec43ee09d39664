/*
 * run.c — one `kimg clone` run: build and check the plan, rewrite the XML,
 * copy the storage into temporary files, rename them into place, then
 * print the XML (and write the report).  Any failure, or SIGINT, SIGTERM,
 * SIGHUP or SIGPIPE (kimg/output.h), removes every file the run created;
 * --print-xml writes no storage.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "kimg.h"
#include "clone.h"

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
    if (p->notes.tpm)
        fprintf(stderr, "kimg: warning: the emulated TPM's state is not copied; the clone "
                "starts with an empty TPM\n");
}

/* Copy every disk and the nvram to temporary files, then rename them all. */
static int write_storage(struct clone_plan *p, const struct clone_opts *o)
{
    int r;
    for (int i = 0; i <= p->nb_disks; i++) {
        struct clone_disk_plan *d = i < p->nb_disks ? &p->disks[i] : &p->nvram;
        if (writes_storage(d) && (r = clone_copy_disk(d, o)) < 0)
            return r;
    }
    for (int i = 0; i <= p->nb_disks; i++) {
        struct clone_disk_plan *d = i < p->nb_disks ? &p->disks[i] : &p->nvram;
        if (writes_storage(d)) {
            if ((r = kimg_output_commit(&d->out, true)) < 0)
                return r;
        }
    }
    return 0;
}

static int write_report(const struct clone_plan *p, const struct clone_opts *o)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    if (!m)
        return -ENOMEM;
    int r = clone_report_write(m, p, o->print_xml);
    if (fclose(m) != 0 && r == 0)
        r = -ENOMEM;
    if (r == 0)
        r = clone_write_file(o->report_json, buf, len);
    free(buf);
    return r;
}

int clone_run(const struct clone_opts *o)
{
    struct clone_plan plan;
    char *xml = NULL;
    size_t xml_len = 0;
    int r = clone_plan_build(&plan, o);
    if (r == 0)
        r = clone_plan_rewrite(&plan);
    if (r == 0)
        r = clone_dom_serialize(plan.dom, &xml, &xml_len);
    if (r < 0)
        goto out;
    warnings(&plan, o);

    if (!o->print_xml)
        r = write_storage(&plan, o);
    if (r == 0 && o->report_json)
        r = write_report(&plan, o);
    if (r == 0 && o->output_xml)
        r = clone_write_file(o->output_xml, xml, xml_len);
    if (r == 0 && !o->output_xml) {
        if (fwrite(xml, 1, xml_len, stdout) != xml_len || fflush(stdout) != 0 ||
            ferror(stdout))
            r = kimg_fail(-EIO, "cannot write the new domain XML to stdout: %s",
                          strerror(errno ? errno : EIO));
    }
    /* every file made, or none: the outputs are registered for undo */
    if (r < 0)
        kimg_output_undo_all();
    else
        kimg_output_forget_all();
    if (r == 0 && !o->print_xml && !o->quiet) {
        fputs("Clone '", stderr);
        kimg_print_for_terminal(stderr, plan.new_name);   /* may come from the XML */
        fputs("' created successfully.\n", stderr);
    }
out:
    free(xml);
    clone_plan_free(&plan);
    return r;
}
