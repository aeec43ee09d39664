/*
 * tunables.c — reads the KIMG_* environment once into struct kimg_tunables
 * (the rules are in tunables.h).  The only getenv in the library: a new
 * variable gets a field, a line in VARS below and a row in README.md's
 * "Tunables and test hooks" table.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "tunables.h"

static struct kimg_tunables tun;
static pthread_once_t tun_once = PTHREAD_ONCE_INIT;

enum kind { FLAG, NUMBER, PATH };

/* Every variable: its name, its kind and its field.  (For numbers `out`
 * is a uint64_t; crash_after is signed and handled below.) */
static const struct var {
    const char *name;
    enum kind kind;
    size_t off;
} VARS[] = {
    { "KIMG_CONVERT_NO_MAP", FLAG, offsetof(struct kimg_tunables, convert_no_map) },
    { "KIMG_MAP_SOURCES", FLAG, offsetof(struct kimg_tunables, map_sources) },
    { "KIMG_CONVERT_NO_REFLINK", FLAG, offsetof(struct kimg_tunables, convert_no_reflink) },
    { "KIMG_NO_POPULATE", FLAG, offsetof(struct kimg_tunables, no_populate) },
    { "KIMG_CONVERT_SERIAL", FLAG, offsetof(struct kimg_tunables, convert_serial) },
    { "KIMG_CONVERT_PARALLEL_WRITES", FLAG,
      offsetof(struct kimg_tunables, convert_parallel_writes) },
    { "KIMG_COMMIT_SERIAL", FLAG, offsetof(struct kimg_tunables, commit_serial) },
    { "KIMG_NO_LIBDEFLATE", FLAG, offsetof(struct kimg_tunables, no_libdeflate) },
    { "KIMG_BITMAP_MEM", NUMBER, offsetof(struct kimg_tunables, bitmap_mem) },
    { "KIMG_NBD_CONNS", NUMBER, offsetof(struct kimg_tunables, nbd_conns) },
    { "KIMG_QEMU_OUTPUT", PATH, offsetof(struct kimg_tunables, qemu_output) },
    { "KIMG_CONVERT_WRITE_LAG", NUMBER, offsetof(struct kimg_tunables, convert_write_lag) },
    { "KIMG_CHECK_ALIGN", FLAG, offsetof(struct kimg_tunables, check_align) },
    { "KIMG_EMPTY_INCREMENTAL", FLAG, offsetof(struct kimg_tunables, empty_incremental) },
    { "KIMG_TEST_MAP_PAUSE", PATH, offsetof(struct kimg_tunables, test_map_pause) },
    { "KIMG_TEST_OPEN_PAUSE", PATH, offsetof(struct kimg_tunables, test_open_pause) },
};

static bool parse_flag(const char *v)
{
    return v && *v && strcmp(v, "0") != 0;
}

/* A plain decimal number: 0 and *OUT set, or -EINVAL (unset, empty, not
 * digits only, or past 64 bits). */
static int parse_number(const char *v, uint64_t *out)
{
    if (!v || *v < '0' || *v > '9')
        return -EINVAL;
    errno = 0;
    char *end;
    unsigned long long n = strtoull(v, &end, 10);
    if (*end || errno)
        return -EINVAL;
    *out = n;
    return 0;
}

static void read_env(void)
{
    struct kimg_tunables t = { .crash_after = -1 };
    for (size_t i = 0; i < sizeof(VARS) / sizeof(VARS[0]); i++) {
        const char *v = getenv(VARS[i].name);
        void *field = (char *)&t + VARS[i].off;
        if (VARS[i].kind == FLAG)
            *(bool *)field = parse_flag(v);
        else if (VARS[i].kind == PATH)
            *(const char **)field = v && *v ? v : NULL;
        else
            (void)parse_number(v, field);
    }
    uint64_t n;
    if (parse_number(getenv("KIMG_CRASH_AFTER"), &n) == 0 && n <= INT64_MAX) {
        t.crash_after = (int64_t)n;
        t.crash_lose = parse_number(getenv("KIMG_CRASH_LOSE"), &t.crash_seed) == 0;
    }
    tun = t;
}

const struct kimg_tunables *kimg_tunables(void)
{
    pthread_once(&tun_once, read_env);
    return &tun;
}

void kimg_tunables_reload(void)
{
    pthread_once(&tun_once, read_env);
    read_env();
}

void kimg_test_pause(const char *path, int *done)
{
    if (!path || __atomic_exchange_n(done, 1, __ATOMIC_ACQ_REL))
        return;
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    close(fd);
    struct timespec ts = { 0, 10 * 1000 * 1000 };
    for (int i = 0; i < 6000 && access(path, F_OK) == 0; i++)
        nanosleep(&ts, NULL);
}
