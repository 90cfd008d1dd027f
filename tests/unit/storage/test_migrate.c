/* Tests of storage/migrate.c: a fresh index gets the current schema, reopening is a no-op, and an
 * index from a newer samda is refused with a message that says what to do. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "store_fixture.h"

/* The schema version a plain connection reads: SQLite's user_version, PostgreSQL's highest recorded
 * migration. */
static int64_t schema_version(fx *f)
{
    return fx_raw_int(f, fx_pg() ? "SELECT max(version) FROM schema_migrations" : "PRAGMA user_version");
}

static void test_fresh_schema(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    assert_int_equal(schema_version(f), SAMDA_STORE_SCHEMA_VERSION);
    assert_int_equal(fx_raw_int(f, "SELECT count(*) FROM schema_migrations"), SAMDA_STORE_SCHEMA_VERSION);
    const char *tables[] = {"sites", "patients", "studies", "series", "associations", "instances", "jobs",
                            "results", "destinations", "exports", "adapters", "api_tokens", "audit_log",
                            "changes", "object_intents", "result_objects", "series_holds"};
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
        const char *sql = fx_pg() ? "SELECT count(*) FROM information_schema.tables"
                                    " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
                                    " AND table_name = ?1"
                                  : "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1";
        if (fx_raw_int_params(f, sql, 1, &tables[i]) != 1) fail_msg("table %s missing", tables[i]);
    }
    /* the audit log's two append-only triggers (one event each) */
    assert_int_equal(fx_raw_int(f, fx_pg() ? "SELECT count(*) FROM information_schema.triggers"
                                             " WHERE trigger_schema = current_schema()"
                                           : "SELECT count(*) FROM sqlite_schema WHERE type = 'trigger'"),
                     2);
    if (fx_pg()) /* PostgreSQL checks every foreign key as it is written: none is left unvalidated */
        assert_int_equal(fx_raw_int(f, "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND NOT convalidated"
                                       " AND connamespace = current_schema()::regnamespace"),
                         0);
    else
        assert_int_equal(fx_raw_int(f, "PRAGMA foreign_key_check"), -1); /* no violation rows */
    fx_close(f);
}

static void test_reopen_is_noop(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    CHECK_OK(fx_ingest_simple(f->s, "1.2", "1.2.3", "1.2.3.4", &e));
    int64_t applied = fx_raw_int(f, "SELECT applied_ms FROM schema_migrations WHERE version = 1");
    f->now_ms += 1000;
    assert_non_null(fx_reopen(f));
    assert_non_null(fx_reopen(f));
    assert_int_equal(fx_raw_int(f, "SELECT count(*) FROM schema_migrations"), SAMDA_STORE_SCHEMA_VERSION);
    assert_int_equal(fx_raw_int(f, "SELECT applied_ms FROM schema_migrations WHERE version = 1"), applied);
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
    /* as a newer samda would leave it: SQLite's user_version, a row in PostgreSQL's schema_migrations */
    char msg[512];
    if (fx_raw_exec(f, fx_pg() ? "INSERT INTO schema_migrations(version, applied_ms, description)"
                                 " VALUES(99, 0, 'from a newer samda')"
                               : "PRAGMA user_version = 99",
                    msg, sizeof msg))
        fail_msg("planting schema version 99: %s", msg);
    samda_store_params p;
    fx_params(f, &p);
    samda_error e;
    assert_null(samda_store_open(&p, &e));
    assert_int_equal(e.code, SAMDA_EDB);
    assert_non_null(strstr(e.message, "schema version 99 is newer"));
    assert_non_null(strstr(e.message, "upgrade samda"));
    assert_int_equal(schema_version(f), 99); /* untouched */
    fx_close(f);
}

/* What is where the index should be is not a samda index: a file of text on SQLite; on PostgreSQL a
 * schema_migrations table that is some other program's. */
static void test_not_a_database_refused(void **state)
{
    (void)state;
    fx f0 = {0};
    fx_mkdtemp(&f0);
    if (fx_pg()) {
        char msg[512];
        if (fx_raw_exec(&f0, "CREATE TABLE schema_migrations(version TEXT, note TEXT);"
                             "INSERT INTO schema_migrations VALUES('not a samda index', 'x')",
                        msg, sizeof msg))
            fail_msg("planting a foreign schema_migrations: %s", msg);
    } else {
        char path[512];
        snprintf(path, sizeof path, "%s/index.sqlite3", f0.dir);
        FILE *fp = fopen(path, "w");
        assert_non_null(fp);
        for (int i = 0; i < 200; i++) fputs("this is not an SQLite database file at all. ", fp);
        fclose(fp);
    }
    samda_store_params p;
    fx_params(&f0, &p);
    samda_error e;
    assert_null(samda_store_open(&p, &e));
    assert_int_equal(e.code, SAMDA_EDB);
    fx_rm_scratch(&f0);
}

/* An index of schema version 4 (before series recorded their SOP class) is brought forward with its
 * series' class read from their instances, and the one-class rule holds across the upgrade. */
static void test_upgrade_from_4_records_series_class(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    CHECK_OK(fx_ingest_simple(f->s, "1.2", "1.2.3", "1.2.3.4", &e));
    char msg[256];
    if (fx_raw_exec(f, fx_pg() ? "ALTER TABLE series DROP COLUMN sop_class_uid;"
                                 "DELETE FROM schema_migrations WHERE version = 5"
                               : "ALTER TABLE series DROP COLUMN sop_class_uid;"
                                 "DELETE FROM schema_migrations WHERE version = 5; PRAGMA user_version = 4",
                    msg, sizeof msg))
        fail_msg("going back to version 4: %s", msg);
    assert_int_equal(schema_version(f), 4);
    assert_non_null(fx_reopen(f));
    assert_int_equal(schema_version(f), SAMDA_STORE_SCHEMA_VERSION);
    assert_int_equal(fx_raw_int(f, "SELECT count(*) FROM series WHERE sop_class_uid = '1.2.840.10008.5.1.4.1.1.2'"), 1);
    samda_instance_meta m;
    fx_meta(&m, "1.2", "1.2.3", "1.2.3.5");
    snprintf(m.sop_class_uid, sizeof m.sop_class_uid, "%s", "1.2.840.10008.5.1.4.1.1.4");
    CHECK_ST(SAMDA_ECONFLICT, fx_ingest(f->s, &m, "x", 1, SAMDA_DUP_REJECT, NULL, &e));
    fx_close(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fresh_schema),
        cmocka_unit_test(test_reopen_is_noop),
        cmocka_unit_test(test_newer_schema_refused),
        cmocka_unit_test(test_not_a_database_refused),
        cmocka_unit_test(test_upgrade_from_4_records_series_class),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
