/*
 * log.c — a VHDX file's log ([MS-VHDX] 2.3), replayed in memory: a disk
 * left by a hard Hyper-V stop holds metadata writes (BAT, region table,
 * metadata) in its log that were not yet written in place.  kimg reads
 * the file as it would be after the replay without writing to it: the
 * active sequence's writes become an overlay (sorted, non-overlapping
 * pieces of file offsets, each read from a copy of the logged data
 * sectors or as zeros) that vhdx_pread() applies to every read the
 * driver makes, metadata and guest data alike.
 */
#include <errno.h>
#include <stdlib.h>
#include "vhdx.h"

/* entry header */
#define E_SIGNATURE     0
#define E_CHECKSUM      4
#define E_LENGTH        8
#define E_TAIL          12
#define E_SEQUENCE      16
#define E_DESC_COUNT    24
#define E_LOG_GUID      32
#define E_FLUSHED       48
#define E_LAST          56
#define E_HEADER_SIZE   64
/* descriptors (32 bytes, after the entry header) */
#define D_SIZE          32
#define D_SIGNATURE     0
#define D_TRAILING      4
#define D_LEADING       8
#define D_ZERO_LENGTH   8
#define D_FILE_OFFSET   16
#define D_SEQUENCE      24
/* data sectors */
#define S_SEQ_HIGH      4
#define S_DATA          8
#define S_DATA_SIZE     4084
#define S_SEQ_LOW       4092

/* An entry larger than this is refused (a copy of the head and of one
 * other entry are held while the sequence is checked: with the data
 * copy, 32 MiB at most during the replay); Hyper-V's logs are 1 MiB. */
#define MAX_ENTRY       (8u << 20)
/* Candidate heads whose checksum fails before one passes: a torn write
 * leaves one or two; more means a damaged or hostile log. */
#define MAX_TORN        64

/* One logged write, in log order. */
struct write {
    uint64_t start, end;
    const uint8_t *data;        /* NULL: zeros */
    uint32_t order;
};

struct replay {
    struct write *w;
    size_t n, cap;
    uint8_t *data;              /* the data sectors, 4096 bytes each */
    size_t n_data;
    size_t data_cap;            /* bytes DATA holds (a file read twice may
                                   not say the same: never trust the walk) */
};

struct cand {
    uint32_t pos;               /* sector index in the log */
    uint64_t seq;
};

static int fail_log(const char *why, uint64_t pos)
{
    return kimg_fail(-EINVAL, "invalid VHDX log (entry at log offset %llu: %s); kimg "
                     "cannot replay it", (unsigned long long)pos, why);
}

/* Read LEN bytes of the circular log from byte POS (sector aligned). */
static int log_read(struct kimg *img, uint8_t *buf, uint64_t len, uint64_t pos)
{
    struct vhdx_state *s = img->state;
    while (len) {
        uint64_t n = s->log_length - pos < len ? s->log_length - pos : len;
        int ret = kimg_file_pread(img->file, buf, (size_t)n, s->log_offset + pos);
        if (ret < 0)
            return ret;
        buf += n;
        len -= n;
        pos = 0;
    }
    return 0;
}

static uint32_t desc_sectors(uint32_t count)
{
    return (uint32_t)((E_HEADER_SIZE + (uint64_t)count * D_SIZE + VHDX_LOG_SECTOR - 1) /
                      VHDX_LOG_SECTOR);
}

/* The checks on an entry's first 64 bytes (H) alone. */
static bool header_plausible(struct vhdx_state *s, const uint8_t *h)
{
    uint32_t len = vhdx_le32(h + E_LENGTH);
    uint32_t count = vhdx_le32(h + E_DESC_COUNT);
    return !memcmp(h + E_SIGNATURE, "loge", 4) && len && len % VHDX_LOG_SECTOR == 0 &&
           len <= s->log_length && vhdx_le64(h + E_SEQUENCE) != 0 &&
           !memcmp(h + E_LOG_GUID, s->log_guid, 16) &&
           (uint64_t)desc_sectors(count) * VHDX_LOG_SECTOR <= len;
}

/*
 * Read and check the whole entry at log byte POS: header, checksum over
 * the entry, descriptors (signature, sequence number, 4 KiB-aligned
 * offsets and lengths, outside the header area and the log), one data
 * sector per data descriptor with its signature and sequence number.
 * *E gets the entry (malloc'd) on success.  -EILSEQ without a message
 * for a checksum mismatch (a torn write), -EINVAL with one otherwise.
 */
static int read_entry(struct kimg *img, uint64_t pos, uint8_t **e)
{
    struct vhdx_state *s = img->state;
    uint8_t h[E_HEADER_SIZE] __attribute__((aligned(64)));
    int ret = log_read(img, h, sizeof(h), pos);
    if (ret < 0)
        return ret;
    if (!header_plausible(s, h))
        return fail_log("bad entry header", pos);
    uint32_t len = vhdx_le32(h + E_LENGTH);
    if (len > MAX_ENTRY)
        return kimg_fail(-EFBIG, "VHDX log entry of %u bytes is larger than kimg's limit "
                         "of %u MiB", len, MAX_ENTRY >> 20);
    uint8_t *buf = kimg_alloc_aligned(len);
    if (!buf)
        return -ENOMEM;
    if ((ret = log_read(img, buf, len, pos)) < 0)
        goto out;
    if (vhdx_crc(buf, len, E_CHECKSUM) != vhdx_le32(buf + E_CHECKSUM) ||
        memcmp(buf, h, sizeof(h))) {
        ret = -EILSEQ;
        goto out;
    }
    uint64_t seq = vhdx_le64(buf + E_SEQUENCE);
    uint32_t count = vhdx_le32(buf + E_DESC_COUNT), data_sec = desc_sectors(count);
    uint32_t n_data = 0;
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *d = buf + E_HEADER_SIZE + (size_t)i * D_SIZE;
        uint64_t off = vhdx_le64(d + D_FILE_OFFSET), dlen, end;
        bool zero = !memcmp(d + D_SIGNATURE, "zero", 4);
        if (!zero && memcmp(d + D_SIGNATURE, "desc", 4)) {
            ret = fail_log("unknown descriptor", pos);
            goto out;
        }
        dlen = zero ? vhdx_le64(d + D_ZERO_LENGTH) : VHDX_LOG_SECTOR;
        if (vhdx_le64(d + D_SEQUENCE) != seq || off % VHDX_LOG_SECTOR ||
            dlen % VHDX_LOG_SECTOR || dlen == 0 || __builtin_add_overflow(off, dlen, &end) ||
            end > VHDX_MAX_SIZE * 2) {
            ret = fail_log("bad descriptor", pos);
            goto out;
        }
        /* the headers locate the log: the log never writes them, nor itself */
        if (off < VHDX_RTABLE1_OFFSET ||
            vhdx_ranges_overlap(off, end, s->log_offset, s->log_offset + s->log_length)) {
            ret = fail_log("a descriptor writes to the headers or the log", pos);
            goto out;
        }
        if (!zero) {
            uint64_t so = (uint64_t)(data_sec + n_data) * VHDX_LOG_SECTOR;
            if (so + VHDX_LOG_SECTOR > len) {
                ret = fail_log("fewer data sectors than data descriptors", pos);
                goto out;
            }
            const uint8_t *sec = buf + so;
            uint64_t sseq = (uint64_t)vhdx_le32(sec + S_SEQ_HIGH) << 32 |
                            vhdx_le32(sec + S_SEQ_LOW);
            if (memcmp(sec, "data", 4) || sseq != seq) {
                ret = fail_log("bad data sector", pos);
                goto out;
            }
            n_data++;
        }
    }
    if ((uint64_t)(data_sec + n_data) * VHDX_LOG_SECTOR != len) {
        ret = fail_log("its length does not match its descriptors", pos);
        goto out;
    }
    *e = buf;
    return 0;
out:
    free(buf);
    return ret;
}

static int add_write(struct replay *r, uint64_t start, uint64_t end, const uint8_t *data)
{
    if (r->n == VHDX_MAX_LOG_DESCS)
        return kimg_fail(-EFBIG, "VHDX log has more than %u descriptors to replay (kimg's "
                         "limit)", VHDX_MAX_LOG_DESCS);
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 64;
        struct write *w = realloc(r->w, cap * sizeof(*w));
        if (!w)
            return -ENOMEM;
        r->w = w;
        r->cap = cap;
    }
    r->w[r->n] = (struct write){ start, end, data, (uint32_t)r->n };
    r->n++;
    return 0;
}

/* Take the writes of checked entry E: data sectors rebuilt (leading and
 * trailing bytes from the descriptor) into R's data area. */
static int collect(struct replay *r, const uint8_t *e, uint64_t *last_end)
{
    uint32_t count = vhdx_le32(e + E_DESC_COUNT), data_sec = desc_sectors(count), k = 0;
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *d = e + E_HEADER_SIZE + (size_t)i * D_SIZE;
        uint64_t off = vhdx_le64(d + D_FILE_OFFSET);
        const uint8_t *data = NULL;
        uint64_t len = VHDX_LOG_SECTOR;
        if (!memcmp(d, "zero", 4)) {
            len = vhdx_le64(d + D_ZERO_LENGTH);
        } else {
            if ((r->n_data + 1) * VHDX_LOG_SECTOR > r->data_cap)
                return kimg_fail(-EFBIG, "VHDX log holds more than %u MiB of data to replay "
                                 "(kimg's limit)", VHDX_MAX_LOG_DATA >> 20);
            uint8_t *dst = r->data + r->n_data * VHDX_LOG_SECTOR;
            const uint8_t *sec = e + (size_t)(data_sec + k++) * VHDX_LOG_SECTOR;
            memcpy(dst, d + D_LEADING, 8);
            memcpy(dst + 8, sec + S_DATA, S_DATA_SIZE);
            memcpy(dst + 8 + S_DATA_SIZE, d + D_TRAILING, 4);
            data = dst;
            r->n_data++;
        }
        if (off + len > *last_end)
            *last_end = off + len;
        int ret = add_write(r, off, off + len, data);
        if (ret < 0)
            return ret;
    }
    return 0;
}

static int cmp_cand(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    return x->seq < y->seq ? 1 : x->seq > y->seq ? -1 : (x->pos > y->pos) - (x->pos < y->pos);
}

static int cmp_start(const void *a, const void *b)
{
    const struct write *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* max-heap of writes by log order */
static void heap_push(struct write **h, size_t *n, struct write *w)
{
    size_t i = (*n)++;
    while (i && h[(i - 1) / 2]->order < w->order) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = w;
}

static void heap_pop(struct write **h, size_t *n)
{
    struct write *last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && h[c + 1]->order > h[c]->order)
            c++;
        if (h[c]->order <= last->order)
            break;
        h[i] = h[c];
        i = c;
    }
    if (*n)
        h[i] = last;
}

/*
 * The overlay: for every file byte some write covers, the last write in
 * log order.  A sweep over the writes' boundaries with a heap of the
 * writes covering the current point (O(n log n)).
 */
static int build_overlay(struct vhdx_state *s, struct replay *r)
{
    size_t n = r->n, nb = 0, nh = 0, next = 0;
    int ret = -ENOMEM;
    if (!n)
        return 0;
    uint64_t *b = malloc(2 * n * sizeof(*b));
    struct write **heap = malloc(n * sizeof(*heap));
    s->ovl = malloc(2 * n * sizeof(*s->ovl));
    if (!b || !heap || !s->ovl)
        goto out;
    qsort(r->w, n, sizeof(*r->w), cmp_start);
    for (size_t i = 0; i < n; i++) {
        b[nb++] = r->w[i].start;
        b[nb++] = r->w[i].end;
    }
    qsort(b, nb, sizeof(*b), cmp_u64);
    for (size_t k = 0; k + 1 < nb; k++) {
        if (b[k] == b[k + 1])
            continue;
        while (next < n && r->w[next].start <= b[k])
            heap_push(heap, &nh, &r->w[next++]);
        while (nh && heap[0]->end <= b[k])
            heap_pop(heap, &nh);
        if (!nh)
            continue;
        const struct write *w = heap[0];
        const uint8_t *data = w->data ? w->data + (b[k] - w->start) : NULL;
        struct vhdx_ovl *prev = s->n_ovl ? &s->ovl[s->n_ovl - 1] : NULL;
        if (prev && prev->end == b[k] &&
            ((!prev->data && !data) ||
             (prev->data && data && prev->data + (prev->end - prev->start) == data))) {
            prev->end = b[k + 1];
        } else {
            s->ovl[s->n_ovl++] = (struct vhdx_ovl){ b[k], b[k + 1], data };
        }
    }
    ret = 0;
out:
    free(b);
    free(heap);
    if (ret < 0) {
        free(s->ovl);
        s->ovl = NULL;
        s->n_ovl = 0;
    }
    return ret;
}

/* Candidate heads: every sector that starts a plausible entry. */
static int find_candidates(struct kimg *img, struct cand **out, size_t *n_out)
{
    struct vhdx_state *s = img->state;
    uint32_t sectors = s->log_length / VHDX_LOG_SECTOR;
    struct cand *c = NULL;
    size_t n = 0, cap = 0;
    uint8_t h[E_HEADER_SIZE] __attribute__((aligned(64)));
    for (uint32_t i = 0; i < sectors; i++) {
        int ret = kimg_file_pread(img->file, h, sizeof(h),
                                  s->log_offset + (uint64_t)i * VHDX_LOG_SECTOR);
        if (ret < 0) {
            free(c);
            return ret;
        }
        if (!header_plausible(s, h))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            struct cand *nc = realloc(c, cap * sizeof(*c));
            if (!nc) {
                free(c);
                return -ENOMEM;
            }
            c = nc;
        }
        c[n++] = (struct cand){ i, vhdx_le64(h + E_SEQUENCE) };
    }
    *out = c;
    *n_out = n;
    return 0;
}

/*
 * The active sequence: its head is the entry with the highest sequence
 * number that checks whole (entries with higher numbers whose checksum
 * fails are torn writes); it runs from the entry its Tail names, each
 * next entry right after the previous one (circularly) with the next
 * sequence number, up to the head.  Every entry of it must check.
 */
static int replay_sequence(struct kimg *img, struct replay *r, uint64_t *last_end)
{
    struct vhdx_state *s = img->state;
    struct cand *c;
    size_t n, torn = 0;
    uint8_t *head = NULL, *e = NULL;
    uint64_t head_pos = 0;
    int ret = find_candidates(img, &c, &n);
    if (ret < 0)
        return ret;
    if (n)
        qsort(c, n, sizeof(*c), cmp_cand);
    for (size_t i = 0; i < n && !head; i++) {
        head_pos = (uint64_t)c[i].pos * VHDX_LOG_SECTOR;
        ret = read_entry(img, head_pos, &head);
        if (ret == -EILSEQ && ++torn <= MAX_TORN)
            continue;
        if (ret == -EILSEQ)
            ret = kimg_fail(-EINVAL, "invalid VHDX log: more than %u entries with a bad "
                            "checksum", MAX_TORN);
        if (ret < 0)
            break;
    }
    free(c);
    if (ret < 0)
        return ret;
    if (!head)
        return kimg_fail(-EINVAL, "invalid VHDX log: the header names a log but it holds "
                         "no valid entry");

    uint64_t flushed = vhdx_le64(head + E_FLUSHED), head_seq = vhdx_le64(head + E_SEQUENCE);
    uint64_t pos = vhdx_le32(head + E_TAIL);
    if (flushed > s->file_size) {
        free(head);
        return kimg_fail(-EINVAL, "VHDX log says the file held %llu bytes, but it has %llu: "
                         "the image has been truncated", (unsigned long long)flushed,
                         (unsigned long long)s->file_size);
    }
    *last_end = vhdx_le64(head + E_LAST);
    if (*last_end > VHDX_MAX_SIZE * 2 || *last_end < flushed) {
        free(head);
        return fail_log("its last file offset is out of range", head_pos);
    }
    if (pos % VHDX_LOG_SECTOR || pos >= s->log_length) {
        free(head);
        return fail_log("its tail lies outside the log", head_pos);
    }
    /* from the tail to the head: at most one pass over the log */
    uint64_t seq = 0;
    for (uint32_t steps = 0;; steps++) {
        if (steps > s->log_length / VHDX_LOG_SECTOR) {
            ret = fail_log("the sequence from its tail does not reach it", head_pos);
            break;
        }
        if (pos == head_pos) {
            e = head;
            head = NULL;
        } else if ((ret = read_entry(img, pos, &e)) < 0) {
            if (ret == -EILSEQ)
                ret = fail_log("bad checksum", pos);
            break;
        }
        uint64_t eseq = vhdx_le64(e + E_SEQUENCE);
        if ((steps && eseq != seq + 1) || eseq > head_seq) {
            ret = fail_log("sequence numbers do not follow each other", pos);
            break;
        }
        seq = eseq;
        ret = collect(r, e, last_end);
        s->log_entries++;
        uint64_t len = vhdx_le32(e + E_LENGTH);
        free(e);
        e = NULL;
        if (ret < 0 || !head)
            break;
        pos = (pos + len) % s->log_length;
    }
    free(e);
    free(head);
    return ret;
}

int vhdx_replay_log(struct kimg *img)
{
    struct vhdx_state *s = img->state;
    static const uint8_t zero[16];
    struct replay r = { 0 };
    uint64_t last_end = 0;

    if (!memcmp(s->log_guid, zero, 16))
        return 0;
    if (!s->log_length)
        return kimg_fail(-EINVAL, "invalid VHDX log: the header names a log of 0 bytes");
    r.data_cap = VHDX_MAX_LOG_DATA < s->log_length ? VHDX_MAX_LOG_DATA : s->log_length;
    r.data = kimg_alloc_aligned(r.data_cap);
    if (!r.data)
        return -ENOMEM;
    int ret = replay_sequence(img, &r, &last_end);
    if (ret == 0)
        ret = build_overlay(s, &r);
    free(r.w);
    if (ret < 0) {
        free(r.data);
        s->log_entries = 0;
        return ret;
    }
    s->log_data = r.data;
    s->log_replayed = true;
    /* the log may grow the file: the bytes past its stored end read as
     * zeros where no write covers them */
    if (last_end > s->eff_size)
        s->eff_size = last_end;
    if (s->n_ovl && s->ovl[s->n_ovl - 1].end > s->eff_size)
        s->eff_size = s->ovl[s->n_ovl - 1].end;
    return 0;
}

void vhdx_free_log(struct vhdx_state *s)
{
    free(s->ovl);
    s->ovl = NULL;
    s->n_ovl = 0;
    free(s->log_data);
    s->log_data = NULL;
}

int vhdx_pread(struct kimg *img, void *buf, size_t len, uint64_t off)
{
    struct vhdx_state *s = img->state;
    uint64_t end = off + len;
    int ret;

    if (end <= s->file_size)
        ret = kimg_file_pread(img->file, buf, len, off);
    else
        ret = kimg_file_pread_zero_eof(img->file, buf, len, off);
    if (ret < 0 || !s->n_ovl)
        return ret;
    /* the first piece that ends after OFF */
    size_t lo = 0, hi = s->n_ovl;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->ovl[mid].end <= off)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t i = lo; i < s->n_ovl && s->ovl[i].start < end; i++) {
        const struct vhdx_ovl *o = &s->ovl[i];
        uint64_t a = o->start > off ? o->start : off;
        uint64_t b = o->end < end ? o->end : end;
        if (o->data)
            memcpy((uint8_t *)buf + (a - off), o->data + (a - o->start), (size_t)(b - a));
        else
            memset((uint8_t *)buf + (a - off), 0, (size_t)(b - a));
    }
    return 0;
}
