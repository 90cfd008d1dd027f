/* daemon/export_admin.c over a real store: the JSON of an item (destination name, result, no local
 * path), the filters and their errors, the manual retry (states, audit entry), and the rule for a
 * site's destinations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "export_admin.h"

typedef struct env {
    char dir[64];
    samda_store *s;
    int64_t pacs, other, result, a, b, c;
    char seg_relpath[SAMDA_RELPATH_SIZE];
} env;

static int setup(void **state)
{
    env *e = calloc(1, sizeof *e);
    snprintf(e->dir, sizeof e->dir, "/tmp/samda-test-export-admin-XXXXXX");
    if (!mkdtemp(e->dir)) return -1;
    samda_store_params p;
    samda_store_params_init(&p);
    p.data_dir = e->dir;
    samda_error err;
    e->s = samda_store_open(&p, &err);
    if (!e->s) fail_msg("%s", err.message);
    assert_int_equal(samda_store_destination_add(e->s, "pacs", "PACS", "10.0.0.1", 104, NULL, &e->pacs, &err), SAMDA_OK);
    assert_int_equal(samda_store_destination_add(e->s, "other", "OTHER", "10.0.0.2", 104, NULL, &e->other, &err), SAMDA_OK);
    samda_job_spec js = {.kind = "segment", .series_uid = "1.2.1"};
    int64_t job;
    assert_int_equal(samda_store_job_enqueue(e->s, &js, &job, NULL, &err), SAMDA_OK);
    samda_object_info seg;
    assert_int_equal(samda_store_object_put(e->s, SAMDA_OBJECT_SEG, "1.2", "1.2.99", "1.2.99.1", "SEG", 3, &seg, &err), SAMDA_OK);
    samda_result_spec rs = {.job_id = job, .series_uid = "1.2.1", .seg_series_uid = "1.2.99", .seg_sop_uid = "1.2.99.1",
                            .object = &seg};
    assert_int_equal(samda_store_result_add(e->s, &rs, &e->result, &err), SAMDA_OK);
    snprintf(e->seg_relpath, sizeof e->seg_relpath, "%s", seg.relpath);
    assert_int_equal(samda_store_export_enqueue(e->s, e->pacs, seg.relpath, "1.2.99.1", &e->a, &err), SAMDA_OK);
    assert_int_equal(samda_store_export_enqueue(e->s, e->other, seg.relpath, "1.2.99.1", &e->b, &err), SAMDA_OK);
    assert_int_equal(samda_store_export_enqueue(e->s, e->pacs, "seg/1.2/1.2.98/1.2.98.1.dcm", NULL, &e->c, &err), SAMDA_OK);
    /* a is refused by pacs for good, with an error naming the object's path */
    samda_export_item *items;
    size_t n;
    assert_int_equal(samda_store_export_claim(e->s, e->pacs, 1, &items, &n, &err), SAMDA_OK);
    assert_int_equal(n, 1);
    assert_int_equal(items[0].id, e->a);
    samda_store_free(items);
    char msg[512];
    snprintf(msg, sizeof msg, "reading the DICOM header of %s/objects/%s: No such file (10.0.0.1:104 PACS)", e->dir,
             seg.relpath);
    assert_int_equal(samda_store_export_fail(e->s, e->a, msg, true, NULL, &err), SAMDA_OK);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    env *e = *state;
    samda_store_close(e->s);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", e->dir);
    if (system(cmd) != 0) return -1;
    free(e);
    return 0;
}

static json_t *list(env *e, const samdad_export_query *q, samda_status want, samda_error *err)
{
    json_t *out = NULL;
    samda_status st = samdad_exports_list(e->s, q, &out, err);
    if (st != want) fail_msg("listing: status %s (wanted %s): %s", samda_status_name(st), samda_status_name(want), err->message);
    return out;
}

static void listing(void **state)
{
    env *e = *state;
    samda_error err;
    samdad_export_query all = {0};
    json_t *a = list(e, &all, SAMDA_OK, &err);
    assert_int_equal(json_array_size(a), 3);
    json_t *c = json_array_get(a, 0), *x = json_array_get(a, 2); /* newest first */
    assert_int_equal(json_integer_value(json_object_get(c, "id")), e->c);
    assert_true(json_is_null(json_object_get(c, "result")));
    assert_true(json_is_null(json_object_get(c, "sop_uid")));
    assert_true(json_is_null(json_object_get(c, "error")));
    assert_string_equal(json_string_value(json_object_get(c, "state")), "pending");
    assert_int_equal(json_integer_value(json_object_get(x, "id")), e->a);
    assert_string_equal(json_string_value(json_object_get(x, "destination")), "pacs");
    assert_int_equal(json_integer_value(json_object_get(x, "result")), e->result);
    assert_string_equal(json_string_value(json_object_get(x, "sop_uid")), "1.2.99.1");
    assert_string_equal(json_string_value(json_object_get(x, "state")), "failed");
    assert_true(json_is_true(json_object_get(x, "permanent")));
    assert_int_equal(json_integer_value(json_object_get(x, "attempts")), 1);
    /* the error keeps its cause, never the data directory's path */
    assert_string_equal(json_string_value(json_object_get(x, "error")),
                        "reading the DICOM header of [file]: No such file (10.0.0.1:104 PACS)");
    assert_null(json_object_get(x, "relpath"));
    json_decref(a);

    samdad_export_query failed_pacs = {.state = "failed", .destination = "pacs"};
    a = list(e, &failed_pacs, SAMDA_OK, &err);
    assert_int_equal(json_array_size(a), 1);
    json_decref(a);
    samdad_export_query by_result = {.result_id = e->result};
    a = list(e, &by_result, SAMDA_OK, &err);
    assert_int_equal(json_array_size(a), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(a, 0), "destination")), "other");
    json_decref(a);
    samdad_export_query page = {.limit = 1, .offset = 1};
    a = list(e, &page, SAMDA_OK, &err);
    assert_int_equal(json_array_size(a), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(a, 0), "id")), e->b);
    json_decref(a);

    samdad_export_query bad_state = {.state = "lost"};
    assert_null(list(e, &bad_state, SAMDA_EINVAL, &err));
    assert_string_equal(err.message, "export state 'lost': must be pending, sending, done or failed");
    samdad_export_query nowhere = {.destination = "nowhere"};
    assert_null(list(e, &nowhere, SAMDA_ENOENT, &err));
    assert_string_equal(err.message, "unknown destination nowhere");
    samdad_export_query no_result = {.result_id = 4242};
    assert_null(list(e, &no_result, SAMDA_ENOENT, &err));
    assert_string_equal(err.message, "unknown result 4242");
}

static void retry(void **state)
{
    env *e = *state;
    samda_error err;
    json_t *item = NULL;
    assert_int_equal(samdad_export_retry(e->s, e->a, "token:7", &item, &err), SAMDA_OK);
    assert_int_equal(json_integer_value(json_object_get(item, "id")), e->a);
    assert_string_equal(json_string_value(json_object_get(item, "state")), "pending");
    assert_int_equal(json_integer_value(json_object_get(item, "attempts")), 0);
    assert_false(json_is_true(json_object_get(item, "permanent")));
    assert_int_equal(json_integer_value(json_object_get(item, "result")), e->result);
    json_decref(item);
    /* audited under the actor, with item, destination and the state before */
    samda_audit_entry *log = NULL;
    size_t n = 0;
    assert_int_equal(samda_store_audit_list(e->s, 0, 100, &log, &n, &err), SAMDA_OK);
    int found = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(log[i].action, "export.retry") != 0) continue;
        found++;
        assert_string_equal(log[i].actor, "token:7");
        assert_string_equal(log[i].outcome, "ok");
        assert_string_equal(log[i].resource, e->seg_relpath);
        char want[128];
        snprintf(want, sizeof want, "{\"attempts\":1,\"destination\":\"pacs\",\"item\":%lld,\"was\":\"failed\"}", (long long)e->a);
        assert_string_equal(log[i].details_json, want);
    }
    samda_audit_list_free(log, n);
    assert_int_equal(found, 1);

    /* a pending item is only made due now; a sending or done one is refused, unchanged */
    assert_int_equal(samdad_export_retry(e->s, e->c, "cli", NULL, &err), SAMDA_OK);
    samda_export_item *items;
    size_t k;
    assert_int_equal(samda_store_export_claim(e->s, e->other, 1, &items, &k, &err), SAMDA_OK);
    assert_int_equal(k, 1);
    samda_store_free(items);
    char want[128];
    assert_int_equal(samdad_export_retry(e->s, e->b, "cli", NULL, &err), SAMDA_ECONFLICT);
    snprintf(want, sizeof want, "export %lld is sending: only a failed or pending item can be retried", (long long)e->b);
    assert_string_equal(err.message, want);
    assert_int_equal(samda_store_export_done(e->s, e->b, &err), SAMDA_OK);
    assert_int_equal(samdad_export_retry(e->s, e->b, "cli", NULL, &err), SAMDA_ECONFLICT);
    snprintf(want, sizeof want, "export %lld is done: only a failed or pending item can be retried", (long long)e->b);
    assert_string_equal(err.message, want);
    assert_int_equal(samdad_export_retry(e->s, 4242, "cli", NULL, &err), SAMDA_ENOENT);
    assert_string_equal(err.message, "unknown export 4242");
}

/* The one rule for where a site's SEGs go: its [site] section's destinations when the file has the
 * section (even over settings in the index), else the settings of a site made over the API. */
static void site_destinations(void **state)
{
    env *e = *state;
    char conf[128];
    snprintf(conf, sizeof conf, "%s/s.conf", e->dir);
    FILE *f = fopen(conf, "w");
    assert_non_null(f);
    fputs("[daemon]\ndata_dir = data\n[destination pacs]\nae_title = PACS\nhost = 10.0.0.1\nport = 104\n"
          "[destination other]\nae_title = OTHER\nhost = 10.0.0.2\nport = 104\n"
          "[site a]\nmodalities = CT\ndestinations = pacs, other\n", f);
    fclose(f);
    samda_error err;
    samda_config *cfg = samda_config_load(conf, NULL, &err);
    if (!cfg) fail_msg("%s", err.message);
    assert_int_equal(samda_store_site_add(e->s, "a", NULL, "{\"destinations\": [\"other\"]}", NULL, &err), SAMDA_OK);
    assert_int_equal(samda_store_site_add(e->s, "api", NULL, "{\"destinations\": [\"pacs\", 7]}", NULL, &err), SAMDA_OK);
    char d[4][SAMDA_NAME_SIZE];
    assert_int_equal(samdad_site_destinations(e->s, cfg, "a", d, 4), 2);
    assert_string_equal(d[0], "pacs");
    assert_string_equal(d[1], "other");
    assert_int_equal(samdad_site_destinations(e->s, cfg, "a", d, 1), 1); /* at most max */
    assert_int_equal(samdad_site_destinations(e->s, cfg, "api", d, 4), 1); /* non-strings skipped */
    assert_string_equal(d[0], "pacs");
    assert_int_equal(samdad_site_destinations(e->s, cfg, "nosuch", d, 4), 0);
    assert_int_equal(samdad_site_destinations(e->s, cfg, "", d, 4), 0);
    samda_config_unref(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(listing, setup, teardown),
        cmocka_unit_test_setup_teardown(retry, setup, teardown),
        cmocka_unit_test_setup_teardown(site_destinations, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
