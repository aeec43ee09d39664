/*
 * check.c — placeholder so the driver links: `check` (and repair) are
 * written separately against qcow2.h; until then the format reports that
 * it has no check (-ENOTSUP, exit 63).  Replace this file wholesale.
 */
#include <errno.h>

#include "qcow2.h"

int qcow2_check(struct kimg *img, struct kimg_check *res, unsigned fix)
{
    (void)img;
    (void)res;
    (void)fix;
    return -ENOTSUP;
}
