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

/* A fixture whose store runs with this sync mode (the fixture's own is NORMAL). */
static fx *open_with_sync(samda_sync_mode sync)
{
    fx *f = fx_open();
    assert_non_null(f);
    if (sync == SAMDA_SYNC_NORMAL) return f;
    samda_store_close(f->s);
    samda_store_params p;
    fx_params(f, &p);
    p.sync = sync;
    samda_error e;
    f->s = samda_store_open(&p, &e);
    if (!f->s) fail_msg("%s", e.message);
    return f;
}

/* Threads ingesting at once: every instance indexed, the store consistent. With sync = FULL the
 * commits go through the group commit (one WAL fsync for the transactions committed meanwhile). */
static void threads_share_store(samda_sync_mode sync)
{
    fx *f = open_with_sync(sync);
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

/* Threads whose instances share transactions (storage_tx_shared) while some of them fail: a series
 * claimed by another study is refused, the same SOP from every thread is stored once and found
 * identical by the others, and the rest is stored. Each call gets its own outcome, whatever batch it
 * fell in. */
enum { MIX_THREADS = 8, MIX_PER = 30 };

struct mix_worker {
    samda_store *s;
    int id;
    int ok, conflicts, identical, new_dups, wrong;
    char message[256];
};

static void *mix_worker(void *arg)
{
    struct mix_worker *w = arg;
    for (int i = 0; i < MIX_PER; i++) {
        samda_instance_meta m;
        char sop[65], series[65], buf[96];
        snprintf(series, sizeof series, "1.2.826.0.2.1.%d", i % 4);
        int kind = i % 5 == 4 ? 1 : i % 7 == 6 ? 2 : 0; /* 1: conflict, 2: the same SOP in every thread */
        if (kind == 2) snprintf(sop, sizeof sop, "1.2.826.0.2.1.%d.9%d", i % 4, i);
        else snprintf(sop, sizeof sop, "1.2.826.0.2.1.%d.%d.%d", i % 4, w->id, i);
        fx_meta(&m, kind == 1 ? "1.2.826.0.9" : "1.2.826.0.2", series, sop);
        int n = snprintf(buf, sizeof buf, "content of %s", sop);
        samda_ingest_result res;
        samda_error e;
        samda_status st = fx_ingest(w->s, &m, buf, (size_t)n, SAMDA_DUP_IGNORE_IDENTICAL, &res, &e);
        if (kind == 1 && st == SAMDA_ECONFLICT && strstr(e.message, "(0020,000D)")) w->conflicts++;
        else if (kind == 2 && st == SAMDA_OK && res.outcome == SAMDA_INGEST_IDENTICAL) w->identical++;
        else if (kind == 2 && st == SAMDA_OK && res.outcome == SAMDA_INGEST_NEW) w->new_dups++;
        else if (kind == 0 && st == SAMDA_OK && res.outcome == SAMDA_INGEST_NEW) w->ok++;
        else {
            if (!w->wrong) snprintf(w->message, sizeof w->message, "%s: kind %d, status %d: %s", sop, kind, st,
                                    st == SAMDA_OK ? "(ok)" : e.message);
            w->wrong++;
        }
    }
    return NULL;
}

static void test_threads_shared_transactions_fail_alone(void **state)
{
    (void)state;
    fx *f = open_with_sync(SAMDA_SYNC_FULL);
    samda_error e;
    for (int k = 0; k < 4; k++) { /* the four series, in study 1.2.826.0.2 */
        char series[65], sop[65];
        snprintf(series, sizeof series, "1.2.826.0.2.1.%d", k);
        snprintf(sop, sizeof sop, "1.2.826.0.2.1.%d.0", k);
        CHECK_OK(fx_ingest_simple(f->s, "1.2.826.0.2", series, sop, &e));
    }
    pthread_t th[MIX_THREADS];
    struct mix_worker w[MIX_THREADS];
    for (int i = 0; i < MIX_THREADS; i++) {
        w[i] = (struct mix_worker){.s = f->s, .id = i + 1};
        assert_int_equal(pthread_create(&th[i], NULL, mix_worker, &w[i]), 0);
    }
    int ok = 0, conflicts = 0, identical = 0, new_dups = 0;
    for (int i = 0; i < MIX_THREADS; i++) {
        pthread_join(th[i], NULL);
        if (w[i].wrong) fail_msg("thread %d: %d wrong outcomes, first: %s", i, w[i].wrong, w[i].message);
        ok += w[i].ok;
        conflicts += w[i].conflicts;
        identical += w[i].identical;
        new_dups += w[i].new_dups;
    }
    int n_conflict = 0, n_dup = 0;
    for (int i = 0; i < MIX_PER; i++) {
        if (i % 5 == 4) n_conflict++;
        else if (i % 7 == 6) n_dup++;
    }
    assert_int_equal(conflicts, MIX_THREADS * n_conflict);
    assert_int_equal(new_dups, n_dup); /* each shared SOP stored once */
    assert_int_equal(identical, (MIX_THREADS - 1) * n_dup);
    assert_int_equal(ok, MIX_THREADS * (MIX_PER - n_conflict - n_dup));
    samda_store_check_report r;
    CHECK_OK(samda_store_check(f->s, &r, &e));
    assert_int_equal(r.n_objects_indexed, 4 + ok + new_dups);
    assert_int_equal(fx_raw_int(f, "SELECT count(*) FROM instances"), 4 + ok + new_dups);
    assert_int_equal(fx_raw_int(f, "SELECT count(*) FROM studies"), 1); /* nothing of a refused one */
    assert_int_equal(fx_raw_int(f, "SELECT count(*) FROM object_intents"), 0);
    assert_non_null(fx_reopen(f));
    CHECK_OK(samda_store_check(f->s, &r, &e));
    assert_int_equal(r.n_objects_indexed, 4 + ok + new_dups);
    fx_close(f);
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
        cmocka_unit_test(test_threads_shared_transactions_fail_alone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
