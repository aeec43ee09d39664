/*
 * uuid.c — domain UUIDs for clones: random ones from libuuid, and --uuid
 * values checked as libvirt parses them (32 hex digits, dashed 8-4-4-4-12
 * or not at all) and printed in the canonical lowercase dashed form.
 */
#include <errno.h>
#include <string.h>
#include <uuid/uuid.h>
#include "kimg.h"
#include "clone.h"

int clone_uuid_parse(const char *s, char out[37])
{
    char hex[33];
    size_t n = strlen(s), k = 0;
    bool ok = n == 32 || n == 36;
    for (size_t i = 0; ok && i < n; i++) {
        char c = s[i];
        if (n == 36 && (i == 8 || i == 13 || i == 18 || i == 23)) {
            ok = c == '-';
            continue;
        }
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            ok = false;
        else
            hex[k++] = (char)(c >= 'A' && c <= 'F' ? c - 'A' + 'a' : c);
    }
    if (!ok || k != 32)
        return kimg_fail(-EINVAL, "'%.40s' is not a UUID (32 hex digits, like "
                         "4dea22b3-1d52-d8f3-2516-782e98ab3fa0)", s);
    hex[32] = '\0';
    bool same = true;
    for (int i = 1; i < 32; i++)
        if (hex[i] != hex[0])
            same = false;
    if (same)
        return kimg_fail(-EINVAL, "%s is not a usable UUID (all digits equal)", s);
    memcpy(out, hex, 8);
    out[8] = '-';
    memcpy(out + 9, hex + 8, 4);
    out[13] = '-';
    memcpy(out + 14, hex + 12, 4);
    out[18] = '-';
    memcpy(out + 19, hex + 16, 4);
    out[23] = '-';
    memcpy(out + 24, hex + 20, 12);
    out[36] = '\0';
    return 0;
}

void clone_uuid_random(char out[37])
{
    uuid_t u;
    uuid_generate_random(u);
    uuid_unparse_lower(u, out);
}
