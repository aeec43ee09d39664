/*
 * test_output.c — kimg/output.h: the replace rules (REPLACE, or never
 * replace), undo of committed UNDO outputs, symlinks kept, devices in
 * place, the signal dispositions installed only while outputs exist, and
 * outputs of several files (members renamed before the output's own file,
 * an old file naming them removed first, every member removed on failure),
 * registered folders (removed after their files, or kept), thousands of
 * outputs at once in little memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include "tests/unit/tap.h"
#include "kimg.h"
#include "kimg/output.h"

static char dir[] = "/tmp/kimg-test-output-XXXXXX";

static const char *at(const char *name)
{
    static char buf[4][256];
    static int n;
    char *b = buf[n++ % 4];
    snprintf(b, sizeof(buf[0]), "%s/%s", dir, name);
    return b;
}

static void put(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        if (write(fd, text, strlen(text)) < 0) {
            /* checked by the reads */
        }
        close(fd);
    }
}

static bool holds(const char *path, const char *text)
{
    char buf[64] = "";
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return !strcmp(buf, text);
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static bool handler_is(int sig, void (*h)(int))
{
    struct sigaction sa;
    sigaction(sig, NULL, &sa);
    return sa.sa_handler == h;
}

int main(void)
{
    struct kimg_output a, b, c;
    /* The assertions below are about the default dispositions: a run in
     * the background of a non-interactive shell (CI, nohup ... &) starts
     * with SIGINT and SIGQUIT ignored, which kimg rightly leaves alone. */
    static const int sigs[] = { SIGINT, SIGQUIT, SIGTERM, SIGHUP, SIGPIPE, SIGXFSZ };
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        signal(sigs[i], SIG_DFL);
    plan(48);
    if (!mkdtemp(dir)) {
        skip_all("no temporary folder");
        return 0;
    }

    ok(handler_is(SIGPIPE, SIG_DFL) && handler_is(SIGXFSZ, SIG_DFL), "default dispositions first");
    ok(kimg_output_begin(&a, at("new.img"), KIMG_OUTPUT_UNDO) == 0 && !a.in_place, "begin");
    ok(!handler_is(SIGPIPE, SIG_DFL) && handler_is(SIGXFSZ, SIG_IGN),
       "while an output exists: SIGPIPE guarded, SIGXFSZ ignored");
    put(a.path, "one");
    ok(!exists(at("new.img")), "nothing at the target before commit");
    ok(kimg_output_commit(&a, false) == 0 && holds(at("new.img"), "one"), "commit renames");
    ok(!handler_is(SIGINT, SIG_DFL), "a committed UNDO output stays guarded");

    put(at("old.xml"), "old");
    ok(kimg_output_begin(&b, at("old.xml"), 0) == -EEXIST, "without REPLACE an existing file is refused");
    kimg_clear_error();
    ok(kimg_output_begin(&b, at("old.xml"), KIMG_OUTPUT_REPLACE | KIMG_OUTPUT_UNDO) == 0,
       "with REPLACE it is taken");
    put(b.path, "xml");
    ok(kimg_output_commit(&b, true) == 0 && holds(at("old.xml"), "xml"), "and replaced");

    ok(kimg_output_begin(&c, at("race.img"), KIMG_OUTPUT_UNDO) == 0, "begin a never-replacing output");
    put(at("race.img"), "theirs");
    ok(kimg_output_commit(&c, false) == -EEXIST, "a file that appeared meanwhile fails the commit");
    kimg_clear_error();
    const char *tmp = c.path;
    kimg_output_abort(&c);
    ok(!exists(tmp) && holds(at("race.img"), "theirs"), "abort removes the temporary file only");

    kimg_output_undo_all();
    ok(!exists(at("new.img")) && !exists(at("old.xml")), "undo removes the committed outputs");
    ok(handler_is(SIGINT, SIG_DFL) && handler_is(SIGXFSZ, SIG_DFL), "and restores the dispositions");

    put(at("real.raw"), "old");
    if (symlink("real.raw", at("link.raw")) < 0)
        diag("symlink failed");
    ok(kimg_output_begin(&a, at("link.raw"), KIMG_OUTPUT_REPLACE) == 0, "begin through a symlink");
    put(a.path, "new");
    ok(kimg_output_commit(&a, false) == 0, "commit");
    struct stat st;
    ok(lstat(at("link.raw"), &st) == 0 && S_ISLNK(st.st_mode) && holds(at("real.raw"), "new"),
       "the link stays a link, its target has the content");
    ok(handler_is(SIGINT, SIG_DFL), "a committed plain output is released");

    ok(kimg_output_begin(&a, "/dev/null", KIMG_OUTPUT_REPLACE) == 0 && a.in_place &&
       !strcmp(a.path, "/dev/null"), "a character device is written in place");
    ok(kimg_output_commit(&a, false) == 0 && handler_is(SIGINT, SIG_DFL), "no rename, no guard");
    kimg_output_forget_all();

    /* several files: members appear with the output, after it never */
    char *m1 = NULL, *m2 = NULL, *mp = NULL;
    ok(kimg_output_add_member(at("none"), at("d-1"), "d-1", &m1) == -ENOENT && !m1,
       "a member of no pending output: -ENOENT");
    ok(kimg_output_begin(&a, at("d.desc"), KIMG_OUTPUT_REPLACE) == 0, "begin a multi-file output");
    ok(kimg_output_add_member(a.path, at("d-1"), "d-1", &m1) == 0 &&
       kimg_output_add_member(a.path, at("d-2"), "d-2", &m2) == 0 && exists(m1) && exists(m2),
       "two members, made under temporary names");
    mp = kimg_output_member_path(a.path, "d-2");
    ok(mp && !strcmp(mp, m2) && !kimg_output_member_path(a.path, "d-3"),
       "a member found by the name its output gives it");
    free(mp);
    char *m3 = NULL;
    ok(kimg_output_add_member(a.path, at("d-1"), "again", &m3) == -EEXIST && !m3,
       "one file named twice is refused");
    put(m1, "one");
    put(m2, "two");
    put(a.path, "desc");
    put(at("d.desc"), "old desc");
    put(at("d-1"), "old one");
    ok(kimg_output_commit(&a, true) == 0 && holds(at("d.desc"), "desc") &&
       holds(at("d-1"), "one") && holds(at("d-2"), "two") && !exists(m1) && !exists(m2),
       "commit: every file in place, the old ones replaced");
    ok(handler_is(SIGINT, SIG_DFL), "and released");
    free(m1);
    free(m2);

    ok(kimg_output_begin(&a, at("e.desc"), KIMG_OUTPUT_REPLACE) == 0 &&
       kimg_output_add_member(a.path, at("e-1"), "e-1", &m1) == 0, "begin another");
    kimg_output_abort(&a);
    ok(!exists(m1) && !exists(at("e-1")) && !exists(at("e.desc")), "abort removes every member");
    free(m1);

    /* the output's own rename fails (a folder took its name): the members,
     * renamed already, are removed with it */
    ok(kimg_output_begin(&a, at("f.desc"), KIMG_OUTPUT_REPLACE) == 0 &&
       kimg_output_add_member(a.path, at("f-1"), "f-1", &m1) == 0, "begin a third");
    put(m1, "x");
    ok(mkdir(at("f.desc"), 0755) == 0 && mkdir(at("f.desc/sub"), 0755) == 0, "a folder at its name");
    ok(kimg_output_commit(&a, false) < 0, "commit fails");
    char own[256];
    snprintf(own, sizeof(own), "%s", a.path ? a.path : "");
    kimg_output_abort(&a);
    ok(*own && !exists(at("f-1")) && !exists(m1) && !exists(own),
       "no member left, renamed or not");
    free(m1);
    ok(handler_is(SIGINT, SIG_DFL), "all released");
    kimg_clear_error();

    /* folders (kimg_output_mkdir): undo removes them after their files,
     * the deepest first whatever the slots' order, a read-only one too;
     * forget keeps them */
    ok(kimg_output_begin(&a, at("pad.img"), KIMG_OUTPUT_UNDO) == 0, "an output before them");
    ok(kimg_output_mkdir(at("st"), 0700) == 0, "make a folder");
    kimg_output_abort(&a);      /* a free slot below the folder's: its subfolder's */
    ok(kimg_output_mkdir(at("st/sub"), 0700) == 0, "and one inside");
    ok(kimg_output_mkdir(at("st"), 0700) == -EEXIST, "an existing folder is refused");
    kimg_clear_error();
    ok(kimg_output_begin(&b, at("st/sub/f"), KIMG_OUTPUT_UNDO) == 0, "a file inside");
    put(b.path, "state");
    ok(kimg_output_commit(&b, false) == 0 && holds(at("st/sub/f"), "state"), "committed");
    ok(chmod(at("st/sub"), 0500) == 0 && !handler_is(SIGINT, SIG_DFL),
       "a read-only folder; guarded");
    kimg_output_undo_all();
    ok(!exists(at("st/sub/f")) && !exists(at("st/sub")) && !exists(at("st")),
       "undo removes the file and both folders");
    ok(handler_is(SIGINT, SIG_DFL), "and releases them");
    ok(kimg_output_mkdir(at("kept"), 0700) == 0, "a folder");
    kimg_output_forget_all();
    ok(exists(at("kept")) && handler_is(SIGINT, SIG_DFL), "forget keeps it");
    rmdir(at("kept"));

    /* a batch of clones keeps thousands of committed outputs registered:
     * more than the 4352 slots of old, each a few hundred bytes now, not
     * two PATH_MAX buffers (8 KiB) */
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    int made = 0;
    for (int i = 0; i < 5000; i++) {
        char name[64];
        snprintf(name, sizeof(name), "many-%d", i);
        if (kimg_output_begin(&a, at(name), KIMG_OUTPUT_UNDO) == 0 &&
            kimg_output_commit(&a, false) == 0)
            made++;
    }
    getrusage(RUSAGE_SELF, &ru1);
    ok(made == 5000 && exists(at("many-4999")), "5000 committed UNDO outputs registered at once");
    diag("their registry grew the peak RSS by %ld KiB", ru1.ru_maxrss - ru0.ru_maxrss);
    ok(ru1.ru_maxrss - ru0.ru_maxrss < 8192, "in under 8 MiB");
    kimg_output_undo_all();
    ok(!exists(at("many-0")) && !exists(at("many-4999")) && handler_is(SIGINT, SIG_DFL),
       "undo removes them all");
    kimg_clear_error();

    rmdir(at("f.desc/sub"));
    rmdir(at("f.desc"));
    unlink(at("d.desc"));
    unlink(at("d-1"));
    unlink(at("d-2"));
    unlink(at("race.img"));
    unlink(at("real.raw"));
    unlink(at("link.raw"));
    rmdir(dir);
    return done_testing();
}
