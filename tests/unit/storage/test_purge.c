/* Tests of storage/purge.c: deleting a series removes its rows and files and leaves its study while
 * other series remain; deleting a study removes it and its patient; a result SEG series takes its
 * results row and export items with it; a running job refuses the deletion with nothing changed;
 * a crash between commit and unlink is repaired at the next open; retention lists source series
 * only once every result was delivered, and result series once delivered and old enough. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "store_fixture.h"

/* A result SEG for source series src, ingested as an instance of study "1.5" (job job). */
static samda_status add_result(fx *f, int64_t job, const char *src, const char *series, const char *sop,
                               samda_object_info *obj, samda_error *e)
{
    samda_instance_meta m;
    fx_meta(&m, "1.5", series, sop);
    snprintf(m.site, sizeof m.site, "s1");
    snprintf(m.modality, sizeof m.modality, "SEG");
    snprintf(m.sop_class_uid, sizeof m.sop_class_uid, "1.2.840.10008.5.1.4.1.1.66.4");
    samda_ingest_result res;
    samda_status st = fx_ingest_result(f->s, &m, job, src, &res, NULL, e);
    if (st == SAMDA_OK && obj) *obj = res.object;
    return st;
}

static size_t count_files(fx *f)
{
    char p[600];
    snprintf(p, sizeof p, "%s/objects", f->dir);
    return fx_count_files(p);
}

/* Study 1.5: source series 1.5.1 (3 instances) and 1.5.2 (2), job on 1.5.1, its result SEG 1.5.9. */
static fx *fixture(int64_t *job, samda_object_info *seg)
{
    fx *f = fx_open();
    samda_error e;
    CHECK_OK(samda_store_site_add(f->s, "s1", NULL, NULL, NULL, &e));
    const char *sops[] = {"1.5.1.1", "1.5.1.2", "1.5.1.3", "1.5.2.1", "1.5.2.2"};
    for (int i = 0; i < 5; i++) {
        samda_instance_meta m;
        fx_meta(&m, "1.5", i < 3 ? "1.5.1" : "1.5.2", sops[i]);
        snprintf(m.site, sizeof m.site, "s1");
        CHECK_OK(fx_ingest(f->s, &m, sops[i], strlen(sops[i]), SAMDA_DUP_IGNORE_IDENTICAL, NULL, &e));
    }
    samda_job_spec js = {.kind = "segment", .study_uid = "1.5", .series_uid = "1.5.1"};
    CHECK_OK(samda_store_job_enqueue(f->s, &js, job, NULL, &e));
    CHECK_OK(add_result(f, *job, "1.5.1", "1.5.9", "1.5.9.1", seg, &e));
    return f;
}

static void test_series_and_study(void **state)
{
    (void)state;
    int64_t job;
    samda_object_info seg;
    fx *f = fixture(&job, &seg);
    samda_error e;
    assert_int_equal(count_files(f), 6);
    samda_purge_report rep = {0};
    CHECK_OK(samda_store_series_delete(f->s, "1.5.2", &rep, &e));
    assert_int_equal(rep.n_series, 1);
    assert_int_equal(rep.n_instances, 2);
    assert_int_equal(rep.n_results, 0);
    assert_true(rep.bytes > 0);
    assert_int_equal(count_files(f), 4);
    samda_series_info se;
    CHECK_ST(SAMDA_ENOENT, samda_store_series_get(f->s, "1.5.2", &se, &e));
    CHECK_ST(SAMDA_ENOENT, samda_store_instance_lookup(f->s, "1.5.2.1", NULL, NULL, &e));
    samda_study_info st;
    CHECK_OK(samda_store_study_get(f->s, "1.5", &st, &e));
    assert_int_equal(st.n_series, 2);
    assert_int_equal(st.n_instances, 4);
    CHECK_ST(SAMDA_ENOENT, samda_store_series_delete(f->s, "1.5.2", NULL, &e));
    CHECK_ST(SAMDA_EBADUID, samda_store_series_delete(f->s, "1.5.x", NULL, &e));

    /* the source series goes; its result (made from it, in its own series) stays */
    CHECK_OK(samda_store_series_delete(f->s, "1.5.1", &rep, &e));
    samda_result *list = NULL;
    size_t n = 0;
    CHECK_OK(samda_store_result_list(f->s, "1.5.1", &list, &n, &e));
    assert_int_equal(n, 1);
    samda_result_list_free(list, n);
    samda_job job_row;
    CHECK_OK(samda_store_job_get(f->s, job, &job_row, &e));
    assert_int_equal(job_row.state, SAMDA_JOB_CANCELLED); /* it was pending: nothing left to segment */
    samda_job_clear(&job_row);

    /* the whole study: the result series, the study and its patient */
    CHECK_OK(samda_store_study_delete(f->s, "1.5", &rep, &e));
    assert_int_equal(rep.n_series, 3);
    assert_int_equal(rep.n_results, 1);
    CHECK_ST(SAMDA_ENOENT, samda_store_study_get(f->s, "1.5", &st, &e));
    CHECK_ST(SAMDA_ENOENT, samda_store_study_delete(f->s, "1.5", NULL, &e));
    assert_int_equal(count_files(f), 0);
    samda_change *c = NULL;
    CHECK_OK(samda_store_change_list(f->s, 0, 1000, &c, &n, NULL, &e));
    size_t deleted = 0;
    for (size_t i = 0; i < n; i++) deleted += c[i].type == SAMDA_CHANGE_DELETED;
    assert_int_equal(deleted, 4); /* three series and the study */
    samda_store_free(c);
    samda_store_check_report r;
    CHECK_OK(samda_store_check(f->s, &r, &e));
    assert_int_equal(r.n_unindexed + r.n_missing + r.n_mismatch, 0);
    fx_close(f);
}

static void test_result_series_and_exports(void **state)
{
    (void)state;
    int64_t job;
    samda_object_info seg;
    fx *f = fixture(&job, &seg);
    samda_error e;
    int64_t dest, item;
    CHECK_OK(samda_store_destination_add(f->s, "pacs", "PACS", "127.0.0.1", 104, NULL, &dest, &e));
    CHECK_OK(samda_store_export_enqueue(f->s, dest, seg.relpath, "1.5.9.1", &item, &e));
    samda_purge_report rep = {0};
    CHECK_OK(samda_store_series_delete(f->s, "1.5.9", &rep, &e));
    assert_int_equal(rep.n_results, 1);
    assert_int_equal(rep.n_instances, 1);
    samda_export_item *items = NULL;
    size_t n = 0;
    CHECK_OK(samda_store_export_list(f->s, 0, -1, 100, &items, &n, &e));
    assert_int_equal(n, 0);
    samda_store_free(items);
    samda_result *list = NULL;
    CHECK_OK(samda_store_result_list(f->s, "1.5.1", &list, &n, &e));
    assert_int_equal(n, 0);
    samda_result_list_free(list, n);
    fx_close(f);
}

static void test_busy(void **state)
{
    (void)state;
    int64_t job;
    samda_object_info seg;
    fx *f = fixture(&job, &seg);
    samda_error e;
    samda_job claimed;
    bool found = false;
    CHECK_OK(samda_store_job_claim(f->s, "w1", 60000, "segment", INT_MIN, &claimed, &found, &e));
    assert_true(found);
    samda_job_clear(&claimed);
    CHECK_ST(SAMDA_EBUSY, samda_store_study_delete(f->s, "1.5", NULL, &e));
    assert_non_null(strstr(e.message, "a job is running"));
    samda_study_info st;
    CHECK_OK(samda_store_study_get(f->s, "1.5", &st, &e));
    assert_int_equal(st.n_instances, 6);
    assert_int_equal(count_files(f), 6);
    CHECK_OK(samda_store_series_delete(f->s, "1.5.2", NULL, &e)); /* another series of the study is free */
    fx_close(f);
}

static int crash_before_unlink(void *ctx, samda_fault_point p, unsigned long n)
{
    (void)ctx;
    (void)n;
    return p == SAMDA_FAULT_UNLINK;
}

static void test_crash_before_unlink(void **state)
{
    (void)state;
    int64_t job;
    samda_object_info seg;
    fx *f = fixture(&job, &seg);
    samda_error e;
    samda_store_set_fault(f->s, crash_before_unlink, NULL);
    CHECK_OK(samda_store_study_delete(f->s, "1.5", NULL, &e));
    assert_int_equal(count_files(f), 6); /* the rows are gone, the files not yet */
    assert_non_null(fx_reopen(f));
    assert_int_equal(samda_store_orphans_removed(f->s), 6);
    assert_int_equal(count_files(f), 0);
    samda_store_check_report r;
    CHECK_OK(samda_store_check(f->s, &r, &e));
    assert_int_equal(r.n_unindexed + r.n_missing + r.n_mismatch, 0);
    fx_close(f);
}

struct step_fault {
    unsigned long fail_at, seen;
};

static int fail_db_step(void *ctx, samda_fault_point p, unsigned long n)
{
    (void)n;
    struct step_fault *c = ctx;
    return p == SAMDA_FAULT_DB_STEP && ++c->seen == c->fail_at ? EIO : 0;
}

/* Every database step of a study deletion failing in turn: nothing deleted, nothing lost, the store
 * checks clean; then the deletion succeeds. */
static void test_delete_fails_cleanly_at_every_step(void **state)
{
    (void)state;
    int64_t job;
    samda_object_info seg;
    fx *f = fixture(&job, &seg);
    samda_error e;
    struct step_fault c = {0};
    samda_store_set_fault(f->s, fail_db_step, &c);
    size_t steps = 0;
    for (unsigned long k = 1;; k++) {
        c.fail_at = k;
        c.seen = 0;
        samda_status st = samda_store_study_delete(f->s, "1.5", NULL, &e);
        if (st == SAMDA_OK) break;
        steps++;
        samda_store_set_fault(f->s, NULL, NULL);
        samda_study_info si;
        CHECK_OK(samda_store_study_get(f->s, "1.5", &si, &e));
        assert_int_equal(si.n_instances, 6);
        assert_int_equal(count_files(f), 6);
        samda_store_check_report r;
        CHECK_OK(samda_store_check(f->s, &r, &e));
        samda_store_set_fault(f->s, fail_db_step, &c);
    }
    assert_true(steps > 10);
    samda_store_set_fault(f->s, NULL, NULL);
    assert_int_equal(count_files(f), 0);
    fx_close(f);
}

static size_t due(fx *f, samda_retention_kind kind, int64_t before, const char *first)
{
    char (*uids)[SAMDA_UID_SIZE] = NULL;
    size_t n = 0;
    samda_error e;
    CHECK_OK(samda_store_retention_due(f->s, "s1", kind, before, 10, &uids, &n, &e));
    if (n && first) assert_string_equal(uids[0], first);
    samda_store_free(uids);
    return n;
}

static void test_retention_due(void **state)
{
    (void)state;
    int64_t job;
    samda_object_info seg;
    fx *f = fixture(&job, &seg);
    samda_error e;
    /* no export item yet: the source is not "delivered"; the result has nothing to deliver */
    assert_int_equal(due(f, SAMDA_RETAIN_SOURCE, f->now_ms + 1, NULL), 0);
    assert_int_equal(due(f, SAMDA_RETAIN_RESULTS, f->now_ms + 1, "1.5.9"), 1);
    assert_int_equal(due(f, SAMDA_RETAIN_RESULTS, f->now_ms - 1, NULL), 0); /* made after the cutoff */

    int64_t dest, item;
    CHECK_OK(samda_store_destination_add(f->s, "pacs", "PACS", "127.0.0.1", 104, NULL, &dest, &e));
    CHECK_OK(samda_store_export_enqueue(f->s, dest, seg.relpath, "1.5.9.1", &item, &e));
    f->now_ms += 1000;
    assert_int_equal(due(f, SAMDA_RETAIN_SOURCE, f->now_ms + 1, NULL), 0); /* pending */
    assert_int_equal(due(f, SAMDA_RETAIN_RESULTS, f->now_ms + 1, NULL), 0);
    samda_export_item *items = NULL;
    size_t n = 0;
    CHECK_OK(samda_store_export_claim(f->s, dest, 10, &items, &n, &e));
    assert_int_equal(n, 1);
    samda_store_free(items);
    CHECK_OK(samda_store_export_done(f->s, item, &e));
    int64_t delivered = f->now_ms;
    f->now_ms += 1000;
    /* delivered: the source series 1.5.1 (not 1.5.2, which has no result) once the cutoff passes it */
    assert_int_equal(due(f, SAMDA_RETAIN_SOURCE, delivered - 1, NULL), 0);
    assert_int_equal(due(f, SAMDA_RETAIN_SOURCE, delivered + 1, "1.5.1"), 1);
    assert_int_equal(due(f, SAMDA_RETAIN_RESULTS, f->now_ms, "1.5.9"), 1);
    char (*uids)[SAMDA_UID_SIZE] = NULL;
    CHECK_ST(SAMDA_ENOENT, samda_store_retention_due(f->s, "../x", SAMDA_RETAIN_SOURCE, 0, 10, &uids, &n, &e));

    uint64_t before = 0, after = 0;
    CHECK_OK(samda_store_bytes(f->s, &before, &e));
    CHECK_OK(samda_store_series_delete(f->s, "1.5.1", NULL, &e));
    CHECK_OK(samda_store_bytes(f->s, &after, &e));
    assert_int_equal(before - after, strlen("1.5.1.1") * 3);
    assert_int_equal(due(f, SAMDA_RETAIN_SOURCE, f->now_ms, NULL), 0);
    fx_close(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_series_and_study),
        cmocka_unit_test(test_result_series_and_exports),
        cmocka_unit_test(test_busy),
        cmocka_unit_test(test_crash_before_unlink),
        cmocka_unit_test(test_delete_fails_cleanly_at_every_step),
        cmocka_unit_test(test_retention_due),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
