/*
 * error.c — the thread-local error message.  The first message set since
 * the last kimg_clear_error() wins, so the root cause survives the callers
 * that add context on the way up.
 */
#include <stdio.h>
#include <stdarg.h>
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

const char *kimg_last_error(void)
{
    return err_set ? err_msg : NULL;
}

void kimg_clear_error(void)
{
    err_set = 0;
    err_msg[0] = '\0';
}
