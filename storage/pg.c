/* storage/pg.c: sql.h's PostgreSQL half, over libpq: connecting (the connection string is never
 * repeated in a message, as it may hold a password), statements prepared on the server once per
 * connection with SQLite's ?N placeholders rewritten as $N, results walked in memory, SQLSTATEs mapped
 * onto sql.h's codes, and a broken connection re-established (its statements prepared again). */
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sql_engine.h"

struct pg_state {
    PGconn *conn;
    int lock_timeout_ms;
    int64_t changes;
    char err[1024];
};

static void quiet(void *arg, const char *msg)
{
    (void)arg;
    (void)msg; /* NOTICEs (e.g. "relation already exists, skipping") are not errors */
}

static void set_err(sql_conn *c, const char *msg)
{
    snprintf(c->pg->err, sizeof c->pg->err, "%s", msg ? msg : "");
    size_t n = strlen(c->pg->err);
    while (n && (c->pg->err[n - 1] == '\n' || c->pg->err[n - 1] == ' ')) c->pg->err[--n] = '\0';
}

/* The session's settings, at connect and after a reconnect: UTF-8 text (the database must be UTF8
 * too), UTC, warnings only, synchronous_commit on whatever the server's default (storage_tx_commit
 * relies on it, db.c), and no lock wait longer than [storage] busy_timeout (then SQL_BUSY). */
static bool session_setup(pg_state *p)
{
    PQsetNoticeProcessor(p->conn, quiet, NULL);
    char sql[256];
    snprintf(sql, sizeof sql, "SET client_encoding = 'UTF8'; SET client_min_messages = warning; "
                              "SET TIME ZONE 'UTC'; SET synchronous_commit = on; SET lock_timeout = %d",
             p->lock_timeout_ms > 0 ? p->lock_timeout_ms : 5000);
    PGresult *r = PQexec(p->conn, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    return ok;
}

sql_conn *pg_open(const char *conninfo, int lock_timeout_ms, samda_error *err)
{
    sql_conn *c = calloc(1, sizeof *c);
    pg_state *p = calloc(1, sizeof *p);
    if (!c || !p) {
        free(c);
        free(p);
        samda_fail(err, SAMDA_ENOMEM, "opening index connection: out of memory");
        return NULL;
    }
    c->engine = SQL_POSTGRESQL;
    c->pg = p;
    p->conn = PQconnectdb(conninfo ? conninfo : "");
    if (!p->conn || PQstatus(p->conn) != CONNECTION_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", p->conn ? PQerrorMessage(p->conn) : "out of memory");
        msg[strcspn(msg, "\n")] = '\0';
        samda_fail(err, SAMDA_EDB, "connecting to the PostgreSQL index ([storage] postgresql): %s", msg);
        pg_close(c);
        free(c);
        return NULL;
    }
    p->lock_timeout_ms = lock_timeout_ms;
    const char *enc = PQparameterStatus(p->conn, "server_encoding");
    if (!enc || strcmp(enc, "UTF8") != 0) {
        samda_fail(err, SAMDA_EDB, "the PostgreSQL index's database has encoding %s: samda needs UTF8 "
                                   "(CREATE DATABASE samda ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0)",
                   enc ? enc : "(unknown)");
        pg_close(c);
        free(c);
        return NULL;
    }
    if (!session_setup(p)) {
        samda_fail(err, SAMDA_EDB, "configuring the PostgreSQL index connection: %s", PQerrorMessage(p->conn));
        pg_close(c);
        free(c);
        return NULL;
    }
    return c;
}

void pg_close(sql_conn *c)
{
    if (!c->pg) return;
    if (c->pg->conn) PQfinish(c->pg->conn);
    free(c->pg);
    c->pg = NULL;
}

/* SQLite's ?N (and bare ?) as PostgreSQL's $N, outside quoted text. Returns the number of parameters,
 * or -1 when the result does not fit out; used[N - 1] is set for each N the text names (N <= max_used). */
static int translate(const char *sql, char *out, size_t size, bool *used, int max_used)
{
    size_t o = 0;
    int max = 0;
    char quote = 0;
    for (const char *p = sql; *p; p++) {
        if (quote) {
            if (*p == quote) quote = 0;
        } else if (*p == '\'' || *p == '"') {
            quote = *p;
        } else if (*p == '?') {
            int n;
            if (p[1] >= '0' && p[1] <= '9') {
                n = (int)strtol(p + 1, (char **)&p, 10);
                p--;
            } else {
                n = max + 1; /* SQLite's rule: one more than the largest so far */
            }
            if (n > max) max = n;
            if (n >= 1 && n <= max_used) used[n - 1] = true;
            int w = snprintf(out + o, size - o, "$%d", n);
            if (w < 0 || (size_t)w >= size - o) return -1;
            o += (size_t)w;
            continue;
        }
        if (o + 1 >= size) return -1;
        out[o++] = *p;
    }
    out[o] = '\0';
    return max;
}

static int map_sqlstate(const char *state)
{
    if (!state) return SQL_IOERR; /* no SQLSTATE: the connection failed */
    if (strcmp(state, "23503") == 0) return SQL_CONSTRAINT_FOREIGNKEY;
    if (strcmp(state, "23505") == 0) return SQL_CONSTRAINT_UNIQUE;
    if (strncmp(state, "23", 2) == 0) return SQL_CONSTRAINT;
    if (!strcmp(state, "40001") || !strcmp(state, "40P01") || !strcmp(state, "55P03")) return SQL_BUSY;
    if (strcmp(state, "53100") == 0) return SQL_FULL;
    if (strcmp(state, "53200") == 0) return SQL_NOMEM;
    if (strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0) return SQL_IOERR;
    return SQL_ERROR;
}

/* After a call that failed on a session the server had dropped while it sat idle in the pool (a
 * restart, a fail-over, an idle timeout): a fresh session. Every other cached statement keeps its
 * text and bound values and is prepared again before its next run (stale); keep is prepared again by
 * the caller. True when the call may run again: the session was idle before it, so nothing of the
 * caller's was in the lost session. A call made inside a transaction is never run again (the
 * transaction is gone with the session), nor is the durability wait after a commit (db.c's
 * pg_durable, an exec of its own), which a new session must not answer about a commit the old one
 * may have lost. */
static bool revive(sql_conn *c, PGTransactionStatusType before, sql_stmt *keep)
{
    PGconn *conn = c->pg->conn;
    /* UNKNOWN: the session was already broken before the call (a reset that failed while the server
     * was down), so nothing of the call reached it either. */
    if ((before != PQTRANS_IDLE && before != PQTRANS_UNKNOWN) || PQstatus(conn) != CONNECTION_BAD) return false;
    for (int i = 0; i < SQL_STMT_CACHE; i++) {
        sql_stmt *st = &c->cache[i];
        if (st == keep || !st->key) continue;
        pg_reset(st);
        st->stale = true;
    }
    PQreset(conn);
    return PQstatus(conn) == CONNECTION_OK && session_setup(c->pg);
}

/* The code for a failed result (and the message kept for sql_errmsg); SQL_OK when it succeeded. */
static int check(sql_conn *c, PGresult *r)
{
    ExecStatusType s = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK) return SQL_OK;
    /* The primary message alone, as SQLite words it: the full one adds a DETAIL that quotes the row
     * ("Key (patient_id)=(...) already exists", "Failing row contains (...)"), which would carry
     * patient data into the log. */
    const char *primary = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    set_err(c, primary ? primary : r ? PQresultErrorMessage(r) : PQerrorMessage(c->pg->conn));
    if (!r) return SQL_NOMEM;
    return map_sqlstate(PQresultErrorField(r, PG_DIAG_SQLSTATE));
}

int pg_prepare(sql_stmt *st, const char *sql, samda_error *err)
{
    size_t size = strlen(sql) * 2 + 64;
    char *text = malloc(size);
    if (!text) return samda_fail(err, SAMDA_ENOMEM, "preparing index statement: out of memory"), SQL_NOMEM;
    bool used[SQL_MAX_PARAMS] = {false};
    int n = translate(sql, text, size, used, SQL_MAX_PARAMS);
    if (n < 0 || n > SQL_MAX_PARAMS) {
        free(text);
        samda_fail(err, SAMDA_EINTERNAL, "preparing index statement: more than %d parameters", SQL_MAX_PARAMS);
        return SQL_ERROR;
    }
    /* A statement may skip numbers (queue.c's look-ups share ?1..?4 and each uses some): SQLite ignores
     * a parameter the text never names, PostgreSQL cannot infer its type and refuses the statement.
     * Such a parameter is declared text (whatever is bound there is never read); the others are left
     * to PostgreSQL's inference (type 0). */
    Oid types[SQL_MAX_PARAMS];
    for (int i = 0; i < n; i++) types[i] = used[i] ? 0 : 25; /* 25: text's type OID */
    char name[16];
    snprintf(name, sizeof name, "s%d", st->slot);
    sql_conn *c = st->c;
    PGTransactionStatusType before = PQtransactionStatus(c->pg->conn);
    PGresult *r = PQprepare(c->pg->conn, name, text, n, types);
    int rc = check(c, r);
    if (rc != SQL_OK && revive(c, before, st)) { /* once, on a fresh session */
        PQclear(r);
        r = PQprepare(c->pg->conn, name, text, n, types);
        rc = check(c, r);
    }
    free(text);
    PQclear(r);
    if (rc != SQL_OK) {
        samda_fail(err, rc == SQL_BUSY ? SAMDA_ELOCKED : SAMDA_EDB, "preparing index statement: %s", c->pg->err);
        return rc;
    }
    st->nparams = n;
    st->ran = false;
    st->res = NULL;
    st->stale = false;
    return SQL_OK;
}

int pg_step(sql_stmt *st)
{
    sql_conn *c = st->c;
    if (!st->ran) {
        char name[16];
        snprintf(name, sizeof name, "s%d", st->slot);
        if (st->stale) {
            samda_error e;
            int prc = pg_prepare(st, st->key, &e);
            if (prc != SQL_OK) return prc;
        }
        PGTransactionStatusType before = PQtransactionStatus(c->pg->conn);
        PGresult *r = PQexecPrepared(c->pg->conn, name, st->nparams, (const char *const *)st->vals, NULL, NULL, 0);
        int rc = check(c, r);
        if (rc != SQL_OK && st->key && revive(c, before, st)) { /* once, prepared again on a fresh session */
            PQclear(r);
            r = NULL;
            samda_error e;
            rc = pg_prepare(st, st->key, &e);
            if (rc == SQL_OK) {
                r = PQexecPrepared(c->pg->conn, name, st->nparams, (const char *const *)st->vals, NULL, NULL, 0);
                rc = check(c, r);
            }
        }
        if (rc != SQL_OK) {
            PQclear(r);
            return rc;
        }
        const char *cmd = PQcmdStatus(r);
        if (!strncmp(cmd, "INSERT", 6) || !strncmp(cmd, "UPDATE", 6) || !strncmp(cmd, "DELETE", 6))
            c->pg->changes = strtoll(PQcmdTuples(r), NULL, 10);
        st->res = r;
        st->ran = true;
        st->row = 0;
        st->nrows = PQresultStatus(r) == PGRES_TUPLES_OK ? PQntuples(r) : 0;
    } else if (st->row < st->nrows) {
        st->row++;
    }
    return st->row < st->nrows ? SQL_ROW : SQL_DONE;
}

void pg_reset(sql_stmt *st)
{
    PQclear(st->res);
    st->res = NULL;
    st->ran = false;
    st->row = st->nrows = 0;
}

void pg_unbind(sql_stmt *st)
{
    for (int i = 0; i < SQL_MAX_PARAMS; i++) {
        free(st->vals[i]);
        st->vals[i] = NULL;
    }
}

void pg_stmt_free(sql_stmt *st)
{
    pg_reset(st);
    pg_unbind(st);
    st->key = NULL;
    st->stale = false;
}

void pg_release(sql_conn *c)
{
    PGconn *conn = c->pg->conn;
    if (PQstatus(conn) == CONNECTION_BAD) {
        /* The server went away (restart, fail-over): a fresh session has none of our statements. */
        for (int i = 0; i < SQL_STMT_CACHE; i++) pg_stmt_free(&c->cache[i]);
        PQreset(conn);
        if (PQstatus(conn) == CONNECTION_OK) session_setup(c->pg);
        return;
    }
    if (PQtransactionStatus(conn) != PQTRANS_IDLE) PQclear(PQexec(conn, "ROLLBACK"));
}

bool pg_col_null(sql_stmt *st, int i)
{
    if (!st->res || st->row >= st->nrows || i >= PQnfields(st->res)) return true;
    return PQgetisnull(st->res, st->row, i);
}

const char *pg_col_text(sql_stmt *st, int i)
{
    if (pg_col_null(st, i)) return NULL;
    return PQgetvalue(st->res, st->row, i);
}

size_t pg_col_bytes(sql_stmt *st, int i)
{
    if (pg_col_null(st, i)) return 0;
    return (size_t)PQgetlength(st->res, st->row, i);
}

int64_t pg_changes(sql_conn *c) { return c->pg->changes; }

int pg_exec(sql_conn *c, const char *script)
{
    PGTransactionStatusType before = PQtransactionStatus(c->pg->conn);
    PGresult *r = PQexec(c->pg->conn, script);
    int rc = check(c, r);
    /* A transaction's BEGIN is the one script run again on a fresh session (revive): it is the first
     * thing of its transaction, so nothing was lost with the old session. */
    if (rc != SQL_OK && strncmp(script, "BEGIN", 5) == 0 && revive(c, before, NULL)) {
        PQclear(r);
        r = PQexec(c->pg->conn, script);
        rc = check(c, r);
    }
    if (rc == SQL_OK) {
        const char *cmd = PQcmdStatus(r);
        if (!strncmp(cmd, "INSERT", 6) || !strncmp(cmd, "UPDATE", 6) || !strncmp(cmd, "DELETE", 6))
            c->pg->changes = strtoll(PQcmdTuples(r), NULL, 10);
    }
    PQclear(r);
    return rc;
}

const char *pg_errmsg(sql_conn *c) { return c->pg->err; }

bool pg_in_tx(sql_conn *c) { return PQtransactionStatus(c->pg->conn) != PQTRANS_IDLE; }

void pg_version(sql_conn *c, char *out, size_t size)
{
    int v = PQserverVersion(c->pg->conn);
    snprintf(out, size, "PostgreSQL %d.%d", v / 10000, v % 10000);
}
