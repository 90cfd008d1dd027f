/* Tests of storage/queue.c: enqueue with idempotency key and content hash, claim order (priority then
 * age), leases that expire on an injected clock, heartbeat/progress/complete/fail/cancel/retry, list,
 * and concurrent claims by several threads (each job claimed exactly once). */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>

#include "store_fixture.h"

static int64_t enqueue(fx *f, const char *kind, int prio, const char *series, const char *hash, const char *key,
                       bool *existed)
{
    samda_error e;
    samda_job_spec spec = {.kind = kind, .priority = prio, .series_uid = series, .content_hash = hash,
                           .idempotency_key = key, .params_json = "{\"labels\":[\"liver\"]}"};
    int64_t id = 0;
    CHECK_OK(samda_store_job_enqueue(f->s, &spec, &id, existed, &e));
    return id;
}

static void test_enqueue_dedup(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    bool existed;
    int64_t a = enqueue(f, "segment", 0, "1.2.3", "hashA", NULL, &existed);
    assert_false(existed);
    int64_t b = enqueue(f, "segment", 0, "1.2.3", "hashA", NULL, &existed);
    assert_true(existed);
    assert_int_equal(a, b);
    /* content changed after a started: a new job (a read the series before the change) */
    samda_job ja;
    bool got = false;
    CHECK_OK(samda_store_job_claim(f->s, "w0", 60000, "segment", INT_MIN, &ja, &got, &e));
    assert_true(got);
    assert_int_equal(ja.id, a);
    samda_job_clear(&ja);
    int64_t c = enqueue(f, "segment", 0, "1.2.3", "hashB", NULL, &existed);
    assert_false(existed);
    assert_int_not_equal(a, c);
    int64_t d = enqueue(f, "train", 0, "1.2.3", "hashA", NULL, &existed); /* another kind of work */
    assert_false(existed);
    int64_t k1 = enqueue(f, "segment", 0, NULL, NULL, "req-42", &existed);
    int64_t k2 = enqueue(f, "segment", 5, "1.9", NULL, "req-42", &existed);
    assert_true(existed);
    assert_int_equal(k1, k2);
    (void)d;
    /* a cancelled job does not block a re-send of the same content (a series of its own: on 1.2.3
     * the pending c would take the content over, test_enqueue_merges_pending) */
    CHECK_OK(samda_store_job_cancel(f->s, a, &e));
    int64_t q = enqueue(f, "segment", 0, "1.2.5", "hashQ", NULL, &existed);
    CHECK_OK(samda_store_job_cancel(f->s, q, &e));
    int64_t a2 = enqueue(f, "segment", 0, "1.2.5", "hashQ", NULL, &existed);
    assert_false(existed);
    assert_int_not_equal(q, a2);
    /* ...and retrying the cancelled one now collides with the active twin */
    CHECK_ST(SAMDA_EEXIST, samda_store_job_retry(f->s, q, &e));

    samda_job j;
    CHECK_OK(samda_store_job_get(f->s, c, &j, &e));
    assert_string_equal(j.kind, "segment");
    assert_int_equal(j.state, SAMDA_JOB_PENDING);
    assert_string_equal(j.params_json, "{\"labels\":[\"liver\"]}");
    assert_string_equal(j.content_hash, "hashB");
    assert_int_equal(j.max_attempts, 3);
    assert_int_equal(j.created_ms, f->now_ms);
    samda_job_clear(&j);
    samda_job_clear(NULL);
    CHECK_ST(SAMDA_ENOENT, samda_store_job_get(f->s, 9999, &j, &e));

    samda_job_spec bad = {.kind = ""};
    CHECK_ST(SAMDA_EINVAL, samda_store_job_enqueue(f->s, &bad, NULL, NULL, &e));
    bad = (samda_job_spec){.kind = "segment", .series_uid = "1.x"};
    CHECK_ST(SAMDA_EBADUID, samda_store_job_enqueue(f->s, &bad, NULL, NULL, &e));
    bad = (samda_job_spec){.kind = "segment", .site = "nosuch"};
    CHECK_ST(SAMDA_EINVAL, samda_store_job_enqueue(f->s, &bad, NULL, NULL, &e));

    samda_job *jobs;
    size_t n;
    samda_job_filter flt = {.state = SAMDA_JOB_PENDING, .kind = "segment"};
    CHECK_OK(samda_store_job_list(f->s, &flt, &jobs, &n, &e));
    assert_int_equal(n, 3); /* c, k1, a2 */
    assert_int_equal(jobs[0].id, a2); /* newest first */
    samda_job_list_free(jobs, n);
    flt = (samda_job_filter){.state = -1, .series_uid = "1.2.3"};
    CHECK_OK(samda_store_job_list(f->s, &flt, &jobs, &n, &e));
    assert_int_equal(n, 3); /* a (cancelled), c, d */
    samda_job_list_free(jobs, n);
    fx_close(f);
}

static void test_claim_order_and_lifecycle(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    int64_t low = enqueue(f, "segment", 0, "1.1", NULL, NULL, NULL);
    f->now_ms += 10;
    int64_t high_old = enqueue(f, "segment", 10, "1.2", NULL, NULL, NULL);
    f->now_ms += 10;
    int64_t high_new = enqueue(f, "segment", 10, "1.3", NULL, NULL, NULL);
    int64_t other = enqueue(f, "train", 100, NULL, NULL, NULL, NULL);
    samda_job j;
    bool found;
    CHECK_OK(samda_store_job_claim(f->s, "w1", 60000, "segment", INT_MIN, &j, &found, &e));
    assert_true(found);
    assert_int_equal(j.id, high_old);
    assert_int_equal(j.state, SAMDA_JOB_RUNNING);
    assert_string_equal(j.lease_owner, "w1");
    assert_int_equal(j.lease_expires_ms, f->now_ms + 60000);
    assert_int_equal(j.attempts, 1);
    samda_job_clear(&j);
    CHECK_OK(samda_store_job_claim(f->s, "w2", 60000, NULL, INT_MIN, &j, &found, &e));
    assert_int_equal(j.id, other);
    samda_job_clear(&j);
    CHECK_OK(samda_store_job_claim(f->s, "w2", 60000, NULL, INT_MIN, &j, &found, &e));
    assert_int_equal(j.id, high_new);
    samda_job_clear(&j);
    CHECK_OK(samda_store_job_claim(f->s, "w3", 60000, NULL, INT_MIN, &j, &found, &e));
    assert_int_equal(j.id, low);
    samda_job_clear(&j);
    CHECK_OK(samda_store_job_claim(f->s, "w3", 60000, NULL, INT_MIN, &j, &found, &e));
    assert_false(found);
    CHECK_ST(SAMDA_EINVAL, samda_store_job_claim(f->s, "", 60000, NULL, INT_MIN, &j, &found, &e));
    CHECK_ST(SAMDA_EINVAL, samda_store_job_claim(f->s, "w", 0, NULL, INT_MIN, &j, &found, &e));

    /* progress, heartbeat, complete */
    CHECK_OK(samda_store_job_progress(f->s, high_old, "w1", 0.5, "encoding slices 40/80", &e));
    CHECK_OK(samda_store_job_progress(f->s, high_old, "w1", 7.0, NULL, &e)); /* clamped */
    CHECK_ST(SAMDA_ELOCKED, samda_store_job_progress(f->s, high_old, "w2", 0.1, NULL, &e));
    f->now_ms += 1000;
    CHECK_OK(samda_store_job_heartbeat(f->s, high_old, "w1", 60000, &e));
    CHECK_OK(samda_store_job_get(f->s, high_old, &j, &e));
    assert_true(j.progress == 1.0);
    assert_int_equal(j.lease_expires_ms, f->now_ms + 60000);
    samda_job_clear(&j);
    CHECK_OK(samda_store_job_complete(f->s, high_old, "w1", "{\"seg\":\"1.2.9\"}", &e));
    CHECK_OK(samda_store_job_get(f->s, high_old, &j, &e));
    assert_int_equal(j.state, SAMDA_JOB_DONE);
    assert_string_equal(j.result_json, "{\"seg\":\"1.2.9\"}");
    assert_int_equal(j.finished_ms, f->now_ms);
    assert_string_equal(j.lease_owner, "");
    samda_job_clear(&j);
    CHECK_ST(SAMDA_ELOCKED, samda_store_job_heartbeat(f->s, high_old, "w1", 60000, &e));
    CHECK_ST(SAMDA_EINVAL, samda_store_job_cancel(f->s, high_old, &e));
    CHECK_ST(SAMDA_EINVAL, samda_store_job_retry(f->s, high_old, &e));
    CHECK_ST(SAMDA_ENOENT, samda_store_job_heartbeat(f->s, 9999, "w1", 60000, &e));

    /* fail: back to pending until attempts are used up */
    bool requeued;
    CHECK_OK(samda_store_job_fail(f->s, low, "w3", "model crashed", false, &requeued, &e));
    assert_true(requeued);
    for (int attempt = 2; attempt <= 3; attempt++) {
        CHECK_OK(samda_store_job_claim(f->s, "w3", 60000, "segment", INT_MIN, &j, &found, &e));
        assert_int_equal(j.id, low);
        assert_int_equal(j.attempts, attempt);
        assert_non_null(strstr(j.error, "model crashed"));
        samda_job_clear(&j);
        CHECK_OK(samda_store_job_fail(f->s, low, "w3", "model crashed again", false, &requeued, &e));
        assert_int_equal(requeued, attempt < 3);
    }
    CHECK_OK(samda_store_job_get(f->s, low, &j, &e));
    assert_int_equal(j.state, SAMDA_JOB_FAILED);
    samda_job_clear(&j);
    CHECK_OK(samda_store_job_retry(f->s, low, &e));
    CHECK_OK(samda_store_job_get(f->s, low, &j, &e));
    assert_int_equal(j.state, SAMDA_JOB_PENDING);
    assert_int_equal(j.attempts, 0);
    assert_null(j.error);
    samda_job_clear(&j);
    /* permanent failure skips the remaining attempts */
    CHECK_OK(samda_store_job_claim(f->s, "w3", 60000, "segment", INT_MIN, &j, &found, &e));
    samda_job_clear(&j);
    CHECK_OK(samda_store_job_fail(f->s, low, "w3", "bad input", true, &requeued, &e));
    assert_false(requeued);

    /* cancel a running job: the worker learns it at its next heartbeat */
    CHECK_OK(samda_store_job_cancel(f->s, high_new, &e));
    CHECK_ST(SAMDA_ECANCELED, samda_store_job_heartbeat(f->s, high_new, "w2", 60000, &e));
    CHECK_ST(SAMDA_ECANCELED, samda_store_job_complete(f->s, high_new, "w2", NULL, &e));
    assert_string_equal(samda_job_state_name(SAMDA_JOB_CANCELLED), "cancelled");
    assert_string_equal(samda_job_state_name((samda_job_state)9), "unknown");
    fx_close(f);
}

static void test_lease_expiry(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    samda_job_spec spec = {.kind = "segment", .max_attempts = 2};
    int64_t id;
    CHECK_OK(samda_store_job_enqueue(f->s, &spec, &id, NULL, &e));
    samda_job j;
    bool found;
    CHECK_OK(samda_store_job_claim(f->s, "dead-worker", 30000, NULL, INT_MIN, &j, &found, &e));
    samda_job_clear(&j);
    f->now_ms += 29999; /* not yet expired */
    CHECK_OK(samda_store_job_claim(f->s, "w2", 30000, NULL, INT_MIN, &j, &found, &e));
    assert_false(found);
    f->now_ms += 1; /* expired */
    CHECK_OK(samda_store_job_claim(f->s, "w2", 30000, NULL, INT_MIN, &j, &found, &e));
    assert_true(found);
    assert_int_equal(j.id, id);
    assert_int_equal(j.attempts, 2);
    assert_string_equal(j.lease_owner, "w2");
    assert_non_null(strstr(j.error, "dead-worker"));
    samda_job_clear(&j);
    /* the dead worker wakes up: its lease is gone */
    CHECK_ST(SAMDA_ELOCKED, samda_store_job_complete(f->s, id, "dead-worker", NULL, &e));
    /* w2 dies too: out of attempts, the job fails */
    f->now_ms += 30000;
    size_t requeued = 9, failed = 9;
    CHECK_OK(samda_store_job_reclaim_expired(f->s, &requeued, &failed, &e));
    assert_int_equal(requeued, 0);
    assert_int_equal(failed, 1);
    CHECK_OK(samda_store_job_get(f->s, id, &j, &e));
    assert_int_equal(j.state, SAMDA_JOB_FAILED);
    samda_job_clear(&j);
    fx_close(f);
}

/* A daemon starting up takes back every running job, whatever its lease; the attempt counts. */
static void test_reclaim_all(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    samda_job_spec spec = {.kind = "segment", .max_attempts = 2};
    int64_t id, id2;
    CHECK_OK(samda_store_job_enqueue(f->s, &spec, &id, NULL, &e));
    spec.max_attempts = 1;
    spec.idempotency_key = "second";
    CHECK_OK(samda_store_job_enqueue(f->s, &spec, &id2, NULL, &e));
    samda_job j;
    bool found;
    CHECK_OK(samda_store_job_claim(f->s, "old-run", 3600000, NULL, INT_MIN, &j, &found, &e));
    samda_job_clear(&j);
    CHECK_OK(samda_store_job_claim(f->s, "old-run", 3600000, NULL, INT_MIN, &j, &found, &e));
    samda_job_clear(&j);
    size_t requeued = 9, failed = 9;
    CHECK_OK(samda_store_job_reclaim_all(f->s, NULL, &requeued, &failed, &e));
    assert_int_equal(requeued, 1);
    assert_int_equal(failed, 1);
    CHECK_OK(samda_store_job_get(f->s, id, &j, &e));
    assert_int_equal(j.state, SAMDA_JOB_PENDING);
    assert_int_equal(j.attempts, 1);
    assert_non_null(strstr(j.error, "restarted"));
    samda_job_clear(&j);
    CHECK_OK(samda_store_job_get(f->s, id2, &j, &e));
    assert_int_equal(j.state, SAMDA_JOB_FAILED);
    samda_job_clear(&j);
    /* nothing running: nothing to do */
    CHECK_OK(samda_store_job_reclaim_all(f->s, NULL, &requeued, &failed, &e));
    assert_int_equal(requeued + failed, 0);
    fx_close(f);
}

/* A cluster node starting up takes back its own node's running jobs only ("NODE:" owners): another
 * node's job is alive, or returns when its lease expires. */
static void test_reclaim_all_of_one_node(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    samda_job_spec spec = {.kind = "segment", .max_attempts = 3};
    int64_t mine, other;
    CHECK_OK(samda_store_job_enqueue(f->s, &spec, &mine, NULL, &e));
    spec.idempotency_key = "other";
    CHECK_OK(samda_store_job_enqueue(f->s, &spec, &other, NULL, &e));
    samda_job j;
    bool found;
    CHECK_OK(samda_store_job_claim(f->s, "gpu-1:41:worker", 3600000, NULL, INT_MIN, &j, &found, &e));
    assert_int_equal(j.id, mine);
    samda_job_clear(&j);
    CHECK_OK(samda_store_job_claim(f->s, "gpu-10:7:worker", 3600000, NULL, INT_MIN, &j, &found, &e));
    assert_int_equal(j.id, other);
    samda_job_clear(&j);
    size_t requeued = 9, failed = 9;
    CHECK_OK(samda_store_job_reclaim_all(f->s, "gpu-1:", &requeued, &failed, &e));
    assert_int_equal(requeued, 1);
    assert_int_equal(failed, 0);
    CHECK_OK(samda_store_job_get(f->s, mine, &j, &e));
    assert_int_equal(j.state, SAMDA_JOB_PENDING);
    samda_job_clear(&j);
    CHECK_OK(samda_store_job_get(f->s, other, &j, &e));
    assert_int_equal(j.state, SAMDA_JOB_RUNNING);
    samda_job_clear(&j);
    fx_close(f);
}

struct claimer {
    samda_store *s;
    char name[16];
    int claimed;
    int64_t ids[200];
    int errors;
};

static void *claim_worker(void *arg)
{
    struct claimer *c = arg;
    for (;;) {
        samda_job j;
        bool found;
        samda_error e;
        if (samda_store_job_claim(c->s, c->name, 60000, NULL, INT_MIN, &j, &found, &e) != SAMDA_OK) {
            c->errors++;
            break;
        }
        if (!found) break;
        c->ids[c->claimed++] = j.id;
        if (samda_store_job_complete(c->s, j.id, c->name, NULL, &e) != SAMDA_OK) c->errors++;
        samda_job_clear(&j);
    }
    return NULL;
}

static void test_concurrent_claims(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    enum { JOBS = 120, THREADS = 4 };
    for (int i = 0; i < JOBS; i++) enqueue(f, "segment", i % 3, NULL, NULL, NULL, NULL);
    pthread_t th[THREADS];
    struct claimer c[THREADS];
    for (int i = 0; i < THREADS; i++) {
        memset(&c[i], 0, sizeof c[i]);
        c[i].s = f->s;
        snprintf(c[i].name, sizeof c[i].name, "w%d", i);
        pthread_create(&th[i], NULL, claim_worker, &c[i]);
    }
    int total = 0;
    char seen[JOBS + 1] = {0};
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(c[i].errors, 0);
        for (int k = 0; k < c[i].claimed; k++) {
            assert_true(c[i].ids[k] >= 1 && c[i].ids[k] <= JOBS);
            assert_int_equal(seen[c[i].ids[k]], 0); /* claimed once */
            seen[c[i].ids[k]] = 1;
        }
        total += c[i].claimed;
    }
    assert_int_equal(total, JOBS);
    fx_close(f);
}

/* A series whose content changes while its job still waits keeps one job: the pending job takes the
 * new hash (and the higher priority); a started job, another kind, other parameters or a job with an
 * idempotency key are left alone. */
static void test_enqueue_merges_pending(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    bool existed;
    int64_t x = enqueue(f, "segment", 0, "7.7", "h1", NULL, &existed);
    assert_false(existed);
    int64_t cursor = 0;
    samda_change *ch;
    size_t nch;
    CHECK_OK(samda_store_change_list(f->s, 0, 1000, &ch, &nch, &cursor, &e));
    samda_store_free(ch);
    int64_t y = enqueue(f, "segment", 3, "7.7", "h2", NULL, &existed);
    assert_true(existed);
    assert_int_equal(x, y);
    samda_job j;
    CHECK_OK(samda_store_job_get(f->s, x, &j, &e));
    assert_string_equal(j.content_hash, "h2");
    assert_int_equal(j.priority, 3);
    assert_int_equal(j.state, SAMDA_JOB_PENDING);
    samda_job_clear(&j);
    CHECK_OK(samda_store_change_list(f->s, cursor, 1000, &ch, &nch, NULL, &e));
    assert_int_equal(nch, 1);
    assert_string_equal(ch[0].kind, "job");
    assert_int_equal(ch[0].type, SAMDA_CHANGE_UPDATED);
    samda_store_free(ch);
    /* the old content again is a change too: still the one job */
    assert_int_equal(enqueue(f, "segment", 0, "7.7", "h1", NULL, &existed), x);
    assert_true(existed);
    /* other kind, other series: their own jobs */
    assert_int_not_equal(enqueue(f, "train", 0, "7.7", "h3", NULL, &existed), x);
    assert_int_not_equal(enqueue(f, "segment", 0, "7.8", "h3", NULL, &existed), x);
    /* other parameters: its own job */
    samda_job_spec other = {.kind = "segment", .series_uid = "7.7", .content_hash = "h4", .params_json = "{}"};
    int64_t o = 0;
    CHECK_OK(samda_store_job_enqueue(f->s, &other, &o, &existed, &e));
    assert_false(existed);
    assert_int_not_equal(o, x);
    /* once started, new content is new work */
    samda_job_filter flt = {.state = SAMDA_JOB_PENDING, .series_uid = "7.7", .kind = "segment"};
    samda_job *jobs;
    size_t n;
    CHECK_OK(samda_store_job_list(f->s, &flt, &jobs, &n, &e));
    assert_int_equal(n, 2);
    samda_job_list_free(jobs, n);
    bool got;
    do {
        CHECK_OK(samda_store_job_claim(f->s, "w", 60000, "segment", INT_MIN, &j, &got, &e));
        if (got) samda_job_clear(&j);
    } while (got);
    int64_t z = enqueue(f, "segment", 0, "7.7", "h5", NULL, &existed);
    assert_false(existed);
    assert_int_not_equal(z, x);
    fx_close(f);
}

/* min_priority: the worker leaves off-peak work (negative priorities) while the window is shut. */
static void test_claim_min_priority(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    bool existed;
    int64_t late = enqueue(f, "segment", -10, "1.3.1", "h1", NULL, &existed);
    int64_t now = enqueue(f, "segment", 0, "1.3.2", "h2", NULL, &existed);
    samda_job j;
    bool found = false;
    CHECK_OK(samda_store_job_claim(f->s, "w", 60000, "segment", -9, &j, &found, &e));
    assert_true(found);
    assert_int_equal(j.id, now);
    samda_job_clear(&j);
    CHECK_OK(samda_store_job_claim(f->s, "w", 60000, "segment", -9, &j, &found, &e));
    assert_false(found);
    CHECK_OK(samda_store_job_claim(f->s, "w", 60000, "segment", INT_MIN, &j, &found, &e));
    assert_true(found);
    assert_int_equal(j.id, late);
    samda_job_clear(&j);
    fx_close(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_claim_min_priority),
        cmocka_unit_test(test_enqueue_dedup),
        cmocka_unit_test(test_enqueue_merges_pending),
        cmocka_unit_test(test_claim_order_and_lifecycle),
        cmocka_unit_test(test_lease_expiry),
        cmocka_unit_test(test_reclaim_all),
        cmocka_unit_test(test_reclaim_all_of_one_node),
        cmocka_unit_test(test_concurrent_claims),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
