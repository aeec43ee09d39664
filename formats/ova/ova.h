/*
 * ova.h — private to formats/ova: reading OVA archives (a tar holding an
 * OVF descriptor first, an optional manifest, and the disks) in place.
 * OVA is not a format driver: it has no entry in the driver table.  The
 * core (img/image.c) asks img/archive.h's functions, implemented in
 * ova.c, whether a file it probes is an OVA and where the chosen disk
 * lies; the disk is then opened through a window file (img/file_window.c)
 * and probed as an image of its own.  The folder sits with the formats
 * because it parses an untrusted on-disk layout under the same rules
 * (every field checked, allocations capped, a fuzz target).
 *
 * Grouped by file:
 *   ova.c       detection, the archive as a whole: which members are the
 *               descriptor, the manifest and the disks; digest checks
 *   tar.c       the tar walk (ustar, pax and GNU headers)
 *   ovf.c       the OVF descriptor (libxml2): References and DiskSection
 *   manifest.c  the manifest (.mf): SHA1/SHA256/SHA512(name)= lines, and
 *               digests of members (OpenSSL EVP)
 */
#ifndef KIMG_OVA_H
#define KIMG_OVA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "kimg/driver.h"

#define OVA_BLOCK            512u
/* members in one archive; headers (pax and GNU long-name ones included) */
#define OVA_MAX_MEMBERS      1024u
#define OVA_MAX_HEADERS      (4u * OVA_MAX_MEMBERS)
/* a member's name (after pax or GNU long names) */
#define OVA_MAX_NAME         1024u
/* a pax extended header's data */
#define OVA_MAX_PAX_BYTES    (64u << 10)
/* the descriptor and the manifest */
#define OVA_MAX_OVF_BYTES    (1u << 20)
#define OVA_MAX_MF_BYTES     (1u << 20)
/* disks one descriptor lists */
#define OVA_MAX_DISKS        256u
#define OVA_MAX_MD_SIZE      64u

/* ---- tar.c ------------------------------------------------------------ */

struct ova_member {
    char *name;                 /* checked: no '/', no "..", not empty */
    uint64_t offset;            /* of its data in the archive */
    uint64_t size;              /* bytes, inside the archive */
};

struct ova_tar {
    struct ova_member *m;
    unsigned n;
};

/* Whether BLOCK (512 bytes) is a tar header: ustar or GNU magic and a
 * right checksum. */
bool ova_tar_is_header(const uint8_t *block);
/* Walk the tar in FILE (SIZE bytes).  FIRST_ONLY (detection): stop at
 * the first member, listed only if it is a regular file (any name), so
 * *OUT may be empty.  Otherwise every header's checksum is verified,
 * sizes (octal or base-256) are held to the file's size, only regular
 * files are accepted (pax and GNU long-name headers are read for the
 * member they precede), names are checked and unique, and the walk is
 * bounded (OVA_MAX_MEMBERS, OVA_MAX_HEADERS; offsets only grow).  0 with
 * *OUT filled, or -errno with kimg_error() and nothing allocated. */
int ova_tar_walk(struct kimg_file *file, uint64_t size, bool first_only,
                 struct ova_tar *out);
void ova_tar_free(struct ova_tar *t);
/* The member named NAME, or NULL. */
const struct ova_member *ova_tar_find(const struct ova_tar *t, const char *name);

/* ---- ovf.c ------------------------------------------------------------ */

/* One disk of the descriptor (DiskSection order), with the File it names. */
struct ova_ovf_disk {
    char *href;                 /* the File's ovf:href (a member name) */
    int64_t size;               /* its ovf:size, -1 when not given */
};

struct ova_ovf {
    struct ova_ovf_disk *d;
    unsigned n;
};

/* Parse the descriptor BUF (LEN bytes): no network, no DTD, no entities
 * (refused), at most OVA_MAX_OVF_BYTES.  Disks without a file (blank
 * disks to create) are not listed; a compressed (ovf:compression) or
 * chunked (ovf:chunkSize) file is refused, as is a disk naming a file
 * the References do not hold, or an href that is not a plain name. */
int ova_ovf_parse(const char *buf, size_t len, struct ova_ovf *out);
void ova_ovf_free(struct ova_ovf *o);

/* ---- manifest.c ------------------------------------------------------- */

struct ova_digest {
    char *name;                 /* the member it is for */
    const char *alg;            /* "SHA1", "SHA256", "SHA512" */
    uint8_t md[OVA_MAX_MD_SIZE];
    unsigned md_len;
};

struct ova_manifest {
    struct ova_digest *d;
    unsigned n;
};

/* Parse manifest BUF (LEN bytes): "ALG(NAME)= HEX" lines, ALG one of
 * SHA1, SHA256, SHA512; one entry per name; any other line refused. */
int ova_manifest_parse(const char *buf, size_t len, struct ova_manifest *out);
void ova_manifest_free(struct ova_manifest *m);
/* The entry for NAME, or NULL. */
const struct ova_digest *ova_manifest_find(const struct ova_manifest *m, const char *name);
/* Check member M of FILE against digest D: 0, or -EINVAL with a message
 * naming the member when it differs. */
int ova_manifest_verify(struct kimg_file *file, const struct ova_member *m,
                        const struct ova_digest *d);

#endif
