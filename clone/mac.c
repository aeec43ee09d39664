/*
 * mac.c — MAC addresses for cloned interfaces: parsing and validation of
 * --mac values (six hex pairs, unicast, not all zero) and random ones with
 * KVM's locally administered 52:54:00 prefix, as libvirt makes them.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include "kimg.h"
#include "clone.h"

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int clone_mac_parse(const char *s, uint8_t mac[6])
{
    size_t n = strlen(s);
    bool ok = n == 17;
    for (int i = 0; ok && i < 6; i++) {
        int hi = hexval(s[i * 3]), lo = hexval(s[i * 3 + 1]);
        if (hi < 0 || lo < 0 || (i < 5 && s[i * 3 + 2] != ':'))
            ok = false;
        else
            mac[i] = (uint8_t)(hi << 4 | lo);
    }
    if (!ok)
        return kimg_fail(-EINVAL, "'%.40s' is not a MAC address (six hex pairs separated "
                         "by ':', like 52:54:00:12:34:56)", s);
    if (mac[0] & 1)
        return kimg_fail(-EINVAL, "%s is a multicast MAC address; an interface needs a "
                         "unicast one (even first octet)", s);
    static const uint8_t zero[6];
    if (!memcmp(mac, zero, 6))
        return kimg_fail(-EINVAL, "%s is the all-zero MAC address", s);
    return 0;
}

void clone_mac_format(const uint8_t mac[6], char out[18])
{
    snprintf(out, 18, "%02x:%02x:%02x:%02x:%02x:%02x",
             mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
}

int clone_mac_random(uint8_t mac[6])
{
    uint8_t r[3];
    size_t got = 0;
    while (got < sizeof(r)) {
        ssize_t k = getrandom(r + got, sizeof(r) - got, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return kimg_fail(-errno, "cannot get random bytes for a MAC address: %s",
                             strerror(errno));
        got += (size_t)k;
    }
    mac[0] = 0x52;
    mac[1] = 0x54;
    mac[2] = 0x00;
    memcpy(mac + 3, r, 3);
    return 0;
}
