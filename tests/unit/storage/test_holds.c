/* Tests of storage/holds.c: what a routing rule reads of a series beyond its row (its first
 * instance's geometry and AE titles), and the holds a rule puts on a series while its study lacks
 * the series it requires (kept across reopen, reason replaced but not the time, gone with the series). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>

#include "store_fixture.h"

static void ingest(fx *f, const char *series, const char *sop, int number, double thickness, int rows,
                   int64_t assoc)
{
    samda_instance_meta m;
    fx_meta(&m, "1.2.9", series, sop);
    m.instance_number = number;
    m.slice_thickness = thickness;
    m.rows = rows;
    m.association_id = assoc;
    snprintf(m.calling_ae, sizeof m.calling_ae, "MODALITY1");
    char buf[64];
    int n = snprintf(buf, sizeof buf, "DICM %s", sop);
    samda_error e;
    CHECK_OK(fx_ingest(f->s, &m, buf, (size_t)n, SAMDA_DUP_IGNORE_IDENTICAL, NULL, &e));
}

static void test_acquisition(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    int64_t assoc = 0;
    CHECK_OK(samda_store_assoc_begin(f->s, "MODALITY1", "SAMDA_LIVER", "127.0.0.1", NULL, &assoc, &e));
    ingest(f, "1.2.9.1", "1.2.9.1.2", 2, 2.5, 256, assoc);
    ingest(f, "1.2.9.1", "1.2.9.1.1", 1, 1.25, 512, assoc); /* the first instance, though it came second */
    ingest(f, "1.2.9.1", "1.2.9.1.9", 0, 5.0, 64, assoc);   /* no instance number: never before a numbered one */
    samda_series_acq a;
    CHECK_OK(samda_store_series_acquisition(f->s, "1.2.9.1", &a, &e));
    assert_true(a.has_rows && a.has_columns && a.has_slice_thickness);
    assert_int_equal(a.rows, 512);
    assert_true(a.slice_thickness == 1.25);
    assert_string_equal(a.calling_ae, "MODALITY1");
    assert_string_equal(a.called_ae, "SAMDA_LIVER");
    /* no association (STOW): no called AE; no thickness recorded: absent */
    ingest(f, "1.2.9.2", "1.2.9.2.1", 1, NAN, 128, 0);
    CHECK_OK(samda_store_series_acquisition(f->s, "1.2.9.2", &a, &e));
    assert_false(a.has_slice_thickness);
    assert_string_equal(a.called_ae, "");
    assert_int_equal(samda_store_series_acquisition(f->s, "1.2.9.404", &a, &e), SAMDA_ENOENT);
    assert_int_equal(samda_store_series_acquisition(f->s, "not a uid", &a, &e), SAMDA_EBADUID);
    fx_close(f);
}

static void test_holds(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    ingest(f, "1.2.9.1", "1.2.9.1.1", 1, 1, 512, 0);
    ingest(f, "1.2.9.2", "1.2.9.2.1", 1, 1, 512, 0);
    samda_series_hold *h = NULL;
    size_t n = 9;
    CHECK_OK(samda_store_series_held(f->s, 0, &h, &n, &e));
    assert_int_equal(n, 0);
    CHECK_OK(samda_store_series_hold(f->s, "1.2.9.1", "waits for venous", &e));
    CHECK_OK(samda_store_series_held(f->s, 0, &h, &n, &e));
    assert_int_equal(n, 1);
    int64_t since = h[0].since_ms;
    samda_store_free(h);
    /* held again: the reason changes, the time it began does not */
    f->now_ms += 5000;
    CHECK_OK(samda_store_series_hold(f->s, "1.2.9.1", "waits for delayed", &e));
    CHECK_OK(samda_store_series_hold(f->s, "1.2.9.2", "waits for arterial", &e));
    CHECK_OK(samda_store_series_held(f->s, 0, &h, &n, &e));
    assert_int_equal(n, 2);
    assert_string_equal(h[0].series_uid, "1.2.9.1");
    assert_string_equal(h[0].reason, "waits for delayed");
    assert_int_equal(h[0].since_ms, since);
    assert_int_equal(h[1].since_ms, since + 5000);
    samda_store_free(h);
    assert_int_equal(samda_store_series_hold(f->s, "1.2.9.404", "x", &e), SAMDA_ENOENT);
    /* released; a release of a series not held is a no-op */
    CHECK_OK(samda_store_series_release(f->s, "1.2.9.2", &e));
    CHECK_OK(samda_store_series_release(f->s, "1.2.9.2", &e));
    /* kept across reopen, and deleted with its series */
    fx_reopen(f);
    CHECK_OK(samda_store_series_held(f->s, 0, &h, &n, &e));
    assert_int_equal(n, 1);
    samda_store_free(h);
    samda_purge_report rep = {0};
    CHECK_OK(samda_store_series_delete(f->s, "1.2.9.1", &rep, &e));
    CHECK_OK(samda_store_series_held(f->s, 0, &h, &n, &e));
    assert_int_equal(n, 0);
    fx_close(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_acquisition),
        cmocka_unit_test(test_holds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
