/*
 * compare.c — `kimg compare`: guest-visible content of two images, across
 * formats and backing chains.  Ranges that block status proves to read as
 * zeros in both are skipped, not read; where both must be read, a helper
 * thread reads the second image while the main thread reads the first.  Exit codes as qemu-img's: 0 equal,
 * 1 different, 2 error opening, 3 error checking allocation, 4 read error.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "cmd.h"
#include "convert.h"

#define CHUNK (2u << 20)
#define SECTOR 512u

enum { CMP_SAME = 0, CMP_DIFF = 1, CMP_EOPEN = 2, CMP_ESTATUS = 3, CMP_EREAD = 4 };

/* Byte count of the leading run of A and B that is equal, in whole 512-byte
 * sectors (qemu-img reports mismatches at sector granularity). */
static uint64_t equal_prefix(const uint8_t *a, const uint8_t *b, uint64_t len)
{
    /* the common case, equal: one pass over the whole chunk */
    if (b ? !memcmp(a, b, len) : kimg_buffer_is_zero(a, len))
        return len;
    uint64_t i = 0;
    while (i < len) {
        uint64_t n = len - i < SECTOR ? len - i : SECTOR;
        if (b ? memcmp(a + i, b + i, n) : (a[i] != 0 || memcmp(a + i, a + i + 1, n - 1)))
            return i;
        i += n;
    }
    return len;
}

struct side {
    const char *name;
    struct kimg *img;
    uint8_t *buf;
};

static int read_side(struct side *s, uint64_t off, uint64_t len, bool quiet)
{
    if (kimg_read(s->img, s->buf, off, len) < 0) {
        (void)quiet;   /* errors are reported even with -q, as qemu-img does */
        fprintf(stderr, "kimg: Error while reading offset %" PRIu64 " of %s: %s\n",
                    off, s->name, kimg_last_error() ? kimg_last_error() : "I/O error");
        kimg_clear_error();
        return CMP_EREAD;
    }
    return CMP_SAME;
}

/* The helper thread that reads side B while the main thread reads A. */
struct reader {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct side *side;
    uint64_t off, len;
    bool pending, quit;
    int ret;
};

static void *reader_main(void *opaque)
{
    struct reader *r = opaque;
    pthread_mutex_lock(&r->lock);
    for (;;) {
        while (!r->pending && !r->quit)
            pthread_cond_wait(&r->cond, &r->lock);
        if (r->quit)
            break;
        pthread_mutex_unlock(&r->lock);
        int ret = kimg_read(r->side->img, r->side->buf, r->off, r->len);
        char msg[256] = "";
        if (ret < 0)
            snprintf(msg, sizeof(msg), "%s", kimg_last_error() ? kimg_last_error() : "I/O error");
        kimg_clear_error();
        pthread_mutex_lock(&r->lock);
        if (ret < 0)
            fprintf(stderr, "kimg: Error while reading offset %" PRIu64 " of %s: %s\n",
                    r->off, r->side->name, msg);
        r->ret = ret < 0 ? CMP_EREAD : CMP_SAME;
        r->pending = false;
        pthread_cond_broadcast(&r->cond);
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

/* Read A on this thread and B on the helper at the same time. */
static int read_both(struct reader *r, struct side *a, uint64_t off, uint64_t len, bool quiet)
{
    pthread_mutex_lock(&r->lock);
    r->off = off;
    r->len = len;
    r->pending = true;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    int ret = read_side(a, off, len, quiet);
    pthread_mutex_lock(&r->lock);
    while (r->pending)
        pthread_cond_wait(&r->cond, &r->lock);
    int rb = r->ret;
    pthread_mutex_unlock(&r->lock);
    return ret ? ret : rb;
}

static int status(struct side *s, uint64_t off, uint64_t len, struct kimg_extent *e, bool quiet)
{
    if (kimg_block_status(s->img, off, len, e) < 0) {
        (void)quiet;
        fprintf(stderr, "kimg: error while reading block status at offset %" PRIu64
                    " of %s: %s\n", off, s->name,
                    kimg_last_error() ? kimg_last_error() : "I/O error");
        kimg_clear_error();
        return CMP_ESTATUS;
    }
    return CMP_SAME;
}

/* The part of the larger image past the smaller one must read as zeros. */
static int check_tail_zero(struct side *s, uint64_t off, uint64_t end, bool quiet)
{
    while (off < end) {
        struct kimg_extent e;
        int ret = status(s, off, end - off, &e, quiet);
        if (ret)
            return ret;
        uint64_t n = e.length < CHUNK ? e.length : CHUNK;
        if (!(e.flags & KIMG_BS_ZERO)) {
            if ((ret = read_side(s, off, n, quiet)))
                return ret;
            uint64_t same = equal_prefix(s->buf, NULL, n);
            if (same < n) {
                if (!quiet)
                    printf("Content mismatch at offset %" PRIu64 "!\n", off + same);
                return CMP_DIFF;
            }
        }
        off += n;
    }
    return CMP_SAME;
}

static int compare(struct side *a, struct side *b, struct reader *rd, bool strict, bool quiet)
{
    uint64_t size_a = kimg_size(a->img), size_b = kimg_size(b->img);
    uint64_t common = size_a < size_b ? size_a : size_b;
    uint64_t off = 0;
    int ret;

    if (size_a != size_b && strict) {
        if (!quiet)
            printf("Strict mode: Image size mismatch!\n");
        return CMP_DIFF;
    }
    while (off < common) {
        struct kimg_extent ea, eb;
        if ((ret = status(a, off, common - off, &ea, quiet)) ||
            (ret = status(b, off, common - off, &eb, quiet)))
            return ret;
        uint64_t n = ea.length < eb.length ? ea.length : eb.length;
        if (strict && (ea.flags & (KIMG_BS_ALLOCATED | KIMG_BS_ZERO | KIMG_BS_DATA)) !=
                      (eb.flags & (KIMG_BS_ALLOCATED | KIMG_BS_ZERO | KIMG_BS_DATA))) {
            if (!quiet)
                printf("Strict mode: Offset %" PRIu64 " block status mismatch!\n", off);
            return CMP_DIFF;
        }
        if ((ea.flags & KIMG_BS_ZERO) && (eb.flags & KIMG_BS_ZERO)) {
            off += n;     /* both read as zeros: proven equal without reading */
            continue;
        }
        if (n > CHUNK)
            n = CHUNK;
        uint64_t same;
        if (ea.flags & KIMG_BS_ZERO) {
            if ((ret = read_side(b, off, n, quiet)))
                return ret;
            same = equal_prefix(b->buf, NULL, n);
        } else if (eb.flags & KIMG_BS_ZERO) {
            if ((ret = read_side(a, off, n, quiet)))
                return ret;
            same = equal_prefix(a->buf, NULL, n);
        } else {
            if ((ret = read_both(rd, a, off, n, quiet)))
                return ret;
            same = equal_prefix(a->buf, b->buf, n);
        }
        if (same < n) {
            if (!quiet)
                printf("Content mismatch at offset %" PRIu64 "!\n", off + same);
            return CMP_DIFF;
        }
        off += n;
    }
    if (size_a != size_b) {
        if (!quiet)
            printf("Warning: Image size mismatch!\n");
        ret = check_tail_zero(size_a > size_b ? a : b, common,
                              size_a > size_b ? size_a : size_b, quiet);
        if (ret)
            return ret;
    }
    if (!quiet)
        printf("Images are identical.\n");
    return CMP_SAME;
}

int cmd_compare(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "force-share", no_argument, NULL, 'U' },
        { "untrusted", no_argument, NULL, OPT_UNTRUSTED },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt1 = NULL, *fmt2 = NULL;
    unsigned flags = 0;
    bool strict = false, quiet = false;
    int c;

    while ((c = getopt_long(argc, argv, "hf:F:T:pqsU", longopts, NULL)) != -1) {
        switch (c) {
        case 'f': fmt1 = optarg; break;
        case 'F': fmt2 = optarg; break;
        case 'T': break;
        case 'p': break;   /* progress: the comparison is quick; accepted */
        case 'q': quiet = true; break;
        case 's': strict = true; break;
        case 'U': flags |= KIMG_OPEN_SHARE; break;
        case OPT_UNTRUSTED: flags |= KIMG_OPEN_UNTRUSTED; break;
        case 'h': print_synopsis("compare"); return 0;
        case OPT_OBJECT:
        case OPT_IMAGE_OPTS:
            cmd_usage_error("compare", "--object and --image-opts are not supported");
            return CMP_EOPEN;
        default:
            return cmd_bad_option("compare", argv);
        }
    }
    if (optind != argc - 2)
        return cmd_usage_error("compare", "Expecting two image file names");
    struct side a = { .name = argv[optind] }, b = { .name = argv[optind + 1] };
    int ret = CMP_EOPEN;
    a.img = cmd_open(a.name, fmt1, flags);
    if (!a.img)
        return CMP_EOPEN;
    b.img = cmd_open(b.name, fmt2, flags);
    if (!b.img)
        goto out;
    a.buf = malloc(CHUNK);
    b.buf = malloc(CHUNK);
    if (!a.buf || !b.buf) {
        fprintf(stderr, "kimg: out of memory\n");
        ret = CMP_EREAD;
        goto out;
    }
    struct reader rd = { .side = &b };
    pthread_mutex_init(&rd.lock, NULL);
    pthread_cond_init(&rd.cond, NULL);
    if (pthread_create(&rd.thread, NULL, reader_main, &rd)) {
        fprintf(stderr, "kimg: cannot start a reader thread\n");
        ret = CMP_EREAD;
        goto out;
    }
    ret = compare(&a, &b, &rd, strict, quiet);
    pthread_mutex_lock(&rd.lock);
    rd.quit = true;
    pthread_cond_broadcast(&rd.cond);
    pthread_mutex_unlock(&rd.lock);
    pthread_join(rd.thread, NULL);
    pthread_cond_destroy(&rd.cond);
    pthread_mutex_destroy(&rd.lock);
out:
    free(a.buf);
    free(b.buf);
    if (b.img)
        kimg_close(b.img);
    kimg_close(a.img);
    return ret;
}
