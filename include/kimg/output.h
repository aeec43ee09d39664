/*
 * output.h — the files a command creates, each written whole or not at
 * all: the one implementation of temp-name-then-rename (convert, clone).
 *
 * Where the output goes.  kimg_output_begin(PATH) looks at PATH:
 *  - it exists and is not a regular file (a block or character device, a
 *    FIFO or a pipe such as /dev/stdout, a folder), also through symlinks:
 *    the output is written IN PLACE, PATH is opened as is, with no
 *    temporary file and no rename.  (qemu-img opens such a target as is
 *    too; it refuses FIFOs, pipes and character devices smaller than the
 *    image when creating one, and convert refuses them alike, with its
 *    messages, before calling this.)
 *  - otherwise PATH's symlinks are followed (a chain, to a final target
 *    that need not exist yet): the temporary file ".BASE.kimg-XXXXXX" is
 *    made in the REAL target's folder, and commit renames it over the real
 *    target, so a symlink stays a symlink and its target gets the content
 *    (as qemu-img, which writes through the link).  The temporary file
 *    gets an existing target's mode and owner (qemu-img truncates the
 *    target in place, which keeps them; the owner only where we may set
 *    it), else mode 0666 less the umask; the caller may chmod it before
 *    writing (clone gives a disk copy its source's mode).
 *
 * The replace rule, one per caller, chosen by the flags:
 *  - convert:              KIMG_OUTPUT_REPLACE (an existing image is
 *                          replaced, as qemu-img replaces it);
 *  - clone's disk copies, overlays and NVRAM copies:  KIMG_OUTPUT_UNDO
 *                          without REPLACE: nothing that exists is written
 *                          (begin fails with EEXIST, even for a device or
 *                          a dangling symlink), and a file that appears at
 *                          the target meanwhile fails the commit (EEXIST);
 *  - clone's --output-xml and --report-json files:  KIMG_OUTPUT_REPLACE |
 *                          KIMG_OUTPUT_UNDO.
 * KIMG_OUTPUT_UNDO: a committed output stays registered, and
 * kimg_output_undo_all() (the run failed) removes it with everything else
 * registered; kimg_output_forget_all() (the run succeeded) keeps them.
 * Undo cannot bring back a file a REPLACE output replaced.
 *
 * Signals.  While any output is registered (a temporary file, a
 * committed UNDO output, or a folder), SIGINT, SIGTERM, SIGHUP and
 * SIGPIPE remove every registered file, then the registered folders, and
 * then end the process by that signal, and SIGXFSZ is
 * ignored (a file size limit fails the write with EFBIG, and the caller
 * removes its outputs, instead of the process dying with them left
 * behind).  The dispositions in force before are restored when the last
 * output leaves the registry.  Registration and commit block those signals
 * in the calling thread; call them from the thread that does the I/O.
 *
 * Several files.  An output may own member files (the extents a VMDK
 * descriptor names): kimg_output_add_member registers one, made under a
 * temporary name beside its own (real) target.  Commit then makes the
 * whole set appear with the output's own file LAST: every member's data
 * is synced (SYNC_DIR), an old file at the output's name that the new
 * members would replace is removed first (it may name files of the same
 * names, and must never name a mix of old and new ones), the members are
 * renamed into place and their folders synced, and only then is the
 * output's file renamed.  A crash at any point leaves at worst members
 * that no file names, never a file that names missing or partial
 * members; a failure (abort, a failed commit, a signal) removes every
 * member, temporary or already renamed.  Members follow the output's
 * REPLACE and UNDO rules.  Each rename of a multi-file commit is a
 * counted point for KIMG_CRASH_AFTER (img/crash.c).
 *
 * Functions return 0 or -errno after kimg_fail (message: "PATH: why").
 */
#ifndef KIMG_OUTPUT_H
#define KIMG_OUTPUT_H

#include <stdbool.h>

/* At most this many outputs, members and folders registered at once
 * (committed UNDO outputs stay registered until the run ends: a batch of
 * clones holds each clone's files; begin fails with EMFILE past it). */
#define KIMG_OUTPUT_MAX (1 << 17)

enum {
    KIMG_OUTPUT_REPLACE = 1u << 0,  /* commit replaces an existing target */
    KIMG_OUTPUT_UNDO = 1u << 1,     /* committed, it stays registered for undo */
};

struct kimg_output {
    const char *path;   /* the file to create/open and write: the temporary
                         * file, or PATH itself in place; NULL when done */
    bool in_place;      /* PATH is not a regular file: written as is */
    int slot;           /* registry slot + 1; 0: none (a zeroed struct is idle) */
    unsigned flags;
    const char *name;   /* the caller's PATH (kept alive by the caller) */
};

int kimg_output_begin(struct kimg_output *o, const char *path, unsigned flags);
/* Rename the finished temporary file over the real target; SYNC_DIR: then
 * fsync the target's folder.  No-op in place. */
int kimg_output_commit(struct kimg_output *o, bool sync_dir);
/* Remove the temporary file if not committed; no-op after commit (an UNDO
 * output then waits for undo_all/forget_all).  Safe to call more than once
 * and on a zeroed struct. */
void kimg_output_abort(struct kimg_output *o);
/* Register PATH as a member of the pending output whose temporary file is
 * OWNER_TMP (kimg_output.path, e.g. the file name a driver's create is
 * given), under NAME, the name the output's image gives it.  *TMP: the
 * temporary file to write (made empty, mode as begin gives; malloc'd).
 * -ENOENT without a message when OWNER_TMP is no pending output (the
 * caller then makes PATH itself); -EEXIST when PATH exists and the output
 * does not replace, or names the output or another member. */
int kimg_output_add_member(const char *owner_tmp, const char *path, const char *name,
                           char **tmp);
/* The temporary file of the member NAME of the pending output whose
 * temporary file is OWNER_TMP (malloc'd), or NULL: how the output's own
 * image, opened under its temporary name while it is made, finds the
 * files it names (kimg_open_named_file asks). */
char *kimg_output_member_path(const char *owner_tmp, const char *name);
/* Make the folder PATH (mkdir with MODE; it must not exist) and register
 * it with the UNDO outputs, with the guarded signals held between the
 * two: kimg_output_undo_all() and a guarded signal remove it once the
 * files are gone (made writable, then removed if empty, the deepest of
 * the registered folders first); kimg_output_forget_all() keeps it.
 * Clone's copy of swtpm's state folders. */
int kimg_output_mkdir(const char *path, unsigned mode);
/* Remove every registered temporary file and committed UNDO output. */
void kimg_output_undo_all(void);
/* Keep every committed output; remove stray temporary files. */
void kimg_output_forget_all(void);

#endif
