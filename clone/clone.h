/*
 * clone.h — the interface of the clone module (`kimg clone`, an offline
 * virt-clone): domain XML parsing and rewriting (domxml.c), virt-clone's
 * naming rules (naming.c), MACs and UUIDs (mac.c, uuid.c), the clone plan
 * with every check done before anything is written (plan.c), the storage
 * copies (copy.c), the JSON report (report.c) and the whole run (run.c);
 * the files it creates are kimg/output.h's outputs.
 */
#ifndef KIMG_CLONE_H
#define KIMG_CLONE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "kimg.h"

struct _xmlDoc;
struct _xmlNode;
struct kimg;

/* Domain XML is untrusted input: these caps bound what a document can make
 * kimg allocate or do. */
#define CLONE_MAX_XML_BYTES   (10u << 20)
#define CLONE_MAX_DISKS       256
#define CLONE_MAX_NICS        256
#define CLONE_MAX_PATH        4095
#define CLONE_MAX_NAME        200     /* domain names; they end up in file names */

/* ---- domain XML (domxml.c) -------------------------------------------- */

struct clone_xdisk {
    struct _xmlNode *node;      /* <disk> */
    char *type;                 /* file, block, network, volume, dir, nvme, ... */
    char *device;               /* disk, cdrom, floppy, lun */
    char *target;               /* <target dev>, or NULL */
    char *format;               /* <driver type>, or NULL (libvirt: raw) */
    char *source;               /* file/dev path, an nbd disk's URI, or NULL when empty */
    char *protocol;             /* network disks: rbd, nbd, iscsi, ... */
    bool nbd;                   /* an nbd network disk: SOURCE is its NBD URI */
    bool readonly, shareable;
    bool has_backing_store;     /* a <backingStore> child is present */
};

struct clone_xnic {
    struct _xmlNode *node;      /* <interface> */
    char *type;
    char *mac;                  /* <mac address>, or NULL */
};

struct clone_dom {
    struct _xmlDoc *doc;
    struct _xmlNode *root;
    bool has_decl;              /* the input began with an XML declaration */
    char *name;                 /* <name> */
    char *uuid;                 /* <uuid>, or NULL */
    struct clone_xdisk *disks;
    int nb_disks;
    struct clone_xnic *nics;
    int nb_nics;
    char *nvram;                /* <os><nvram> path, or NULL */
    char *nvram_format;         /* <nvram format=...>, or NULL (raw) */
};

/* Parse a domain XML document.  LABEL names it in messages.  Refuses a
 * DTD (so no entities), network access, documents over the size cap,
 * non-<domain> roots, missing or repeated <name>, too many devices. */
int clone_dom_parse_memory(struct clone_dom **out, const char *buf, size_t len,
                           const char *label);
int clone_dom_parse_file(struct clone_dom **out, const char *path);
void clone_dom_free(struct clone_dom *dom);

/* Edits, in place (untouched parts keep their text).  String arguments
 * must be valid UTF-8 without control characters (clone_check_text). */
int clone_dom_set_name(struct clone_dom *dom, const char *name);
/* <uuid> (created after <name> if missing) and the <sysinfo> system
 * entry name='uuid', which libvirt requires to match. */
int clone_dom_set_uuid(struct clone_dom *dom, const char *uuid);
int clone_dom_set_mac(struct clone_dom *dom, int nic, const char *mac);

/* What clone_dom_make_unique changed, for messages. */
struct clone_unique_notes {
    int graphics_ports;         /* graphics devices whose fixed ports became automatic */
    int channel_paths;          /* unix channels whose socket path was dropped */
    int vsock_cids;             /* vsock devices whose fixed cid became automatic */
    bool genid;                 /* <genid> got a new value */
    bool tpm;                   /* the domain has an emulated TPM (state not copied) */
};
/* The changes every clone gets: drop id= and <title>, interfaces' <target
 * dev>, fixed graphics ports (port, tlsPort, websocket -> -1 = automatic),
 * guest-agent style unix channel paths (those containing the target name,
 * as virt-clone), fixed vsock cids; <genid> gets NEW_GENID. */
int clone_dom_make_unique(struct clone_dom *dom, const char *new_genid,
                          struct clone_unique_notes *notes);

/* Point disk I at PATH (a block device if IS_BLOCK, else a file), with
 * format FORMAT (NULL: leave <driver> alone).  With BACKING the disk is an
 * overlay of that file (format BACKING_FORMAT): a <backingStore> the disk
 * had is rewritten to describe it.  Else, if STANDALONE, a <backingStore>
 * describing a backing file is removed (libvirt probes the new image);
 * otherwise it is kept as it was. */
int clone_dom_set_disk(struct clone_dom *dom, int i, const char *path, bool is_block,
                       const char *format, bool standalone, const char *backing,
                       const char *backing_format);
int clone_dom_set_nvram(struct clone_dom *dom, const char *path);
/* The domain has a <tpm> with an emulator (swtpm) backend. */
bool clone_dom_has_emulated_tpm(struct clone_dom *dom);
/* Serial and console devices of type 'file' (their <source path>, the
 * log qemu writes): count them, read path I, set path I. */
int clone_dom_nb_logs(struct clone_dom *dom);
const char *clone_dom_log_path(struct clone_dom *dom, int i);
int clone_dom_set_log_path(struct clone_dom *dom, int i, const char *path);

/* The document as text (malloc'd, NUL-terminated, ends with a newline). */
int clone_dom_serialize(struct clone_dom *dom, char **out, size_t *len);

/* 0 if S is valid UTF-8 without control characters and at most MAX
 * bytes; else -EINVAL with a message naming WHAT. */
int clone_check_text(const char *what, const char *s, size_t max);

/* ---- names and paths (naming.c) ----------------------------------------- */

/* virt-clone's --auto-clone name: "web01" -> "web01-clone", "x-clone" ->
 * "x-clone1", "x-clone2" -> "x-clone3" (any number of digits). */
char *clone_auto_name(const char *old_name);
/* TMPL with every "{n}" replaced by N and every "{name}" by NAME (NULL:
 * "{name}" is kept); NULL when out of memory. */
char *clone_expand(const char *tmpl, int n, const char *name);
/* TMPL contains "{n}" (or, with NAME_TOO, "{name}"). */
bool clone_has_placeholder(const char *tmpl, bool name_too);
/* libvirt's rules for a domain name, plus a length cap. */
int clone_check_name(const char *name);

/* Called with each candidate path; true if it cannot be used. */
typedef bool (*clone_taken_fn)(const char *path, void *opaque);
/* virt-clone's auto disk path: the extension (<= 7 characters) is kept; a
 * base name equal to OLD_NAME becomes NEW_NAME, otherwise "-clone" is
 * appended (in a BATCH "-NEW_NAME", so each clone's differs); a taken path
 * gets "-1", "-2", ... before the extension. */
int clone_auto_path(const char *orig, const char *old_name, const char *new_name, bool batch,
                    clone_taken_fn taken, void *opaque, char **out);
/* PATH made absolute against the working directory, "." and ".." and
 * repeated slashes removed lexically (as Python's os.path.abspath). */
char *clone_abspath(const char *path);
/* The folder of an absolute path ("/" for "/x"); malloc'd. */
char *clone_dirname(const char *path);
const char *clone_basename(const char *path);

/* ---- a set of strings (strset.c) ----------------------------------------- */

struct clone_strset {
    char **slots;               /* "KIND:value", or NULL */
    size_t cap, n;
};
bool clone_strset_has(const struct clone_strset *set, const char *kind, const char *s);
int clone_strset_add(struct clone_strset *set, const char *kind, const char *s);
void clone_strset_free(struct clone_strset *set);

/* ---- MACs and UUIDs (mac.c, uuid.c) -------------------------------------- */

/* "52:54:00:ab:cd:ef": six pairs of hex digits, unicast, not all zero. */
int clone_mac_parse(const char *s, uint8_t mac[6]);
void clone_mac_format(const uint8_t mac[6], char out[18]);
/* A random MAC with KVM's 52:54:00 prefix. */
int clone_mac_random(uint8_t mac[6]);

/* 32 hex digits, dashed as 8-4-4-4-12 or not at all; not all one digit.
 * OUT gets the canonical lowercase dashed form. */
int clone_uuid_parse(const char *s, char out[37]);
void clone_uuid_random(char out[37]);

/* ---- the plan (plan.c) ---------------------------------------------------- */

struct clone_opts {
    const char *original_xml;   /* --original-xml */
    const char *name;           /* -n/--name */
    bool auto_clone;            /* --auto-clone */
    const char **files;         /* -f/--file, in the order of the disks to clone */
    int nb_files;
    const char **macs;          /* -m/--mac, in the order of the interfaces */
    int nb_macs;
    const char *uuid;           /* --uuid */
    bool nonsparse;             /* --nonsparse */
    const char **skip;          /* --skip-copy TARGET */
    int nb_skip;
    const char **force;         /* --force-copy TARGET */
    int nb_force;
    bool preserve;              /* --preserve-data */
    const char *nvram;          /* --nvram */
    bool reflink;               /* --reflink */
    bool linked;                /* --linked */
    bool print_xml;             /* --print-xml: dry run */
    bool quiet;                 /* -q */
    const char *output_xml;     /* --output-xml FILE (else stdout) */
    const char *report_json;    /* --report-json FILE */
    /* batches (run.c): repeatable -n, or one -n with "{n}" and --count */
    const char **names;         /* every -n, in order (name is the first) */
    int nb_names;
    int count;                  /* --count N, 0 when not given */
    bool keep_going;            /* --keep-going: keep the clones that completed */
    bool batch;                 /* several clones (or --count): templates expanded */
    int index;                  /* this clone's {n}, from 1 (batch plans) */
    bool copy_tpm_state;        /* --copy-tpm-state */
    const char *tpm_state_dir;  /* --tpm-state-dir (libvirt's swtpm folder) */
};

enum clone_action {
    CLONE_SHARE,                /* the clone uses the same storage, XML untouched */
    CLONE_COPY,                 /* full sparse (or --nonsparse) copy */
    CLONE_LINK,                 /* --linked: a qcow2 overlay of the original */
    CLONE_REFLINK,              /* --reflink: FICLONE of the whole file */
    CLONE_PRESERVE,             /* --preserve-data: point at an existing file */
    CLONE_REPOINT,              /* nvram only: re-pointed, nothing to copy */
};

struct clone_disk_plan {
    int index;                  /* in dom->disks */
    const char *target;         /* <target dev> (or "disk N") */
    char target_buf[16];
    enum clone_action action;
    const char *why;            /* shares: "readonly", "shareable", "empty", "skip-copy" */
    char *src;                  /* absolute source path, an NBD URI (NULL: empty) */
    bool remote;                /* SRC is an nbd disk's URI */
    const char *src_format;     /* "raw" when the XML names none */
    char *dst;                  /* absolute destination, or NULL for shares */
    const char *dst_format;     /* format of the clone */
    bool dst_is_block;
    char *backing;              /* CLONE_LINK: the backing name stored in the overlay */
    struct kimg *img;           /* the source, opened read-only (copies) */
    bool img_borrowed;          /* img is the batch's first plan's (not closed here) */
    uint64_t size;              /* virtual size */
    uint64_t need;              /* bytes the copy may allocate (space check) */
    const char *tmp;            /* out.path: the temporary file being written */
    struct kimg_output out;     /* never replacing, undone if the run fails */
};

struct clone_plan {
    const struct clone_opts *opts;
    struct clone_dom *dom;
    char *old_name;
    char *new_name;
    char uuid[37];
    char genid[37];
    char (*macs)[18];           /* one per interface */
    int nb_macs;
    struct clone_disk_plan *disks;
    int nb_disks;
    struct clone_disk_plan nvram;   /* index -1; action SHARE when no <nvram> */
    bool has_nvram;
    struct clone_unique_notes notes;
    char **logs;                /* serial/console type='file' paths, renamed */
    char **log_src;             /* the template's paths (absolute), or NULL */
    int nb_logs;
    /* a batch: what the plans built before this one use (names, MACs,
     * UUIDs and paths must differ from theirs), or NULL */
    const struct clone_strset *seen;
    const struct clone_plan *first;     /* the batch's first plan (its open sources) */
    /* --copy-tpm-state (tpm.c): STATEDIR/OLD-UUID copied to STATEDIR/NEW-UUID */
    char *tpm_src, *tpm_dst;    /* NULL: nothing to copy */
    int tpm_entries;            /* folders and files to make (tpm_src's tree) */
    char **tpm_made;            /* folders and files made, in order */
    int nb_tpm_made;
    bool *tpm_made_dir;
    /* the run's outcome for this clone (run.c) */
    bool failed;
    char *error;
};

/* Parse the XML, decide every disk's action and destination, open the
 * sources, and check everything that can be checked before writing. */
int clone_plan_build(struct clone_plan *plan, const struct clone_opts *opts);
/* The same for one clone of a batch, checked against SEEN: what the
 * batch's earlier plans use (clone_plan_note); its sources are read
 * through FIRST's open images (the batch's first plan) where they match. */
int clone_plan_build_batch(struct clone_plan *plan, const struct clone_opts *opts,
                           const struct clone_strset *seen, const struct clone_plan *first);
/* Add the plan's name, UUID, MACs and paths to SEEN. */
int clone_plan_note(struct clone_strset *seen, const struct clone_plan *plan);
/* Apply the plan's changes to plan->dom. */
int clone_plan_rewrite(struct clone_plan *plan);
void clone_plan_free(struct clone_plan *plan);
const char *clone_action_name(enum clone_action a);

/* ---- storage (copy.c) ------------------------------------------------------ */

/* Write one disk (or the nvram) to d->tmp, a fresh temporary file in the
 * destination's folder (d->out, kimg/output.h: no replace, undo).  Does
 * not rename. */
int clone_copy_disk(struct clone_disk_plan *d, const struct clone_opts *opts);
/* Create D's new image at d->tmp as a full copy of d->img needs it (the
 * source's format and properties; --nonsparse preallocates), opened
 * read-write. */
int clone_create_target(struct clone_disk_plan *d, const struct clone_opts *opts,
                        struct kimg **out);
/* "Cloning TARGET: NN.NN%" on stderr (OPAQUE: the disk plan). */
void clone_progress_line(void *opaque, uint64_t done, uint64_t total);
/* Begin D's output (its temporary file, with the source's mode). */
int clone_copy_begin(struct clone_disk_plan *d);
/* Rewrap the current error as "TARGET: cloning SRC to DST: ...". */
int clone_copy_error(struct clone_disk_plan *d, int r);
/* The same full copy (CLONE_COPY) into the N begun outputs DS[], all
 * of one source (DS[0]->img), read once: each chunk of the source is read
 * and written to every target (fanout.c), the targets by several threads;
 * as many targets at once as fit fanout.c's memory budget (a bigger batch
 * reads the source once per group of them).
 * RES[k] gets target k's result and ERRS[k] its message (malloc'd, or
 * NULL; the caller frees); with KEEP_GOING a target that fails is dropped
 * and the others go on, else the first failure ends the copy.  Returns 0
 * when every target succeeded, else the first error (its message set). */
int clone_fanout_copy(struct clone_disk_plan **ds, int n, const struct clone_opts *opts,
                      bool keep_going, int *res, char **errs);
/* Whether a full copy from SRC into D's folder would share extents
 * (FICLONE works there): then each target is copied by the convert
 * engine, which reflinks, instead of fanned out. */
bool clone_fs_reflinks(struct clone_disk_plan *d0, struct clone_disk_plan *d1);
/* FICLONE SRC onto the open DST_FD; a clear message where unsupported. */
int clone_reflink_fd(int src_fd, int dst_fd, const char *src, const char *dst);

/* ---- TPM state (tpm.c) ---------------------------------------------------- */

#define CLONE_TPM_STATE_DIR "/var/lib/libvirt/swtpm"   /* libvirt's default */
#define CLONE_TPM_MAX_ENTRIES 256
#define CLONE_TPM_MAX_BYTES (64u << 20)

/* Decide and check the copy of the template's swtpm state (plan time):
 * its folder only regular files and folders, within the caps; the
 * clone's folder new. */
int clone_tpm_plan(struct clone_plan *p, const struct clone_opts *opts);
/* Copy it (modes kept, owners too as root), each file an UNDO output. */
int clone_tpm_copy(struct clone_plan *p);
/* Remove what clone_tpm_copy made (FILES_TOO: the files as well; else
 * only the folders, after kimg_output_undo_all removed the files). */
void clone_tpm_remove(struct clone_plan *p, bool files_too);

/* ---- outputs (report.c) ------------------------------------------------------ */

/* The machine-readable result of a run (or dry run). */
int clone_report_write(FILE *out, const struct clone_plan *plan, bool dry_run);
/* A batch: {"clones": [ each clone's object, with "status" and "error" ]}. */
int clone_report_write_batch(FILE *out, const struct clone_plan *plans, int n, bool dry_run);
/* Write LEN bytes to PATH, an output (kimg/output.h) that replaces PATH
 * (its symlinks followed; a device or FIFO written in place) and is
 * undone if the run fails. */
int clone_write_file(const char *path, const void *buf, size_t len);

/* ---- the whole run (run.c) -------------------------------------------------- */

/* Plan, copy, rename into place, print the XML; undo everything on failure.
 * Returns 0 or -errno with kimg_error() set. */
int clone_run(const struct clone_opts *opts);

#endif
