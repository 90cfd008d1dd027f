/* Tests of storage/db.c: opening and closing a store, directories and their modes, pragmas, crash
 * leftovers in tmp/, the connection pool under concurrent use (threads ingesting at once). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <sqlite3.h>

#include "store_fixture.h"

static void test_open_creates_layout(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    char path[512];
    struct stat sb;
    const char *subs[] = {"objects", "tmp"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", f->dir, subs[i]);
        assert_int_equal(stat(path, &sb), 0);
        assert_true(S_ISDIR(sb.st_mode));
        assert_int_equal(sb.st_mode & 0777, 0700);
    }
    snprintf(path, sizeof path, "%s/index.sqlite3", f->dir);
    /* the index file on SQLite; none at all when the index is PostgreSQL */
    assert_int_equal(stat(path, &sb), fx_pg() ? -1 : 0);
    assert_string_equal(samda_store_data_dir(f->s), f->dir);
    assert_int_equal(samda_store_now_ms(f->s), f->now_ms);
    assert_int_equal(samda_store_tmp_removed(f->s), 0);
    /* the schema is there, seen by a plain connection */
    assert_int_equal(fx_raw_int(f, "SELECT count(*) FROM schema_migrations"), SAMDA_STORE_SCHEMA_VERSION);

    /* WAL mode is persistent in the file: a plain connection sees it (SQLite's alone) */
    if (!fx_pg()) {
        sqlite3 *db;
        assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
        sqlite3_stmt *st;
        assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
        sqlite3_finalize(st);
        sqlite3_close(db);
    }
    fx_close(f);
}

static void test_open_errors_and_null_close(void **state)
{
    (void)state;
    samda_store_close(NULL);
    samda_error e;
    samda_store_params p;
    samda_store_params_init(&p);
    assert_int_equal(p.busy_timeout_ms, 5000);
    assert_int_equal(p.sync, SAMDA_SYNC_FULL);
    assert_null(samda_store_open(&p, &e));
    assert_int_equal(e.code, SAMDA_EINVAL);
    assert_non_null(strstr(e.message, "data_dir"));
    assert_null(samda_store_open(NULL, NULL));
    p.data_dir = "/proc/samda-cannot-create-here";
    assert_null(samda_store_open(&p, &e));
    assert_int_equal(e.code, SAMDA_EIO);
    assert_non_null(strstr(e.message, "/proc/samda-cannot-create-here"));
}

static void test_tmp_leftovers_removed(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    samda_tmp_file t1, t2;
    CHECK_OK(samda_store_object_tmp_open(f->s, &t1, &e));
    CHECK_OK(samda_store_object_tmp_open(f->s, &t2, &e));
    CHECK_OK(samda_store_object_tmp_write(f->s, &t1, "abc", 3, &e));
    close(t1.fd);
    close(t2.fd); /* as a crash would: never discarded */
    assert_non_null(fx_reopen(f));
    assert_int_equal(samda_store_tmp_removed(f->s), 2);
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s/tmp", f->dir);
    assert_int_equal(fx_count_files(tmp), 0);
    fx_close(f);
}

static void test_second_open_skips_recovery(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    samda_tmp_file t;
    CHECK_OK(samda_store_object_tmp_open(f->s, &t, &e));
    /* a second store on the same directory must not remove the first one's file in progress */
    samda_store_params p;
    fx_params(f, &p);
    samda_store *s2 = samda_store_open(&p, &e);
    assert_non_null(s2);
    assert_int_equal(samda_store_tmp_removed(s2), 0);
    assert_int_equal(access(t.path, F_OK), 0);
    CHECK_OK(fx_ingest_simple(s2, "1.2.3", "1.2.3.4", "1.2.3.4.5", &e));
    samda_store_close(s2);
    samda_store_object_tmp_discard(f->s, &t);
    fx_close(f);
}

struct worker {
    samda_store *s;
    int id;
    int n;
    int failures;
    char message[256];
};

static void *ingest_worker(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < w->n; i++) {
        char study[65], series[65], sop[65];
        snprintf(study, sizeof study, "1.2.826.0.1.%d", i % 3);          /* studies shared between threads */
        snprintf(series, sizeof series, "1.2.826.0.1.%d.%d", i % 3, w->id); /* one series per thread+study */
        snprintf(sop, sizeof sop, "1.2.826.0.1.%d.%d.%d", i % 3, w->id, i);
        samda_error e;
        if (fx_ingest_simple(w->s, study, series, sop, &e) != SAMDA_OK) {
            if (!w->failures) snprintf(w->message, sizeof w->message, "%s", e.message);
            w->failures++;
        }
        /* readers at the same time */
        samda_series_info si;
        if (samda_store_series_get(w->s, series, &si, &e) != SAMDA_OK) w->failures++;
    }
    return NULL;
}

/* Threads ingesting at once: every instance indexed, the store consistent. With sync = FULL the
 * commits go through the group commit (one WAL fsync for the transactions committed meanwhile). */
static void threads_share_store(samda_sync_mode sync)
{
    fx *f = fx_open();
    assert_non_null(f);
    if (sync != SAMDA_SYNC_NORMAL) {
        samda_store_close(f->s);
        samda_store_params p;
        fx_params(f, &p);
        p.sync = sync;
        samda_error oe;
        f->s = samda_store_open(&p, &oe);
        if (!f->s) fail_msg("%s", oe.message);
    }
    enum { THREADS = 4, PER = 40 };
    pthread_t th[THREADS];
    struct worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){.s = f->s, .id = i, .n = PER};
        assert_int_equal(pthread_create(&th[i], NULL, ingest_worker, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        if (w[i].failures) fail_msg("thread %d: %d failures, first: %s", i, w[i].failures, w[i].message);
    }
    samda_error e;
    samda_study_info *studies;
    size_t n;
    CHECK_OK(samda_store_study_query(f->s, NULL, &studies, &n, &e));
    assert_int_equal(n, 3);
    int64_t total = 0;
    for (size_t i = 0; i < n; i++) total += studies[i].n_instances;
    samda_store_free(studies);
    assert_int_equal(total, THREADS * PER);
    samda_store_check_report r;
    CHECK_OK(samda_store_check(f->s, &r, &e));
    assert_int_equal(r.n_objects_indexed, THREADS * PER);
    /* what was acknowledged is there after a reopen */
    assert_non_null(fx_reopen(f));
    CHECK_OK(samda_store_check(f->s, &r, &e));
    assert_int_equal(r.n_objects_indexed, THREADS * PER);
    fx_close(f);
}

static void test_threads_share_store(void **state)
{
    (void)state;
    threads_share_store(SAMDA_SYNC_NORMAL);
}

static void test_threads_group_commit(void **state)
{
    (void)state;
    threads_share_store(SAMDA_SYNC_FULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_creates_layout),
        cmocka_unit_test(test_open_errors_and_null_close),
        cmocka_unit_test(test_tmp_leftovers_removed),
        cmocka_unit_test(test_second_open_skips_recovery),
        cmocka_unit_test(test_threads_share_store),
        cmocka_unit_test(test_threads_group_commit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
