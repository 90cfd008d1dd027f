/* dicom/conformance.cpp and dicom/sop_classes.cpp: the one table, and docs/conformance.md kept in
 * step with it. If this fails after changing the table, regenerate the document:
 *   build/tests/unit/dicom/gen_conformance docs/conformance.md */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dicom.h"

#define BEGIN_MARK "<!-- BEGIN GENERATED: samda_dicom_conformance_tables() -->\n"
#define END_MARK "<!-- END GENERATED -->"

static char *generated(void)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *m = open_memstream(&buf, &n);
    assert_non_null(m);
    samda_error e;
    assert_int_equal(samda_dicom_conformance_tables(m, &e), SAMDA_OK);
    fclose(m);
    return buf;
}

static void test_table_contents(void **state)
{
    (void)state;
    char *t = generated();
    /* every UID printed in back-quotes is valid, and each storage class row is accepted */
    int n_uids = 0;
    for (char *p = strchr(t, '`'); p; p = strchr(p, '`')) {
        char *q = strchr(p + 1, '`');
        assert_non_null(q);
        char uid[80];
        size_t len = (size_t)(q - p - 1);
        assert_true(len < sizeof uid);
        memcpy(uid, p + 1, len);
        uid[len] = '\0';
        assert_true(samda_dicom_uid_is_valid(uid));
        n_uids++;
        p = q + 1;
    }
    assert_true(n_uids > 40);
    /* what the issue requires, by UID */
    static const char *required[] = {
        "1.2.840.10008.5.1.4.1.1.2",     /* CT */
        "1.2.840.10008.5.1.4.1.1.2.1",   /* Enhanced CT */
        "1.2.840.10008.5.1.4.1.1.4",     /* MR */
        "1.2.840.10008.5.1.4.1.1.4.1",   /* Enhanced MR */
        "1.2.840.10008.5.1.4.1.1.1",     /* CR */
        "1.2.840.10008.5.1.4.1.1.1.1",   /* DX presentation */
        "1.2.840.10008.5.1.4.1.1.1.1.1", /* DX processing */
        "1.2.840.10008.5.1.4.1.1.1.2",   /* MG */
        "1.2.840.10008.5.1.4.1.1.6.1",   /* US */
        "1.2.840.10008.5.1.4.1.1.3.1",   /* US multi-frame */
        "1.2.840.10008.5.1.4.1.1.20",    /* NM */
        "1.2.840.10008.5.1.4.1.1.128",   /* PET */
        "1.2.840.10008.5.1.4.1.1.130",   /* Enhanced PET */
        "1.2.840.10008.5.1.4.1.1.7",     /* SC */
        "1.2.840.10008.5.1.4.1.1.7.2",   /* SC grayscale byte */
        "1.2.840.10008.5.1.4.1.1.7.3",   /* SC grayscale word */
        "1.2.840.10008.5.1.4.1.1.7.4",   /* SC true colour */
        "1.2.840.10008.5.1.4.1.1.12.1",  /* XA */
        "1.2.840.10008.5.1.4.1.1.12.1.1",/* Enhanced XA */
        "1.2.840.10008.5.1.4.1.1.12.2",  /* RF */
        "1.2.840.10008.5.1.4.1.1.481.1", /* RT Image */
        "1.2.840.10008.5.1.4.1.1.66.4",  /* Segmentation */
        "1.2.840.10008.5.1.4.1.1.481.3", /* RT Structure Set */
        "1.2.840.10008.5.1.4.1.1.88.11", /* Basic Text SR */
        "1.2.840.10008.5.1.4.1.1.88.22", /* Enhanced SR */
        "1.2.840.10008.5.1.4.1.1.88.33", /* Comprehensive SR */
    };
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
        if (!samda_dicom_sop_class_is_accepted(required[i])) fail_msg("%s not accepted", required[i]);
        char quoted[80];
        snprintf(quoted, sizeof quoted, "`%s`", required[i]);
        assert_non_null(strstr(t, quoted));
    }
    assert_false(samda_dicom_sop_class_is_accepted("1.2.840.10008.1.1")); /* Verification: not storage */
    assert_false(samda_dicom_sop_class_is_accepted("1.2.840.10008.5.1.4.1.1.4.2")); /* MR Spectroscopy */
    assert_false(samda_dicom_sop_class_is_accepted(NULL));
    static const char *ts_yes[] = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2",
                                   "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51",
                                   "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80",
                                   "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.5"};
    for (size_t i = 0; i < sizeof ts_yes / sizeof ts_yes[0]; i++) assert_true(samda_dicom_transfer_syntax_is_accepted(ts_yes[i]));
    assert_false(samda_dicom_transfer_syntax_is_accepted("1.2.840.10008.1.2.4.90"));
    assert_false(samda_dicom_transfer_syntax_is_accepted("1.2.840.10008.1.2.4.91"));
    assert_int_equal(samda_dicom_conformance_tables(NULL, NULL), SAMDA_EINVAL);
    free(t);
}

static void test_document_up_to_date(void **state)
{
    (void)state;
    const char *src = getenv("SAMDA_SOURCE_DIR");
    if (!src) skip();
    char path[4096];
    snprintf(path, sizeof path, "%s/docs/conformance.md", src);
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("%s missing", path);
    static char doc[1 << 20];
    size_t n = fread(doc, 1, sizeof doc - 1, f);
    fclose(f);
    doc[n] = '\0';
    char *b = strstr(doc, BEGIN_MARK);
    char *e = b ? strstr(b, END_MARK) : NULL;
    if (!b || !e) fail_msg("%s: GENERATED markers missing", path);
    b += strlen(BEGIN_MARK);
    *e = '\0';
    char *t = generated();
    if (strcmp(b, t) != 0)
        fail_msg("docs/conformance.md is out of date: run build/tests/unit/dicom/gen_conformance docs/conformance.md");
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_contents),
        cmocka_unit_test(test_document_up_to_date),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
