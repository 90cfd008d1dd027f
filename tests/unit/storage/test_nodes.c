/* Tests of storage/nodes.c and the cluster parts of assoc.c: heartbeats and the node list, the
 * leader lock (PostgreSQL: one holder, passed on when it closes; SQLite: always this store), queue
 * depths, and the open associations a restarting node or a dead node leaves behind. Each runs on
 * SQLite and on PostgreSQL (test_storage_nodes_pg). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <limits.h>

#include "store_fixture.h"

/* A store on f's directory (and schema) as node `node`. */
static samda_store *open_node(fx *f, const char *node)
{
    samda_store_params p;
    fx_params(f, &p);
    p.node = node;
    samda_error e;
    samda_store *s = samda_store_open(&p, &e);
    if (!s) fail_msg("opening node %s: %s", node, e.message);
    return s;
}

static fx *fx_scratch(void)
{
    fx *f = calloc(1, sizeof *f);
    fx_mkdtemp(f);
    f->now_ms = 1700000000000LL;
    return f;
}

static void beat(samda_store *s, const char *name, const char *roles, bool leader, samda_error *err)
{
    samda_node_info me;
    memset(&me, 0, sizeof me);
    snprintf(me.name, sizeof me.name, "%s", name);
    snprintf(me.roles, sizeof me.roles, "%s", roles);
    snprintf(me.version, sizeof me.version, "0.1.0");
    me.pid = 4242;
    me.started_ms = 1700000000000LL - 5000;
    me.leader = leader;
    samda_status st = samda_store_node_beat(s, &me, err);
    if (st != SAMDA_OK) fail_msg("beat %s: %s", name, err->message);
}

static void test_beat_and_list(void **state)
{
    (void)state;
    fx *f = fx_scratch();
    samda_store *a = open_node(f, "gpu-1"), *b = open_node(f, "front");
    samda_error e;
    beat(a, "gpu-1", "worker", false, &e);
    beat(b, "front", "ingest,api,export", true, &e);
    f->now_ms += 2000;
    beat(a, "gpu-1", "worker", true, &e); /* the lead moved: front's row no longer says it leads */
    samda_node_info *nodes = NULL;
    size_t n = 0;
    CHECK_OK(samda_store_node_list(a, &nodes, &n, &e));
    assert_int_equal(n, 2);
    assert_string_equal(nodes[0].name, "front"); /* by name */
    assert_string_equal(nodes[0].roles, "ingest,api,export");
    assert_false(nodes[0].leader);
    assert_int_equal(nodes[0].heartbeat_ms, 1700000000000LL);
    assert_string_equal(nodes[1].name, "gpu-1");
    assert_true(nodes[1].leader);
    assert_int_equal(nodes[1].heartbeat_ms, 1700000002000LL);
    assert_int_equal(nodes[1].pid, 4242);
    assert_string_equal(nodes[1].version, "0.1.0");
    samda_store_free(nodes);

    /* a store beats only for its own node; a store without a node has none */
    samda_node_info other;
    memset(&other, 0, sizeof other);
    snprintf(other.name, sizeof other.name, "front");
    CHECK_ST(SAMDA_EINVAL, samda_store_node_beat(a, &other, &e));
    samda_store_params p;
    fx_params(f, &p);
    samda_store *none = samda_store_open(&p, &e);
    assert_non_null(none);
    CHECK_ST(SAMDA_EINVAL, samda_store_node_beat(none, &other, &e));
    samda_store_close(none);
    /* node names are checked at open */
    p.node = "bad name";
    assert_null(samda_store_open(&p, &e));
    assert_int_equal(e.code, SAMDA_EINVAL);
    assert_true(samda_node_name_is_valid("gpu-1.icu_2"));
    assert_false(samda_node_name_is_valid(""));
    assert_false(samda_node_name_is_valid("a/b"));
    samda_store_close(a);
    samda_store_close(b);
    fx_rm_scratch(f);
    free(f);
}

static void test_leader(void **state)
{
    (void)state;
    fx *f = fx_scratch();
    samda_store *a = open_node(f, "n1"), *b = open_node(f, "n2");
    samda_error e;
    bool la = false, lb = false;
    CHECK_OK(samda_store_leader_try(a, &la, &e));
    CHECK_OK(samda_store_leader_try(b, &lb, &e));
    if (!fx_pg()) {
        /* SQLite: one samdad per data directory, which is always the leader */
        assert_true(la && lb);
    } else {
        assert_true(la);
        assert_false(lb);
        CHECK_OK(samda_store_leader_try(a, &la, &e)); /* kept */
        assert_true(la);
        samda_store_close(a); /* the session ends: the lock goes with it */
        a = NULL;
        CHECK_OK(samda_store_leader_try(b, &lb, &e));
        assert_true(lb);
    }
    samda_store_close(a);
    samda_store_close(b);
    fx_rm_scratch(f);
    free(f);
}

static void test_queue_depths(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    samda_queue_depths q;
    CHECK_OK(samda_store_queue_depths(f->s, &q, &e));
    assert_int_equal(q.jobs[SAMDA_JOB_PENDING] + q.jobs[SAMDA_JOB_RUNNING] + q.exports[SAMDA_EXPORT_PENDING], 0);
    samda_job_spec spec = {.kind = "segment", .max_attempts = 1};
    int64_t id;
    CHECK_OK(samda_store_job_enqueue(f->s, &spec, &id, NULL, &e));
    spec.idempotency_key = "b";
    CHECK_OK(samda_store_job_enqueue(f->s, &spec, &id, NULL, &e));
    samda_job j;
    bool found;
    CHECK_OK(samda_store_job_claim(f->s, "n1:1:worker", 60000, NULL, INT_MIN, &j, &found, &e));
    samda_job_clear(&j);
    int64_t dest;
    CHECK_OK(samda_store_destination_add(f->s, "pacs", "PACS", "127.0.0.1", 104, NULL, &dest, &e));
    CHECK_OK(samda_store_export_enqueue(f->s, dest, "1/2/3.dcm", NULL, NULL, &e));
    CHECK_OK(samda_store_queue_depths(f->s, &q, &e));
    assert_int_equal(q.jobs[SAMDA_JOB_PENDING], 1);
    assert_int_equal(q.jobs[SAMDA_JOB_RUNNING], 1);
    assert_int_equal(q.jobs[SAMDA_JOB_DONE], 0);
    assert_int_equal(q.exports[SAMDA_EXPORT_PENDING], 1);
    fx_close(f);
}

static int64_t assoc_state(samda_store *s, int64_t id)
{
    samda_association a;
    samda_error e;
    CHECK_OK(samda_store_assoc_get(s, id, &a, &e));
    return a.state;
}

/* A node's restart ends its own open associations only; the leader ends those of a node that stopped
 * beating, and their instances count as from an aborted association. */
static void test_associations_of_nodes(void **state)
{
    (void)state;
    fx *f = fx_scratch();
    samda_store *a = open_node(f, "ingest-a"), *b = open_node(f, "ingest-b");
    samda_error e;
    beat(a, "ingest-a", "ingest", false, &e);
    beat(b, "ingest-b", "ingest", true, &e);
    int64_t a1, b1;
    CHECK_OK(samda_store_assoc_begin(a, "MOD1", "SAMDA", "10.0.0.1:1000", NULL, &a1, &e));
    CHECK_OK(samda_store_assoc_begin(b, "MOD2", "SAMDA", "10.0.0.2:1000", NULL, &b1, &e));
    samda_instance_meta m;
    fx_meta(&m, "1.2.7", "1.2.7.1", "1.2.7.1.1");
    m.association_id = a1;
    CHECK_OK(fx_ingest(a, &m, "x", 1, SAMDA_DUP_IGNORE_IDENTICAL, NULL, &e));

    /* ingest-b restarts: only its association ends */
    size_t n = 9;
    CHECK_OK(samda_store_assoc_abort_stale(b, &n, &e));
    assert_int_equal(n, 1);
    assert_int_equal(assoc_state(a, a1), SAMDA_ASSOC_STATE_OPEN);
    assert_int_equal(assoc_state(a, b1), SAMDA_ASSOC_STATE_ABORTED);

    /* ingest-a stops beating; ingest-b (the leader) sees it dead 30 s later */
    f->now_ms += 60000;
    beat(b, "ingest-b", "ingest", true, &e);
    CHECK_ST(SAMDA_EINVAL, samda_store_assoc_abort_dead(b, 0, &n, &e));
    CHECK_OK(samda_store_assoc_abort_dead(b, f->now_ms - 30000, &n, &e));
    assert_int_equal(n, 1);
    assert_int_equal(assoc_state(b, a1), SAMDA_ASSOC_STATE_ABORTED);
    samda_series_assoc_summary sum;
    CHECK_OK(samda_store_series_assoc_summary(b, "1.2.7.1", &sum, &e));
    assert_int_equal(sum.n_instances, 1);
    assert_int_equal(sum.n_from_open, 0);
    assert_int_equal(sum.n_from_aborted, 1);
    /* a live node's open association is left alone */
    int64_t b2;
    CHECK_OK(samda_store_assoc_begin(b, "MOD2", "SAMDA", "10.0.0.2:1001", NULL, &b2, &e));
    CHECK_OK(samda_store_assoc_abort_dead(b, f->now_ms - 30000, &n, &e));
    assert_int_equal(n, 0);
    assert_int_equal(assoc_state(b, b2), SAMDA_ASSOC_STATE_OPEN);
    samda_store_close(a);
    samda_store_close(b);
    fx_rm_scratch(f);
    free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_beat_and_list),
        cmocka_unit_test(test_leader),
        cmocka_unit_test(test_queue_depths),
        cmocka_unit_test(test_associations_of_nodes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
