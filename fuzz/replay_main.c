/*
 * replay_main.c — a main() for the fuzz targets without libFuzzer: runs
 * LLVMFuzzerTestOneInput once on every file named on the command line or
 * found under the directories named (recursively, sorted by byte order,
 * dot files skipped) and prints TAP, so the corpora replay in `make check`.
 * A crash kills the run (fewer lines than the plan); a hang is cut by an
 * alarm (KIMG_FUZZ_TIMEOUT seconds per input, default 60, 0 = none).
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "fuzz.h"

/* Optional in a target; libFuzzer calls it once before the first input. */
extern int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

struct list {
    char **v;
    size_t n, cap;
};

static void die(const char *what, const char *path)
{
    fprintf(stdout, "Bail out! %s: %s: %s\n", what, path, strerror(errno));
    exit(1);
}

static void push(struct list *l, char *s)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        char **v = realloc(l->v, cap * sizeof(*v));
        if (!v)
            die("out of memory", s);
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = s;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p)
        die("out of memory", dir);
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

/* Add PATH (a file) or the files under it (a directory), sorted. */
static void collect(struct list *out, const char *path, int depth)
{
    struct stat st;
    if (stat(path, &st) < 0)
        die("cannot stat", path);
    if (!S_ISDIR(st.st_mode)) {
        char *p = strdup(path);
        if (!p)
            die("out of memory", path);
        push(out, p);
        return;
    }
    if (depth > 32)
        die("directories nested too deep", path);
    DIR *d = opendir(path);
    if (!d)
        die("cannot open directory", path);
    struct list names = { 0 };
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        push(&names, join(path, e->d_name));
    }
    closedir(d);
    if (names.n)
        qsort(names.v, names.n, sizeof(*names.v), cmp_str);
    for (size_t i = 0; i < names.n; i++) {
        collect(out, names.v[i], depth + 1);
        free(names.v[i]);
    }
    free(names.v);
}

/* Read the whole file into a buffer of exactly its size, as libFuzzer
 * does, so ASan sees reads one past the input. */
static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die("cannot open", path);
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    if (!buf)
        die("out of memory", path);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            uint8_t *nb = realloc(buf, cap);
            if (!nb)
                die("out of memory", path);
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(f))
        die("cannot read", path);
    fclose(f);
    uint8_t *exact = malloc(n ? n : 1);
    if (!exact)
        die("out of memory", path);
    memcpy(exact, buf, n);
    free(buf);
    *len = n;
    return exact;
}

static const char *volatile current;

static void on_alarm(int sig)
{
    static const char msg[] = "not ok - timeout running ";
    const char *p = current ? current : "?";
    (void)sig;
    if (write(1, msg, sizeof(msg) - 1) < 0 || write(1, p, strlen(p)) < 0 ||
        write(1, "\n", 1) < 0)
        _exit(2);
    _exit(1);
}

int main(int argc, char **argv)
{
    struct list files = { 0 };
    unsigned timeout = 60;
    const char *t = getenv("KIMG_FUZZ_TIMEOUT");

    if (t && *t)
        timeout = (unsigned)strtoul(t, NULL, 10);
    if (LLVMFuzzerInitialize)
        LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-' && argv[i][1])   /* libFuzzer flags: ignored */
            continue;
        collect(&files, argv[i], 0);
    }
    signal(SIGALRM, on_alarm);
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("1..%zu\n", files.n);
    for (size_t i = 0; i < files.n; i++) {
        size_t len;
        uint8_t *data = slurp(files.v[i], &len);
        current = files.v[i];
        /* name the input before running it, so a crash report says which */
        fprintf(stderr, "replay: %s (%zu bytes)\n", files.v[i], len);
        alarm(timeout);
        LLVMFuzzerTestOneInput(data, len);
        alarm(0);
        printf("ok %zu - %s\n", i + 1, files.v[i]);
        free(data);
        free(files.v[i]);
    }
    free(files.v);
    return 0;
}
