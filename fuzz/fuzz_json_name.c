/*
 * fuzz_json_name.c — "json:{...}" image names (img/json_name.c): the
 * input, after "json:", is opened read-only and metadata-only as a
 * user-typed name, from the folder the fuzzer runs in (the repository's
 * top: the seeds name its Makefile), with every '/' cut out of the input
 * so no name leaves that folder; nothing is written.  Oracles: a failed
 * open names its reason; an open image has a name and a format, and
 * closes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz.h"
#include "kimg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    char *s = malloc(size + 6);
    if (!s)
        return 0;
    memcpy(s, "json:", 5);
    size_t n = 5;
    for (size_t i = 0; i < size; i++) {
        /* no way out of the folder: no '/' at all */
        if (data[i] == '/' || data[i] == '\0')
            continue;
        s[n++] = (char)data[i];
    }
    s[n] = '\0';
    struct kimg *img = NULL;
    kimg_clear_error();
    int r = kimg_open(&img, s, NULL, KIMG_OPEN_NO_IO | KIMG_OPEN_NO_LOCK);
    if (r < 0) {
        if (r != -12 && !kimg_last_error())
            abort();
    } else {
        if (!kimg_filename(img) || !kimg_format_name(img))
            abort();
        (void)kimg_size(img);
        kimg_close(img);
    }
    kimg_clear_error();
    free(s);
    return 0;
}
