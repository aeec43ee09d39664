/*
 * test_crash.c — the crash simulation of img/crash.c: KIMG_CRASH_AFTER
 * ends the process at the given change with everything before it kept;
 * KIMG_CRASH_LOSE rolls each file back to its last sync and keeps a
 * random subset of the later changes, in order (overlaps resolved by the
 * later kept change), and restores sizes.  Each case runs in a child
 * process (the crash is an _exit) that sets the environment first.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "tap.h"
#include "kimg.h"
#include "kimg/file.h"
#include "tunables.h"

static char dir[] = "/tmp/kimg-crash-XXXXXX";
static char path[4096];

/* The steps a child performs; the crash ends it somewhere in them. */
enum step_kind { W, Z, TR, SY, CL };   /* CL: close and reopen */
struct step { enum step_kind kind; uint64_t off, len; uint8_t byte; };

static int child(const struct step *steps, int n, const char *after, const char *lose)
{
    pid_t pid = fork();
    if (pid == 0) {
        setenv("KIMG_CRASH_AFTER", after, 1);
        if (lose)
            setenv("KIMG_CRASH_LOSE", lose, 1);
        kimg_tunables_reload();
        struct kimg_file *f;
        if (kimg_file_open(&f, path, KIMG_FILE_RDWR) < 0)
            _exit(1);
        for (int i = 0; i < n; i++) {
            const struct step *s = &steps[i];
            uint8_t buf[8192];
            memset(buf, s->byte, sizeof(buf));
            switch (s->kind) {
            case W:  kimg_file_pwrite(f, buf, s->len, s->off); break;
            case Z:  kimg_file_zero(f, s->off, s->len, true); break;
            case TR: kimg_file_truncate(f, s->len); break;
            case SY: kimg_file_sync(f); break;
            case CL:
                kimg_file_close(f);
                if (kimg_file_open(&f, path, KIMG_FILE_RDWR) < 0)
                    _exit(1);
                break;
            }
        }
        kimg_file_close(f);
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void reset(uint64_t size, uint8_t byte)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    uint8_t buf[8192];
    memset(buf, byte, sizeof(buf));
    for (uint64_t o = 0; o < size; o += sizeof(buf))
        if (write(fd, buf, size - o < sizeof(buf) ? size - o : sizeof(buf)) < 0)
            break;
    close(fd);
}

static uint64_t size_of(void)
{
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static int byte_at(uint64_t off)
{
    int fd = open(path, O_RDONLY);
    uint8_t b = 0;
    ssize_t n = pread(fd, &b, 1, (off_t)off);
    close(fd);
    return n == 1 ? b : -1;
}

int main(void)
{
    plan(14);
    if (!mkdtemp(dir))
        return 1;
    snprintf(path, sizeof(path), "%s/f", dir);

    /* a kill keeps everything before the crash point */
    const struct step two[] = { { W, 0, 4096, 0xaa, }, { W, 4096, 4096, 0xbb }, { W, 8192, 4096, 0xcc } };
    reset(16384, 0);
    is_u64(child(two, 3, "2", NULL), 222, "the process ends at the third change");
    ok(byte_at(0) == 0xaa && byte_at(4096) == 0xbb && byte_at(8192) == 0, "a kill keeps the changes made before it");
    reset(16384, 0);
    is_u64(child(two, 3, "3", NULL), 0, "N past the last change: the steps complete");

    /* power failure: unsynced writes each kept or lost */
    int seen[4] = { 0 };
    bool consistent = true;
    for (int seed = 1; seed <= 32; seed++) {
        char s[16];
        snprintf(s, sizeof(s), "%d", seed);
        reset(16384, 0);
        child(two, 3, "2", s);
        int a = byte_at(0), b = byte_at(4096);
        if ((a != 0 && a != 0xaa) || (b != 0 && b != 0xbb) || byte_at(8192) != 0 || size_of() != 16384)
            consistent = false;
        seen[(a == 0xaa) | (b == 0xbb) << 1]++;
    }
    ok(consistent, "each lost write leaves the old bytes, each kept one the new");
    ok(seen[0] && seen[1] && seen[2] && seen[3], "over 32 seeds every subset of two unsynced writes happens");

    /* a sync protects what came before it */
    const struct step synced[] = { { W, 0, 4096, 0xaa }, { SY, 0, 0, 0 }, { W, 4096, 4096, 0xbb }, { W, 8192, 4096, 0xcc } };
    bool kept = true, lost_some = false;
    for (int seed = 1; seed <= 16; seed++) {
        char s[16];
        snprintf(s, sizeof(s), "%d", seed);
        reset(16384, 0);
        child(synced, 4, "3", s);
        kept &= byte_at(0) == 0xaa;
        lost_some |= byte_at(4096) == 0;
    }
    ok(kept, "a write followed by a completed sync is never lost");
    ok(lost_some, "a write after the sync can be lost");

    /* overlapping writes: every byte from the last kept write or the old file */
    const struct step overlap[] = { { W, 0, 8192, 0x11 }, { W, 4096, 8192, 0x22 }, { SY, 0, 0, 0 } };
    bool sane = true;
    for (int seed = 1; seed <= 16; seed++) {
        char s[16];
        snprintf(s, sizeof(s), "%d", seed);
        reset(16384, 0);
        child(overlap, 3, "2", s);
        int a = byte_at(0), m = byte_at(6000), e = byte_at(10000);
        bool y = e == 0x22;
        sane &= (a == 0 || a == 0x11) && (e == 0 || y);
        sane &= y ? m == 0x22 : (m == 0 || m == 0x11);
        sane &= (m == 0x11) == (a == 0x11) || y;
    }
    ok(sane, "overlapping unsynced writes resolve as in some order-preserving subset");

    /* sizes: a lost growing write or truncate leaves the old size */
    const struct step grow[] = { { W, 16384, 4096, 0xdd }, { TR, 0, 40960, 0 }, { SY, 0, 0, 0 } };
    bool sizes = true;
    int grown = 0, old = 0;
    for (int seed = 1; seed <= 16; seed++) {
        char s[16];
        snprintf(s, sizeof(s), "%d", seed);
        reset(16384, 0);
        child(grow, 3, "2", s);
        uint64_t z = size_of();
        sizes &= z == 16384 || z == 20480 || z == 40960;
        grown += z != 16384;
        old += z == 16384;
    }
    ok(sizes, "a lost file growth leaves a size some subset of the changes gives");
    ok(grown && old, "both outcomes happen");

    const struct step shrink[] = { { TR, 0, 4096, 0 }, { SY, 0, 0, 0 } };
    bool restored = false, cut = false;
    for (int seed = 1; seed <= 16; seed++) {
        char s[16];
        snprintf(s, sizeof(s), "%d", seed);
        reset(16384, 0x5a);
        child(shrink, 2, "1", s);
        if (size_of() == 16384 && byte_at(12000) == 0x5a)
            restored = true;
        if (size_of() == 4096)
            cut = true;
    }
    ok(restored, "a lost shrink restores the bytes it cut off");
    ok(cut, "a kept shrink stays");

    /* a punched hole that is lost reads as the old data again */
    const struct step punch[] = { { Z, 0, 8192, 0 }, { SY, 0, 0, 0 } };
    bool back = false, zero = false;
    for (int seed = 1; seed <= 16; seed++) {
        char s[16];
        snprintf(s, sizeof(s), "%d", seed);
        reset(16384, 0x77);
        child(punch, 2, "1", s);
        back |= byte_at(100) == 0x77;
        zero |= byte_at(100) == 0;
    }
    ok(back && zero, "a zeroed range is either still zero or its old bytes");

    /* closed files keep their unsynced changes at risk */
    const struct step closed[] = { { W, 0, 4096, 0xee }, { CL, 0, 0, 0 }, { W, 8192, 4096, 0x99 } };
    bool lost_closed = false, kept_closed = false;
    for (int seed = 1; seed <= 16; seed++) {
        char s[16];
        snprintf(s, sizeof(s), "%d", seed);
        reset(16384, 0);
        child(closed, 3, "1", s);
        lost_closed |= byte_at(0) == 0;
        kept_closed |= byte_at(0) == 0xee;
    }
    ok(lost_closed && kept_closed, "an unsynced write to a file closed since can still be lost");

    char cmd[8300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        diag("could not remove %s", dir);
    return done_testing();
}
