/* Tests of storage/sites.c: sites and destinations CRUD, and adapter versions: add (numbered per
 * site), list, activate exactly one, roll back to the parent or predecessor, delete inactive only. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "store_fixture.h"

static void test_sites_and_destinations(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    assert_true(samda_store_name_is_valid("radiology-1_b.x"));
    assert_false(samda_store_name_is_valid(".hidden"));
    assert_false(samda_store_name_is_valid("a/b"));
    assert_false(samda_store_name_is_valid(""));
    assert_false(samda_store_name_is_valid(NULL));
    int64_t id;
    CHECK_OK(samda_store_site_add(f->s, "north", "{\"CT1\":\"north\"}", "{\"tta\":\"off\"}", &id, &e));
    CHECK_OK(samda_store_site_add(f->s, "south", NULL, NULL, NULL, &e));
    CHECK_ST(SAMDA_EEXIST, samda_store_site_add(f->s, "north", NULL, NULL, NULL, &e));
    CHECK_ST(SAMDA_EINVAL, samda_store_site_add(f->s, "bad name", NULL, NULL, NULL, &e));
    samda_site site;
    CHECK_OK(samda_store_site_get(f->s, "north", &site, &e));
    assert_int_equal(site.id, id);
    assert_string_equal(site.ae_json, "{\"CT1\":\"north\"}");
    assert_string_equal(site.settings_json, "{\"tta\":\"off\"}");
    samda_site_clear(&site);
    f->now_ms += 1000;
    CHECK_OK(samda_store_site_update(f->s, "north", NULL, "{\"tta\":\"episodic\"}", &e));
    CHECK_OK(samda_store_site_get(f->s, "north", &site, &e));
    assert_null(site.ae_json);
    assert_string_equal(site.settings_json, "{\"tta\":\"episodic\"}");
    assert_int_equal(site.updated_ms, f->now_ms);
    samda_site_clear(&site);
    CHECK_ST(SAMDA_ENOENT, samda_store_site_update(f->s, "west", NULL, NULL, &e));
    CHECK_ST(SAMDA_ENOENT, samda_store_site_get(f->s, "west", &site, &e));
    samda_site *sites;
    size_t n;
    CHECK_OK(samda_store_site_list(f->s, &sites, &n, &e));
    assert_int_equal(n, 2);
    assert_string_equal(sites[1].name, "south");
    samda_site_list_free(sites, n);
    int64_t sid;
    CHECK_OK(samda_store_site_id(f->s, "south", &sid, &e));
    /* a site in use cannot be deleted */
    samda_instance_meta m;
    fx_meta(&m, "1.2", "1.2.1", "1.2.1.1");
    snprintf(m.site, sizeof m.site, "north");
    CHECK_OK(fx_ingest(f->s, &m, "x", 1, SAMDA_DUP_REJECT, NULL, &e));
    CHECK_ST(SAMDA_EBUSY, samda_store_site_delete(f->s, "north", &e));
    CHECK_OK(samda_store_site_delete(f->s, "south", &e));
    CHECK_ST(SAMDA_ENOENT, samda_store_site_delete(f->s, "south", &e));

    int64_t did;
    CHECK_OK(samda_store_destination_add(f->s, "pacs", "ORTHANC", "127.0.0.1", 4242, "{\"tls\":false}", &did, &e));
    CHECK_ST(SAMDA_EEXIST, samda_store_destination_add(f->s, "pacs", "X", "h", 1, NULL, NULL, &e));
    CHECK_ST(SAMDA_EINVAL, samda_store_destination_add(f->s, "p2", "X", "h", 70000, NULL, NULL, &e));
    /* put: updates in place (same id), or adds */
    int64_t did2 = 0;
    CHECK_OK(samda_store_destination_put(f->s, "pacs", "PACS2", "10.0.0.2", 11112, NULL, &did2, &e));
    assert_int_equal(did2, did);
    samda_destination dd;
    CHECK_OK(samda_store_destination_get(f->s, "pacs", &dd, &e));
    assert_string_equal(dd.ae_title, "PACS2");
    assert_int_equal(dd.port, 11112);
    samda_destination_clear(&dd);
    CHECK_OK(samda_store_destination_put(f->s, "pacs", "ORTHANC", "127.0.0.1", 4242, "{\"tls\":false}", NULL, &e));
    CHECK_ST(SAMDA_EINVAL, samda_store_destination_put(f->s, "p3", "X", "h", 0, NULL, NULL, &e));
    CHECK_ST(SAMDA_EINVAL, samda_store_destination_add(f->s, "p2", "AE_TITLE_TOO_LONG_", "h", 1, NULL, NULL, &e));
    CHECK_ST(SAMDA_EINVAL, samda_store_destination_add(f->s, "p2", "X", "", 1, NULL, NULL, &e));
    samda_destination d;
    CHECK_OK(samda_store_destination_get(f->s, "pacs", &d, &e));
    assert_int_equal(d.id, did);
    assert_string_equal(d.ae_title, "ORTHANC");
    assert_int_equal(d.port, 4242);
    assert_string_equal(d.settings_json, "{\"tls\":false}");
    samda_destination_clear(&d);
    samda_destination *ds;
    CHECK_OK(samda_store_destination_list(f->s, &ds, &n, &e));
    assert_int_equal(n, 1);
    samda_destination_list_free(ds, n);
    CHECK_OK(samda_store_destination_delete(f->s, "pacs", &e));
    CHECK_ST(SAMDA_ENOENT, samda_store_destination_get(f->s, "pacs", &d, &e));
    fx_close(f);
}

static void add_version(fx *f, const char *site, int parent, int *version)
{
    samda_error e;
    int64_t site_id;
    CHECK_OK(samda_store_site_id(f->s, site, &site_id, &e));
    CHECK_OK(samda_store_adapter_next_version(f->s, site, version, &e));
    char a[24], b[24], body[64];
    snprintf(a, sizeof a, "%lld", (long long)site_id);
    snprintf(b, sizeof b, "%d", *version);
    int len = snprintf(body, sizeof body, "adapter %s v%d", site, *version);
    samda_object_info o;
    CHECK_OK(samda_store_object_put(f->s, SAMDA_OBJECT_ADAPTER, a, b, NULL, body, (size_t)len, &o, &e));
    CHECK_OK(samda_store_adapter_add(f->s, site, *version, parent, &o, "sam_vit_b:01ec64", "{\"labels\":[\"liver\"]}", &e));
}

static void test_adapters(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    CHECK_OK(samda_store_site_add(f->s, "north", NULL, NULL, NULL, &e));
    CHECK_OK(samda_store_site_add(f->s, "south", NULL, NULL, NULL, &e));
    int v1, v2, v3, s1;
    add_version(f, "north", 0, &v1);
    add_version(f, "north", 1, &v2);
    add_version(f, "north", 1, &v3); /* trained from v1 again */
    add_version(f, "south", 0, &s1);
    assert_int_equal(v1, 1);
    assert_int_equal(v2, 2);
    assert_int_equal(v3, 3);
    assert_int_equal(s1, 1);
    samda_adapter_row ad;
    CHECK_ST(SAMDA_ENOENT, samda_store_adapter_get_active(f->s, "north", &ad, &e));
    CHECK_OK(samda_store_adapter_activate(f->s, "north", 2, &e));
    CHECK_OK(samda_store_adapter_activate(f->s, "south", 1, &e));
    CHECK_OK(samda_store_adapter_activate(f->s, "north", 3, &e));
    CHECK_OK(samda_store_adapter_get_active(f->s, "north", &ad, &e));
    assert_int_equal(ad.version, 3);
    assert_int_equal(ad.parent_version, 1);
    assert_true(ad.active);
    assert_string_equal(ad.base_fingerprint, "sam_vit_b:01ec64");
    assert_string_equal(ad.metadata_json, "{\"labels\":[\"liver\"]}");
    assert_string_equal(ad.object.relpath, "adapters/1/3.safetensors");
    samda_adapter_clear(&ad);
    samda_adapter_row *list;
    size_t n;
    CHECK_OK(samda_store_adapter_list(f->s, "north", &list, &n, &e));
    assert_int_equal(n, 3);
    int active = 0;
    for (size_t i = 0; i < n; i++) active += list[i].active;
    assert_int_equal(active, 1);
    assert_int_equal(list[0].version, 3);
    samda_adapter_list_free(list, n);
    CHECK_OK(samda_store_adapter_get_active(f->s, "south", &ad, &e)); /* other site untouched */
    assert_int_equal(ad.version, 1);
    samda_adapter_clear(&ad);

    /* rollback: v3's parent is v1 */
    int now_active;
    CHECK_OK(samda_store_adapter_rollback(f->s, "north", &now_active, &e));
    assert_int_equal(now_active, 1);
    CHECK_ST(SAMDA_ENOENT, samda_store_adapter_rollback(f->s, "north", &now_active, &e)); /* v1 has none */
    /* v2 without parent rolls back to the highest version below */
    CHECK_OK(samda_store_adapter_activate(f->s, "north", 2, &e));
    CHECK_OK(samda_store_adapter_rollback(f->s, "north", &now_active, &e));
    assert_int_equal(now_active, 1);

    CHECK_ST(SAMDA_EBUSY, samda_store_adapter_delete(f->s, "north", 1, &e));
    CHECK_OK(samda_store_adapter_delete(f->s, "north", 3, &e));
    CHECK_ST(SAMDA_ENOENT, samda_store_adapter_get(f->s, "north", 3, &ad, &e));
    CHECK_ST(SAMDA_ENOENT, samda_store_adapter_delete(f->s, "north", 3, &e));
    CHECK_ST(SAMDA_ENOENT, samda_store_adapter_activate(f->s, "north", 9, &e));
    CHECK_OK(samda_store_adapter_get(f->s, "north", 2, &ad, &e));
    assert_false(ad.active);
    samda_adapter_clear(&ad);
    CHECK_OK(samda_store_adapter_deactivate(f->s, "north", &e));
    CHECK_ST(SAMDA_ENOENT, samda_store_adapter_get_active(f->s, "north", &ad, &e));
    CHECK_ST(SAMDA_ENOENT, samda_store_adapter_rollback(f->s, "north", &now_active, &e));

    /* refusals */
    samda_object_info o = {0};
    CHECK_ST(SAMDA_EINVAL, samda_store_adapter_add(f->s, "north", 5, 0, &o, NULL, NULL, &e));
    CHECK_ST(SAMDA_EINVAL, samda_store_adapter_add(f->s, "north", 5, 5, &o, NULL, NULL, &e));
    CHECK_ST(SAMDA_ENOENT, samda_store_adapter_next_version(f->s, "west", &v1, &e));

    /* the deleted version's file is gone; the rest is consistent */
    assert_non_null(fx_reopen(f));
    assert_int_equal(samda_store_orphans_removed(f->s), 0);
    samda_store_check_report rep;
    CHECK_OK(samda_store_check(f->s, &rep, &e));
    assert_int_equal(rep.n_objects_indexed, 3);
    fx_close(f);
}

/* Lists are in byte order of the names on both engines, whatever a PostgreSQL database's collation
 * (a language's would put "C" last and may ignore the punctuation). */
static void test_lists_in_byte_order(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    const char *names[] = {"b", "a.2", "C", "a-1"}, *sorted[] = {"C", "a-1", "a.2", "b"};
    for (int i = 0; i < 4; i++) {
        CHECK_OK(samda_store_site_add(f->s, names[i], NULL, NULL, NULL, &e));
        CHECK_OK(samda_store_destination_add(f->s, names[i], "AE", "h", 104, NULL, NULL, &e));
    }
    samda_site *sites;
    samda_destination *ds;
    size_t n, nd;
    CHECK_OK(samda_store_site_list(f->s, &sites, &n, &e));
    CHECK_OK(samda_store_destination_list(f->s, &ds, &nd, &e));
    assert_int_equal(n, 4);
    assert_int_equal(nd, 4);
    for (int i = 0; i < 4; i++) {
        assert_string_equal(sites[i].name, sorted[i]);
        assert_string_equal(ds[i].name, sorted[i]);
    }
    samda_site_list_free(sites, n);
    samda_destination_list_free(ds, nd);
    fx_close(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sites_and_destinations),
        cmocka_unit_test(test_adapters),
        cmocka_unit_test(test_lists_in_byte_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
