/* storage/purge.c: deleting series and studies, and choosing what a retention policy deletes.
 * One write transaction removes the rows (instances, the results whose DICOM-SEG is one of them,
 * their export items, the series, the study and patient left empty), cancels the series' pending
 * jobs, appends change-feed rows and lists every file in object_intents; after commit the files are
 * unlinked. A crash between the two leaves files that no row claims but an intent names, which the
 * next open removes (objects.c, storage_recover): the index and the object store never disagree. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef struct purge_files {
    char (*relpath)[SAMDA_RELPATH_SIZE];
    size_t n, cap;
} purge_files;

static void files_free(purge_files *f)
{
    free(f->relpath);
    memset(f, 0, sizeof *f);
}

static samda_status files_add(purge_files *f, const char *relpath, samda_error *err)
{
    if (f->n == f->cap) {
        size_t cap = f->cap ? 2 * f->cap : 64;
        void *p = realloc(f->relpath, cap * sizeof *f->relpath);
        if (!p) return samda_fail(err, SAMDA_ENOMEM, "deleting: out of memory listing files");
        f->relpath = p;
        f->cap = cap;
    }
    snprintf(f->relpath[f->n++], SAMDA_RELPATH_SIZE, "%s", relpath);
    return SAMDA_OK;
}

/* Step st to its end: column 0 of each row into f; column 1 summed into *bytes when bytes is given. */
static samda_status collect(samda_store *s, storage_conn *c, sql_stmt *st, purge_files *f, uint64_t *bytes,
                            const char *what, samda_error *err)
{
    int rc;
    samda_status res = SAMDA_OK;
    while (res == SAMDA_OK && (rc = storage_step(s, st)) == SQL_ROW) {
        char text[SAMDA_RELPATH_SIZE];
        storage_col_text(st, 0, text, sizeof text);
        if (bytes) *bytes += (uint64_t)sql_col_int64(st, 1);
        res = files_add(f, text, err);
    }
    sql_reset(st);
    if (res != SAMDA_OK) return res;
    return rc == SQL_DONE ? SAMDA_OK : storage_db_fail(err, c, rc, what);
}

/* Files of the series: its instances, and results recorded for a SEG of this series that were not
 * indexed as instances (results written before results became instances of their study). */
static const char SQL_FILES[] =
    "SELECT file_relpath, file_size FROM instances WHERE series_ref = ?1 UNION"
    " SELECT file_relpath, file_size FROM results WHERE seg_series_uid = ?2";

static samda_status list_files(samda_store *s, storage_conn *c, int64_t series_id, const char *uid,
                               purge_files *f, samda_purge_report *rep, samda_error *err)
{
    sql_stmt *st = storage_stmt(c, SQL_FILES, err);
    if (!st) return err->code;
    sql_bind_int64(st, 1, series_id);
    sql_bind_text(st, 2, uid);
    samda_status res = collect(s, c, st, f, &rep->bytes, "deleting series: listing files", err);
    if (res != SAMDA_OK) return res;
    for (size_t i = 0; i < f->n && res == SAMDA_OK; i++) res = storage_intent_add(s, c, f->relpath[i], err);
    return res;
}

/* A series a job is working on, or whose files are being sent, is not deleted under it. */
static const char SQL_SERIES_SENDING[] =
    "SELECT 'a job is running on it' FROM jobs WHERE series_uid = ?2 AND state = 'running' UNION ALL"
    " SELECT 'one of its files is being sent to a destination' FROM exports e JOIN instances i"
    " ON e.relpath = i.file_relpath WHERE i.series_ref = ?1 AND e.state = 'sending' LIMIT 1";

static samda_status check_idle(samda_store *s, storage_conn *c, int64_t series_id, const char *uid, samda_error *err)
{
    sql_stmt *st = storage_stmt(c, SQL_SERIES_SENDING, err);
    if (!st) return err->code;
    sql_bind_int64(st, 1, series_id);
    sql_bind_text(st, 2, uid);
    int rc = storage_step(s, st);
    char why[96] = "";
    if (rc == SQL_ROW) storage_col_text(st, 0, why, sizeof why);
    sql_reset(st);
    if (rc == SQL_ROW)
        return samda_fail(err, SAMDA_EBUSY, "deleting series %s: %s; try again when it is done (or cancel the job)",
                          uid, why);
    return rc == SQL_DONE ? SAMDA_OK : storage_db_fail(err, c, rc, "deleting series");
}

/* The row statements, in order; ?1 = series id, ?2 = series UID, ?3 = now (each binds what it uses;
 * binding a parameter a statement lacks is a no-op). */
static const char *const SQL_DELETE_STEPS[] = {
    "DELETE FROM exports WHERE relpath IN (SELECT file_relpath FROM instances WHERE series_ref = ?1"
    " UNION SELECT file_relpath FROM results WHERE seg_series_uid = ?2)",
    /* the RTSTRUCT/SR rows of the results that go, and those whose file is one of the instances (the
     * objects stay instances of their study until their own series is deleted) */
    "DELETE FROM result_objects WHERE file_relpath IN (SELECT file_relpath FROM instances WHERE series_ref = ?1)"
    " OR result_id IN (SELECT id FROM results WHERE seg_series_uid = ?2 OR file_relpath IN"
    " (SELECT file_relpath FROM instances WHERE series_ref = ?1))",
    "DELETE FROM results WHERE (seg_series_uid = ?2 OR file_relpath IN"
    " (SELECT file_relpath FROM instances WHERE series_ref = ?1))",
    "UPDATE jobs SET state = 'cancelled', error = 'the series was deleted', finished_ms = ?3, updated_ms = ?3"
    " WHERE series_uid = ?2 AND state = 'pending'",
    "DELETE FROM instances WHERE series_ref = ?1",
    "DELETE FROM series_holds WHERE series_ref = ?1",
    "DELETE FROM series WHERE id = ?1",
};

static samda_status delete_rows(samda_store *s, storage_conn *c, int64_t series_id, const char *uid,
                                samda_purge_report *rep, samda_error *err)
{
    for (size_t i = 0; i < sizeof SQL_DELETE_STEPS / sizeof SQL_DELETE_STEPS[0]; i++) {
        sql_stmt *st = storage_stmt(c, SQL_DELETE_STEPS[i], err);
        if (!st) return err->code;
        sql_bind_int64(st, 1, series_id);
        sql_bind_text(st, 2, uid);
        sql_bind_int64(st, 3, samda_store_now_ms(s));
        int rc = storage_exec_stmt(s, st);
        if (rc != SQL_OK) return storage_db_fail(err, c, rc, "deleting series");
        size_t changed = (size_t)sql_changes(c->q);
        if (i == 2) rep->n_results += changed;
        if (i == 4) rep->n_instances += changed;
    }
    rep->n_series++;
    return storage_change_add(s, c, "series", uid, SAMDA_CHANGE_DELETED, err);
}

/* The study (and its patient) once its last series is gone. */
static samda_status drop_empty_parents(samda_store *s, storage_conn *c, int64_t study_id, samda_error *err)
{
    static const char SQL_STUDY[] = "SELECT study_uid, patient_ref FROM studies WHERE id = ?1 AND NOT EXISTS"
                                    " (SELECT 1 FROM series WHERE study_ref = ?1)";
    static const char SQL_DEL_STUDY[] = "DELETE FROM studies WHERE id = ?1";
    static const char SQL_DEL_PATIENT[] =
        "DELETE FROM patients WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM studies WHERE patient_ref = ?1)";
    sql_stmt *st = storage_stmt(c, SQL_STUDY, err);
    if (!st) return err->code;
    sql_bind_int64(st, 1, study_id);
    int rc = storage_step(s, st);
    char uid[SAMDA_UID_SIZE] = "";
    int64_t patient = 0;
    if (rc == SQL_ROW) {
        storage_col_text(st, 0, uid, sizeof uid);
        patient = sql_col_int64(st, 1);
    }
    sql_reset(st);
    if (rc == SQL_DONE) return SAMDA_OK; /* other series remain */
    if (rc != SQL_ROW) return storage_db_fail(err, c, rc, "deleting study");
    const char *sql[2] = {SQL_DEL_STUDY, SQL_DEL_PATIENT};
    int64_t id[2] = {study_id, patient};
    for (int i = 0; i < 2; i++) {
        if (!(st = storage_stmt(c, sql[i], err))) return err->code;
        sql_bind_int64(st, 1, id[i]);
        if ((rc = storage_exec_stmt(s, st)) != SQL_OK) return storage_db_fail(err, c, rc, "deleting study");
    }
    return storage_change_add(s, c, "study", uid, SAMDA_CHANGE_DELETED, err);
}

/* One series, inside the caller's transaction. */
static samda_status delete_series_tx(samda_store *s, storage_conn *c, const char *uid, purge_files *f,
                                     samda_purge_report *rep, samda_error *err)
{
    static const char SQL_FIND[] = "SELECT id, study_ref FROM series WHERE series_uid = ?1";
    sql_stmt *st = storage_stmt(c, SQL_FIND, err);
    if (!st) return err->code;
    sql_bind_text(st, 1, uid);
    int rc = storage_step(s, st);
    int64_t id = 0, study = 0;
    if (rc == SQL_ROW) {
        id = sql_col_int64(st, 0);
        study = sql_col_int64(st, 1);
    }
    sql_reset(st);
    if (rc == SQL_DONE) return samda_fail(err, SAMDA_ENOENT, "deleting series %s: not in the index", uid);
    if (rc != SQL_ROW) return storage_db_fail(err, c, rc, "deleting series");
    samda_status res = check_idle(s, c, id, uid, err);
    if (res == SAMDA_OK) res = list_files(s, c, id, uid, f, rep, err);
    if (res == SAMDA_OK) res = delete_rows(s, c, id, uid, rep, err);
    if (res == SAMDA_OK) res = drop_empty_parents(s, c, study, err);
    return res;
}

/* The series of a study, read inside the transaction. */
static samda_status study_series(samda_store *s, storage_conn *c, const char *study_uid, purge_files *uids,
                                 samda_error *err)
{
    static const char SQL[] = "SELECT se.series_uid FROM series se JOIN studies st ON se.study_ref = st.id"
                              " WHERE st.study_uid = ?1 ORDER BY se.id";
    sql_stmt *st = storage_stmt(c, SQL, err);
    if (!st) return err->code;
    sql_bind_text(st, 1, study_uid);
    samda_status res = collect(s, c, st, uids, NULL, "deleting study", err);
    if (res != SAMDA_OK) return res;
    return uids->n ? SAMDA_OK : samda_fail(err, SAMDA_ENOENT, "deleting study %s: not in the index", study_uid);
}

/* Delete the series named (or every series of the study named), then unlink the files. */
static samda_status purge(samda_store *s, const char *study_uid, const char *series_uid, samda_purge_report *rep,
                          samda_error *err)
{
    samda_purge_report local = {0};
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    purge_files files = {0}, uids = {0};
    samda_status res = storage_tx_begin(s, c, err);
    if (res == SAMDA_OK) {
        if (study_uid) res = study_series(s, c, study_uid, &uids, err);
        else res = files_add(&uids, series_uid, err);
        for (size_t i = 0; i < uids.n && res == SAMDA_OK; i++)
            res = delete_series_tx(s, c, uids.relpath[i], &files, &local, err);
        if (res == SAMDA_OK) res = storage_tx_commit(s, c, err);
        else storage_tx_rollback(s, c);
    }
    storage_conn_put(s, c);
    if (res == SAMDA_OK) {
        for (size_t i = 0; i < files.n; i++)
            if (!storage_fault(s, SAMDA_FAULT_UNLINK)) storage_object_unlink(s, files.relpath[i]);
        if (rep) {
            rep->n_series += local.n_series;
            rep->n_instances += local.n_instances;
            rep->n_results += local.n_results;
            rep->bytes += local.bytes;
        }
    }
    files_free(&files);
    files_free(&uids);
    return res;
}

samda_status samda_store_series_delete(samda_store *s, const char *series_uid, samda_purge_report *rep,
                                       samda_error *err)
{
    STORAGE_ERR(err);
    if (!samda_uid_is_valid(series_uid)) return samda_fail(err, SAMDA_EBADUID, "deleting series: not a valid UID");
    return purge(s, NULL, series_uid, rep, err);
}

samda_status samda_store_study_delete(samda_store *s, const char *study_uid, samda_purge_report *rep,
                                      samda_error *err)
{
    STORAGE_ERR(err);
    if (!samda_uid_is_valid(study_uid)) return samda_fail(err, SAMDA_EBADUID, "deleting study: not a valid UID");
    return purge(s, study_uid, NULL, rep, err);
}

/* Retention ------------------------------------------------------------------------------------ */

/* Source series of the site (no result among their instances) with at least one result, every
 * export item of every result (its SEG and the RTSTRUCT and SR made beside it) delivered, the last
 * delivery before ?2; oldest delivery first. */
static const char SQL_SOURCE_DUE[] =
    "SELECT se.series_uid FROM series se JOIN results r ON r.series_uid = se.series_uid"
    " JOIN exports e ON e.relpath = r.file_relpath"
    " OR e.relpath IN (SELECT o.file_relpath FROM result_objects o WHERE o.result_id = r.id)"
    " WHERE se.site_id = (SELECT id FROM sites WHERE name = ?1)"
    " AND NOT EXISTS (SELECT 1 FROM instances i WHERE i.series_ref = se.id AND (i.flags & 2) != 0)"
    " GROUP BY se.id HAVING sum(CASE WHEN e.state <> 'done' THEN 1 ELSE 0 END) = 0 AND max(e.updated_ms) <= ?2"
    " ORDER BY max(e.updated_ms), se.id LIMIT ?3";
/* Result SEG series of the site made before ?2 whose export items (if any) were all delivered;
 * oldest first. */
static const char SQL_RESULTS_DUE[] =
    "SELECT r.seg_series_uid FROM results r JOIN series se ON se.series_uid = r.seg_series_uid"
    " LEFT JOIN exports e ON e.relpath = r.file_relpath"
    " WHERE se.site_id = (SELECT id FROM sites WHERE name = ?1)"
    " GROUP BY r.seg_series_uid HAVING max(r.created_ms) <= ?2 AND sum(CASE WHEN coalesce(e.state, 'done') <> 'done' THEN 1 ELSE 0 END) = 0"
    " ORDER BY max(r.created_ms) LIMIT ?3";

static void read_uid(sql_stmt *st, void *row) { storage_col_text(st, 0, row, SAMDA_UID_SIZE); }

samda_status samda_store_retention_due(samda_store *s, const char *site, samda_retention_kind kind, int64_t before_ms,
                                       size_t limit, char (**uids)[SAMDA_UID_SIZE], size_t *n, samda_error *err)
{
    STORAGE_ERR(err);
    *uids = NULL;
    *n = 0;
    if (!samda_store_name_is_valid(site)) return samda_fail(err, SAMDA_ENOENT, "retention: invalid site name");
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    sql_stmt *st = storage_stmt(c, kind == SAMDA_RETAIN_SOURCE ? SQL_SOURCE_DUE : SQL_RESULTS_DUE, err);
    samda_status res = st ? SAMDA_OK : err->code;
    if (st) {
        sql_bind_text(st, 1, site);
        sql_bind_int64(st, 2, before_ms);
        sql_bind_int64(st, 3, (int64_t)storage_list_limit(limit));
        res = storage_collect(s, c, st, SAMDA_UID_SIZE, read_uid, NULL, (void **)uids, n, "retention", err);
    }
    storage_conn_put(s, c);
    return res;
}

samda_status samda_store_bytes(samda_store *s, uint64_t *bytes, samda_error *err)
{
    STORAGE_ERR(err);
    /* "AS files": PostgreSQL wants a name for a subquery in FROM */
    static const char SQL[] = "SELECT coalesce(sum(file_size), 0) FROM (SELECT file_relpath, file_size FROM instances"
                              " UNION SELECT file_relpath, file_size FROM results"
                              " UNION SELECT file_relpath, file_size FROM result_objects"
                              " UNION SELECT file_relpath, file_size FROM adapters) AS files";
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    sql_stmt *st = storage_stmt(c, SQL, err);
    samda_status res = st ? SAMDA_OK : err->code;
    if (st) {
        int rc = storage_step(s, st);
        if (rc == SQL_ROW) *bytes = (uint64_t)sql_col_int64(st, 0);
        else res = storage_db_fail(err, c, rc, "summing stored bytes");
        sql_reset(st);
    }
    storage_conn_put(s, c);
    return res;
}
