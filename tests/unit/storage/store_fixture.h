/* Shared helpers of the storage unit tests: a scratch data directory, a store on a fake clock, and
 * instance metadata/ingest shortcuts. Header-only (static functions) so each test stays one file.
 * With SAMDA_TEST_PG set (a libpq connection string; ctest sets it for the *_pg runs, with the server
 * of tests/pg/pg_server.sh) every store's index is PostgreSQL, in a schema of its own per scratch
 * directory, dropped with it. */
#ifndef SAMDA_TEST_STORE_FIXTURE_H
#define SAMDA_TEST_STORE_FIXTURE_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#include "storage.h"

typedef struct fx {
    char dir[256];
    int64_t now_ms;
    samda_store *s;
    char schema[64];    /* PostgreSQL runs: the index's schema ("" otherwise) */
    char conninfo[1200];
} fx;

/* The PostgreSQL server of this run, or NULL when the tests run on SQLite. */
static inline const char *fx_pg(void)
{
    const char *v = getenv("SAMDA_TEST_PG");
    return v && *v ? v : NULL;
}

/* Run sql on the test server; aborts with the server's message on failure. */
static inline void fx_pg_exec(const char *sql)
{
    PGconn *c = PQconnectdb(fx_pg());
    PGresult *r = PQstatus(c) == CONNECTION_OK ? PQexec(c, sql) : NULL;
    if (!r || (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)) {
        fprintf(stderr, "fx_pg_exec(%s): %s\n", sql, PQerrorMessage(c));
        abort();
    }
    PQclear(r);
    PQfinish(c);
}

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
    if (!fx_pg()) return;
    /* schema t_<the directory's random suffix>, lower-cased (unquoted identifiers fold to lower case) */
    const char *suffix = strrchr(f->dir, '-') + 1;
    snprintf(f->schema, sizeof f->schema, "t_");
    for (size_t i = 0; suffix[i] && i < 40; i++) {
        char ch = suffix[i];
        f->schema[2 + i] = (char)((ch >= 'A' && ch <= 'Z') ? ch - 'A' + 'a' : ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9')) ? ch : '_');
        f->schema[3 + i] = '\0';
    }
    char sql[128];
    snprintf(sql, sizeof sql, "CREATE SCHEMA %s", f->schema);
    fx_pg_exec(sql);
    snprintf(f->conninfo, sizeof f->conninfo, "%s options='-c search_path=%s'", fx_pg(), f->schema);
}

/* Remove the scratch directory and, on PostgreSQL, the index's schema. */
static inline void fx_rm_scratch(fx *f)
{
    fx_rm_rf(f->dir);
    if (!f->schema[0]) return;
    char sql[128];
    snprintf(sql, sizeof sql, "DROP SCHEMA %s CASCADE", f->schema);
    fx_pg_exec(sql);
}

/* Raw access to a store's index, beside the store (as an administrator's tool would have it): sqlite3
 * on <dir>/index.sqlite3, or libpq on the fixture's schema. The SQL is the test's own text, in ?N
 * placeholders (rewritten as $N for PostgreSQL); where the engines differ the test passes each its
 * words (fx_pg() ? ... : ...). */

/* Connect to the fixture's schema; NULL (message printed) on failure. */
static inline PGconn *fx_raw_pg(fx *f)
{
    PGconn *c = PQconnectdb(f->conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "fx_raw: connecting: %s\n", PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    return c;
}

/* sql with SQLite's ?N placeholders as PostgreSQL's $N (tests' SQL holds no '?' in literals). */
static inline void fx_raw_pg_sql(const char *sql, char *out, size_t size)
{
    size_t o = 0;
    for (const char *p = sql; *p && o + 1 < size; p++) out[o++] = *p == '?' ? '$' : *p;
    out[o] = '\0';
}

/* A plain SQLite connection to f's index file (outside samda), or NULL. Close with sqlite3_close. */
static inline sqlite3 *fx_raw_lite(fx *f)
{
    char path[512];
    snprintf(path, sizeof path, "%s/index.sqlite3", f->dir);
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK) return db;
    sqlite3_close(db);
    return NULL;
}

/* First column of the first row of sql, with text parameters ?1..?n (params[i] NULL: SQL NULL), as an
 * integer (a boolean reads as 1 or 0); -1 on failure, when there is no row and when it is NULL. */
static inline int64_t fx_raw_int_params(fx *f, const char *sql, int n, const char *const *params)
{
    int64_t v = -1;
    if (fx_pg()) {
        PGconn *c = fx_raw_pg(f);
        if (!c) return -1;
        char text[2048];
        fx_raw_pg_sql(sql, text, sizeof text);
        PGresult *r = PQexecParams(c, text, n, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0)) {
            const char *t = PQgetvalue(r, 0, 0);
            v = !strcmp(t, "t") ? 1 : !strcmp(t, "f") ? 0 : strtoll(t, NULL, 10);
        } else if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            fprintf(stderr, "fx_raw_int(%s): %s", sql, PQerrorMessage(c));
        }
        PQclear(r);
        PQfinish(c);
        return v;
    }
    sqlite3 *db = fx_raw_lite(f);
    sqlite3_stmt *st = NULL;
    if (db && sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        for (int i = 0; i < n; i++) sqlite3_bind_text(st, i + 1, params[i], -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) v = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static inline int64_t fx_raw_int(fx *f, const char *sql) { return fx_raw_int_params(f, sql, 0, NULL); }

/* Run the statements of sql (no parameters): 0 on success, else nonzero with the engine's message in
 * msg. */
static inline int fx_raw_exec(fx *f, const char *sql, char *msg, size_t msize)
{
    if (msize) msg[0] = '\0';
    if (fx_pg()) {
        PGconn *c = fx_raw_pg(f);
        if (!c) {
            snprintf(msg, msize, "cannot connect");
            return 1;
        }
        PGresult *r = PQexec(c, sql);
        int rc = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK ? 0 : 1;
        if (rc) snprintf(msg, msize, "%s", PQerrorMessage(c));
        PQclear(r);
        PQfinish(c);
        return rc;
    }
    sqlite3 *db = fx_raw_lite(f);
    char *err = NULL;
    int rc = db ? sqlite3_exec(db, sql, NULL, NULL, &err) : SQLITE_CANTOPEN;
    if (rc != SQLITE_OK) snprintf(msg, msize, "%s", err ? err : db ? sqlite3_errmsg(db) : "cannot open the index file");
    sqlite3_free(err);
    sqlite3_close(db);
    return rc;
}

static inline void fx_params(fx *f, samda_store_params *p)
{
    samda_store_params_init(p);
    p->data_dir = f->dir;
    p->clock = fx_clock;
    p->clock_ctx = f;
    p->sync = SAMDA_SYNC_NORMAL; /* tests: speed; the crash test uses FULL */
    if (f->schema[0]) {
        p->index = SAMDA_INDEX_POSTGRESQL;
        p->postgresql = f->conninfo;
    }
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
    fx_rm_scratch(f);
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

/* Write buf into a temporary file and ingest it with the hash and size its writer claims (sha256 NULL:
 * none, the store hashes the file). */
static inline samda_status fx_ingest_hashed(samda_store *s, const samda_instance_meta *m, const void *buf, size_t len,
                                            const char *sha256, uint64_t size, samda_dup_policy policy,
                                            samda_ingest_result *res, samda_error *e)
{
    samda_tmp_file t;
    samda_status st = samda_store_object_tmp_open(s, &t, e);
    if (st != SAMDA_OK) return st;
    st = samda_store_object_tmp_write(s, &t, buf, len, e);
    if (st != SAMDA_OK) {
        samda_store_object_tmp_discard(s, &t);
        return st;
    }
    return samda_store_instance_ingest_hashed(s, &t, sha256, size, m, policy, res, e);
}

/* Write buf into a temporary file and ingest it. */
static inline samda_status fx_ingest(samda_store *s, const samda_instance_meta *m, const void *buf, size_t len,
                              samda_dup_policy policy, samda_ingest_result *res, samda_error *e)
{
    return fx_ingest_hashed(s, m, buf, len, NULL, 0, policy, res, e);
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
