/* Tests of storage/migrate.c: a fresh index gets the current schema, reopening is a no-op, and an
 * index from a newer samda is refused with a message that says what to do. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sqlite3.h>

#include "store_fixture.h"

static int64_t query_int(const char *dir, const char *sql)
{
    char path[512];
    snprintf(path, sizeof path, "%s/index.sqlite3", dir);
    sqlite3 *db;
    if (sqlite3_open(path, &db) != SQLITE_OK) return -1;
    sqlite3_stmt *st;
    int64_t v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void test_fresh_schema(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    assert_int_equal(query_int(f->dir, "PRAGMA user_version"), SAMDA_STORE_SCHEMA_VERSION);
    assert_int_equal(query_int(f->dir, "SELECT count(*) FROM schema_migrations"), SAMDA_STORE_SCHEMA_VERSION);
    const char *tables[] = {"sites", "patients", "studies", "series", "associations", "instances", "jobs",
                            "results", "destinations", "exports", "adapters", "api_tokens", "audit_log",
                            "changes", "object_intents"};
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
        char sql[256];
        snprintf(sql, sizeof sql, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = '%s'",
                 tables[i]);
        if (query_int(f->dir, sql) != 1) fail_msg("table %s missing", tables[i]);
    }
    assert_int_equal(query_int(f->dir, "SELECT count(*) FROM sqlite_schema WHERE type = 'trigger'"), 2);
    assert_int_equal(query_int(f->dir, "PRAGMA foreign_key_check"), -1); /* no violation rows */
    fx_close(f);
}

static void test_reopen_is_noop(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    CHECK_OK(fx_ingest_simple(f->s, "1.2", "1.2.3", "1.2.3.4", &e));
    int64_t applied = query_int(f->dir, "SELECT applied_ms FROM schema_migrations WHERE version = 1");
    f->now_ms += 1000;
    assert_non_null(fx_reopen(f));
    assert_non_null(fx_reopen(f));
    assert_int_equal(query_int(f->dir, "SELECT count(*) FROM schema_migrations"), SAMDA_STORE_SCHEMA_VERSION);
    assert_int_equal(query_int(f->dir, "SELECT applied_ms FROM schema_migrations WHERE version = 1"), applied);
    samda_object_info o;
    CHECK_OK(samda_store_instance_lookup(f->s, "1.2.3.4", &o, NULL, &e));
    fx_close(f);
}

static void test_newer_schema_refused(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_store_close(f->s);
    f->s = NULL;
    char path[512];
    snprintf(path, sizeof path, "%s/index.sqlite3", f->dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    samda_store_params p;
    fx_params(f, &p);
    samda_error e;
    assert_null(samda_store_open(&p, &e));
    assert_int_equal(e.code, SAMDA_EDB);
    assert_non_null(strstr(e.message, "schema version 99 is newer"));
    assert_non_null(strstr(e.message, "upgrade samda"));
    assert_int_equal(query_int(f->dir, "PRAGMA user_version"), 99); /* untouched */
    fx_close(f);
}

static void test_not_a_database_refused(void **state)
{
    (void)state;
    fx f0 = {0};
    fx_mkdtemp(&f0);
    char path[512];
    snprintf(path, sizeof path, "%s/index.sqlite3", f0.dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    for (int i = 0; i < 200; i++) fputs("this is not an SQLite database file at all. ", fp);
    fclose(fp);
    samda_store_params p;
    fx_params(&f0, &p);
    samda_error e;
    assert_null(samda_store_open(&p, &e));
    assert_int_equal(e.code, SAMDA_EDB);
    fx_rm_rf(f0.dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fresh_schema),
        cmocka_unit_test(test_reopen_is_noop),
        cmocka_unit_test(test_newer_schema_refused),
        cmocka_unit_test(test_not_a_database_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
