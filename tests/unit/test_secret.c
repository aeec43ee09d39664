/*
 * test_secret.c — the secret store (img/secret.c): data=, file=,
 * format=base64 with glib's leniency, keyid=/iv= (AES-256-CBC, checked
 * against a ciphertext made by `openssl enc`), duplicates, lookups, help,
 * clearing; no message holds the secret.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "tests/unit/tap.h"
#include "kimg.h"
#include "kimg/driver.h"

/* The secret ID as a string ("" when absent: then -ENOENT). */
static int get(const char *id, char *out, size_t cap, size_t *len)
{
    uint8_t *d;
    int ret = kimg_secret_get(id, &d, len);
    kimg_clear_error();
    if (ret < 0)
        return ret;
    if (*len < cap) {
        memcpy(out, d, *len);
        out[*len] = '\0';
    }
    kimg_secret_free(d, *len);
    return 0;
}

/* kimg_object_add; the message must not hold NEEDLE. */
static int add(const char *spec, const char *needle)
{
    int ret = kimg_object_add(spec, NULL);
    const char *m = kimg_last_error();
    if (m && needle && strstr(m, needle))
        diag("message leaks the secret: %s", m);
    if (m && needle)
        ok(!strstr(m, needle), "no secret in: %s", m);
    kimg_clear_error();
    return ret;
}

int main(void)
{
    char buf[256];
    size_t len;

    plan(30);
    ok(add("secret,id=s0,data=hunter2", NULL) == 0, "data=");
    ok(get("s0", buf, sizeof(buf), &len) == 0 && len == 7 && !strcmp(buf, "hunter2"),
       "data= read back");
    ok(add("secret,id=s0,data=other", "other") == -EEXIST, "a duplicate id is refused");
    ok(get("s0", buf, sizeof(buf), &len) == 0 && !strcmp(buf, "hunter2"),
       "the first secret stays");
    ok(get("nosuch", buf, sizeof(buf), &len) == -ENOENT, "unknown id: -ENOENT");
    ok(kimg_secret_get("nosuch", (uint8_t **)&(char *){ NULL }, &len) == -ENOENT &&
       kimg_last_error() && !strcmp(kimg_last_error(), "No secret with id 'nosuch'"),
       "qemu's message for an unknown id");
    kimg_clear_error();

    ok(add("secret,id=b1,data=YWJj,format=base64", NULL) == 0 &&
       get("b1", buf, sizeof(buf), &len) == 0 && !strcmp(buf, "abc"), "base64");
    ok(add("secret,id=b2,data=abcd=,format=base64", NULL) == 0 &&
       get("b2", buf, sizeof(buf), &len) == 0 && len == 3, "base64: a partial quad dropped");
    ok(add("secret,id=b3,data=abc,format=base64", NULL) == 0 &&
       get("b3", buf, sizeof(buf), &len) == 0 && len == 0, "base64: 3 digits give nothing");
    ok(add("secret,id=b4,data=YWI=,format=base64", NULL) == 0 &&
       get("b4", buf, sizeof(buf), &len) == 0 && len == 2 && !memcmp(buf, "ab", 2),
       "base64: padding drops bytes");
    ok(add("secret,id=b5,data=SECRETVALUE!,format=base64", "SECRETVALUE") == -EINVAL,
       "base64: invalid characters");
    ok(add("secret,id=c1,data=a,,b", NULL) == 0 &&
       get("c1", buf, sizeof(buf), &len) == 0 && !strcmp(buf, "a,b"), "',,' is a comma");

    char path[] = "/tmp/kimg-secret-XXXXXX";
    int fd = mkstemp(path);
    ok(fd >= 0 && write(fd, "c2VjcmV0\n", 9) == 9, "key file written");
    close(fd);
    snprintf(buf, sizeof(buf), "secret,id=f1,file=%s,format=base64", path);
    ok(add(buf, NULL) == 0 && get("f1", buf, sizeof(buf), &len) == 0 &&
       !strcmp(buf, "secret"), "file=, base64 with a newline");
    snprintf(buf, sizeof(buf), "secret,id=f2,file=%s", path);
    ok(add(buf, NULL) == 0 && get("f2", buf, sizeof(buf), &len) == 0 && len == 9,
       "file=, raw: the bytes as they are");
    unlink(path);

    /* keyid: printf hunter2 | openssl enc -aes-256-cbc -K 4b4b..(32 'K')
     * -iv 4949..(16 'I') | base64 */
    ok(add("secret,id=k,data=S0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0s=,format=base64",
           NULL) == 0, "a 32-byte key");
    ok(add("secret,id=e1,data=gptIqrsKcmzVaZHzb+nquQ==,format=base64,keyid=k,"
           "iv=SUlJSUlJSUlJSUlJSUlJSQ==", NULL) == 0 &&
       get("e1", buf, sizeof(buf), &len) == 0 && len == 7 && !strcmp(buf, "hunter2"),
       "keyid=, iv=: decrypted as qemu does");
    ok(add("secret,id=e2,data=gptIqrsKcmzVaZHzb+nquQ==,format=base64,keyid=k", NULL) ==
       -EINVAL, "keyid= without iv=");
    ok(add("secret,id=e3,data=abcdabcdabcdabcd,keyid=k,iv=SUlJSUlJSUlJSUlJSUlJSQ==",
           "abcdabcd") == -EINVAL, "bad padding refused, no secret in the message");
    ok(add("secret,id=e4,data=abc,keyid=k,iv=SUlJSUlJSUlJSUlJSUlJSQ==", NULL) == -EINVAL,
       "a length not a multiple of 16");
    ok(add("secret,id=e5,data=x,keyid=s0,iv=SUlJSUlJSUlJSUlJSUlJSQ==", NULL) == -EINVAL,
       "a key that is not 32 bytes");

    ok(add("secret,id=m1,data=PLAINTEXT,file=/x", "PLAINTEXT") == -EINVAL,
       "data= and file= together");
    ok(add("tls-creds-x509,id=t0,dir=/tmp", NULL) == -ENOTSUP, "other object types refused");
    ok(kimg_object_add("help", NULL) == 1 && kimg_object_add("secret,help", NULL) == 1,
       "help asked for");

    kimg_secrets_clear();
    ok(get("s0", buf, sizeof(buf), &len) == -ENOENT, "cleared");
    ok(add("secret,id=s0,data=again", NULL) == 0, "an id may be reused after clearing");
    kimg_secrets_clear();
    return done_testing();
}
