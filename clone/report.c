/*
 * report.c — the outputs of a clone besides its disks: the --report-json
 * result (new name, UUID, MACs, and per disk its source, destination and
 * action, keys in a fixed order) and the --output-xml and --report-json
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

int clone_report_write(FILE *out, const struct clone_plan *p, bool dry_run)
{
    bool first = true;
    fputs("{", out);
    key(out, 1, "name", &first);
    kimg_json_print_string(out, p->new_name);
    key(out, 1, "uuid", &first);
    kimg_json_print_string(out, p->uuid);
    key(out, 1, "original-name", &first);
    kimg_json_print_string(out, p->old_name);
    key(out, 1, "original-uuid", &first);
    str_or_null(out, p->dom->uuid);
    key(out, 1, "dry-run", &first);
    fputs(dry_run ? "true" : "false", out);
    key(out, 1, "macs", &first);
    fputs("[", out);
    for (int i = 0; i < p->nb_macs; i++) {
        fprintf(out, "%s\n%*s", i ? "," : "", 8, "");
        kimg_json_print_string(out, p->macs[i]);
    }
    fprintf(out, "%s]", p->nb_macs ? "\n    " : "");
    key(out, 1, "disks", &first);
    fputs("[", out);
    for (int i = 0; i < p->nb_disks; i++) {
        fprintf(out, "%s\n%*s", i ? "," : "", 8, "");
        disk_object(out, &p->disks[i], p->dom->disks[i].device, 2);
    }
    fprintf(out, "%s]", p->nb_disks ? "\n    " : "");
    key(out, 1, "nvram", &first);
    if (p->has_nvram) {
        disk_object(out, &p->nvram, NULL, 1);
    } else {
        fputs("null", out);
    }
    fputs("\n}\n", out);
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
