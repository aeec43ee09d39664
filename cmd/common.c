/*
 * common.c — helpers shared by the subcommands: error reporting in
 * qemu-img's shape, output-format parsing, --object, opening with messages (an
 * OVA's disk with --disk), cache modes (-t/-T) and qemu-img's progress
 * line (-p).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "cmd.h"

/* Every error line goes through here: "kimg: " and the message on one
 * line, escaped by kimg_print_for_terminal (a newline or an ESC in a
 * backing file name, a snapshot name, a path from a domain XML). */
void cmd_error(const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    fputs("kimg: ", stderr);
    kimg_print_for_terminal(stderr, buf);
    fputc('\n', stderr);
}

int cmd_fail(const char *file, const char *fallback)
{
    const char *msg = kimg_last_error();
    if (!msg)
        msg = fallback ? fallback : "unknown error";
    if (file)
        cmd_error("%s: %s", file, msg);
    else
        cmd_error("%s", msg);
    kimg_clear_error();
    return 1;
}

/* qemu-img's error_exit() adds a second line "Try 'qemu-img --help' for
 * more information"; kimg keeps the first line only (one line per error). */
int cmd_usage_error(const char *sub, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    (void)sub;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    cmd_error("%s", buf);
    return 1;
}

int cmd_bad_option(const char *sub, char **argv, int c)
{
    /* getopt's own messages are off (opterr = 0; optstrings start with
     * ':'): qemu-img's words, naming the argument as typed */
    const char *arg = optind > 0 ? argv[optind - 1] : "";
    if (c == ':')
        return cmd_usage_error(sub, "missing argument for option '%s'", arg);
    return cmd_usage_error(sub, "unrecognized option '%s'", arg);
}

int parse_output_format(const char *s, enum output_format *out)
{
    if (!strcmp(s, "human"))
        *out = OUTPUT_HUMAN;
    else if (!strcmp(s, "json"))
        *out = OUTPUT_JSON;
    else {
        fprintf(stderr, "kimg: --output must be used with human or json as argument.\n");
        return -EINVAL;
    }
    return 0;
}

int cmd_object(const char *spec)
{
    int ret = kimg_object_add(spec, stdout);
    if (ret == 1) {
        fflush(stdout);
        exit(0);
    }
    if (ret < 0)
        return cmd_fail(NULL, "invalid --object");
    return 0;
}

struct kimg *cmd_open(const char *file, const char *fmt, unsigned flags)
{
    struct kimg *img;
    int ret = kimg_open(&img, file, fmt, flags);
    if (ret < 0) {
        /* qemu-img: "Could not open 'FILE': " + the reason */
        const char *msg = kimg_last_error();
        cmd_error("Could not open '%s': %s", file, msg ? msg : strerror(-ret));
        kimg_clear_error();
        return NULL;
    }
    return img;
}

struct kimg *cmd_open_disk(const char *file, const char *fmt, unsigned flags, unsigned disk)
{
    struct kimg *img;
    int ret = kimg_open_disk(&img, file, fmt, flags, disk);
    if (ret < 0) {
        const char *msg = kimg_last_error();
        cmd_error("Could not open '%s': %s", file, msg ? msg : strerror(-ret));
        kimg_clear_error();
        return NULL;
    }
    return img;
}

struct kimg *cmd_open_image(const char *arg, bool image_opts, const char *fmt,
                            unsigned flags, unsigned disk)
{
    struct kimg_opts *opts = NULL;
    struct kimg *img = NULL;

    if (!image_opts)
        return cmd_open_disk(arg, fmt, flags, disk);
    if (fmt) {
        cmd_error("--image-opts and --format are mutually exclusive");
        return NULL;
    }
    if (disk) {
        cmd_error("--image-opts and --disk are mutually exclusive");
        return NULL;
    }
    if (kimg_image_opts_parse(arg, &opts) < 0) {
        cmd_fail(NULL, "invalid option string");
        return NULL;
    }
    int ret = kimg_open_opts(&img, opts, flags);
    kimg_opts_free(opts);
    if (ret < 0) {
        const char *msg = kimg_last_error();
        cmd_error("Could not open '%s': %s", arg, msg ? msg : strerror(-ret));
        kimg_clear_error();
        return NULL;
    }
    return img;
}

int cmd_parse_disk(const char *arg, unsigned *disk)
{
    char *end;
    errno = 0;
    long n = strtol(arg, &end, 10);
    if (errno || end == arg || *end || n < 1 || n > 256) {
        cmd_error("Invalid disk number '%.64s': from 1 to 256", arg);
        return -EINVAL;
    }
    *disk = (unsigned)n;
    return 0;
}

void print_safe_padded(FILE *out, const char *s, int width)
{
    size_t n = kimg_print_for_terminal(out, s);
    if (n < (size_t)width)
        fprintf(out, "%*s", width - (int)n, "");
}

int cmd_parse_cache(const char *mode, const char *what, bool *direct, bool *sync)
{
    static const struct { const char *name; bool direct, sync; } modes[] = {
        { "none", true, true }, { "off", true, true }, { "writeback", false, true },
        { "writethrough", false, true }, { "directsync", true, true },
        { "unsafe", false, false },
    };
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
        if (!strcmp(mode, modes[i].name)) {
            *direct = modes[i].direct;
            *sync = modes[i].sync;
            return 0;
        }
    fprintf(stderr, "kimg: Invalid %s option: %s\n", what, mode);
    return -EINVAL;
}

int cmd_cache_flags(const char *mode, const char *what, unsigned *flags)
{
    bool direct, sync;
    if (cmd_parse_cache(mode, what, &direct, &sync) < 0)
        return -EINVAL;
    *flags = (direct ? KIMG_OPEN_DIRECT : 0) | (sync ? 0 : KIMG_OPEN_NOSYNC);
    return 0;
}

/* qemu's progress rule (util/qemu-progress.c), in single precision as
 * there: a line at 0, at 100, and when the share has grown by more than
 * the minimum step since the last line. */
static float progress_last, progress_min_skip = 1.0f;

void cmd_progress_init(float min_skip)
{
    progress_min_skip = min_skip;
    progress_last = 0.0f;
}

void cmd_progress_value(float pct)
{
    if (pct > 100.0f)
        pct = 100.0f;
    if (pct > progress_last + progress_min_skip || pct == 100.0f || pct == 0.0f) {
        progress_last = pct;
        printf("    (%3.2f/100%%)\r", (double)pct);
        fflush(stdout);
    }
}

void cmd_progress(void *opaque, uint64_t done, uint64_t total)
{
    (void)opaque;
    cmd_progress_value(total ? (float)(100.0 * (double)done / (double)total) : 100.0f);
}

/* "Snapshot list:" and qemu's column header, then one line per snapshot as
 * qemu's bdrv_snapshot_dump prints it (icount signed, as qemu prints it;
 * ids and names come from the image: control characters escaped). */
void print_snapshot_list(const struct kimg_snapshot_info *sn, size_t n)
{
    printf("Snapshot list:\n%-10s%-17s%8s%20s%13s%11s\n",
           "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK", "ICOUNT");
    for (size_t i = 0; i < n; i++) {
        const struct kimg_snapshot_info *s = &sn[i];
        char date[64] = "", clock[64], size[32], icount[32] = "";
        time_t t = (time_t)s->date_sec;
        struct tm tm;
        uint64_t secs = s->vm_clock_nsec / 1000000000u;

        if (localtime_r(&t, &tm))
            strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", &tm);
        snprintf(clock, sizeof(clock), "%02d:%02d:%02d.%03d", (int)(secs / 3600),
                 (int)((secs / 60) % 60), (int)(secs % 60),
                 (int)((s->vm_clock_nsec / 1000000) % 1000));
        kimg_format_size(s->vm_state_size, size, sizeof(size));
        if (s->has_icount)
            snprintf(icount, sizeof(icount), "%" PRId64, (int64_t)s->icount);
        print_safe_padded(stdout, s->id, 9);
        putchar(' ');
        print_safe_padded(stdout, s->name, 16);
        printf(" %8s%20s%13s%11s\n", size, date, clock, icount);
    }
}
