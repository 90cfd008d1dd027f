/* storage/sql.h: the one SQL face of storage/ (internal, never installed): a connection to the index,
 * its cache of prepared statements, binding, stepping and reading, over SQLite (sql.c) or PostgreSQL
 * through libpq (pg.c). The other files of storage/ write SQL that both engines accept and call only
 * these functions, so a behaviour lives once whichever engine holds the index.
 *
 * Result codes are SQLite's numbers for both engines (pg.c maps SQLSTATEs onto them). A connection
 * and its statements belong to one thread at a time (the pool in db.c lends them); nothing here
 * locks. Statements are cached per connection, keyed by the address of their SQL text (a literal). */
#ifndef SAMDA_STORAGE_SQL_H
#define SAMDA_STORAGE_SQL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

enum {
    SQL_OK = 0,
    SQL_ERROR = 1,
    SQL_BUSY = 5,
    SQL_LOCKED = 6,
    SQL_NOMEM = 7,
    SQL_IOERR = 10,
    SQL_FULL = 13,
    SQL_CONSTRAINT = 19,
    SQL_ROW = 100,
    SQL_DONE = 101,
    SQL_CONSTRAINT_FOREIGNKEY = 19 | (3 << 8),
    SQL_CONSTRAINT_UNIQUE = 19 | (8 << 8),
};

typedef enum { SQL_SQLITE, SQL_POSTGRESQL } sql_engine;

typedef struct sql_conn sql_conn;
typedef struct sql_stmt sql_stmt;

/** Open an SQLite index file in WAL mode, synchronous=NORMAL (durability is the caller's WAL fsync), with
 *  foreign keys on. NULL + err. Caller closes. */
sql_conn *sql_open_sqlite(const char *path, int busy_timeout_ms, samda_error *err);
/** Connect to PostgreSQL with a libpq connection string (a UTF8 database); no lock is waited for longer
 *  than lock_timeout_ms (then SQL_BUSY). Errors never repeat the string (it may hold a password).
 *  NULL + err. Caller closes. */
sql_conn *sql_open_pg(const char *conninfo, int lock_timeout_ms, samda_error *err);
/** Close a connection and its statements. NULL is a no-op. */
void sql_close(sql_conn *c);
/** Which engine the connection talks to. */
sql_engine sql_engine_of(const sql_conn *c);

/** The cached prepared statement for sql (a string literal: its address is the key), reset and with
 *  bindings cleared. Owned by the connection. NULL + err (naming the engine's message). */
sql_stmt *sql_stmt_get(sql_conn *c, const char *sql, samda_error *err);
/** Run the statement (first call) or move to its next row: SQL_ROW, SQL_DONE or an error code. */
int sql_step(sql_stmt *st);
/** Back to before the first step; bindings kept. */
void sql_reset(sql_stmt *st);
/** Reset every statement of c left mid-step and roll back an open transaction (the pool's return). */
void sql_release(sql_conn *c);

/* Parameters count from 1, as in the SQL text's ?N. */
int sql_bind_int64(sql_stmt *st, int i, int64_t v);
int sql_bind_double(sql_stmt *st, int i, double v);
int sql_bind_text(sql_stmt *st, int i, const char *v); /* NULL binds SQL NULL; "" binds '' */
int sql_bind_null(sql_stmt *st, int i);

/* Columns of the current row count from 0. SQL NULL reads as 0, 0.0 and NULL text. */
bool sql_col_null(sql_stmt *st, int i);
int64_t sql_col_int64(sql_stmt *st, int i);
double sql_col_double(sql_stmt *st, int i);
const char *sql_col_text(sql_stmt *st, int i); /* valid until the next step or reset */
size_t sql_col_bytes(sql_stmt *st, int i);

/** Rows changed by the last INSERT, UPDATE or DELETE run on c. */
int64_t sql_changes(sql_conn *c);
/** Run a script of statements without parameters. SQL_OK or an error code (sql_errmsg says why). */
int sql_exec(sql_conn *c, const char *script);
/** The last error's message on c ("" when none). */
const char *sql_errmsg(sql_conn *c);
/** True while c is inside a transaction. */
bool sql_in_tx(sql_conn *c);
/** "SQLite 3.40.1" / "PostgreSQL 15.18": the engine and server version. */
void sql_version(sql_conn *c, char *out, size_t size);

#endif
