/*
 * fuzz_json_name.c — "json:{...}" image names (img/json_name.c): the
 * input, after "json:", is opened read-only and metadata-only as a
 * user-typed name.  The files it names are those of an empty folder
 * made for the run (the harness changes into it and cuts every '/' out of
 * the input, so nothing outside it is named): every open fails or opens
 * the one file the harness wrote, "r" (4 KiB of bytes).  Oracles: a
 * failed open names its reason; an open image has a name and a format,
 * and closes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "fuzz.h"
#include "kimg.h"

static char dir[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    strcpy(dir, "/tmp/kimg-fuzz-json-XXXXXX");
    if (!mkdtemp(dir) || chdir(dir) != 0)
        abort();
    FILE *f = fopen("r", "w");
    if (!f)
        abort();
    for (int i = 0; i < 4096; i++)
        fputc(i & 0xff, f);
    fclose(f);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dir[0])
        LLVMFuzzerInitialize(NULL, NULL);
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
