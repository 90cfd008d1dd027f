/* storage/export.c: the durable per-destination export queue (results sent back to a PACS).
 * pending -> sending (claimed) -> done; a transient failure returns the item to pending with an
 * exponential delay in minutes (base * 2^(attempts-1), capped), a permanent one or too many attempts
 * make it failed; an admin can retry it. A claim is a lease too: an item left "sending" by a crashed
 * sender is claimable again after params.export_lease_ms. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const char *const export_state_names[] = {"pending", "sending", "done", "failed"};

static samda_export_state state_from(const char *v)
{
    for (int i = 0; i <= SAMDA_EXPORT_FAILED; i++)
        if (v && strcmp(v, export_state_names[i]) == 0) return (samda_export_state)i;
    return SAMDA_EXPORT_FAILED;
}

#define EXPORT_COLS                                                                                        \
    "SELECT id, destination_id, relpath, sop_uid, state, attempts, next_attempt_ms, last_error, permanent," \
    " created_ms, updated_ms FROM exports "

static void read_item(sql_stmt *st, void *row)
{
    samda_export_item *r = row;
    memset(r, 0, sizeof *r);
    r->id = sql_col_int64(st, 0);
    r->destination_id = sql_col_int64(st, 1);
    storage_col_text(st, 2, r->relpath, sizeof r->relpath);
    storage_col_text(st, 3, r->sop_uid, sizeof r->sop_uid);
    r->state = state_from(sql_col_text(st, 4));
    r->attempts = (int)sql_col_int64(st, 5);
    r->next_attempt_ms = sql_col_int64(st, 6);
    storage_col_text(st, 7, r->last_error, sizeof r->last_error);
    r->permanent = (int)sql_col_int64(st, 8) != 0;
    r->created_ms = sql_col_int64(st, 9);
    r->updated_ms = sql_col_int64(st, 10);
}

/* An export_find row: the item plus the id of the result whose file it sends. */
static void read_item_with_result(sql_stmt *st, void *row)
{
    samda_export_item *r = row;
    read_item(st, r);
    r->result_id = sql_col_int64(st, 11);
}

static samda_status read_items(samda_store *s, storage_conn *c, sql_stmt *st, samda_export_item **out, size_t *n,
                               const char *what, samda_error *err)
{
    return storage_collect(s, c, st, sizeof **out, read_item, NULL, (void **)out, n, what, err);
}

samda_status samda_store_export_enqueue(samda_store *s, int64_t destination_id, const char *relpath,
                                        const char *sop_uid, int64_t *id, samda_error *err)
{
    STORAGE_ERR(err);
    if (!samda_store_relpath_is_valid(relpath))
        return samda_fail(err, SAMDA_EINVAL, "queueing export: not a valid object path");
    if (sop_uid && *sop_uid && !samda_uid_is_valid(sop_uid))
        return samda_fail(err, SAMDA_EBADUID, "queueing export: SOP instance UID is not a valid UID");
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    samda_status res = storage_tx_begin(s, c, err);
    if (res == SAMDA_OK) {
        sql_stmt *st = storage_stmt(c, "INSERT INTO exports(destination_id, relpath, sop_uid, next_attempt_ms,"
                                           " created_ms, updated_ms) VALUES(?1, ?2, ?3, ?4, ?4, ?4) RETURNING id", err);
        if (!st) res = err->code;
        else {
            sql_bind_int64(st, 1, destination_id);
            sql_bind_text(st, 2, relpath);
            storage_bind_text(st, 3, sop_uid);
            sql_bind_int64(st, 4, samda_store_now_ms(s));
            int rc = storage_exec_insert(s, st, id);
            if ((rc & 0xff) == SQL_CONSTRAINT)
                res = samda_fail(err, SAMDA_EINVAL, "queueing export: destination %lld does not exist",
                                 (long long)destination_id);
            else if (rc != SQL_OK) res = storage_db_fail(err, c, rc, "queueing export");
        }
        if (res == SAMDA_OK) res = storage_tx_commit(s, c, err);
        else storage_tx_rollback(s, c);
    }
    storage_conn_put(s, c);
    return res;
}

samda_status samda_store_export_claim(samda_store *s, int64_t destination_id, size_t max, samda_export_item **items,
                                      size_t *n, samda_error *err)
{
    STORAGE_ERR(err);
    *items = NULL;
    *n = 0;
    if (max == 0 || max > 10000) return samda_fail(err, SAMDA_EINVAL, "claiming exports: max must be 1..10000");
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    samda_status res = storage_tx_begin(s, c, err);
    if (res == SAMDA_OK) {
        int64_t now = samda_store_now_ms(s);
        /* Claimed items get next_attempt = now + lease: the same column then says when an abandoned
         * claim becomes claimable again. */
        sql_stmt *st = storage_stmt(c, "UPDATE exports SET state = 'sending', next_attempt_ms = CAST(?1 AS BIGINT) + ?4,"
                                           " updated_ms = ?1 WHERE id IN (SELECT id FROM exports"
                                           " WHERE state IN ('pending', 'sending') AND next_attempt_ms <= ?1"
                                           " AND (?2 = 0 OR destination_id = ?2)"
                                           " ORDER BY next_attempt_ms, id LIMIT ?3)"
                                           " RETURNING id, destination_id, relpath, sop_uid, state, attempts,"
                                           " next_attempt_ms, last_error, permanent, created_ms, updated_ms", err);
        if (!st) res = err->code;
        else {
            sql_bind_int64(st, 1, now);
            sql_bind_int64(st, 2, destination_id);
            sql_bind_int64(st, 3, (int64_t)max);
            sql_bind_int64(st, 4, s->p.export_lease_ms);
            res = read_items(s, c, st, items, n, "claiming exports", err);
        }
        if (res == SAMDA_OK) res = storage_tx_commit(s, c, err);
        else storage_tx_rollback(s, c);
        if (res != SAMDA_OK) {
            free(*items);
            *items = NULL;
            *n = 0;
        }
    }
    storage_conn_put(s, c);
    return res;
}

/* Apply sql to an item that must be in `want` state; ?1 id, ?2 now, ?3.. set by bind. */
typedef void (*binder)(sql_stmt *st, void *arg);
static samda_status item_update(samda_store *s, int64_t id, const char *want, const char *sql, binder bind, void *arg,
                                const char *what, samda_export_item *before, samda_error *err)
{
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    samda_status res = storage_tx_begin(s, c, err);
    if (res != SAMDA_OK) {
        storage_conn_put(s, c);
        return res;
    }
    sql_stmt *st = storage_stmt(c, EXPORT_COLS "WHERE id = ?1", err);
    samda_export_item cur;
    if (!st) res = err->code;
    else {
        sql_bind_int64(st, 1, id);
        int rc = storage_step(s, st);
        if (rc == SQL_ROW) read_item(st, &cur);
        sql_reset(st);
        if (rc == SQL_DONE) res = samda_fail(err, SAMDA_ENOENT, "%s export %lld: no such item", what, (long long)id);
        else if (rc != SQL_ROW) res = storage_db_fail(err, c, rc, what);
        else if (!strstr(want, export_state_names[cur.state]))
            res = samda_fail(err, SAMDA_EINVAL, "%s export %lld: not possible in state %s", what, (long long)id,
                             export_state_names[cur.state]);
    }
    if (res == SAMDA_OK) {
        if (before) *before = cur;
        st = storage_stmt(c, sql, err);
        if (!st) res = err->code;
        else {
            sql_bind_int64(st, 1, id);
            sql_bind_int64(st, 2, samda_store_now_ms(s));
            if (bind) bind(st, arg);
            int rc = storage_exec_stmt(s, st);
            if (rc != SQL_OK) res = storage_db_fail(err, c, rc, what);
        }
    }
    if (res == SAMDA_OK) res = storage_tx_commit(s, c, err);
    else storage_tx_rollback(s, c);
    storage_conn_put(s, c);
    return res;
}

samda_status samda_store_export_done(samda_store *s, int64_t id, samda_error *err)
{
    STORAGE_ERR(err);
    return item_update(s, id, "sending", "UPDATE exports SET state = 'done', last_error = NULL, updated_ms = ?2"
                                         " WHERE id = ?1", NULL, NULL, "completing", NULL, err);
}

struct fail_args {
    const char *error;
    const char *state;
    int attempts;
    int64_t next;
    bool permanent;
};

static void bind_fail(sql_stmt *st, void *arg)
{
    struct fail_args *a = arg;
    sql_bind_text(st, 3, a->state);
    sql_bind_int64(st, 4, a->attempts);
    sql_bind_int64(st, 5, a->next);
    storage_bind_text(st, 6, a->error);
    sql_bind_int64(st, 7, a->permanent ? 1 : 0);
}

samda_status samda_store_export_fail(samda_store *s, int64_t id, const char *error, bool permanent,
                                     int64_t *next_attempt_ms, samda_error *err)
{
    STORAGE_ERR(err);
    if (next_attempt_ms) *next_attempt_ms = 0;
    char msg[SAMDA_MESSAGE_SIZE] = "send failed";
    if (error && *error) snprintf(msg, sizeof msg, "%s", error);
    /* Read the attempts under the transaction: item_update re-checks the state; compute from its
     * snapshot by a first read here (the write lock makes the pair consistent enough: only one sender
     * owns a claimed item). */
    samda_export_item cur;
    samda_status st = samda_store_export_get(s, id, &cur, err);
    if (st != SAMDA_OK) return st;
    struct fail_args a = {msg, "failed", cur.attempts + 1, 0, permanent};
    int64_t now = samda_store_now_ms(s);
    if (!permanent && a.attempts < atomic_load(&s->export_max_attempts)) {
        const int64_t cap = atomic_load(&s->export_backoff_max_ms);
        int64_t delay = atomic_load(&s->export_backoff_base_ms);
        for (int i = 1; i < a.attempts && delay < cap; i++) delay *= 2;
        if (delay > cap) delay = cap;
        a.state = "pending";
        a.next = now + delay;
    } else {
        a.next = now;
    }
    st = item_update(s, id, "sending", "UPDATE exports SET state = ?3, attempts = ?4, next_attempt_ms = ?5,"
                                       " last_error = ?6, permanent = ?7, updated_ms = ?2 WHERE id = ?1",
                     bind_fail, &a, "recording failed export", NULL, err);
    if (st == SAMDA_OK && next_attempt_ms && strcmp(a.state, "pending") == 0) *next_attempt_ms = a.next;
    return st;
}

samda_status samda_store_export_retry(samda_store *s, int64_t id, samda_error *err)
{
    STORAGE_ERR(err);
    return item_update(s, id, "failed,pending", "UPDATE exports SET state = 'pending', attempts = 0, permanent = 0,"
                                                " next_attempt_ms = ?2, updated_ms = ?2 WHERE id = ?1",
                       NULL, NULL, "retrying", NULL, err);
}

samda_status samda_store_export_get(samda_store *s, int64_t id, samda_export_item *out, samda_error *err)
{
    STORAGE_ERR(err);
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    samda_status res = SAMDA_OK;
    sql_stmt *st = storage_stmt(c, EXPORT_COLS "WHERE id = ?1", err);
    if (!st) res = err->code;
    else {
        sql_bind_int64(st, 1, id);
        int rc = storage_step(s, st);
        if (rc == SQL_ROW) read_item(st, out);
        else if (rc == SQL_DONE) res = samda_fail(err, SAMDA_ENOENT, "export %lld: no such item", (long long)id);
        else res = storage_db_fail(err, c, rc, "reading export");
        sql_reset(st);
    }
    storage_conn_put(s, c);
    return res;
}

samda_status samda_store_export_list(samda_store *s, int64_t destination_id, int state, size_t limit,
                                     samda_export_item **items, size_t *n, samda_error *err)
{
    STORAGE_ERR(err);
    *items = NULL;
    *n = 0;
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    samda_status res = SAMDA_OK;
    sql_stmt *st = storage_stmt(c, EXPORT_COLS "WHERE (?1 = 0 OR destination_id = ?1) AND (state = ?2 OR ?2 IS NULL)"
                                                   " ORDER BY id DESC LIMIT ?3", err);
    if (!st) res = err->code;
    else {
        sql_bind_int64(st, 1, destination_id);
        if (state >= 0 && state <= SAMDA_EXPORT_FAILED)
            sql_bind_text(st, 2, export_state_names[state]);
        sql_bind_int64(st, 3, (int64_t)storage_list_limit(limit));
        res = read_items(s, c, st, items, n, "listing exports", err);
    }
    storage_conn_put(s, c);
    return res;
}

samda_status samda_store_export_find(samda_store *s, const samda_export_filter *f, samda_export_item **items,
                                     size_t *n, samda_error *err)
{
    STORAGE_ERR(err);
    *items = NULL;
    *n = 0;
    if (!f) return samda_fail(err, SAMDA_EINVAL, "listing exports: no filter");
    if (f->state < -1 || f->state > SAMDA_EXPORT_FAILED)
        return samda_fail(err, SAMDA_EINVAL, "listing exports: state %d out of range", f->state);
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    samda_status res = SAMDA_OK;
    /* An item sends a result's DICOM-SEG when it names the result's file (the worker queues the
     * result's own relpath); file_relpath is UNIQUE, so the join adds no rows. */
    sql_stmt *st = storage_stmt(c, "SELECT e.id, e.destination_id, e.relpath, e.sop_uid, e.state, e.attempts,"
                                       " e.next_attempt_ms, e.last_error, e.permanent, e.created_ms, e.updated_ms,"
                                       " r.id FROM exports e LEFT JOIN results r ON r.file_relpath = e.relpath"
                                       " WHERE (?1 = 0 OR e.destination_id = ?1) AND (e.state = ?2 OR ?2 IS NULL)"
                                       " AND (?3 = 0 OR r.id = ?3) AND (?6 = 0 OR e.id = ?6)"
                                       " ORDER BY e.id DESC LIMIT ?4 OFFSET ?5", err);
    if (!st) res = err->code;
    else {
        sql_bind_int64(st, 1, f->destination_id);
        if (f->state >= 0) sql_bind_text(st, 2, export_state_names[f->state]);
        sql_bind_int64(st, 3, f->result_id);
        size_t limit = storage_list_limit(f->limit);
        sql_bind_int64(st, 4, (int64_t)limit);
        sql_bind_int64(st, 5, f->offset > (size_t)INT64_MAX ? INT64_MAX : (int64_t)f->offset);
        sql_bind_int64(st, 6, f->id);
        res = storage_collect(s, c, st, sizeof **items, read_item_with_result, NULL, (void **)items, n,
                              "listing exports", err);
    }
    storage_conn_put(s, c);
    return res;
}
