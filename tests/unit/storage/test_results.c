/* Tests of storage/results.c: recording a SEG result claims its file, reads back, lists per series,
 * refuses duplicates, unknown jobs and objects that are not SEG objects. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_results),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
