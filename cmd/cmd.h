/*
 * cmd.h — what the subcommands of the `kimg` command share: the command
 * table, error reporting in qemu-img's shape ("kimg: message"),
 * output-format parsing, and the long options every image command takes.
 */
#ifndef KIMG_CMD_H
#define KIMG_CMD_H

#include <getopt.h>
#include <stdbool.h>
#include "kimg.h"

enum output_format { OUTPUT_HUMAN, OUTPUT_JSON };

/* Long-option values above the char range, shared by the subcommands. */
enum {
    OPT_OUTPUT = 256,
    OPT_BACKING_CHAIN,
    OPT_UNTRUSTED,
    OPT_OBJECT,
    OPT_IMAGE_OPTS,
    OPT_START_OFFSET,
    OPT_MAX_LENGTH,
    OPT_HELP,
    OPT_DISK,           /* --disk N: the Nth disk of an OVA archive */
    OPT_DISK2,          /* compare's --disk2 N: the same for filename2 */
};

struct subcommand {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *synopsis;
};

int cmd_create(int argc, char **argv);
int cmd_clone(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_map(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_checksum(int argc, char **argv);
int cmd_resize(int argc, char **argv);
int cmd_amend(int argc, char **argv);
int cmd_rebase(int argc, char **argv);
int cmd_commit(int argc, char **argv);
int cmd_measure(int argc, char **argv);
int cmd_bitmap(int argc, char **argv);
int cmd_dd(int argc, char **argv);

/* Print "kimg: [FILE: ]MESSAGE" with the library's last error (or FALLBACK)
 * on stderr, clear it, and return 1. */
int cmd_fail(const char *file, const char *fallback);
/* Print "kimg: MESSAGE" on stderr as one line (kimg_print_for_terminal). */
void cmd_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print a usage error for the subcommand (qemu-img's first line) and return 1. */
int cmd_usage_error(const char *sub, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* qemu-img's line for an option getopt_long rejected (C: '?' or ':'),
 * then return 1. */
int cmd_bad_option(const char *sub, char **argv, int c);
int parse_output_format(const char *s, enum output_format *out);
/* --object SPEC (kimg_object_add): 0, or 1 after printing its one-line
 * error; SPEC asking for help prints it on stdout and exits 0, as
 * qemu-img does. */
int cmd_object(const char *spec);
/* Open with the standard error message on failure (returns NULL). */
struct kimg *cmd_open(const char *file, const char *fmt, unsigned flags);
/* The same through kimg_open_disk, for the commands that read an image:
 * an OVA archive opens as its disk DISK (0: the first; --disk). */
struct kimg *cmd_open_disk(const char *file, const char *fmt, unsigned flags, unsigned disk);
/* The image argument ARG of a command: with IMAGE_OPTS an option string
 * (qemu-img's --image-opts: kimg_image_opts_parse, then kimg_open_opts;
 * -f/--format and --disk are refused with it, qemu-img's message for -f),
 * else a name opened as cmd_open_disk opens it.  Messages as qemu-img's:
 * "Could not open 'ARG': " and the reason.  NULL after printing. */
struct kimg *cmd_open_image(const char *arg, bool image_opts, const char *fmt,
                            unsigned flags, unsigned disk);
/* --disk N: a disk number from 1 to 256; prints the error and returns
 * -EINVAL otherwise. */
int cmd_parse_disk(const char *arg, unsigned *disk);
/* Cache modes as qemu-img's -t/-T: "none"/"off"/"directsync" open
 * O_DIRECT; all but "unsafe" sync at the end.  An unknown MODE prints
 * "kimg: Invalid WHAT option: MODE" and returns -EINVAL. */
int cmd_parse_cache(const char *mode, const char *what, bool *direct, bool *sync);
/* The same as KIMG_OPEN_DIRECT / KIMG_OPEN_NOSYNC flags. */
int cmd_cache_flags(const char *mode, const char *what, unsigned *flags);
/* qemu-img's progress line "    (NN.NN/100%)\r" on stdout, by qemu's rule
 * (float arithmetic as there): printed at 0, at 100, and when the share
 * has grown by more than MIN_SKIP points (1 unless set) since the last
 * line.  cmd_progress is a kimg progress callback: the share is
 * 100 * DONE / TOTAL (100 when TOTAL is 0). */
void cmd_progress_init(float min_skip);
void cmd_progress_value(float pct);
void cmd_progress(void *opaque, uint64_t done, uint64_t total);
/* "usage: kimg NAME ..." for --help (main.c). */
void print_synopsis(const char *name);
/* `kimg NAME --help` / `-h` (help.c): the synopsis, then "Options:" and
 * LINES (NULL-terminated, one option a line, each naming its spellings:
 * "-f, --format FMT  ...").  Each letter of OPTSTRING and each name of
 * LONGOPTS missing from LINES is reported on stderr as an internal error
 * (tests/cli/095 keeps the pages complete).  Returns 0 (the exit code). */
int cmd_help(const char *name, const char *optstring, const struct option *longopts,
             const char *const *lines);
/* The check itself: how many options LINES misses, each passed to REPORT
 * (may be NULL) as "-X" or "--name". */
int cmd_help_missing(const char *optstring, const struct option *longopts,
                     const char *const *lines, void (*report)(const char *token));
/* kimg_print_for_terminal (kimg.h: every name from an image or an XML
 * file printed in human output or a message), left-aligned in WIDTH
 * columns (as printf's %-Ns). */
void print_safe_padded(FILE *out, const char *s, int width);
/* qemu-img's snapshot table (snapshot -l, human info): header and lines. */
void print_snapshot_list(const struct kimg_snapshot_info *sn, size_t n);

int cmd_snapshot(int argc, char **argv);
/* convert's -l ARG (qemu-img's "snapshot.id=ID,snapshot.name=NAME" or an
 * ID-or-name): load that snapshot into the read-only IMG, the first of
 * NB_SOURCES (a bare name with several is refused, as by qemu-img); with
 * IMG NULL only check the syntax.  Prints a one-line error; 0 or -1. */
int cmd_snapshot_load_opt(struct kimg *img, const char *arg, int nb_sources);

#endif
