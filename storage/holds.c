/* Series the routing rules hold back (storage.h: samda_store_series_hold and friends), and what a
 * rule reads of a series beyond its row: the acquisition attributes of its first instance. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dicom_rules.h"
#include "internal.h"

samda_status samda_store_series_acquisition(samda_store *s, const char *series_uid, samda_series_acq *out,
                                            samda_error *err)
{
    STORAGE_ERR(err);
    memset(out, 0, sizeof *out);
    if (!samda_uid_is_valid(series_uid))
        return samda_fail(err, SAMDA_EBADUID, "reading series attributes: series UID is not a valid UID");
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    /* NULLS LAST: the lowest instance number, an instance without one only when none has one (SQLite
     * puts NULLs first, PostgreSQL last: the two would pick different instances). */
    sql_stmt *st = storage_stmt(c, "SELECT i.rows, i.columns, i.slice_thickness, i.calling_ae, a.called_ae"
                                       " FROM instances i JOIN series se ON se.id = i.series_ref"
                                       " LEFT JOIN associations a ON a.id = i.association_id"
                                       " WHERE se.series_uid = ?1 ORDER BY i.instance_number NULLS LAST, i.id LIMIT 1",
                                err);
    samda_status res = err->code;
    if (st) {
        sql_bind_text(st, 1, series_uid);
        int rc = storage_step(s, st);
        if (rc == SQL_ROW) {
            out->has_rows = !sql_col_null(st, 0);
            out->rows = sql_col_int64(st, 0);
            out->has_columns = !sql_col_null(st, 1);
            out->columns = sql_col_int64(st, 1);
            out->has_slice_thickness = !sql_col_null(st, 2);
            out->slice_thickness = sql_col_double(st, 2);
            storage_col_text(st, 3, out->calling_ae, sizeof out->calling_ae);
            storage_col_text(st, 4, out->called_ae, sizeof out->called_ae);
            res = SAMDA_OK;
        } else if (rc == SQL_DONE) {
            res = samda_fail(err, SAMDA_ENOENT, "series %s: no instance indexed", series_uid);
        } else {
            res = storage_db_fail(err, c, rc, "reading series attributes");
        }
        sql_reset(st);
    }
    storage_conn_put(s, c);
    return res;
}

samda_status samda_store_series_hold(samda_store *s, const char *series_uid, const char *reason, samda_error *err)
{
    STORAGE_ERR(err);
    if (!samda_uid_is_valid(series_uid))
        return samda_fail(err, SAMDA_EBADUID, "holding series: series UID is not a valid UID");
    char why[SAMDA_MESSAGE_SIZE] = "";
    if (reason) snprintf(why, sizeof why, "%s", reason);
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    samda_status res = storage_tx_begin(s, c, err);
    if (res == SAMDA_OK) {
        sql_stmt *st = storage_stmt(c, "INSERT INTO series_holds(series_ref, since_ms, reason)"
                                           " SELECT id, ?2, ?3 FROM series WHERE series_uid = ?1"
                                           " ON CONFLICT(series_ref) DO UPDATE SET reason = excluded.reason", err);
        if (!st) res = err->code;
        else {
            sql_bind_text(st, 1, series_uid);
            sql_bind_int64(st, 2, samda_store_now_ms(s));
            sql_bind_text(st, 3, why);
            int rc = storage_exec_stmt(s, st);
            if (rc != SQL_OK) res = storage_db_fail(err, c, rc, "holding series");
            else if (sql_changes(c->q) == 0)
                res = samda_fail(err, SAMDA_ENOENT, "holding series %s: not in the index", series_uid);
        }
        if (res == SAMDA_OK) res = storage_tx_commit(s, c, err);
        else storage_tx_rollback(s, c);
    }
    storage_conn_put(s, c);
    return res;
}

samda_status samda_store_series_release(samda_store *s, const char *series_uid, samda_error *err)
{
    STORAGE_ERR(err);
    if (!samda_uid_is_valid(series_uid))
        return samda_fail(err, SAMDA_EBADUID, "releasing series: series UID is not a valid UID");
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    samda_status res = storage_tx_begin(s, c, err);
    if (res == SAMDA_OK) {
        sql_stmt *st = storage_stmt(c, "DELETE FROM series_holds WHERE series_ref ="
                                           " (SELECT id FROM series WHERE series_uid = ?1)", err);
        if (!st) res = err->code;
        else {
            sql_bind_text(st, 1, series_uid);
            int rc = storage_exec_stmt(s, st);
            if (rc != SQL_OK) res = storage_db_fail(err, c, rc, "releasing series");
        }
        if (res == SAMDA_OK) res = storage_tx_commit(s, c, err);
        else storage_tx_rollback(s, c);
    }
    storage_conn_put(s, c);
    return res;
}

static void read_hold(sql_stmt *st, void *row)
{
    samda_series_hold *h = row;
    storage_col_text(st, 0, h->series_uid, sizeof h->series_uid);
    h->since_ms = sql_col_int64(st, 1);
    storage_col_text(st, 2, h->reason, sizeof h->reason);
}

samda_status samda_store_series_held(samda_store *s, size_t limit, samda_series_hold **rows, size_t *n,
                                     samda_error *err)
{
    STORAGE_ERR(err);
    *rows = NULL;
    *n = 0;
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    sql_stmt *st = storage_stmt(c, "SELECT se.series_uid, h.since_ms, h.reason FROM series_holds h"
                                       " JOIN series se ON se.id = h.series_ref ORDER BY h.since_ms, h.series_ref"
                                       " LIMIT ?1", err);
    samda_status res = err->code;
    if (st) {
        sql_bind_int64(st, 1, (int64_t)storage_list_limit(limit));
        res = storage_collect(s, c, st, sizeof **rows, read_hold, NULL, (void **)rows, n, "listing held series", err);
    }
    storage_conn_put(s, c);
    return res;
}
