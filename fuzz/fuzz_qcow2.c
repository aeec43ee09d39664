/*
 * fuzz_qcow2.c — the qcow2 driver on hostile images, entirely in memory:
 *   1. read-only (format given): info, block status over the whole virtual
 *      size, reads of the extents, check without fixing;
 *   2. read-only, format probed: open and info only;
 *   3. read-write with KIMG_OPEN_REPAIR: check -r all, a few writes, zero
 *      writes and discards, flush; then the result is reopened read-only
 *      and checked again.  Oracle: if a check after the repair found the
 *      image clean and every write succeeded, the result has no corruption
 *      but OFLAG_COPIED mismatches (see oracle_check); leaks are allowed:
 *      qemu leaks too, e.g. when the refcount block of a new cluster lies
 *      past the end of a truncated file.  And on such an image every
 *      successful write or zero write reads back as written.  Persistent
 *      dirty bitmaps (formats/qcow2/bitmap.c): on such an image the writes
 *      leave no bitmap in use that was not before, and the result opens
 *      read-write again (the bitmaps kimg stored pass its own validation).
 *      Bitmap management (formats/qcow2/bitmap_ops.c): on the read-only
 *      image, dirty-run queries over each bitmap the info lists (runs are
 *      at least a byte and inside the range); on the repaired one, an
 *      add, a merge from each listed bitmap, a clear, a disable and a
 *      remove, after the writes (their results feed the reopen oracle).
 * Work per input is capped (block status steps, bytes read, write sizes)
 * so a virtual size of 2^62 runs as fast as 64 KiB.  Nothing touches the
 * disk: NO_BACKING keeps backing and external data files closed, and the
 * memory file is named inside a folder that does not exist.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz.h"
#include "kimg/driver.h"
#include "kimg/json.h"

#define FILE_LIMIT   (64ULL << 20)  /* growth of the memory file */
#define MAX_STEPS    256            /* block status calls per pass */
#define READ_BUDGET  (4u << 20)     /* bytes read per pass */
#define READ_CHUNK   (256u << 10)   /* largest single read */
#define FUZZ_NAME    "/nonexistent-kimg-fuzz/dir/image.qcow2"
#define RO_FLAGS     (KIMG_OPEN_NO_LOCK | KIMG_OPEN_NO_BACKING)

/* Set KIMG_FUZZ_NO_ORACLE=1 to run without the post-write consistency
 * check; KIMG_FUZZ_VERBOSE=1 to print why opens fail and what check found. */
static int use_oracle = 1, verbose;
static FILE *devnull;
static uint8_t *rbuf, *vbuf;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *e = getenv("KIMG_FUZZ_NO_ORACLE");
    (void)argc;
    (void)argv;
    use_oracle = !(e && *e == '1');
    e = getenv("KIMG_FUZZ_VERBOSE");
    verbose = e && *e == '1';
    devnull = fopen("/dev/null", "w");
    rbuf = malloc(READ_CHUNK);
    vbuf = malloc(READ_CHUNK);
    if (!devnull || !rbuf || !vbuf)
        abort();
    return 0;
}

static void print_info(struct kimg *img)
{
    struct kimg_info info;
    kimg_clear_error();
    if (kimg_get_info(img, &info) < 0)
        return;
    for (size_t i = 0; i < info.nb_snapshots; i++) {
        kimg_json_print_string(devnull, info.snapshots[i].id ? info.snapshots[i].id : "");
        kimg_json_print_string(devnull, info.snapshots[i].name ? info.snapshots[i].name : "");
    }
    if (info.backing_filename)
        kimg_json_print_string(devnull, info.backing_filename);
    if (info.full_backing_filename)
        kimg_json_print_string(devnull, info.full_backing_filename);
    if (info.backing_format)
        kimg_json_print_string(devnull, info.backing_format);
    if (info.format_specific) {
        kimg_jv_print(devnull, info.format_specific, 0);
        kimg_jv_print_human(devnull, info.format_specific, 1);
    }
    kimg_info_free(&info);
}

/* Walk block status from 0 to the end in at most MAX_STEPS calls (jumping
 * ahead when extents are small), reading part of each extent. */
static void walk(struct kimg *img)
{
    uint64_t size = kimg_size(img), off = 0, budget = READ_BUDGET;
    uint64_t stride = size / MAX_STEPS + 1;

    for (int step = 0; step < MAX_STEPS && off < size; step++) {
        struct kimg_extent ext;
        uint64_t next;
        kimg_clear_error();
        if (kimg_block_status(img, off, size - off, &ext) == 0) {
            if (ext.length == 0 || ext.length > size - off)
                abort();           /* the core promised 1 <= length <= len */
            uint64_t n = ext.length < READ_CHUNK ? ext.length : READ_CHUNK;
            if (n > budget)
                n = budget;
            if (n) {
                kimg_clear_error();
                (void)kimg_read(img, rbuf, off, n);
                budget -= n;
            }
            next = off + ext.length;
        } else {
            next = off + 512;
        }
        /* at least one stride per step, so MAX_STEPS steps cover the image */
        uint64_t floor = (uint64_t)(step + 1) * stride;
        off = next > floor ? next : floor;
    }
    /* the very end, unaligned, and a layer-only query in the middle */
    if (size) {
        struct kimg_extent ext;
        uint64_t n = size < 4096 ? size : 4096;
        kimg_clear_error();
        (void)kimg_read(img, rbuf, size - n, n);
        kimg_clear_error();
        (void)kimg_read(img, rbuf, size - 1, 1);
        kimg_clear_error();
        (void)kimg_layer_block_status(img, size / 2, size - size / 2, &ext);
    }
    kimg_clear_error();
}

static int do_check(struct kimg *img, unsigned fix, FILE *log, struct kimg_check *res)
{
    memset(res, 0, sizeof(*res));
    res->log = log;
    kimg_clear_error();
    int ret = kimg_check(img, res, fix);
    if (verbose)
        fprintf(stderr, "  check(fix=%u): %d (%s) corruptions %llu/%llu fixed, leaks %llu/%llu "
                "fixed, errors %llu\n", fix, ret, kimg_last_error() ? kimg_last_error() : "-",
                (unsigned long long)res->corruptions, (unsigned long long)res->corruptions_fixed,
                (unsigned long long)res->leaks, (unsigned long long)res->leaks_fixed,
                (unsigned long long)res->check_errors);
    kimg_clear_error();
    return ret;
}

/* The RDWR pass keeps the memory file's bytes when the image closes, so
 * the result (after close's final flush and header update) can be reopened. */
static struct kimg_file_ops keep_ops;
static void (*mem_close)(struct kimg_file *f);    /* the memory file's own */
static uint8_t *kept;
static size_t kept_len;

static void keep_close(struct kimg_file *f)
{
    free(kept);
    kept = f->mem;
    kept_len = (size_t)f->mem_size;
    f->mem = NULL;
    mem_close(f);       /* the rest of the file (its lock) */
}

static struct kimg *open_mem(const uint8_t *data, size_t size, const char *fmt,
                             unsigned flags)
{
    struct kimg_file *f;
    struct kimg *img = NULL;
    kimg_clear_error();
    if (kimg_file_open_mem(&f, FUZZ_NAME, data, size, flags & KIMG_OPEN_RDWR,
                           FILE_LIMIT) < 0)
        return NULL;
    if (flags & KIMG_OPEN_RDWR) {
        keep_ops = *f->ops;
        mem_close = f->ops->close;
        keep_ops.close = keep_close;
        f->ops = &keep_ops;
    }
    if (kimg_open_file(&img, f, fmt, flags) < 0) {
        if (verbose)
            fprintf(stderr, "  open(%s, 0x%x): %s\n", fmt ? fmt : "probe", flags,
                    kimg_last_error() ? kimg_last_error() : "?");
        img = NULL;
    } else if (verbose) {
        fprintf(stderr, "  open(%s, 0x%x): ok, %s, size %llu\n", fmt ? fmt : "probe", flags,
                kimg_format_name(img), (unsigned long long)kimg_size(img));
    }
    kimg_clear_error();
    return img;
}

/* Small writes at places derived from the input; returns how many failed.
 * VERIFY (the image checked clean): each write and zero write must read
 * back as written. */
static int writes(struct kimg *img, const uint8_t *data, size_t size, bool verify)
{
    uint64_t vs = kimg_size(img);
    int failed = 0;
    if (!vs)
        return 0;
    uint64_t seed = 0;
    for (size_t i = 0; i < size && i < 64; i++)
        seed = seed * 131 + data[i];
    struct { uint64_t off, len; int op; } ops[] = {
        { 0, 4096, 0 },                      /* header-side data */
        { vs / 2 - (vs / 2) % 512, 1024, 0 },
        { seed % vs, 3000, 0 },              /* unaligned */
        { vs > 8192 ? vs - 8192 : 0, 8192, 1 },   /* zeroes, may unmap */
        { (seed >> 20) % vs, 65536, 2 },     /* discard */
        { (seed >> 7) % vs, 1536, 3 },       /* zeroes, keep allocation */
        { vs - 1, 1, 0 },                    /* last byte */
    };
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        uint64_t off = ops[i].off, len = ops[i].len;
        if (off >= vs)
            off = vs - 1;
        if (len > vs - off)
            len = vs - off;
        if (len > READ_CHUNK)
            len = READ_CHUNK;
        for (uint64_t k = 0; k < len; k++)
            rbuf[k] = size ? data[(k + i) % size] : (uint8_t)k;
        int ret;
        kimg_clear_error();
        switch (ops[i].op) {
        case 0:  ret = kimg_write(img, rbuf, off, len); break;
        case 1:  ret = kimg_write_zeroes(img, off, len, KIMG_ZERO_MAY_UNMAP); break;
        case 2:  ret = kimg_discard(img, off, len); break;
        default: ret = kimg_write_zeroes(img, off, len, 0); break;
        }
        if (ret < 0)
            failed++;
        if (verbose) {
            static const char *const names[] = { "write", "zeroes-unmap", "discard", "zeroes" };
            struct kimg_check c;
            fprintf(stderr, "  %s %llu+%llu: %d (%s)\n", names[ops[i].op],
                    (unsigned long long)off, (unsigned long long)len, ret,
                    kimg_last_error() ? kimg_last_error() : "-");
            kimg_clear_error();
            kimg_flush(img);
            do_check(img, 0, NULL, &c);
        }
        /* read back what the write left */
        kimg_clear_error();
        if (kimg_read(img, vbuf, off, len) < 0) {
            failed++;
        } else if (verify && ret == 0 && ops[i].op != 2 && use_oracle) {
            for (uint64_t k = 0; k < len; k++) {
                uint8_t want = ops[i].op == 0 ? rbuf[k] : 0;
                if (vbuf[k] != want) {
                    fprintf(stderr, "fuzz_qcow2: clean image, op %zu (%d) at %llu+%llu "
                            "succeeded, but byte %llu reads 0x%02x, not 0x%02x\n", i,
                            ops[i].op, (unsigned long long)off, (unsigned long long)len,
                            (unsigned long long)(off + k), vbuf[k], want);
                    abort();
                }
            }
        }
    }
    kimg_clear_error();
    if (kimg_flush(img) < 0)
        failed++;
    kimg_clear_error();
    return failed;
}

/* After a clean repair and successful writes, the result must check
 * clean, except for OFLAG_COPIED mismatches: a cluster shared by two L2
 * entries (refcount 2, legal) loses a reference when one is rewritten and
 * the other keeps a clear COPIED flag; qemu does the same and counts it. */
static void oracle_check(struct kimg *img)
{
    struct kimg_check res;
    char *log = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&log, &len);
    if (!f)
        return;
    int ret = do_check(img, 0, f, &res);
    fclose(f);
    if (ret == 0 && res.corruptions) {
        for (char *line = log; line && *line; ) {
            char *nl = strchr(line, '\n');
            if (nl)
                *nl = '\0';
            if (!strncmp(line, "ERROR", 5) && !strstr(line, "OFLAG_COPIED")) {
                fprintf(stderr, "fuzz_qcow2: image repaired clean, all writes succeeded, "
                        "but the result has %llu corruptions:\n%s\n",
                        (unsigned long long)res.corruptions, line);
                abort();
            }
            line = nl ? nl + 1 : NULL;
        }
    }
    free(log);
}

/* The names of the bitmaps IMG's info lists (at most 8), in NAMES
 * (strdup'd; the caller frees them). */
static int bitmap_names(struct kimg *img, char **names)
{
    struct kimg_info info;
    int n = 0;
    kimg_clear_error();
    if (kimg_get_info(img, &info) < 0)
        return 0;
    const struct kimg_jv *d = info.format_specific ? kimg_jv_get(info.format_specific, "data")
                                                   : NULL;
    const struct kimg_jv *bm = d ? kimg_jv_get(d, "bitmaps") : NULL;
    for (int i = 0; bm && i < bm->n && n < 8; i++) {
        const struct kimg_jv *name = kimg_jv_get(bm->items[i], "name");
        if (name && name->s && (names[n] = strdup(name->s)))
            n++;
    }
    kimg_info_free(&info);
    kimg_clear_error();
    return n;
}

/* Dirty-run queries over every listed bitmap of IMG. */
static void bitmap_queries(struct kimg *img)
{
    char *names[8];
    int n = bitmap_names(img, names);
    uint64_t size = kimg_size(img);
    for (int i = 0; i < n; i++) {
        uint64_t off = 0, stride = size / MAX_STEPS + 1;
        for (int step = 0; step < MAX_STEPS && off < size; step++) {
            bool dirty;
            uint64_t pnum = 0, next = off + 1;
            kimg_clear_error();
            if (kimg_bitmap_dirty(img, names[i], off, size - off, &dirty, &pnum) == 0) {
                if (pnum == 0 || pnum > size - off)
                    abort();
                next = off + pnum;
            }
            uint64_t floor = (uint64_t)(step + 1) * stride;
            off = next > floor ? next : floor;
        }
        free(names[i]);
    }
    kimg_clear_error();
}

/* Management operations on the writable IMG (no oracle but the reopen). */
static void bitmap_ops(struct kimg *img)
{
    char *names[8];
    int n = bitmap_names(img, names);
    struct kimg_bitmap_op op = { .action = KIMG_BITMAP_ADD, .name = "fz", .granularity = 4096 };
    kimg_clear_error();
    (void)kimg_bitmap_change(img, &op);
    for (int i = 0; i < n; i++) {
        op = (struct kimg_bitmap_op){ .action = KIMG_BITMAP_MERGE, .name = "fz",
                                      .src_name = names[i] };
        kimg_clear_error();
        (void)kimg_bitmap_change(img, &op);
    }
    static const enum kimg_bitmap_action then[] = { KIMG_BITMAP_CLEAR, KIMG_BITMAP_DISABLE,
                                                    KIMG_BITMAP_REMOVE };
    for (size_t k = 0; k < sizeof(then) / sizeof(then[0]); k++) {
        op = (struct kimg_bitmap_op){ .action = then[k], .name = "fz" };
        kimg_clear_error();
        (void)kimg_bitmap_change(img, &op);
    }
    for (int i = 0; i < n; i++)
        free(names[i]);
    kimg_clear_error();
}

/* How many bitmaps the format-specific info marks "in-use". */
static int in_use_count(struct kimg *img)
{
    struct kimg_info info;
    char *text = NULL;
    size_t len = 0;
    int n = 0;
    kimg_clear_error();
    if (kimg_get_info(img, &info) < 0)
        return 0;
    FILE *f = open_memstream(&text, &len);
    if (f) {
        if (info.format_specific)
            kimg_jv_print(f, info.format_specific, 0);
        fclose(f);
        for (char *p = text; p && (p = strstr(p, "\"in-use\"")); p++)
            n++;
    }
    free(text);
    kimg_info_free(&info);
    kimg_clear_error();
    return n;
}

/* The bitmap oracle's second half: the result opens read-write unless
 * something else than its bitmaps is refused. */
static void reopen_rw(const uint8_t *data, size_t size)
{
    struct kimg *img = open_mem(data, size, "qcow2", RO_FLAGS | KIMG_OPEN_RDWR);
    const char *e = kimg_last_error();
    if (!img && e && (strstr(e, "itmap") || strstr(e, "bitmap"))) {
        fprintf(stderr, "fuzz_qcow2: image repaired clean, all writes succeeded, but the "
                "result does not open read-write: %s\n", e);
        abort();
    }
    if (img)
        kimg_close(img);
    free(kept);
    kept = NULL;
    kimg_clear_error();
}

static void repair_and_write(const uint8_t *data, size_t size)
{
    struct kimg *img = open_mem(data, size, "qcow2",
                                RO_FLAGS | KIMG_OPEN_RDWR | KIMG_OPEN_REPAIR);
    if (!img) {
        free(kept);     /* the file was closed by the failed open */
        kept = NULL;
        return;
    }
    int in_use = in_use_count(img);
    struct kimg_check res;
    int ret = do_check(img, KIMG_CHECK_FIX_LEAKS | KIMG_CHECK_FIX_ERRORS, devnull, &res);
    /* clean: a second check after the repair finds nothing left */
    struct kimg_check again;
    bool clean = ret == 0 && do_check(img, 0, NULL, &again) == 0 &&
                 !again.corruptions && !again.leaks && !again.check_errors;
    int failed = writes(img, data, size, clean);
    kimg_clear_error();
    bitmap_ops(img);
    if (kimg_close(img) < 0)
        failed++;
    kimg_clear_error();
    uint8_t *copy = kept;
    size_t copy_len = kept_len;
    kept = NULL;
    if (!copy)
        return;

    img = open_mem(copy, copy_len, "qcow2", RO_FLAGS);
    bool oracle = clean && failed == 0 && use_oracle, opened = img != NULL;
    if (img) {
        if (oracle)
            oracle_check(img);
        if (oracle && in_use_count(img) > in_use) {
            fprintf(stderr, "fuzz_qcow2: image repaired clean, all writes succeeded, but "
                    "more bitmaps are in use (%d) than before (%d)\n", in_use_count(img),
                    in_use);
            abort();
        }
        walk(img);
        kimg_close(img);
    }
    kimg_clear_error();
    if (opened && oracle)
        reopen_rw(copy, copy_len);
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!devnull)
        LLVMFuzzerInitialize(NULL, NULL);
    if (size > (4u << 20))
        return 0;

    /* 1. read-only, format given */
    struct kimg *img = open_mem(data, size, "qcow2", RO_FLAGS);
    if (img) {
        struct kimg_check res;
        print_info(img);
        walk(img);
        bitmap_queries(img);
        do_check(img, 0, NULL, &res);
        /* the read-only image must refuse writes */
        kimg_clear_error();
        if (kimg_size(img) && kimg_write(img, rbuf, 0, 1) == 0)
            abort();
        kimg_clear_error();
        kimg_close(img);
    }

    /* 2. probed */
    img = open_mem(data, size, NULL, RO_FLAGS);
    if (img) {
        print_info(img);
        kimg_close(img);
    }

    /* 3. repair, write, reopen */
    repair_and_write(data, size);
    kimg_clear_error();
    return 0;
}
