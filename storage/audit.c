/* storage/audit.c: the audit log (append-only: triggers in the schema refuse UPDATE and DELETE) and
 * the change feed (seq strictly increasing, for `/changes?since=`). Other files append changes inside
 * their own transactions through storage_change_add. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const char *const change_names[] = {"new", "updated", "deleted", "state"};

const char *samda_change_type_name(samda_change_type t)
{
    if ((int)t < 0 || (int)t > SAMDA_CHANGE_STATE) return "unknown";
    return change_names[t];
}

static samda_status check_change(const char *kind, const char *resource, samda_change_type type, samda_error *err)
{
    if (!kind || !*kind || !resource || !*resource || !storage_len_ok(kind, SAMDA_CS_SIZE) ||
        !storage_len_ok(resource, SAMDA_KEY_SIZE) || (int)type < 0 || (int)type > SAMDA_CHANGE_STATE)
        return samda_fail(err, SAMDA_EINVAL, "recording change: kind (< %d bytes), resource (< %d bytes) and a "
                          "known type are required", SAMDA_CS_SIZE, SAMDA_KEY_SIZE);
    return SAMDA_OK;
}

samda_status storage_change_add(samda_store *s, storage_conn *c, const char *kind, const char *resource,
                                samda_change_type type, samda_error *err)
{
    samda_status st = check_change(kind, resource, type, err);
    if (st != SAMDA_OK) return st;
    sql_stmt *q = storage_stmt(c, "INSERT INTO changes(time_ms, kind, resource, change_type)"
                                      " VALUES(?1, ?2, ?3, ?4)", err);
    if (!q) return err->code;
    sql_bind_int64(q, 1, samda_store_now_ms(s));
    sql_bind_text(q, 2, kind);
    sql_bind_text(q, 3, resource);
    sql_bind_text(q, 4, change_names[type]);
    int rc = storage_exec_stmt(s, q);
    return rc == SQL_OK ? SAMDA_OK : storage_db_fail(err, c, rc, "recording change");
}

samda_status samda_store_change_append(samda_store *s, const char *kind, const char *resource,
                                       samda_change_type type, samda_error *err)
{
    STORAGE_ERR(err);
    samda_status st = check_change(kind, resource, type, err);
    if (st != SAMDA_OK) return st;
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    st = storage_tx_begin(s, c, err);
    if (st == SAMDA_OK) {
        st = storage_change_add(s, c, kind, resource, type, err);
        if (st == SAMDA_OK) st = storage_tx_commit(s, c, err);
        else storage_tx_rollback(s, c);
    }
    storage_conn_put(s, c);
    return st;
}

static void read_change(sql_stmt *q, void *row)
{
    samda_change *r = row;
    r->seq = sql_col_int64(q, 0);
    r->time_ms = sql_col_int64(q, 1);
    storage_col_text(q, 2, r->kind, sizeof r->kind);
    storage_col_text(q, 3, r->resource, sizeof r->resource);
    const char *t = sql_col_text(q, 4);
    for (int i = 0; i <= SAMDA_CHANGE_STATE; i++)
        if (t && strcmp(t, change_names[i]) == 0) r->type = (samda_change_type)i;
}

samda_status samda_store_change_list(samda_store *s, int64_t since, size_t limit, samda_change **out, size_t *n,
                                     int64_t *last_seq, samda_error *err)
{
    STORAGE_ERR(err);
    *out = NULL;
    *n = 0;
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    samda_status res = SAMDA_OK;
    sql_stmt *q = storage_stmt(c, "SELECT seq, time_ms, kind, resource, change_type FROM changes"
                                      " WHERE seq > ?1 ORDER BY seq LIMIT ?2", err);
    if (!q) res = err->code;
    else {
        sql_bind_int64(q, 1, since);
        sql_bind_int64(q, 2, (int64_t)storage_list_limit(limit));
        res = storage_collect(s, c, q, sizeof **out, read_change, NULL, (void **)out, n, "listing changes", err);
    }
    if (res == SAMDA_OK && last_seq) {
        q = storage_stmt(c, "SELECT coalesce(max(seq), 0) FROM changes", err);
        if (!q) res = err->code;
        else {
            int rc = storage_step(s, q);
            if (rc == SQL_ROW) *last_seq = sql_col_int64(q, 0);
            else res = storage_db_fail(err, c, rc, "reading last change");
            sql_reset(q);
        }
    }
    storage_conn_put(s, c);
    if (res != SAMDA_OK) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return res;
}

/* Audit log ------------------------------------------------------------------------------------- */

static void clear_audit(void *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) free(((samda_audit_entry *)rows)[i].details_json);
}

void samda_audit_list_free(samda_audit_entry *e, size_t n)
{
    if (!e) return;
    clear_audit(e, n);
    free(e);
}

samda_status samda_store_audit_append(samda_store *s, const char *actor, const char *action,
                                      const char *resource, const char *outcome, const char *details_json,
                                      samda_error *err)
{
    STORAGE_ERR(err);
    if (!actor || !*actor || !action || !*action || !outcome || !*outcome ||
        !storage_len_ok(actor, SAMDA_NAME_SIZE) || !storage_len_ok(action, SAMDA_KEY_SIZE) ||
        !storage_len_ok(resource, SAMDA_MESSAGE_SIZE) || !storage_len_ok(outcome, SAMDA_CS_SIZE))
        return samda_fail(err, SAMDA_EINVAL, "appending audit entry: actor, action and outcome are required and "
                          "must fit their bounds");
    samda_status st = storage_check_json(details_json, "audit details", err);
    if (st != SAMDA_OK) return st;
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    st = storage_tx_begin(s, c, err);
    if (st == SAMDA_OK) {
        sql_stmt *q = storage_stmt(c, "INSERT INTO audit_log(time_ms, actor, action, resource, outcome,"
                                          " details_json) VALUES(?1, ?2, ?3, ?4, ?5, ?6)", err);
        if (!q) st = err->code;
        else {
            sql_bind_int64(q, 1, samda_store_now_ms(s));
            sql_bind_text(q, 2, actor);
            sql_bind_text(q, 3, action);
            storage_bind_text(q, 4, resource);
            sql_bind_text(q, 5, outcome);
            storage_bind_text(q, 6, details_json);
            int rc = storage_exec_stmt(s, q);
            if (rc != SQL_OK) st = storage_db_fail(err, c, rc, "appending audit entry");
        }
        if (st == SAMDA_OK) st = storage_tx_commit(s, c, err);
        else storage_tx_rollback(s, c);
    }
    storage_conn_put(s, c);
    return st;
}

static void read_audit(sql_stmt *q, void *row)
{
    samda_audit_entry *r = row;
    r->id = sql_col_int64(q, 0);
    r->time_ms = sql_col_int64(q, 1);
    storage_col_text(q, 2, r->actor, sizeof r->actor);
    storage_col_text(q, 3, r->action, sizeof r->action);
    storage_col_text(q, 4, r->resource, sizeof r->resource);
    storage_col_text(q, 5, r->outcome, sizeof r->outcome);
    r->details_json = storage_col_dup(q, 6);
}

samda_status samda_store_audit_list(samda_store *s, int64_t after_id, size_t limit, samda_audit_entry **out,
                                    size_t *n, samda_error *err)
{
    STORAGE_ERR(err);
    *out = NULL;
    *n = 0;
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    samda_status res = SAMDA_OK;
    sql_stmt *q = storage_stmt(c, "SELECT id, time_ms, actor, action, resource, outcome, details_json"
                                      " FROM audit_log WHERE id > ?1 ORDER BY id LIMIT ?2", err);
    if (!q) res = err->code;
    else {
        sql_bind_int64(q, 1, after_id);
        sql_bind_int64(q, 2, (int64_t)storage_list_limit(limit));
        res = storage_collect(s, c, q, sizeof **out, read_audit, clear_audit, (void **)out, n, "listing audit log",
                              err);
    }
    storage_conn_put(s, c);
    return res;
}
