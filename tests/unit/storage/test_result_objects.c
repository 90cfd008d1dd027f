/* Tests of storage/result_objects.c: an RT Structure Set or SR recorded beside a result claims its
 * file (kept at reopen, checked by samda_store_check), lists per result, and duplicates, unknown
 * kinds and results, and objects outside seg/ are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "store_fixture.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_result_objects),
        cmocka_unit_test(test_result_with_objects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
