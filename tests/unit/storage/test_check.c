/* Tests of storage/check.c: the consistency check passes on a good store and reports each kind of
 * damage: a missing file, a changed file, an unindexed file, a file left in tmp/. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "store_fixture.h"

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static void test_check_reports_damage(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    samda_store_check_report r;
    CHECK_OK(samda_store_check(f->s, &r, &e)); /* empty store */
    assert_true(r.integrity_ok);
    CHECK_OK(fx_ingest_simple(f->s, "1.2", "1.2.1", "1.2.1.1", &e));
    CHECK_OK(fx_ingest_simple(f->s, "1.2", "1.2.1", "1.2.1.2", &e));
    CHECK_OK(samda_store_check(f->s, &r, &e));
    assert_int_equal(r.n_objects_indexed, 2);
    assert_string_equal(r.first_problem, "");

    char path[512];
    snprintf(path, sizeof path, "%s/objects/1.2/1.2.1/1.2.1.1.dcm", f->dir);
    write_file(path, "tampered");
    CHECK_ST(SAMDA_EIO, samda_store_check(f->s, &r, &e));
    assert_int_equal(r.n_mismatch, 1);
    assert_non_null(strstr(r.first_problem, "1.2.1.1.dcm"));

    snprintf(path, sizeof path, "%s/objects/1.2/1.2.1/1.2.1.2.dcm", f->dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/objects/1.2/1.2.1/9.9.dcm", f->dir);
    write_file(path, "stray");
    snprintf(path, sizeof path, "%s/objects/notes.txt", f->dir);
    write_file(path, "stray");
    snprintf(path, sizeof path, "%s/tmp/obj-leftover", f->dir);
    write_file(path, "partial");
    CHECK_ST(SAMDA_EIO, samda_store_check(f->s, &r, &e));
    assert_int_equal(r.n_mismatch, 1);
    assert_int_equal(r.n_missing, 1);
    assert_int_equal(r.n_unindexed, 2);
    assert_int_equal(r.n_tmp_files, 1);
    assert_true(r.integrity_ok);
    assert_non_null(strstr(e.message, "1 missing"));
    fx_close(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_reports_damage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
