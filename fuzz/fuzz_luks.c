/*
 * fuzz_luks.c — the LUKS1 header parser and key-slot layout validation
 * (formats/luks) on hostile bytes, in memory: the input is the start of a
 * 4 MiB header area (past its end the area reads as zeros, so small seeds
 * reach every slot layout).  luks_open, luks_info; when every active slot
 * and the digest ask for at most MAX_ITERS PBKDF2 iterations, luks_unlock
 * with the seeds' passphrase "fuzz" and, unlocked, an encrypt/decrypt round
 * trip (oracle: the sector comes back).  Also the input as a "luks" image
 * opened for info (KIMG_OPEN_NO_IO) and probed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz.h"
#include "kimg/driver.h"
#include "kimg/json.h"
#include "formats/luks/luks_int.h"

#define AREA       (4u << 20)
#define MAX_ITERS  8000u        /* seeds: qemu's minimum (1000) and iter-time=1 */
#define RO_FLAGS   (KIMG_OPEN_NO_LOCK | KIMG_OPEN_NO_BACKING | KIMG_OPEN_NO_IO)

struct mem { const uint8_t *p; size_t n; };

static int mem_pread(void *o, void *buf, size_t len, uint64_t off)
{
    const struct mem *m = o;
    if (off > AREA || len > AREA - off)
        abort();                /* the library read outside its area */
    memset(buf, 0, len);
    if (off < m->n)
        memcpy(buf, m->p + off, m->n - off < len ? m->n - off : len);
    return 0;
}

static void unlock_and_run(struct luks *l)
{
    for (int i = 0; i < LUKS_NUM_SLOTS; i++)
        if (l->slots[i].active && l->slots[i].iters > MAX_ITERS)
            return;
    if (l->mk_iters > MAX_ITERS)
        return;
    if (luks_unlock(l, (const uint8_t *)"fuzz", 4) < 0)
        return;
    if (getenv("FUZZ_LUKS_DEBUG"))
        fprintf(stderr, "fuzz_luks: unlocked\n");
    uint8_t a[1024], b[1024];
    for (size_t i = 0; i < sizeof(a); i++)
        a[i] = (uint8_t)(i * 31);
    memcpy(b, a, sizeof(b));
    if (luks_encrypt(l, 77, b, sizeof(b)) < 0 || luks_decrypt(l, 77, b, sizeof(b)) < 0 ||
        memcmp(a, b, sizeof(a))) {
        fprintf(stderr, "fuzz_luks: encrypt/decrypt round trip failed\n");
        abort();
    }
}

static void as_image(const uint8_t *data, size_t size, const char *fmt)
{
    struct kimg_file *f;
    struct kimg *img = NULL;
    struct kimg_info info;

    if (kimg_file_open_mem(&f, "/nonexistent-kimg-fuzz/v.luks", data, size, false, 0) < 0)
        return;
    if (kimg_open_file(&img, f, fmt, RO_FLAGS) == 0) {
        if (kimg_get_info(img, &info) == 0)
            kimg_info_free(&info);
        kimg_close(img);
    }
    kimg_clear_error();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mem m = { data, size > AREA ? AREA : size };
    struct luks_io io = { .opaque = &m, .pread = mem_pread, .len = AREA };
    struct luks *l = NULL;

    kimg_clear_error();
    if (luks_open(&l, &io, LUKS_OPEN_UNTRUSTED) == 0) {
        struct kimg_jv *j = luks_info(l);
        if (!j)
            abort();
        kimg_jv_free(j);
        unlock_and_run(l);
        luks_close(l);
    }
    kimg_clear_error();
    as_image(data, m.n, "luks");
    as_image(data, m.n, NULL);
    return 0;
}
