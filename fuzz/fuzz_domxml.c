/*
 * fuzz_domxml.c — the clone module's domain XML parser on arbitrary bytes:
 * parse (no DTD, no entities, caps), apply every clone edit (name, UUID,
 * MACs, unique devices, disk, nvram and serial log paths, backing
 * stores), serialise,
 * and check that the output parses again as a domain with the new name.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz.h"
#include "kimg.h"
#include "clone/clone.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct clone_dom *dom;
    if (size > CLONE_MAX_XML_BYTES + 1)
        return 0;
    if (clone_dom_parse_memory(&dom, (const char *)data, size, "fuzz.xml") < 0) {
        if (!kimg_last_error())
            abort();   /* every refusal names its reason */
        kimg_clear_error();
        return 0;
    }
    struct clone_unique_notes notes;
    int r = clone_dom_set_name(dom, "fuzz-clone");
    if (r == 0)
        r = clone_dom_set_uuid(dom, "4dea22b3-1d52-d8f3-2516-782e98ab3fa0");
    if (r == 0)
        r = clone_dom_make_unique(dom, "43dc0cf8-809b-4adb-9bea-a9abb5f3d90e", &notes);
    for (int i = 0; r == 0 && i < dom->nb_nics; i++)
        r = clone_dom_set_mac(dom, i, "52:54:00:12:34:56");
    for (int i = 0; r == 0 && i < dom->nb_disks; i++) {
        switch (i % 4) {
        case 0: r = clone_dom_set_disk(dom, i, "/v/a.qcow2", false, NULL, true, NULL, NULL); break;
        case 1: r = clone_dom_set_disk(dom, i, "/v/b.qcow2", false, "qcow2", false,
                                       "/v/orig.img", "raw"); break;
        case 2: r = clone_dom_set_disk(dom, i, "/dev/sdz", true, NULL, true, NULL, NULL); break;
        default: r = clone_dom_set_disk(dom, i, "/v/d&<'\".img", false, NULL, false, NULL, NULL);
        }
    }
    if (r == 0 && dom->nvram)
        r = clone_dom_set_nvram(dom, "/v/nvram/fuzz-clone_VARS.fd");
    /* serial and console log files (virt-clone 5.0), the TPM probe */
    (void)clone_dom_has_emulated_tpm(dom);
    int nlogs = r == 0 ? clone_dom_nb_logs(dom) : 0;
    for (int i = 0; r == 0 && i < nlogs; i++) {
        const char *old = clone_dom_log_path(dom, i);
        if (old && strlen(old) > CLONE_MAX_XML_BYTES)
            abort();
        r = clone_dom_set_log_path(dom, i, "/v/log/fuzz-clone.log");
    }
    char *out = NULL;
    size_t len = 0;
    if (r == 0)
        r = clone_dom_serialize(dom, &out, &len);
    if (r == 0 && len <= CLONE_MAX_XML_BYTES) {
        struct clone_dom *again;
        if (clone_dom_parse_memory(&again, out, len, "fuzz-out.xml") < 0) {
            /* the rewrite must produce a document kimg itself accepts */
            fprintf(stderr, "re-parse failed: %s\n", kimg_last_error());
            abort();
        }
        if (strcmp(again->name, "fuzz-clone") || again->nb_disks != dom->nb_disks ||
            again->nb_nics != dom->nb_nics)
            abort();
        clone_dom_free(again);
    }
    kimg_clear_error();
    free(out);
    clone_dom_free(dom);
    return 0;
}
