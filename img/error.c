/*
 * error.c — the thread-local error message.  The first message set since
 * the last kimg_clear_error() wins, so the root cause survives the callers
 * that add context on the way up.
 */
#include <stdio.h>
#include <stdarg.h>
#include <string.h>
#include "kimg.h"

static _Thread_local char err_msg[1024];
static _Thread_local int err_set;

static void set_error(const char *fmt, va_list ap)
{
    if (err_set)
        return;
    vsnprintf(err_msg, sizeof(err_msg), fmt, ap);
    err_set = 1;
}

void kimg_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_error(fmt, ap);
    va_end(ap);
}

int kimg_fail(int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_error(fmt, ap);
    va_end(ap);
    return err;
}

/* qemu's error_prepend(): context in front of the message already set
 * ("Could not open backing file: " + the reason).  Without a message,
 * nothing: the caller's own kimg_error() comes next. */
void kimg_error_prefix(const char *fmt, ...)
{
    char prefix[256];
    va_list ap;
    if (!err_set)
        return;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    size_t pl = strlen(prefix), ol = strlen(err_msg);
    if (pl + ol >= sizeof(err_msg))
        ol = sizeof(err_msg) - 1 - pl;      /* the end of the reason is cut */
    memmove(err_msg + pl, err_msg, ol);
    memcpy(err_msg, prefix, pl);
    err_msg[pl + ol] = '\0';
}

const char *kimg_last_error(void)
{
    return err_set ? err_msg : NULL;
}

void kimg_clear_error(void)
{
    err_set = 0;
    err_msg[0] = '\0';
}
