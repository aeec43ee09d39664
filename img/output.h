/*
 * output.h — a command's output file, written whole or not at all.
 *
 * Contract: kimg_output_begin(PATH) resolves PATH's symlinks (a chain, to a
 * final target that need not exist yet).  If that target exists and is not
 * a regular file (a block or character device, a FIFO, a folder) the output
 * is written in place: no temporary file, no rename, PATH is opened as is.
 * Otherwise a temporary file ".BASE.kimg-XXXXXX" is made in the REAL
 * target's folder, with the existing target's mode and owner (as qemu-img,
 * which truncates the target in place, keeps them), else mode 0666 less
 * the umask; kimg_output_commit renames it over
 * the real target, so a symlink to it stays a symlink; kimg_output_abort
 * removes it.  Between begin and commit/abort, SIGINT, SIGTERM and SIGHUP
 * remove the temporary file and then end the process by that signal; the
 * old target is untouched.  One output at a time per process.
 */
#ifndef KIMG_OUTPUT_H
#define KIMG_OUTPUT_H

#include <limits.h>
#include <stdbool.h>

struct kimg_output {
    bool in_place;          /* write PATH itself (not a regular file) */
    char target[PATH_MAX];  /* the real target (symlinks followed) */
    const char *path;       /* the name to create/open and write */
};

int kimg_output_begin(struct kimg_output *o, const char *path);
/* Rename the finished temporary file over the target; SYNC_DIR: then
 * fsync the target's folder.  No-op when in place. */
int kimg_output_commit(struct kimg_output *o, bool sync_dir);
/* Remove the temporary file (if any); safe to call more than once. */
void kimg_output_abort(struct kimg_output *o);

#endif
