/* Tests of storage/fault.c and, through it, the failure paths of every other file: each fault point
 * (write, fsync, rename, mkdir, SQLite step) is failed at each of its calls during an instance ingest,
 * an overwrite, a job enqueue/claim and a result record, and the data directory is checked after each:
 * nothing half-indexed, no partial object visible, no temporary file left, and a retry succeeds. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>

#include "store_fixture.h"

struct fault_ctx {
    int point;             /* -1: count only */
    unsigned long fail_at; /* 1-based call at `point` to fail */
    unsigned long seen[SAMDA_FAULT_POINT_COUNT_];
    unsigned long last_call_no[SAMDA_FAULT_POINT_COUNT_];
    int injected;
};

static int hook(void *ctx, samda_fault_point p, unsigned long call_no)
{
    struct fault_ctx *c = ctx;
    c->seen[p]++;
    c->last_call_no[p] = call_no;
    if ((int)p == c->point && c->seen[p] == c->fail_at) {
        c->injected++;
        return p == SAMDA_FAULT_WRITE ? ENOSPC : EIO;
    }
    return 0;
}

static void test_point_names(void **state)
{
    (void)state;
    assert_string_equal(samda_fault_point_name(SAMDA_FAULT_WRITE), "write");
    assert_string_equal(samda_fault_point_name(SAMDA_FAULT_DB_STEP), "db_step");
    assert_string_equal(samda_fault_point_name(SAMDA_FAULT_UNLINK), "unlink");
    assert_string_equal(samda_fault_point_name((samda_fault_point)99), "unknown");
}

static void test_hook_counts_and_resets(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    struct fault_ctx c = {.point = -1};
    samda_store_set_fault(f->s, hook, &c);
    CHECK_OK(fx_ingest_simple(f->s, "1.1", "1.1.1", "1.1.1.1", &e));
    CHECK_OK(fx_ingest_simple(f->s, "1.1", "1.1.2", "1.1.2.1", &e));
    CHECK_OK(samda_store_series_delete(f->s, "1.1.2", NULL, &e)); /* the unlink point */
    for (int p = 0; p < SAMDA_FAULT_POINT_COUNT_; p++) {
        if (c.seen[p] == 0) fail_msg("no call at fault point %s during ingests and a deletion", samda_fault_point_name(p));
        assert_int_equal(c.last_call_no[p], c.seen[p]); /* the store's own counter agrees */
    }
    samda_store_set_fault(f->s, hook, &c); /* reinstalling resets the store's counters */
    memset(c.seen, 0, sizeof c.seen);
    CHECK_OK(fx_ingest_simple(f->s, "1.1", "1.1.1", "1.1.1.2", &e));
    assert_int_equal(c.last_call_no[SAMDA_FAULT_DB_STEP], c.seen[SAMDA_FAULT_DB_STEP]);
    samda_store_set_fault(f->s, NULL, NULL);
    fx_close(f);
}

/* Everything is consistent and nothing of sop is visible. */
static void assert_clean(fx *f, const char *study, const char *sop, size_t want_objects)
{
    samda_error e;
    CHECK_ST(SAMDA_ENOENT, samda_store_instance_lookup(f->s, sop, NULL, NULL, &e));
    if (study) CHECK_ST(SAMDA_ENOENT, samda_store_study_get(f->s, study, NULL, &e));
    char path[512];
    snprintf(path, sizeof path, "%s/tmp", f->dir);
    assert_int_equal(fx_count_files(path), 0);
    snprintf(path, sizeof path, "%s/objects", f->dir);
    assert_int_equal(fx_count_files(path), want_objects);
    samda_store_check_report r;
    CHECK_OK(samda_store_check(f->s, &r, &e));
}

static void test_ingest_fails_cleanly_at_every_point(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    struct fault_ctx c = {.point = -1};
    samda_store_set_fault(f->s, hook, &c);
    CHECK_OK(fx_ingest_simple(f->s, "2.0", "2.0.1", "2.0.1.1", &e)); /* count the calls of one new-study ingest */
    unsigned long counts[SAMDA_FAULT_POINT_COUNT_];
    memcpy(counts, c.seen, sizeof counts);
    size_t indexed = 1;
    int runs = 0;
    for (int p = 0; p < SAMDA_FAULT_POINT_COUNT_; p++) {
        for (unsigned long k = 1; k <= counts[p]; k++) {
            char study[64], series[64], sop[64];
            snprintf(study, sizeof study, "2.%d.%lu", p + 1, k);
            snprintf(series, sizeof series, "%s.1", study);
            snprintf(sop, sizeof sop, "%s.1.1", study);
            memset(&c, 0, sizeof c);
            c.point = p;
            c.fail_at = k;
            samda_status st = fx_ingest_simple(f->s, study, series, sop, &e);
            assert_int_equal(c.injected, 1);
            if (st == SAMDA_OK)
                fail_msg("ingest succeeded although %s call %lu failed", samda_fault_point_name(p), k);
            c.point = -1;
            assert_clean(f, study, sop, indexed);
            /* a retry after the failure works */
            CHECK_OK(fx_ingest_simple(f->s, study, series, sop, &e));
            indexed++;
            runs++;
        }
    }
    assert_true(runs > 20);
    samda_store_set_fault(f->s, NULL, NULL);
    assert_non_null(fx_reopen(f));
    assert_int_equal(samda_store_orphans_removed(f->s), 0);
    samda_store_check_report r;
    CHECK_OK(samda_store_check(f->s, &r, &e));
    assert_int_equal(r.n_objects_indexed, indexed);
    fx_close(f);
}

static void test_overwrite_fails_cleanly_at_every_point(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    samda_instance_meta m;
    fx_meta(&m, "3.1", "3.1.1", "3.1.1.1");
    samda_ingest_result r0;
    CHECK_OK(fx_ingest(f->s, &m, "original", 8, SAMDA_DUP_OVERWRITE, &r0, &e));
    struct fault_ctx c = {.point = -1};
    samda_store_set_fault(f->s, hook, &c);
    samda_ingest_result r;
    CHECK_OK(fx_ingest(f->s, &m, "replaced-0", 10, SAMDA_DUP_OVERWRITE, &r, &e));
    assert_int_equal(r.outcome, SAMDA_INGEST_REPLACED);
    unsigned long counts[SAMDA_FAULT_POINT_COUNT_];
    memcpy(counts, c.seen, sizeof counts);
    for (int p = 0; p < SAMDA_FAULT_POINT_COUNT_; p++) {
        for (unsigned long k = 1; k <= counts[p]; k++) {
            samda_object_info before;
            c.point = -1;
            CHECK_OK(samda_store_instance_lookup(f->s, "3.1.1.1", &before, NULL, &e));
            memset(&c, 0, sizeof c);
            c.point = p;
            c.fail_at = k;
            char content[32];
            int n = snprintf(content, sizeof content, "replaced-%d-%lu", p, k);
            samda_status st = fx_ingest(f->s, &m, content, (size_t)n, SAMDA_DUP_OVERWRITE, &r, &e);
            c.point = -1;
            if (st == SAMDA_OK) {
                /* only a failure to remove the replaced file after commit may be absorbed; the store
                 * must still be consistent */
                assert_int_equal(r.outcome, SAMDA_INGEST_REPLACED);
            } else {
                samda_object_info after;
                CHECK_OK(samda_store_instance_lookup(f->s, "3.1.1.1", &after, NULL, &e));
                assert_string_equal(after.sha256, before.sha256); /* the old version is intact */
                assert_string_equal(after.relpath, before.relpath);
            }
            char path[512];
            snprintf(path, sizeof path, "%s/objects", f->dir);
            assert_int_equal(fx_count_files(path), 1);
            samda_store_check_report rep;
            CHECK_OK(samda_store_check(f->s, &rep, &e));
        }
    }
    samda_store_set_fault(f->s, NULL, NULL);
    fx_close(f);
}

static void test_queue_and_result_fail_cleanly(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    struct fault_ctx c = {.point = -1};
    samda_store_set_fault(f->s, hook, &c);
    samda_job_spec spec = {.kind = "segment", .series_uid = "4.1.1", .content_hash = "h0", .priority = 1};
    int64_t id;
    CHECK_OK(samda_store_job_enqueue(f->s, &spec, &id, NULL, &e));
    unsigned long steps = c.seen[SAMDA_FAULT_DB_STEP];
    assert_true(steps >= 4);
    for (unsigned long k = 1; k <= steps; k++) {
        char hash[16];
        snprintf(hash, sizeof hash, "h%lu", k);
        spec.content_hash = hash;
        memset(&c, 0, sizeof c);
        c.point = SAMDA_FAULT_DB_STEP;
        c.fail_at = k;
        assert_int_not_equal(samda_store_job_enqueue(f->s, &spec, &id, NULL, &e), SAMDA_OK);
        c.point = -1;
        samda_job *jobs;
        size_t n;
        CHECK_OK(samda_store_job_list(f->s, NULL, &jobs, &n, &e));
        assert_int_equal(n, 1); /* nothing added */
        samda_job_list_free(jobs, n);
    }
    /* claim: on failure the job stays pending with its attempts */
    memset(&c, 0, sizeof c);
    c.point = -1;
    samda_job j;
    bool found;
    CHECK_OK(samda_store_job_claim(f->s, "w1", 1000, NULL, INT_MIN, &j, &found, &e));
    assert_true(found);
    samda_job_clear(&j);
    CHECK_OK(samda_store_job_cancel(f->s, id, &e));
    CHECK_OK(samda_store_job_retry(f->s, id, &e));
    memset(&c, 0, sizeof c);
    c.point = -1;
    CHECK_OK(samda_store_job_claim(f->s, "w1", 1000, NULL, INT_MIN, &j, &found, &e));
    samda_job_clear(&j);
    steps = c.seen[SAMDA_FAULT_DB_STEP];
    CHECK_OK(samda_store_job_cancel(f->s, id, &e));
    CHECK_OK(samda_store_job_retry(f->s, id, &e));
    for (unsigned long k = 1; k <= steps; k++) {
        memset(&c, 0, sizeof c);
        c.point = SAMDA_FAULT_DB_STEP;
        c.fail_at = k;
        assert_int_not_equal(samda_store_job_claim(f->s, "w1", 1000, NULL, INT_MIN, &j, &found, &e), SAMDA_OK);
        assert_false(found);
        c.point = -1;
        CHECK_OK(samda_store_job_get(f->s, id, &j, &e));
        assert_int_equal(j.state, SAMDA_JOB_PENDING);
        assert_int_equal(j.attempts, 0);
        samda_job_clear(&j);
    }
    /* a result whose record fails leaves its SEG file unclaimed: removed at the next open */
    samda_object_info seg;
    CHECK_OK(samda_store_object_put(f->s, SAMDA_OBJECT_SEG, "4.1", "4.1.9", "4.1.9.1", "SEG", 3, &seg, &e));
    samda_result_spec rs = {.series_uid = "4.1.1", .seg_series_uid = "4.1.9", .seg_sop_uid = "4.1.9.1", .object = &seg};
    memset(&c, 0, sizeof c);
    c.point = SAMDA_FAULT_DB_STEP;
    c.fail_at = 2;
    assert_int_not_equal(samda_store_result_add(f->s, &rs, NULL, &e), SAMDA_OK);
    samda_store_set_fault(f->s, NULL, NULL);
    samda_result *res;
    size_t n;
    CHECK_OK(samda_store_result_list(f->s, "4.1.1", &res, &n, &e));
    assert_int_equal(n, 0);
    assert_non_null(fx_reopen(f));
    assert_int_equal(samda_store_orphans_removed(f->s), 1);
    samda_store_check_report rep;
    CHECK_OK(samda_store_check(f->s, &rep, &e));
    fx_close(f);
}

/* storage_collect: a step failing in the middle of a list returns the error, no rows and no leak
 * (rows already read own heap strings; the ASan build checks they are freed). */
static void test_list_fails_cleanly_mid_list(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    for (int i = 0; i < 40; i++) {
        char details[64];
        snprintf(details, sizeof details, "{\"i\":%d}", i);
        CHECK_OK(samda_store_audit_append(f->s, "test", "read", "instance", "ok", details, &e));
    }
    struct fault_ctx c = {.point = -1};
    samda_store_set_fault(f->s, hook, &c);
    samda_audit_entry *rows = NULL;
    size_t n = 0;
    CHECK_OK(samda_store_audit_list(f->s, 0, 0, &rows, &n, &e));
    assert_int_equal(n, 40);
    assert_string_equal(rows[39].details_json, "{\"i\":39}");
    samda_audit_list_free(rows, n);
    unsigned long steps = c.seen[SAMDA_FAULT_DB_STEP];
    assert_int_equal(steps, 41); /* 40 rows and the end */
    for (unsigned long k = 1; k <= steps; k += 10) {
        memset(&c, 0, sizeof c);
        c.point = SAMDA_FAULT_DB_STEP;
        c.fail_at = k;
        rows = (samda_audit_entry *)&c; /* must be reset */
        n = 7;
        assert_int_not_equal(samda_store_audit_list(f->s, 0, 0, &rows, &n, &e), SAMDA_OK);
        assert_null(rows);
        assert_int_equal(n, 0);
        assert_non_null(strstr(e.message, "listing audit log"));
    }
    samda_store_set_fault(f->s, NULL, NULL);
    CHECK_OK(samda_store_audit_list(f->s, 0, 5, &rows, &n, &e)); /* a limit is honoured */
    assert_int_equal(n, 5);
    samda_audit_list_free(rows, n);
    fx_close(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_point_names),
        cmocka_unit_test(test_hook_counts_and_resets),
        cmocka_unit_test(test_ingest_fails_cleanly_at_every_point),
        cmocka_unit_test(test_overwrite_fails_cleanly_at_every_point),
        cmocka_unit_test(test_queue_and_result_fail_cleanly),
        cmocka_unit_test(test_list_fails_cleanly_mid_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
