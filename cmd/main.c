/*
 * main.c — the `kimg` command: a table of subcommands with qemu-img's
 * names and options (one file per subcommand), --help, --version and
 * --formats.
 *
 * Run under the name `qemu-img` (argv[0]'s last component, e.g. through a
 * symlink), --version prints "qemu-img version 7.2.0 (kimg X.Y.Z)" first:
 * callers that parse qemu-img's version (OpenStack cinder's
 * "qemu-img version ([0-9\.]*)") read 7.2.0,
 * the qemu-img whose JSON, messages and exit codes kimg reproduces; kimg
 * also takes QEMU 10.1's option spellings, but claiming 10.1 would promise
 * 10.1's output.  KIMG_QEMU_OUTPUT=8.0 or 8.2 asks for the two newer
 * output changes kimg models (info's "children", map's "compressed":
 * img/qemu_output.c); the claimed version stays 7.2.0 even then, as the
 * rest of the output (messages, other keys) is still 7.2's.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "cmd.h"

#define KIMG_VERSION "0.1.0"
/* the qemu-img version claimed under the name qemu-img (see above) */
#define QEMU_IMG_COMPAT_VERSION "7.2.0"

static const struct subcommand subcommands[] = {
    { "create", cmd_create,
      "create [-q] [-f fmt] [-b backing_file [-B|-F backing_fmt]] [-u] [-o options] filename [size]" },
    { "convert", cmd_convert,
      "convert [-f fmt] [-O output_fmt] [-o options] [-c] [-p] [-q] [-n] [-S sparse_size] "
      "[-t cache] [-T src_cache] [-m num] [-W] [-C] [-l snapshot_param] "
      "[-b|-B backing_file [-F backing_fmt]] "
      "[--target-is-zero] [--bitmaps [--skip-broken-bitmaps]] [-U] [--untrusted] [--disk N] "
      "filename [filename2 [...]] "
      "output_filename" },
    { "clone", cmd_clone,
      "clone --original-xml FILE (-n NAME... | -n 'NAME{n}' --count N | --auto-clone [--count N]) "
      "[-f FILE...] [-m MAC...] [--uuid UUID] "
      "[--nonsparse] [--skip-copy TARGET...] [--force-copy TARGET...] [--preserve-data] "
      "[--nvram FILE] [--reflink | --linked] [--print-xml] [--output-xml FILE] "
      "[--report-json FILE] [--keep-going] [--copy-tpm-state [--tpm-state-dir DIR]] [-q]" },
    { "info", cmd_info,
      "info [-f fmt] [-U] [--untrusted] [--output=human|json] [--backing-chain] [--disk N] "
      "filename" },
    { "check", cmd_check,
      "check [-q] [-f fmt] [-U] [--untrusted] [--output=human|json] [-r leaks|all] [--disk N] "
      "filename" },
    { "dd", cmd_dd,
      "dd [--image-opts] [-U] [-f fmt] [-O output_fmt] [-n] [-l snapshot_param] "
      "[bs=block_size] [count=blocks] [skip=blocks] [osize=output_size] [isize=input_size] "
      "[if=input] [of=output]" },
    { "bitmap", cmd_bitmap,
      "bitmap (--merge SOURCE | --add | --remove | --clear | --enable | --disable)... "
      "[-b source_file [-F source_fmt]] [-g granularity] [--object objectdef] "
      "[--image-opts | -f fmt] filename bitmap" },
    { "snapshot", cmd_snapshot,
      "snapshot [-f fmt] [-U] [--untrusted] [-q] [-l | -a snapshot | -c snapshot | -d snapshot] "
      "filename" },
    { "compare", cmd_compare,
      "compare [-f fmt] [-F fmt] [-U] [--untrusted] [-q] [-s] [--disk N] [--disk2 N] "
      "filename1 filename2" },
    { "map", cmd_map,
      "map [-f fmt] [-U] [--untrusted] [--output=human|json] [-s|--start-offset=OFFSET] "
      "[-l|--max-length=LEN] [--disk N] filename" },
    { "rebase", cmd_rebase,
      "rebase [-U] [-q] [-f fmt] [-t cache] [-T src_cache] [-p] [-u] -b backing_file "
      "[-B|-F backing_fmt] filename" },
    { "resize", cmd_resize,
      "resize [-f fmt] [--preallocation=prealloc] [-q] [--shrink] filename [+ | -]size" },
    { "amend", cmd_amend,
      "amend [-p] [-q] [-f fmt] [-t cache] [--force] -o options filename" },
    { "commit", cmd_commit,
      "commit [-q] [-f fmt] [-t cache] [-b base] [-r rate_limit] [-d] [-p] filename" },
    { "checksum", cmd_checksum,
      "checksum [-f fmt] [-U] [--untrusted] [-p] [-a algorithm] [--block-size N] "
      "[--threads N] [--raw-digest] [--output=human|json] [--disk N] filename [filename2 [...]]" },
    { "measure", cmd_measure,
      "measure [--output=human|json] [-O output_fmt] [-o options] [-U] [--untrusted] "
      "(-s|--size N | [-f fmt] [-l snapshot_param] filename)" },
};

#define N_SUBCOMMANDS (sizeof(subcommands) / sizeof(subcommands[0]))

static void usage(FILE *out)
{
    fprintf(out, "kimg version " KIMG_VERSION " — disk image toolkit for KVM/libvirt hosts\n"
                 "usage: kimg [--help | --version] COMMAND [command options]\n\n"
                 "Commands (qemu-img's options and meanings):\n");
    for (size_t i = 0; i < N_SUBCOMMANDS; i++)
        fprintf(out, "  %s\n", subcommands[i].synopsis);
    fprintf(out, "\nSizes take k, M, G, T, P or E suffixes (powers of 1024).\n"
                 "'kimg create -f FMT -o help' lists a format's options.\n"
                 "An OVA archive (a tar with an OVF descriptor) is read in place as one of\n"
                 "its disks: the first, or --disk N (N from 1; compare: --disk2 for the\n"
                 "second file); 'kimg info' lists them all.  -f raw reads the tar itself.\n"
                 "Every command that opens or creates an image takes qemu-img's\n"
                 "--object secret,id=ID,file=PATH; those that take --image-opts in qemu-img\n"
                 "take it (convert: -n --target-image-opts too).\n"
                 "Image names may be NBD URIs (nbd://HOST[:PORT]/EXPORT, nbds://,\n"
                 "nbd+unix:///EXPORT?socket=PATH, qemu's nbd:unix:PATH[:exportname=E]);\n"
                 "a backing file an image names as one is followed only with\n"
                 "--allow-remote-backing (any command); a local backing or data file\n"
                 "named by an image read over NBD only with --allow-nbd-local-backing.\n"
                 "'kimg --formats' lists the image formats (-f, -O, -F), one a line.\n");
}

/* --formats: the driver registry's names, one a line (the bash completion
 * of -f/-O/-F reads them; completion/kimg.bash) */
static void print_format(const struct kimg_driver *drv, void *opaque)
{
    (void)opaque;
    printf("%s\n", kimg_driver_name(drv));
}

/* Output that could not be written is an error, not a silent success
 * (`kimg info --output=json > /dev/full` exits 1 with a message). */
static int finish_stdout(int ret)
{
    if (fflush(stdout) != 0 || ferror(stdout) || fclose(stdout) != 0) {
        fprintf(stderr, "kimg: write error on standard output: %s\n", strerror(errno));
        return ret ? ret : 1;
    }
    return ret;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        cmd_error("Not enough arguments");
        return 1;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return finish_stdout(0);
    }
    if (!strcmp(argv[1], "--formats")) {
        kimg_for_each_driver(print_format, NULL);
        return finish_stdout(0);
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
        const char *base = strrchr(argv[0], '/');
        base = base ? base + 1 : argv[0];
        if (!strcmp(base, "qemu-img"))
            printf("qemu-img version " QEMU_IMG_COMPAT_VERSION " (kimg " KIMG_VERSION ")\n"
                   "kimg, a qemu-img replacement: qemu-img 7.2's output, "
                   "QEMU 10.1's option spellings\n");
        else
            printf("kimg version " KIMG_VERSION "\n");
        return finish_stdout(0);
    }
    /* --allow-remote-backing and --allow-nbd-local-backing, taken by every
     * command (before any "--"): follow backing files that images name as
     * NBD URIs, and local ones that images on NBD exports name (kimg.h) */
    for (int i = 2; i < argc && strcmp(argv[i], "--"); i++) {
        if (!strcmp(argv[i], "--allow-remote-backing"))
            kimg_set_allow_remote_backing(true);
        else if (!strcmp(argv[i], "--allow-nbd-local-backing"))
            kimg_set_allow_nbd_local_backing(true);
        else
            continue;
        memmove(argv + i, argv + i + 1, (size_t)(argc - i) * sizeof(*argv));
        argc--;
        i--;
    }
    if (kimg_qemu_output() < 0)
        return cmd_fail(NULL, "KIMG_QEMU_OUTPUT is not a QEMU version");
    for (size_t i = 0; i < N_SUBCOMMANDS; i++) {
        if (!strcmp(argv[1], subcommands[i].name)) {
            optind = 0;   /* full getopt reset for the subcommand's parsing */
            opterr = 0;   /* the subcommands print their own one-line errors */
            int ret = subcommands[i].run(argc - 1, argv + 1);
            return finish_stdout(ret);
        }
    }
    cmd_error("Command not found: %s", argv[1]);
    return 1;
}

void print_synopsis(const char *name)
{
    for (size_t i = 0; i < N_SUBCOMMANDS; i++)
        if (!strcmp(name, subcommands[i].name))
            printf("usage: kimg %s\n", subcommands[i].synopsis);
}
