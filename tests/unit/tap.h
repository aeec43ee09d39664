/*
 * tap.h — a header-only TAP (Test Anything Protocol) helper for the C unit
 * tests: plan(), ok(), is_u64(), is_str(), diag(), skip_all(), done_testing().
 * Output goes to stdout (diagnostics as "# " lines), read by `prove`.
 * Usage:   int main(void) { plan(2); ok(1, "one"); is_u64(x, 4, "x");
 *                           return done_testing(); }
 */
#ifndef KIMG_TAP_H
#define KIMG_TAP_H

#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tap_planned = -1;    /* -1: no plan printed yet */
static int tap_run;             /* tests run so far */
static int tap_failed;          /* tests failed so far */

static inline void plan(int n)
{
    tap_planned = n;
    printf("1..%d\n", n);
    fflush(stdout);
}

static inline void diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void diag(const char *fmt, ...)
{
    va_list ap;
    fputs("# ", stdout);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}

/* Report one test; returns cond (normalised to 0/1) so callers can chain. */
static inline int ok(int cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline int ok(int cond, const char *fmt, ...)
{
    va_list ap;
    tap_run++;
    if (!cond)
        tap_failed++;
    printf("%sok %d - ", cond ? "" : "not ", tap_run);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
    return cond ? 1 : 0;
}

static inline int is_u64(uint64_t got, uint64_t want, const char *name)
{
    int r = ok(got == want, "%s", name);
    if (!r) {
        diag("       got: %" PRIu64 " (0x%" PRIx64 ")", got, got);
        diag("  expected: %" PRIu64 " (0x%" PRIx64 ")", want, want);
    }
    return r;
}

static inline int is_str(const char *got, const char *want, const char *name)
{
    int same = (got == NULL && want == NULL) ||
               (got != NULL && want != NULL && strcmp(got, want) == 0);
    int r = ok(same, "%s", name);
    if (!r) {
        diag("       got: %s%s%s", got ? "'" : "", got ? got : "NULL", got ? "'" : "");
        diag("  expected: %s%s%s", want ? "'" : "", want ? want : "NULL", want ? "'" : "");
    }
    return r;
}

/* Skip the whole file (e.g. a needed tool is absent) and exit 0. */
static inline void skip_all(const char *reason)
{
    printf("1..0 # SKIP %s\n", reason);
    fflush(stdout);
    exit(0);
}

/* Print the plan if none was given; 0 if every test passed and the plan
 * (if any) matched the count run, else 1.  Use as main's return value. */
static inline int done_testing(void)
{
    if (tap_planned < 0)
        printf("1..%d\n", tap_run);
    else if (tap_planned != tap_run)
        diag("planned %d tests but ran %d", tap_planned, tap_run);
    if (tap_failed)
        diag("failed %d of %d tests", tap_failed, tap_run);
    fflush(stdout);
    return (tap_failed == 0 && (tap_planned < 0 || tap_planned == tap_run)) ? 0 : 1;
}

#endif
