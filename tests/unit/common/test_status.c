/* Table-driven test of common/status.c: every status has a name, a text, a sane HTTP and DICOM code. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "status.h"

static void test_every_entry(void **state)
{
    (void)state;
    for (int i = 0; i < (int)SAMDA_STATUS_COUNT_; i++) {
        samda_status s = (samda_status)i;
        assert_non_null(samda_status_name(s));
        assert_int_equal(strncmp(samda_status_name(s), "SAMDA_", 6), 0);
        assert_true(strlen(samda_status_str(s)) > 0);
        int http = samda_status_http(s);
        assert_true(http >= 200 && http <= 599);
        if (s == SAMDA_OK) {
            assert_int_equal(http, 200);
            assert_int_equal(samda_status_dicom(s), 0);
        } else {
            assert_true(http >= 400);
            assert_int_not_equal(samda_status_dicom(s), 0); /* a failure never reads as DICOM Success */
        }
        for (int j = 0; j < i; j++) /* names are unique */
            assert_string_not_equal(samda_status_name(s), samda_status_name((samda_status)j));
    }
    assert_string_equal(samda_status_str((samda_status)9999), "unknown status");
    assert_int_equal(samda_status_dicom(SAMDA_ENOSPC), 0xA700);
}

static void test_fail_formats_one_line(void **state)
{
    (void)state;
    samda_error e;
    samda_error_clear(&e);
    assert_int_equal(samda_fail(&e, SAMDA_EIO, "writing %s: %s", "a.dcm", "disk\nfull"), SAMDA_EIO);
    assert_int_equal(e.code, SAMDA_EIO);
    assert_string_equal(e.message, "writing a.dcm: disk full");
    samda_error_prefix(&e, "storing instance %d: ", 3);
    assert_string_equal(e.message, "storing instance 3: writing a.dcm: disk full");
    assert_int_equal(samda_fail(NULL, SAMDA_EINVAL, "x"), SAMDA_EINVAL);
    char big[600];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    samda_fail(&e, SAMDA_EINVAL, "%s", big);
    assert_int_equal(strlen(e.message), SAMDA_ERROR_MESSAGE_SIZE - 1);
}

/* samda's own paths become [file]; a longer name that starts the same is not one of them. */
static void test_hide_dir(void **state)
{
    (void)state;
    char out[256];
    samda_hide_dir(out, sizeof out, "writing /var/lib/samda/tmp/seg-1.dcm: full (/var/lib/samda) /var/lib/samdax/y",
                   "/var/lib/samda/");
    assert_string_equal(out, "writing [file]: full ([file]) /var/lib/samdax/y");
    samda_hide_dir(out, sizeof out, "nothing here", NULL);
    assert_string_equal(out, "nothing here");
    samda_hide_dir(out, 8, "/d/a/b/c/d/e/f", "/d");
    assert_string_equal(out, "[file]");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hide_dir),
        cmocka_unit_test(test_every_entry),
        cmocka_unit_test(test_fail_formats_one_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
