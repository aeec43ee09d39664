/*
 * test_door.c — the core's one door: every write-type call on a read-only
 * or fenced image is refused by the core with one errno (-EBADF) and one
 * message, whatever the driver; a qcow2 image that finds itself corrupt
 * fences its core handle; and the format facts the table answers
 * (cluster size, identity map, compression, create options of an image);
 * content status (what the engines may skip) against block status (what
 * qemu-img reports) on a VHDX.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tap.h"
#include "kimg.h"
#include "kimg/driver.h"
#include "kimg/opts.h"
#include "internal.h"

#define REFUSAL "image is not writable (opened read-only, or fenced after an error)"
#define SIZE (8ull << 20)
#define CLUSTER 65536u

static char dir[256];

static int refused(int ret)
{
    const char *m = kimg_last_error();
    int good = ret == -EBADF && m && !strcmp(m, REFUSAL);
    if (!good)
        diag("got %d, message '%s'", ret, m ? m : "(none)");
    kimg_clear_error();
    return good;
}

/* Every door function that changes an image, on IMG (not writable). */
static void all_refused(struct kimg *img, const char *what)
{
    static uint8_t buf[CLUSTER];
    struct kimg_check res;
    struct kimg_opts *o = NULL;
    uint64_t host = 0;
    struct kimg_file *f = NULL;

    ok(!kimg_is_writable(img), "%s: not writable", what);
    ok(kimg_opts_set(&o, "lazy_refcounts", "on") == 0, "%s: amend options", what);
    kimg_clear_error();
    ok(refused(kimg_write(img, buf, 0, 4096)), "%s: write refused", what);
    ok(refused(kimg_write_zeroes(img, 0, 4096, 0)), "%s: write_zeroes refused", what);
    ok(refused(kimg_discard(img, 0, CLUSTER)), "%s: discard refused", what);
    ok(refused(kimg_write_compressed(img, buf, 0, CLUSTER)), "%s: write_compressed refused",
       what);
    ok(refused(kimg_write_compressed_data(img, 0, CLUSTER, buf, 100)),
       "%s: write_compressed_data refused", what);
    ok(refused(kimg_truncate(img, 2 * SIZE, KIMG_PREALLOC_OFF)), "%s: truncate refused", what);
    memset(&res, 0, sizeof(res));
    if (strcmp(kimg_format_name(img), "raw"))
        ok(refused(kimg_check(img, &res, KIMG_CHECK_FIX_LEAKS)), "%s: check -r refused", what);
    else    /* a format without checks says so first (check's exit 63) */
        ok(kimg_check(img, &res, KIMG_CHECK_FIX_LEAKS) == -ENOTSUP, "%s: no check", what);
    ok(refused(kimg_snapshot_create(img, "s")), "%s: snapshot_create refused", what);
    ok(refused(kimg_snapshot_apply(img, "s")), "%s: snapshot_apply refused", what);
    ok(refused(kimg_snapshot_delete(img, "s")), "%s: snapshot_delete refused", what);
    ok(refused(kimg_change_backing(img, "b.raw", "raw")), "%s: change_backing refused", what);
    ok(refused(kimg_make_empty(img)), "%s: make_empty refused", what);
    ok(refused(kimg_amend(img, o, false)), "%s: amend refused", what);
    ok(refused((int)kimg_alloc_data(img, 0, CLUSTER, &host, &f)), "%s: alloc_data refused",
       what);
    ok(refused(kimg_commit_data(img, 0, CLUSTER, 1 << 20)), "%s: commit_data refused", what);
    ok(refused(kimg_set_write_option(img, "compression_level", "1")),
       "%s: set_write_option refused", what);
    ok(kimg_flush(img) == 0 && !kimg_last_error(), "%s: flush has nothing to do", what);
    kimg_opts_free(o);
}

static int make(const char *path, const char *format, const char *opts)
{
    struct kimg_create_args a = { .filename = path, .format = format, .size = SIZE,
                                  .size_given = true };
    struct kimg_opts *o = NULL;
    if (opts && kimg_opts_parse(&o, opts) < 0)
        return -EINVAL;
    a.opts = o;
    int ret = kimg_create(&a);
    kimg_opts_free(o);
    return ret;
}

static void read_only(const char *format)
{
    char path[512], what[64];
    struct kimg *img;
    snprintf(path, sizeof(path), "%s/ro.%s", dir, format);
    snprintf(what, sizeof(what), "read-only %s", format);
    ok(make(path, format, NULL) == 0, "%s: created", what);
    ok(kimg_open(&img, path, format, KIMG_OPEN_NO_LOCK) == 0, "%s: opened", what);
    all_refused(img, what);
    ok(kimg_close(img) == 0, "%s: closes cleanly", what);
}

/* A driver (or anything holding the handle) fences it: the same refusal. */
static void fenced_by_call(const char *format)
{
    char path[512], what[64];
    struct kimg *img;
    uint8_t buf[4096];
    snprintf(path, sizeof(path), "%s/fence.%s", dir, format);
    snprintf(what, sizeof(what), "fenced %s", format);
    memset(buf, 0x5a, sizeof(buf));
    ok(make(path, format, NULL) == 0, "%s: created", what);
    ok(kimg_open(&img, path, format, KIMG_OPEN_RDWR | KIMG_OPEN_NO_LOCK) == 0, "%s: opened",
       what);
    ok(kimg_is_writable(img) && kimg_write(img, buf, 0, sizeof(buf)) == 0,
       "%s: writable before the fence", what);
    kimg_fence(img);
    all_refused(img, what);
    ok(kimg_read(img, buf, 0, sizeof(buf)) == 0 && buf[0] == 0x5a,
       "%s: still reads", what);
    ok(kimg_close(img) == 0, "%s: closes cleanly", what);
}

static int rw_at(const char *path, void *buf, size_t len, off_t off, bool wr)
{
    int fd = open(path, wr ? O_WRONLY : O_RDONLY);
    if (fd < 0)
        return -1;
    ssize_t n = wr ? pwrite(fd, buf, len, off) : pread(fd, buf, len, off);
    close(fd);
    return n == (ssize_t)len ? 0 : -1;
}

static uint64_t be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

/* qcow2 finds an unaligned L2 table offset while writing: it marks the
 * image corrupt and fences the core handle, which then refuses the next
 * write itself (before: the core let it through to the driver). */
static void corrupt_qcow2(void)
{
    char path[512];
    struct kimg *img;
    uint8_t buf[4096], hdr[48], e[8];
    snprintf(path, sizeof(path), "%s/corrupt.qcow2", dir);
    memset(buf, 0x33, sizeof(buf));
    ok(make(path, "qcow2", NULL) == 0, "corrupt qcow2: created");
    ok(kimg_open(&img, path, "qcow2", KIMG_OPEN_RDWR | KIMG_OPEN_NO_LOCK) == 0 &&
       kimg_write(img, buf, 0, sizeof(buf)) == 0 && kimg_close(img) == 0,
       "corrupt qcow2: first cluster written");
    /* L1[0] -> its L2 table + 512 bytes: unaligned */
    ok(rw_at(path, hdr, sizeof(hdr), 0, false) == 0, "corrupt qcow2: header read");
    uint64_t l1 = be64(hdr + 40);
    ok(rw_at(path, e, 8, (off_t)l1, false) == 0 && be64(e) != 0, "corrupt qcow2: L1[0] set");
    put_be64(e, be64(e) + 512);
    ok(rw_at(path, e, 8, (off_t)l1, true) == 0, "corrupt qcow2: L1[0] made unaligned");

    ok(kimg_open(&img, path, "qcow2", KIMG_OPEN_RDWR | KIMG_OPEN_NO_LOCK) == 0 &&
       kimg_is_writable(img), "corrupt qcow2: opens read-write");
    kimg_clear_error();
    ok(kimg_write(img, buf, 0, sizeof(buf)) == -EIO, "corrupt qcow2: the write finds it");
    const char *m = kimg_last_error();
    ok(m && strstr(m, "Marking image as corrupt"), "corrupt qcow2: marked corrupt (%s)",
       m ? m : "no message");
    kimg_clear_error();
    ok(!kimg_is_writable(img), "corrupt qcow2: the core handle is fenced");
    ok(refused(kimg_write(img, buf, SIZE - 4096, sizeof(buf))),
       "corrupt qcow2: the next write is refused by the core");
    ok(refused(kimg_write_zeroes(img, 0, CLUSTER, KIMG_ZERO_MAY_UNMAP)),
       "corrupt qcow2: zero writes too");
    ok(refused(kimg_snapshot_create(img, "x")), "corrupt qcow2: snapshots too");
    ok(kimg_close(img) == 0, "corrupt qcow2: closes");
    ok(kimg_open(&img, path, "qcow2", KIMG_OPEN_RDWR | KIMG_OPEN_NO_LOCK) == -EACCES,
       "corrupt qcow2: the corrupt bit is on disk (no read-write open)");
    kimg_clear_error();
}

/* The facts cmd/ and clone/ ask instead of comparing format names. */
static void facts(void)
{
    char q[512], r[512];
    struct kimg *qi, *ri;
    struct kimg_opts *o = NULL;
    snprintf(q, sizeof(q), "%s/facts.qcow2", dir);
    snprintf(r, sizeof(r), "%s/facts.raw", dir);
    ok(make(q, "qcow2", "cluster_size=4096,refcount_bits=8,lazy_refcounts=on,"
            "compression_type=zstd") == 0 && make(r, "raw", NULL) == 0, "facts: created");
    ok(kimg_open(&qi, q, "qcow2", KIMG_OPEN_NO_LOCK) == 0 &&
       kimg_open(&ri, r, "raw", KIMG_OPEN_NO_LOCK) == 0, "facts: opened");
    is_u64(kimg_cluster_size(qi), 4096, "facts: qcow2 cluster size");
    is_u64(kimg_cluster_size(ri), 0, "facts: raw has no clusters");
    ok(kimg_maps_identity(ri) && !kimg_maps_identity(qi), "facts: raw maps 1:1, qcow2 not");
    ok(kimg_can_compress(qi) && !kimg_can_compress(ri), "facts: qcow2 compresses");
    ok(kimg_can_alloc_data(qi) && !kimg_can_alloc_data(ri), "facts: qcow2 takes alloc_data");
    ok(!kimg_has_bitmaps(qi) && !kimg_has_bitmaps(ri), "facts: no bitmaps");
    ok(kimg_create_opts_like(ri, &o) == 0 && !o, "facts: raw keeps no options");
    ok(kimg_create_opts_like(qi, &o) == 0 && o, "facts: qcow2 options of the image");
    is_str(kimg_opts_get(o, "cluster_size"), "4096", "facts: cluster_size kept");
    is_str(kimg_opts_get(o, "compat"), "1.1", "facts: compat kept");
    is_str(kimg_opts_get(o, "refcount_bits"), "8", "facts: refcount_bits kept");
    is_str(kimg_opts_get(o, "lazy_refcounts"), "on", "facts: lazy_refcounts kept");
    is_str(kimg_opts_get(o, "extended_l2"), "off", "facts: extended_l2 kept");
    is_str(kimg_opts_get(o, "compression_type"), "zstd", "facts: compression_type kept");
    kimg_opts_free(o);

    const struct kimg_driver *qd = kimg_find_driver("qcow2"), *rd = kimg_find_driver("raw");
    ok(kimg_driver_can_compress(qd) && !kimg_driver_can_compress(rd),
       "facts: the qcow2 format compresses");
    ok(kimg_driver_amend_opts(qd) && !kimg_driver_amend_opts(rd), "facts: qcow2 amends");
    is_str(kimg_driver_formatting_opts(qd)[0].name, "encryption",
           "facts: qcow2's Formatting line starts with encryption");
    is_str(kimg_driver_formatting_opts(rd)[0].name, "size",
           "facts: raw's Formatting line starts with the size");
    kimg_close(qi);
    kimg_close(ri);
}

/* A VHDX reports every byte as data, as qemu 7.2 does (no block status);
 * its content status tells the engines which blocks read as zeros and
 * where the present ones lie. */
static void content_vs_block_status(void)
{
    char path[300], cmd[800];
    snprintf(path, sizeof(path), "%s/c.vhdx", dir);
    snprintf(cmd, sizeof(cmd), "qemu-img create -q -f vhdx -o block_size=1M '%s' 4M && "
             "qemu-io -f vhdx -c 'write -P 0x5a 0 1M' '%s' >/dev/null", path, path);
    if (system(cmd) != 0) {
        ok(0, "qemu-img made a VHDX");
        return;
    }
    struct kimg *img;
    struct kimg_extent ext;
    if (!ok(kimg_open(&img, path, "vhdx", 0) == 0, "VHDX opens"))
        return;
    ok(kimg_block_status(img, 1 << 20, 3 << 20, &ext) == 0 &&
       ext.flags == (KIMG_BS_DATA | KIMG_BS_ALLOCATED) && ext.length == 3u << 20,
       "block status of the empty blocks: data, as qemu-img map shows");
    ok(kimg_content_status(img, 1 << 20, 3 << 20, &ext) == 0 &&
       ext.flags == (KIMG_BS_ZERO | KIMG_BS_ALLOCATED) && ext.length == 3u << 20,
       "content status of the empty blocks: zeros, nothing to read");
    int ret = kimg_content_status(img, 0, 4 << 20, &ext);
    ok(ret == 0 && ext.flags == (KIMG_BS_DATA | KIMG_BS_ALLOCATED | KIMG_BS_OFFSET_VALID) &&
       ext.length == 1u << 20 && ext.host_file, "content status of the written block: "
       "data at a host offset, and no further");
    static uint8_t buf[4096] __attribute__((aligned(4096)));
    ok(ret == 0 && ext.host_file && kimg_file_pread(ext.host_file, buf, sizeof(buf),
                                                    ext.offset) == 0 &&
       buf[0] == 0x5a && buf[4095] == 0x5a, "the host offset holds the block's bytes");
    kimg_close(img);
}

int main(void)
{
    snprintf(dir, sizeof(dir), "/var/tmp/kimg-door-XXXXXX");
    if (!mkdtemp(dir)) {
        printf("1..0 # SKIP no temporary folder\n");
        return 0;
    }
    read_only("raw");
    read_only("qcow2");
    fenced_by_call("raw");
    fenced_by_call("qcow2");
    corrupt_qcow2();
    facts();
    content_vs_block_status();
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        diag("could not remove %s", dir);
    return done_testing();
}
