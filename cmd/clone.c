/*
 * clone.c — `kimg clone`: virt-clone's options (and kimg's --linked,
 * --report-json, --output-xml, batches: repeatable -n, --count,
 * --keep-going; --copy-tpm-state, --tpm-state-dir) parsed into a clone_opts for the clone
 * module (clone/run.c), which works offline on a domain XML file.
 */
#include <stdlib.h>
#include <string.h>
#include "cmd.h"
#include "../clone/clone.h"

int cmd_clone(int argc, char **argv)
{
    enum {
        O_ORIGINAL_XML = 400, O_AUTO_CLONE, O_NONSPARSE, O_SKIP_COPY, O_FORCE_COPY,
        O_PRESERVE, O_NVRAM, O_REFLINK, O_PRINT_XML, O_LINKED, O_REPORT_JSON, O_OUTPUT_XML,
        O_CONNECT, O_IGNORED, O_IGNORED_ARG, O_COUNT, O_KEEP_GOING, O_COPY_TPM, O_TPM_DIR,
    };
    static const char optstring[] = ":hn:f:m:u:o:qd";
    static const struct option longopts[] = {
        { "original-xml", required_argument, NULL, O_ORIGINAL_XML },
        { "original", required_argument, NULL, 'o' },
        { "name", required_argument, NULL, 'n' },
        { "auto-clone", no_argument, NULL, O_AUTO_CLONE },
        { "file", required_argument, NULL, 'f' },
        { "mac", required_argument, NULL, 'm' },
        { "uuid", required_argument, NULL, 'u' },
        { "nonsparse", no_argument, NULL, O_NONSPARSE },
        { "skip-copy", required_argument, NULL, O_SKIP_COPY },
        { "force-copy", required_argument, NULL, O_FORCE_COPY },
        { "preserve-data", no_argument, NULL, O_PRESERVE },
        { "preserve", no_argument, NULL, O_PRESERVE },
        { "nvram", required_argument, NULL, O_NVRAM },
        { "reflink", no_argument, NULL, O_REFLINK },
        { "print-xml", no_argument, NULL, O_PRINT_XML },
        { "quiet", no_argument, NULL, 'q' },
        { "linked", no_argument, NULL, O_LINKED },
        { "report-json", required_argument, NULL, O_REPORT_JSON },
        { "output-xml", required_argument, NULL, O_OUTPUT_XML },
        { "count", required_argument, NULL, O_COUNT },
        { "keep-going", no_argument, NULL, O_KEEP_GOING },
        { "copy-tpm-state", no_argument, NULL, O_COPY_TPM },
        { "tpm-state-dir", required_argument, NULL, O_TPM_DIR },
        /* virt-clone options with no meaning offline, accepted for scripts */
        { "connect", required_argument, NULL, O_CONNECT },
        { "check", required_argument, NULL, O_IGNORED_ARG },
        { "replace", no_argument, NULL, O_IGNORED },
        { "debug", no_argument, NULL, 'd' },
        { "force", no_argument, NULL, O_IGNORED },
        { "prompt", no_argument, NULL, O_IGNORED },
        { "noautoconsole", no_argument, NULL, O_IGNORED },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    static const char *const help[] = {
        "--original-xml FILE           the domain XML to clone (virsh dumpxml --inactive)",
        "-o, --original DOMAIN         refused: kimg clone works offline, give --original-xml",
        "-n, --name NAME               name of the new domain (repeatable: a batch;",
        "                              with --count, a template holding {n}, from 1)",
        "--count N                     N clones in one run (-n 'web-{n}', --auto-clone)",
        "--auto-clone                  pick the name (NAME-clone) and the disk names",
        "-f, --file FILE               a new disk path, one per disk in order (repeatable)",
        "-m, --mac MAC                 a new MAC address, one per interface (repeatable)",
        "-u, --uuid UUID               UUID of the new domain (default: random)",
        "--nonsparse                   fully allocate the new disks",
        "--skip-copy TARGET            keep disk TARGET (e.g. vda) shared, not copied",
        "--force-copy TARGET           copy disk TARGET even if read-only or shareable",
        "--preserve-data, --preserve   -f names existing files: keep them, copy nothing",
        "--nvram FILE                  path of the new NVRAM file",
        "--reflink                     copy disks as reflinks (btrfs, XFS)",
        "--linked                      new disks are qcow2 overlays of the originals",
        "--print-xml                   print the new domain XML, copy nothing",
        "--output-xml FILE             write the new domain XML to FILE",
        "--report-json FILE            write what was done as JSON to FILE",
        "--keep-going                  a batch keeps the clones that completed",
        "--copy-tpm-state              copy swtpm's state (the clone shares the TPM identity)",
        "--tpm-state-dir DIR           swtpm's state folder (/var/lib/libvirt/swtpm)",
        "-q, --quiet                   no progress lines",
        "--connect URI, --check OPT, --replace, -d, --debug, --force, --prompt, --noautoconsole",
        "                              virt-clone's options with no offline meaning: accepted",
        "-h, --help                    this help",
        NULL,
    };
    struct clone_opts o = { 0 };
    const char **lists = calloc((size_t)argc * 5 + 5, sizeof(*lists));
    int c, ret = 1;
    if (!lists) {
        fprintf(stderr, "kimg: out of memory\n");
        return 1;
    }
    o.files = lists;
    o.macs = lists + argc + 1;
    o.skip = lists + 2 * (argc + 1);
    o.force = lists + 3 * (argc + 1);
    o.names = lists + 4 * (argc + 1);

    while ((c = getopt_long(argc, argv, optstring, longopts, NULL)) != -1) {
        switch (c) {
        case O_ORIGINAL_XML: o.original_xml = optarg; break;
        case 'n': o.names[o.nb_names++] = optarg; o.name = o.names[0]; break;
        case O_COUNT: {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*optarg < '0' || *optarg > '9' || *end || v < 1 || v > 10000) {
                ret = cmd_usage_error("clone", "--count '%s': give a number of clones, "
                                      "1 to 10000", optarg);
                goto out;
            }
            o.count = (int)v;
            break;
        }
        case O_KEEP_GOING: o.keep_going = true; break;
        case O_COPY_TPM: o.copy_tpm_state = true; break;
        case O_TPM_DIR: o.tpm_state_dir = optarg; break;
        case O_AUTO_CLONE: o.auto_clone = true; break;
        case 'f': o.files[o.nb_files++] = optarg; break;
        case 'm': o.macs[o.nb_macs++] = optarg; break;
        case 'u': o.uuid = optarg; break;
        case O_NONSPARSE: o.nonsparse = true; break;
        case O_SKIP_COPY: o.skip[o.nb_skip++] = optarg; break;
        case O_FORCE_COPY: o.force[o.nb_force++] = optarg; break;
        case O_PRESERVE: o.preserve = true; break;
        case O_NVRAM: o.nvram = optarg; break;
        case O_REFLINK: o.reflink = true; break;
        case O_PRINT_XML: o.print_xml = true; break;
        case 'q': o.quiet = true; break;
        case O_LINKED: o.linked = true; break;
        case O_REPORT_JSON: o.report_json = optarg; break;
        case O_OUTPUT_XML: o.output_xml = optarg; break;
        case O_CONNECT: case O_IGNORED: case O_IGNORED_ARG: case 'd': break;
        case 'o':
            fprintf(stderr, "kimg: --original %s: kimg clone works offline on a domain XML "
                    "file; give --original-xml FILE (virsh dumpxml --inactive %s > FILE)\n",
                    optarg, optarg);
            goto out;
        case 'h': ret = cmd_help("clone", optstring, longopts, help); goto out;
        case ':':
            ret = cmd_usage_error("clone", "clone: option '%s' needs an argument",
                                  argv[optind - 1]);
            goto out;
        default: ret = cmd_bad_option("clone", argv, c); goto out;
        }
    }
    if (optind < argc) {
        ret = cmd_usage_error("clone", "unexpected argument '%s'", argv[optind]);
        goto out;
    }
    /* with --print-xml the XML is the only thing asked for */
    if (o.print_xml)
        o.quiet = true;
    ret = clone_run(&o) < 0 ? cmd_fail(NULL, "clone failed") : 0;
out:
    free(lists);
    return ret;
}
