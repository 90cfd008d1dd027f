/* storage/sql_engine.h: what sql.c and pg.c share and nothing else sees: the connection and statement
 * structs and PostgreSQL's half of sql.h. */
#ifndef SAMDA_STORAGE_SQL_ENGINE_H
#define SAMDA_STORAGE_SQL_ENGINE_H

#include <sqlite3.h>

#include "sql.h"

#define SQL_STMT_CACHE 160 /* prepared statements kept per connection (keyed by SQL pointer) */
#define SQL_MAX_PARAMS 40  /* above the most ?N one statement of storage/ uses (33: index.c's instance row) */

typedef struct pg_state pg_state;

struct sql_stmt {
    sql_conn *c;
    const char *key; /* the SQL text's address */
    sqlite3_stmt *lite;
    /* PostgreSQL: a server-side prepared statement "s<slot>", its parameters as text, and the result
     * of the run that sql_step started (rows are walked in memory). */
    int slot, nparams;
    char *vals[SQL_MAX_PARAMS];
    struct pg_result *res; /* libpq's PGresult */
    int row, nrows;
    bool ran;
    bool stale; /* prepared on a session since lost: prepared again (from key) before its next run */
};

struct sql_conn {
    sql_engine engine;
    sqlite3 *lite;
    pg_state *pg;
    sql_stmt cache[SQL_STMT_CACHE];
};

/* pg.c */
sql_conn *pg_open(const char *conninfo, int lock_timeout_ms, samda_error *err);
void pg_close(sql_conn *c);
int pg_prepare(sql_stmt *st, const char *sql, samda_error *err);
int pg_step(sql_stmt *st);
void pg_reset(sql_stmt *st);
void pg_unbind(sql_stmt *st); /* every parameter back to NULL */
void pg_stmt_free(sql_stmt *st);
void pg_release(sql_conn *c);
bool pg_col_null(sql_stmt *st, int i);
const char *pg_col_text(sql_stmt *st, int i);
size_t pg_col_bytes(sql_stmt *st, int i);
int64_t pg_changes(sql_conn *c);
int pg_exec(sql_conn *c, const char *script);
const char *pg_errmsg(sql_conn *c);
bool pg_in_tx(sql_conn *c);
void pg_version(sql_conn *c, char *out, size_t size);

#endif
