/*
 * secret.c — the process's secret objects (qemu's `--object secret,...`):
 * parsing qemu's object syntax, loading (data= or file=), decoding
 * (format=base64) and decrypting (keyid=,iv=: AES-256-CBC with another
 * secret, as qemu's QCryptoSecret) at creation, with qemu 7.2's messages
 * and their order; the store drivers read keys from (kimg_secret_get).
 * Secret bytes are never put in a message and are wiped when dropped.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "kimg/driver.h"
#include "internal.h"
#include "crypto_api.h"

/* Longest secret file read (qemu has no cap; a key file is a few bytes,
 * and this keeps file=/dev/zero from eating the memory). */
#define SECRET_FILE_MAX (16u << 20)

struct secret {
    char *id;
    uint8_t *data;
    size_t len;
    struct secret *next;
};

static pthread_mutex_t store_lock = PTHREAD_MUTEX_INITIALIZER;
static struct secret *store;

static void wipe_free(void *p, size_t len)
{
    if (p) {
        explicit_bzero(p, len);
        free(p);
    }
}

/* A string that may hold a secret (data=, the object text itself). */
static void wipe_str(char *s)
{
    if (s)
        wipe_free(s, strlen(s));
}

void kimg_secret_free(uint8_t *data, size_t len)
{
    wipe_free(data, len);
}

/* Caller holds store_lock. */
static struct secret *find_locked(const char *id)
{
    for (struct secret *s = store; s; s = s->next)
        if (!strcmp(s->id, id))
            return s;
    return NULL;
}

int kimg_secret_get(const char *id, uint8_t **data, size_t *len)
{
    int ret = 0;
    *data = NULL;
    *len = 0;
    pthread_mutex_lock(&store_lock);
    struct secret *s = find_locked(id);
    if (!s)
        ret = -ENOENT;
    else if (!(*data = malloc(s->len + 1)))   /* NUL-ended too, as qemu's */
        ret = -ENOMEM;
    else {
        memcpy(*data, s->data, s->len);
        (*data)[s->len] = '\0';
        *len = s->len;
    }
    pthread_mutex_unlock(&store_lock);
    if (ret == -ENOENT)
        return kimg_fail(ret, "No secret with id '%s'", id);
    if (ret == -ENOMEM)
        return kimg_fail(ret, "out of memory");
    return 0;
}

void kimg_secrets_clear(void)
{
    pthread_mutex_lock(&store_lock);
    while (store) {
        struct secret *s = store;
        store = s->next;
        free(s->id);
        wipe_free(s->data, s->len);
        free(s);
    }
    pthread_mutex_unlock(&store_lock);
}

/* ---- base64 as qemu's qbase64_decode (glib's decoder underneath) ---- */

/* qemu checks the characters itself, then lets glib decode: complete
 * quads only (a trailing partial quad is dropped), '=' counts as a zero
 * digit and drops an output byte when it is one of a quad's last two,
 * newlines are skipped.  OpenSSL's decoders refuse what glib accepts
 * ("abc", "abcd="), so the 20 lines are written out here. */
static int b64_rank(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    if (c == '=') return 0;
    return -1;
}

static int b64_decode(const char *in, size_t inlen, uint8_t **out, size_t *outlen)
{
    if (inlen && in[inlen - 1] == '\0')
        inlen--;
    if (memchr(in, '\0', inlen))
        return kimg_fail(-EINVAL, "Base64 data contains embedded NUL characters");
    for (size_t i = 0; i < inlen; i++)
        if (b64_rank((unsigned char)in[i]) < 0 && in[i] != '\n')
            return kimg_fail(-EINVAL, "Base64 data contains invalid characters");
    uint8_t *o = malloc(inlen / 4 * 3 + 1);
    if (!o)
        return kimg_fail(-ENOMEM, "out of memory");
    size_t n = 0;
    uint32_t v = 0;
    int q = 0;
    char last0 = 0, last1 = 0;
    for (size_t i = 0; i < inlen; i++) {
        int r = b64_rank((unsigned char)in[i]);
        if (r < 0)
            continue;
        last1 = last0;
        last0 = in[i];
        v = (v << 6) | (uint32_t)r;
        if (++q == 4) {
            o[n++] = (uint8_t)(v >> 16);
            if (last1 != '=')
                o[n++] = (uint8_t)(v >> 8);
            if (last0 != '=')
                o[n++] = (uint8_t)v;
            q = 0;
        }
    }
    explicit_bzero(&v, sizeof(v));
    *out = o;
    *outlen = n;
    return 0;
}

/* ---- the object's properties ------------------------------------------ */

struct secret_props {
    char *id, *data, *file, *keyid, *iv;
    bool base64;
    bool has_data, has_file;
};

static void props_free(struct secret_props *p)
{
    free(p->id);
    wipe_str(p->data);
    free(p->file);
    free(p->keyid);
    free(p->iv);
}

/* Replace *SLOT by a copy of VALUE (later keys win, as in qemu's keyval). */
static int set_str(char **slot, const char *value, bool secret)
{
    char *v = strdup(value);
    if (!v)
        return kimg_fail(-ENOMEM, "out of memory");
    if (secret)
        wipe_str(*slot);
    else
        free(*slot);
    *slot = v;
    return 0;
}

/* qemu's id_wellformed: a letter, then letters, digits, '-', '.', '_'. */
static bool id_wellformed(const char *id)
{
    if (!((*id >= 'a' && *id <= 'z') || (*id >= 'A' && *id <= 'Z')))
        return false;
    for (const char *p = id + 1; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_'))
            return false;
    return true;
}

/* A key fragment as qemu's keyval takes it: a QAPI name or an index. */
static bool key_fragment_ok(const char *s, size_t len)
{
    if (!len)
        return false;
    bool digits = true;
    for (size_t i = 0; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            digits = false;
    if (digits)
        return true;
    if (len >= 2 && s[0] == '_' && s[1] == '_')
        return true;
    if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')))
        return false;
    for (size_t i = 1; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_'))
            return false;
    return true;
}

static bool key_ok(const char *key)
{
    const char *p = key;
    for (;;) {
        size_t n = strcspn(p, ".");
        if (!key_fragment_ok(p, n))
            return false;
        if (!p[n])
            return true;
        p += n + 1;
    }
}

/* User-creatable object types of qemu-img 7.2 other than secret: named so
 * the refusal says what kimg leaves out rather than "does not accept". */
static const char *const other_types[] = {
    "authz-list", "authz-list-file", "authz-simple", "main-loop",
    "pr-manager-helper", "secret_keyring", "thread-context", "throttle-group",
    "tls-cipher-suites", "tls-creds-anon", "tls-creds-psk", "tls-creds-x509", NULL,
};

static const char object_types_help[] = "List of user creatable objects:\n  secret\n";
static const char secret_help[] =
    "secret options:\n"
    "  data=<string>\n"
    "  file=<string>\n"
    "  format=<QCryptoSecretFormat>\n"
    "  iv=<string>\n"
    "  keyid=<string>\n";

/* One pending "key=value" pair of the object text. */
struct kv {
    char *key, *value;
};

/* Element I comes after a data= element: an unescaped ',' in a password
 * ends the value, so this element's name (and every later one's: a
 * password may hold several commas) may be part of the secret and is not
 * echoed, where qemu would name it. */
static bool after_data(const struct kv *kv, int i)
{
    for (int j = 0; j < i; j++)
        if (kv[j].key && !strcmp(kv[j].key, "data"))
            return true;
    return false;
}

#define AFTER_DATA_MSG "Invalid parameter after 'data' (not shown: a comma in a secret " \
                       "given with data= is written ',,'; file= is better)"

/* Split SPEC as qemu's keyval_parse with the implied key "qom-type":
 * "key=value" pairs, ",," a literal comma in a value, a trailing comma
 * allowed; a first element without '=' is the type (up to the first
 * comma); "help" or "?" asks for help.  Fills KV (N pairs) and *HELP. */
static int split_spec(const char *spec, struct kv **pkv, int *pn, bool *help)
{
    size_t cap = strlen(spec) / 2 + 2;
    struct kv *kv = calloc(cap, sizeof(*kv));
    int n = 0;
    const char *p = spec;
    bool first = true;

    *help = false;
    *pn = 0;
    if (!kv)
        return kimg_fail(-ENOMEM, "out of memory");
    *pkv = kv;
    /* *PN follows N, so the caller frees what a failure leaves (kv_free
     * frees one element past it: the one being filled) */
    while (*p) {
        *pn = n;
        size_t klen = strcspn(p, "=,");
        if (p[klen] != '=') {
            if ((klen == 4 && !strncmp(p, "help", 4)) || (klen == 1 && *p == '?')) {
                *help = true;
            } else if (first && klen) {
                kv[n].key = strdup("qom-type");
                kv[n].value = strndup(p, klen);
                if (!kv[n].key || !kv[n].value)
                    return kimg_fail(-ENOMEM, "out of memory");
                n++;
            } else if (!klen) {
                return kimg_fail(-EINVAL, "Invalid parameter ''");
            } else if (after_data(kv, n)) {
                return kimg_fail(-EINVAL, AFTER_DATA_MSG);
            } else {
                return kimg_fail(-EINVAL, "Expected '=' after parameter '%.*s'",
                                 (int)klen, p);
            }
            p += klen;
        } else {
            kv[n].key = strndup(p, klen);
            if (!kv[n].key)
                return kimg_fail(-ENOMEM, "out of memory");
            if (!key_ok(kv[n].key) && after_data(kv, n))
                return kimg_fail(-EINVAL, AFTER_DATA_MSG);
            if (!key_ok(kv[n].key))
                return kimg_fail(-EINVAL, "Invalid parameter '%.200s'", kv[n].key);
            p += klen + 1;
            char *v = malloc(strlen(p) + 1), *o = v;
            if (!v)
                return kimg_fail(-ENOMEM, "out of memory");
            while (*p) {
                if (*p == ',') {
                    if (p[1] != ',')
                        break;
                    p++;
                }
                *o++ = *p++;
            }
            *o = '\0';
            kv[n++].value = v;
        }
        first = false;
        if (*p == ',')
            p++;
    }
    *pn = n;
    return 0;
}

static void kv_free(struct kv *kv, int n)
{
    if (!kv)
        return;
    for (int i = 0; i < n + 1; i++) {
        free(kv[i].key);
        wipe_str(kv[i].value);     /* data= may be among them */
    }
    free(kv);
}

/* The last value of KEY among the pairs (qemu: later keys win), or NULL. */
static const char *kv_get(const struct kv *kv, int n, const char *key)
{
    const char *v = NULL;
    for (int i = 0; i < n; i++)
        if (!strcmp(kv[i].key, key))
            v = kv[i].value;
    return v;
}

/* Read the secret file PATH with qemu's (glib's) words on failure. */
static int read_file(const char *path, uint8_t **out, size_t *outlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return kimg_fail(-errno, "Unable to read %s: Failed to open file \u201c%s\u201d: %s",
                         path, path, strerror(errno));
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    int ret = 0;
    if (!buf)
        ret = kimg_fail(-ENOMEM, "out of memory");
    while (ret == 0) {
        if (n == cap) {
            if (cap >= SECRET_FILE_MAX) {
                ret = kimg_fail(-EFBIG, "Unable to read %s: the file is larger than %u MiB",
                                path, SECRET_FILE_MAX >> 20);
                break;
            }
            uint8_t *nb = malloc(cap * 2);   /* not realloc: wipe the old copy */
            if (!nb) {
                ret = kimg_fail(-ENOMEM, "out of memory");
                break;
            }
            memcpy(nb, buf, n);
            wipe_free(buf, cap);
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            ret = kimg_fail(-errno, "Unable to read %s: Error reading file \u201c%s\u201d: %s",
                            path, path, strerror(errno));
        else if (r == 0)
            break;
        else
            n += (size_t)r;
    }
    close(fd);
    if (ret < 0) {
        wipe_free(buf, cap);
        return ret;
    }
    *out = buf;
    *outlen = n;
    return 0;
}

/* qemu's qcrypto_secret_decrypt: AES-256-CBC under the secret KEYID (32
 * bytes) with the base64 IV (16 bytes), the input base64 first when
 * BASE64; no padding check by OpenSSL: qemu's own (last byte at most 16
 * and at most the length, that many bytes dropped). */
static int decrypt(const struct secret_props *p, const uint8_t *in, size_t inlen,
                   uint8_t **out, size_t *outlen)
{
    uint8_t *key = NULL, *iv = NULL, *ct = NULL, *pt = NULL;
    size_t keylen = 0, ivlen = 0, ctlen = 0;
    EVP_CIPHER_CTX *ctx = NULL;
    int ret, len1 = 0, len2 = 0;

    ret = kimg_secret_get(p->keyid, &key, &keylen);
    if (ret < 0)
        return ret;
    if (keylen != 32) {
        ret = kimg_fail(-EINVAL, "Key should be 32 bytes in length");
        goto out;
    }
    if (!p->iv) {
        ret = kimg_fail(-EINVAL, "IV is required to decrypt secret");
        goto out;
    }
    ret = b64_decode(p->iv, strlen(p->iv), &iv, &ivlen);
    if (ret < 0)
        goto out;
    if (ivlen != 16) {
        ret = kimg_fail(-EINVAL, "IV should be %d bytes in length not %zu", 16, ivlen);
        goto out;
    }
    if (p->base64) {
        ret = b64_decode((const char *)in, inlen, &ct, &ctlen);
        if (ret < 0)
            goto out;
        in = ct;
        inlen = ctlen;
    }
    if (inlen % 16) {
        ret = kimg_fail(-EINVAL, "Length %zu must be a multiple of block size %d", inlen, 16);
        goto out;
    }
    /* OpenSSL on first use (lazylib/), after qemu's checks */
    ret = kimg_libcrypto_load("Decrypting a secret (keyid=)");
    if (ret < 0)
        goto out;
    pt = malloc(inlen + 1);
    ctx = EVP_CIPHER_CTX_new();
    if (!pt || !ctx) {
        ret = kimg_fail(-ENOMEM, "out of memory");
        goto out;
    }
    if (EVP_DecryptInit_ex(ctx, EVP_aes_256_cbc(), NULL, key, iv) != 1 ||
        EVP_CIPHER_CTX_set_padding(ctx, 0) != 1 ||
        EVP_DecryptUpdate(ctx, pt, &len1, in, (int)inlen) != 1 ||
        EVP_DecryptFinal_ex(ctx, pt + len1, &len2) != 1) {
        ret = kimg_fail(-EIO, "Cannot decrypt the secret (OpenSSL failed)");
        goto out;
    }
    size_t n = (size_t)len1 + (size_t)len2;
    if (n) {
        uint8_t pad = pt[n - 1];
        if (pad > 16 || pad > n) {
            ret = kimg_fail(-EINVAL, "Incorrect number of padding bytes (%d) found on "
                            "decrypted data", (int)pad);
            goto out;
        }
        n -= pad;
    }
    pt[n] = '\0';
    *out = pt;
    *outlen = n;
    pt = NULL;
    ret = 0;
out:
    if (ctx)
        EVP_CIPHER_CTX_free(ctx);
    kimg_secret_free(key, keylen);
    wipe_free(iv, ivlen);
    wipe_free(ct, ctlen);
    if (pt)
        wipe_free(pt, inlen + 1);
    return ret;
}

/* qemu's "complete" step: load, then decrypt or decode. */
static int load_secret(const struct secret_props *p, uint8_t **out, size_t *outlen)
{
    uint8_t *raw = NULL;
    size_t rawlen = 0;
    int ret;

    if (p->has_data && p->has_file)
        return kimg_fail(-EINVAL, "'file' and 'data' are mutually exclusive");
    if (!p->has_data && !p->has_file)
        return kimg_fail(-EINVAL, "Either 'file' or 'data' must be provided");
    if (p->has_file) {
        ret = read_file(p->file, &raw, &rawlen);
        if (ret < 0)
            return ret;
    } else {
        rawlen = strlen(p->data);
        raw = malloc(rawlen + 1);
        if (!raw)
            return kimg_fail(-ENOMEM, "out of memory");
        memcpy(raw, p->data, rawlen + 1);
    }
    if (p->keyid) {
        ret = decrypt(p, raw, rawlen, out, outlen);
    } else if (p->base64) {
        ret = b64_decode((const char *)raw, rawlen, out, outlen);
    } else {
        *out = raw;
        *outlen = rawlen;
        return 0;
    }
    wipe_free(raw, rawlen + (p->has_file ? 0 : 1));
    return ret;
}

/* The checks of qemu's user_creatable_add_type, in its order, once the
 * type is known to be "secret". */
static int secret_props_set(struct secret_props *p, const struct kv *kv, int n)
{
    const char *id = kv_get(kv, n, "id");
    int ret;

    if (!id)
        return kimg_fail(-EINVAL, "Parameter 'id' is missing");
    if (!id_wellformed(id))
        /* qemu adds a second line: "Identifiers consist of letters,
         * digits, '-', '.', '_', starting with a letter." */
        return kimg_fail(-EINVAL, "Parameter 'id' expects an identifier");
    if ((ret = set_str(&p->id, id, false)) < 0)
        return ret;
    for (int i = 0; i < n; i++) {
        const char *k = kv[i].key, *v = kv[i].value;
        if (!strcmp(k, "qom-type") || !strcmp(k, "id"))
            continue;
        if (!strcmp(k, "loaded"))
            return kimg_fail(-EINVAL, "Property 'secret.loaded' is not writable");
        if (!strcmp(k, "format")) {
            if (strcmp(v, "raw") && strcmp(v, "base64"))
                return kimg_fail(-EINVAL, "Parameter 'format' does not accept value '%.200s'",
                                 v);
            p->base64 = !strcmp(v, "base64");
            continue;
        }
        if (!strcmp(k, "data")) {
            p->has_data = true;
            ret = set_str(&p->data, v, true);
        } else if (!strcmp(k, "file")) {
            p->has_file = true;
            ret = set_str(&p->file, v, false);
        } else if (!strcmp(k, "keyid")) {
            ret = set_str(&p->keyid, v, false);
        } else if (!strcmp(k, "iv")) {
            ret = set_str(&p->iv, v, false);
        } else if (after_data(kv, i)) {
            return kimg_fail(-EINVAL, AFTER_DATA_MSG);
        } else {
            /* the first fragment of a dotted key, as qemu names it */
            return kimg_fail(-EINVAL, "Parameter '%.*s' is unexpected",
                             (int)strcspn(k, "."), k);
        }
        if (ret < 0)
            return ret;
    }
    return 0;
}

int kimg_object_add(const char *spec, FILE *help_out)
{
    struct kv *kv = NULL;
    struct secret_props p = { 0 };
    struct secret *s = NULL;
    uint8_t *data = NULL;
    size_t len = 0;
    int n = 0, ret;
    bool help;

    if (spec[0] == '{') {
        /* the seam for qemu's JSON object syntax (shared with json:
         * image names, issue 16): not taken yet */
        ret = kimg_fail(-ENOTSUP, "--object in JSON syntax is not supported; use "
                        "secret,id=ID,file=PATH");
        goto out;
    }
    ret = split_spec(spec, &kv, &n, &help);
    if (ret < 0)
        goto out;
    const char *type = kv_get(kv, n, "qom-type");
    if (help && (!type || !strcmp(type, "help"))) {
        if (help_out)
            fputs(object_types_help, help_out);
        ret = 1;
        goto out;
    }
    if (!type) {
        ret = kimg_fail(-EINVAL, "Parameter 'qom-type' is missing");
        goto out;
    }
    if (strcmp(type, "secret")) {
        bool known = false;
        for (int i = 0; other_types[i]; i++)
            known |= !strcmp(type, other_types[i]);
        if (known)
            ret = kimg_fail(-ENOTSUP, "Object type '%s' is not supported: kimg takes only "
                            "'secret' objects", type);
        else
            ret = kimg_fail(-EINVAL, "Parameter 'qom-type' does not accept value '%.200s'",
                            type);
        goto out;
    }
    if (help) {
        if (help_out)
            fputs(secret_help, help_out);
        ret = 1;
        goto out;
    }
    ret = secret_props_set(&p, kv, n);
    if (ret < 0)
        goto out;
    pthread_mutex_lock(&store_lock);
    bool dup = find_locked(p.id) != NULL;
    pthread_mutex_unlock(&store_lock);
    if (dup) {
        ret = kimg_fail(-EEXIST, "attempt to add duplicate property '%s' to object "
                        "(type 'container')", p.id);
        goto out;
    }
    ret = load_secret(&p, &data, &len);
    if (ret < 0)
        goto out;
    s = calloc(1, sizeof(*s));
    if (!s || !(s->id = strdup(p.id))) {
        free(s);
        kimg_secret_free(data, len);
        ret = kimg_fail(-ENOMEM, "out of memory");
        goto out;
    }
    s->data = data;
    s->len = len;
    pthread_mutex_lock(&store_lock);
    if (find_locked(s->id)) {   /* added by another thread meanwhile */
        pthread_mutex_unlock(&store_lock);
        free(s->id);
        kimg_secret_free(s->data, s->len);
        free(s);
        ret = kimg_fail(-EEXIST, "attempt to add duplicate property '%s' to object "
                        "(type 'container')", p.id);
        goto out;
    }
    s->next = store;
    store = s;
    pthread_mutex_unlock(&store_lock);
    ret = 0;
out:
    kv_free(kv, n);
    props_free(&p);
    return ret;
}
