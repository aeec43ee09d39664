/*
 * checksum.c — `kimg checksum`: a digest of each image's guest-visible
 * content (blkhash's block construction, or --raw-digest), printed as
 * sha256sum does ("DIGEST  FILE") or as JSON.  Progress (-p) goes to stderr
 * because stdout carries the digests.  Exit 0 if every file was digested.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include "cmd.h"

static void print_progress(void *opaque, uint64_t done, uint64_t total)
{
    double pct = total ? (double)done * 100.0 / (double)total : 100.0;
    fprintf(stderr, "    (%3.2f/100%%)\r", pct);
    fflush(stderr);
}

static void print_help(void)
{
    printf("\n"
        "Print a digest of each image's guest-visible content: the same for a raw\n"
        "image, its qcow2, a compressed qcow2 or an overlay chain with that content.\n"
        "Default: the block-based construction of blkhash/blksum:\n"
        "  H( H(block 0) || ... || H(block n-1) || 64-bit little-endian length )\n"
        "--raw-digest: the digest 'qemu-img convert -O raw' piped to sha256sum gives.\n"
        "A raw file whose length is not a multiple of 512 is digested as qemu shows it,\n"
        "its length rounded up with zeros: blksum and nbdcopy --blkhash, which digest the\n"
        "file's own length, give another digest for such a file.\n"
        "Output: 'DIGEST  FILE' per line, as sha256sum prints it.\n");
}

/* sha256sum's line: names with a backslash or newline are escaped and the
 * line starts with a backslash (coreutils' convention). */
static void print_line(const char *hex, const char *name)
{
    bool esc = strpbrk(name, "\\\n") != NULL;
    if (esc)
        putchar('\\');
    printf("%s  ", hex);
    for (const char *p = name; *p; p++) {
        if (esc && *p == '\\')
            fputs("\\\\", stdout);
        else if (esc && *p == '\n')
            fputs("\\n", stdout);
        else
            putchar(*p);
    }
    putchar('\n');
}

int cmd_checksum(int argc, char **argv)
{
    enum { OPT_BLOCK_SIZE = 400, OPT_THREADS, OPT_RAW_DIGEST };
    static const char optstring[] = ":hf:Ua:p";
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "format", required_argument, NULL, 'f' },
        { "force-share", no_argument, NULL, 'U' },
        { "untrusted", no_argument, NULL, OPT_UNTRUSTED },
        { "output", required_argument, NULL, OPT_OUTPUT },
        { "algorithm", required_argument, NULL, 'a' },
        { "block-size", required_argument, NULL, OPT_BLOCK_SIZE },
        { "threads", required_argument, NULL, OPT_THREADS },
        { "raw-digest", no_argument, NULL, OPT_RAW_DIGEST },
        { "progress", no_argument, NULL, 'p' },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "disk", required_argument, NULL, OPT_DISK },
        { NULL, 0, NULL, 0 },
    };
    static const char *const help[] = {
        "-f, --format FMT              format of every FILE (default: probed)",
        "-U, --force-share             open without taking the images' locks",
        "--untrusted                   treat the files as hostile (no backing files)",
        "--output human|json           'DIGEST  FILE' lines, or a JSON array",
        "-a, --algorithm ALGORITHM     any OpenSSL digest (default sha256)",
        "--block-size N                block size (default 64k; another gives another digest)",
        "--threads N                   hash threads (default: online CPUs; same digest)",
        "--raw-digest                  the plain digest of the raw content instead",
        "-p, --progress                progress, on stderr (stdout carries the digests)",
        "--object OBJDEF               a secret for encrypted images",
        "--image-opts                  each FILE is an option string (key=value,...)",
        "--disk N                      the Nth disk of an OVA archive (default: the first)",
        "-h, --help                    this help",
        NULL,
    };
    const char *fmt = NULL;
    enum output_format output = OUTPUT_HUMAN;
    struct kimg_checksum ck = { .algorithm = KIMG_CHECKSUM_DEFAULT_ALGORITHM };
    unsigned flags = 0, disk = 0;
    bool progress = false;
    bool image_opts = false;
    uint64_t v;
    int c;

    while ((c = getopt_long(argc, argv, optstring, longopts, NULL)) != -1) {
        switch (c) {
        case 'f': fmt = optarg; break;
        case 'U': flags |= KIMG_OPEN_SHARE; break;
        case OPT_UNTRUSTED: flags |= KIMG_OPEN_UNTRUSTED; break;
        case 'a': ck.algorithm = optarg; break;
        case 'p': progress = true; break;
        case OPT_RAW_DIGEST: ck.raw = true; break;
        case OPT_OUTPUT:
            if (parse_output_format(optarg, &output) < 0)
                return 1;
            break;
        case OPT_BLOCK_SIZE:
            if (kimg_parse_size(optarg, &v) < 0 || v < KIMG_CHECKSUM_MIN_BLOCK_SIZE ||
                v > KIMG_CHECKSUM_MAX_BLOCK_SIZE || v % KIMG_CHECKSUM_MIN_BLOCK_SIZE) {
                fprintf(stderr, "kimg: Invalid block size '%.64s': "
                        "a multiple of 512 from 512 to 64M\n", optarg);
                return 1;
            }
            ck.block_size = v;
            break;
        case OPT_THREADS: {
            char *end;
            errno = 0;
            long n = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end || n < 1 || n > KIMG_CHECKSUM_MAX_THREADS) {
                fprintf(stderr, "kimg: Invalid number of threads '%.64s': "
                        "from 1 to %d\n", optarg, KIMG_CHECKSUM_MAX_THREADS);
                return 1;
            }
            ck.threads = (int)n;
            break;
        }
        case OPT_DISK:
            if (cmd_parse_disk(optarg, &disk) < 0)
                return 1;
            break;
        case 'h':
            cmd_help("checksum", optstring, longopts, help);
            print_help();
            return 0;
        case OPT_OBJECT:
            if (cmd_object(optarg))
                return 1;
            break;
        case OPT_IMAGE_OPTS: image_opts = true; break;
        default:
            return cmd_bad_option("checksum", argv, c);
        }
    }
    if (optind >= argc)
        return cmd_usage_error("checksum", "Expecting one or more image file names");
    if (kimg_checksum_check_algorithm(ck.algorithm) < 0)
        return cmd_fail(NULL, NULL);
    if (progress)
        ck.progress = print_progress;

    struct kimg_jv *arr = output == OUTPUT_JSON ? kimg_jv_array() : NULL;
    int status = 0;
    for (int i = optind; i < argc; i++) {
        const char *name = argv[i];
        unsigned char md[KIMG_CHECKSUM_MAX_MD_SIZE];
        unsigned md_len = 0;
        struct kimg *img = cmd_open_image(name, image_opts, fmt, flags, disk);
        if (!img) {
            status = 1;
            continue;
        }
        int ret = kimg_checksum_run(img, &ck, md, &md_len);
        if (progress) {
            if (ret == 0)
                print_progress(NULL, 1, 1);
            fputc('\n', stderr);
        }
        if (ret < 0) {
            cmd_fail(name, strerror(-ret));
            kimg_close(img);
            status = 1;
            continue;
        }
        char hex[2 * KIMG_CHECKSUM_MAX_MD_SIZE + 1];
        for (unsigned j = 0; j < md_len; j++)
            snprintf(hex + 2 * j, 3, "%02x", md[j]);
        if (arr) {
            struct kimg_jv *o = kimg_jv_add(arr, NULL, kimg_jv_object());
            kimg_jv_add_str(o, "filename", name);
            kimg_jv_add_str(o, "format", kimg_format_name(img));
            kimg_jv_add_uint(o, "virtual-size", kimg_size(img));
            kimg_jv_add_str(o, "algorithm", ck.algorithm);
            kimg_jv_add_str(o, "construction", ck.raw ? "raw" : "blkhash");
            if (!ck.raw)
                kimg_jv_add_uint(o, "block-size", ck.block_size ? ck.block_size
                                 : KIMG_CHECKSUM_DEFAULT_BLOCK_SIZE);
            kimg_jv_add_str(o, "digest", hex);
        } else {
            print_line(hex, name);
            fflush(stdout);
        }
        kimg_close(img);
    }
    if (arr) {
        kimg_jv_print(stdout, arr, 0);
        printf("\n");
        kimg_jv_free(arr);
    }
    return status;
}
