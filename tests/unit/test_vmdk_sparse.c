/*
 * test_vmdk_sparse.c — the sparse half of formats/vmdk (sparse.c, stream.c,
 * cowd.c) over memory files: samples qemu-img 7.2 makes (monolithicSparse,
 * zeroed grains, streamOptimized, twoGbMaxExtentSparse) and ones
 * tests/images/make-vmdk.py makes (VMware-layout stream, version 3, COWD).
 * Every byte read equals `qemu-img convert -O raw`'s, status runs equal
 * `qemu-img map`'s, reads from four threads at once agree, and hostile
 * variants are refused at open or at the read that needs the bad part
 * (never a crash), with check reporting as qemu-img does.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/unit/tap.h"
#include "kimg/driver.h"
#include "kimg/file.h"
#include "formats/vmdk/vmdk.h"

static char dir[64];
static const char *src;

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    int r = system(cmd);
    if (r != 0)
        diag("command failed: %s", cmd);
    return r;
}

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(n ? (size_t)n : 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

struct ext {
    struct kimg_file *f;
    struct vmdk_sparse *s;
    struct vmdk_sparse_info info;
    uint8_t *bytes;
};

/* open NAME (in dir) as a sparse extent; 0 or -errno */
static int ext_open(const char *name, struct ext *e)
{
    char path[256];
    size_t len;
    memset(e, 0, sizeof(*e));
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    e->bytes = slurp(path, &len);
    if (!e->bytes)
        return -ENOENT;
    int ret = kimg_file_open_mem(&e->f, name, e->bytes, len, false, 0);
    if (ret == 0)
        ret = vmdk_sparse_open(e->f, len, &e->s, &e->info);
    return ret;
}

static void ext_close(struct ext *e)
{
    vmdk_sparse_close(e->s);
    if (e->f)
        kimg_file_close(e->f);
    free(e->bytes);
    memset(e, 0, sizeof(*e));
}

/* The whole extent through status + read, as a reader would. */
static uint8_t *read_all(struct ext *e)
{
    uint8_t *buf = kimg_alloc_aligned(e->info.capacity ? e->info.capacity : 1);
    for (uint64_t off = 0; off < e->info.capacity;) {
        struct vmdk_grain_run r;
        if (vmdk_sparse_status(e->s, off, e->info.capacity - off, &r) < 0 || r.length == 0) {
            free(buf);
            return NULL;
        }
        if (r.kind == VMDK_GRAIN_DATA || r.kind == VMDK_GRAIN_COMPRESSED) {
            if (vmdk_sparse_read(e->s, buf + off, off, r.length) < 0) {
                free(buf);
                return NULL;
            }
        } else {
            memset(buf + off, 0, r.length);
        }
        off += r.length;
    }
    return buf;
}

/* qemu-img map's extents as one letter per 512 bytes: D data (with the
 * host offset in OFFS, or UINT64_MAX when qemu prints none), Z zero
 * (present), U not present. */
static char *qemu_map(const char *name, uint64_t size, uint64_t **offs)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "qemu-img map --output=json '%s/%s'", dir, name);
    FILE *p = popen(cmd, "r");
    if (!p)
        return NULL;
    uint64_t n = size / 512;
    char *m = calloc(n + 1, 1);
    *offs = calloc(n, sizeof(**offs));
    char line[512];
    while (fgets(line, sizeof(line), p)) {
        unsigned long long st, len, off = ~0ULL;
        char present[8], zero[8], data[8];
        if (sscanf(line, "%*[[{ ]\"start\": %llu, \"length\": %llu, \"depth\": %*d, "
                   "\"present\": %5[a-z], \"zero\": %5[a-z], \"data\": %5[a-z]",
                   &st, &len, present, zero, data) != 5)
            continue;
        const char *o = strstr(line, "\"offset\": ");
        if (o)
            off = strtoull(o + 10, NULL, 10);
        char c = !strcmp(data, "true") ? 'D' : !strcmp(present, "true") ? 'Z' : 'U';
        for (uint64_t s = st / 512; s < (st + len) / 512 && s < n; s++) {
            m[s] = c;
            (*offs)[s] = o ? off + (s * 512 - st) : UINT64_MAX;
        }
    }
    pclose(p);
    return m;
}

static void check_map(struct ext *e, const char *name, uint64_t base)
{
    uint64_t *qoffs;
    uint64_t n = e->info.capacity / 512;
    char *q = qemu_map(name, base + e->info.capacity, &qoffs);
    if (!q) {
        ok(0, "%s: qemu-img map", name);
        return;
    }
    uint64_t bad = UINT64_MAX;
    for (uint64_t off = 0; off < e->info.capacity && bad == UINT64_MAX;) {
        struct vmdk_grain_run r;
        if (vmdk_sparse_status(e->s, off, e->info.capacity - off, &r) < 0) {
            bad = off / 512;
            break;
        }
        for (uint64_t s = off / 512; s < (off + r.length) / 512; s++) {
            uint64_t qs = base / 512 + s;
            char c = r.kind == VMDK_GRAIN_DATA || r.kind == VMDK_GRAIN_COMPRESSED ? 'D'
                   : r.kind == VMDK_GRAIN_ZERO ? 'Z' : 'U';
            bool off_ok = r.kind != VMDK_GRAIN_DATA ||
                          qoffs[qs] == r.host + (s * 512 - off);
            if (c != q[qs] || !off_ok) {
                diag("%s: sector %llu: kimg %c host %llu, qemu %c offset %llu", name,
                     (unsigned long long)s, c,
                     (unsigned long long)(r.host + (s * 512 - off)), q[qs],
                     (unsigned long long)qoffs[qs]);
                bad = s;
                break;
            }
        }
        off += r.length;
    }
    ok(bad == UINT64_MAX, "%s: status runs match qemu-img map (%llu sectors)", name,
       (unsigned long long)n);
    free(q);
    free(qoffs);
}

/* Every grain read in two uneven parts equals RAW. */
static int read_parts(struct ext *e, const uint8_t *raw)
{
    uint64_t g = e->info.grain_size;
    uint8_t *buf = kimg_alloc_aligned(g);
    int bad = 0;
    for (uint64_t off = 0; off < e->info.capacity && !bad; off += g) {
        uint64_t len = e->info.capacity - off < g ? e->info.capacity - off : g;
        uint64_t cut = (off / g * 7919) % len;
        for (int part = 0; part < 2 && !bad; part++) {
            uint64_t a = part ? cut : 0, b = part ? len : cut;
            while (a < b && !bad) {
                struct vmdk_grain_run r;
                if (vmdk_sparse_status(e->s, off + a, b - a, &r) < 0) {
                    bad = 1;
                    break;
                }
                if (r.kind == VMDK_GRAIN_DATA || r.kind == VMDK_GRAIN_COMPRESSED) {
                    if (vmdk_sparse_read(e->s, buf, off + a, r.length) < 0 ||
                        memcmp(buf, raw + off + a, r.length))
                        bad = 1;
                } else {
                    for (uint64_t i = 0; i < r.length; i++)
                        bad |= raw[off + a + i] != 0;
                }
                a += r.length;
            }
        }
    }
    free(buf);
    return bad;
}

/* A good sample: NAME (sparse extent file), RAWNAME (qemu's raw of the
 * whole image), the extent's start in the image, the map source (the file
 * qemu-img map reads: the descriptor for split images). */
static void good(const char *name, const char *mapname, const char *rawname,
                 uint64_t base, bool compressed, uint32_t version)
{
    struct ext e;
    int ret = ext_open(name, &e);
    ok(ret == 0, "%s: opens (%d)", name, ret);
    if (ret) {
        ext_close(&e);
        return;
    }
    ok(e.info.compressed == compressed && e.info.version == version,
       "%s: compressed %d version %u", name, e.info.compressed, e.info.version);
    char path[256];
    size_t rawlen;
    snprintf(path, sizeof(path), "%s/%s", dir, rawname);
    uint8_t *raw = slurp(path, &rawlen);
    uint8_t *all = read_all(&e);
    ok(raw && all && rawlen >= base + e.info.capacity &&
       !memcmp(all, raw + base, e.info.capacity),
       "%s: every byte equals qemu-img convert -O raw", name);
    ok(raw && !read_parts(&e, raw + base), "%s: grains read in parts", name);
    check_map(&e, mapname, base);
    struct kimg_check res = {0};
    ok(vmdk_sparse_check(e.s, &res) == 0 && res.corruptions == 0, "%s: check clean", name);
    free(all);
    free(raw);
    ext_close(&e);
}

/* ---- four threads at once --------------------------------------------- */

struct worker {
    struct ext *e;
    const uint8_t *raw;
    unsigned seed;
    int bad;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    uint64_t g = w->e->info.grain_size, n = (w->e->info.capacity + g - 1) / g;
    uint8_t *buf = kimg_alloc_aligned(g);
    for (int i = 0; i < 400 && !w->bad; i++) {
        uint64_t off = (uint64_t)(rand_r(&w->seed) % n) * g;
        uint64_t len = w->e->info.capacity - off < g ? w->e->info.capacity - off : g;
        struct vmdk_grain_run r;
        if (vmdk_sparse_status(w->e->s, off, len, &r) < 0) {
            w->bad = 1;
            break;
        }
        if (r.kind == VMDK_GRAIN_DATA || r.kind == VMDK_GRAIN_COMPRESSED)
            w->bad = vmdk_sparse_read(w->e->s, buf, off, r.length) < 0 ||
                     memcmp(buf, w->raw + off, r.length) != 0;
    }
    free(buf);
    return NULL;
}

static void threads(const char *name, const char *rawname)
{
    struct ext e;
    char path[256];
    size_t rawlen;
    snprintf(path, sizeof(path), "%s/%s", dir, rawname);
    uint8_t *raw = slurp(path, &rawlen);
    if (ext_open(name, &e) || !raw) {
        ok(0, "%s: threads", name);
        ext_close(&e);
        free(raw);
        return;
    }
    struct worker w[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){ &e, raw, (unsigned)i * 77 + 1, 0 };
        pthread_create(&t[i], NULL, work, &w[i]);
    }
    int bad = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        bad |= w[i].bad;
    }
    ok(!bad, "%s: four threads read the same bytes", name);
    ext_close(&e);
    free(raw);
}

/* ---- hostile variants ---------------------------------------------------- */

static void refused(const char *name, const char *args, const char *want)
{
    if (sh("python3 '%s/tests/images/make-vmdk.py' '%s/%s' %s", src, dir, name, args)) {
        ok(0, "%s: made", name);
        return;
    }
    struct ext e;
    kimg_clear_error();
    int ret = ext_open(name, &e);
    const char *msg = kimg_last_error();
    ok(ret < 0 && msg && strstr(msg, want), "%s: refused at open: %s", name,
       msg ? msg : "(no message)");
    ext_close(&e);
    kimg_clear_error();
}

/* opens, but reading (all of it) fails with WANT in the message */
static void bad_read(const char *name, const char *args, const char *want)
{
    if (sh("python3 '%s/tests/images/make-vmdk.py' '%s/%s' %s", src, dir, name, args)) {
        ok(0, "%s: made", name);
        return;
    }
    struct ext e;
    kimg_clear_error();
    int ret = ext_open(name, &e);
    uint8_t *all = ret == 0 ? read_all(&e) : NULL;
    const char *msg = kimg_last_error();
    ok(ret == 0 && !all && msg && strstr(msg, want), "%s: read refused: %s", name,
       msg ? msg : "(no message)");
    free(all);
    ext_close(&e);
    kimg_clear_error();
}

static void hostile(void)
{
    const char *sp = "--type sparse --size 10485760 --data 0:200000 --data 5000000:100000";
    const char *sp4k = "--type sparse --size 10485760 --grain 8 --data 0:200000 "
                       "--data 5000000:100000";
    const char *st = "--type stream --size 10485760 --data 0:200000 --data 5000000:100000";
    const char *cw = "--type cowd --size 10485760 --data 0:200000";
    char a[512];
#define V(fmt, ...) (snprintf(a, sizeof(a), fmt, __VA_ARGS__), a)
    refused("h-magic.vmdk", V("%s --set header.magic=KDMW", sp), "no KDMV or COWD magic");
    refused("h-v4.vmdk", V("%s --set header.version=4", sp), "Unsupported VMDK version 4");
    refused("h-v0.vmdk", V("%s --set header.version=0", sp), "Unsupported VMDK version 0");
    refused("h-flags.vmdk", V("%s --set header.flags=0x1000003", sp), "flags 0x1000000");
    refused("h-nl.vmdk", V("%s --set header.nl_chars=abcd", sp), "newline check");
    refused("h-comp.vmdk", V("%s --set header.compress=2", sp), "compression algorithm 2");
    refused("h-cap.vmdk", V("%s --set header.capacity=0x100000000000", sp), "too large");
    refused("h-grain0.vmdk", V("%s --set header.grain=0", sp), "grain size");
    refused("h-grain3.vmdk", V("%s --set header.grain=3", sp), "grain size");
    refused("h-grainbig.vmdk", V("%s --set header.grain=0x40000000", sp), "grain size");
    refused("h-gtes0.vmdk", V("%s --set header.gtes=0", sp), "grain table entries");
    refused("h-gtes.vmdk", V("%s --set header.gtes=1024", sp), "grain table entries");
    refused("h-gd.vmdk", V("%s --set header.gd_offset=0x100000", sp), "grain directory");
    refused("h-gd0.vmdk", V("%s --set header.gd_offset=0", sp), "grain directory");
    refused("h-rgd.vmdk", V("%s --set header.rgd_offset=0xfffffff0", sp), "redundant");
    refused("h-desc.vmdk", V("%s --set header.desc_size=4096", sp), "larger than 1 MiB");
    refused("h-descout.vmdk", V("%s --set header.desc_offset=0xffffff", sp), "descriptor");
    refused("h-overhead.vmdk", V("%s --set header.overhead=0xffffffff", sp), "File truncated");
    refused("h-gtout.vmdk", V("%s --gd 0=0x7ffffff0", sp), "outside the file");
    refused("h-gtloop.vmdk", V("%s --gd 0=26", sp), "overlaps the header or the grain directory");
    refused("h-gtdup.vmdk", V("%s --gd 1=@0", sp4k), "overlap");
    bad_read("h-trunc.vmdk", V("%s --truncate 200000", sp), "past the end of the file");
    bad_read("h-gteof.vmdk", V("%s --gt 0:1=0x7fffff00", sp), "past the end of the file");
    refused("s-trunc.vmdk", V("%s --truncate 512", st), "Invalid footer");
    refused("s-footer.vmdk", V("%s --set footer.magic=XXXX", st), "Invalid footer");
    refused("s-footcap.vmdk", V("%s --set footer.capacity=4096", st), "does not match");
    refused("s-footgd.vmdk", V("%s --set footer.gd_offset=0xffffffffffffffff", st),
            "footer does not say");
    refused("s-footgdout.vmdk", V("%s --set footer.gd_offset=0x10000000", st),
            "grain directory");
    bad_read("s-lba.vmdk", V("%s --marker 1:lba=0", st), "has lba 0");
    bad_read("s-size.vmdk", V("%s --marker 1:size=0x7fffffff", st), "compressed size");
    bad_read("s-size0.vmdk", V("%s --marker 1:size=0", st), "compressed size");
    bad_read("s-short.vmdk", V("%s --bad-grain 2", st), "does not inflate to one grain");
    bad_read("s-garbage.vmdk", V("%s --poke 65548=deadbeefdeadbeef", st),
             "does not inflate to one grain");
    bad_read("s-gtmark.vmdk", V("%s --break-marker gt", st), "bad grain table marker");
    refused("s-gdmark.vmdk", V("%s --break-marker gd", st), "bad grain directory marker");
    refused("c-version.vmdk", V("%s --set header.version=2", cw), "COWD version 2");
    refused("c-gd.vmdk", V("%s --set header.gd_entries=0", cw), "needs 1");
    refused("c-grain.vmdk", V("%s --set header.grain=5", cw), "grain size");
#undef V
}

/* check: a grain past the end of the file, as qemu-img 7.2 reports it */
static void check_eof(void)
{
    if (sh("python3 '%s/tests/images/make-vmdk.py' '%s/ck.vmdk' --type sparse --size 1048576 "
           "--data 0:200000 --gt 0:2=0x7fffff00", src, dir))
        return;
    struct ext e;
    ok(ext_open("ck.vmdk", &e) == 0, "ck.vmdk opens");
    char *log = NULL;
    size_t loglen = 0;
    struct kimg_check res = {0};
    res.log = open_memstream(&log, &loglen);
    int ret = e.s ? vmdk_sparse_check(e.s, &res) : 0;
    fclose(res.log);
    ok(ret == -EINVAL && res.corruptions == 1 && log &&
       !strcmp(log, "ERROR: cluster offset for sector 256 points after EOF\n"),
       "check: %s", log ? log : "");
    free(log);
    ext_close(&e);
}

int main(void)
{
    setenv("KIMG_CHECK_ALIGN", "1", 1);     /* a misaligned large read aborts */
    src = getenv("KIMG_SRC") ? getenv("KIMG_SRC") : ".";
    snprintf(dir, sizeof(dir), "%s/kimg-vmdks.XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (strlen(dir) > 48 || !mkdtemp(dir))
        skip_all("no temporary folder");
    if (system("qemu-img --version >/dev/null 2>&1") != 0)
        skip_all("qemu-img is not installed");
    /* guest content: data, a zero-filled grain, data at the very end */
    if (sh("cd '%s' && qemu-img create -q -f raw g.raw 10486272 && "
           "qemu-io -f raw -c 'write -P 0x41 0 100k' -c 'write -P 0x42 1M 64k' "
           "-c 'write -P 0 3M 64k' -c 'write -P 0x43 8M 1536k' "
           "-c 'write -P 0x44 10485760 512' g.raw >/dev/null && "
           "for t in monolithicSparse streamOptimized twoGbMaxExtentSparse; do "
           "  qemu-img convert -f raw -O vmdk -o subformat=$t g.raw q-$t.vmdk || exit 1; done && "
           "qemu-img create -q -f vmdk -o zeroed_grain=on q-zg.vmdk 10486272 && "
           "qemu-io -f vmdk -c 'write -P 0x45 0 192k' -c 'write -z 64k 64k' "
           "-c 'write -z 5M 128k' q-zg.vmdk >/dev/null && "
           "for f in q-monolithicSparse.vmdk q-streamOptimized.vmdk q-twoGbMaxExtentSparse.vmdk q-zg.vmdk; do qemu-img convert -O raw $f ${f%%.vmdk}.raw || exit 1; done",
           dir))
        skip_all("could not make the qemu-img samples");
    if (sh("cd '%s' && G='%s/tests/images/make-vmdk.py' && "
           "$G g-stream.vmdk --type stream --size 10486272 --data 0:100000 --data 1048576:65536 "
           "  --data 8388608:1572864 --data 10485760:512 --raw g-stream.raw && "
           "$G g-stream4k.vmdk --type stream --size 4194304 --grain 8 --gtes 128 "
           "  --data 4096:100000 --data 3000000:500000 --raw g-stream4k.raw && "
           "$G g-v3.vmdk --type sparse --version 3 --size 10485760 --data 0:100000 "
           "  --data 5000000:70000 --raw g-v3.raw && "
           "$G g-v2.vmdk --type sparse --version 2 --size 10485760 --data 0:100000 "
           "  --zero 5000000:70000 --raw g-v2.raw && "
           "$G g-cowd-s.vmdk --type cowd --size 41943040 --grain 1 --data 0:100000 "
           "  --data 9000000:70000 --data 41900000:43040 --raw g-cowd.raw --descriptor g-cowd.vmdk",
           dir, src))
        skip_all("make-vmdk.py failed");

    good("q-monolithicSparse.vmdk", "q-monolithicSparse.vmdk", "q-monolithicSparse.raw", 0, false, 1);
    good("q-streamOptimized.vmdk", "q-streamOptimized.vmdk", "q-streamOptimized.raw", 0, true, 3);
    good("q-zg.vmdk", "q-zg.vmdk", "q-zg.raw", 0, false, 2);
    good("q-twoGbMaxExtentSparse-s001.vmdk", "q-twoGbMaxExtentSparse.vmdk",
         "q-twoGbMaxExtentSparse.raw", 0, false, 1);
    good("g-stream.vmdk", "g-stream.vmdk", "g-stream.raw", 0, true, 3);
    good("g-stream4k.vmdk", "g-stream4k.vmdk", "g-stream4k.raw", 0, true, 3);
    good("g-v3.vmdk", "g-v3.vmdk", "g-v3.raw", 0, false, 3);
    good("g-v2.vmdk", "g-v2.vmdk", "g-v2.raw", 0, false, 2);
    good("g-cowd-s.vmdk", "g-cowd.vmdk", "g-cowd.raw", 0, false, 1);
    threads("q-streamOptimized.vmdk", "q-streamOptimized.raw");
    threads("g-stream4k.vmdk", "g-stream4k.raw");
    threads("q-monolithicSparse.vmdk", "q-monolithicSparse.raw");
    hostile();
    check_eof();

    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        diag("could not remove %s", dir);
    return done_testing();
}
