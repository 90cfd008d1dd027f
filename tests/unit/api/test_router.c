/* api/router.c: matching, parameter validation, percent-decoding, query strings; the route
 * table against docs/openapi.yaml (both directions); QIDO query validation (dicomweb.c's pure
 * part, which lives beside the router's query parsing). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "internal.h"
#include "router.h"

static api_match_result match(const char *method, const char *path, api_match *m, samda_error *err)
{
    return api_route_match(api_routes, api_n_routes, api_method_bit(method), path, m, err);
}

static void matching(void **state)
{
    (void)state;
    api_match m;
    samda_error err;
    assert_int_equal(match("GET", "/health", &m, &err), API_MATCH_OK);
    assert_string_equal(m.route->pattern, "/health");
    assert_int_equal(match("HEAD", "/health", &m, &err), API_MATCH_OK);

    assert_int_equal(match("GET", "/dicomweb/studies/1.2.840.1/series/1.2.3/instances/4.5.6/frames/1,2,3", &m, &err), API_MATCH_OK);
    assert_string_equal(m.route->pattern, "/dicomweb/studies/{study}/series/{series}/instances/{instance}/frames/{frames}");
    assert_int_equal(m.n, 4);
    assert_string_equal(api_match_param(&m, "study"), "1.2.840.1");
    assert_string_equal(api_match_param(&m, "series"), "1.2.3");
    assert_string_equal(api_match_param(&m, "instance"), "4.5.6");
    assert_string_equal(api_match_param(&m, "frames"), "1,2,3");
    assert_null(api_match_param(&m, "site"));

    /* literal "series" vs {study}: /dicomweb/series is its own route */
    assert_int_equal(match("GET", "/dicomweb/series", &m, &err), API_MATCH_OK);
    assert_string_equal(m.route->pattern, "/dicomweb/series");

    /* POST and GET on the same path are different routes */
    assert_int_equal(match("POST", "/dicomweb/studies/1.2.3", &m, &err), API_MATCH_OK);
    assert_true(m.route->flags & API_F_STREAM_BODY);
    assert_int_equal(match("GET", "/dicomweb/studies/1.2.3", &m, &err), API_MATCH_OK);
    assert_ptr_equal(m.route->handler, api_h_wado);

    /* percent-encoded literal and parameter characters are decoded */
    assert_int_equal(match("GET", "/dicomweb/%73tudies/1%2E2%2e3/metadata", &m, &err), API_MATCH_OK);
    assert_string_equal(api_match_param(&m, "study"), "1.2.3");

    assert_int_equal(match("GET", "/nope", &m, &err), API_MATCH_NOT_FOUND);
    assert_int_equal(match("GET", "/dicomweb/studies/", &m, &err), API_MATCH_NOT_FOUND);
    assert_int_equal(match("GET", "/dicomweb//studies", &m, &err), API_MATCH_NOT_FOUND);
    assert_int_equal(match("GET", "/health/", &m, &err), API_MATCH_NOT_FOUND);
    assert_int_equal(match("GET", "/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s", &m, &err), API_MATCH_NOT_FOUND);

    /* 405 with the methods of the path */
    assert_int_equal(match("DELETE", "/dicomweb/studies/1.2.3", &m, &err), API_MATCH_METHOD);
    assert_true(m.allowed & API_GET);
    assert_true(m.allowed & API_POST);
    assert_true(m.allowed & API_OPTIONS);
    char allow[96];
    api_methods_str(m.allowed, allow, sizeof allow);
    assert_string_equal(allow, "GET, POST, OPTIONS, HEAD");
    assert_int_equal(match("POST", "/health", &m, &err), API_MATCH_METHOD);
    assert_int_equal(match("BREW", "/health", &m, &err), API_MATCH_METHOD);
}

static void bad_paths(void **state)
{
    (void)state;
    api_match m;
    samda_error err;
    struct { const char *path; const char *needle; } cases[] = {
        {"/dicomweb/studies/..%2F..%2Fetc/series", "'/' or '..'"},
        {"/dicomweb/studies/%2e%2e/series", "'/' or '..'"},
        {"/dicomweb/studies/../series", "'/' or '..'"},
        {"/dicomweb/studies/1.2%00.3/series", "NUL"},
        {"/dicomweb/studies/1.2%2/series", "percent-encoding"},
        {"/dicomweb/studies/1.2%zz/series", "percent-encoding"},
        {"/dicomweb/studies/1.2.3'%20OR%201=1/series", "study must be a DICOM UID"},
        {"/dicomweb/studies/1..2/series", "'/' or '..'"},
        {"/dicomweb/studies/.1.2/series", "study must be a DICOM UID"},
        {"/dicomweb/studies/1.2./series", "study must be a DICOM UID"},
        {"/dicomweb/studies/12345678901234567890123456789012345678901234567890123456789012345/series", "study must be a DICOM UID"},
        {"/dicomweb/sites/bad%20name/studies", "site must be a name"},
        {"/dicomweb/sites/a%2Fb/studies", "'/' or '..'"},
        {"/api/v1/jobs/12a", "id must be a decimal id"},
        {"/api/v1/jobs/-1", "id must be a decimal id"},
        {"/dicomweb/studies/1/series/2/instances/3/frames/1,,2", "frames must be"},
        {"/dicomweb/studies/1/series/2/instances/3/frames/,1", "frames must be"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memset(&err, 0, sizeof err);
        const char *method = strstr(cases[i].path, "/sites/") ? "POST" : "GET";
        api_match_result r = match(method, cases[i].path, &m, &err);
        if (r != API_MATCH_BAD_PATH || !strstr(err.message, cases[i].needle))
            fail_msg("%s: result %d message '%s'", cases[i].path, (int)r, err.message);
        /* the route is known all the same, so that the server authenticates before it answers */
        if (!m.route) fail_msg("%s: no route with the bad parameter", cases[i].path);
    }
    /* the parameters validated before the bad one are bound, the bad one is not */
    assert_int_equal(match("GET", "/dicomweb/studies/1.2/series/x/instances/3/frames/1", &m, &err), API_MATCH_BAD_PATH);
    assert_string_equal(m.route->pattern, "/dicomweb/studies/{study}/series/{series}/instances/{instance}/frames/{frames}");
    assert_int_equal(m.n, 1);
    assert_string_equal(api_match_param(&m, "study"), "1.2");
    /* a segment that does not decode stands only where a route has a parameter */
    memset(&err, 0, sizeof err);
    assert_int_equal(match("GET", "/dicomweb/stud%zzies", &m, &err), API_MATCH_BAD_PATH);
    assert_null(m.route);
    assert_non_null(strstr(err.message, "percent-encoding in path segment 2"));
    assert_int_equal(match("DELETE", "/api/v1/sites/liver/adapters/%2e%2e", &m, &err), API_MATCH_BAD_PATH);
    assert_string_equal(m.route->pattern, "/api/v1/sites/{site}/adapters/{version}");
    /* ...never for a literal: POST has only rollback and train there, so the method is wrong */
    assert_int_equal(match("POST", "/api/v1/sites/liver/adapters/%2e%2e", &m, &err), API_MATCH_METHOD);
    assert_true(m.allowed & API_DELETE);

    /* a 64-character UID is fine */
    assert_int_equal(match("GET", "/dicomweb/studies/1234567890123456789012345678901234567890123456789012345678901234/series", &m, &err), API_MATCH_OK);
    assert_int_equal(match("POST", "/dicomweb/sites/site-A_1.x/studies", &m, &err), API_MATCH_OK);
    assert_string_equal(api_match_param(&m, "site"), "site-A_1.x");
}

static void admin_routes(void **state)
{
    (void)state;
    api_match m;
    samda_error err;
    assert_int_equal(match("PUT", "/api/v1/sites/liver", &m, &err), API_MATCH_OK);
    assert_ptr_equal(m.route->handler, api_h_site_put);
    assert_int_equal(match("GET", "/api/v1/sites/liver", &m, &err), API_MATCH_OK);
    assert_ptr_equal(m.route->handler, api_h_site_get);
    assert_int_equal(match("DELETE", "/api/v1/sites/liver", &m, &err), API_MATCH_METHOD);
    assert_true(m.allowed & API_PUT);
    char allow[96];
    api_methods_str(m.allowed, allow, sizeof allow);
    assert_string_equal(allow, "GET, PUT, OPTIONS, HEAD");
    /* literal segments beat {version}: rollback and train are routes of their own */
    assert_int_equal(match("POST", "/api/v1/sites/liver/adapters/rollback", &m, &err), API_MATCH_OK);
    assert_ptr_equal(m.route->handler, api_h_adapter_rollback);
    assert_int_equal(match("POST", "/api/v1/sites/liver/adapters/train", &m, &err), API_MATCH_OK);
    assert_non_null(m.route->unavailable);
    assert_int_equal(match("DELETE", "/api/v1/sites/liver/adapters/12", &m, &err), API_MATCH_OK);
    assert_string_equal(api_match_param(&m, "version"), "12");
    assert_int_equal(match("POST", "/api/v1/sites/liver/adapters/12/activate", &m, &err), API_MATCH_OK);
    assert_int_equal(match("POST", "/api/v1/destinations/pacs-1/echo", &m, &err), API_MATCH_OK);
    assert_string_equal(api_match_param(&m, "name"), "pacs-1");
    struct { const char *method, *path, *needle; } bad[] = {
        {"DELETE", "/api/v1/sites/liver/adapters/rollback", "version must be a version number"},
        {"DELETE", "/api/v1/sites/liver/adapters/0", "version must be a version number"},
        {"DELETE", "/api/v1/sites/liver/adapters/007", "version must be a version number"},
        {"DELETE", "/api/v1/sites/liver/adapters/1234567890", "version must be a version number"},
        {"GET", "/api/v1/destinations/..", "'/' or '..'"},
        {"GET", "/api/v1/destinations/a%2F..%2Fb", "'/' or '..'"},
        {"PUT", "/api/v1/sites/a%20b", "site must be a name"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&err, 0, sizeof err);
        api_match_result r = match(bad[i].method, bad[i].path, &m, &err);
        if (r != API_MATCH_BAD_PATH || !strstr(err.message, bad[i].needle))
            fail_msg("%s %s: result %d message '%s'", bad[i].method, bad[i].path, (int)r, err.message);
    }
    assert_true(api_valid_version("1"));
    assert_true(api_valid_version("999999999"));
    assert_false(api_valid_version(""));
    assert_false(api_valid_version("-1"));
}

static void kinds(void **state)
{
    (void)state;
    assert_true(api_valid_uid("1.2.840.10008.5.1.4.1.1.2"));
    assert_true(api_valid_uid("0"));
    assert_false(api_valid_uid(""));
    assert_false(api_valid_uid("."));
    assert_false(api_valid_uid("1.2a"));
    assert_true(api_valid_id("0"));
    assert_true(api_valid_id("123456789012345678"));
    assert_false(api_valid_id("1234567890123456789"));
    assert_true(api_valid_name("ct-liver_v2.1"));
    assert_false(api_valid_name(".."));
    assert_false(api_valid_name(""));
    assert_false(api_valid_name("a/b"));
    char big[80];
    memset(big, 'a', 64);
    big[64] = '\0';
    assert_false(api_valid_name(big));
    big[63] = '\0';
    assert_true(api_valid_name(big));
}

static void pct(void **state)
{
    (void)state;
    char out[16];
    assert_int_equal(api_pct_decode("a%20b+c", 7, out, sizeof out, false), 5);
    assert_string_equal(out, "a b+c");
    assert_int_equal(api_pct_decode("a%20b+c", 7, out, sizeof out, true), 5);
    assert_string_equal(out, "a b c");
    assert_int_equal(api_pct_decode("%", 1, out, sizeof out, false), -1);
    assert_int_equal(api_pct_decode("%4", 2, out, sizeof out, false), -1);
    assert_int_equal(api_pct_decode("%41", 3, out, sizeof out, false), 1);
    assert_string_equal(out, "A");
    assert_int_equal(api_pct_decode("%00", 3, out, sizeof out, false), -2);
    assert_int_equal(api_pct_decode("0123456789abcdefg", 17, out, sizeof out, false), -3);
}

static void query_strings(void **state)
{
    (void)state;
    api_query_args q;
    samda_error err;
    assert_int_equal(api_query_args_parse("PatientID=x%27+OR+1%3D1%3B--&limit=5&flag&&includefield=a&includefield=b", &q, &err), SAMDA_OK);
    assert_int_equal(q.n, 5);
    assert_string_equal(api_query_get(&q, "PatientID"), "x' OR 1=1;--");
    assert_string_equal(api_query_get(&q, "limit"), "5");
    assert_string_equal(api_query_get(&q, "flag"), "");
    assert_string_equal(q.kv[3].value, "a");
    assert_string_equal(q.kv[4].value, "b");
    assert_null(api_query_get(&q, "nope"));
    api_query_args_free(&q);

    assert_int_equal(api_query_args_parse(NULL, &q, &err), SAMDA_OK);
    assert_int_equal(q.n, 0);
    api_query_args_free(&q);

    assert_int_equal(api_query_args_parse("a=%00", &q, &err), SAMDA_EINVAL);
    assert_non_null(strstr(err.message, "query parameter a"));
    assert_int_equal(api_query_args_parse("a=%G0", &q, &err), SAMDA_EINVAL);
    assert_int_equal(api_query_args_parse("=x", &q, &err), SAMDA_EINVAL);

    char buf[9000];
    size_t n = 0;
    for (int i = 0; i < 65; i++) n += (size_t)sprintf(buf + n, "k%d=v&", i);
    assert_int_equal(api_query_args_parse(buf, &q, &err), SAMDA_EINVAL);
    assert_non_null(strstr(err.message, "more than 64"));
    memset(buf, 'v', sizeof buf);
    memcpy(buf, "k=", 2);
    buf[1030] = '\0';
    assert_int_equal(api_query_args_parse(buf, &q, &err), SAMDA_EINVAL);
    assert_non_null(strstr(err.message, "longer than 1024"));
    buf[8500] = '\0';
    memset(buf + 1030, 'v', 8500 - 1030);
    assert_int_equal(api_query_args_parse(buf, &q, &err), SAMDA_EINVAL);
    assert_non_null(strstr(err.message, "longer than 8192"));
}

static samda_status qido(samda_api_level level, const char *qs, samda_api_query *q, bool *clamped, samda_error *err)
{
    api_query_args a;
    memset(q, 0, sizeof *q);
    assert_int_equal(api_query_args_parse(qs, &a, err), SAMDA_OK);
    samda_status st = api_qido_parse(level, &a, q, clamped, err);
    api_query_args_free(&a);
    return st;
}

static void qido_queries(void **state)
{
    (void)state;
    samda_api_query q;
    bool cl;
    samda_error err;
    assert_int_equal(qido(SAMDA_API_LEVEL_STUDY, "", &q, &cl, &err), SAMDA_OK);
    assert_int_equal(q.limit, 100);
    assert_int_equal(q.offset, 0);
    assert_false(cl);

    assert_int_equal(qido(SAMDA_API_LEVEL_STUDY,
                          "PatientID=PAT*1&StudyDate=20240101-20240131&ModalitiesInStudy=ct,MR&includefield=00081030,PatientName"
                          "&includefield=all&includefield=StudyDescription&limit=5000&offset=10&fuzzymatching=false&0020000D=1.2.3"
                          "&AccessionNumber=A%3F1",
                          &q, &cl, &err), SAMDA_OK);
    assert_string_equal(q.patient_id, "PAT*1");
    assert_true(q.has_date);
    assert_string_equal(q.date_from, "20240101");
    assert_string_equal(q.date_to, "20240131");
    assert_int_equal(q.n_modalities, 2);
    assert_string_equal(q.modalities[0], "CT");
    assert_string_equal(q.modalities[1], "MR");
    assert_int_equal(q.n_includefields, 2); /* 00081030 == StudyDescription, deduplicated */
    assert_int_equal(q.includefields[0], 0x00081030);
    assert_int_equal(q.includefields[1], 0x00100010);
    assert_true(q.include_all);
    assert_int_equal(q.limit, 1000);
    assert_true(cl);
    assert_int_equal(q.offset, 10);
    assert_string_equal(q.study_uid, "1.2.3");
    assert_string_equal(q.accession_number, "A?1");

    assert_int_equal(qido(SAMDA_API_LEVEL_STUDY, "StudyDate=-20240131", &q, &cl, &err), SAMDA_OK);
    assert_string_equal(q.date_from, "");
    assert_string_equal(q.date_to, "20240131");
    assert_int_equal(qido(SAMDA_API_LEVEL_STUDY, "StudyDate=20240229", &q, &cl, &err), SAMDA_OK);
    assert_string_equal(q.date_from, "20240229");
    assert_string_equal(q.date_to, "20240229");
    assert_int_equal(qido(SAMDA_API_LEVEL_INSTANCE, "SOPInstanceUID=1.2&Modality=SEG", &q, &cl, &err), SAMDA_OK);
    /* what OHIF sends: PatientName with wildcards, StudyDescription, fuzzymatching=true */
    assert_int_equal(qido(SAMDA_API_LEVEL_STUDY, "PatientName=*doe%5Ejo*&StudyDescription=*BRAIN*&fuzzymatching=true&limit=101&offset=0"
                          "&includefield=00081030%2C00080060", &q, &cl, &err), SAMDA_OK);
    assert_string_equal(q.patient_name, "*doe^jo*");
    assert_string_equal(q.study_description, "*BRAIN*");
    assert_true(q.fuzzy);
    assert_int_equal(q.n_includefields, 2);
    assert_int_equal(qido(SAMDA_API_LEVEL_SERIES, "00100010=DOE", &q, &cl, &err), SAMDA_OK);
    assert_string_equal(q.patient_name, "DOE");
    assert_false(q.fuzzy);

    /* SQL metacharacters in a text value reach the core intact (it binds them) */
    assert_int_equal(qido(SAMDA_API_LEVEL_STUDY, "PatientID=x%27%3B%20DROP%20TABLE%20studies%3B--", &q, &cl, &err), SAMDA_OK);
    assert_string_equal(q.patient_id, "x'; DROP TABLE studies;--");

    struct { samda_api_level level; const char *qs; const char *needle; } bad[] = {
        {SAMDA_API_LEVEL_STUDY, "StudyInstanceUID=1.2.3%27%20OR%201=1", "StudyInstanceUID must be a DICOM UID"},
        {SAMDA_API_LEVEL_STUDY, "StudyDate=20230229", "StudyDate"},
        {SAMDA_API_LEVEL_STUDY, "StudyDate=2024-01-01", "StudyDate"},
        {SAMDA_API_LEVEL_STUDY, "StudyDate=20240201-20240101", "range starts after"},
        {SAMDA_API_LEVEL_STUDY, "StudyDate=-", "StudyDate"},
        {SAMDA_API_LEVEL_STUDY, "limit=0", "limit"},
        {SAMDA_API_LEVEL_STUDY, "limit=abc", "limit"},
        {SAMDA_API_LEVEL_STUDY, "offset=-1", "offset"},
        {SAMDA_API_LEVEL_STUDY, "limit=1&limit=2", "given twice"},
        {SAMDA_API_LEVEL_STUDY, "fuzzymatching=maybe", "fuzzymatching must be true or false"},
        {SAMDA_API_LEVEL_STUDY, "PatientSex=F", "PatientSex is not supported"},
        {SAMDA_API_LEVEL_STUDY, "00100040=F", "00100040 is not supported"},
        {SAMDA_API_LEVEL_STUDY, "PatientName=A%5CB", "PatientName must be"},
        {SAMDA_API_LEVEL_STUDY, "PatientName=x&00100010=y", "given twice"},
        {SAMDA_API_LEVEL_STUDY, "includefield=NoSuchKeyword", "unknown attribute NoSuchKeyword"},
        {SAMDA_API_LEVEL_STUDY, "SOPInstanceUID=1.2", "cannot be used in a study-level"},
        {SAMDA_API_LEVEL_SERIES, "ModalitiesInStudy=CT", "cannot be used in a series-level"},
        {SAMDA_API_LEVEL_STUDY, "PatientID=a%5Cb", "PatientID"},
        {SAMDA_API_LEVEL_STUDY, "PatientID=a%0Ab", "PatientID"},
        {SAMDA_API_LEVEL_STUDY, "PatientID=12345678901234567890123456789012345678901234567890123456789012345", "PatientID"},
        {SAMDA_API_LEVEL_STUDY, "AccessionNumber=12345678901234567", "AccessionNumber"},
        {SAMDA_API_LEVEL_STUDY, "ModalitiesInStudy=C%3BT", "modality codes"},
        {SAMDA_API_LEVEL_STUDY, "PatientID=1&00100020=2", "given twice"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&err, 0, sizeof err);
        samda_status st = qido(bad[i].level, bad[i].qs, &q, &cl, &err);
        if (st != SAMDA_EINVAL || !strstr(err.message, bad[i].needle))
            fail_msg("%s: %s '%s'", bad[i].qs, samda_status_name(st), err.message);
    }
    /* a path UID and a contradicting query UID */
    api_query_args a;
    memset(&q, 0, sizeof q);
    strcpy(q.study_uid, "1.2.3");
    assert_int_equal(api_query_args_parse("StudyInstanceUID=1.2.4", &a, &err), SAMDA_OK);
    assert_int_equal(api_qido_parse(SAMDA_API_LEVEL_SERIES, &a, &q, &cl, &err), SAMDA_EINVAL);
    assert_non_null(strstr(err.message, "contradicts"));
    api_query_args_free(&a);
}

/* ---- the route table against docs/openapi.yaml ----------------------------------------------
 * A reader for the YAML subset the spec uses under `paths:`: path keys at indent 2, method keys
 * at indent 4; everything else is skipped. The spec stays the source of truth. */

typedef struct spec_op {
    char method[8];
    char path[160];
    bool seen;
} spec_op;

static size_t read_spec_ops(const char *file, spec_op *ops, size_t max)
{
    FILE *f = fopen(file, "r");
    if (!f) fail_msg("cannot open %s", file);
    char line[512], cur[160] = "";
    bool in_paths = false;
    size_t n = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        size_t ind = strspn(line, " ");
        const char *s = line + ind;
        if (!*s || *s == '#') continue;
        assert_int_equal(strchr(line, '\t'), NULL); /* YAML forbids tabs for indentation */
        if (ind == 0) {
            in_paths = strcmp(s, "paths:") == 0;
            continue;
        }
        if (!in_paths) continue;
        if (ind == 2) {
            const char *k = s;
            size_t len = strlen(k);
            assert_true(len >= 2 && k[len - 1] == ':');
            len--;
            if ((k[0] == '"' || k[0] == '\'') && len >= 2 && k[len - 1] == k[0]) {
                k++;
                len -= 2;
            }
            assert_true(len < sizeof cur);
            memcpy(cur, k, len);
            cur[len] = '\0';
            assert_true(cur[0] == '/');
        } else if (ind == 4) {
            static const char *methods[] = {"get", "post", "put", "delete", "patch", "head", "options"};
            for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
                size_t ml = strlen(methods[i]);
                if (strncmp(s, methods[i], ml) == 0 && s[ml] == ':' && s[ml + 1] == '\0') {
                    assert_true(n < max);
                    for (size_t c = 0; c <= ml; c++) ops[n].method[c] = (char)(methods[i][c] >= 'a' ? methods[i][c] - 32 : methods[i][c]);
                    snprintf(ops[n].path, sizeof ops[n].path, "%s", cur);
                    ops[n].seen = false;
                    n++;
                }
            }
        }
    }
    fclose(f);
    return n;
}

static void table_matches_openapi(void **state)
{
    (void)state;
    const char *src = getenv("SAMDA_SOURCE_DIR");
    char file[1024];
    snprintf(file, sizeof file, "%s/docs/openapi.yaml", src ? src : "..");
    spec_op ops[128];
    size_t n = read_spec_ops(file, ops, 128);
    assert_true(n >= api_n_routes);
    int problems = 0;
    for (size_t i = 0; i < api_n_routes; i++) {
        const api_route *r = &api_routes[i];
        const char *m = r->method == API_GET      ? "GET"
                      : r->method == API_POST   ? "POST"
                      : r->method == API_PUT    ? "PUT"
                      : r->method == API_DELETE ? "DELETE"
                                                : "?";
        bool found = false;
        for (size_t j = 0; j < n; j++)
            if (strcmp(ops[j].path, r->pattern) == 0 && strcmp(ops[j].method, m) == 0) {
                if (ops[j].seen) { print_error("spec lists %s %s twice\n", m, r->pattern); problems++; }
                ops[j].seen = found = true;
            }
        if (!found) {
            print_error("route %s %s is not in docs/openapi.yaml\n", m, r->pattern);
            problems++;
        }
    }
    for (size_t j = 0; j < n; j++)
        if (!ops[j].seen) {
            print_error("docs/openapi.yaml has %s %s, which the route table lacks\n", ops[j].method, ops[j].path);
            problems++;
        }
    assert_int_equal(problems, 0);
}

/* Every route's pattern is well formed, unique, and its parameters have known kinds. */
static void table_is_sane(void **state)
{
    (void)state;
    for (size_t i = 0; i < api_n_routes; i++) {
        const api_route *r = &api_routes[i];
        assert_non_null(r->handler);
        assert_true(r->pattern[0] == '/');
        for (size_t j = 0; j < i; j++)
            assert_false(api_routes[j].method == r->method && strcmp(api_routes[j].pattern, r->pattern) == 0);
        /* public routes are exactly /health, /metrics and MONAI Label's login pair (the token
         * route only checks a samda token sent as the password) */
        if (!r->roles)
            assert_true(strcmp(r->pattern, "/health") == 0 || strcmp(r->pattern, "/metrics") == 0 ||
                        strcmp(r->pattern, "/monailabel/auth/") == 0 || strcmp(r->pattern, "/monailabel/auth/token") == 0);
        /* MONAI Label routes that move images or masks are audited */
        if (strncmp(r->pattern, "/monailabel/infer/", 18) == 0 || strncmp(r->pattern, "/monailabel/datastore/", 22) == 0)
            assert_true(r->flags & API_F_AUDIT);
        /* STOW is for ingest; nothing else is */
        if (r->flags & API_F_STREAM_BODY) assert_int_equal(r->roles, API_ROLES_INGEST);
        else assert_true(r->roles != API_ROLES_INGEST);
        /* DICOMweb reads and writes are audited */
        if (strncmp(r->pattern, "/dicomweb/", 10) == 0) assert_true(r->flags & API_F_AUDIT);
        /* administration is admin only and audited */
        if (strncmp(r->pattern, "/api/v1/sites", 13) == 0 || strncmp(r->pattern, "/api/v1/destinations", 20) == 0 ||
            strcmp(r->pattern, "/api/v1/audit") == 0) {
            assert_int_equal(r->roles, API_ROLES_ADMIN);
            assert_true(r->flags & API_F_AUDIT);
        }
        /* raw file bodies only for adapter uploads */
        if (r->flags & API_F_FILE_BODY) assert_string_equal(r->pattern, "/api/v1/sites/{site}/adapters");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(matching), cmocka_unit_test(bad_paths), cmocka_unit_test(admin_routes), cmocka_unit_test(kinds),
        cmocka_unit_test(pct), cmocka_unit_test(query_strings), cmocka_unit_test(qido_queries),
        cmocka_unit_test(table_matches_openapi), cmocka_unit_test(table_is_sane),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
