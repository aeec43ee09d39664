/*
 * qemu_output.c — which qemu-img's output the kimg command reproduces
 * (kimg_qemu_output, from KIMG_QEMU_OUTPUT).  qemu-img 7.2's by default:
 * Debian 12's, and the key set today's parsers were written against.  A
 * caller written for a newer qemu-img names its version, and gets the
 * output changes that version made to what kimg prints:
 *   8.0  info prints each node's block graph: "children" in JSON (every
 *        child's own info, recursively) and "Child node '/NAME':" blocks
 *        in the human output (kimg_get_children);
 *   8.2  map --output=json adds "compressed" to every entry, and no
 *        longer merges compressed data with other data.
 * Every version from 7.2 on is taken; one past 8.2 gets 8.2's output
 * (later changes to these outputs are not modelled).  The version the
 * command claims under the name qemu-img stays 7.2.0 (cmd/main.c).
 */
#include <errno.h>
#include <stdlib.h>
#include "kimg.h"
#include "internal.h"
#include "tunables.h"

/* "MAJOR.MINOR" or "MAJOR.MINOR.MICRO", plain decimal numbers. */
static int parse(const char *s)
{
    long part[3] = { 0, 0, 0 };
    int n = 0;
    for (;;) {
        if (*s < '0' || *s > '9' || n == 3)
            return -EINVAL;
        char *end;
        part[n++] = strtol(s, &end, 10);
        if (end - s > 3)
            return -EINVAL;
        s = end;
        if (!*s)
            break;
        if (*s++ != '.')
            return -EINVAL;
    }
    if (n < 2 || part[1] > 99)
        return -EINVAL;
    int v = (int)(part[0] * 100 + part[1]);
    return v < 702 ? -EINVAL : v;
}

int kimg_qemu_output(void)
{
    const char *v = kimg_tunables()->qemu_output;
    int gen = v ? parse(v) : 702;
    if (gen < 0)
        return kimg_fail(gen, "KIMG_QEMU_OUTPUT=%s: not a QEMU version from 7.2 on "
                         "(such as 7.2 or 8.2)", v);
    return gen;
}
