/* Tests of storage/export.c: claim of due items, done, transient failures with exponential backoff
 * in minutes (capped), failure after the maximum attempts, permanent failure, manual retry,
 * re-claim of an item whose sender vanished, and the filtered listing behind GET /api/v1/exports. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "store_fixture.h"

/* A fixture whose store has this export retry policy (lease 5 minutes). */
static fx *open_with_retries(int64_t backoff_base_ms, int64_t backoff_max_ms, int max_attempts)
{
    fx *f = fx_open();
    assert_non_null(f);
    samda_store_close(f->s);
    samda_store_params p;
    fx_params(f, &p);
    p.export_backoff_base_ms = backoff_base_ms;
    p.export_backoff_max_ms = backoff_max_ms;
    p.export_max_attempts = max_attempts;
    p.export_lease_ms = 300000;
    samda_error e;
    f->s = samda_store_open(&p, &e);
    assert_non_null(f->s);
    return f;
}

static void test_export_lifecycle(void **state)
{
    (void)state;
    fx *f = open_with_retries(2 * 60000, 10 * 60000, 5);
    samda_error e;

    int64_t pacs, other;
    CHECK_OK(samda_store_destination_add(f->s, "pacs", "PACS", "10.0.0.1", 104, NULL, &pacs, &e));
    CHECK_OK(samda_store_destination_add(f->s, "other", "OTHER", "10.0.0.2", 104, NULL, &other, &e));
    int64_t a, b, c;
    CHECK_OK(samda_store_export_enqueue(f->s, pacs, "seg/1.2/1.2.9/1.2.9.1.dcm", "1.2.9.1", &a, &e));
    CHECK_OK(samda_store_export_enqueue(f->s, pacs, "seg/1.2/1.2.9/1.2.9.2.dcm", "1.2.9.2", &b, &e));
    CHECK_OK(samda_store_export_enqueue(f->s, other, "seg/1.2/1.2.9/1.2.9.1.dcm", NULL, &c, &e));
    CHECK_ST(SAMDA_EINVAL, samda_store_export_enqueue(f->s, 999, "seg/1.2/1.2.9/1.2.9.1.dcm", NULL, &c, &e));
    CHECK_ST(SAMDA_EINVAL, samda_store_export_enqueue(f->s, pacs, "../etc/passwd", NULL, &c, &e));
    CHECK_ST(SAMDA_EBADUID, samda_store_export_enqueue(f->s, pacs, "seg/1/2/3.dcm", "x", &c, &e));

    samda_export_item *items;
    size_t n;
    CHECK_OK(samda_store_export_claim(f->s, pacs, 10, &items, &n, &e));
    assert_int_equal(n, 2);
    assert_int_equal(items[0].id, a);
    assert_int_equal(items[0].state, SAMDA_EXPORT_SENDING);
    samda_store_free(items);
    CHECK_OK(samda_store_export_claim(f->s, pacs, 10, &items, &n, &e));
    assert_int_equal(n, 0); /* both are being sent */
    CHECK_OK(samda_store_export_done(f->s, a, &e));
    CHECK_ST(SAMDA_EINVAL, samda_store_export_done(f->s, a, &e));
    CHECK_ST(SAMDA_ENOENT, samda_store_export_done(f->s, 999, &e));

    /* transient failures: 2, 4, 8, 10 (capped) minutes, then failed at the 5th attempt */
    int64_t want_min[] = {2, 4, 8, 10};
    for (int i = 0; i < 4; i++) {
        int64_t next;
        CHECK_OK(samda_store_export_fail(f->s, b, "association rejected", false, &next, &e));
        assert_int_equal(next, f->now_ms + want_min[i] * 60000);
        samda_export_item it;
        CHECK_OK(samda_store_export_get(f->s, b, &it, &e));
        assert_int_equal(it.state, SAMDA_EXPORT_PENDING);
        assert_int_equal(it.attempts, i + 1);
        assert_string_equal(it.last_error, "association rejected");
        f->now_ms = next - 1;
        CHECK_OK(samda_store_export_claim(f->s, pacs, 10, &items, &n, &e));
        assert_int_equal(n, 0); /* not due yet */
        f->now_ms = next;
        CHECK_OK(samda_store_export_claim(f->s, pacs, 10, &items, &n, &e));
        assert_int_equal(n, 1);
        samda_store_free(items);
    }
    int64_t next = 42;
    CHECK_OK(samda_store_export_fail(f->s, b, "association rejected", false, &next, &e));
    assert_int_equal(next, 0);
    samda_export_item it;
    CHECK_OK(samda_store_export_get(f->s, b, &it, &e));
    assert_int_equal(it.state, SAMDA_EXPORT_FAILED);
    assert_false(it.permanent);
    CHECK_OK(samda_store_export_retry(f->s, b, &e));
    CHECK_OK(samda_store_export_get(f->s, b, &it, &e));
    assert_int_equal(it.state, SAMDA_EXPORT_PENDING);
    assert_int_equal(it.attempts, 0);
    assert_int_equal(it.next_attempt_ms, f->now_ms);

    /* a sender that dies keeps its items until the claim lease runs out */
    CHECK_OK(samda_store_export_claim(f->s, 0, 10, &items, &n, &e));
    assert_int_equal(n, 2); /* b and c */
    samda_store_free(items);
    f->now_ms += 299999;
    CHECK_OK(samda_store_export_claim(f->s, 0, 10, &items, &n, &e));
    assert_int_equal(n, 0);
    f->now_ms += 1;
    CHECK_OK(samda_store_export_claim(f->s, other, 10, &items, &n, &e));
    assert_int_equal(n, 1);
    assert_int_equal(items[0].id, c);
    samda_store_free(items);
    CHECK_OK(samda_store_export_fail(f->s, c, "SOP class not supported", true, &next, &e));
    CHECK_OK(samda_store_export_get(f->s, c, &it, &e));
    assert_int_equal(it.state, SAMDA_EXPORT_FAILED);
    assert_true(it.permanent);
    CHECK_ST(SAMDA_EINVAL, samda_store_export_claim(f->s, 0, 0, &items, &n, &e));

    CHECK_OK(samda_store_export_list(f->s, pacs, -1, 0, &items, &n, &e));
    assert_int_equal(n, 2);
    samda_store_free(items);
    CHECK_OK(samda_store_export_list(f->s, 0, SAMDA_EXPORT_FAILED, 0, &items, &n, &e));
    assert_int_equal(n, 1);
    assert_int_equal(items[0].id, c);
    samda_store_free(items);
    /* deleting a destination deletes its queue */
    CHECK_OK(samda_store_destination_delete(f->s, "other", &e));
    CHECK_ST(SAMDA_ENOENT, samda_store_export_get(f->s, c, &it, &e));
    CHECK_ST(SAMDA_EINVAL, samda_store_export_retry(f->s, a, &e)); /* done */
    fx_close(f);
}

/* Back-off below a minute (a test or a site's own choice) is kept to the millisecond, and a reload's
 * samda_store_set_retries applies to the next failure. */
static void test_export_retry_policy(void **state)
{
    (void)state;
    fx *f = open_with_retries(1500, 4000, 10);
    samda_error e;
    int64_t pacs, a;
    CHECK_OK(samda_store_destination_add(f->s, "pacs", "PACS", "10.0.0.1", 104, NULL, &pacs, &e));
    CHECK_OK(samda_store_export_enqueue(f->s, pacs, "seg/1.2/1.2.9/1.2.9.1.dcm", "1.2.9.1", &a, &e));
    const int64_t want[] = {1500, 3000, 4000};
    samda_export_item *items;
    size_t n;
    for (int i = 0; i < 3; i++) {
        CHECK_OK(samda_store_export_claim(f->s, pacs, 10, &items, &n, &e));
        assert_int_equal(n, 1);
        samda_store_free(items);
        int64_t next;
        CHECK_OK(samda_store_export_fail(f->s, a, "connection reset", false, &next, &e));
        assert_int_equal(next, f->now_ms + want[i]);
        f->now_ms = next;
    }
    /* a reload: 200 ms base, at most 5 attempts (values <= 0 keep the current ones) */
    samda_store_set_retries(f->s, 0, 5, 200, 0);
    CHECK_OK(samda_store_export_claim(f->s, pacs, 10, &items, &n, &e));
    samda_store_free(items);
    int64_t next;
    CHECK_OK(samda_store_export_fail(f->s, a, "connection reset", false, &next, &e));
    assert_int_equal(next, f->now_ms + 1600); /* 4th failure: 200 ms doubled three times, under the 4 s cap */
    f->now_ms = next;
    CHECK_OK(samda_store_export_claim(f->s, pacs, 10, &items, &n, &e));
    samda_store_free(items);
    CHECK_OK(samda_store_export_fail(f->s, a, "connection reset", false, &next, &e));
    assert_int_equal(next, 0); /* the 5th failure is the last */
    samda_export_item it;
    CHECK_OK(samda_store_export_get(f->s, a, &it, &e));
    assert_int_equal(it.state, SAMDA_EXPORT_FAILED);
    fx_close(f);
}

/* samda_store_export_find (GET /api/v1/exports, samda exports): filters by destination, state and
 * result (the result whose SEG file an item sends), newest first, with limit and offset. */
static void test_export_find(void **state)
{
    (void)state;
    fx *f = open_with_retries(60000, 600000, 3);
    samda_error e;
    int64_t pacs, other;
    CHECK_OK(samda_store_destination_add(f->s, "pacs", "PACS", "10.0.0.1", 104, NULL, &pacs, &e));
    CHECK_OK(samda_store_destination_add(f->s, "other", "OTHER", "10.0.0.2", 104, NULL, &other, &e));
    /* two results, each with its SEG object */
    int64_t rid[2];
    samda_object_info seg[2];
    const char *sops[2] = {"1.2.99.1", "1.2.99.2"};
    for (int i = 0; i < 2; i++) {
        samda_job_spec js = {.kind = "segment", .series_uid = "1.2.1"};
        int64_t job;
        CHECK_OK(samda_store_job_enqueue(f->s, &js, &job, NULL, &e));
        CHECK_OK(samda_store_object_put(f->s, SAMDA_OBJECT_SEG, "1.2", "1.2.99", sops[i], "SEG", 3, &seg[i], &e));
        samda_result_spec rs = {.job_id = job, .series_uid = "1.2.1", .seg_series_uid = "1.2.99", .seg_sop_uid = sops[i],
                                .object = &seg[i]};
        CHECK_OK(samda_store_result_add(f->s, &rs, &rid[i], &e));
    }
    int64_t a, b, c, d;
    CHECK_OK(samda_store_export_enqueue(f->s, pacs, seg[0].relpath, sops[0], &a, &e));
    CHECK_OK(samda_store_export_enqueue(f->s, other, seg[0].relpath, sops[0], &b, &e));
    CHECK_OK(samda_store_export_enqueue(f->s, pacs, seg[1].relpath, sops[1], &c, &e));
    CHECK_OK(samda_store_export_enqueue(f->s, pacs, "seg/1.2/1.2.98/1.2.98.1.dcm", NULL, &d, &e)); /* no result */
    /* a is refused by pacs for good */
    samda_export_item *items;
    size_t n;
    CHECK_OK(samda_store_export_claim(f->s, pacs, 1, &items, &n, &e));
    assert_int_equal(n, 1);
    assert_int_equal(items[0].id, a);
    assert_int_equal(items[0].result_id, 0); /* only find fills it */
    samda_store_free(items);
    CHECK_OK(samda_store_export_fail(f->s, a, "SOP class not supported", true, NULL, &e));

    samda_export_filter all = {.state = -1};
    CHECK_OK(samda_store_export_find(f->s, &all, &items, &n, &e));
    assert_int_equal(n, 4);
    assert_int_equal(items[0].id, d); /* newest first */
    assert_int_equal(items[0].result_id, 0);
    assert_int_equal(items[1].id, c);
    assert_int_equal(items[1].result_id, rid[1]);
    assert_int_equal(items[3].id, a);
    assert_int_equal(items[3].result_id, rid[0]);
    assert_int_equal(items[3].state, SAMDA_EXPORT_FAILED);
    assert_true(items[3].permanent);
    samda_store_free(items);

    samda_export_filter by_state = {.state = SAMDA_EXPORT_FAILED};
    CHECK_OK(samda_store_export_find(f->s, &by_state, &items, &n, &e));
    assert_int_equal(n, 1);
    assert_int_equal(items[0].id, a);
    assert_string_equal(items[0].last_error, "SOP class not supported");
    samda_store_free(items);

    samda_export_filter by_result = {.state = -1, .result_id = rid[0]};
    CHECK_OK(samda_store_export_find(f->s, &by_result, &items, &n, &e));
    assert_int_equal(n, 2);
    assert_int_equal(items[0].id, b);
    assert_int_equal(items[1].id, a);
    samda_store_free(items);

    samda_export_filter combined = {.destination_id = pacs, .state = SAMDA_EXPORT_PENDING};
    CHECK_OK(samda_store_export_find(f->s, &combined, &items, &n, &e));
    assert_int_equal(n, 2); /* c and d; a failed, b is other's */
    assert_int_equal(items[0].id, d);
    assert_int_equal(items[1].id, c);
    samda_store_free(items);

    samda_export_filter page = {.state = -1, .limit = 2, .offset = 1};
    CHECK_OK(samda_store_export_find(f->s, &page, &items, &n, &e));
    assert_int_equal(n, 2);
    assert_int_equal(items[0].id, c);
    assert_int_equal(items[1].id, b);
    samda_store_free(items);

    samda_export_filter one = {.id = b, .state = -1};
    CHECK_OK(samda_store_export_find(f->s, &one, &items, &n, &e));
    assert_int_equal(n, 1);
    assert_int_equal(items[0].id, b);
    assert_int_equal(items[0].destination_id, other);
    assert_int_equal(items[0].result_id, rid[0]);
    samda_store_free(items);

    samda_export_filter none = {.state = -1, .result_id = 4242};
    CHECK_OK(samda_store_export_find(f->s, &none, &items, &n, &e));
    assert_int_equal(n, 0);
    samda_store_free(items);
    samda_export_filter bad = {.state = 7};
    CHECK_ST(SAMDA_EINVAL, samda_store_export_find(f->s, &bad, &items, &n, &e));
    CHECK_ST(SAMDA_EINVAL, samda_store_export_find(f->s, NULL, &items, &n, &e));
    fx_close(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_export_lifecycle),
        cmocka_unit_test(test_export_retry_policy),
        cmocka_unit_test(test_export_find),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
