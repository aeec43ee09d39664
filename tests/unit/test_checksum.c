/*
 * test_checksum.c — the checksum engine: known answers of the blkhash block
 * construction (upstream blkhash's own test vectors, and small crafted
 * images: empty, all zero, one data block at the end, sizes that are not a
 * multiple of the block size), holes vs data zeros, independence from the
 * thread count, --raw-digest, other digests, refused algorithms.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
#include "tests/unit/tap.h"
#include "kimg/checksum.h"
#include "kimg/driver.h"
#include "crypto_api.h"      /* the reference digests: OpenSSL, loaded as kimg does */

#define BS 65536u

static char dir[64];

/* ---- reference: the construction written out plainly ----------------- */

static void hexify(const unsigned char *md, unsigned len, char *hex)
{
    for (unsigned i = 0; i < len; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

/* H(H(b0) || ... || H(bn-1) || le64(len)), or H(content) when RAW. */
static void reference(const uint8_t *buf, uint64_t len, const char *alg, uint64_t bs,
                      bool raw, char *hex)
{
    EVP_MD *md = EVP_MD_fetch(NULL, alg, NULL);
    EVP_MD_CTX *outer = EVP_MD_CTX_new(), *inner = EVP_MD_CTX_new();
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned dl = 0;
    EVP_DigestInit_ex(outer, md, NULL);
    if (raw) {
        EVP_DigestUpdate(outer, buf, len);
    } else {
        for (uint64_t off = 0; off < len; off += bs) {
            uint64_t n = len - off < bs ? len - off : bs;
            EVP_DigestInit_ex(inner, md, NULL);
            EVP_DigestUpdate(inner, buf + off, n);
            EVP_DigestFinal_ex(inner, d, &dl);
            EVP_DigestUpdate(outer, d, dl);
        }
        unsigned char le[8];
        for (int i = 0; i < 8; i++)
            le[i] = (unsigned char)(len >> (8 * i));
        EVP_DigestUpdate(outer, le, 8);
    }
    EVP_DigestFinal_ex(outer, d, &dl);
    hexify(d, dl, hex);
    EVP_MD_CTX_free(outer);
    EVP_MD_CTX_free(inner);
    EVP_MD_free(md);
}

/* ---- running the engine ------------------------------------------------ */

static int run(struct kimg *img, const char *alg, uint64_t bs, int threads, bool raw,
               char *hex)
{
    struct kimg_checksum c = { .algorithm = alg, .block_size = bs, .threads = threads,
                               .raw = raw };
    unsigned char md[KIMG_CHECKSUM_MAX_MD_SIZE];
    unsigned len = 0;
    kimg_clear_error();
    int ret = kimg_checksum_run(img, &c, md, &len);
    if (ret < 0) {
        diag("checksum: %s", kimg_last_error() ? kimg_last_error() : "?");
        strcpy(hex, "error");
        return ret;
    }
    hexify(md, len, hex);
    return 0;
}

/* A memory raw image holding BUF (every byte reads as data). */
static struct kimg *mem_image(const uint8_t *buf, size_t len)
{
    struct kimg_file *f;
    struct kimg *img;
    if (kimg_file_open_mem(&f, "mem.raw", buf, len, false, 0) < 0 ||
        kimg_open_file(&img, f, "raw", KIMG_OPEN_NO_LOCK) < 0)
        return NULL;
    return img;
}

/* A sparse raw file of SIZE bytes: holes except where BUF has non-zero
 * 4 KiB pages (written, so they are data on the host). */
static struct kimg *sparse_image(const char *name, const uint8_t *buf, uint64_t size)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
        return NULL;
    for (uint64_t off = 0; buf && off < size; off += 4096) {
        uint64_t n = size - off < 4096 ? size - off : 4096;
        bool zero = true;
        for (uint64_t i = 0; i < n && zero; i++)
            zero = buf[off + i] == 0;
        if (!zero && pwrite(fd, buf + off, n, (off_t)off) != (ssize_t)n)
            return NULL;
    }
    close(fd);
    struct kimg *img;
    return kimg_open(&img, path, "raw", KIMG_OPEN_NO_LOCK) < 0 ? NULL : img;
}

/* Check one content through a memory image (all data) and a sparse file
 * (holes), against a known answer (KAT, may be NULL) and the reference. */
static void check_content(const char *name, const uint8_t *buf, uint64_t len,
                          const char *kat)
{
    char want[2 * EVP_MAX_MD_SIZE + 1], got[2 * EVP_MAX_MD_SIZE + 1];
    reference(buf, len, "sha256", BS, false, want);
    if (kat)
        is_str(want, kat, name);   /* the reference agrees with upstream */
    struct kimg *img = mem_image(buf, len);
    ok(img && run(img, NULL, 0, 2, false, got) == 0 && !strcmp(got, want),
       "%s: as data", name);
    if (img)
        kimg_close(img);
    img = sparse_image("c.raw", buf, len);
    ok(img && run(img, NULL, 0, 2, false, got) == 0 && !strcmp(got, want),
       "%s: with holes", name);
    if (img)
        kimg_close(img);
}

static uint8_t *filled(size_t len)
{
    uint8_t *b = calloc(1, len ? len : 1);
    if (!b) {
        printf("Bail out! out of memory\n");
        exit(1);
    }
    return b;
}

/* The vectors of blkhash's test suite (sha256, 64 KiB blocks), as
 * extents of a byte value: blkhash_update with memset(c) or
 * blkhash_zero for '-' (here: holes). */
static void test_upstream_vectors(void)
{
    static const struct { const char *name; const char *spec; const char *md; } v[] = {
        { "block data", "A2", "2e3a5f57d5e726ee5de62db1a85ff816f4fa6ea4627807d9a51bdc4c883e165e" },
        { "block zero", "-2", "8ab067ab7939a3d4f40cbb118956c07c06aeae2d075d6e0a2ebbb94bd42832af" },
        { "partial block data", "A", "9467334d6d7668a2f06898185b5cddc78cdfbd962f50c6bf250101f03a0e54dc" },
        { "partial block zero", "-", "842d185f0ff348b0d689e184bddc47f69a19032a6934c89b879479f1e86f9d56" },
        { "zero 8 blocks", "----------------", "722ac11a3a81034edf196aa3ee68d1a2e345cd0838b0c78c2ce2fb015d4d817d" },
        { "zero unaligned", "-----------------", "e623a5702b1feb08fbb3d18e35bbb7ec10146b8cd1bcff811200a3948c78c55c" },
        { "full", "ABCDEF", "4ab1586084326f5beb911621282e9557cd26856105eff7f78cace5986af4738b" },
        { "full unaligned", "ABCDE", "2cad558b3a2a8d87435e80fe7bae69fa664d92eaa1b9411f573b9fbb412a4d43" },
        { "mix", "A---E---", "4b2b5acd96f8105f4fb26abaf35c7c5756338ef9ccce19ffe7714c9ad94b4398" },
        { "mix unaligned", "A---E--", "2510ac29c7103f2e68c672d728cbd43db4ed3dc809a24cde96e62dc5862a0f57" },
    };
    /* each spec character is half a block; "A2" means one whole block of 'A' */
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        const char *s = v[i].spec;
        size_t halves = strlen(s);
        bool whole = halves == 2 && s[1] == '2';
        if (whole)
            halves = 2;
        uint8_t *buf = filled(halves * (BS / 2));
        for (size_t h = 0; h < halves; h++) {
            char ch = whole ? s[0] : s[h];
            memset(buf + h * (BS / 2), ch == '-' ? 0 : ch, BS / 2);
        }
        check_content(v[i].name, buf, halves * (BS / 2), v[i].md);
        free(buf);
    }
}

static void test_crafted(void)
{
    char got[2 * EVP_MAX_MD_SIZE + 1];
    uint8_t *buf;

    /* empty: H(le64(0)) */
    buf = filled(0);
    check_content("empty", buf, 0,
                  "af5570f5a1810b7af78caf4bc70a660f0df51e42baf91d4de5b2328de0e83dfc");
    free(buf);

    /* one data block at the end of 16 */
    buf = filled(16 * BS);
    memset(buf + 15 * BS, 'Z', BS);
    check_content("one data block at the end", buf, 16 * BS,
                  "5f26f2039ee16e5f3a7ee9018013730e4ca5056094081bc17dec0ebfa4515880");
    struct kimg *img = mem_image(buf, 16 * BS);
    static const struct { const char *alg, *md; } algs[] = {
        { "sha1", "fc7652dee46056f86238a5c89058fb5eef806d6d" },
        { "blake2b512", "cb36d8e1a1a57491262c20c4edbea556b7c589d6ec56744d0175195a13bfc64f"
                        "a8b5fd5c5f4a8edcbcfa5d015136dd971c6212073356db89a32b249330e2789e" },
        { "md5", "37b1ea4bcfebb2555c28a262d9abe466" },
    };
    for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
        if (kimg_checksum_check_algorithm(algs[i].alg) < 0) {
            ok(1, "# SKIP %s not available here", algs[i].alg);
            kimg_clear_error();
            continue;
        }
        run(img, algs[i].alg, 0, 3, false, got);
        is_str(got, algs[i].md, algs[i].alg);
    }
    kimg_close(img);
    free(buf);

    /* sizes that are not a multiple of the block size (images count in
     * 512-byte sectors, as in qemu) */
    uint64_t n1 = 3 * BS + 1024;
    buf = filled(n1);
    memset(buf, 0x11, 1000);
    memset(buf + n1 - 1000, 0x22, 1000);
    check_content("3 blocks + 1 KiB, data in the short block", buf, n1,
                  "53feb3b61b5093a6a965b47f047f376a99e5509bc4f7983c9b65657ab1d23be0");
    img = mem_image(buf, n1);
    run(img, "sha256", 4096, 2, false, got);
    is_str(got, "869a0e7d76625459dc40a3c6cb1bcc7dc7587ef100d226e7c310b34e0db3aea6",
           "--block-size 4096");
    kimg_close(img);
    free(buf);

    uint64_t n2 = 5 * BS + 512;
    buf = filled(n2);
    memset(buf + BS, 'B', BS);
    check_content("5 blocks + 512 bytes, the short block a hole", buf, n2,
                  "87398cb25dfb698e5a327be59dd38c35e2c464d2f293922c933a55d6e5e8400d");
    img = sparse_image("n2.raw", buf, n2);
    run(img, "sha512", 0, 1, false, got);
    is_str(got, "3353b3c5796d18a59e41783b183ba01f81c345d5aaf3c87133480d71d95b95ad"
                "2c5c90dd91c8310020c62a5495e4ad6fa630b05795de282fea30d94106652a11", "sha512");
    kimg_close(img);
    free(buf);

    /* a 1 GiB hole: upstream's "sparse large" vector, nothing read */
    img = sparse_image("hole.raw", NULL, 1u << 30);
    ok(img && run(img, NULL, 0, 0, false, got) == 0 &&
       !strcmp(got, "c6d6562c3074a2caa0ceea3e1f460f3af678c792ed05e64157eb51e68ae5260d"),
       "1 GiB hole");
    if (img)
        kimg_close(img);
    /* a hole longer than one zero slot, ending in a short block */
    img = sparse_image("hole5.raw", NULL, (5ull << 30) + 4096);
    ok(img && run(img, NULL, 0, 3, false, got) == 0 &&
       !strcmp(got, "5c11ef06f64ea9d7d9b237c7c01deeb016bf4fef0f90681529ad8a172e859ec0"),
       "5 GiB + 4 KiB hole");
    if (img)
        kimg_close(img);
}

/* Scattered data, holes smaller and larger than a block, zero pages that
 * are data on the host: every thread count and a few block sizes give the
 * reference digest (the ring of slots wraps many times). */
static void test_threads_and_layouts(void)
{
    uint64_t len = 12u * 1024 * 1024 + 3584;
    uint8_t *buf = filled(len);
    uint32_t x = 12345;
    for (uint64_t off = 0; off < len; off += 4096) {
        x = x * 1103515245u + 12345u;
        unsigned kind = (x >> 16) % 8;
        uint64_t n = len - off < 4096 ? len - off : 4096;
        if (kind < 3)
            for (uint64_t i = 0; i < n; i++)
                buf[off + i] = (uint8_t)(x >> (i % 24));
        /* kind >= 3: zeros (holes in the sparse file) */
    }
    static const uint64_t sizes[] = { 0, 512, 4096, 1u << 20, 4u << 20 };
    static const int threads[] = { 1, 2, 3, 8, 33 };
    struct kimg *mem = mem_image(buf, len);
    struct kimg *sparse = sparse_image("t.raw", buf, len);
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        char want[2 * EVP_MAX_MD_SIZE + 1], got[2 * EVP_MAX_MD_SIZE + 1];
        reference(buf, len, "sha256", sizes[s] ? sizes[s] : BS, false, want);
        bool all = mem && sparse;
        for (size_t t = 0; t < sizeof(threads) / sizeof(threads[0]) && all; t++) {
            all = run(mem, NULL, sizes[s], threads[t], false, got) == 0 && !strcmp(got, want);
            all = all && run(sparse, NULL, sizes[s], threads[t], false, got) == 0 &&
                  !strcmp(got, want);
            if (!all)
                diag("block size %llu, %d threads: %s, want %s",
                     (unsigned long long)sizes[s], threads[t], got, want);
        }
        ok(all, "block size %llu: same digest for 1..33 threads, data and holes",
           (unsigned long long)(sizes[s] ? sizes[s] : BS));
    }
    /* the plain digest of the same content */
    static const char *const algs[] = { "sha256", "sha512", "blake2b512", "sha3-256" };
    for (size_t a = 0; a < sizeof(algs) / sizeof(algs[0]); a++) {
        char want[2 * EVP_MAX_MD_SIZE + 1], got[2 * EVP_MAX_MD_SIZE + 1];
        reference(buf, len, algs[a], BS, true, want);
        ok(sparse && run(sparse, algs[a], 0, 4, true, got) == 0 && !strcmp(got, want),
           "--raw-digest %s is the digest of the content", algs[a]);
    }
    if (mem)
        kimg_close(mem);
    if (sparse)
        kimg_close(sparse);
    free(buf);
}

/* A qcow2 written through the library: unallocated clusters, zero
 * clusters and data give the digest of the same raw content. */
static void test_qcow2(void)
{
    char path[128], want[2 * EVP_MAX_MD_SIZE + 1], got[2 * EVP_MAX_MD_SIZE + 1];
    uint64_t size = 4u << 20;
    uint8_t *buf = filled(size);
    snprintf(path, sizeof(path), "%s/q.qcow2", dir);
    struct kimg_create_args a;
    memset(&a, 0, sizeof(a));
    a.filename = path;
    a.format = "qcow2";
    a.size = size;
    a.size_given = true;
    struct kimg *img = NULL;
    bool good = kimg_create(&a) == 0 && kimg_open(&img, path, "qcow2",
                                                  KIMG_OPEN_RDWR | KIMG_OPEN_NO_LOCK) == 0;
    memset(buf + 100000, 0x5a, 300000);
    memset(buf + size - 70000, 0xa5, 70000);
    good = good && kimg_write(img, buf + 100000, 100000, 300000) == 0 &&
           kimg_write(img, buf + size - 70000, size - 70000, 70000) == 0 &&
           kimg_write_zeroes(img, 200000, 65536 * 2, 0) == 0;
    memset(buf + 200000, 0, 65536 * 2);
    ok(good, "qcow2 written");
    reference(buf, size, "sha256", BS, false, want);
    ok(good && run(img, NULL, 0, 2, false, got) == 0 && !strcmp(got, want),
       "qcow2: the digest of its raw content");
    reference(buf, size, "sha256", BS, true, want);
    ok(good && run(img, NULL, 0, 2, true, got) == 0 && !strcmp(got, want),
       "qcow2: --raw-digest");
    if (img)
        kimg_close(img);
    free(buf);
}

static void test_refused(void)
{
    uint8_t b[16] = { 1 };
    char got[2 * EVP_MAX_MD_SIZE + 1];
    struct kimg *img = mem_image(b, sizeof(b));
    kimg_clear_error();
    ok(kimg_checksum_check_algorithm("no-such-digest") == -EINVAL && kimg_last_error() &&
       strstr(kimg_last_error(), "no-such-digest"), "unknown algorithm refused, named");
    kimg_clear_error();
    ok(kimg_checksum_check_algorithm("") == -EINVAL, "empty algorithm name refused");
    kimg_clear_error();
    ok(kimg_checksum_check_algorithm("null") == -EINVAL, "a digest with no output refused");
    kimg_clear_error();
    ok(run(img, "no-such-digest", 0, 1, false, got) == -EINVAL, "run refuses it too");
    ok(run(img, NULL, 1000, 1, false, got) == -EINVAL, "block size not a multiple of 512");
    ok(run(img, NULL, 128u << 20, 1, false, got) == -EINVAL, "block size above 64M");
    kimg_clear_error();
    kimg_close(img);
}

int main(void)
{
    snprintf(dir, sizeof(dir), "%s/kimg-checksum.XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (strlen(dir) > 48 || !mkdtemp(dir))
        skip_all("no temporary folder");
    if (kimg_libcrypto_load("the reference digests") < 0)
        skip_all("no libcrypto");
    test_upstream_vectors();
    test_crafted();
    test_threads_and_layouts();
    test_qcow2();
    test_refused();
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        diag("could not remove %s", dir);
    return done_testing();
}
