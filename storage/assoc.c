/* storage/assoc.c: the DICOM associations an instance arrives over: opened, ended (an aborted one
 * flags its instances), read back, summarised per series, and aborted in bulk at start-up (a process
 * that died left them open). index.c counts each association's instances as it indexes them; tests
 * are in tests/unit/storage/test_index.c. */
#include <string.h>

#include "internal.h"

static const char *const assoc_state_names[] = {"open", "released", "aborted", "rejected"};

static const char SQL_ASSOC_STATE[] = "SELECT state FROM associations WHERE id = ?1";

/* Associations ----------------------------------------------------------------------------------- */

samda_status samda_store_assoc_begin(samda_store *s, const char *calling_ae, const char *called_ae,
                                     const char *peer, const char *site, int64_t *id, samda_error *err)
{
    STORAGE_ERR(err);
    if (!calling_ae || !called_ae || !storage_len_ok(calling_ae, SAMDA_AE_SIZE) ||
        !storage_len_ok(called_ae, SAMDA_AE_SIZE) || !storage_len_ok(peer, SAMDA_NAME_SIZE) ||
        !storage_len_ok(site, SAMDA_NAME_SIZE))
        return samda_fail(err, SAMDA_EINVAL, "recording association: AE title missing or a field too long");
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    samda_status res = storage_tx_begin(s, c, err);
    if (res == SAMDA_OK) {
        int64_t site_id = 0;
        if (site && *site) {
            res = storage_site_lookup(s, c, site, &site_id, err);
            if (res == SAMDA_ENOENT) res = samda_fail(err, SAMDA_EINVAL, "recording association: unknown site");
        }
        sql_stmt *st = NULL;
        if (res == SAMDA_OK && !(st = storage_stmt(c, "INSERT INTO associations(calling_ae, called_ae, peer,"
                                                      " site_id, started_ms, node) VALUES(?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
                                                   err)))
            res = err->code;
        if (res == SAMDA_OK) {
            sql_bind_text(st, 1, calling_ae);
            sql_bind_text(st, 2, called_ae);
            storage_bind_text(st, 3, peer);
            storage_bind_int64_or_null(st, 4, site_id);
            sql_bind_int64(st, 5, samda_store_now_ms(s));
            storage_bind_text(st, 6, s->node);
            int rc = storage_exec_insert(s, st, id);
            if (rc != SQL_OK) res = storage_db_fail(err, c, rc, "recording association");
        }
        if (res == SAMDA_OK) res = storage_tx_commit(s, c, err);
        else storage_tx_rollback(s, c);
    }
    storage_conn_put(s, c);
    return res;
}

samda_status samda_store_assoc_end(samda_store *s, int64_t id, samda_assoc_state state, samda_error *err)
{
    STORAGE_ERR(err);
    if (state != SAMDA_ASSOC_STATE_RELEASED && state != SAMDA_ASSOC_STATE_ABORTED && state != SAMDA_ASSOC_STATE_REJECTED)
        return samda_fail(err, SAMDA_EINVAL, "ending association %lld: final state must be released, aborted "
                          "or rejected", (long long)id);
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    samda_status res = storage_tx_begin(s, c, err);
    if (res == SAMDA_OK) {
        sql_stmt *st = storage_stmt(c, "UPDATE associations SET state = ?2, ended_ms = ?3 WHERE id = ?1"
                                           " AND state = 'open'", err);
        int rc = SQL_OK;
        if (!st) res = err->code;
        else {
            sql_bind_int64(st, 1, id);
            sql_bind_text(st, 2, assoc_state_names[state]);
            sql_bind_int64(st, 3, samda_store_now_ms(s));
            rc = storage_exec_stmt(s, st);
            if (rc != SQL_OK) res = storage_db_fail(err, c, rc, "ending association");
        }
        if (res == SAMDA_OK && sql_changes(c->q) == 0) {
            st = storage_stmt(c, SQL_ASSOC_STATE, err);
            if (!st) res = err->code;
            else {
                sql_bind_int64(st, 1, id);
                rc = storage_step(s, st);
                sql_reset(st);
                res = rc == SQL_ROW ? samda_fail(err, SAMDA_EINVAL, "ending association %lld: already ended",
                                                    (long long)id)
                      : rc == SQL_DONE ? samda_fail(err, SAMDA_ENOENT, "ending association %lld: unknown",
                                                       (long long)id)
                                          : storage_db_fail(err, c, rc, "ending association");
            }
        }
        if (res == SAMDA_OK && state == SAMDA_ASSOC_STATE_ABORTED) {
            st = storage_stmt(c, "UPDATE instances SET flags = flags | 1 WHERE association_id = ?1", err);
            if (!st) res = err->code;
            else {
                sql_bind_int64(st, 1, id);
                rc = storage_exec_stmt(s, st);
                if (rc != SQL_OK) res = storage_db_fail(err, c, rc, "flagging instances of aborted association");
            }
        }
        if (res == SAMDA_OK) res = storage_tx_commit(s, c, err);
        else storage_tx_rollback(s, c);
    }
    storage_conn_put(s, c);
    return res;
}

samda_status samda_store_assoc_get(samda_store *s, int64_t id, samda_association *out, samda_error *err)
{
    STORAGE_ERR(err);
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    sql_stmt *st = storage_stmt(c, "SELECT a.id, a.calling_ae, a.called_ae, a.peer, si.name, a.started_ms,"
                                       " a.ended_ms, a.state, a.n_instances FROM associations a"
                                       " LEFT JOIN sites si ON si.id = a.site_id WHERE a.id = ?1", err);
    samda_status res = err->code;
    if (st) {
        sql_bind_int64(st, 1, id);
        int rc = storage_step(s, st);
        if (rc == SQL_ROW) {
            memset(out, 0, sizeof *out);
            out->id = sql_col_int64(st, 0);
            storage_col_text(st, 1, out->calling_ae, sizeof out->calling_ae);
            storage_col_text(st, 2, out->called_ae, sizeof out->called_ae);
            storage_col_text(st, 3, out->peer, sizeof out->peer);
            storage_col_text(st, 4, out->site, sizeof out->site);
            out->started_ms = sql_col_int64(st, 5);
            out->ended_ms = sql_col_int64(st, 6);
            out->state = (samda_assoc_state)storage_name_index(assoc_state_names, 4,
                                                              sql_col_text(st, 7));
            out->n_instances = sql_col_int64(st, 8);
            res = SAMDA_OK;
        } else if (rc == SQL_DONE) {
            res = samda_fail(err, SAMDA_ENOENT, "reading association %lld: unknown", (long long)id);
        } else {
            res = storage_db_fail(err, c, rc, "reading association");
        }
        sql_reset(st);
    }
    storage_conn_put(s, c);
    return res;
}

samda_status samda_store_series_assoc_summary(samda_store *s, const char *series_uid,
                                              samda_series_assoc_summary *out, samda_error *err)
{
    STORAGE_ERR(err);
    memset(out, 0, sizeof *out);
    if (!samda_uid_is_valid(series_uid))
        return samda_fail(err, SAMDA_EBADUID, "summarising series associations: series UID is not a valid UID");
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    sql_stmt *st = storage_stmt(c, "SELECT count(*), coalesce(sum(CASE WHEN a.state = 'open' THEN 1 ELSE 0 END), 0),"
                                       " coalesce(sum(CASE WHEN (i.flags & 1) != 0 THEN 1 ELSE 0 END), 0) FROM instances i"
                                       " JOIN series se ON se.id = i.series_ref"
                                       " LEFT JOIN associations a ON a.id = i.association_id"
                                       " WHERE se.series_uid = ?1", err);
    samda_status res = err->code;
    if (st) {
        sql_bind_text(st, 1, series_uid);
        int rc = storage_step(s, st);
        if (rc == SQL_ROW) {
            out->n_instances = sql_col_int64(st, 0);
            out->n_from_open = sql_col_int64(st, 1);
            out->n_from_aborted = sql_col_int64(st, 2);
            res = SAMDA_OK;
        } else {
            res = storage_db_fail(err, c, rc, "summarising series associations");
        }
        sql_reset(st);
    }
    storage_conn_put(s, c);
    return res;
}

/* The open associations that end as aborted: this node's (and those recorded without a node) when ?2
 * is NULL, else those of other nodes whose last heartbeat is before ?2. ?1: this node (NULL: none, and
 * then every open association is this process's). Typed uses of a parameter come before its IS NULL
 * (PostgreSQL infers a parameter's type from its first use). */
#define ABORTABLE                                                                                    \
    "SELECT id FROM associations WHERE state = 'open' AND ("                                         \
    " (node IN (SELECT name FROM nodes WHERE heartbeat_ms < ?2) AND (node <> ?1 OR ?1 IS NULL)) OR"   \
    " (?2 IS NULL AND (node = ?1 OR node IS NULL OR ?1 IS NULL)))"

static samda_status abort_open(samda_store *s, int64_t beat_before_ms, size_t *n, samda_error *err)
{
    STORAGE_ERR(err);
    if (n) *n = 0;
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    samda_status res = storage_tx_begin(s, c, err);
    if (res == SAMDA_OK) {
        /* Flag first: the instances of associations about to change state. */
        sql_stmt *st = storage_stmt(c, "UPDATE instances SET flags = flags | 1 WHERE association_id IN (" ABORTABLE ")",
                                    err);
        int rc = SQL_ERROR;
        if (st) {
            storage_bind_text(st, 1, s->node);
            storage_bind_int64_or_null(st, 2, beat_before_ms);
            rc = storage_exec_stmt(s, st);
        }
        if (!st) res = err->code;
        else if (rc != SQL_OK) res = storage_db_fail(err, c, rc, "flagging instances of stale associations");
        if (res == SAMDA_OK) {
            st = storage_stmt(c, "UPDATE associations SET state = 'aborted', ended_ms = ?3 WHERE id IN (" ABORTABLE ")",
                              err);
            if (!st) {
                res = err->code;
            } else {
                storage_bind_text(st, 1, s->node);
                storage_bind_int64_or_null(st, 2, beat_before_ms);
                sql_bind_int64(st, 3, samda_store_now_ms(s));
                rc = storage_exec_stmt(s, st);
                if (rc != SQL_OK) res = storage_db_fail(err, c, rc, "aborting stale associations");
                else if (n) *n = (size_t)sql_changes(c->q);
            }
        }
        if (res == SAMDA_OK) res = storage_tx_commit(s, c, err);
        else storage_tx_rollback(s, c);
    }
    storage_conn_put(s, c);
    return res;
}
#undef ABORTABLE

samda_status samda_store_assoc_abort_stale(samda_store *s, size_t *n, samda_error *err)
{
    return abort_open(s, 0, n, err);
}

samda_status samda_store_assoc_abort_dead(samda_store *s, int64_t beat_before_ms, size_t *n, samda_error *err)
{
    STORAGE_ERR(err);
    if (beat_before_ms <= 0) return samda_fail(err, SAMDA_EINVAL, "aborting associations of dead nodes: no time given");
    return abort_open(s, beat_before_ms, n, err);
}
