/*
 * convert_engine.h — private to the copy engine (convert.c plans jobs and
 * writes them in order on the main thread; convert_work.c runs them on the
 * pool's workers): the job and engine state both sides share, and the
 * worker-side calls the main thread makes.  Not part of any API.
 */
#ifndef KIMG_CONVERT_ENGINE_H
#define KIMG_CONVERT_ENGINE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include "kimg/convert.h"
#include "convert_clusters.h"
#include "convert_steps.h"
#include "aio.h"
#include "kimg/driver.h"
#include "pool.h"
#include "ratelimit.h"
#include "srcmap.h"

#define CHUNK (2u << 20)
#define JOB_MEMORY (36u << 20) /* the job slots' buffers at most (in_flight is
                                  cut to fit): the process stays under 64 MiB */
#define MAP_WINDOW (8u << 20)  /* source mappings shared by the jobs in them
                                   (srcmap.h): one mmap/munmap, and one TLB
                                   shootdown, per window instead of per job.
                                   Mapped pages count in the RSS: 16 MiB
                                   windows peaked at 62-78 MiB, 8 MiB at
                                   42-44 MiB, at the same speed */
#define AIO_PIECE (512u << 10)  /* O_DIRECT requests are cut to this size so
                                   one job keeps several in flight */

/* ---- jobs ----------------------------------------------------------------- */

/* A job is a slot of the engines' pool (img/pool.c).  First phase, on a
 * worker: read (and scan, compress, raw write); then the main thread takes
 * it in sequence order.  A qcow2 target's job goes back to the pool
 * (wphase) for a worker to write its allocated pieces, and the main thread
 * links them when it takes the job again (in any order). */
enum job_kind { JOB_DATA, JOB_ZERO, JOB_SKIP, JOB_OFFLOAD };

/* A run of a job's data, zero or not, at the sparse grain. */
struct run {
    uint32_t pos, len;
    bool zero;
};

/* --salvage: a range of a job's source that could not be read. */
struct salvaged {
    uint64_t off, len;
    int err;
};

/* Data of a job going to host space allocated for it (qcow2 target). */
struct piece {
    uint64_t pos, len, host;
    struct kimg_file *file;
};

struct job {
    enum job_kind kind;
    bool wphase;                /* queued again to write its pieces */
    uint64_t seq;
    struct kimg *src;
    uint64_t soff, doff, len;
    struct kimg_file *src_file; /* JOB_OFFLOAD: soff is a host offset in it */
    /* the data is stored plainly at hoff in hfile (mapped or read there) */
    struct kimg_file *hfile;
    uint64_t hoff;
    uint8_t *buf;               /* CHUNK bytes, for data jobs */
    uint8_t *data;              /* the job's data: buf, or inside map */
    struct kimg_srcmap *map;    /* the window holding the mapped data, or NULL */
    struct run *runs;           /* zero scan result (not with -c) */
    uint32_t nruns, runs_cap;
    struct piece *pieces;       /* qcow2 target: data written by a worker */
    uint32_t npieces_w, pieces_cap;
    /* -c: each target cluster of the job compressed by the worker */
    uint8_t *cbuf;              /* the compressed clusters, back to back */
    size_t cbuf_cap;            /* its bytes */
    int64_t *clen;              /* per cluster: length, -ENOSPC/-ENOTSUP, or
                                   CLEN_ZERO for an all-zero cluster */
    uint32_t npieces;
    struct salvaged *salv;      /* --salvage: the ranges read as zeros */
    uint32_t nsalv, salv_cap;
    int src_index;              /* which source (--salvage's messages) */
    int ret;
    char err[256];              /* the worker's error message */
};

struct engine {
    struct kimg_convert *c;
    uint8_t *zbuf;              /* zeros, for -S 0 */
    uint64_t grain;             /* zero-detection granularity, 0 = off */
    uint64_t cluster;           /* target cluster size (compression unit) */
    bool split_compress;        /* workers compress (the target supports it) */
    bool raw_target;            /* workers write their own jobs: a raw file
                                   has no layout to keep in order, and it is
                                   already full size, so writes cannot race
                                   on its length */
    bool par_write;             /* qcow2-like target: alloc_data/commit_data */
    bool transform;             /* the target transforms (encrypts) the data
                                   of its pieces: workers copy, transform,
                                   write; never clone (transform_data) */
    bool use_aio;               /* some file is O_DIRECT: workers get libaio */
    bool plain_sources;         /* every source a raw file: nothing to decode */
    bool main_writes;           /* the main thread writes a qcow2 target's
                                   pieces itself (no second phase) */
    bool one_writer;            /* buffered target: workers take turns writing */
    pthread_mutex_t wturn;      /* whose turn it is (one_writer) */
    bool reflink;               /* clone plain source data (see the top);
                                   cleared at the first refusal */
    uint64_t reflink_align;     /* the target file system's block size */
    uint64_t done, total, last_report;
    struct convert_steps steps;  /* -p: qemu-img's steps */

    struct kimg_pool *pool;     /* jobs: struct job */
    struct kimg_srcwins *wins;  /* mapped source windows */
    uint64_t next_seq;          /* sequence number of the next job made */
    uint64_t write_seq;         /* sequence number of the next job written
                                   (atomic: read by hold()) */
    uint64_t write_lag;         /* KIMG_CONVERT_WRITE_LAG (0: off) */
    bool draining;              /* no more jobs will be made (atomic) */
    struct kimg_ratelimit rl;   /* -r, charged before a job's writes */
    int src_index;              /* the source being planned */
};

/* ---- convert_work.c: the workers' side ----------------------------------- */

bool convert_hold_job(void *opaque, void *job);
uint64_t convert_piece_len(const struct engine *e, const struct job *j, uint64_t pos);
void convert_report(struct engine *e, uint64_t n);
int convert_run_job(void *opaque, void *local, void *job);
void convert_worker_fini(void *opaque, void *local);
void *convert_worker_init(void *opaque);
int convert_write_pieces_here(struct engine *e, struct job *j);
int convert_write_zero_range(struct engine *e, uint64_t off, uint64_t len);

#endif
