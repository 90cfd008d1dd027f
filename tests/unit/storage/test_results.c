/* Tests of storage/results.c: recording a SEG result claims its file, reads back, lists per series,
 * refuses duplicates, unknown jobs and objects that are not SEG objects; a result ingested with
 * samda_store_result_ingest is also an instance of its study, in its own complete series, and both
 * rows come and go together. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "store_fixture.h"

static void test_results(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    samda_job_spec js = {.kind = "segment", .series_uid = "1.2.1"};
    int64_t job;
    CHECK_OK(samda_store_job_enqueue(f->s, &js, &job, NULL, &e));
    samda_object_info seg;
    CHECK_OK(samda_store_object_put(f->s, SAMDA_OBJECT_SEG, "1.2", "1.2.99", "1.2.99.1", "SEGDATA", 7, &seg, &e));
    samda_result_spec rs = {.job_id = job, .series_uid = "1.2.1", .seg_series_uid = "1.2.99", .seg_sop_uid = "1.2.99.1",
                            .object = &seg, .model_version = "sam_vit_b+adapter", .adapter_version = 3,
                            .timings_json = "{\"encode_ms\":812}", .label_stats_json = "{\"liver\":{\"voxels\":1234}}"};
    int64_t id;
    CHECK_OK(samda_store_result_add(f->s, &rs, &id, &e));
    CHECK_ST(SAMDA_EEXIST, samda_store_result_add(f->s, &rs, &id, &e));
    samda_result r;
    CHECK_OK(samda_store_result_get(f->s, id, &r, &e));
    assert_int_equal(r.job_id, job);
    assert_string_equal(r.seg_sop_uid, "1.2.99.1");
    assert_string_equal(r.object.relpath, seg.relpath);
    assert_string_equal(r.object.sha256, seg.sha256);
    assert_string_equal(r.model_version, "sam_vit_b+adapter");
    assert_int_equal(r.adapter_version, 3);
    assert_string_equal(r.timings_json, "{\"encode_ms\":812}");
    samda_result_clear(&r);
    CHECK_ST(SAMDA_ENOENT, samda_store_result_get(f->s, 999, &r, &e));

    samda_object_info seg2;
    CHECK_OK(samda_store_object_put(f->s, SAMDA_OBJECT_SEG, "1.2", "1.2.99", "1.2.99.2", "SEG2", 4, &seg2, &e));
    samda_result_spec rs2 = {.series_uid = "1.2.1", .seg_series_uid = "1.2.99", .seg_sop_uid = "1.2.99.2", .object = &seg2};
    CHECK_OK(samda_store_result_add(f->s, &rs2, NULL, &e));
    samda_result *list;
    size_t n;
    CHECK_OK(samda_store_result_list(f->s, "1.2.1", &list, &n, &e));
    assert_int_equal(n, 2);
    assert_string_equal(list[0].seg_sop_uid, "1.2.99.2");
    assert_null(list[0].timings_json);
    samda_result_list_free(list, n);

    samda_object_info seg3;
    CHECK_OK(samda_store_object_put(f->s, SAMDA_OBJECT_SEG, "1.2", "1.2.99", "1.2.99.3", "SEG3", 4, &seg3, &e));
    rs2.seg_sop_uid = "1.2.99.3";
    rs2.object = &seg3;
    rs2.job_id = 4242;
    CHECK_ST(SAMDA_EINVAL, samda_store_result_add(f->s, &rs2, NULL, &e));
    samda_object_info inst;
    CHECK_OK(samda_store_object_put(f->s, SAMDA_OBJECT_INSTANCE, "1.2", "1.2.1", "1.2.1.1", "I", 1, &inst, &e));
    rs2.job_id = 0;
    rs2.object = &inst;
    CHECK_ST(SAMDA_EINVAL, samda_store_result_add(f->s, &rs2, NULL, &e));
    rs2.seg_sop_uid = "bad";
    CHECK_ST(SAMDA_EBADUID, samda_store_result_add(f->s, &rs2, NULL, &e));

    /* the changes feed saw both results; the unrecorded instance object is removed at reopen */
    assert_non_null(fx_reopen(f));
    assert_int_equal(samda_store_orphans_removed(f->s), 2); /* seg3 and the instance object */
    samda_store_check_report rep;
    CHECK_OK(samda_store_check(f->s, &rep, &e));
    assert_int_equal(rep.n_objects_indexed, 2);
    fx_close(f);
}

/* A SEG written into a temporary file, ingested as the result of job for source series 1.5.1. */
static samda_status ingest_seg(fx *f, int64_t job, const char *series, const char *sop, const char *patient,
                               samda_ingest_result *res, int64_t *rid, samda_error *e)
{
    samda_instance_meta m;
    fx_meta(&m, "1.5", series, sop);
    snprintf(m.modality, sizeof m.modality, "SEG");
    snprintf(m.sop_class_uid, sizeof m.sop_class_uid, "1.2.840.10008.5.1.4.1.1.66.4");
    snprintf(m.patient_id, sizeof m.patient_id, "%s", patient);
    m.bits_allocated = 1;
    m.number_of_frames = 7;
    return fx_ingest_result(f->s, &m, job, "1.5.1", res, rid, e);
}

static size_t changes_of(fx *f, const char *kind, const char *resource)
{
    samda_change *c = NULL;
    size_t n = 0, k = 0;
    samda_error e;
    if (samda_store_change_list(f->s, 0, 1000, &c, &n, NULL, &e) != SAMDA_OK) return 0;
    for (size_t i = 0; i < n; i++) k += !strcmp(c[i].kind, kind) && !strcmp(c[i].resource, resource);
    samda_store_free(c);
    return k;
}

static void test_result_ingest(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    CHECK_OK(fx_ingest_simple(f->s, "1.5", "1.5.1", "1.5.1.1", &e)); /* the source series (PID1) */
    CHECK_OK(fx_ingest_simple(f->s, "1.5", "1.5.1", "1.5.1.2", &e));
    samda_study_info before;
    CHECK_OK(samda_store_study_get(f->s, "1.5", &before, &e));
    samda_job_spec js = {.kind = "segment", .study_uid = "1.5", .series_uid = "1.5.1"};
    int64_t job;
    CHECK_OK(samda_store_job_enqueue(f->s, &js, &job, NULL, &e));
    f->now_ms += 60000;

    samda_ingest_result res;
    int64_t rid = 0;
    CHECK_OK(ingest_seg(f, job, "1.5.9", "1.5.9.1", "PID1", &res, &rid, &e));
    assert_true(rid > 0);
    assert_true(res.new_series);
    assert_false(res.new_study);
    assert_int_equal(strncmp(res.object.relpath, "seg/", 4), 0);

    /* one file, two rows: the result and the instance of the study */
    samda_result r;
    CHECK_OK(samda_store_result_get(f->s, rid, &r, &e));
    assert_string_equal(r.object.relpath, res.object.relpath);
    assert_string_equal(r.seg_series_uid, "1.5.9");
    samda_result_clear(&r);
    samda_instance_row row;
    CHECK_OK(samda_store_instance_get(f->s, "1.5.9.1", &row, &e));
    assert_string_equal(row.object.relpath, res.object.relpath);
    assert_true(row.meta.flags & SAMDA_INSTANCE_RESULT);
    assert_int_equal(row.meta.number_of_frames, 7);

    /* its own series, complete as written: the completion timers never list it */
    samda_series_info se;
    CHECK_OK(samda_store_series_get(f->s, "1.5.9", &se, &e));
    assert_int_equal(se.state, SAMDA_SERIES_COMPLETE);
    assert_string_equal(se.modality, "SEG");
    assert_int_equal(se.n_instances, 1);
    samda_series_info *idle = NULL;
    size_t n = 0;
    CHECK_OK(samda_store_series_idle(f->s, f->now_ms + 3600000, 100, &idle, &n, &e));
    for (size_t i = 0; i < n; i++) assert_string_not_equal(idle[i].series_uid, "1.5.9");
    samda_store_free(idle);

    /* the study counts it, names SEG among its modalities, and did not restart its idle timer */
    samda_study_info st;
    CHECK_OK(samda_store_study_get(f->s, "1.5", &st, &e));
    assert_int_equal(st.n_series, 2);
    assert_int_equal(st.n_instances, 3);
    assert_non_null(strstr(st.modalities, "SEG"));
    assert_int_equal(st.last_received_ms, before.last_received_ms);

    /* the change feed has the result and the instance */
    assert_int_equal(changes_of(f, "result", "1.5.9.1"), 1);
    assert_int_equal(changes_of(f, "instance", "1.5.9.1"), 1);
    assert_int_equal(changes_of(f, "series", "1.5.9"), 1);

    /* a re-run: a new SEG is a new instance in a new series, counts follow */
    CHECK_OK(ingest_seg(f, job, "1.5.10", "1.5.10.1", "PID1", NULL, NULL, &e));
    CHECK_OK(samda_store_study_get(f->s, "1.5", &st, &e));
    assert_int_equal(st.n_series, 3);
    assert_int_equal(st.n_instances, 4);

    /* refusals leave nothing: a SOP UID already indexed, a SEG naming another patient than its study */
    CHECK_ST(SAMDA_EEXIST, ingest_seg(f, job, "1.5.9", "1.5.9.1", "PID1", NULL, NULL, &e));
    CHECK_ST(SAMDA_ECONFLICT, ingest_seg(f, job, "1.5.11", "1.5.11.1", "OTHER", NULL, NULL, &e));
    CHECK_ST(SAMDA_ENOENT, samda_store_series_get(f->s, "1.5.11", &se, &e));
    CHECK_ST(SAMDA_EINVAL, ingest_seg(f, 4242, "1.5.12", "1.5.12.1", "PID1", NULL, NULL, &e)); /* unknown job */
    CHECK_ST(SAMDA_ENOENT, samda_store_instance_get(f->s, "1.5.12.1", &row, &e));
    CHECK_ST(SAMDA_ENOENT, samda_store_series_get(f->s, "1.5.12", &se, &e));
    samda_result *list;
    CHECK_OK(samda_store_result_list(f->s, "1.5.1", &list, &n, &e));
    assert_int_equal(n, 2);
    samda_result_list_free(list, n);

    /* a result is never replaced, under any policy (its results row shares the file): a copy sent
     * back, identical or not (a PACS's own file meta), is acknowledged as held and not stored */
    samda_instance_meta m;
    fx_meta(&m, "1.5", "1.5.9", "1.5.9.1");
    snprintf(m.modality, sizeof m.modality, "SEG");
    snprintf(m.sop_class_uid, sizeof m.sop_class_uid, "1.2.840.10008.5.1.4.1.1.66.4");
    const samda_dup_policy policies[] = {SAMDA_DUP_REJECT, SAMDA_DUP_IGNORE_IDENTICAL, SAMDA_DUP_OVERWRITE};
    for (size_t i = 0; i < 3; i++) {
        samda_ingest_result same;
        CHECK_OK(fx_ingest(f->s, &m, "changed", 7, policies[i], &same, &e));
        assert_int_equal(same.outcome, SAMDA_INGEST_IDENTICAL);
        assert_string_equal(same.object.relpath, res.object.relpath);
        CHECK_OK(fx_ingest(f->s, &m, "1.5.9.1", 7, policies[i], &same, &e)); /* the identical copy */
        assert_int_equal(same.outcome, SAMDA_INGEST_IDENTICAL);
    }
    CHECK_OK(samda_store_instance_get(f->s, "1.5.9.1", &row, &e));
    assert_string_equal(row.object.relpath, res.object.relpath);
    assert_int_equal(row.object.size, strlen("1.5.9.1"));

    /* nothing left over: every file claimed, each checked once */
    assert_non_null(fx_reopen(f));
    assert_int_equal(samda_store_orphans_removed(f->s), 0);
    samda_store_check_report rep;
    CHECK_OK(samda_store_check(f->s, &rep, &e));
    assert_int_equal(rep.n_objects_indexed, 4);
    assert_int_equal(rep.n_unindexed, 0);
    fx_close(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_results),
        cmocka_unit_test(test_result_ingest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
