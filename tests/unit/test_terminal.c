/*
 * test_terminal.c — kimg_print_for_terminal, the one rule for printing
 * names from images and XML files: C0, DEL and C1 controls (raw or as
 * UTF-8) become \xHH; valid UTF-8 and other bytes pass as they are.
 */
#include <stdlib.h>
#include <string.h>
#include "tests/unit/tap.h"
#include "kimg.h"

/* What kimg_print_for_terminal writes for S (malloc'd); *W gets its count. */
static char *escaped(const char *s, size_t *w)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    *w = kimg_print_for_terminal(f, s);
    fclose(f);
    return buf;
}

static void check(const char *in, const char *want, const char *name)
{
    size_t w;
    char *got = escaped(in, &w);
    is_str(got, want, name);
    ok(w == strlen(want), "%s: the count is what was written", name);
    free(got);
}

int main(void)
{
    plan(22);
    check("plain name.qcow2", "plain name.qcow2", "printable ASCII as is");
    check("back\\slash \"q\"", "back\\slash \"q\"", "backslash and quotes as is");
    check("a\nb\rc\td", "a\\x0ab\\x0dc\\x09d", "newline, CR, tab escaped");
    check("\x1b[31mred", "\\x1b[31mred", "ESC escaped");
    check("\x01\x1f\x7f", "\\x01\\x1f\\x7f", "other C0 and DEL escaped");
    check("csi\xc2\x9b" "x", "csi\\xc2\\x9bx", "C1 as UTF-8 (U+009B) escaped");
    check("raw\x9b" "x\x80", "raw\\x9bx\\x80", "a stray C1 byte escaped");
    check("utf8-\xc3\xa9-\xe2\x82\xac-\xf0\x9f\x98\x80", "utf8-\xc3\xa9-\xe2\x82\xac-\xf0\x9f\x98\x80",
          "valid UTF-8 as is");
    check("nbsp\xc2\xa0", "nbsp\xc2\xa0", "U+00A0 is not a control");
    check("bad\xff\xfe" "utf8\xc3", "bad\xff\xfe" "utf8\xc3", "invalid bytes >= 0xa0 as is");
    check("over\xc0\x9b", "over\xc0\\x9b", "an overlong form's C1 byte escaped");
    return done_testing();
}
