/* api/dicomweb.c over HTTP: STOW-RS (several parts, mixed outcomes, wrong study, site route,
 * malformed bodies, a large streamed body), QIDO-RS values reaching the core intact, WADO-RS
 * streaming, metadata and frames. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "api_test_util.h"
#include "multipart.h"

typedef struct env {
    fake_core fc;
    samda_api_services svc;
    samda_api *api;
    unsigned port;
    char *tmp;
} env;

static int setup(void **state)
{
    env *e = calloc(1, sizeof *e);
    fake_core_init(&e->fc, &e->svc);
    e->tmp = make_temp_dir();
    samda_api_params p;
    samda_api_params_init(&p);
    p.tmp_dir = e->tmp;
    p.max_body_bytes = 256ull << 20;
    e->api = test_server_start(&p, &e->svc);
    e->port = samda_api_port(e->api);
    *state = e;
    return 0;
}

static int count_files(const char *dir)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "ls -A %s | wc -l", dir);
    FILE *f = popen(cmd, "r");
    char n[16] = "";
    if (!fgets(n, sizeof n, f)) n[0] = '\0';
    pclose(f);
    return atoi(n);
}

static int teardown(void **state)
{
    env *e = *state;
    samda_api_stop(e->api);
    assert_int_equal(count_files(e->tmp), 0); /* every STOW temp file was removed */
    rmdir(e->tmp);
    free(e->tmp);
    fake_core_destroy(&e->fc);
    free(e);
    return 0;
}

/* Write a multipart body with the given parts (content type, data) to a file; returns path. */
static char *stow_body(const char *dir, const char *boundary, const char *const *ctypes, const char *const *parts, size_t n)
{
    char *path = malloc(strlen(dir) + 32);
    sprintf(path, "%s/../samda-stow-body-XXXXXX", dir);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "wb");
    fputs("preamble\r\n", f);
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "--%s\r\n", boundary);
        if (ctypes[i]) fprintf(f, "Content-Type: %s\r\n", ctypes[i]);
        fprintf(f, "\r\n%s\r\n", parts[i]);
    }
    fprintf(f, "--%s--\r\n", boundary);
    fclose(f);
    return path;
}

static http_result stow(env *e, const char *path, const char *body_file, const char *boundary)
{
    char extra[1024];
    snprintf(extra, sizeof extra,
             "-H 'Authorization: Bearer ingest-token' -H 'Content-Type: multipart/related; type=\"application/dicom\"; boundary=\"%s\"' "
             "--data-binary @%s",
             boundary, body_file);
    return http_curl(e->port, "POST", path, extra);
}

static json_t *seq(json_t *resp, const char *tag)
{
    return json_object_get(json_object_get(resp, tag), "Value");
}

static const char *str_value(json_t *item, const char *tag)
{
    return json_string_value(json_array_get(json_object_get(json_object_get(item, tag), "Value"), 0));
}

static void stow_mixed(void **state)
{
    env *e = *state;
    const char *ct[] = {"application/dicom", NULL, "application/dicom", "text/plain"};
    const char *parts[] = {"1.2.840.10008.5.1.4.1.1.2|1.2.3.4.1|1.2.3|1.2.3.4", "1.2.840.10008.5.1.4.1.1.2|1.2.3.4.2|1.2.3|1.2.3.4",
                           "BAD", "1.2|1.3|1.4|1.5"};
    char *body = stow_body(e->tmp, "a b(c)", ct, parts, 4);
    http_result r = stow(e, "/dicomweb/studies", body, "a b(c)");
    unlink(body);
    free(body);
    assert_int_equal(r.status, 202);
    char h[256];
    assert_true(http_header(&r, "Content-Type", h, sizeof h));
    assert_string_equal(h, "application/dicom+json");
    json_error_t je;
    json_t *j = json_loads(r.body, 0, &je);
    assert_non_null(j);
    json_t *ok = seq(j, "00081199"), *bad = seq(j, "00081198");
    assert_int_equal(json_array_size(ok), 2);
    assert_int_equal(json_array_size(bad), 2);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "00081199"), "vr")), "SQ");
    assert_string_equal(str_value(json_array_get(ok, 0), "00081150"), "1.2.840.10008.5.1.4.1.1.2");
    assert_string_equal(str_value(json_array_get(ok, 1), "00081155"), "1.2.3.4.2");
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/dicomweb/studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.1", e->port);
    assert_string_equal(str_value(json_array_get(ok, 0), "00081190"), url);
    snprintf(url, sizeof url, "http://127.0.0.1:%u/dicomweb/studies/1.2.3", e->port);
    assert_string_equal(str_value(j, "00081190"), url);
    /* BAD: the core could not parse it -> 0xC000; text/plain never reached the core -> 0xC000 */
    json_t *reason = json_object_get(json_array_get(bad, 0), "00081197");
    assert_string_equal(json_string_value(json_object_get(reason, "vr")), "US");
    assert_int_equal(json_integer_value(json_array_get(json_object_get(reason, "Value"), 0)), 0xC000);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(json_object_get(json_array_get(bad, 1), "00081197"), "Value"), 0)), 0xC000);
    json_decref(j);
    http_result_free(&r);
    /* the core saw exactly the bytes of the three dicom parts */
    assert_int_equal(e->fc.stow_parts, 3);
    assert_string_equal(e->fc.stow_data[0], parts[0]);
    assert_string_equal(e->fc.stow_data[1], parts[1]);
    assert_string_equal(e->fc.stow_data[2], "BAD");
    assert_string_equal(e->fc.stow_site, "");
    assert_int_equal(e->fc.stow_completes, 1);
    assert_int_equal(e->fc.last_summary.parts, 4);
    assert_int_equal(e->fc.last_summary.stored, 2);
    assert_int_equal(e->fc.last_summary.failed, 2);
    assert_int_equal(e->fc.last_summary.http_status, 202);
    assert_int_equal(e->fc.last_summary.token_id, 3);
}

static void stow_all_ok_all_failed_and_site(void **state)
{
    env *e = *state;
    const char *ct[] = {"application/dicom", "application/dicom"};
    const char *good[] = {"1.2.1|1.2.3.9.1|1.2.3|1.2.3.9", "1.2.1|1.2.3.9.2|1.2.3|1.2.3.9"};
    char *body = stow_body(e->tmp, "B0", ct, good, 2);
    http_result r = stow(e, "/dicomweb/sites/site-A/studies", body, "B0");
    assert_int_equal(r.status, 200);
    assert_null(strstr(r.body, "00081198"));
    http_result_free(&r);
    assert_string_equal(e->fc.stow_site, "site-A");
    unlink(body);
    free(body);

    /* into a named study: instances of another study fail with 0xA900 */
    r = (http_result){0};
    const char *other[] = {"1.2.1|1.2.9.9.1|1.2.9|1.2.9.9", "1.2.1|1.2.9.9.2|1.2.9|1.2.9.9"};
    body = stow_body(e->tmp, "B1", ct, other, 2);
    r = stow(e, "/dicomweb/studies/1.2.3", body, "B1");
    assert_int_equal(r.status, 409);
    json_t *j = json_loads(r.body, 0, NULL);
    json_t *bad = seq(j, "00081198");
    assert_int_equal(json_array_size(bad), 2);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(json_object_get(json_array_get(bad, 0), "00081197"), "Value"), 0)), 0xA900);
    assert_string_equal(str_value(json_array_get(bad, 0), "00081155"), "1.2.9.9.1");
    assert_string_equal(e->fc.stow_study, "1.2.3");
    json_decref(j);
    http_result_free(&r);
    unlink(body);
    free(body);
}

static void stow_malformed(void **state)
{
    env *e = *state;
    int before = e->fc.stow_parts;
    char extra[512];
    struct { const char *data; const char *needle; } cases[] = {
        {"--b\r\n\r\nno close delimiter", "without the close delimiter --b--"},
        {"nothing at all", "no delimiter --b"},
        {"--b--\r\n", "has no parts"},
        {"--b\r\nContent-Length: 99\r\n\r\nshort\r\n--b--", "Content-Length 99"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *f = write_temp(e->tmp, cases[i].data, strlen(cases[i].data));
        snprintf(extra, sizeof extra, "-H 'Authorization: Bearer admin-token' -H 'Content-Type: multipart/related; type=application/dicom; boundary=b' --data-binary @%s", f);
        http_result r = http_curl(e->port, "POST", "/dicomweb/studies", extra);
        unlink(f);
        free(f);
        if (r.status != 400 || !strstr(r.body, cases[i].needle)) fail_msg("case %zu: %d %s", i, r.status, r.body);
        http_result_free(&r);
    }
    /* no body at all */
    http_result r = http_curl(e->port, "POST", "/dicomweb/studies", "-H 'Authorization: Bearer admin-token' -H 'Content-Type: multipart/related; type=application/dicom; boundary=b'");
    assert_int_equal(r.status, 400);
    http_result_free(&r);
    assert_int_equal(e->fc.stow_parts, before); /* a malformed request stores nothing */
}

static void stow_large_streamed(void **state)
{
    env *e = *state;
    char path[512];
    snprintf(path, sizeof path, "%s/../samda-stow-large-XXXXXX", e->tmp);
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "wb");
    size_t part = 32u << 20;
    fputs("--big\r\nContent-Type: application/dicom\r\n\r\n1.2.1|1.2.3.7.1|1.2.3|1.2.3.7|", f);
    char block[65536];
    for (size_t i = 0; i < sizeof block; i++) block[i] = (char)(i % 251); /* binary, with CR and LF */
    for (size_t done = 0; done < part; done += sizeof block) fwrite(block, 1, sizeof block, f);
    fputs("\r\n--big\r\nContent-Type: application/dicom\r\n\r\n1.2.1|1.2.3.7.2|1.2.3|1.2.3.7|", f);
    for (size_t done = 0; done < part; done += sizeof block) fwrite(block, 1, sizeof block, f);
    fputs("\r\n--big--\r\n", f);
    fclose(f);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    http_result r = stow(e, "/dicomweb/studies", path, "big");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    unlink(path);
    assert_int_equal(r.status, 200);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    print_message("STOW-RS 2 x 32 MiB over loopback: %.2f s, %.0f MiB/s (curl included)\n", s, 64.0 / s);
    assert_non_null(strstr(r.body, "1.2.3.7.2"));
    http_result_free(&r);
}

/* Issue 14: a part whose header block is larger than the parser allows (8 KiB) is answered 400
 * naming the part and the limit, whatever follows it; the connection used to be dropped without
 * a response. Nothing reaches the core and no temp file stays. */
static void stow_part_headers_too_large(void **state)
{
    env *e = *state;
    int before = e->fc.stow_parts;
    const size_t sizes[] = {9000, 200000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t pad = sizes[i];
        char *body = malloc(pad + 512);
        size_t n = (size_t)sprintf(body, "--b\r\nContent-Type: application/dicom\r\nX-Pad: ");
        memset(body + n, 'a', pad);
        n += pad;
        n += (size_t)sprintf(body + n, "\r\n\r\n1.2.1|1.2.3.5.1|1.2.3|1.2.3.5\r\n--b\r\n\r\n1.2.1|1.2.3.5.2|1.2.3|1.2.3.5\r\n--b--\r\n");
        char head[512];
        int hn = snprintf(head, sizeof head,
                          "POST /dicomweb/studies HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ingest-token\r\n"
                          "Content-Type: multipart/related; type=\"application/dicom\"; boundary=b\r\nContent-Length: %zu\r\n\r\n", n);
        char *req = malloc((size_t)hn + n);
        memcpy(req, head, (size_t)hn);
        memcpy(req + hn, body, n);
        int st;
        char *resp = raw_http(e->port, req, (size_t)hn + n, 5000, &st);
        if (st != 400 || !strstr(resp, "multipart part 1: headers larger than 8192 bytes"))
            fail_msg("%zu-byte part header: status %d: %s", pad, st, resp);
        free(resp);
        free(req);
        free(body);
    }
    assert_int_equal(e->fc.stow_parts, before);
    assert_int_equal(count_files(e->tmp), 0);
}

/* Issue 14: the URLs samda hands out (STOW RetrieveURL, WADO BulkDataURI) name the address and port
 * the connection arrived on, never the client's Host header; with public_url, that. */
static void urls_ignore_host_header(void **state)
{
    env *e = *state;
    const char *ct[] = {"application/dicom"};
    const char *good[] = {"1.2.1|1.2.3.8.1|1.2.3|1.2.3.8"};
    char *body = stow_body(e->tmp, "h", ct, good, 1);
    char extra[1024], want[256];
    snprintf(extra, sizeof extra,
             "-H 'Host: evil.example:666' -H 'Authorization: Bearer ingest-token' "
             "-H 'Content-Type: multipart/related; type=\"application/dicom\"; boundary=h' --data-binary @%s", body);
    http_result r = http_curl(e->port, "POST", "/dicomweb/studies", extra);
    assert_int_equal(r.status, 200);
    json_t *j = json_loads(r.body, 0, NULL);
    assert_non_null(j);
    snprintf(want, sizeof want, "http://127.0.0.1:%u/dicomweb/studies/1.2.3/series/1.2.3.8/instances/1.2.3.8.1", e->port);
    assert_string_equal(str_value(json_array_get(seq(j, "00081199"), 0), "00081190"), want);
    snprintf(want, sizeof want, "http://127.0.0.1:%u/dicomweb/studies/1.2.3", e->port);
    assert_string_equal(str_value(j, "00081190"), want);
    json_decref(j);
    assert_null(strstr(r.body, "evil"));
    http_result_free(&r);

    /* metadata: the core builds BulkDataURI on ref->base_url */
    r = http_curl(e->port, "GET", "/dicomweb/studies/1.2.3/metadata", "-H 'Host: evil.example' -H 'Authorization: Bearer user-token'");
    assert_int_equal(r.status, 200);
    snprintf(want, sizeof want, "\"BulkDataURI\":\"http://127.0.0.1:%u/dicomweb/studies/1.2.3/bulk\"", e->port);
    if (!strstr(r.body, want)) fail_msg("metadata: %s", r.body);
    http_result_free(&r);
    /* HTTP/1.0 without any Host header: the same */
    const char raw[] = "GET /dicomweb/studies/1.2.3/metadata HTTP/1.0\r\nAuthorization: Bearer user-token\r\n\r\n";
    int st;
    char *resp = raw_http(e->port, raw, sizeof raw - 1, 3000, &st);
    assert_int_equal(st, 200);
    if (!strstr(resp, want)) fail_msg("metadata without Host: %s", resp);
    free(resp);

    /* public_url set: it is the base (a trailing '/' dropped), Host still ignored */
    samda_api_params p;
    samda_api_params_init(&p);
    p.tmp_dir = e->tmp;
    p.public_url = "https://samda.example:8443/pacs/";
    samda_api *a = test_server_start(&p, &e->svc);
    r = http_curl(samda_api_port(a), "POST", "/dicomweb/studies", extra);
    assert_int_equal(r.status, 200);
    j = json_loads(r.body, 0, NULL);
    assert_string_equal(str_value(j, "00081190"), "https://samda.example:8443/pacs/dicomweb/studies/1.2.3");
    json_decref(j);
    http_result_free(&r);
    samda_api_stop(a);
    unlink(body);
    free(body);
}

static void qido_values(void **state)
{
    env *e = *state;
    const char *auth = "-H 'Authorization: Bearer user-token'";
    http_result r = http_curl(e->port, "GET", "/dicomweb/studies?PatientID=x%27%20OR%20%271%27%3D%271%3B--&StudyDate=20240101-&limit=5000&includefield=StudyDescription", auth);
    assert_int_equal(r.status, 200);
    char h[256];
    assert_true(http_header(&r, "Content-Type", h, sizeof h));
    assert_string_equal(h, "application/dicom+json");
    assert_true(http_header(&r, "Warning", h, sizeof h));
    assert_non_null(strstr(h, "limit reduced to 1000"));
    http_result_free(&r);
    assert_string_equal(e->fc.last_query.patient_id, "x' OR '1'='1;--");
    assert_int_equal(e->fc.last_query.level, SAMDA_API_LEVEL_STUDY);
    assert_string_equal(e->fc.last_query.date_from, "20240101");
    assert_string_equal(e->fc.last_query.date_to, "");
    assert_int_equal(e->fc.last_query.limit, 1000);
    assert_int_equal(e->fc.last_query.includefields[0], 0x00081030);

    int calls = e->fc.qido_calls;
    r = http_curl(e->port, "GET", "/dicomweb/studies?StudyInstanceUID=1.2%27%3B%20DROP%20TABLE%20x", auth);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.body, "StudyInstanceUID must be a DICOM UID"));
    http_result_free(&r);
    r = http_curl(e->port, "GET", "/dicomweb/studies?StudyDate=2024-13-01", auth);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.body, "StudyDate"));
    http_result_free(&r);
    assert_int_equal(e->fc.qido_calls, calls); /* refused values never reach the core */

    r = http_curl(e->port, "GET", "/dicomweb/studies/1.2.3/series/1.2.3.4/instances?SOPInstanceUID=1.2.3.4.5", auth);
    assert_int_equal(r.status, 200);
    http_result_free(&r);
    assert_int_equal(e->fc.last_query.level, SAMDA_API_LEVEL_INSTANCE);
    assert_string_equal(e->fc.last_query.study_uid, "1.2.3");
    assert_string_equal(e->fc.last_query.series_uid, "1.2.3.4");
    assert_string_equal(e->fc.last_query.sop_instance_uid, "1.2.3.4.5");

    r = http_curl(e->port, "GET", "/dicomweb/studies/9.9.9/series", auth);
    assert_int_equal(r.status, 404);
    json_t *j = json_loads(r.body, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "title")), "unknown study 9.9.9");
    json_decref(j);
    http_result_free(&r);
}

typedef struct parts_seen {
    char *data[4];
    size_t len[4];
    char ctype[4][128];
    unsigned n;
} parts_seen;

static samda_status ps_begin(void *u, const samda_multipart_part *p, samda_error *err)
{
    (void)err;
    parts_seen *s = u;
    assert_true(s->n < 4);
    snprintf(s->ctype[s->n], sizeof s->ctype[0], "%s", p->content_type);
    s->data[s->n] = NULL;
    s->len[s->n] = 0;
    s->n++;
    return SAMDA_OK;
}

static samda_status ps_data(void *u, const void *d, size_t n, samda_error *err)
{
    (void)err;
    parts_seen *s = u;
    unsigned i = s->n - 1;
    s->data[i] = realloc(s->data[i], s->len[i] + n);
    memcpy(s->data[i] + s->len[i], d, n);
    s->len[i] += n;
    return SAMDA_OK;
}

/* Parse a multipart response with the api's own parser. */
static void parse_multipart(const http_result *r, parts_seen *s)
{
    char ct[256], boundary[80];
    memset(s, 0, sizeof *s);
    assert_true(http_header(r, "Content-Type", ct, sizeof ct));
    assert_int_equal(samda_content_type_param(ct, "boundary", boundary, sizeof boundary, NULL), SAMDA_OK);
    samda_multipart_callbacks cb = {s, ps_begin, ps_data, NULL};
    samda_error err;
    samda_multipart *mp = samda_multipart_new(boundary, NULL, &cb, &err);
    assert_non_null(mp);
    assert_int_equal(samda_multipart_feed(mp, r->body, r->body_len, &err), SAMDA_OK);
    assert_int_equal(samda_multipart_finish(mp, &err), SAMDA_OK);
    samda_multipart_free(mp);
}

static void wado(void **state)
{
    env *e = *state;
    const char *auth = "-H 'Authorization: Bearer user-token'";
    char *dir = make_temp_dir();
    size_t big = 5u << 20;
    char *bigdata = malloc(big);
    for (size_t i = 0; i < big; i++) bigdata[i] = (char)((i * 31) % 256);
    char *f1 = write_temp(dir, "DICM-one\r\n--x", 13);
    char *f2 = write_temp(dir, bigdata, big);
    e->fc.files[0] = f1;
    e->fc.files[1] = f2;
    e->fc.n_files = 2;
    http_result r = http_curl(e->port, "GET", "/dicomweb/studies/1.2.3", auth);
    assert_int_equal(r.status, 200);
    char ct[256];
    assert_true(http_header(&r, "Content-Type", ct, sizeof ct));
    assert_non_null(strstr(ct, "multipart/related; type=\"application/dicom\"; boundary="));
    parts_seen s;
    parse_multipart(&r, &s);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.ctype[0], "application/dicom");
    assert_int_equal(s.len[0], 13);
    assert_memory_equal(s.data[0], "DICM-one\r\n--x", 13);
    assert_int_equal(s.len[1], big);
    assert_memory_equal(s.data[1], bigdata, big);
    for (unsigned i = 0; i < s.n; i++) free(s.data[i]);
    http_result_free(&r);

    r = http_curl(e->port, "GET", "/dicomweb/studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.1", "-H 'Authorization: Bearer user-token' -H 'Accept: multipart/related; type=\"application/dicom\"; transfer-syntax=*'");
    assert_int_equal(r.status, 200);
    http_result_free(&r);
    r = http_curl(e->port, "GET", "/dicomweb/studies/1.2.3", "-H 'Authorization: Bearer user-token' -H 'Accept: application/json'");
    assert_int_equal(r.status, 406);
    http_result_free(&r);
    r = http_curl(e->port, "GET", "/dicomweb/studies/1.2.4", auth);
    assert_int_equal(r.status, 404);
    assert_non_null(strstr(r.body, "unknown study 1.2.4"));
    http_result_free(&r);

    /* the core names a file that is gone */
    unlink(f1);
    r = http_curl(e->port, "GET", "/dicomweb/studies/1.2.3", auth);
    assert_int_equal(r.status, 500);
    http_result_free(&r);
    unlink(f2);
    e->fc.n_files = 0;
    r = http_curl(e->port, "GET", "/dicomweb/studies/1.2.3", auth);
    assert_int_equal(r.status, 404);
    http_result_free(&r);
    free(f1);
    free(f2);
    free(bigdata);
    rmdir(dir);
    free(dir);
}

static void metadata_and_frames(void **state)
{
    env *e = *state;
    const char *auth = "-H 'Authorization: Bearer user-token'";
    http_result r = http_curl(e->port, "GET", "/dicomweb/studies/1.2.3/series/1.2.3.4/metadata", auth);
    assert_int_equal(r.status, 200);
    char ct[256];
    assert_true(http_header(&r, "Content-Type", ct, sizeof ct));
    assert_string_equal(ct, "application/dicom+json");
    assert_non_null(strstr(r.body, "\"0020000D\""));
    http_result_free(&r);
    r = http_curl(e->port, "GET", "/dicomweb/studies/7.7/metadata", auth);
    assert_int_equal(r.status, 404);
    http_result_free(&r);

    r = http_curl(e->port, "GET", "/dicomweb/studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.1/frames/1,3", auth);
    assert_int_equal(r.status, 200);
    assert_true(http_header(&r, "Content-Type", ct, sizeof ct));
    assert_non_null(strstr(ct, "type=\"application/octet-stream\""));
    parts_seen s;
    parse_multipart(&r, &s);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.len[0], 7);
    assert_memory_equal(s.data[0], "frame-1", 7);
    assert_memory_equal(s.data[1], "frame-3", 7);
    /* each part names its (native) transfer syntax, PS3.18 8.7.3.3.2 */
    assert_string_equal(s.ctype[1], "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1");
    for (unsigned i = 0; i < s.n; i++) free(s.data[i]);
    http_result_free(&r);
    r = http_curl(e->port, "GET", "/dicomweb/studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.1/frames/1,9", auth);
    assert_int_equal(r.status, 404);
    assert_non_null(strstr(r.body, "frame 9 out of range"));
    http_result_free(&r);
    r = http_curl(e->port, "GET", "/dicomweb/studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.1/frames/0", auth);
    assert_int_equal(r.status, 400);
    http_result_free(&r);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(stow_mixed, setup, teardown),
        cmocka_unit_test_setup_teardown(stow_all_ok_all_failed_and_site, setup, teardown),
        cmocka_unit_test_setup_teardown(stow_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(stow_large_streamed, setup, teardown),
        cmocka_unit_test_setup_teardown(stow_part_headers_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(urls_ignore_host_header, setup, teardown),
        cmocka_unit_test_setup_teardown(qido_values, setup, teardown),
        cmocka_unit_test_setup_teardown(wado, setup, teardown),
        cmocka_unit_test_setup_teardown(metadata_and_frames, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
