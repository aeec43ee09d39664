/*
 * test_tunables.c — img/tunables.c: the defaults with nothing set, flags
 * and numbers parsed by tunables.h's rules, bad values ignored, the crash
 * hooks' dependencies, values read once (until a reload), and the first
 * read racing on many threads.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "tests/unit/tap.h"
#include "tunables.h"

static const char *const names[] = {
    "KIMG_CONVERT_NO_MAP", "KIMG_MAP_SOURCES", "KIMG_CONVERT_NO_REFLINK", "KIMG_CONVERT_SERIAL",
    "KIMG_CONVERT_PARALLEL_WRITES", "KIMG_COMMIT_SERIAL", "KIMG_NO_LIBDEFLATE",
    "KIMG_BITMAP_MEM", "KIMG_CONVERT_WRITE_LAG", "KIMG_CHECK_ALIGN",
    "KIMG_EMPTY_INCREMENTAL", "KIMG_CRASH_AFTER", "KIMG_CRASH_LOSE",
};

static void clear_env(void)
{
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        unsetenv(names[i]);
}

/* KIMG_CONVERT_WRITE_LAG set to TEXT: the number read (0 if ignored). */
static uint64_t number_of(const char *text)
{
    setenv("KIMG_CONVERT_WRITE_LAG", text, 1);
    kimg_tunables_reload();
    return kimg_tunables()->convert_write_lag;
}

static bool flag_of(const char *text)
{
    setenv("KIMG_CONVERT_NO_MAP", text, 1);
    kimg_tunables_reload();
    return kimg_tunables()->convert_no_map;
}

static bool is_default(const struct kimg_tunables *t)
{
    return !t->convert_no_map && !t->convert_no_reflink && !t->convert_serial &&
           !t->convert_parallel_writes && !t->commit_serial && !t->no_libdeflate &&
           !t->bitmap_mem && !t->convert_write_lag && !t->check_align &&
           !t->empty_incremental && t->crash_after == -1 && !t->crash_lose && !t->crash_seed;
}

static void *first_read(void *arg)
{
    return (void *)kimg_tunables();
}

/* In a fresh child: 8 threads make the first call at once; all get the
 * same struct, filled. */
static int race_child(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        setenv("KIMG_BITMAP_MEM", "12345", 1);
        pthread_t th[8];
        void *got[8];
        for (int i = 0; i < 8; i++)
            if (pthread_create(&th[i], NULL, first_read, NULL))
                _exit(2);
        for (int i = 0; i < 8; i++)
            pthread_join(th[i], &got[i]);
        for (int i = 0; i < 8; i++)
            if (got[i] != got[0] || ((const struct kimg_tunables *)got[i])->bitmap_mem != 12345)
                _exit(1);
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int main(void)
{
    plan(32);
    clear_env();
    is_u64(race_child(), 0, "concurrent first reads see one filled struct");

    kimg_tunables_reload();
    const struct kimg_tunables *t = kimg_tunables();
    ok(is_default(t), "nothing set: every flag off, every number 0, crash_after -1");

    /* every variable reaches its own field */
    setenv("KIMG_CONVERT_NO_MAP", "1", 1);
    setenv("KIMG_CONVERT_NO_REFLINK", "1", 1);
    setenv("KIMG_CONVERT_SERIAL", "1", 1);
    setenv("KIMG_CONVERT_PARALLEL_WRITES", "1", 1);
    setenv("KIMG_COMMIT_SERIAL", "1", 1);
    setenv("KIMG_NO_LIBDEFLATE", "1", 1);
    setenv("KIMG_BITMAP_MEM", "4096", 1);
    setenv("KIMG_CONVERT_WRITE_LAG", "4", 1);
    setenv("KIMG_CHECK_ALIGN", "1", 1);
    setenv("KIMG_EMPTY_INCREMENTAL", "1", 1);
    ok(!t->convert_no_map && !t->check_align, "read once: setenv alone changes nothing");
    kimg_tunables_reload();
    ok(t->convert_no_map && t->convert_no_reflink && t->convert_serial &&
       t->convert_parallel_writes && t->commit_serial && t->no_libdeflate &&
       t->check_align && t->empty_incremental, "=1 turns each flag on");
    is_u64(t->bitmap_mem, 4096, "KIMG_BITMAP_MEM");
    is_u64(t->convert_write_lag, 4, "KIMG_CONVERT_WRITE_LAG");
    ok(t->crash_after == -1 && !t->crash_lose, "crash hooks stay off");
    clear_env();

    /* flags */
    ok(flag_of("1") && flag_of("yes") && flag_of("2"), "a flag is on for any value but \"\" and \"0\"");
    ok(!flag_of("0"), "\"0\" is off");
    ok(!flag_of(""), "empty is off");
    unsetenv("KIMG_CONVERT_NO_MAP");

    /* numbers */
    is_u64(number_of("0"), 0, "0");
    is_u64(number_of("17"), 17, "17");
    is_u64(number_of("007"), 7, "leading zeros: decimal");
    is_u64(number_of("18446744073709551615"), UINT64_MAX, "2^64-1");
    is_u64(number_of("18446744073709551616"), 0, "2^64 is ignored");
    is_u64(number_of("-1"), 0, "a sign is ignored");
    is_u64(number_of("+4"), 0, "a plus sign too");
    is_u64(number_of(" 4"), 0, "leading space");
    is_u64(number_of("4 "), 0, "trailing space");
    is_u64(number_of("4k"), 0, "a suffix");
    is_u64(number_of("0x10"), 0, "hex");
    is_u64(number_of(""), 0, "empty");
    clear_env();

    /* the crash hooks */
    setenv("KIMG_CRASH_AFTER", "3", 1);
    kimg_tunables_reload();
    ok(t->crash_after == 3 && !t->crash_lose, "KIMG_CRASH_AFTER=3 alone: a kill after 3 changes");
    setenv("KIMG_CRASH_LOSE", "7", 1);
    kimg_tunables_reload();
    ok(t->crash_after == 3 && t->crash_lose && t->crash_seed == 7, "with KIMG_CRASH_LOSE=7: power failure, seed 7");
    setenv("KIMG_CRASH_LOSE", "seven", 1);
    kimg_tunables_reload();
    ok(t->crash_after == 3 && !t->crash_lose, "a seed that is no number is ignored");
    setenv("KIMG_CRASH_AFTER", "0", 1);
    setenv("KIMG_CRASH_LOSE", "0", 1);
    kimg_tunables_reload();
    ok(t->crash_after == 0 && t->crash_lose && t->crash_seed == 0, "0 and seed 0 are values, not off");
    unsetenv("KIMG_CRASH_AFTER");
    kimg_tunables_reload();
    ok(t->crash_after == -1 && !t->crash_lose, "KIMG_CRASH_LOSE without KIMG_CRASH_AFTER: off");
    setenv("KIMG_CRASH_AFTER", "-1", 1);
    kimg_tunables_reload();
    ok(t->crash_after == -1, "a negative count is off");
    setenv("KIMG_CRASH_AFTER", "9223372036854775808", 1);
    kimg_tunables_reload();
    ok(t->crash_after == -1, "a count past INT64_MAX is off");
    setenv("KIMG_CRASH_AFTER", "9223372036854775807", 1);
    kimg_tunables_reload();
    ok(t->crash_after == INT64_MAX, "INT64_MAX is a count");
    setenv("KIMG_CRASH_AFTER", "2x", 1);
    kimg_tunables_reload();
    ok(t->crash_after == -1, "a count with junk is off");
    clear_env();

    kimg_tunables_reload();
    ok(is_default(t), "cleared again: the defaults");
    return done_testing();
}
