/* Tests of storage/result_objects.c: an RT Structure Set or SR recorded beside a result claims its
 * file (kept at reopen, checked by samda_store_check), lists per result, and duplicates, unknown
 * kinds and results, and objects outside seg/ are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "store_fixture.h"

#include <string.h>
#include <unistd.h>

static void test_result_objects(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    samda_object_info seg, rt, sr, orphan;
    CHECK_OK(samda_store_object_put(f->s, SAMDA_OBJECT_SEG, "1.2", "1.2.99", "1.2.99.1", "SEG", 3, &seg, &e));
    samda_result_spec rs = {.series_uid = "1.2.1", .seg_series_uid = "1.2.99", .seg_sop_uid = "1.2.99.1", .object = &seg};
    int64_t result;
    CHECK_OK(samda_store_result_add(f->s, &rs, &result, &e));
    CHECK_OK(samda_store_object_put(f->s, SAMDA_OBJECT_SEG, "1.2", "1.2.98", "1.2.98.1", "RT", 2, &rt, &e));
    CHECK_OK(samda_store_object_put(f->s, SAMDA_OBJECT_SEG, "1.2", "1.2.97", "1.2.97.1", "SR", 2, &sr, &e));
    CHECK_OK(samda_store_object_put(f->s, SAMDA_OBJECT_SEG, "1.2", "1.2.96", "1.2.96.1", "X", 1, &orphan, &e));

    samda_result_object_spec os = {.result_id = result, .kind = "rtstruct", .series_uid = "1.2.98",
                                   .sop_uid = "1.2.98.1", .object = &rt};
    int64_t id;
    CHECK_OK(samda_store_result_object_add(f->s, &os, &id, &e));
    CHECK_ST(SAMDA_EEXIST, samda_store_result_object_add(f->s, &os, &id, &e)); /* same SOP */
    samda_result_object_spec os2 = {.result_id = result, .kind = "sr", .series_uid = "1.2.97", .sop_uid = "1.2.97.1",
                                    .object = &sr};
    CHECK_OK(samda_store_result_object_add(f->s, &os2, NULL, &e));
    os2.sop_uid = "1.2.97.2";
    CHECK_ST(SAMDA_EEXIST, samda_store_result_object_add(f->s, &os2, NULL, &e)); /* a second SR of the result */
    os2.kind = "pdf";
    CHECK_ST(SAMDA_EINVAL, samda_store_result_object_add(f->s, &os2, NULL, &e));
    os2.kind = "sr";
    os2.result_id = 4242;
    os2.object = &orphan;
    CHECK_ST(SAMDA_EINVAL, samda_store_result_object_add(f->s, &os2, NULL, &e));
    os2.sop_uid = "bad";
    CHECK_ST(SAMDA_EBADUID, samda_store_result_object_add(f->s, &os2, NULL, &e));

    samda_result_object *rows;
    size_t n;
    CHECK_OK(samda_store_result_object_list(f->s, result, &rows, &n, &e));
    assert_int_equal(n, 2);
    assert_int_equal(rows[0].id, id);
    assert_string_equal(rows[0].kind, "rtstruct");
    assert_string_equal(rows[0].sop_uid, "1.2.98.1");
    assert_string_equal(rows[0].object.relpath, rt.relpath);
    assert_string_equal(rows[1].kind, "sr");
    assert_string_equal(rows[1].object.sha256, sr.sha256);
    samda_store_free(rows);
    CHECK_OK(samda_store_result_object_list(f->s, 999, &rows, &n, &e));
    assert_int_equal(n, 0);

    /* only the unrecorded object goes at reopen; the check finds SEG, RTSTRUCT and SR intact */
    assert_non_null(fx_reopen(f));
    assert_int_equal(samda_store_orphans_removed(f->s), 1);
    samda_store_check_report rep;
    CHECK_OK(samda_store_check(f->s, &rep, &e));
    assert_int_equal(rep.n_objects_indexed, 3);
    fx_close(f);
}

/* A result recorded with its objects: all rows or none. */
static void test_result_with_objects(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    samda_object_info seg, rt, seg2, rt2;
    CHECK_OK(samda_store_object_put(f->s, SAMDA_OBJECT_SEG, "1.2", "1.2.99", "1.2.99.1", "SEG", 3, &seg, &e));
    CHECK_OK(samda_store_object_put(f->s, SAMDA_OBJECT_SEG, "1.2", "1.2.98", "1.2.98.1", "RT", 2, &rt, &e));
    samda_result_object_spec os = {.kind = "rtstruct", .series_uid = "1.2.98", .sop_uid = "1.2.98.1", .object = &rt};
    samda_result_spec rs = {.series_uid = "1.2.1", .seg_series_uid = "1.2.99", .seg_sop_uid = "1.2.99.1",
                            .object = &seg, .objects = &os, .n_objects = 1};
    int64_t result;
    CHECK_OK(samda_store_result_add(f->s, &rs, &result, &e));
    samda_result_object *rows;
    size_t n;
    CHECK_OK(samda_store_result_object_list(f->s, result, &rows, &n, &e));
    assert_int_equal(n, 1);
    assert_int_equal(rows[0].result_id, result);
    assert_string_equal(rows[0].object.relpath, rt.relpath);
    samda_store_free(rows);

    /* a second result whose RTSTRUCT repeats the first one's SOP: neither row is written */
    CHECK_OK(samda_store_object_put(f->s, SAMDA_OBJECT_SEG, "1.2", "1.2.99", "1.2.99.2", "SEG2", 4, &seg2, &e));
    CHECK_OK(samda_store_object_put(f->s, SAMDA_OBJECT_SEG, "1.2", "1.2.98", "1.2.98.2", "RT2", 3, &rt2, &e));
    samda_result_object_spec os2 = {.kind = "rtstruct", .series_uid = "1.2.98", .sop_uid = "1.2.98.1", .object = &rt2};
    samda_result_spec rs2 = {.series_uid = "1.2.1", .seg_series_uid = "1.2.99", .seg_sop_uid = "1.2.99.2",
                             .object = &seg2, .objects = &os2, .n_objects = 1};
    int64_t id2 = -7;
    CHECK_ST(SAMDA_EEXIST, samda_store_result_add(f->s, &rs2, &id2, &e));
    assert_int_equal(id2, -7);
    samda_result *list;
    CHECK_OK(samda_store_result_list(f->s, "1.2.1", &list, &n, &e));
    assert_int_equal(n, 1);
    samda_result_list_free(list, n);
    os2.kind = "pdf";
    CHECK_ST(SAMDA_EINVAL, samda_store_result_add(f->s, &rs2, NULL, &e));

    /* the refused result's SEG and RTSTRUCT files are unclaimed: removed at reopen */
    assert_non_null(fx_reopen(f));
    assert_int_equal(samda_store_orphans_removed(f->s), 2);
    fx_close(f);
}

/* samda_store_result_ingest with an RTSTRUCT beside the SEG: both indexed as instances of the study
 * (their own complete series) and recorded; a bad object's header refuses everything, files too. */
static void test_result_ingest_with_objects(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    CHECK_OK(fx_ingest_simple(f->s, "1.5", "1.5.1", "1.5.1.1", &e)); /* the source series */
    samda_object_info rt;
    CHECK_OK(samda_store_object_put(f->s, SAMDA_OBJECT_SEG, "1.5", "1.5.8", "1.5.8.1", "RT", 2, &rt, &e));
    samda_instance_meta seg_meta, rt_meta;
    fx_meta(&seg_meta, "1.5", "1.5.9", "1.5.9.1");
    snprintf(seg_meta.modality, sizeof seg_meta.modality, "SEG");
    snprintf(seg_meta.sop_class_uid, sizeof seg_meta.sop_class_uid, "1.2.840.10008.5.1.4.1.1.66.4");
    fx_meta(&rt_meta, "1.5", "1.5.8", "1.5.8.1");
    snprintf(rt_meta.modality, sizeof rt_meta.modality, "RTSTRUCT");
    snprintf(rt_meta.sop_class_uid, sizeof rt_meta.sop_class_uid, "1.2.840.10008.5.1.4.1.1.481.3");
    samda_result_object_spec os = {.kind = "rtstruct", .series_uid = "1.5.8", .sop_uid = "1.5.8.1", .object = &rt,
                                   .meta = &rt_meta};
    samda_result_spec rs = {.series_uid = "1.5.1", .seg_series_uid = "1.5.9", .seg_sop_uid = "1.5.9.1",
                            .objects = &os, .n_objects = 1};
    samda_tmp_file t;
    CHECK_OK(samda_store_object_tmp_open(f->s, &t, &e));
    CHECK_OK(samda_store_object_tmp_write(f->s, &t, "SEG", 3, &e));
    int64_t rid = 0;
    CHECK_OK(samda_store_result_ingest(f->s, &t, &seg_meta, &rs, NULL, &rid, &e));
    samda_result_object *rows;
    size_t n;
    CHECK_OK(samda_store_result_object_list(f->s, rid, &rows, &n, &e));
    assert_int_equal(n, 1);
    assert_string_equal(rows[0].sop_uid, "1.5.8.1");
    samda_store_free(rows);
    samda_series_info *series;
    CHECK_OK(samda_store_series_list(f->s, "1.5", &series, &n, &e));
    int found = 0;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(series[i].series_uid, "1.5.8")) {
            found = 1;
            assert_string_equal(series[i].modality, "RTSTRUCT");
            assert_int_equal(series[i].state, SAMDA_SERIES_COMPLETE);
            assert_int_equal(series[i].n_instances, 1);
        }
    samda_store_free(series);
    assert_true(found);

    /* an object whose header names another SOP: nothing recorded, the SEG and the object removed */
    samda_object_info rt2;
    CHECK_OK(samda_store_object_put(f->s, SAMDA_OBJECT_SEG, "1.5", "1.5.7", "1.5.7.1", "RT2", 3, &rt2, &e));
    samda_instance_meta bad;
    fx_meta(&bad, "1.5", "1.5.7", "1.5.7.2");
    samda_result_object_spec os2 = {.kind = "rtstruct", .series_uid = "1.5.7", .sop_uid = "1.5.7.1", .object = &rt2,
                                    .meta = &bad};
    samda_instance_meta seg2 = seg_meta;
    snprintf(seg2.series_uid, sizeof seg2.series_uid, "1.5.6");
    snprintf(seg2.sop_uid, sizeof seg2.sop_uid, "1.5.6.1");
    samda_result_spec rs2 = {.series_uid = "1.5.1", .seg_series_uid = "1.5.6", .seg_sop_uid = "1.5.6.1",
                             .objects = &os2, .n_objects = 1};
    CHECK_OK(samda_store_object_tmp_open(f->s, &t, &e));
    CHECK_OK(samda_store_object_tmp_write(f->s, &t, "SEG2", 4, &e));
    CHECK_ST(SAMDA_EINVAL, samda_store_result_ingest(f->s, &t, &seg2, &rs2, NULL, NULL, &e));
    assert_non_null(strstr(e.message, "another SOP"));
    /* a duplicate SOP in the index (the first RTSTRUCT's): refused in the transaction, files removed */
    os2.meta = &rt_meta;
    os2.sop_uid = "1.5.8.1";
    os2.series_uid = "1.5.8";
    CHECK_OK(samda_store_object_tmp_open(f->s, &t, &e));
    CHECK_OK(samda_store_object_tmp_write(f->s, &t, "SEG2", 4, &e));
    CHECK_ST(SAMDA_EEXIST, samda_store_result_ingest(f->s, &t, &seg2, &rs2, NULL, NULL, &e));
    int fd = -1;
    CHECK_ST(SAMDA_ENOENT, samda_store_object_open_read(f->s, rt2.relpath, &fd, &e));
    samda_result *list;
    CHECK_OK(samda_store_result_list(f->s, "1.5.1", &list, &n, &e));
    assert_int_equal(n, 1);
    samda_result_list_free(list, n);

    /* deleting the SEG's series takes the result and its object rows; the RTSTRUCT stays an
     * instance of the study until its own series goes, with the study */
    samda_purge_report rep = {0};
    CHECK_OK(samda_store_series_delete(f->s, "1.5.9", &rep, &e));
    assert_int_equal(rep.n_results, 1);
    CHECK_OK(samda_store_result_object_list(f->s, rid, &rows, &n, &e));
    assert_int_equal(n, 0);
    CHECK_OK(samda_store_object_open_read(f->s, rt.relpath, &fd, &e));
    close(fd);
    CHECK_OK(samda_store_study_delete(f->s, "1.5", &rep, &e));
    CHECK_ST(SAMDA_ENOENT, samda_store_object_open_read(f->s, rt.relpath, &fd, &e));
    fx_close(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_result_objects),
        cmocka_unit_test(test_result_with_objects),
        cmocka_unit_test(test_result_ingest_with_objects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
