/*
 * convert-and-checksum.c — libkimg from the outside: open an image (any
 * format kimg reads, probed), copy its content into a new qcow2 image and
 * print the copy's checksum as `kimg checksum` prints it (sha256, blkhash).
 * Uses only the installed headers:
 *     cc convert-and-checksum.c $(pkg-config --cflags --libs kimg)
 *     ./a.out SOURCE TARGET.qcow2
 */
#include <stdio.h>
#include <kimg.h>         /* the whole public API (kimg/convert.h, kimg/checksum.h, ...) */

static int fail(const char *name)
{
    const char *why = kimg_last_error();
    fprintf(stderr, "%s: %s\n", name, why ? why : "failed");
    return 1;
}

int main(int argc, char **argv)
{
    struct kimg *src, *dst;
    if (argc != 3) {
        fprintf(stderr, "usage: %s SOURCE TARGET.qcow2\n", argv[0]);
        return 2;
    }
    if (kimg_open(&src, argv[1], NULL, 0) < 0)
        return fail(argv[1]);
    struct kimg_create_args create = {
        .filename = argv[2], .format = "qcow2", .size = kimg_size(src), .size_given = true,
    };
    if (kimg_create(&create) < 0 || kimg_open(&dst, argv[2], "qcow2", KIMG_OPEN_RDWR) < 0)
        return fail(argv[2]);
    /* a new image reads as zeros; zero runs of 4 KiB or more stay holes */
    struct kimg_convert copy = {
        .src = &src, .nb_src = 1, .dst = dst, .sparse_size = 4096, .target_is_zero = true,
    };
    int ret = kimg_convert_run(&copy);
    kimg_close(src);
    if (kimg_close(dst) < 0 || ret < 0)
        return fail(argv[2]);

    unsigned char md[KIMG_CHECKSUM_MAX_MD_SIZE];
    unsigned md_len;
    struct kimg_checksum sum = { .algorithm = KIMG_CHECKSUM_DEFAULT_ALGORITHM };
    if (kimg_open(&dst, argv[2], "qcow2", 0) < 0 || kimg_checksum_run(dst, &sum, md, &md_len) < 0)
        return fail(argv[2]);
    kimg_close(dst);
    for (unsigned i = 0; i < md_len; i++)
        printf("%02x", md[i]);
    printf("  %s\n", argv[2]);
    return 0;
}
