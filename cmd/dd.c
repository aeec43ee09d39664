/*
 * dd.c — `kimg dd`: qemu-img 7.2's dd (bs=, count=, skip=, if=, of=, -f,
 * -O, -U, --image-opts) with Proxmox's additions its qemu-img carries and
 * qemu-server passes (EFI variable disks, cloud-init ISOs): -n (write into
 * the existing OF), -l SNAPSHOT, osize= (the output's size), isize= (the
 * input's size; isize=0 reads standard input to its end), standard input
 * when if= is missing and standard output when of= is missing (raw only),
 * also when if=/of= name our standard input/output and it is a pipe.
 *
 * Sizes as qemu-img computes them: the input's size, or count*bs when
 * smaller (count counts from the input's start, skip included), less
 * skip*bs; osize= replaces it.  bs= only shapes those sums here: data
 * moves in pieces of at most 1 MiB (qemu-img allocates bs bytes, up to
 * 2 GiB), and a new output is written whole or not at all, without the
 * zeros it already reads as (qemu-img writes them).  A short read from a
 * pipe is completed before it is written (Proxmox's loop writes a short
 * piece and then skips past the rest).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cmd.h"
#include "kimg/output.h"

#define PIECE (1u << 20)
#define BS_MAX 2147483647ULL

struct dd_args {
    uint64_t bs, count, skip, osize, isize;
    bool has_count, has_skip, has_osize, has_isize;
    const char *in, *out;
};

static int bad_num(const char *what, const char *arg, bool range)
{
    if (range)
        cmd_error("Invalid %s specified. Must be between 1 and %llu.", what, BS_MAX);
    else
        cmd_error("Invalid %s specified. You may use k, M, G, T, P or E suffixes for "
                  "kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.", what);
    (void)arg;
    return -1;
}

static int parse_operand(struct dd_args *a, const char *arg)
{
    const char *eq = strchr(arg, '=');
    if (!eq) {
        cmd_error("unrecognized operand %s", arg);
        return -1;
    }
    size_t kl = (size_t)(eq - arg);
    const char *v = eq + 1;
    uint64_t n = 0;
    bool num = true;
#define KEY(k) (kl == strlen(k) && !strncmp(arg, k, kl))
    if (KEY("if")) {
        a->in = v;
        return 0;
    }
    if (KEY("of")) {
        a->out = v;
        return 0;
    }
    if (!KEY("bs") && !KEY("count") && !KEY("skip") && !KEY("osize") && !KEY("isize")) {
        cmd_error("unrecognized operand %s", arg);
        return -1;
    }
    if (v[0] == '-' || kimg_parse_size(v, &n) < 0 || n > (uint64_t)INT64_MAX) {
        kimg_clear_error();
        num = false;
    }
    if (KEY("bs")) {
        if (!num)
            return bad_num("bs", v, false);
        if (n < 1 || n > BS_MAX)
            return bad_num("bs", v, true);
        a->bs = n;
    } else if (KEY("count")) {
        if (!num)
            return bad_num("count", v, false);
        a->count = n;
        a->has_count = true;
    } else if (KEY("skip")) {
        if (!num)
            return bad_num("skip", v, false);
        a->skip = n;
        a->has_skip = true;
    } else if (KEY("osize")) {
        if (!num)
            return bad_num("osize", v, false);
        a->osize = n;
        a->has_osize = true;
    } else {
        if (!num)
            return bad_num("isize", v, false);
        a->isize = n;
        a->has_isize = true;
    }
#undef KEY
    return 0;
}

/* Fill BUF with LEN bytes of standard input; *GOT what came before its end. */
static int read_stdin(uint8_t *buf, size_t len, size_t *got)
{
    *got = 0;
    while (*got < len) {
        ssize_t r = read(STDIN_FILENO, buf + *got, len - *got);
        if (r == 0)
            break;
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        *got += (size_t)r;
    }
    return 0;
}

static int write_stdout(const uint8_t *buf, size_t len)
{
    while (len) {
        ssize_t w = write(STDOUT_FILENO, buf, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

/* NAME is a pipe that is our descriptor FD (of=/dev/stdout, if=/dev/stdin
 * or /proc/self/fd/N on a pipe): used as standard output or input, in
 * order, as if the operand were missing.  qemu-img 7.2 cannot (if= is
 * refused, "'file' driver requires ... a regular file"; of= exits 0
 * having written nothing into the pipe). */
static bool is_our_pipe(const char *name, int fd)
{
    struct stat a, b;
    return name && stat(name, &a) == 0 && S_ISFIFO(a.st_mode) && fstat(fd, &b) == 0 &&
           a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    return n == 0 || (p[0] == 0 && !memcmp(p, p + 1, n - 1));
}

/* The copy loop: input bytes [in_pos, end) to output offset 0 on. */
static int copy(struct kimg *src, struct kimg *dst, uint64_t in_pos, uint64_t end,
                bool skip_zeros, bool eof_ok)
{
    uint8_t *buf = kimg_alloc_aligned(PIECE);
    uint64_t out_pos = 0;
    int ret = 0;
    if (!buf)
        return cmd_error("out of memory"), 1;
    while (in_pos < end && ret == 0) {
        size_t n = end - in_pos < PIECE ? (size_t)(end - in_pos) : PIECE, got = n;
        if (src) {
            if (kimg_read(src, buf, in_pos, n) < 0) {
                const char *m = kimg_last_error();
                cmd_error("error while reading from input image file: %s", m ? m : "I/O error");
                ret = 1;
                break;
            }
        } else {
            int r = read_stdin(buf, n, &got);
            if (r < 0) {
                cmd_error("error while reading from input image file: %s", strerror(-r));
                ret = 1;
                break;
            }
            if (got < n && !eof_ok) {
                cmd_error("Input ended unexpectedly");
                ret = 1;
                break;
            }
        }
        if (got) {
            int r = 0;
            if (!dst)
                r = write_stdout(buf, got);
            else if (!(skip_zeros && all_zero(buf, got)) &&
                     kimg_write(dst, buf, out_pos, got) < 0)
                r = -EIO;
            if (r < 0) {
                const char *m = dst ? kimg_last_error() : strerror(-r);
                cmd_error("error while writing to output image file: %s", m ? m : "I/O error");
                ret = 1;
                break;
            }
        }
        if (got < n)
            break;      /* isize=0: the input's end */
        in_pos += n;
        out_pos += n;
    }
    free(buf);
    return ret;
}

int cmd_dd(int argc, char **argv)
{
    /* QEMU 10.1's long names; --snapshot and --no-create, kimg's names
     * for Proxmox's -l and -n, are convert's */
    static const char optstring[] = ":hf:O:l:Un";
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "format", required_argument, NULL, 'f' },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "output-format", required_argument, NULL, 'O' },
        { "force-share", no_argument, NULL, 'U' },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "snapshot", required_argument, NULL, 'l' },
        { "no-create", no_argument, NULL, 'n' },
        { "untrusted", no_argument, NULL, OPT_UNTRUSTED },
        { NULL, 0, NULL, 0 },
    };
    static const char *const help[] = {
        "-f, --format FMT              format of the input (default: probed)",
        "--image-opts                  the input is an option string (key=value,...)",
        "-O, --output-format FMT       format of the output (default: raw)",
        "-U, --force-share             open the input without taking its locks",
        "--object OBJDEF               a secret for encrypted images",
        "-l, --snapshot SNAPSHOT       read this internal snapshot of the input",
        "-n, --no-create               write into an existing output",
        "--untrusted                   treat the input as hostile (no backing files)",
        "bs=, count=, skip=, if=, of=, isize=, osize=  operands as in the usage line",
        "-h, --help                    this help",
        NULL,
    };
    struct dd_args a = { .bs = 512 };
    const char *fmt = NULL, *out_fmt = "raw", *snapshot = NULL;
    bool image_opts = false, no_create = false;
    unsigned flags = 0;
    int c;

    while ((c = getopt_long(argc, argv, optstring, longopts, NULL)) != -1) {
        switch (c) {
        case 'h': return cmd_help("dd", optstring, longopts, help);
        case 'f': fmt = optarg; break;
        case 'O': out_fmt = optarg; break;
        case 'l':
            if (cmd_snapshot_load_opt(NULL, optarg, 1) < 0)
                return 1;
            snapshot = optarg;
            break;
        case 'n': no_create = true; break;
        case 'U': flags |= KIMG_OPEN_SHARE; break;
        case OPT_UNTRUSTED: flags |= KIMG_OPEN_UNTRUSTED; break;
        case OPT_IMAGE_OPTS: image_opts = true; break;
        case OPT_OBJECT:
            if (cmd_object(optarg))
                return 1;
            break;
        default: return cmd_bad_option("dd", argv, c);
        }
    }
    for (int i = optind; i < argc; i++)
        if (parse_operand(&a, argv[i]) < 0)
            return 1;
    if (is_our_pipe(a.in, STDIN_FILENO))
        a.in = NULL;
    if (is_our_pipe(a.out, STDOUT_FILENO))
        a.out = NULL;
    if (!a.in && (!fmt || strcmp(fmt, "raw"))) {
        cmd_error("Input format must be raw when reading from stdin");
        return 1;
    }
    if (!a.out && strcmp(out_fmt, "raw")) {
        cmd_error("Output format must be raw when writing to stdout");
        return 1;
    }

    struct kimg *src = NULL, *dst = NULL;
    struct kimg_output out = { 0 };
    int ret = 1;
    uint64_t size;
    if (a.in) {
        src = cmd_open_image(a.in, image_opts, fmt, flags, 0);
        if (!src)
            return 1;
        if (snapshot && cmd_snapshot_load_opt(src, snapshot, 1) < 0)
            goto done;
    }
    if (a.has_osize)
        size = a.osize;
    else if (src)
        size = kimg_size(src);
    else if (a.has_count && a.count <= UINT64_MAX / a.bs)
        size = a.count * a.bs;
    else {
        cmd_error("Output size must be known when reading from stdin");
        goto done;
    }
    if (!a.has_osize && a.has_count && a.count <= (uint64_t)INT64_MAX / a.bs &&
        a.count * a.bs < size)
        size = a.count * a.bs;
    uint64_t in_pos = 0;
    bool skip_past = a.has_skip && (a.skip > (uint64_t)INT64_MAX / a.bs || size < a.skip * a.bs);
    uint64_t out_size = a.has_osize ? size : skip_past ? 0 : size - (a.has_skip ? a.skip * a.bs : 0);

    if (a.out) {
        const struct kimg_driver *drv = kimg_find_driver(out_fmt);
        if (!drv) {
            cmd_error("Unknown file format");
            goto done;
        }
        if (!no_create) {
            int r = kimg_output_begin(&out, a.out, KIMG_OUTPUT_REPLACE);
            if (r < 0) {
                kimg_clear_error();
                cmd_error("%s: error while creating output image: Could not create '%s': %s",
                          a.out, a.out, strerror(-r));
                goto done;
            }
            struct kimg_create_args ca = { .filename = out.path, .format = out_fmt,
                                           .size = out_size, .size_given = true };
            if (kimg_create(&ca) < 0) {
                const char *why = kimg_last_error();
                cmd_error("%s: error while creating output image: %s", a.out,
                          why ? why : "cannot create the image");
                kimg_clear_error();
                goto done;
            }
        }
        const char *path = no_create ? a.out : out.path;
        if (kimg_open(&dst, path, out_fmt, KIMG_OPEN_RDWR) < 0) {
            cmd_fail(a.out, "cannot open the output");
            dst = NULL;
            goto done;
        }
    }
    if (skip_past) {
        /* as dd(1) and qemu-img: an empty output and a message, exit 0 */
        cmd_error("%s: cannot skip to specified offset", a.in ? a.in : "stdin");
        in_pos = size;
    } else if (a.has_skip) {
        in_pos = a.skip * a.bs;
        if (!src) {
            /* standard input: read past what is skipped (a page-aligned
             * buffer, as every buffer the kernel copies into); an input
             * that ends inside the skipped part is the same error as one
             * that ends inside the copied part */
            uint8_t *sink = kimg_alloc_aligned(PIECE);
            if (!sink) {
                cmd_error("out of memory");
                goto done;
            }
            for (uint64_t left = in_pos; left;) {
                size_t got, n = left < PIECE ? (size_t)left : PIECE;
                int r = read_stdin(sink, n, &got);
                if (r < 0 || (got < n && !(a.has_isize && a.isize == 0))) {
                    cmd_error(r < 0 ? "error while reading from input image file: %s"
                                    : "Input ended unexpectedly%s", r < 0 ? strerror(-r) : "");
                    free(sink);
                    goto done;
                }
                left -= n;
                if (got < n)
                    break;
            }
            free(sink);
        }
    }
    uint64_t end = a.has_isize && a.isize > 0 ? a.isize : size;
    bool fresh = a.out && !no_create && kimg_zero_init(dst);
    ret = copy(src, dst, in_pos, end, fresh, a.has_isize && a.isize == 0);
    if (dst) {
        if (kimg_close(dst) < 0 && ret == 0)
            ret = cmd_fail(a.out, "error while writing the image");
        dst = NULL;
    }
    if (ret == 0 && a.out && !no_create && kimg_output_commit(&out, true) < 0)
        ret = cmd_fail(a.out, "cannot rename the finished image into place");
done:
    if (dst)
        kimg_close(dst);
    kimg_output_abort(&out);
    if (src)
        kimg_close(src);
    return ret;
}
