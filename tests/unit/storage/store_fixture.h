/* Shared helpers of the storage unit tests: a scratch data directory, a store on a fake clock, and
 * instance metadata/ingest shortcuts. Header-only (static functions) so each test stays one file. */
#ifndef SAMDA_TEST_STORE_FIXTURE_H
#define SAMDA_TEST_STORE_FIXTURE_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage.h"

typedef struct fx {
    char dir[256];
    int64_t now_ms;
    samda_store *s;
} fx;

static inline int64_t fx_clock(void *ctx) { return ((fx *)ctx)->now_ms; }

static inline void fx_rm_rf(const char *path)
{
    struct stat sb;
    if (lstat(path, &sb) != 0) return;
    if (S_ISDIR(sb.st_mode)) {
        DIR *d = opendir(path);
        if (d) {
            struct dirent *de;
            while ((de = readdir(d)) != NULL) {
                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
                char child[4096];
                snprintf(child, sizeof child, "%s/%s", path, de->d_name);
                fx_rm_rf(child);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

static inline void fx_mkdtemp(fx *f)
{
    const char *base = getenv("TMPDIR");
    snprintf(f->dir, sizeof f->dir, "%s/samda-storage-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(f->dir)) abort();
}

static inline void fx_params(fx *f, samda_store_params *p)
{
    samda_store_params_init(p);
    p->data_dir = f->dir;
    p->clock = fx_clock;
    p->clock_ctx = f;
    p->sync = SAMDA_SYNC_NORMAL; /* tests: speed; the crash test uses FULL */
}

/* Open a store in a fresh directory on a fake clock; returns NULL and prints why on failure. */
static fx *fx_open(void)
{
    fx *f = calloc(1, sizeof *f);
    fx_mkdtemp(f);
    f->now_ms = 1700000000000LL;
    samda_store_params p;
    fx_params(f, &p);
    samda_error e;
    f->s = samda_store_open(&p, &e);
    if (!f->s) {
        fprintf(stderr, "fx_open: %s\n", e.message);
        free(f);
        return NULL;
    }
    return f;
}

/* Close and reopen the same directory (same clock). */
static inline samda_store *fx_reopen(fx *f)
{
    samda_store_close(f->s);
    samda_store_params p;
    fx_params(f, &p);
    samda_error e;
    f->s = samda_store_open(&p, &e);
    if (!f->s) fprintf(stderr, "fx_reopen: %s\n", e.message);
    return f->s;
}

static inline void fx_close(fx *f)
{
    if (!f) return;
    samda_store_close(f->s);
    fx_rm_rf(f->dir);
    free(f);
}

static inline void fx_meta(samda_instance_meta *m, const char *study, const char *series, const char *sop)
{
    samda_instance_meta_init(m);
    snprintf(m->study_uid, sizeof m->study_uid, "%s", study);
    snprintf(m->series_uid, sizeof m->series_uid, "%s", series);
    snprintf(m->sop_uid, sizeof m->sop_uid, "%s", sop);
    snprintf(m->sop_class_uid, sizeof m->sop_class_uid, "1.2.840.10008.5.1.4.1.1.2");
    snprintf(m->transfer_syntax_uid, sizeof m->transfer_syntax_uid, "1.2.840.10008.1.2.1");
    snprintf(m->modality, sizeof m->modality, "CT");
    snprintf(m->patient_id, sizeof m->patient_id, "PID1");
    snprintf(m->study_date, sizeof m->study_date, "20240105");
    m->rows = m->columns = 512;
    m->bits_allocated = 16;
    m->number_of_frames = 1;
}

/* Write buf into a temporary file and ingest it. */
static inline samda_status fx_ingest(samda_store *s, const samda_instance_meta *m, const void *buf, size_t len,
                              samda_dup_policy policy, samda_ingest_result *res, samda_error *e)
{
    samda_tmp_file t;
    samda_status st = samda_store_object_tmp_open(s, &t, e);
    if (st != SAMDA_OK) return st;
    st = samda_store_object_tmp_write(s, &t, buf, len, e);
    if (st != SAMDA_OK) {
        samda_store_object_tmp_discard(s, &t);
        return st;
    }
    return samda_store_instance_ingest(s, &t, m, policy, res, e);
}

/* Ingest a small instance whose content is derived from its SOP UID. */
static inline samda_status fx_ingest_simple(samda_store *s, const char *study, const char *series, const char *sop,
                                     samda_error *e)
{
    samda_instance_meta m;
    fx_meta(&m, study, series, sop);
    char buf[128];
    int n = snprintf(buf, sizeof buf, "DICM fake content of %s", sop);
    return fx_ingest(s, &m, buf, (size_t)n, SAMDA_DUP_IGNORE_IDENTICAL, NULL, e);
}

/* Ingest a result SEG described by m (its content: its SOP UID) for job, made from source series src. */
static inline samda_status fx_ingest_result(samda_store *s, const samda_instance_meta *m, int64_t job, const char *src,
                                            samda_ingest_result *res, int64_t *rid, samda_error *e)
{
    samda_result_spec rs = {.job_id = job, .series_uid = src, .seg_series_uid = m->series_uid,
                            .seg_sop_uid = m->sop_uid, .model_version = "m", .label_stats_json = "{}"};
    samda_tmp_file t;
    samda_status st = samda_store_object_tmp_open(s, &t, e);
    if (st == SAMDA_OK) st = samda_store_object_tmp_write(s, &t, m->sop_uid, strlen(m->sop_uid), e);
    if (st != SAMDA_OK) {
        samda_store_object_tmp_discard(s, &t);
        return st;
    }
    return samda_store_result_ingest(s, &t, m, &rs, res, rid, e);
}

/* Count directory entries (not . and ..) under path, recursively counting files only. */
static inline size_t fx_count_files(const char *path)
{
    size_t n = 0;
    DIR *d = opendir(path);
    if (!d) return 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char child[4096];
        snprintf(child, sizeof child, "%s/%s", path, de->d_name);
        struct stat sb;
        if (lstat(child, &sb) != 0) continue;
        if (S_ISDIR(sb.st_mode)) n += fx_count_files(child);
        else n++;
    }
    closedir(d);
    return n;
}

/* Assert that expr returns SAMDA_OK; needs a `samda_error e` in scope for the message. */
#define CHECK_OK(expr)                                                                                     \
    do {                                                                                                   \
        samda_status chk_st_ = (expr);                                                                     \
        if (chk_st_ != SAMDA_OK) fail_msg("%s -> %s: %s", #expr, samda_status_name(chk_st_), e.message);   \
    } while (0)
/* Assert that expr returns the given status. */
#define CHECK_ST(want, expr)                                                                               \
    do {                                                                                                   \
        samda_status chk_st_ = (expr);                                                                     \
        if (chk_st_ != (want))                                                                             \
            fail_msg("%s -> %s, want %s (%s)", #expr, samda_status_name(chk_st_), samda_status_name(want),   \
                     e.message);                                                                           \
    } while (0)

#endif
