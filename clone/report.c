/*
 * report.c — the outputs of a clone besides its disks: the --report-json
 * result (new name, UUID, MACs, per disk its source, destination and
 * action, the NVRAM file and the serial and console log files, keys in a
 * fixed order) and the --output-xml and --report-json
 * files, written as kimg/output.h's outputs.
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

static void key(FILE *out, int indent, const char *k, bool *first)
{
    fprintf(out, "%s\n%*s", *first ? "" : ",", indent * 4, "");
    *first = false;
    kimg_json_print_string(out, k);
    fputs(": ", out);
}

static void str_or_null(FILE *out, const char *s)
{
    if (s)
        kimg_json_print_string(out, s);
    else
        fputs("null", out);
}

static void disk_object(FILE *out, const struct clone_disk_plan *d, const char *device,
                        int depth)
{
    bool first = true;
    fputs("{", out);
    if (device) {
        key(out, depth + 1, "target", &first);
        kimg_json_print_string(out, d->target);
        key(out, depth + 1, "device", &first);
        kimg_json_print_string(out, device);
    }
    key(out, depth + 1, "action", &first);
    kimg_json_print_string(out, clone_action_name(d->action));
    if (d->why) {
        key(out, depth + 1, "reason", &first);
        kimg_json_print_string(out, d->why);
    }
    key(out, depth + 1, "source", &first);
    str_or_null(out, d->src);
    key(out, depth + 1, "destination", &first);
    str_or_null(out, d->action == CLONE_SHARE ? d->src : d->dst);
    if (d->action != CLONE_SHARE && d->action != CLONE_REPOINT) {
        key(out, depth + 1, "format", &first);
        kimg_json_print_string(out, d->dst_format ? d->dst_format : d->src_format);
    }
    if (d->backing) {
        key(out, depth + 1, "backing-filename", &first);
        kimg_json_print_string(out, d->backing);
        key(out, depth + 1, "backing-format", &first);
        kimg_json_print_string(out, d->src_format);
    }
    if (d->action == CLONE_COPY || d->action == CLONE_LINK || d->action == CLONE_REFLINK) {
        key(out, depth + 1, "virtual-size", &first);
        fprintf(out, "%llu", (unsigned long long)d->size);
    }
    fprintf(out, "\n%*s}", depth * 4, "");
}

/* One clone's object, its keys at depth L (1 for the single report). */
static void clone_object(FILE *out, const struct clone_plan *p, bool dry_run, int l,
                         bool status, const struct clone_dom *tmpl)
{
    bool first = true;
    fputs("{", out);
    key(out, l, "name", &first);
    kimg_json_print_string(out, p->new_name);
    key(out, l, "uuid", &first);
    kimg_json_print_string(out, p->uuid);
    key(out, l, "original-name", &first);
    kimg_json_print_string(out, p->old_name);
    key(out, l, "original-uuid", &first);
    str_or_null(out, tmpl->uuid);
    key(out, l, "dry-run", &first);
    fputs(dry_run ? "true" : "false", out);
    key(out, l, "macs", &first);
    fputs("[", out);
    for (int i = 0; i < p->nb_macs; i++) {
        fprintf(out, "%s\n%*s", i ? "," : "", (l + 1) * 4, "");
        kimg_json_print_string(out, p->macs[i]);
    }
    fprintf(out, "%s%*s]", p->nb_macs ? "\n" : "", p->nb_macs ? l * 4 : 0, "");
    key(out, l, "disks", &first);
    fputs("[", out);
    for (int i = 0; i < p->nb_disks; i++) {
        fprintf(out, "%s\n%*s", i ? "," : "", (l + 1) * 4, "");
        disk_object(out, &p->disks[i], tmpl->disks[i].device, l + 1);
    }
    fprintf(out, "%s%*s]", p->nb_disks ? "\n" : "", p->nb_disks ? l * 4 : 0, "");
    key(out, l, "nvram", &first);
    if (p->has_nvram) {
        disk_object(out, &p->nvram, NULL, l);
    } else {
        fputs("null", out);
    }
    /* serial and console log files: the template's path and the clone's */
    int nlogs = 0;
    for (int i = 0; i < p->nb_logs; i++)
        nlogs += p->logs[i] && p->log_src && p->log_src[i];
    key(out, l, "logs", &first);
    fputs("[", out);
    for (int i = 0, k = 0; i < p->nb_logs; i++) {
        if (!p->logs[i] || !p->log_src || !p->log_src[i])
            continue;
        fprintf(out, "%s\n%*s{\n%*s\"source\": ", k++ ? "," : "", (l + 1) * 4, "",
                (l + 2) * 4, "");
        kimg_json_print_string(out, p->log_src[i]);
        fprintf(out, ",\n%*s\"destination\": ", (l + 2) * 4, "");
        kimg_json_print_string(out, p->logs[i]);
        fprintf(out, "\n%*s}", (l + 1) * 4, "");
    }
    fprintf(out, "%s%*s]", nlogs ? "\n" : "", nlogs ? l * 4 : 0, "");
    if (status) {
        key(out, l, "status", &first);
        kimg_json_print_string(out, p->failed ? "failed" : dry_run ? "planned" : "created");
        key(out, l, "error", &first);
        str_or_null(out, p->error);
    }
    fprintf(out, "\n%*s}", (l - 1) * 4, "");
}

int clone_report_write(FILE *out, const struct clone_plan *p, bool dry_run)
{
    clone_object(out, p, dry_run, 1, false, p->dom);
    fputs("\n", out);
    return ferror(out) ? -EIO : 0;
}

int clone_report_write_batch(FILE *out, const struct clone_plan *plans, int n, bool dry_run)
{
    int failed = 0;
    for (int i = 0; i < n; i++)
        failed += plans[i].failed;
    fprintf(out, "{\n    \"dry-run\": %s,\n    \"count\": %d,\n    \"failed\": %d,\n"
            "    \"clones\": [", dry_run ? "true" : "false", n, failed);
    for (int i = 0; i < n; i++) {
        fprintf(out, "%s\n        ", i ? "," : "");
        clone_object(out, &plans[i], dry_run, 3, true, plans[0].dom);   /* the template's */
    }
    fputs("\n    ]\n}\n", out);
    return ferror(out) ? -EIO : 0;
}



int clone_write_file(const char *path, const void *buf, size_t len)
{
    char *abs = clone_abspath(path);
    if (!abs)
        return -ENOMEM;
    struct kimg_output out;
    int ret = kimg_output_begin(&out, abs, KIMG_OUTPUT_REPLACE | KIMG_OUTPUT_UNDO);
    if (ret < 0)
        goto out;
    int fd = open(out.path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    if (fd < 0) {
        ret = kimg_fail(-errno, "%s: %s", path, strerror(errno));
        kimg_output_abort(&out);
        goto out;
    }
    for (size_t done = 0; done < len;) {
        ssize_t n = write(fd, (const char *)buf + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            ret = kimg_fail(-errno, "%s: cannot write: %s", path, strerror(errno));
            break;
        }
        done += (size_t)n;
    }
    /* a FIFO or a character device written in place has nothing to sync */
    if (ret == 0 && fsync(fd) < 0 && !(out.in_place && errno == EINVAL))
        ret = kimg_fail(-errno, "%s: cannot write: %s", path, strerror(errno));
    close(fd);
    if (ret == 0)
        ret = kimg_output_commit(&out, true);
    if (ret < 0)
        kimg_output_abort(&out);
out:
    free(abs);
    return ret;
}
