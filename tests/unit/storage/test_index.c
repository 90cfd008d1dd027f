/* Tests of storage/index.c: ingest (one transaction with change-feed rows), duplicate policies,
 * series/study/instance reads and queries, series state, idle series, content hash, associations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>

#include "store_fixture.h"

static int count_changes(samda_store *s, const char *kind, samda_change_type type)
{
    samda_change *c;
    size_t n;
    samda_error e;
    if (samda_store_change_list(s, 0, 0, &c, &n, NULL, &e) != SAMDA_OK) return -1;
    int k = 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(c[i].kind, kind) == 0 && c[i].type == type) k++;
    samda_store_free(c);
    return k;
}

static void test_ingest_and_read_back(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    CHECK_OK(samda_store_site_add(f->s, "hospital-a", "{\"SCANNER1\":1}", NULL, NULL, &e));
    int64_t assoc;
    CHECK_OK(samda_store_assoc_begin(f->s, "SCANNER1", "SAMDA", "10.0.0.5:4242", "hospital-a", &assoc, &e));

    samda_instance_meta m;
    fx_meta(&m, "1.2.3", "1.2.3.1", "1.2.3.1.1");
    snprintf(m.patient_name, sizeof m.patient_name, "Doe^Jane");
    snprintf(m.site, sizeof m.site, "hospital-a");
    snprintf(m.calling_ae, sizeof m.calling_ae, "SCANNER1");
    snprintf(m.body_part, sizeof m.body_part, "CHEST");
    snprintf(m.series_description, sizeof m.series_description, "Thorax 1mm");
    m.series_number = 3;
    m.instance_number = 7;
    m.association_id = assoc;
    m.pixel_spacing[0] = 0.7;
    m.pixel_spacing[1] = 0.8;
    m.image_position[0] = -100;
    m.image_position[1] = -120.5;
    m.image_position[2] = 42.25;
    double iop[6] = {1, 0, 0, 0, 1, 0};
    memcpy(m.image_orientation, iop, sizeof iop);
    m.slice_thickness = 1.0;
    m.rescale_slope = 1;
    m.rescale_intercept = -1024;
    m.window_center = 40;
    m.window_width = 400;
    samda_ingest_result r;
    CHECK_OK(fx_ingest(f->s, &m, "payload-1", 9, SAMDA_DUP_IGNORE_IDENTICAL, &r, &e));
    assert_int_equal(r.outcome, SAMDA_INGEST_NEW);
    assert_true(r.new_study);
    assert_true(r.new_series);
    assert_true(r.instance_id > 0);
    assert_string_equal(r.object.relpath, "1.2.3/1.2.3.1/1.2.3.1.1.dcm");
    assert_int_equal(r.object.size, 9);

    samda_instance_row row;
    CHECK_OK(samda_store_instance_get(f->s, "1.2.3.1.1", &row, &e));
    assert_string_equal(row.meta.patient_name, "Doe^Jane");
    assert_string_equal(row.meta.site, "hospital-a");
    assert_string_equal(row.meta.calling_ae, "SCANNER1");
    assert_string_equal(row.meta.modality, "CT");
    assert_string_equal(row.meta.body_part, "CHEST");
    assert_string_equal(row.meta.study_date, "20240105");
    assert_int_equal(row.meta.instance_number, 7);
    assert_int_equal(row.meta.rows, 512);
    assert_true(row.meta.image_position[2] == 42.25);
    assert_true(row.meta.image_orientation[4] == 1);
    assert_true(row.meta.pixel_spacing[1] == 0.8);
    assert_true(row.meta.rescale_intercept == -1024);
    assert_true(row.meta.window_width == 400);
    assert_int_equal(row.meta.association_id, assoc);
    assert_int_equal(row.meta.flags, 0);
    assert_int_equal(row.received_at_ms, f->now_ms);
    assert_string_equal(row.object.sha256, r.object.sha256);

    /* second instance in the same series, no geometry */
    f->now_ms += 5000;
    samda_instance_meta m2 = m;
    snprintf(m2.sop_uid, sizeof m2.sop_uid, "1.2.3.1.2");
    m2.instance_number = 2;
    m2.image_position[0] = m2.image_position[1] = m2.image_position[2] = NAN;
    CHECK_OK(fx_ingest(f->s, &m2, "payload-2", 9, SAMDA_DUP_IGNORE_IDENTICAL, &r, &e));
    assert_false(r.new_series);
    assert_false(r.new_study);

    samda_series_info si;
    CHECK_OK(samda_store_series_get(f->s, "1.2.3.1", &si, &e));
    assert_int_equal(si.n_instances, 2);
    assert_int_equal(si.last_received_ms, f->now_ms);
    assert_int_equal(si.first_received_ms, f->now_ms - 5000);
    assert_string_equal(si.site, "hospital-a");
    assert_string_equal(si.series_description, "Thorax 1mm");
    assert_int_equal(si.series_number, 3);
    assert_int_equal(si.state, SAMDA_SERIES_RECEIVING);

    samda_instance_row *rows;
    size_t n;
    CHECK_OK(samda_store_instance_list(f->s, "1.2.3.1", 0, 0, &rows, &n, &e));
    assert_int_equal(n, 2);
    assert_string_equal(rows[0].meta.sop_uid, "1.2.3.1.2"); /* instance number 2 before 7 */
    assert_true(isnan(rows[0].meta.image_position[0]));
    assert_true(rows[1].meta.image_position[1] == -120.5);
    samda_store_free(rows);
    CHECK_OK(samda_store_instance_list(f->s, "1.2.3.1", 1, 1, &rows, &n, &e));
    assert_int_equal(n, 1);
    assert_string_equal(rows[0].meta.sop_uid, "1.2.3.1.1");
    samda_store_free(rows);
    /* the same instances as absolute paths, in the same order, each an existing file */
    char **paths;
    CHECK_OK(samda_store_series_paths(f->s, "1.2.3.1", &paths, &n, &e));
    assert_int_equal(n, 2);
    assert_non_null(strstr(paths[0], "1.2.3.1.2.dcm"));
    assert_true(paths[0][0] == '/' && access(paths[0], R_OK) == 0 && access(paths[1], R_OK) == 0);
    samda_store_paths_free(paths, n);
    CHECK_OK(samda_store_series_paths(f->s, "9.9.9", &paths, &n, &e));
    assert_int_equal(n, 0);
    samda_store_paths_free(paths, n);

    samda_association a;
    CHECK_OK(samda_store_assoc_get(f->s, assoc, &a, &e));
    assert_int_equal(a.n_instances, 2);
    assert_int_equal(a.state, SAMDA_ASSOC_STATE_OPEN);
    assert_string_equal(a.site, "hospital-a");

    assert_int_equal(count_changes(f->s, "instance", SAMDA_CHANGE_NEW), 2);
    assert_int_equal(count_changes(f->s, "series", SAMDA_CHANGE_NEW), 1);
    assert_int_equal(count_changes(f->s, "study", SAMDA_CHANGE_NEW), 1);

    /* unknown site and association are refused, nothing indexed */
    samda_instance_meta bad = m;
    snprintf(bad.sop_uid, sizeof bad.sop_uid, "1.2.3.1.9");
    snprintf(bad.site, sizeof bad.site, "nowhere");
    CHECK_ST(SAMDA_EINVAL, fx_ingest(f->s, &bad, "x", 1, SAMDA_DUP_REJECT, NULL, &e));
    snprintf(bad.site, sizeof bad.site, "hospital-a");
    bad.association_id = 999;
    CHECK_ST(SAMDA_EINVAL, fx_ingest(f->s, &bad, "x", 1, SAMDA_DUP_REJECT, NULL, &e));
    CHECK_ST(SAMDA_ENOENT, samda_store_instance_lookup(f->s, "1.2.3.1.9", NULL, NULL, &e));
    /* a series cannot move to another study */
    fx_meta(&bad, "1.2.4", "1.2.3.1", "1.2.3.1.10");
    CHECK_ST(SAMDA_ECONFLICT, fx_ingest(f->s, &bad, "x", 1, SAMDA_DUP_REJECT, NULL, &e));
    assert_non_null(strstr(e.message, "(0020,000D) StudyInstanceUID differs"));
    CHECK_ST(SAMDA_ENOENT, samda_store_study_get(f->s, "1.2.4", NULL, &e));
    /* one study, one patient: another PatientID in the same study is refused, nothing indexed */
    fx_meta(&bad, "1.2.3", "1.2.3.1", "1.2.3.1.12");
    snprintf(bad.patient_id, sizeof bad.patient_id, "%s", "OTHER-PATIENT");
    CHECK_ST(SAMDA_ECONFLICT, fx_ingest(f->s, &bad, "x", 1, SAMDA_DUP_REJECT, NULL, &e));
    assert_non_null(strstr(e.message, "(0010,0020) PatientID differs"));
    CHECK_ST(SAMDA_ENOENT, samda_store_instance_lookup(f->s, "1.2.3.1.12", NULL, NULL, &e));
    /* one series, one modality and one SOP class */
    fx_meta(&bad, "1.2.3", "1.2.3.1", "1.2.3.1.13");
    snprintf(bad.modality, sizeof bad.modality, "%s", strcmp(m.modality, "MR") ? "MR" : "CT");
    CHECK_ST(SAMDA_ECONFLICT, fx_ingest(f->s, &bad, "x", 1, SAMDA_DUP_REJECT, NULL, &e));
    assert_non_null(strstr(e.message, "(0008,0060) Modality"));
    fx_meta(&bad, "1.2.3", "1.2.3.1", "1.2.3.1.14");
    snprintf(bad.sop_class_uid, sizeof bad.sop_class_uid, "%s", "1.2.840.10008.5.1.4.1.1.7");
    CHECK_ST(SAMDA_ECONFLICT, fx_ingest(f->s, &bad, "x", 1, SAMDA_DUP_REJECT, NULL, &e));
    assert_non_null(strstr(e.message, "(0008,0016) SOPClassUID"));
    CHECK_ST(SAMDA_ENOENT, samda_store_instance_lookup(f->s, "1.2.3.1.14", NULL, NULL, &e));
    /* invalid UIDs never reach a path */
    fx_meta(&bad, "1.2.3", "1.2.3.1", "1.2.3.1.x");
    CHECK_ST(SAMDA_EBADUID, fx_ingest(f->s, &bad, "x", 1, SAMDA_DUP_REJECT, NULL, &e));
    fx_meta(&bad, "../../etc", "1.2.3.1", "1.2.3.1.11");
    CHECK_ST(SAMDA_EBADUID, fx_ingest(f->s, &bad, "x", 1, SAMDA_DUP_REJECT, NULL, &e));

    samda_store_check_report rep;
    CHECK_OK(samda_store_check(f->s, &rep, &e));
    fx_close(f);
}

/* A person name as long as DICOM allows, in a multi-byte script, is indexed whole (the index once
 * kept 255 bytes of it while the header reader kept 324: one size now, common/dicom_rules.h). */
static void test_long_person_name(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    samda_instance_meta m;
    fx_meta(&m, "1.2.9", "1.2.9.1", "1.2.9.1.1");
    char name[SAMDA_PN_SIZE] = "";
    size_t n = 0;
    for (int g = 0; g < 3; g++) { /* three component groups of 50 two-byte characters each */
        if (g) name[n++] = '=';
        for (int i = 0; i < 50; i++) {
            name[n++] = (char)0xC3;
            name[n++] = (char)0xA9; /* U+00E9 */
        }
    }
    name[n] = 0;
    assert_true(n > 255 && n < SAMDA_PN_SIZE);
    snprintf(m.patient_name, sizeof m.patient_name, "%s", name);
    CHECK_OK(fx_ingest(f->s, &m, "x", 1, SAMDA_DUP_REJECT, NULL, &e));
    samda_study_info st;
    CHECK_OK(samda_store_study_get(f->s, "1.2.9", &st, &e));
    assert_string_equal(st.patient_name, name);
    fx_close(f);
}

/* Text that is not UTF-8 (a Latin-1 name whose SpecificCharacterSet was missing or not convertible;
 * a value cut inside a character) is indexed, not refused: SQLite keeps its bytes, PostgreSQL (whose
 * text must be valid in the database's encoding) keeps U+FFFD in place of each byte that is not. */
static void test_text_not_utf8(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    samda_instance_meta m;
    fx_meta(&m, "1.2.8", "1.2.8.1", "1.2.8.1.1");
    snprintf(m.patient_name, sizeof m.patient_name, "M\xfcller^Hans");
    snprintf(m.study_description, sizeof m.study_description, "CT Th\xf6rax \xc3");
    CHECK_OK(fx_ingest(f->s, &m, "x", 1, SAMDA_DUP_REJECT, NULL, &e));
    samda_study_info st;
    CHECK_OK(samda_store_study_get(f->s, "1.2.8", &st, &e));
    assert_string_equal(st.patient_name, fx_pg() ? "M\xef\xbf\xbdller^Hans" : "M\xfcller^Hans");
    assert_string_equal(st.study_description, fx_pg() ? "CT Th\xef\xbf\xbdrax \xef\xbf\xbd" : "CT Th\xf6rax \xc3");
    /* the same bytes again find the same patient and study */
    fx_meta(&m, "1.2.8", "1.2.8.1", "1.2.8.1.2");
    snprintf(m.patient_name, sizeof m.patient_name, "M\xfcller^Hans");
    CHECK_OK(fx_ingest(f->s, &m, "y", 1, SAMDA_DUP_REJECT, NULL, &e));
    CHECK_OK(samda_store_study_get(f->s, "1.2.8", &st, &e));
    assert_int_equal(st.n_instances, 2);
    fx_close(f);
}

static void test_duplicate_policies(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    samda_instance_meta m;
    fx_meta(&m, "1.2", "1.2.1", "1.2.1.1");
    samda_ingest_result r;
    CHECK_OK(fx_ingest(f->s, &m, "AAAA", 4, SAMDA_DUP_IGNORE_IDENTICAL, &r, &e));
    int64_t id = r.instance_id;

    samda_object_info o;
    int64_t found_id;
    CHECK_OK(samda_store_instance_lookup(f->s, "1.2.1.1", &o, &found_id, &e));
    assert_int_equal(found_id, id);
    assert_string_equal(o.sha256, r.object.sha256);
    CHECK_ST(SAMDA_ENOENT, samda_store_instance_lookup(f->s, "1.2.1.2", &o, NULL, &e));

    CHECK_OK(fx_ingest(f->s, &m, "AAAA", 4, SAMDA_DUP_IGNORE_IDENTICAL, &r, &e));
    assert_int_equal(r.outcome, SAMDA_INGEST_IDENTICAL);
    assert_int_equal(r.instance_id, id);
    assert_true(r.study_id > 0);
    CHECK_ST(SAMDA_EEXIST, fx_ingest(f->s, &m, "BBBB", 4, SAMDA_DUP_IGNORE_IDENTICAL, &r, &e));
    assert_non_null(strstr(e.message, "different content"));
    CHECK_ST(SAMDA_EEXIST, fx_ingest(f->s, &m, "AAAA", 4, SAMDA_DUP_REJECT, &r, &e));
    CHECK_OK(fx_ingest(f->s, &m, "AAAA", 4, SAMDA_DUP_OVERWRITE, &r, &e));
    assert_int_equal(r.outcome, SAMDA_INGEST_IDENTICAL);

    CHECK_OK(fx_ingest(f->s, &m, "CCCCC", 5, SAMDA_DUP_OVERWRITE, &r, &e));
    assert_int_equal(r.outcome, SAMDA_INGEST_REPLACED);
    assert_int_equal(r.instance_id, id);
    assert_string_equal(r.object.relpath, "1.2/1.2.1/1.2.1.1.r2.dcm");
    void *buf;
    size_t len;
    CHECK_OK(samda_store_object_read(f->s, r.object.relpath, 100, &buf, &len, &e));
    assert_int_equal(len, 5);
    samda_store_free(buf);
    CHECK_ST(SAMDA_ENOENT, samda_store_object_read(f->s, "1.2/1.2.1/1.2.1.1.dcm", 100, &buf, &len, &e)); /* old gone */
    CHECK_OK(fx_ingest(f->s, &m, "DDDDDD", 6, SAMDA_DUP_OVERWRITE, &r, &e));
    assert_string_equal(r.object.relpath, "1.2/1.2.1/1.2.1.1.r3.dcm");

    samda_series_info si;
    CHECK_OK(samda_store_series_get(f->s, "1.2.1", &si, &e));
    assert_int_equal(si.n_instances, 1); /* replacements do not count twice */
    assert_int_equal(count_changes(f->s, "instance", SAMDA_CHANGE_UPDATED), 2);
    samda_store_check_report rep;
    CHECK_OK(samda_store_check(f->s, &rep, &e));
    assert_int_equal(rep.n_objects_indexed, 1);
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s/tmp", f->dir);
    assert_int_equal(fx_count_files(tmp), 0);

    /* index-only insert with an already committed object */
    samda_object_info obj;
    CHECK_OK(samda_store_object_put(f->s, SAMDA_OBJECT_INSTANCE, "1.2", "1.2.1", "1.2.1.5", "E", 1, &obj, &e));
    fx_meta(&m, "1.2", "1.2.1", "1.2.1.5");
    CHECK_OK(samda_store_instance_insert(f->s, &m, &obj, false, &r, &e));
    assert_int_equal(r.outcome, SAMDA_INGEST_NEW);
    CHECK_ST(SAMDA_EEXIST, samda_store_instance_insert(f->s, &m, &obj, false, &r, &e));
    CHECK_OK(samda_store_instance_insert(f->s, &m, &obj, true, &r, &e));
    assert_int_equal(r.outcome, SAMDA_INGEST_REPLACED);
    samda_object_info none = {0};
    CHECK_ST(SAMDA_EINVAL, samda_store_instance_insert(f->s, &m, &none, true, &r, &e));
    assert_non_null(fx_reopen(f));
    assert_int_equal(samda_store_orphans_removed(f->s), 0);
    CHECK_OK(samda_store_check(f->s, &rep, &e));
    assert_int_equal(rep.n_objects_indexed, 2);
    fx_close(f);
}

static void test_queries(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    CHECK_OK(samda_store_site_add(f->s, "siteA", NULL, NULL, NULL, &e));
    struct {
        const char *study, *series, *sop, *pid, *date, *modality, *site;
    } rows[] = {
        {"1.1", "1.1.1", "1.1.1.1", "P1", "20230101", "CT", "siteA"},
        {"1.1", "1.1.2", "1.1.2.1", "P1", "20230101", "MR", ""},
        {"1.2", "1.2.1", "1.2.1.1", "P2", "20230615", "CT", ""},
        {"1.3", "1.3.1", "1.3.1.1", "P1", "20240301", "PT", ""},
    };
    for (size_t i = 0; i < 4; i++) {
        samda_instance_meta m;
        fx_meta(&m, rows[i].study, rows[i].series, rows[i].sop);
        snprintf(m.patient_id, sizeof m.patient_id, "%s", rows[i].pid);
        snprintf(m.study_date, sizeof m.study_date, "%s", rows[i].date);
        snprintf(m.modality, sizeof m.modality, "%s", rows[i].modality);
        snprintf(m.site, sizeof m.site, "%s", rows[i].site);
        CHECK_OK(fx_ingest(f->s, &m, rows[i].sop, strlen(rows[i].sop), SAMDA_DUP_REJECT, NULL, &e));
    }
    samda_study_info *st;
    size_t n;
    CHECK_OK(samda_store_study_query(f->s, NULL, &st, &n, &e));
    assert_int_equal(n, 3);
    assert_string_equal(st[0].study_uid, "1.3"); /* newest date first */
    samda_store_free(st);

    samda_index_query q = {.patient_id = "P1"};
    CHECK_OK(samda_store_study_query(f->s, &q, &st, &n, &e));
    assert_int_equal(n, 2);
    samda_store_free(st);
    q = (samda_index_query){.modality = "MR"};
    CHECK_OK(samda_store_study_query(f->s, &q, &st, &n, &e));
    assert_int_equal(n, 1);
    assert_string_equal(st[0].study_uid, "1.1");
    assert_int_equal(st[0].n_series, 2);
    assert_int_equal(st[0].n_instances, 2);
    assert_non_null(strstr(st[0].modalities, "CT"));
    assert_non_null(strstr(st[0].modalities, "MR"));
    samda_store_free(st);
    q = (samda_index_query){.date_from = "20230201", .date_to = "20231231"};
    CHECK_OK(samda_store_study_query(f->s, &q, &st, &n, &e));
    assert_int_equal(n, 1);
    assert_string_equal(st[0].study_uid, "1.2");
    samda_store_free(st);
    q = (samda_index_query){.site = "siteA"};
    CHECK_OK(samda_store_study_query(f->s, &q, &st, &n, &e));
    assert_int_equal(n, 1);
    samda_store_free(st);
    q = (samda_index_query){.limit = 1, .offset = 1};
    CHECK_OK(samda_store_study_query(f->s, &q, &st, &n, &e));
    assert_int_equal(n, 1);
    assert_string_equal(st[0].study_uid, "1.2");
    samda_store_free(st);
    /* a value that looks like SQL is just a value */
    q = (samda_index_query){.patient_id = "P1' OR '1'='1"};
    CHECK_OK(samda_store_study_query(f->s, &q, &st, &n, &e));
    assert_int_equal(n, 0);
    assert_null(st);
    q = (samda_index_query){.study_uid = "1.1'--"};
    CHECK_ST(SAMDA_EBADUID, samda_store_study_query(f->s, &q, &st, &n, &e));

    samda_study_info one;
    CHECK_OK(samda_store_study_get(f->s, "1.2", &one, &e));
    assert_string_equal(one.patient_id, "P2");
    CHECK_ST(SAMDA_ENOENT, samda_store_study_get(f->s, "9.9", &one, &e));

    samda_series_info *se;
    CHECK_OK(samda_store_series_list(f->s, "1.1", &se, &n, &e));
    assert_int_equal(n, 2);
    samda_store_free(se);
    q = (samda_index_query){.modality = "CT"};
    CHECK_OK(samda_store_series_query(f->s, &q, &se, &n, &e));
    assert_int_equal(n, 2);
    samda_store_free(se);
    CHECK_ST(SAMDA_ENOENT, samda_store_series_get(f->s, "9.9", se, &e));
    fx_close(f);
}

static void test_series_state_idle_hash(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    CHECK_OK(fx_ingest_simple(f->s, "1.5", "1.5.1", "1.5.1.1", &e));
    f->now_ms += 60000;
    CHECK_OK(fx_ingest_simple(f->s, "1.5", "1.5.2", "1.5.2.1", &e));
    samda_series_info *rows;
    size_t n;
    CHECK_OK(samda_store_series_idle(f->s, f->now_ms - 30000, 10, &rows, &n, &e));
    assert_int_equal(n, 1);
    assert_string_equal(rows[0].series_uid, "1.5.1");
    samda_store_free(rows);

    char h1[SAMDA_SHA256_HEX_SIZE], h2[SAMDA_SHA256_HEX_SIZE];
    CHECK_OK(samda_store_series_content_hash(f->s, "1.5.1", h1, &e));
    assert_int_equal(strlen(h1), 64);
    CHECK_OK(samda_store_series_set_state(f->s, "1.5.1", SAMDA_SERIES_COMPLETE, "series idle 30s", &e));
    samda_series_info si;
    CHECK_OK(samda_store_series_get(f->s, "1.5.1", &si, &e));
    assert_int_equal(si.state, SAMDA_SERIES_COMPLETE);
    assert_string_equal(si.state_reason, "series idle 30s");
    assert_int_equal(si.state_changed_ms, f->now_ms);
    CHECK_OK(samda_store_series_idle(f->s, f->now_ms, 10, &rows, &n, &e));
    assert_int_equal(n, 1); /* only 1.5.2 is still receiving */
    samda_store_free(rows);
    CHECK_ST(SAMDA_ENOENT, samda_store_series_set_state(f->s, "9.9", SAMDA_SERIES_COMPLETE, NULL, &e));
    CHECK_ST(SAMDA_EINVAL, samda_store_series_set_state(f->s, "1.5.1", (samda_series_state)7, NULL, &e));

    /* a new instance re-opens a completed series and changes its content hash */
    CHECK_OK(fx_ingest_simple(f->s, "1.5", "1.5.1", "1.5.1.2", &e));
    CHECK_OK(samda_store_series_get(f->s, "1.5.1", &si, &e));
    assert_int_equal(si.state, SAMDA_SERIES_RECEIVING);
    CHECK_OK(samda_store_series_content_hash(f->s, "1.5.1", h2, &e));
    assert_string_not_equal(h1, h2);
    assert_int_equal(count_changes(f->s, "series", SAMDA_CHANGE_STATE), 2);
    CHECK_ST(SAMDA_ENOENT, samda_store_series_content_hash(f->s, "9.9", h2, &e));
    fx_close(f);
}

/* An upload's instances (SAMDA_INSTANCE_UPLOAD, a MONAI Label session): the series is created
 * complete and stays complete as its other instances arrive; the idle timers never list it. */
static void test_upload_series_complete(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    for (int i = 1; i <= 3; i++) {
        samda_instance_meta m;
        char sop[32];
        snprintf(sop, sizeof sop, "1.7.1.%d", i);
        fx_meta(&m, "1.7", "1.7.1", sop);
        m.flags |= SAMDA_INSTANCE_UPLOAD;
        char buf[64];
        int n = snprintf(buf, sizeof buf, "upload %s", sop);
        CHECK_OK(fx_ingest(f->s, &m, buf, (size_t)n, SAMDA_DUP_REJECT, NULL, &e));
        f->now_ms += 60000;
    }
    samda_series_info si;
    CHECK_OK(samda_store_series_get(f->s, "1.7.1", &si, &e));
    assert_int_equal(si.state, SAMDA_SERIES_COMPLETE);
    assert_int_equal(si.n_instances, 3);
    assert_non_null(strstr(si.state_reason, "MONAI Label session"));
    samda_series_info *rows;
    size_t n;
    CHECK_OK(samda_store_series_idle(f->s, f->now_ms, 10, &rows, &n, &e));
    assert_int_equal(n, 0);
    samda_store_free(rows);
    /* an ordinary instance arriving later re-opens it as for any completed series */
    CHECK_OK(fx_ingest_simple(f->s, "1.7", "1.7.1", "1.7.1.9", &e));
    CHECK_OK(samda_store_series_get(f->s, "1.7.1", &si, &e));
    assert_int_equal(si.state, SAMDA_SERIES_RECEIVING);
    fx_close(f);
}

static void test_associations(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    int64_t a1, a2;
    CHECK_OK(samda_store_assoc_begin(f->s, "MOD1", "SAMDA", "127.0.0.1:1000", NULL, &a1, &e));
    CHECK_OK(samda_store_assoc_begin(f->s, "MOD2", "SAMDA", NULL, "", &a2, &e));
    CHECK_ST(SAMDA_EINVAL, samda_store_assoc_begin(f->s, "MOD3", "SAMDA", NULL, "nosuchsite", &a2, &e));
    CHECK_ST(SAMDA_EINVAL, samda_store_assoc_begin(f->s, "A_VERY_LONG_AE_TITLE_X", "SAMDA", NULL, NULL, &a2, &e));
    for (int i = 0; i < 3; i++) {
        samda_instance_meta m;
        char sop[32];
        snprintf(sop, sizeof sop, "1.6.1.%d", i);
        fx_meta(&m, "1.6", "1.6.1", sop);
        m.association_id = i < 2 ? a1 : a2;
        CHECK_OK(fx_ingest(f->s, &m, sop, strlen(sop), SAMDA_DUP_REJECT, NULL, &e));
    }
    CHECK_OK(samda_store_assoc_end(f->s, a1, SAMDA_ASSOC_STATE_ABORTED, &e));
    CHECK_OK(samda_store_assoc_end(f->s, a2, SAMDA_ASSOC_STATE_RELEASED, &e));
    CHECK_ST(SAMDA_EINVAL, samda_store_assoc_end(f->s, a2, SAMDA_ASSOC_STATE_RELEASED, &e));
    CHECK_ST(SAMDA_EINVAL, samda_store_assoc_end(f->s, a2, SAMDA_ASSOC_STATE_OPEN, &e));
    CHECK_ST(SAMDA_ENOENT, samda_store_assoc_end(f->s, 4242, SAMDA_ASSOC_STATE_RELEASED, &e));
    samda_association a;
    CHECK_OK(samda_store_assoc_get(f->s, a1, &a, &e));
    assert_int_equal(a.state, SAMDA_ASSOC_STATE_ABORTED);
    assert_int_equal(a.n_instances, 2);
    assert_int_equal(a.ended_ms, f->now_ms);
    CHECK_ST(SAMDA_ENOENT, samda_store_assoc_get(f->s, 4242, &a, &e));
    samda_instance_row row;
    CHECK_OK(samda_store_instance_get(f->s, "1.6.1.0", &row, &e));
    assert_true(row.meta.flags & SAMDA_INSTANCE_FROM_ABORTED_ASSOCIATION);
    CHECK_OK(samda_store_instance_get(f->s, "1.6.1.2", &row, &e));
    assert_false(row.meta.flags & SAMDA_INSTANCE_FROM_ABORTED_ASSOCIATION);
    fx_close(f);
}

/* Association summaries for completion, and stale 'open' associations left by a crash. */
static void test_series_assoc_summary_and_stale(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    int64_t a1, a2;
    CHECK_OK(samda_store_assoc_begin(f->s, "MOD1", "SAMDA", NULL, NULL, &a1, &e));
    CHECK_OK(samda_store_assoc_begin(f->s, "MOD2", "SAMDA", NULL, NULL, &a2, &e));
    for (int i = 0; i < 4; i++) {
        samda_instance_meta m;
        char sop[32];
        snprintf(sop, sizeof sop, "1.7.1.%d", i);
        fx_meta(&m, "1.7", "1.7.1", sop);
        m.association_id = i < 3 ? a1 : a2;
        CHECK_OK(fx_ingest(f->s, &m, sop, strlen(sop), SAMDA_DUP_REJECT, NULL, &e));
    }
    CHECK_OK(samda_store_assoc_end(f->s, a2, SAMDA_ASSOC_STATE_RELEASED, &e));
    samda_series_assoc_summary sum;
    CHECK_OK(samda_store_series_assoc_summary(f->s, "1.7.1", &sum, &e));
    assert_int_equal(sum.n_instances, 4);
    assert_int_equal(sum.n_from_open, 3);
    assert_int_equal(sum.n_from_aborted, 0);
    size_t n = 0;
    CHECK_OK(samda_store_assoc_abort_stale(f->s, &n, &e));
    assert_int_equal(n, 1);
    CHECK_OK(samda_store_series_assoc_summary(f->s, "1.7.1", &sum, &e));
    assert_int_equal(sum.n_from_open, 0);
    assert_int_equal(sum.n_from_aborted, 3);
    samda_association a;
    CHECK_OK(samda_store_assoc_get(f->s, a1, &a, &e));
    assert_int_equal(a.state, SAMDA_ASSOC_STATE_ABORTED);
    CHECK_OK(samda_store_assoc_abort_stale(f->s, &n, &e));
    assert_int_equal(n, 0);
    CHECK_OK(samda_store_series_assoc_summary(f->s, "9.9.9", &sum, &e));
    assert_int_equal(sum.n_instances, 0);
    CHECK_ST(SAMDA_EBADUID, samda_store_series_assoc_summary(f->s, "x/..", &sum, &e));
    fx_close(f);
}

/* A series whose every instance came over an aborted association (set aside as incomplete) is
 * re-sent whole, byte for byte, over a new association: its instances now belong to that
 * association, lose the aborted flag, and the series is receiving again (a change-feed row says so);
 * a re-send over no association (STOW) or of an instance not flagged changes nothing. */
static void test_resend_after_abort_adopts(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    int64_t a1, a2;
    CHECK_OK(samda_store_assoc_begin(f->s, "MOD1", "SAMDA", NULL, NULL, &a1, &e));
    samda_instance_meta m[2];
    for (int i = 0; i < 2; i++) {
        char sop[32];
        snprintf(sop, sizeof sop, "1.8.1.%d", i);
        fx_meta(&m[i], "1.8", "1.8.1", sop);
        m[i].association_id = a1;
        CHECK_OK(fx_ingest(f->s, &m[i], sop, strlen(sop), SAMDA_DUP_IGNORE_IDENTICAL, NULL, &e));
    }
    CHECK_OK(samda_store_assoc_end(f->s, a1, SAMDA_ASSOC_STATE_ABORTED, &e));
    CHECK_OK(samda_store_series_set_state(f->s, "1.8.1", SAMDA_SERIES_INCOMPLETE, "only aborted", &e));
    int before = count_changes(f->s, "series", SAMDA_CHANGE_STATE);

    /* over no association: nothing changes */
    samda_instance_meta stow = m[0];
    stow.association_id = 0;
    samda_ingest_result r;
    CHECK_OK(fx_ingest(f->s, &stow, "1.8.1.0", 7, SAMDA_DUP_IGNORE_IDENTICAL, &r, &e));
    assert_int_equal(r.outcome, SAMDA_INGEST_IDENTICAL);
    samda_series_info si;
    CHECK_OK(samda_store_series_get(f->s, "1.8.1", &si, &e));
    assert_int_equal(si.state, SAMDA_SERIES_INCOMPLETE);

    CHECK_OK(samda_store_assoc_begin(f->s, "MOD1", "SAMDA", NULL, NULL, &a2, &e));
    for (int i = 0; i < 2; i++) {
        char sop[32];
        snprintf(sop, sizeof sop, "1.8.1.%d", i);
        m[i].association_id = a2;
        CHECK_OK(fx_ingest(f->s, &m[i], sop, strlen(sop), SAMDA_DUP_IGNORE_IDENTICAL, &r, &e));
        assert_int_equal(r.outcome, SAMDA_INGEST_IDENTICAL);
    }
    CHECK_OK(samda_store_series_get(f->s, "1.8.1", &si, &e));
    assert_int_equal(si.state, SAMDA_SERIES_RECEIVING);
    assert_int_equal(count_changes(f->s, "series", SAMDA_CHANGE_STATE), before + 1);
    samda_series_assoc_summary sum;
    CHECK_OK(samda_store_series_assoc_summary(f->s, "1.8.1", &sum, &e));
    assert_int_equal(sum.n_instances, 2);
    assert_int_equal(sum.n_from_open, 2);
    assert_int_equal(sum.n_from_aborted, 0);
    CHECK_OK(samda_store_assoc_end(f->s, a2, SAMDA_ASSOC_STATE_RELEASED, &e));
    CHECK_OK(samda_store_series_assoc_summary(f->s, "1.8.1", &sum, &e));
    assert_int_equal(sum.n_from_open, 0);
    assert_int_equal(sum.n_from_aborted, 0);
    fx_close(f);
}

/* The series records its SOP class, so the check reads no other instance; the only instance of a
 * series, replaced by a copy of another class, moves the series to that class, after which the old
 * class is refused. Also after the series' class was lost (an index migrated from before it). */
#define FX_CLASS "1.2.840.10008.5.1.4.1.1.2" /* fx_meta's */
static void test_series_sop_class(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    samda_instance_meta m;
    fx_meta(&m, "1.2.20", "1.2.20.1", "1.2.20.1.1");
    CHECK_OK(fx_ingest(f->s, &m, "a", 1, SAMDA_DUP_OVERWRITE, NULL, &e));
    assert_int_equal(fx_raw_int(f, "SELECT count(*) FROM series WHERE sop_class_uid = '" FX_CLASS "'"), 1);

    samda_instance_meta other = m;
    snprintf(other.sop_class_uid, sizeof other.sop_class_uid, "%s", "1.2.840.10008.5.1.4.1.1.7");
    CHECK_OK(fx_ingest(f->s, &other, "b", 1, SAMDA_DUP_OVERWRITE, NULL, &e)); /* the same SOP, replaced */
    assert_int_equal(fx_raw_int(f, "SELECT count(*) FROM series WHERE sop_class_uid = '1.2.840.10008.5.1.4.1.1.7'"),
                     1);
    samda_instance_meta second = m;
    snprintf(second.sop_uid, sizeof second.sop_uid, "%s", "1.2.20.1.2");
    CHECK_ST(SAMDA_ECONFLICT, fx_ingest(f->s, &second, "c", 1, SAMDA_DUP_OVERWRITE, NULL, &e));
    assert_non_null(strstr(e.message, "(0008,0016) SOPClassUID " FX_CLASS " differs from the 1.2.840.10008.5.1.4.1.1.7"));

    /* no class recorded: the instances decide, and the next instance records it */
    char msg[256];
    assert_int_equal(fx_raw_exec(f, "UPDATE series SET sop_class_uid = NULL", msg, sizeof msg), 0);
    CHECK_ST(SAMDA_ECONFLICT, fx_ingest(f->s, &second, "c", 1, SAMDA_DUP_OVERWRITE, NULL, &e));
    snprintf(second.sop_class_uid, sizeof second.sop_class_uid, "%s", "1.2.840.10008.5.1.4.1.1.7");
    CHECK_OK(fx_ingest(f->s, &second, "d", 1, SAMDA_DUP_OVERWRITE, NULL, &e));
    assert_int_equal(fx_raw_int(f, "SELECT count(*) FROM series WHERE sop_class_uid = '1.2.840.10008.5.1.4.1.1.7'"),
                     1);
    samda_instance_meta third = m;
    snprintf(third.sop_uid, sizeof third.sop_uid, "%s", "1.2.20.1.3");
    CHECK_ST(SAMDA_ECONFLICT, fx_ingest(f->s, &third, "e", 1, SAMDA_DUP_OVERWRITE, NULL, &e));
    fx_close(f);
}

/* A writer's hash is taken when the file has the size it hashed; otherwise the store hashes the file. */
static void test_ingest_hashed(void **state)
{
    (void)state;
    fx *f = fx_open();
    assert_non_null(f);
    samda_error e;
    const char *content = "DICM content hashed by its writer";
    char real[SAMDA_SHA256_HEX_SIZE];
    samda_instance_meta m;
    samda_ingest_result res;
    fx_meta(&m, "1.2.30", "1.2.30.1", "1.2.30.1.9"); /* the store's own hash of the content */
    CHECK_OK(fx_ingest(f->s, &m, content, strlen(content), SAMDA_DUP_REJECT, &res, &e));
    memcpy(real, res.object.sha256, sizeof real);
    fx_meta(&m, "1.2.30", "1.2.30.1", "1.2.30.1.1");
    CHECK_OK(fx_ingest_hashed(f->s, &m, content, strlen(content), real, strlen(content), SAMDA_DUP_REJECT,
                              &res, &e));
    assert_string_equal(res.object.sha256, real);
    assert_int_equal(res.object.size, strlen(content));

    /* a size that is not the file's: the writer's hash is not used */
    const char *bogus = "0000000000000000000000000000000000000000000000000000000000000000";
    fx_meta(&m, "1.2.30", "1.2.30.1", "1.2.30.1.2");
    CHECK_OK(fx_ingest_hashed(f->s, &m, content, strlen(content), bogus, strlen(content) + 1, SAMDA_DUP_REJECT,
                              &res, &e));
    assert_string_equal(res.object.sha256, real);
    /* nor a malformed one */
    fx_meta(&m, "1.2.30", "1.2.30.1", "1.2.30.1.3");
    CHECK_OK(fx_ingest_hashed(f->s, &m, content, strlen(content), "XYZ", strlen(content), SAMDA_DUP_REJECT,
                              &res, &e));
    assert_string_equal(res.object.sha256, real);
    samda_store_check_report rep;
    CHECK_OK(samda_store_check(f->s, &rep, &e)); /* every object's hash verified against its file */
    assert_int_equal(rep.n_objects_indexed, 4);
    fx_close(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ingest_and_read_back),
        cmocka_unit_test(test_duplicate_policies),
        cmocka_unit_test(test_long_person_name),
        cmocka_unit_test(test_text_not_utf8),
        cmocka_unit_test(test_queries),
        cmocka_unit_test(test_series_state_idle_hash),
        cmocka_unit_test(test_upload_series_complete),
        cmocka_unit_test(test_associations),
        cmocka_unit_test(test_series_assoc_summary_and_stale),
        cmocka_unit_test(test_resend_after_abort_adopts),
        cmocka_unit_test(test_series_sop_class),
        cmocka_unit_test(test_ingest_hashed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
