/*
 * test_qcow2_crypto.c — encrypted qcow2 images (formats/qcow2/crypto.c):
 * a LUKS image built by hand opens without its key for metadata only
 * (KIMG_OPEN_NO_IO) with its header parsed (formats/luks) as qemu prints
 * it; data access is refused in qemu's words; hostile CRYPTO extensions
 * and LUKS headers (lengths, offsets, magic, names, key slots) fail to
 * open with a message, never a crash.  Data with a key: tests/cli/177-179.
 */
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tap.h"
#include "kimg.h"
#include "kimg/driver.h"
#include "kimg/json.h"
#include "kimg/opts.h"
#include "formats/qcow2/qcow2.h"

#define CS        4096u                 /* cluster size of the test image */
#define KEY_BYTES 32u                   /* aes-256-cbc */
#define SLOT_SECT 256u                  /* 32 * 4000 / 512 = 250, to 8 sectors */
#define PAYLOAD   (8u + 8u * SLOT_SECT) /* sectors */
#define AREA      (PAYLOAD * 512u)

static uint8_t *base;       /* the plain image, then the LUKS area */
static size_t base_len;     /* plain part, cluster-aligned */
static size_t img_len;      /* with the LUKS area */
static uint8_t *c;          /* the mutated copy */
static uint32_t hdr_len;    /* qcow2 header_length: the CRYPTO extension sits there */

static void put32(uint8_t *p, uint32_t v) { qcow2_put_be32(p, v); }
static void put64(uint8_t *p, uint64_t v) { qcow2_put_be64(p, v); }

static uint8_t *luks(void) { return c + base_len; }
static uint8_t *slot(int i) { return luks() + 208 + 48 * i; }

/* Open C (LEN bytes) with FLAGS (+ no lock, no backing); MSG gets the error.
 * On success the whole metadata-only surface is exercised, then closed:
 * info must work, every data access must fail with -ENOKEY. */
static int try_open(size_t len, unsigned flags, char *msg, size_t msglen,
                    struct kimg_jv **enc_out, int *data_refused)
{
    struct kimg_file *f = NULL;
    struct kimg *img = NULL;
    int ret;

    kimg_clear_error();
    msg[0] = '\0';
    ret = kimg_file_open_mem(&f, "enc.qcow2", c, len, (flags & KIMG_OPEN_RDWR) != 0,
                             len + (1u << 20));
    if (ret == 0)
        ret = kimg_open_file(&img, f, "qcow2", flags | KIMG_OPEN_NO_LOCK | KIMG_OPEN_NO_BACKING);
    const char *e = kimg_last_error();
    snprintf(msg, msglen, "%s", e ? e : "");
    if (ret < 0)
        return ret;

    struct kimg_info info;
    if (kimg_get_info(img, &info) == 0) {
        if (enc_out && info.encrypted && info.format_specific) {
            struct kimg_jv *d = kimg_jv_get(info.format_specific, "data");
            struct kimg_jv *enc = d ? kimg_jv_get(d, "encrypt") : NULL;
            if (enc) {
                /* detach it from the tree */
                for (int i = 0; i < d->n; i++)
                    if (d->items[i] == enc)
                        d->items[i] = kimg_jv_bool(false);
                *enc_out = enc;
            }
        }
        kimg_info_free(&info);
    }
    uint8_t buf[512];
    struct kimg_extent ext;
    struct kimg_check chk;
    int refused = 0;
    memset(&chk, 0, sizeof(chk));
    kimg_clear_error();
    refused += kimg_read(img, buf, 0, sizeof(buf)) == -ENOKEY;
    refused += kimg_layer_block_status(img, 0, 512, &ext) == -ENOKEY;
    refused += kimg_block_status(img, 0, 512, &ext) == -ENOKEY;
    refused += kimg_check(img, &chk, 0) == -ENOKEY;
    e = kimg_last_error();
    if (e && !strstr(e, "Parameter 'encrypt.key-secret' is required for cipher"))
        refused = -1;
    if (data_refused)
        *data_refused = refused;
    kimg_close(img);
    return 0;
}

/* Expect C (the full image) to be refused under NO_IO with WANT in the message. */
static void refused(const char *name, const char *want)
{
    char msg[512];
    int ret = try_open(img_len, KIMG_OPEN_NO_IO, msg, sizeof(msg), NULL, NULL);
    ok(ret < 0 && msg[0] && strstr(msg, want), "%s: refused (%s)", name, msg);
}

static void reset(void) { memcpy(c, base, img_len); }

static void set_field(uint8_t *p, size_t n, const char *s)
{
    memset(p, 0, n);
    memcpy(p, s, strlen(s) < n ? strlen(s) : n);
}

static int make_base(const char *dir)
{
    char path[256];
    struct kimg_create_args a;
    struct kimg_opts *o = NULL;

    snprintf(path, sizeof(path), "%s/p.qcow2", dir);
    memset(&a, 0, sizeof(a));
    kimg_opts_parse(&o, "cluster_size=4k");
    a.filename = path;
    a.format = "qcow2";
    a.size = 1 << 20;
    a.size_given = true;
    a.opts = o;
    int ret = kimg_create(&a);
    kimg_opts_free(o);
    if (ret < 0)
        return ret;
    FILE *f = fopen(path, "rb");
    if (!f)
        return -errno;
    base = calloc(1, (1u << 20) + AREA);
    size_t n = fread(base, 1, 1u << 20, f);
    fclose(f);
    unlink(path);
    base_len = qcow2_align_up(n, CS);
    img_len = base_len + AREA;
    hdr_len = qcow2_be32(base + 100);

    /* LUKS, the CRYPTO extension where the feature table was, then the end */
    put32(base + 32, QCOW2_CRYPT_LUKS);
    uint8_t *x = base + hdr_len;
    memset(x, 0, CS - hdr_len);     /* no feature table, no backing name */
    put32(x, QCOW2_EXT_CRYPTO);
    put32(x + 4, 16);
    put64(x + 8, base_len);
    put64(x + 16, AREA);

    uint8_t *l = base + base_len;
    memcpy(l, "LUKS\xba\xbe", 6);
    l[6] = 0; l[7] = 1;
    set_field(l + 8, 32, "aes");
    set_field(l + 40, 32, "cbc-essiv:sha256");
    set_field(l + 72, 32, "sha1");
    put32(l + 104, PAYLOAD);
    put32(l + 108, KEY_BYTES);
    put32(l + 164, 1234);
    set_field(l + 168, 40, "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0");
    for (int i = 0; i < 8; i++) {
        uint8_t *s = l + 208 + 48 * i;
        put32(s, i == 0 ? 0x00AC71F3u : 0x0000DEADu);
        put32(s + 4, i == 0 ? 5678 : 0);
        put32(s + 40, 8 + SLOT_SECT * i);
        put32(s + 44, 4000);
    }
    return 0;
}

static const char *jstr(const struct kimg_jv *o, const char *key)
{
    const struct kimg_jv *v = o ? kimg_jv_get(o, key) : NULL;
    return v && v->type == KIMG_JV_STRING ? v->s : NULL;
}

static uint64_t juint(const struct kimg_jv *o, const char *key)
{
    const struct kimg_jv *v = o ? kimg_jv_get(o, key) : NULL;
    if (!v)
        return UINT64_MAX;
    return v->type == KIMG_JV_UINT ? v->u : v->type == KIMG_JV_INT ? (uint64_t)v->i : UINT64_MAX - 1;
}

int main(void)
{
    char dir[] = "/tmp/kimg-qcow2-crypto.XXXXXX";
    char msg[512];
    int ret, data_refused;
    struct kimg_jv *enc = NULL;

    /* 3000 opens each copy the image into a new memory file: keep freed
     * blocks in the heap rather than unmapping them, or every open faults
     * its pages in afresh (1.5 million faults, 12 s of system time on a
     * host that reports free guest pages) */
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 128 << 20);
    if (!mkdtemp(dir)) {
        printf("1..0 # skip no temporary folder\n");
        return 0;
    }
    if (make_base(dir) < 0) {
        rmdir(dir);
        printf("1..0 # skip cannot create the base image\n");
        return 0;
    }
    rmdir(dir);
    c = malloc(img_len + CS);

    /* ---- the valid LUKS image ---- */
    reset();
    ret = try_open(img_len, KIMG_OPEN_NO_IO, msg, sizeof(msg), &enc, &data_refused);
    ok(ret == 0, "LUKS image opens for metadata (NO_IO): %s", msg);
    is_u64((uint64_t)data_refused, 4, "read, block status (layer, chain) and check refused "
           "with -ENOKEY, 'encrypt.key-secret' is required");
    ok(enc != NULL, "info has the encrypt block");
    is_str(jstr(enc, "format"), "luks", "format luks");
    is_str(jstr(enc, "cipher-alg"), "aes-256", "cipher-alg aes-256 (32 key bytes)");
    is_str(jstr(enc, "cipher-mode"), "cbc", "cipher-mode cbc");
    is_str(jstr(enc, "ivgen-alg"), "essiv", "ivgen-alg essiv");
    is_str(jstr(enc, "ivgen-hash-alg"), "sha256", "ivgen-hash-alg sha256");
    is_str(jstr(enc, "hash-alg"), "sha1", "hash-alg sha1");
    is_str(jstr(enc, "uuid"), "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "uuid");
    is_u64(juint(enc, "payload-offset"), AREA, "payload-offset in bytes");
    is_u64(juint(enc, "master-key-iters"), 1234, "master-key-iters");
    {
        const struct kimg_jv *sl = enc ? kimg_jv_get(enc, "slots") : NULL;
        ok(sl && sl->type == KIMG_JV_ARRAY && sl->n == 8, "8 key slots");
        if (sl && sl->n == 8) {
            const struct kimg_jv *s0 = sl->items[0], *s3 = sl->items[3];
            ok(kimg_jv_get(s0, "active")->b && juint(s0, "iters") == 5678 &&
               juint(s0, "stripes") == 4000 && juint(s0, "key-offset") == 4096,
               "slot 0: active, iters, stripes, key-offset");
            ok(!kimg_jv_get(s3, "active")->b && !kimg_jv_get(s3, "iters") &&
               !kimg_jv_get(s3, "stripes") && juint(s3, "key-offset") == (8 + 3 * SLOT_SECT) * 512,
               "slot 3: inactive, key-offset only");
        } else {
            ok(0, "slot 0");
            ok(0, "slot 3");
        }
    }
    kimg_jv_free(enc);
    enc = NULL;

    /* data access refused at open unless NO_IO read-only */
    ret = try_open(img_len, 0, msg, sizeof(msg), NULL, NULL);
    ok(ret == -ENOKEY && strstr(msg, "Parameter 'encrypt.key-secret' is required for cipher"),
       "LUKS image without a key refused without NO_IO (qemu's message): %s", msg);
    ret = try_open(img_len, KIMG_OPEN_NO_IO | KIMG_OPEN_RDWR, msg, sizeof(msg), NULL,
                   &data_refused);
    ok(ret == 0 && data_refused == 4, "LUKS image without a key, read-write with NO_IO: "
       "metadata only, data refused (%s)", msg);

    /* AES: no header; format "aes" */
    reset();
    put32(c + 32, QCOW2_CRYPT_AES);
    memset(c + hdr_len, 0, 32);
    ret = try_open(img_len, KIMG_OPEN_NO_IO, msg, sizeof(msg), &enc, &data_refused);
    ok(ret == 0 && enc && !strcmp(jstr(enc, "format") ? jstr(enc, "format") : "", "aes") &&
       enc->n == 1, "AES image: encrypt {format: aes} (%s)", msg);
    is_u64((uint64_t)data_refused, 4, "AES image: data access refused");
    kimg_jv_free(enc);
    enc = NULL;
    ret = try_open(img_len, 0, msg, sizeof(msg), NULL, NULL);
    ok(ret == -ENOKEY, "AES image refused without NO_IO: %s", msg);

    /* ---- hostile qcow2 side ---- */
    reset(); put32(c + 32, 3);
    refused("crypt_method 3", "Unsupported encryption method 3");
    reset(); put32(c + 32, 0xffffffffu);
    refused("crypt_method 0xffffffff", "Unsupported encryption method");
    reset(); put32(c + 32, QCOW2_CRYPT_AES);
    refused("CRYPTO extension with AES", "only expected with LUKS");
    reset(); put32(c + 32, QCOW2_CRYPT_NONE);
    refused("CRYPTO extension without encryption", "only expected with LUKS");
    reset(); memset(c + hdr_len, 0, 32);
    refused("LUKS without CRYPTO extension", "Missing CRYPTO header");
    {
        static const uint32_t lens[] = { 0, 8, 15, 17, 24, 0xffffffffu };
        for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
            char name[64];
            reset();
            put32(c + hdr_len + 4, lens[i]);
            if (lens[i] == 24)
                memset(c + hdr_len + 24, 0, 16);   /* keep an end marker after it */
            snprintf(name, sizeof(name), "CRYPTO extension length %u", lens[i]);
            refused(name, lens[i] == 0xffffffffu ? "exceeds" : "CRYPTO header extension size");
        }
    }
    reset(); memmove(c + hdr_len + 24, c + hdr_len, 24);
    refused("duplicate CRYPTO extension", "Duplicate CRYPTO");
    reset(); put64(c + hdr_len + 8, base_len + 512);
    refused("LUKS header offset not cluster-aligned", "not a multiple of cluster size");
    reset(); put64(c + hdr_len + 8, 0);
    refused("LUKS header offset 0 (the qcow2 header)", "overlaps the qcow2 header");
    reset(); put64(c + hdr_len + 8, img_len);
    refused("LUKS header offset at EOF", "past the end of the file");
    reset(); put64(c + hdr_len + 8, 0xfffffffffffff000ULL);
    refused("LUKS header offset huge", "past the end of the file");
    reset(); put64(c + hdr_len + 16, 0xffffffffffffffffULL);
    refused("LUKS header length 2^64-1", "too large");
    reset(); put64(c + hdr_len + 16, 591);
    refused("LUKS header length 591", "truncated");
    reset(); put64(c + hdr_len + 16, 0);
    refused("LUKS header length 0", "truncated");
    reset(); put64(c + hdr_len + 16, AREA + CS);
    refused("LUKS area past EOF", "past the end of the file");
    reset();
    ret = try_open(img_len - 1, KIMG_OPEN_NO_IO, msg, sizeof(msg), NULL, NULL);
    ok(ret < 0 && strstr(msg, "past the end"), "file truncated inside the LUKS area: %s", msg);
    reset(); put64(c + hdr_len + 16, AREA - 512);
    refused("payload offset past the LUKS area", "past the end of the encryption header");

    /* ---- hostile LUKS header ---- */
    reset(); luks()[5] = 0xbf;
    refused("LUKS magic wrong", "not in LUKS format");
    reset(); memset(luks(), 0, 592);
    refused("LUKS header zeroed", "not in LUKS format");
    reset(); luks()[7] = 2;
    refused("LUKS version 2", "LUKS version 2 is not supported");
    reset(); memset(luks() + 8, 'A', 32);
    refused("cipher name not NUL-terminated", "cipher name is not NUL terminated");
    reset(); memset(luks() + 40, 'x', 32);
    refused("cipher mode not NUL-terminated", "cipher mode is not NUL terminated");
    reset(); memset(luks() + 72, 's', 32);
    refused("hash spec not NUL-terminated", "hash spec is not NUL terminated");
    reset(); set_field(luks() + 8, 32, "rot13");
    refused("unknown cipher", "Algorithm 'rot13' with key size 32 bytes not supported");
    reset(); set_field(luks() + 8, 32, "a\x01\x7f" "b");
    refused("control bytes in the cipher name", "'a??b'");
    reset(); put32(luks() + 108, 20);
    refused("aes with 20 key bytes", "key size 20 bytes");
    reset(); put32(luks() + 108, 0xffffffffu);
    refused("key bytes 2^32-1", "not supported");
    reset(); set_field(luks() + 40, 32, "cbc");
    refused("cipher mode without ivgen", "Unexpected cipher mode string format 'cbc'");
    reset(); set_field(luks() + 40, 32, "gcm-plain64");
    refused("unknown cipher mode", "Cipher mode 'gcm' not supported");
    reset(); set_field(luks() + 40, 32, "cbc-lmk");
    refused("unknown ivgen", "IV generator 'lmk' not supported");
    reset(); set_field(luks() + 40, 32, "cbc-essiv");
    refused("essiv without hash", "Missing IV generator hash");
    reset(); set_field(luks() + 40, 32, "cbc-essiv:whirlpool");
    refused("essiv with an unknown hash", "Hash algorithm 'whirlpool' not supported");
    reset(); set_field(luks() + 40, 32, "cbc-essiv:sha1");
    refused("essiv:sha1 with aes (20-byte key)", "No AES cipher with key size 20");
    reset(); set_field(luks() + 72, 32, "crc32");
    refused("unknown hash", "Hash algorithm 'crc32' not supported");
    reset(); put32(luks() + 104, 7);
    refused("payload offset inside the header", "payload is overlapping with the header");
    reset(); put32(luks() + 164, 0);
    refused("master key iterations 0", "iteration count is zero");

    /* key slots */
    reset(); put32(slot(2) + 44, 3999);
    refused("slot stripes 3999", "Keyslot 2 is corrupted (stripes 3999 != 4000)");
    reset(); put32(slot(1), 0x12345678);
    refused("slot state garbage", "Keyslot 1 state (active/disable) is corrupted");
    reset(); put32(slot(0) + 4, 0);
    refused("active slot with 0 iterations", "Keyslot 0 iteration count is zero");
    reset(); put32(slot(4) + 40, 7);
    refused("slot offset inside the header", "Keyslot 4 is overlapping with the LUKS header");
    reset(); put32(slot(7) + 40, PAYLOAD - 8);
    refused("slot running into the payload", "Keyslot 7 is overlapping with the encrypted payload");
    reset(); put32(slot(5) + 40, 0xffffffffu);
    refused("slot offset 2^32-1", "Keyslot 5 is overlapping with the encrypted payload");
    reset(); put32(slot(3) + 40, 8 + SLOT_SECT * 2 + 8);
    refused("slots overlapping each other", "Keyslots 2 and 3 are overlapping");

    /* essiv:md5 with cast5 is fine, xts halves the key */
    reset(); set_field(luks() + 8, 32, "cast5"); put32(luks() + 108, 16);
    set_field(luks() + 40, 32, "cbc-essiv:md5");
    ret = try_open(img_len, KIMG_OPEN_NO_IO, msg, sizeof(msg), &enc, NULL);
    ok(ret == 0 && enc && !strcmp(jstr(enc, "cipher-alg") ? jstr(enc, "cipher-alg") : "", "cast5-128"),
       "cast5-128 cbc-essiv:md5 accepted (%s)", msg);
    kimg_jv_free(enc);
    enc = NULL;
    reset(); set_field(luks() + 8, 32, "serpent"); put32(luks() + 108, 64);
    set_field(luks() + 40, 32, "xts-plain:sha256");
    for (int i = 0; i < 8; i++)      /* 64-byte keys: 504 sectors per slot */
        put32(slot(i) + 40, i < 4 ? 8 + 504 * i : 0x0fffffff);
    refused("64-byte key slots past the payload", "overlapping with the encrypted payload");
    reset(); set_field(luks() + 8, 32, "serpent"); put32(luks() + 108, 32);
    set_field(luks() + 40, 32, "xts-plain:sha256");
    ret = try_open(img_len, KIMG_OPEN_NO_IO, msg, sizeof(msg), &enc, NULL);
    ok(ret == 0 && enc && !strcmp(jstr(enc, "cipher-alg") ? jstr(enc, "cipher-alg") : "", "serpent-128") &&
       !kimg_jv_get(enc, "ivgen-hash-alg") &&
       !strcmp(jstr(enc, "ivgen-alg") ? jstr(enc, "ivgen-alg") : "", "plain"),
       "serpent xts with 32 key bytes is serpent-128, plain ignores its hash (%s)", msg);
    kimg_jv_free(enc);
    enc = NULL;

    /* random bytes over the LUKS header and the extension: never a crash */
    {
        uint64_t r = 777;
        int opened = 0, n = 3000;
        for (int i = 0; i < n; i++) {
            reset();
            int flips = 1 + (int)(r % 6);
            for (int j = 0; j < flips; j++) {
                r ^= r << 13; r ^= r >> 7; r ^= r << 17;
                size_t pos = (r & 1) ? base_len + (size_t)(r >> 8) % 592
                                     : hdr_len + (size_t)(r >> 8) % 32;
                r ^= r << 13; r ^= r >> 7; r ^= r << 17;
                c[pos] = (uint8_t)r;
            }
            if (try_open(img_len, KIMG_OPEN_NO_IO, msg, sizeof(msg), NULL, NULL) == 0)
                opened++;
        }
        ok(1, "%d randomly damaged LUKS headers handled (%d opened)", n, opened);
    }

    free(c);
    free(base);
    return done_testing();
}
