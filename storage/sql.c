/* storage/sql.c: sql.h over SQLite, and the dispatch to pg.c when the index is PostgreSQL: opening an
 * SQLite connection (WAL, foreign keys, busy timeout), the per-connection statement cache, binding,
 * stepping and reading. SQLite gains greatest(), least() and COLLATE "C" here so that one SQL text serves
 * both. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sql_engine.h"

/* greatest(a, b, ...) and least(a, b, ...): PostgreSQL's scalar functions (SQLite spells them max and
 * min with several arguments, which PostgreSQL does not accept). NULL arguments are skipped, as there. */
static void extreme(sqlite3_context *ctx, int argc, sqlite3_value **argv, int sign)
{
    sqlite3_value *best = NULL;
    for (int i = 0; i < argc; i++) {
        if (sqlite3_value_type(argv[i]) == SQLITE_NULL) continue;
        if (!best) {
            best = argv[i];
            continue;
        }
        double a = sqlite3_value_double(argv[i]), b = sqlite3_value_double(best);
        bool ints = sqlite3_value_type(argv[i]) == SQLITE_INTEGER && sqlite3_value_type(best) == SQLITE_INTEGER;
        int cmp = ints ? (sqlite3_value_int64(argv[i]) > sqlite3_value_int64(best)) -
                             (sqlite3_value_int64(argv[i]) < sqlite3_value_int64(best))
                       : (a > b) - (a < b);
        if (cmp * sign > 0) best = argv[i];
    }
    if (best) sqlite3_result_value(ctx, best);
    else sqlite3_result_null(ctx);
}
static void fn_greatest(sqlite3_context *ctx, int argc, sqlite3_value **argv) { extreme(ctx, argc, argv, 1); }
static void fn_least(sqlite3_context *ctx, int argc, sqlite3_value **argv) { extreme(ctx, argc, argv, -1); }

/* COLLATE "C": PostgreSQL's byte-order collation, whatever the database's default (an en_US one sorts
 * "1.2.10" after "1.21" and "b" before "C"), and SQLite's BINARY under PostgreSQL's name, so that an
 * ORDER BY that must follow byte order is one SQL text. */
static int coll_c(void *arg, int na, const void *a, int nb, const void *b)
{
    (void)arg;
    int r = memcmp(a, b, (size_t)(na < nb ? na : nb));
    return r ? r : (na > nb) - (na < nb);
}

static int lite_setup(sql_conn *c, int busy_timeout_ms, const char *path, samda_error *err)
{
    sqlite3_extended_result_codes(c->lite, 1);
    sqlite3_busy_timeout(c->lite, busy_timeout_ms);
    int flags = SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS;
    if (sqlite3_create_function(c->lite, "greatest", -1, flags, NULL, fn_greatest, NULL, NULL) != SQLITE_OK ||
        sqlite3_create_function(c->lite, "least", -1, flags, NULL, fn_least, NULL, NULL) != SQLITE_OK ||
        sqlite3_create_collation(c->lite, "C", SQLITE_UTF8, NULL, coll_c) != SQLITE_OK) {
        samda_fail(err, SAMDA_EDB, "opening index %s: %s", path, sqlite3_errmsg(c->lite));
        return SQL_ERROR;
    }
    const char *pragmas[] = {"PRAGMA foreign_keys=ON",
                             "PRAGMA synchronous=NORMAL",
                             "PRAGMA trusted_schema=OFF"};
    for (size_t i = 0; i < sizeof pragmas / sizeof pragmas[0]; i++) {
        int rc = sqlite3_exec(c->lite, pragmas[i], NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            samda_fail(err, SAMDA_EDB, "configuring index connection %s: %s", path, sqlite3_errmsg(c->lite));
            return rc;
        }
    }
    /* journal_mode is persistent in the file, but asking each time costs nothing and repairs a file
     * that another tool switched back to DELETE. */
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(c->lite, "PRAGMA journal_mode=WAL", -1, &st, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const char *mode = (const char *)sqlite3_column_text(st, 0);
        rc = mode && strcmp(mode, "wal") == 0 ? SQLITE_OK : SQLITE_ERROR;
        if (rc != SQLITE_OK)
            samda_fail(err, SAMDA_EDB, "opening index %s: cannot switch to WAL mode (file system without "
                                       "shared memory support?)", path);
    } else {
        samda_fail(err, SAMDA_EDB, "setting WAL mode on %s: %s", path, sqlite3_errmsg(c->lite));
    }
    sqlite3_finalize(st);
    return rc;
}

sql_conn *sql_open_sqlite(const char *path, int busy_timeout_ms, samda_error *err)
{
    sql_conn *c = calloc(1, sizeof *c);
    if (!c) {
        samda_fail(err, SAMDA_ENOMEM, "opening index connection: out of memory");
        return NULL;
    }
    c->engine = SQL_SQLITE;
    /* NOMUTEX: a connection is lent to one thread at a time by the pool. */
    int rc = sqlite3_open_v2(path, &c->lite, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        samda_fail(err, SAMDA_EDB, "opening index %s: %s", path, c->lite ? sqlite3_errmsg(c->lite) : sqlite3_errstr(rc));
        sql_close(c);
        return NULL;
    }
    if (lite_setup(c, busy_timeout_ms, path, err) != SQLITE_OK) {
        sql_close(c);
        return NULL;
    }
    return c;
}

sql_conn *sql_open_pg(const char *conninfo, int lock_timeout_ms, samda_error *err)
{
    return pg_open(conninfo, lock_timeout_ms, err);
}

sql_engine sql_engine_of(const sql_conn *c) { return c->engine; }

void sql_close(sql_conn *c)
{
    if (!c) return;
    for (int i = 0; i < SQL_STMT_CACHE; i++) {
        sqlite3_finalize(c->cache[i].lite);
        if (c->engine == SQL_POSTGRESQL) pg_stmt_free(&c->cache[i]);
    }
    if (c->engine == SQL_POSTGRESQL) pg_close(c);
    else sqlite3_close_v2(c->lite);
    free(c);
}

static void clear_bindings(sql_stmt *st)
{
    if (st->c->engine == SQL_SQLITE) sqlite3_clear_bindings(st->lite);
    else pg_unbind(st);
}

sql_stmt *sql_stmt_get(sql_conn *c, const char *sql, samda_error *err)
{
    size_t h = ((uintptr_t)sql >> 3) % SQL_STMT_CACHE;
    for (size_t k = 0; k < SQL_STMT_CACHE; k++) {
        size_t i = (h + k) % SQL_STMT_CACHE;
        sql_stmt *st = &c->cache[i];
        if (st->key == sql) {
            sql_reset(st);
            clear_bindings(st);
            return st;
        }
        if (st->key) continue;
        st->c = c;
        st->slot = (int)i;
        if (c->engine == SQL_POSTGRESQL) {
            if (pg_prepare(st, sql, err) != SQL_OK) return NULL;
        } else {
            int rc = sqlite3_prepare_v3(c->lite, sql, -1, SQLITE_PREPARE_PERSISTENT, &st->lite, NULL);
            if (rc != SQLITE_OK) {
                samda_fail(err, rc == SQLITE_BUSY || rc == SQLITE_LOCKED ? SAMDA_ELOCKED : SAMDA_EDB,
                           "preparing index statement: %s", sqlite3_errmsg(c->lite));
                st->lite = NULL;
                return NULL;
            }
        }
        st->key = sql;
        return st;
    }
    /* More distinct statements than slots: should not happen; report it loudly. */
    samda_fail(err, SAMDA_EINTERNAL, "preparing index statement: statement cache full (raise SQL_STMT_CACHE)");
    return NULL;
}

int sql_step(sql_stmt *st)
{
    if (st->c->engine == SQL_POSTGRESQL) return pg_step(st);
    return sqlite3_step(st->lite);
}

void sql_reset(sql_stmt *st)
{
    if (st->c->engine == SQL_POSTGRESQL) pg_reset(st);
    else sqlite3_reset(st->lite);
}

void sql_release(sql_conn *c)
{
    if (c->engine == SQL_POSTGRESQL) {
        for (int i = 0; i < SQL_STMT_CACHE; i++)
            if (c->cache[i].key) pg_reset(&c->cache[i]);
        pg_release(c);
        return;
    }
    /* A statement left mid-step would pin a WAL snapshot (and block checkpoints) forever. */
    for (sqlite3_stmt *st = sqlite3_next_stmt(c->lite, NULL); st; st = sqlite3_next_stmt(c->lite, st))
        if (sqlite3_stmt_busy(st)) sqlite3_reset(st);
    if (!sqlite3_get_autocommit(c->lite)) sqlite3_exec(c->lite, "ROLLBACK", NULL, NULL, NULL);
}

/* Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlong form, no surrogate, nothing
 * above U+10FFFF), 0 when the bytes there are not one. Stops at the terminating NUL. */
static size_t utf8_len(const unsigned char *s)
{
    if (s[0] < 0x80) return 1;
    size_t n = s[0] >= 0xC2 && s[0] <= 0xDF ? 2 : s[0] >= 0xE0 && s[0] <= 0xEF ? 3 : s[0] >= 0xF0 && s[0] <= 0xF4 ? 4 : 0;
    if (!n) return 0;
    /* the second byte's range excludes overlong forms (E0, F0), surrogates (ED) and beyond U+10FFFF (F4) */
    unsigned char lo = s[0] == 0xE0 ? 0xA0 : s[0] == 0xF0 ? 0x90 : 0x80;
    unsigned char hi = s[0] == 0xED ? 0x9F : s[0] == 0xF4 ? 0x8F : 0xBF;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t k = 2; k < n; k++)
        if (s[k] < 0x80 || s[k] > 0xBF) return 0;
    return n;
}

/* A parameter's text for PostgreSQL, which refuses a statement whose text is not valid UTF-8 (the
 * connection's encoding) where SQLite stores any bytes. DICOM text can be other bytes (a Latin-1 name
 * without SpecificCharacterSet, a value cut inside a character): rather than refusing the instance,
 * each byte that is not part of a well-formed sequence becomes U+FFFD, as dicom/json.cpp does. The
 * object file keeps the original; equal input maps to equal text, so look-ups still match. */
static char *pg_text(const char *text)
{
    const unsigned char *u = (const unsigned char *)text;
    size_t len = 0, bad = 0;
    while (u[len]) {
        size_t n = utf8_len(u + len);
        bad += n == 0;
        len += n ? n : 1;
    }
    if (!bad) return strdup(text);
    char *out = malloc(len + 2 * bad + 1);
    if (!out) return NULL;
    size_t o = 0;
    for (size_t k = 0; k < len;) {
        size_t n = utf8_len(u + k);
        if (n) {
            memcpy(out + o, u + k, n);
            o += n;
            k += n;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            k++;
        }
    }
    out[o] = '\0';
    return out;
}

static int pg_bind(sql_stmt *st, int i, const char *text)
{
    if (i < 1 || i > SQL_MAX_PARAMS) return SQL_ERROR;
    free(st->vals[i - 1]);
    st->vals[i - 1] = NULL;
    if (!text) return SQL_OK;
    st->vals[i - 1] = pg_text(text);
    return st->vals[i - 1] ? SQL_OK : SQL_NOMEM;
}

int sql_bind_int64(sql_stmt *st, int i, int64_t v)
{
    if (st->c->engine == SQL_SQLITE) return sqlite3_bind_int64(st->lite, i, v);
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRId64, v);
    return pg_bind(st, i, buf);
}

int sql_bind_double(sql_stmt *st, int i, double v)
{
    if (st->c->engine == SQL_SQLITE) return sqlite3_bind_double(st->lite, i, v);
    if (!isfinite(v)) return pg_bind(st, i, NULL);
    char buf[40];
    snprintf(buf, sizeof buf, "%.17g", v);
    return pg_bind(st, i, buf);
}

int sql_bind_text(sql_stmt *st, int i, const char *v)
{
    if (st->c->engine == SQL_SQLITE)
        return v ? sqlite3_bind_text(st->lite, i, v, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(st->lite, i);
    return pg_bind(st, i, v);
}

int sql_bind_null(sql_stmt *st, int i)
{
    if (st->c->engine == SQL_SQLITE) return sqlite3_bind_null(st->lite, i);
    return pg_bind(st, i, NULL);
}

bool sql_col_null(sql_stmt *st, int i)
{
    if (st->c->engine == SQL_POSTGRESQL) return pg_col_null(st, i);
    return sqlite3_column_type(st->lite, i) == SQLITE_NULL;
}

int64_t sql_col_int64(sql_stmt *st, int i)
{
    if (st->c->engine == SQL_SQLITE) return sqlite3_column_int64(st->lite, i);
    const char *t = pg_col_text(st, i);
    if (!t) return 0;
    if (t[0] == 't' && !t[1]) return 1; /* a boolean expression read as a number */
    if (t[0] == 'f' && !t[1]) return 0;
    return strtoll(t, NULL, 10);
}

double sql_col_double(sql_stmt *st, int i)
{
    if (st->c->engine == SQL_SQLITE) return sqlite3_column_double(st->lite, i);
    const char *t = pg_col_text(st, i);
    return t ? strtod(t, NULL) : 0.0;
}

const char *sql_col_text(sql_stmt *st, int i)
{
    if (st->c->engine == SQL_POSTGRESQL) return pg_col_text(st, i);
    return (const char *)sqlite3_column_text(st->lite, i);
}

size_t sql_col_bytes(sql_stmt *st, int i)
{
    if (st->c->engine == SQL_POSTGRESQL) return pg_col_bytes(st, i);
    return (size_t)sqlite3_column_bytes(st->lite, i);
}

int64_t sql_changes(sql_conn *c)
{
    return c->engine == SQL_POSTGRESQL ? pg_changes(c) : sqlite3_changes(c->lite);
}

int sql_exec(sql_conn *c, const char *script)
{
    if (c->engine == SQL_POSTGRESQL) return pg_exec(c, script);
    return sqlite3_exec(c->lite, script, NULL, NULL, NULL);
}

const char *sql_errmsg(sql_conn *c)
{
    if (c->engine == SQL_POSTGRESQL) return pg_errmsg(c);
    return sqlite3_errmsg(c->lite);
}

bool sql_in_tx(sql_conn *c)
{
    if (c->engine == SQL_POSTGRESQL) return pg_in_tx(c);
    return !sqlite3_get_autocommit(c->lite);
}

void sql_version(sql_conn *c, char *out, size_t size)
{
    if (c->engine == SQL_POSTGRESQL) pg_version(c, out, size);
    else snprintf(out, size, "SQLite %s", sqlite3_libversion());
}
