/* storage/queue.c: the durable job queue. States pending -> running -> done | failed | cancelled;
 * a claim is a lease (owner + expiry) so that a crashed worker's job runs again; priority (higher
 * first) then age decides the order; an idempotency key and a content hash keep re-sent input from
 * queueing the same work twice. Every transition is one write transaction. Time comes from the
 * store's clock so tests can expire leases without sleeping. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const char *const job_state_names[] = {"pending", "running", "done", "failed", "cancelled"};

const char *samda_job_state_name(samda_job_state st)
{
    if ((int)st < 0 || (int)st > SAMDA_JOB_CANCELLED) return "unknown";
    return job_state_names[st];
}

static samda_job_state state_from(const char *v)
{
    for (int i = 0; i <= SAMDA_JOB_CANCELLED; i++)
        if (v && strcmp(v, job_state_names[i]) == 0) return (samda_job_state)i;
    return SAMDA_JOB_FAILED;
}

void samda_job_clear(samda_job *job)
{
    if (!job) return;
    free(job->params_json);
    free(job->result_json);
    free(job->error);
    memset(job, 0, sizeof *job);
}

void samda_job_list_free(samda_job *jobs, size_t n)
{
    if (!jobs) return;
    for (size_t i = 0; i < n; i++) samda_job_clear(&jobs[i]);
    free(jobs);
}

#define JOB_COLS                                                                                           \
    "SELECT j.id, j.kind, j.state, j.priority, si.name, j.study_uid, j.series_uid, j.params_json,"         \
    " j.result_json, j.error, j.attempts, j.max_attempts, j.lease_owner, j.lease_expires_ms, j.progress,"  \
    " j.progress_message, j.idempotency_key, j.content_hash, j.created_ms, j.updated_ms, j.finished_ms"    \
    " FROM jobs j LEFT JOIN sites si ON si.id = j.site_id "

static const char SQL_JOB_GET[] = JOB_COLS "WHERE j.id = ?1";
static const char SQL_JOB_LIST[] = JOB_COLS
    "WHERE (j.state = ?1 OR ?1 IS NULL) AND (j.kind = ?2 OR ?2 IS NULL) AND (si.name = ?3 OR ?3 IS NULL)"
    " AND (j.series_uid = ?4 OR ?4 IS NULL) ORDER BY j.id DESC LIMIT ?5 OFFSET ?6";

static void read_job(sql_stmt *st, samda_job *j);
static void read_job_row(sql_stmt *st, void *row) { read_job(st, row); }
static void clear_jobs(void *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) samda_job_clear((samda_job *)rows + i);
}

static void read_job(sql_stmt *st, samda_job *j)
{
    memset(j, 0, sizeof *j);
    j->id = sql_col_int64(st, 0);
    storage_col_text(st, 1, j->kind, sizeof j->kind);
    j->state = state_from(sql_col_text(st, 2));
    j->priority = (int)sql_col_int64(st, 3);
    storage_col_text(st, 4, j->site, sizeof j->site);
    storage_col_text(st, 5, j->study_uid, sizeof j->study_uid);
    storage_col_text(st, 6, j->series_uid, sizeof j->series_uid);
    j->params_json = storage_col_dup(st, 7);
    j->result_json = storage_col_dup(st, 8);
    j->error = storage_col_dup(st, 9);
    j->attempts = (int)sql_col_int64(st, 10);
    j->max_attempts = (int)sql_col_int64(st, 11);
    storage_col_text(st, 12, j->lease_owner, sizeof j->lease_owner);
    j->lease_expires_ms = sql_col_int64(st, 13);
    j->progress = sql_col_double(st, 14);
    storage_col_text(st, 15, j->progress_message, sizeof j->progress_message);
    storage_col_text(st, 16, j->idempotency_key, sizeof j->idempotency_key);
    storage_col_text(st, 17, j->content_hash, sizeof j->content_hash);
    j->created_ms = sql_col_int64(st, 18);
    j->updated_ms = sql_col_int64(st, 19);
    j->finished_ms = sql_col_int64(st, 20);
}

/* Read one job on c. SAMDA_ENOENT when absent. */
static samda_status job_read_c(samda_store *s, storage_conn *c, int64_t id, samda_job *out, samda_error *err)
{
    sql_stmt *st = storage_stmt(c, SQL_JOB_GET, err);
    if (!st) return err->code;
    sql_bind_int64(st, 1, id);
    int rc = storage_step(s, st);
    samda_status res = SAMDA_OK;
    if (rc == SQL_ROW) read_job(st, out);
    else if (rc == SQL_DONE) res = samda_fail(err, SAMDA_ENOENT, "job %lld: no such job", (long long)id);
    else res = storage_db_fail(err, c, rc, "reading job");
    sql_reset(st);
    return res;
}

samda_status samda_store_job_get(samda_store *s, int64_t id, samda_job *job, samda_error *err)
{
    STORAGE_ERR(err);
    memset(job, 0, sizeof *job);
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    samda_status st = job_read_c(s, c, id, job, err);
    storage_conn_put(s, c);
    return st;
}

samda_status samda_store_job_list(samda_store *s, const samda_job_filter *f, samda_job **jobs, size_t *n,
                                  samda_error *err)
{
    STORAGE_ERR(err);
    *jobs = NULL;
    *n = 0;
    samda_job_filter all = {.state = -1};
    if (!f) f = &all;
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    samda_status res = SAMDA_OK;
    sql_stmt *st = storage_stmt(c, SQL_JOB_LIST, err);
    if (!st) res = err->code;
    else {
        if (f->state >= 0 && f->state <= SAMDA_JOB_CANCELLED)
            sql_bind_text(st, 1, job_state_names[f->state]);
        storage_bind_text(st, 2, f->kind);
        storage_bind_text(st, 3, f->site);
        storage_bind_text(st, 4, f->series_uid);
        sql_bind_int64(st, 5, (int64_t)storage_list_limit(f->limit));
        sql_bind_int64(st, 6, (int64_t)f->offset);
        res = storage_collect(s, c, st, sizeof **jobs, read_job_row, clear_jobs, (void **)jobs, n, "listing jobs",
                              err);
    }
    storage_conn_put(s, c);
    return res;
}

/* Enqueue ------------------------------------------------------------------------------------------ */

static samda_status find_one(samda_store *s, storage_conn *c, const char *sql, const samda_job_spec *spec,
                             int64_t *id, samda_error *err)
{
    sql_stmt *st = storage_stmt(c, sql, err);
    if (!st) return err->code;
    sql_bind_text(st, 1, spec->kind);
    storage_bind_text(st, 2, spec->series_uid);
    storage_bind_text(st, 3, spec->content_hash);
    storage_bind_text(st, 4, spec->idempotency_key);
    int rc = storage_step(s, st);
    *id = rc == SQL_ROW ? sql_col_int64(st, 0) : 0;
    sql_reset(st);
    if (rc != SQL_ROW && rc != SQL_DONE) return storage_db_fail(err, c, rc, "looking up job");
    return SAMDA_OK;
}

/* Both take the same four parameters (?1 kind, ?2 series, ?3 content hash, ?4 idempotency key); a
 * parameter a statement does not use is simply not bound. */
static const char SQL_FIND_IDEM[] = "SELECT id FROM jobs WHERE idempotency_key = ?4";
static const char SQL_FIND_CONTENT[] =
    "SELECT id FROM jobs WHERE kind = ?1 AND coalesce(series_uid, '') = coalesce(?2, '') AND content_hash = ?3"
    " AND state <> 'cancelled'";

/* The series' content changed while its job still waits: that job (not yet started, so it will read
 * the series as it is when it runs) takes the new content hash instead of a second job being queued
 * for the same series, which would segment the same instances twice. Only a job queued the same way
 * (content hash, no idempotency key, same parameters) is taken over; the newest if several.
 * *id is 0 when there is none. */
static samda_status merge_pending(samda_store *s, storage_conn *c, const samda_job_spec *spec, int64_t *id,
                                  samda_error *err)
{
    *id = 0;
    sql_stmt *st = storage_stmt(c, "SELECT id FROM jobs WHERE kind = ?1 AND series_uid = ?2 AND state = 'pending'"
                                       " AND content_hash IS NOT NULL AND idempotency_key IS NULL"
                                       " AND coalesce(params_json, '') = coalesce(?3, '') ORDER BY id DESC LIMIT 1", err);
    if (!st) return err->code;
    sql_bind_text(st, 1, spec->kind);
    sql_bind_text(st, 2, spec->series_uid);
    storage_bind_text(st, 3, spec->params_json);
    int rc = storage_step(s, st);
    int64_t found = rc == SQL_ROW ? sql_col_int64(st, 0) : 0;
    sql_reset(st);
    if (rc != SQL_ROW && rc != SQL_DONE) return storage_db_fail(err, c, rc, "looking up the queued job of a series");
    if (!found) return SAMDA_OK;
    st = storage_stmt(c, "UPDATE jobs SET content_hash = ?2, priority = greatest(priority, ?3), updated_ms = ?4 WHERE id = ?1",
                      err);
    if (!st) return err->code;
    sql_bind_int64(st, 1, found);
    sql_bind_text(st, 2, spec->content_hash);
    sql_bind_int64(st, 3, spec->priority);
    sql_bind_int64(st, 4, samda_store_now_ms(s));
    rc = storage_exec_stmt(s, st);
    if (rc != SQL_OK) return storage_db_fail(err, c, rc, "updating the queued job of a changed series");
    *id = found;
    return SAMDA_OK;
}

samda_status samda_store_job_enqueue(samda_store *s, const samda_job_spec *spec, int64_t *id, bool *existed,
                                     samda_error *err)
{
    STORAGE_ERR(err);
    if (existed) *existed = false;
    if (!spec || !spec->kind || !*spec->kind || !storage_len_ok(spec->kind, SAMDA_KEY_SIZE))
        return samda_fail(err, SAMDA_EINVAL, "queueing job: kind is required (< %d bytes)", SAMDA_KEY_SIZE);
    if ((spec->study_uid && *spec->study_uid && !samda_uid_is_valid(spec->study_uid)) ||
        (spec->series_uid && *spec->series_uid && !samda_uid_is_valid(spec->series_uid)))
        return samda_fail(err, SAMDA_EBADUID, "queueing %s job: study or series UID is not a valid UID", spec->kind);
    if (!storage_len_ok(spec->idempotency_key, SAMDA_KEY_SIZE) || !storage_len_ok(spec->content_hash, SAMDA_KEY_SIZE) ||
        !storage_len_ok(spec->site, SAMDA_NAME_SIZE))
        return samda_fail(err, SAMDA_EINVAL, "queueing %s job: idempotency key, content hash or site too long",
                          spec->kind);
    samda_status res = storage_check_json(spec->params_json, "job parameters", err);
    if (res != SAMDA_OK) return res;
    int max_attempts = spec->max_attempts > 0 ? spec->max_attempts : atomic_load(&s->job_max_attempts);

    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    res = storage_tx_begin(s, c, err);
    if (res != SAMDA_OK) {
        storage_conn_put(s, c);
        return res;
    }
    int64_t found = 0;
    if (spec->idempotency_key && *spec->idempotency_key) res = find_one(s, c, SQL_FIND_IDEM, spec, &found, err);
    if (res == SAMDA_OK && !found && spec->content_hash && *spec->content_hash)
        res = find_one(s, c, SQL_FIND_CONTENT, spec, &found, err);
    bool merged = false;
    if (res == SAMDA_OK && !found && spec->content_hash && *spec->content_hash && spec->series_uid &&
        *spec->series_uid && !(spec->idempotency_key && *spec->idempotency_key)) {
        res = merge_pending(s, c, spec, &found, err);
        merged = found != 0;
    }
    int64_t site_id = 0;
    if (res == SAMDA_OK && !found && spec->site && *spec->site) {
        res = storage_site_lookup(s, c, spec->site, &site_id, err);
        if (res == SAMDA_ENOENT) res = samda_fail(err, SAMDA_EINVAL, "queueing %s job: unknown site", spec->kind);
    }
    if (res == SAMDA_OK && !found) {
        sql_stmt *st = storage_stmt(c, "INSERT INTO jobs(kind, priority, site_id, study_uid, series_uid,"
                                           " params_json, max_attempts, idempotency_key, content_hash, created_ms,"
                                           " updated_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10) RETURNING id", err);
        if (!st) res = err->code;
        else {
            sql_bind_text(st, 1, spec->kind);
            sql_bind_int64(st, 2, spec->priority);
            storage_bind_int64_or_null(st, 3, site_id);
            storage_bind_text(st, 4, spec->study_uid);
            storage_bind_text(st, 5, spec->series_uid);
            storage_bind_text(st, 6, spec->params_json);
            sql_bind_int64(st, 7, max_attempts);
            storage_bind_text(st, 8, spec->idempotency_key);
            storage_bind_text(st, 9, spec->content_hash);
            sql_bind_int64(st, 10, samda_store_now_ms(s));
            int rc = storage_exec_insert(s, st, &found);
            if (rc != SQL_OK) res = storage_db_fail(err, c, rc, "queueing job");
        }
        if (res == SAMDA_OK) {
            char rid[32];
            snprintf(rid, sizeof rid, "%lld", (long long)found);
            res = storage_change_add(s, c, "job", rid, SAMDA_CHANGE_NEW, err);
        }
    } else if (res == SAMDA_OK && merged) {
        char rid[32];
        snprintf(rid, sizeof rid, "%lld", (long long)found);
        res = storage_change_add(s, c, "job", rid, SAMDA_CHANGE_UPDATED, err);
        if (existed) *existed = true;
    } else if (res == SAMDA_OK && existed) {
        *existed = true;
    }
    if (res == SAMDA_OK) res = storage_tx_commit(s, c, err);
    else storage_tx_rollback(s, c);
    storage_conn_put(s, c);
    if (res == SAMDA_OK && id) *id = found;
    if (res != SAMDA_OK && existed) *existed = false;
    return res;
}

/* Leases -------------------------------------------------------------------------------------------- */

static samda_status job_change(samda_store *s, storage_conn *c, int64_t id, samda_error *err)
{
    char rid[32];
    snprintf(rid, sizeof rid, "%lld", (long long)id);
    return storage_change_add(s, c, "job", rid, SAMDA_CHANGE_STATE, err);
}

/* Expired leases back to pending (or failed once out of attempts), on c inside a transaction. */
/* all: every running job whose lease owner starts with owner_prefix (NULL: any owner), whatever its
 * lease; else the expired leases of any owner. */
static samda_status reclaim_c(samda_store *s, storage_conn *c, bool all, const char *owner_prefix, size_t *n_requeued,
                              size_t *n_failed, samda_error *err)
{
    int64_t now = samda_store_now_ms(s);
    sql_stmt *st = storage_stmt(c, "UPDATE jobs SET state = CASE WHEN attempts >= max_attempts THEN 'failed'"
                                       " ELSE 'pending' END,"
                                       " error = CASE WHEN ?2 THEN 'worker ' || coalesce(lease_owner, '?') ||"
                                       " ' stopped before finishing (samdad restarted)'"
                                       " ELSE 'lease of worker ' || coalesce(lease_owner, '?') || ' expired' END,"
                                       " finished_ms = CASE WHEN attempts >= max_attempts THEN CAST(?1 AS BIGINT) END,"
                                       " lease_owner = NULL, lease_expires_ms = NULL, updated_ms = ?1"
                                       " WHERE state = 'running' AND (?2 OR lease_expires_ms <= ?1)"
                                       " AND (substr(lease_owner, 1, length(?3)) = ?3 OR ?3 IS NULL)"
                                       " RETURNING id, state", err);
    if (!st) return err->code;
    sql_bind_int64(st, 1, now);
    sql_bind_int64(st, 2, all ? 1 : 0);
    storage_bind_text(st, 3, all ? owner_prefix : NULL);
    int rc;
    size_t req = 0, fail = 0;
    int64_t ids[64]; /* change-feed rows for the first 64; more at once only after a long outage */
    size_t n_ids = 0;
    while ((rc = storage_step(s, st)) == SQL_ROW) {
        if (strcmp(sql_col_text(st, 1), "failed") == 0) fail++;
        else req++;
        if (n_ids < 64) ids[n_ids++] = sql_col_int64(st, 0);
    }
    sql_reset(st);
    if (rc != SQL_DONE) return storage_db_fail(err, c, rc, "reclaiming expired jobs");
    for (size_t i = 0; i < n_ids; i++) {
        samda_status r = job_change(s, c, ids[i], err);
        if (r != SAMDA_OK) return r;
    }
    if (n_requeued) *n_requeued = req;
    if (n_failed) *n_failed = fail;
    return SAMDA_OK;
}

samda_status samda_store_job_reclaim_expired(samda_store *s, size_t *n_requeued, size_t *n_failed, samda_error *err)
{
    STORAGE_ERR(err);
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    samda_status res = storage_tx_begin(s, c, err);
    if (res == SAMDA_OK) {
        res = reclaim_c(s, c, false, NULL, n_requeued, n_failed, err);
        if (res == SAMDA_OK) res = storage_tx_commit(s, c, err);
        else storage_tx_rollback(s, c);
    }
    storage_conn_put(s, c);
    return res;
}

samda_status samda_store_job_reclaim_all(samda_store *s, const char *owner_prefix, size_t *n_requeued,
                                         size_t *n_failed, samda_error *err)
{
    STORAGE_ERR(err);
    if (owner_prefix && !storage_len_ok(owner_prefix, SAMDA_KEY_SIZE))
        return samda_fail(err, SAMDA_EINVAL, "reclaiming jobs: owner prefix longer than %d bytes", SAMDA_KEY_SIZE - 1);
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    samda_status res = storage_tx_begin(s, c, err);
    if (res == SAMDA_OK) {
        res = reclaim_c(s, c, true, owner_prefix, n_requeued, n_failed, err);
        if (res == SAMDA_OK) res = storage_tx_commit(s, c, err);
        else storage_tx_rollback(s, c);
    }
    storage_conn_put(s, c);
    return res;
}

samda_status samda_store_job_claim(samda_store *s, const char *owner, int64_t lease_ms, const char *kind,
                                   int min_priority, samda_job *job, bool *found, samda_error *err)
{
    STORAGE_ERR(err);
    *found = false;
    memset(job, 0, sizeof *job);
    if (!owner || !*owner || !storage_len_ok(owner, SAMDA_KEY_SIZE) || lease_ms <= 0 ||
        !storage_len_ok(kind, SAMDA_KEY_SIZE))
        return samda_fail(err, SAMDA_EINVAL, "claiming job: owner (< %d bytes) and a positive lease are required",
                          SAMDA_KEY_SIZE);
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    samda_status res = storage_tx_begin(s, c, err);
    if (res != SAMDA_OK) {
        storage_conn_put(s, c);
        return res;
    }
    res = reclaim_c(s, c, false, NULL, NULL, NULL, err);
    int64_t id = 0;
    if (res == SAMDA_OK) {
        int64_t now = samda_store_now_ms(s);
        sql_stmt *st = storage_stmt(c, "UPDATE jobs SET state = 'running', lease_owner = ?1,"
                                           " lease_expires_ms = CAST(?2 AS BIGINT) + ?3, attempts = attempts + 1, updated_ms = ?2"
                                           " WHERE id = (SELECT id FROM jobs WHERE state = 'pending'"
                                           " AND (kind = ?4 OR ?4 IS NULL) AND priority >= ?5"
                                           " ORDER BY priority DESC, created_ms, id LIMIT 1) RETURNING id", err);
        if (!st) res = err->code;
        else {
            sql_bind_text(st, 1, owner);
            sql_bind_int64(st, 2, now);
            sql_bind_int64(st, 3, lease_ms);
            storage_bind_text(st, 4, kind);
            sql_bind_int64(st, 5, min_priority);
            int rc = storage_step(s, st);
            if (rc == SQL_ROW) {
                id = sql_col_int64(st, 0);
                rc = storage_step(s, st);
            }
            sql_reset(st);
            if (rc != SQL_DONE) res = storage_db_fail(err, c, rc, "claiming job");
        }
    }
    if (res == SAMDA_OK && id) res = job_change(s, c, id, err);
    if (res == SAMDA_OK && id) res = job_read_c(s, c, id, job, err);
    if (res == SAMDA_OK) res = storage_tx_commit(s, c, err);
    else storage_tx_rollback(s, c);
    storage_conn_put(s, c);
    if (res != SAMDA_OK) {
        samda_job_clear(job);
        return res;
    }
    *found = id != 0;
    return SAMDA_OK;
}

/* Transitions of a running job: check the lease, then apply an UPDATE. */
enum job_op { OP_HEARTBEAT, OP_PROGRESS, OP_COMPLETE, OP_FAIL };

struct op_args {
    enum job_op op;
    int64_t id;
    const char *owner;
    int64_t lease_ms;
    double progress;
    const char *text; /* message, result or error */
    bool permanent;
    bool *requeued;
};

static samda_status running_op(samda_store *s, const struct op_args *a, samda_error *err)
{
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    samda_status res = storage_tx_begin(s, c, err);
    if (res != SAMDA_OK) {
        storage_conn_put(s, c);
        return res;
    }
    sql_stmt *st = storage_stmt(c, "SELECT state, lease_owner, attempts, max_attempts FROM jobs WHERE id = ?1", err);
    int rc = SQL_OK;
    int attempts = 0, max_attempts = 1;
    if (!st) res = err->code;
    else {
        sql_bind_int64(st, 1, a->id);
        rc = storage_step(s, st);
        if (rc == SQL_ROW) {
            samda_job_state state = state_from(sql_col_text(st, 0));
            const char *lo = sql_col_text(st, 1);
            attempts = (int)sql_col_int64(st, 2);
            max_attempts = (int)sql_col_int64(st, 3);
            if (state == SAMDA_JOB_CANCELLED)
                res = samda_fail(err, SAMDA_ECANCELED, "job %lld was cancelled: stop working on it", (long long)a->id);
            else if (state != SAMDA_JOB_RUNNING || !lo || strcmp(lo, a->owner) != 0)
                res = samda_fail(err, SAMDA_ELOCKED, "job %lld is not running under worker %s (lease lost): stop "
                                 "working on it", (long long)a->id, a->owner);
        } else if (rc == SQL_DONE) {
            res = samda_fail(err, SAMDA_ENOENT, "job %lld: no such job", (long long)a->id);
        } else {
            res = storage_db_fail(err, c, rc, "reading job");
        }
        sql_reset(st);
    }
    int64_t now = samda_store_now_ms(s);
    if (res == SAMDA_OK) {
        bool requeue = false;
        switch (a->op) {
        case OP_HEARTBEAT:
            st = storage_stmt(c, "UPDATE jobs SET lease_expires_ms = CAST(?2 AS BIGINT) + ?3, updated_ms = ?2 WHERE id = ?1", err);
            if (st) sql_bind_int64(st, 3, a->lease_ms);
            break;
        case OP_PROGRESS:
            st = storage_stmt(c, "UPDATE jobs SET progress = ?3, progress_message = ?4, updated_ms = ?2 WHERE id = ?1",
                              err);
            if (st) {
                sql_bind_double(st, 3, a->progress);
                storage_bind_text(st, 4, a->text);
            }
            break;
        case OP_COMPLETE:
            st = storage_stmt(c, "UPDATE jobs SET state = 'done', progress = 1, result_json = ?3, error = NULL,"
                                 " lease_owner = NULL, lease_expires_ms = NULL, updated_ms = ?2, finished_ms = ?2"
                                 " WHERE id = ?1", err);
            if (st) storage_bind_text(st, 3, a->text);
            break;
        case OP_FAIL:
            requeue = !a->permanent && attempts < max_attempts;
            /* CAST: a CASE of parameters alone would be text to PostgreSQL, and ?2 a number elsewhere */
            st = storage_stmt(c, "UPDATE jobs SET state = ?3, error = ?4, lease_owner = NULL, lease_expires_ms = NULL,"
                                 " updated_ms = ?2, finished_ms = CASE WHEN ?3 = 'failed' THEN CAST(?2 AS BIGINT) END"
                                 " WHERE id = ?1",
                              err);
            if (st) {
                sql_bind_text(st, 3, requeue ? "pending" : "failed");
                storage_bind_text(st, 4, a->text ? a->text : "failed");
            }
            if (a->requeued) *a->requeued = requeue;
            break;
        }
        if (!st) res = err->code;
        else {
            sql_bind_int64(st, 1, a->id);
            sql_bind_int64(st, 2, now);
            rc = storage_exec_stmt(s, st);
            if (rc != SQL_OK) res = storage_db_fail(err, c, rc, "updating job");
        }
        if (res == SAMDA_OK && (a->op == OP_COMPLETE || a->op == OP_FAIL)) res = job_change(s, c, a->id, err);
    }
    if (res == SAMDA_OK) res = storage_tx_commit(s, c, err);
    else storage_tx_rollback(s, c);
    storage_conn_put(s, c);
    return res;
}

static samda_status check_owner(const char *owner, samda_error *err)
{
    if (!owner || !*owner || !storage_len_ok(owner, SAMDA_KEY_SIZE))
        return samda_fail(err, SAMDA_EINVAL, "job lease: owner is required (< %d bytes)", SAMDA_KEY_SIZE);
    return SAMDA_OK;
}

samda_status samda_store_job_heartbeat(samda_store *s, int64_t id, const char *owner, int64_t lease_ms,
                                       samda_error *err)
{
    STORAGE_ERR(err);
    samda_status st = check_owner(owner, err);
    if (st != SAMDA_OK) return st;
    if (lease_ms <= 0) return samda_fail(err, SAMDA_EINVAL, "job %lld heartbeat: lease must be positive", (long long)id);
    struct op_args a = {.op = OP_HEARTBEAT, .id = id, .owner = owner, .lease_ms = lease_ms};
    return running_op(s, &a, err);
}

samda_status samda_store_job_progress(samda_store *s, int64_t id, const char *owner, double progress,
                                      const char *message, samda_error *err)
{
    STORAGE_ERR(err);
    samda_status st = check_owner(owner, err);
    if (st != SAMDA_OK) return st;
    if (isnan(progress) || progress < 0) progress = 0;
    if (progress > 1) progress = 1;
    char msg[SAMDA_MESSAGE_SIZE] = "";
    if (message) snprintf(msg, sizeof msg, "%s", message);
    struct op_args a = {.op = OP_PROGRESS, .id = id, .owner = owner, .progress = progress, .text = msg};
    return running_op(s, &a, err);
}

samda_status samda_store_job_complete(samda_store *s, int64_t id, const char *owner, const char *result_json,
                                      samda_error *err)
{
    STORAGE_ERR(err);
    samda_status st = check_owner(owner, err);
    if (st == SAMDA_OK) st = storage_check_json(result_json, "job result", err);
    if (st != SAMDA_OK) return st;
    struct op_args a = {.op = OP_COMPLETE, .id = id, .owner = owner, .text = result_json};
    return running_op(s, &a, err);
}

samda_status samda_store_job_fail(samda_store *s, int64_t id, const char *owner, const char *error, bool permanent,
                                  bool *requeued, samda_error *err)
{
    STORAGE_ERR(err);
    if (requeued) *requeued = false;
    samda_status st = check_owner(owner, err);
    if (st != SAMDA_OK) return st;
    char msg[SAMDA_MESSAGE_SIZE * 4] = "failed";
    if (error) snprintf(msg, sizeof msg, "%s", error);
    struct op_args a = {.op = OP_FAIL, .id = id, .owner = owner, .text = msg, .permanent = permanent,
                        .requeued = requeued};
    st = running_op(s, &a, err);
    if (st != SAMDA_OK && requeued) *requeued = false;
    return st;
}

/* Cancel / retry --------------------------------------------------------------------------------- */

static samda_status set_state_if(samda_store *s, int64_t id, const char *sql, const char *what, samda_error *err)
{
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    samda_status res = storage_tx_begin(s, c, err);
    if (res != SAMDA_OK) {
        storage_conn_put(s, c);
        return res;
    }
    sql_stmt *st = storage_stmt(c, sql, err);
    if (!st) res = err->code;
    else {
        sql_bind_int64(st, 1, id);
        sql_bind_int64(st, 2, samda_store_now_ms(s));
        int rc = storage_exec_stmt(s, st);
        if ((rc & 0xff) == SQL_CONSTRAINT)
            res = samda_fail(err, SAMDA_EEXIST, "%s job %lld: an active job already has the same input", what,
                             (long long)id);
        else if (rc != SQL_OK) res = storage_db_fail(err, c, rc, what);
        else if (sql_changes(c->q) == 0) {
            samda_job j;
            res = job_read_c(s, c, id, &j, err);
            if (res == SAMDA_OK) {
                res = samda_fail(err, SAMDA_EINVAL, "%s job %lld: not possible in state %s", what, (long long)id,
                                 samda_job_state_name(j.state));
                samda_job_clear(&j);
            }
        } else {
            res = job_change(s, c, id, err);
        }
    }
    if (res == SAMDA_OK) res = storage_tx_commit(s, c, err);
    else storage_tx_rollback(s, c);
    storage_conn_put(s, c);
    return res;
}

samda_status samda_store_job_cancel(samda_store *s, int64_t id, samda_error *err)
{
    STORAGE_ERR(err);
    return set_state_if(s, id,
                        "UPDATE jobs SET state = 'cancelled', lease_owner = NULL, lease_expires_ms = NULL,"
                        " updated_ms = ?2, finished_ms = ?2 WHERE id = ?1 AND state IN ('pending', 'running')",
                        "cancelling", err);
}

samda_status samda_store_job_retry(samda_store *s, int64_t id, samda_error *err)
{
    STORAGE_ERR(err);
    return set_state_if(s, id,
                        "UPDATE jobs SET state = 'pending', attempts = 0, error = NULL, progress = 0,"
                        " progress_message = NULL, finished_ms = NULL, updated_ms = ?2"
                        " WHERE id = ?1 AND state IN ('failed', 'cancelled')",
                        "retrying", err);
}
