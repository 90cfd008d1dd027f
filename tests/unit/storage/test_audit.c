/* Tests of storage/audit.c: the audit log is append-only (UPDATE and DELETE fail, even through a
 * raw connection to the index); the change feed is monotonic and paged by seq. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "store_fixture.h"

static void test_audit_append_only(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    CHECK_OK(samda_store_audit_append(f->s, "admin-cli", "adapter.activate", "adapter/north/3", "ok",
                                      "{\"from\":2}", &e));
    CHECK_OK(samda_store_audit_append(f->s, "viewer", "wado.instance", "instance/1.2.3", "denied", NULL, &e));
    CHECK_ST(SAMDA_EINVAL, samda_store_audit_append(f->s, "", "x", NULL, "ok", NULL, &e));
    CHECK_ST(SAMDA_EINVAL, samda_store_audit_append(f->s, "a", "x", NULL, "an-outcome-far-too-long", NULL, &e));
    samda_audit_entry *ent;
    size_t n;
    CHECK_OK(samda_store_audit_list(f->s, 0, 0, &ent, &n, &e));
    assert_int_equal(n, 2);
    assert_string_equal(ent[0].action, "adapter.activate");
    assert_string_equal(ent[0].details_json, "{\"from\":2}");
    assert_string_equal(ent[1].outcome, "denied");
    assert_null(ent[1].details_json);
    assert_int_equal(ent[1].time_ms, f->now_ms);
    int64_t first = ent[0].id;
    samda_audit_list_free(ent, n);
    CHECK_OK(samda_store_audit_list(f->s, first, 10, &ent, &n, &e));
    assert_int_equal(n, 1);
    samda_audit_list_free(ent, n);

    char msg[512];
    assert_int_not_equal(fx_raw_exec(f, "UPDATE audit_log SET outcome = 'ok'", msg, sizeof msg), 0);
    assert_non_null(strstr(msg, "append-only"));
    assert_int_not_equal(fx_raw_exec(f, "DELETE FROM audit_log", msg, sizeof msg), 0);
    assert_non_null(strstr(msg, "append-only"));
    if (fx_pg()) { /* PostgreSQL's TRUNCATE, which row triggers do not see (SQLite has none) */
        assert_int_not_equal(fx_raw_exec(f, "TRUNCATE audit_log", msg, sizeof msg), 0);
        assert_non_null(strstr(msg, "append-only"));
    }
    CHECK_OK(samda_store_audit_list(f->s, 0, 0, &ent, &n, &e));
    assert_int_equal(n, 2);
    assert_string_equal(ent[1].outcome, "denied");
    samda_audit_list_free(ent, n);
    fx_close(f);
}

static void test_change_feed(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    CHECK_OK(fx_ingest_simple(f->s, "1.2", "1.2.1", "1.2.1.1", &e)); /* instance, series, study */
    CHECK_OK(samda_store_change_append(f->s, "job", "17", SAMDA_CHANGE_STATE, &e));
    CHECK_ST(SAMDA_EINVAL, samda_store_change_append(f->s, "", "17", SAMDA_CHANGE_STATE, &e));
    CHECK_ST(SAMDA_EINVAL, samda_store_change_append(f->s, "job", "17", (samda_change_type)9, &e));
    samda_change *c;
    size_t n;
    int64_t last;
    CHECK_OK(samda_store_change_list(f->s, 0, 0, &c, &n, &last, &e));
    assert_int_equal(n, 4);
    for (size_t i = 1; i < n; i++) assert_true(c[i].seq > c[i - 1].seq);
    assert_int_equal(last, c[3].seq);
    assert_string_equal(c[0].kind, "instance");
    assert_string_equal(c[0].resource, "1.2.1.1");
    assert_int_equal(c[0].type, SAMDA_CHANGE_NEW);
    assert_string_equal(c[3].kind, "job");
    assert_int_equal(c[3].type, SAMDA_CHANGE_STATE);
    int64_t second = c[1].seq;
    samda_store_free(c);
    CHECK_OK(samda_store_change_list(f->s, second, 1, &c, &n, NULL, &e));
    assert_int_equal(n, 1);
    assert_string_equal(c[0].kind, "study");
    samda_store_free(c);
    CHECK_OK(samda_store_change_list(f->s, last, 10, &c, &n, &last, &e));
    assert_int_equal(n, 0);
    assert_null(c);
    assert_string_equal(samda_change_type_name(SAMDA_CHANGE_DELETED), "deleted");
    fx_close(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_audit_append_only),
        cmocka_unit_test(test_change_feed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
