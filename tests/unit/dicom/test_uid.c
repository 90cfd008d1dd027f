/* dicom/uid.cpp: the UID validation table and UID generation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "dicom.h"

static void test_validation_table(void **state)
{
    (void)state;
    static const struct {
        const char *uid;
        bool valid;
    } cases[] = {
        {"1.2.840.10008.1.2", true},
        {"1", true},
        {"0", true},
        {"2.25.329800735698586629295641978511506172918", true},
        {"1.2.04", true},              /* leading zero: accepted on purpose (dicom.h) */
        {"1.2.840.00010008", true},
        /* exactly 64 characters */
        {"1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18.19.20.21.22.23.24.2", true},
        /* 65 characters */
        {"1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18.19.20.21.22.23.24.25", false},
        {"", false},
        {".", false},
        {".1.2", false},
        {"1.2.", false},
        {"1..2", false},
        {"1.2.a", false},
        {"1.2.3 ", false},             /* padding must have been stripped */
        {"1.2/3", false},
        {"../../etc", false},
        {"1,2", false},
        {"-1.2", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (samda_dicom_uid_is_valid(cases[i].uid) != cases[i].valid)
            fail_msg("uid \"%s\": expected %s", cases[i].uid, cases[i].valid ? "valid" : "invalid");
    }
    assert_false(samda_dicom_uid_is_valid(NULL));
}

static void test_generate_uuid_root(void **state)
{
    (void)state;
    char a[SAMDA_DICOM_UID_SIZE], b[SAMDA_DICOM_UID_SIZE];
    samda_error e;
    assert_int_equal(samda_dicom_uid_generate(a, NULL, &e), SAMDA_OK);
    assert_int_equal(samda_dicom_uid_generate(b, "", &e), SAMDA_OK);
    assert_true(samda_dicom_uid_is_valid(a));
    assert_true(samda_dicom_uid_is_valid(b));
    assert_int_equal(strncmp(a, "2.25.", 5), 0);
    assert_string_not_equal(a, b);
    assert_true(a[5] != '0');
    assert_true(strlen(a) <= 44);
}

static void test_generate_org_root(void **state)
{
    (void)state;
    char a[SAMDA_DICOM_UID_SIZE];
    samda_error e;
    const char *root = "1.2.826.0.1.3680043.10.1234";
    assert_int_equal(samda_dicom_uid_generate(a, root, &e), SAMDA_OK);
    assert_true(samda_dicom_uid_is_valid(a));
    assert_int_equal(strncmp(a, root, strlen(root)), 0);
    assert_int_equal(a[strlen(root)], '.');
    assert_true(a[strlen(root) + 1] != '0');
    assert_int_equal(strlen(a), 64); /* fills up to 64 with random digits */

    /* 40-character root: still at least 20 random digits */
    const char *root40 = "1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.1";
    assert_int_equal(strlen(root40), 40);
    assert_int_equal(samda_dicom_uid_generate(a, root40, &e), SAMDA_OK);
    assert_true(strlen(a) - 41 >= 20);
    assert_true(samda_dicom_uid_is_valid(a));

    assert_int_equal(samda_dicom_uid_generate(a, "1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17", &e), SAMDA_EINVAL);
    assert_string_equal(a, "");
    assert_non_null(strstr(e.message, "at most 40"));
    assert_int_equal(samda_dicom_uid_generate(a, "1.2.x", &e), SAMDA_EINVAL);
    assert_int_equal(samda_dicom_uid_generate(NULL, NULL, &e), SAMDA_EINVAL);
}

static void test_generate_many_unique(void **state)
{
    (void)state;
    enum { N = 2000 };
    static char uids[N][SAMDA_DICOM_UID_SIZE];
    for (int i = 0; i < N; i++) {
        assert_int_equal(samda_dicom_uid_generate(uids[i], NULL, NULL), SAMDA_OK);
        assert_true(samda_dicom_uid_is_valid(uids[i]));
    }
    for (int i = 1; i < N; i++)
        for (int j = 0; j < i; j += 97) assert_string_not_equal(uids[i], uids[j]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validation_table),
        cmocka_unit_test(test_generate_uuid_root),
        cmocka_unit_test(test_generate_org_root),
        cmocka_unit_test(test_generate_many_unique),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
