/* storage/nodes.c: the nodes of a cluster: heartbeats, the list the cluster view shows, and the
 * leader lock (one node at a time runs the completion timers, lease reclaims and retention). */
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* PostgreSQL session advisory lock key of the leader ("samda-ld"), distinct from the write lock's. */
#define STORAGE_PG_LEADER_KEY "7526745370353394788"

bool samda_node_name_is_valid(const char *name)
{
    if (!name) return false;
    size_t n = strnlen(name, SAMDA_NODE_NAME_SIZE);
    if (n == 0 || n >= SAMDA_NODE_NAME_SIZE) return false;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        bool ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' ||
                  ch == '_' || ch == '-';
        if (!ok) return false;
    }
    return true;
}

samda_status samda_store_node_beat(samda_store *s, const samda_node_info *me, samda_error *err)
{
    STORAGE_ERR(err);
    if (!me || !s->node[0] || strncmp(me->name, s->node, sizeof me->name) != 0)
        return samda_fail(err, SAMDA_EINVAL, "recording heartbeat: the node must be the store's own (params.node)");
    if (!storage_len_ok(me->roles, sizeof me->roles) || !storage_len_ok(me->version, sizeof me->version))
        return samda_fail(err, SAMDA_EINVAL, "recording heartbeat: roles or version not terminated");
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    samda_status res = storage_tx_begin(s, c, err);
    if (res == SAMDA_OK) {
        sql_stmt *st = storage_stmt(c, "INSERT INTO nodes(name, roles, version, pid, started_ms, heartbeat_ms, leader)"
                                       " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(name) DO UPDATE SET"
                                       " roles = excluded.roles, version = excluded.version, pid = excluded.pid,"
                                       " started_ms = excluded.started_ms, heartbeat_ms = excluded.heartbeat_ms,"
                                       " leader = excluded.leader", err);
        if (!st) res = err->code;
        else {
            sql_bind_text(st, 1, s->node);
            sql_bind_text(st, 2, me->roles);
            storage_bind_text(st, 3, me->version);
            sql_bind_int64(st, 4, me->pid);
            sql_bind_int64(st, 5, me->started_ms);
            sql_bind_int64(st, 6, samda_store_now_ms(s));
            sql_bind_int64(st, 7, me->leader ? 1 : 0);
            int rc = storage_exec_stmt(s, st);
            if (rc != SQL_OK) res = storage_db_fail(err, c, rc, "recording heartbeat");
        }
        /* One leader: a node that lost the lead (or never had it) while its row still says so is
         * corrected by the one that holds it now. */
        if (res == SAMDA_OK && me->leader) {
            st = storage_stmt(c, "UPDATE nodes SET leader = 0 WHERE name <> ?1 AND leader = 1", err);
            if (!st) res = err->code;
            else {
                sql_bind_text(st, 1, s->node);
                int rc = storage_exec_stmt(s, st);
                if (rc != SQL_OK) res = storage_db_fail(err, c, rc, "recording heartbeat");
            }
        }
        if (res == SAMDA_OK) res = storage_tx_commit(s, c, err);
        else storage_tx_rollback(s, c);
    }
    storage_conn_put(s, c);
    return res;
}

static void read_node(sql_stmt *st, void *row)
{
    samda_node_info *r = row;
    storage_col_text(st, 0, r->name, sizeof r->name);
    storage_col_text(st, 1, r->roles, sizeof r->roles);
    storage_col_text(st, 2, r->version, sizeof r->version);
    r->pid = sql_col_int64(st, 3);
    r->started_ms = sql_col_int64(st, 4);
    r->heartbeat_ms = sql_col_int64(st, 5);
    r->leader = sql_col_int64(st, 6) != 0;
}

samda_status samda_store_node_list(samda_store *s, samda_node_info **out, size_t *n, samda_error *err)
{
    STORAGE_ERR(err);
    *out = NULL;
    *n = 0;
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    sql_stmt *st = storage_stmt(c, "SELECT name, roles, version, pid, started_ms, heartbeat_ms, leader FROM nodes"
                                   " ORDER BY name COLLATE \"C\" LIMIT 1000", err);
    samda_status res = st ? storage_collect(s, c, st, sizeof **out, read_node, NULL, (void **)out, n, "listing nodes", err)
                          : err->code;
    storage_conn_put(s, c);
    return res;
}

samda_status samda_store_leader_try(samda_store *s, bool *leader, samda_error *err)
{
    STORAGE_ERR(err);
    *leader = false;
    if (s->p.index != SAMDA_INDEX_POSTGRESQL) {
        *leader = true;
        return SAMDA_OK;
    }
    if (s->leader_conn) {
        /* Still ours while the session lives: ask the server, which also notices a lost connection. */
        int rc = sql_exec(s->leader_conn, "SELECT 1");
        if (rc == SQL_OK) {
            *leader = true;
            return SAMDA_OK;
        }
        sql_close(s->leader_conn); /* the session (and the lock with it) is gone */
        s->leader_conn = NULL;
    }
    sql_conn *c = sql_open_pg(s->conninfo, s->p.busy_timeout_ms, err);
    if (!c) return SAMDA_OK; /* not the leader while the server is out of reach; err says why */
    sql_stmt *st = sql_stmt_get(c, "SELECT pg_try_advisory_lock(" STORAGE_PG_LEADER_KEY ")", err);
    int rc = st ? sql_step(st) : SQL_ERROR;
    bool got = rc == SQL_ROW && sql_col_int64(st, 0) == 1;
    if (st) sql_reset(st);
    if (!st || rc != SQL_ROW) {
        samda_status res = st ? samda_fail(err, SAMDA_EDB, "taking the leader lock: %s", sql_errmsg(c)) : err->code;
        sql_close(c);
        return res;
    }
    if (got) s->leader_conn = c;
    else sql_close(c);
    *leader = got;
    return SAMDA_OK;
}

samda_status samda_store_queue_depths(samda_store *s, samda_queue_depths *out, samda_error *err)
{
    STORAGE_ERR(err);
    static const char *const job_states[] = {"pending", "running", "done", "failed", "cancelled"};
    static const char *const export_states[] = {"pending", "sending", "done", "failed"};
    memset(out, 0, sizeof *out);
    storage_conn *c = storage_conn_get(s, err);
    if (!c) return err->code;
    sql_stmt *st = storage_stmt(c, "SELECT 'job', state, count(*) FROM jobs GROUP BY state UNION ALL"
                                   " SELECT 'export', state, count(*) FROM exports GROUP BY state", err);
    samda_status res = st ? SAMDA_OK : err->code;
    int rc = SQL_DONE;
    while (res == SAMDA_OK && (rc = storage_step(s, st)) == SQL_ROW) {
        bool job = strcmp(sql_col_text(st, 0), "job") == 0;
        const char *state = sql_col_text(st, 1);
        if (job) out->jobs[storage_name_index(job_states, 5, state)] = sql_col_int64(st, 2);
        else out->exports[storage_name_index(export_states, 4, state)] = sql_col_int64(st, 2);
    }
    if (st) sql_reset(st);
    if (res == SAMDA_OK && rc != SQL_DONE) res = storage_db_fail(err, c, rc, "counting the queues");
    storage_conn_put(s, c);
    return res;
}
