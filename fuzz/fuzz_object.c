/*
 * fuzz_object.c — the command-line strings kimg parses for encrypted
 * images: an --object string (img/secret.c: keyval syntax, base64,
 * keyid/iv decryption with a 32-byte key added first) and an
 * --image-opts string (img/image_opts.c: QemuOpts syntax), split at the
 * first NUL byte.  Every refusal names its reason; nothing is read from
 * files (inputs naming "file" are skipped: file=/dev/stdin would block).
 */
#include <stdlib.h>
#include <string.h>
#include "fuzz.h"
#include "kimg.h"
#include "kimg/opts.h"
#include "kimg/driver.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    char *s = malloc(size + 2);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = s[size + 1] = '\0';
    const char *spec = s, *optstr = s + strlen(s) + 1;
    if (optstr > s + size)
        optstr = "";

    kimg_clear_error();
    if (!strstr(spec, "file")) {
        /* a key for keyid=k: 32 bytes of 'K' */
        if (kimg_object_add("secret,id=k,data=S0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0s=,"
                            "format=base64", NULL) < 0)
            abort();
        int r = kimg_object_add(spec, NULL);
        if (r < 0 && r != -12 && !kimg_last_error())
            abort();
        kimg_clear_error();
        uint8_t *d;
        size_t len;
        if (kimg_secret_get("s0", &d, &len) == 0)
            kimg_secret_free(d, len);
        kimg_clear_error();
        kimg_secrets_clear();
    }

    struct kimg_opts *o = NULL;
    int r = kimg_image_opts_parse(optstr, &o);
    if (r < 0 && r != -12 && !kimg_last_error())
        abort();
    for (int i = 0; i < kimg_opts_count(o); i++)
        if (!kimg_opts_get(o, kimg_opts_key(o, i)))
            abort();
    kimg_opts_free(o);
    kimg_clear_error();
    free(s);
    return 0;
}
