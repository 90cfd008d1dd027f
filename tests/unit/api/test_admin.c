/* api/admin.c over HTTP with a fake core: JSON body rules (400 with line and column, 415, 413),
 * status mapping (201 + Location, 204, 409), the raw upload path (bytes reach the core as a file
 * in tmp_dir, limits, cleanup), roles, 501 "needs the model worker" while train/evaluate are
 * NULL, and the export queue routes (filters validated and passed on, retry mapped and audited). */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "api_test_util.h"

typedef struct env {
    fake_core fc;          /* first: svc.ctx points at it, and so at the env */
    samda_api_services svc;
    samda_api *api;
    unsigned port;
    char *tmp;             /* the server's tmp_dir */
    /* what the fake admin services saw */
    char last_body[1024];
    char upload_bytes[64];
    uint64_t upload_size;
    int upload_parent;
    bool upload_file_existed;
    int deletes;
    /* what the fake export services saw */
    int export_lists;
    char export_filter[256];
    int64_t retried_id, retried_token;
} env;

#define ENV(ctx) ((env *)(ctx))

static samda_status f_site_put(void *ctx, const char *site, const json_t *body, int64_t tok, json_t **out, bool *created,
                               samda_error *err)
{
    (void)tok;
    char *s = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
    snprintf(ENV(ctx)->last_body, sizeof ENV(ctx)->last_body, "%s", s);
    free(s);
    if (strcmp(site, "ini") == 0) return samda_fail(err, SAMDA_ECANCELED, "site ini is defined by the configuration file");
    *created = strcmp(site, "new") == 0;
    *out = json_pack("{s:s}", "name", site);
    return SAMDA_OK;
}

static samda_status f_dest_add(void *ctx, const json_t *body, int64_t tok, json_t **out, samda_error *err)
{
    (void)ctx, (void)tok, (void)err;
    *out = json_pack("{s:O}", "name", json_object_get(body, "name"));
    return SAMDA_OK;
}

static samda_status f_dest_delete(void *ctx, const char *name, int64_t tok, samda_error *err)
{
    (void)tok;
    if (strcmp(name, "gone") == 0) return samda_fail(err, SAMDA_ENOENT, "unknown destination gone");
    ENV(ctx)->deletes++;
    return SAMDA_OK;
}

static samda_status f_upload(void *ctx, const samda_api_upload *up, json_t **out, samda_error *err)
{
    (void)err;
    env *e = ENV(ctx);
    e->upload_size = up->size;
    e->upload_parent = up->parent_version;
    e->upload_file_existed = access(up->path, R_OK) == 0 && strncmp(up->path, e->tmp, strlen(e->tmp)) == 0;
    FILE *f = fopen(up->path, "rb");
    size_t n = f ? fread(e->upload_bytes, 1, sizeof e->upload_bytes - 1, f) : 0;
    e->upload_bytes[n] = '\0';
    if (f) fclose(f);
    *out = json_pack("{s:s, s:i}", "site", up->site, "version", 7);
    return SAMDA_OK;
}

static samda_status f_train(void *ctx, const char *site, const json_t *body, int64_t tok, json_t **job, samda_error *err)
{
    (void)ctx, (void)site, (void)body, (void)tok, (void)err;
    *job = json_pack("{s:i, s:s}", "id", 42, "state", "pending");
    return SAMDA_OK;
}

static samda_status f_exports_list(void *ctx, const samda_api_export_filter *f, json_t **out, samda_error *err)
{
    env *e = ENV(ctx);
    e->export_lists++;
    snprintf(e->export_filter, sizeof e->export_filter, "state=%s destination=%s result=%lld limit=%u offset=%u",
             f->state ? f->state : "(any)", f->destination ? f->destination : "(any)", (long long)f->result_id, f->limit,
             f->offset);
    if (f->destination && strcmp(f->destination, "gone") == 0) return samda_fail(err, SAMDA_ENOENT, "unknown destination gone");
    *out = json_pack("[{s:i, s:s, s:s}]", "id", 5, "destination", "pacs", "state", "failed");
    return SAMDA_OK;
}

static samda_status f_export_retry(void *ctx, int64_t id, int64_t tok, json_t **out, samda_error *err)
{
    env *e = ENV(ctx);
    e->retried_id = id;
    e->retried_token = tok;
    if (id == 404) return samda_fail(err, SAMDA_ENOENT, "unknown export 404");
    if (id == 9) return samda_fail(err, SAMDA_ECONFLICT, "export 9 is done: only a failed or pending item can be retried");
    *out = json_pack("{s:I, s:s, s:i}", "id", (json_int_t)id, "state", "pending", "attempts", 0);
    return SAMDA_OK;
}

static int setup(void **state)
{
    env *e = calloc(1, sizeof *e);
    fake_core_init(&e->fc, &e->svc);
    e->svc.site_put = f_site_put;
    e->svc.destination_add = f_dest_add;
    e->svc.destination_delete = f_dest_delete;
    e->svc.adapter_upload = f_upload;
    e->svc.exports_list = f_exports_list;
    e->svc.export_retry = f_export_retry;
    e->tmp = make_temp_dir();
    samda_api_params p;
    samda_api_params_init(&p);
    p.tmp_dir = e->tmp;
    p.max_file_bytes = 64 * 1024;
    e->api = test_server_start(&p, &e->svc);
    e->port = samda_api_port(e->api);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    env *e = *state;
    samda_api_stop(e->api);
    fake_core_destroy(&e->fc);
    rmdir(e->tmp);
    free(e->tmp);
    free(e);
    return 0;
}

static const char *ADMIN_JSON = "-H 'Authorization: Bearer admin-token' -H 'Content-Type: application/json'";

static char *title_of(const http_result *r)
{
    json_t *j = json_loads(r->body, 0, NULL);
    char *t = strdup(json_string_value(json_object_get(j, "title")) ? json_string_value(json_object_get(j, "title")) : "");
    json_decref(j);
    return t;
}

static void expect(env *e, const char *method, const char *path, const char *extra, int status, const char *title_needle)
{
    http_result r = http_curl(e->port, method, path, extra);
    if (r.status != status) fail_msg("%s %s: %d (wanted %d): %s", method, path, r.status, status, r.body);
    if (title_needle) {
        char *t = title_of(&r);
        if (!strstr(t, title_needle)) fail_msg("%s %s: title '%s' lacks '%s'", method, path, t, title_needle);
        free(t);
    }
    http_result_free(&r);
}

static void json_bodies(void **state)
{
    env *e = *state;
    char extra[1200];
    /* curl runs under sh: the multi-line body goes through a file */
    char *dir = make_temp_dir();
    char path[512];
    snprintf(path, sizeof path, "%s/bad.json", dir);
    FILE *f = fopen(path, "w");
    fputs("{\n  \"settings\": {\"min_slices\": 2,}\n}\n", f);
    fclose(f);
    snprintf(extra, sizeof extra, "%s --data-binary @%s", ADMIN_JSON, path);
    expect(e, "PUT", "/api/v1/sites/liver", extra, 400, "invalid JSON body at line 2 column");
    unlink(path);
    rmdir(dir);
    free(dir);
    snprintf(extra, sizeof extra, "%s -d '[1]'", ADMIN_JSON);
    expect(e, "PUT", "/api/v1/sites/liver", extra, 400, "must be an object");
    expect(e, "PUT", "/api/v1/sites/liver", ADMIN_JSON, 400, "needs a JSON object body");
    expect(e, "PUT", "/api/v1/sites/liver", "-H 'Authorization: Bearer admin-token' -H 'Content-Type: text/plain' -d x", 415,
           "application/json");
    snprintf(extra, sizeof extra, "%s -d '{\"a\":1,\"a\":2}'", ADMIN_JSON);
    expect(e, "PUT", "/api/v1/sites/liver", extra, 400, "duplicate");
    snprintf(extra, sizeof extra, "%s -H 'Content-Length: 2000000' -d '{}'", ADMIN_JSON);
    http_result r = http_curl(e->port, "PUT", "/api/v1/sites/liver", extra);
    assert_true(r.status == 413 || r.status == 0);
    http_result_free(&r);
    /* created vs replaced; the body reaches the core as parsed */
    snprintf(extra, sizeof extra, "%s -d '{\"settings\":{\"min_slices\":3}}'", ADMIN_JSON);
    r = http_curl(e->port, "PUT", "/api/v1/sites/new", extra);
    assert_int_equal(r.status, 201);
    char loc[128];
    assert_true(http_header(&r, "Location", loc, sizeof loc));
    assert_string_equal(loc, "/api/v1/sites/new");
    http_result_free(&r);
    assert_string_equal(e->last_body, "{\"settings\":{\"min_slices\":3}}");
    expect(e, "PUT", "/api/v1/sites/old", extra, 200, NULL);
    expect(e, "PUT", "/api/v1/sites/ini", extra, 409, "configuration file");
    /* destination: 201 + Location; delete 204 with no body, 404 from the core */
    snprintf(extra, sizeof extra, "%s -d '{\"name\":\"pacs\"}'", ADMIN_JSON);
    r = http_curl(e->port, "POST", "/api/v1/destinations", extra);
    assert_int_equal(r.status, 201);
    assert_true(http_header(&r, "Location", loc, sizeof loc));
    assert_string_equal(loc, "/api/v1/destinations/pacs");
    http_result_free(&r);
    r = http_curl(e->port, "DELETE", "/api/v1/destinations/pacs", "-H 'Authorization: Bearer admin-token'");
    assert_int_equal(r.status, 204);
    assert_int_equal(r.body_len, 0);
    http_result_free(&r);
    assert_int_equal(e->deletes, 1);
    expect(e, "DELETE", "/api/v1/destinations/gone", "-H 'Authorization: Bearer admin-token'", 404, "unknown destination gone");
    expect(e, "DELETE", "/api/v1/destinations/pacs", "-H 'Authorization: Bearer admin-token' -d x", 400, "takes no request body");
}

static void roles_and_missing(void **state)
{
    env *e = *state;
    expect(e, "PUT", "/api/v1/sites/liver", "-H 'Authorization: Bearer user-token' -H 'Content-Type: application/json' -d '{}'", 403,
           "needs role admin (token has role user)");
    expect(e, "GET", "/api/v1/sites", "-H 'Authorization: Bearer ingest-token'", 403, "needs role admin");
    expect(e, "GET", "/api/v1/sites", "", 401, NULL);
    /* services the fake leaves NULL */
    expect(e, "GET", "/api/v1/sites", "-H 'Authorization: Bearer admin-token'", 501, "not available in this build");
    expect(e, "POST", "/api/v1/sites/liver/adapters/train", "-H 'Authorization: Bearer admin-token'", 501, "needs the model worker");
    expect(e, "POST", "/api/v1/sites/liver/adapters/3/evaluate", "-H 'Authorization: Bearer admin-token'", 501, "needs the model worker");
    /* with a train service: 202 + Location of the job */
    samda_api_stop(e->api);
    e->svc.adapter_train = f_train;
    samda_api_params p;
    samda_api_params_init(&p);
    p.tmp_dir = e->tmp;
    e->api = test_server_start(&p, &e->svc);
    e->port = samda_api_port(e->api);
    http_result r = http_curl(e->port, "POST", "/api/v1/sites/liver/adapters/train", "-H 'Authorization: Bearer admin-token'");
    assert_int_equal(r.status, 202);
    char loc[64];
    assert_true(http_header(&r, "Location", loc, sizeof loc));
    assert_string_equal(loc, "/api/v1/jobs/42");
    http_result_free(&r);
    /* audited (after the response went out) */
    bool seen = false;
    for (int i = 0; i < 100 && !seen; i++) {
        pthread_mutex_lock(&e->fc.mu);
        seen = strcmp(e->fc.last_audit_route, "POST /api/v1/sites/{site}/adapters/train") == 0;
        pthread_mutex_unlock(&e->fc.mu);
        if (!seen) usleep(10 * 1000);
    }
    assert_true(seen);
}

static bool dir_empty(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *de;
    bool empty = true;
    while (d && (de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) empty = false;
    if (d) closedir(d);
    return empty;
}

static void uploads(void **state)
{
    env *e = *state;
    char *dir = make_temp_dir();
    char small[512], big[512], extra[1200];
    snprintf(small, sizeof small, "%s/small.bin", dir);
    snprintf(big, sizeof big, "%s/big.bin", dir);
    FILE *f = fopen(small, "wb");
    fputs("SAFETENSORS-BYTES-0123456789", f);
    fclose(f);
    f = fopen(big, "wb");
    for (int i = 0; i < 100 * 1024; i++) fputc('x', f);
    fclose(f);
    const char *UP = "-H 'Authorization: Bearer admin-token' -H 'Content-Type: application/octet-stream'";
    snprintf(extra, sizeof extra, "%s --data-binary @%s", UP, small);
    http_result r = http_curl(e->port, "POST", "/api/v1/sites/liver/adapters?parent=3", extra);
    assert_int_equal(r.status, 201);
    char loc[128];
    assert_true(http_header(&r, "Location", loc, sizeof loc));
    assert_string_equal(loc, "/api/v1/sites/liver/adapters/7");
    http_result_free(&r);
    assert_string_equal(e->upload_bytes, "SAFETENSORS-BYTES-0123456789");
    assert_int_equal(e->upload_size, 28);
    assert_int_equal(e->upload_parent, 3);
    assert_true(e->upload_file_existed);
    assert_true(dir_empty(e->tmp));
    /* chunked upload */
    snprintf(extra, sizeof extra, "%s -H 'Transfer-Encoding: chunked' --data-binary @%s", UP, small);
    expect(e, "POST", "/api/v1/sites/liver/adapters", extra, 201, NULL);
    assert_int_equal(e->upload_parent, 0);
    /* limits and refusals */
    snprintf(extra, sizeof extra, "%s --data-binary @%s", UP, big);
    expect(e, "POST", "/api/v1/sites/liver/adapters", extra, 413, "upload larger than 65536 bytes");
    snprintf(extra, sizeof extra, "%s -H 'Expect:' -H 'Transfer-Encoding: chunked' --data-binary @%s", UP, big);
    r = http_curl(e->port, "POST", "/api/v1/sites/liver/adapters", extra);
    assert_true(r.status == 413 || r.status == 0);
    http_result_free(&r);
    snprintf(extra, sizeof extra, "-H 'Authorization: Bearer admin-token' -H 'Content-Type: application/json' --data-binary @%s", small);
    expect(e, "POST", "/api/v1/sites/liver/adapters", extra, 415, "application/octet-stream");
    expect(e, "POST", "/api/v1/sites/liver/adapters", UP, 400, "upload is empty");
    snprintf(extra, sizeof extra, "%s --data-binary @%s", UP, small);
    expect(e, "POST", "/api/v1/sites/liver/adapters?parent=x", extra, 400, "parent");
    expect(e, "POST", "/api/v1/sites/liver/adapters?other=1", extra, 400, "not supported");
    usleep(200 * 1000);
    assert_true(dir_empty(e->tmp));
    unlink(small);
    unlink(big);
    rmdir(dir);
    free(dir);
}

/* Waits (the audit runs as the answer goes out) until the fake's last audit is route + param. */
static void expect_audit(env *e, const char *route, const char *param, int status)
{
    bool seen = false;
    for (int i = 0; i < 100 && !seen; i++) {
        pthread_mutex_lock(&e->fc.mu);
        seen = strcmp(e->fc.last_audit_route, route) == 0 && strcmp(e->fc.last_audit_param, param) == 0 &&
               e->fc.last_audit_status == status;
        pthread_mutex_unlock(&e->fc.mu);
        if (!seen) usleep(10 * 1000);
    }
    if (!seen) fail_msg("no audit of %s %s with %d (last: %s %s %d)", route, param, status, e->fc.last_audit_route,
                        e->fc.last_audit_param, e->fc.last_audit_status);
}

static void exports(void **state)
{
    env *e = *state;
    const char *ADMIN = "-H 'Authorization: Bearer admin-token'";
    /* admin only, both routes */
    expect(e, "GET", "/api/v1/exports", "-H 'Authorization: Bearer user-token'", 403, "needs role admin (token has role user)");
    expect(e, "POST", "/api/v1/exports/5/retry", "-H 'Authorization: Bearer user-token'", 403, "needs role admin");
    expect(e, "GET", "/api/v1/exports", "", 401, NULL);
    assert_int_equal(e->export_lists, 0);
    /* defaults, then every filter reaches the core as given */
    http_result r = http_curl(e->port, "GET", "/api/v1/exports", ADMIN);
    assert_int_equal(r.status, 200);
    json_t *j = json_loads(r.body, 0, NULL);
    assert_true(json_is_array(j));
    assert_string_equal(json_string_value(json_object_get(json_array_get(j, 0), "state")), "failed");
    json_decref(j);
    http_result_free(&r);
    assert_string_equal(e->export_filter, "state=(any) destination=(any) result=0 limit=100 offset=0");
    expect_audit(e, "GET /api/v1/exports", "", 200);
    expect(e, "GET", "/api/v1/exports?state=failed&destination=pacs&result=12&limit=10&offset=3", ADMIN, 200, NULL);
    assert_string_equal(e->export_filter, "state=failed destination=pacs result=12 limit=10 offset=3");
    expect(e, "GET", "/api/v1/exports?destination=gone", ADMIN, 404, "unknown destination gone");
    /* refused before the core is asked */
    int lists = e->export_lists;
    expect(e, "GET", "/api/v1/exports?state=lost", ADMIN, 400, "state must be pending, sending, done or failed");
    expect(e, "GET", "/api/v1/exports?state=", ADMIN, 400, "state must be");
    expect(e, "GET", "/api/v1/exports?destination=a%20b", ADMIN, 400, "destination must be a name");
    expect(e, "GET", "/api/v1/exports?result=0", ADMIN, 400, "result must be an integer from 1");
    expect(e, "GET", "/api/v1/exports?result=x", ADMIN, 400, "result");
    expect(e, "GET", "/api/v1/exports?limit=1001", ADMIN, 400, "limit must be an integer from 1 to 1000");
    expect(e, "GET", "/api/v1/exports?sort=id", ADMIN, 400, "sort is not supported here");
    expect(e, "GET", "/api/v1/exports?state=failed&state=done", ADMIN, 400, "given twice");
    assert_int_equal(e->export_lists, lists);
    /* retry: 200 with the item, the token reaches the core, audited with the id */
    r = http_curl(e->port, "POST", "/api/v1/exports/5/retry", ADMIN);
    assert_int_equal(r.status, 200);
    j = json_loads(r.body, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(j, "id")), 5);
    assert_string_equal(json_string_value(json_object_get(j, "state")), "pending");
    json_decref(j);
    http_result_free(&r);
    assert_int_equal(e->retried_id, 5);
    assert_int_equal(e->retried_token, 1);
    expect_audit(e, "POST /api/v1/exports/{id}/retry", "id=5", 200);
    expect(e, "POST", "/api/v1/exports/404/retry", ADMIN, 404, "unknown export 404");
    expect(e, "POST", "/api/v1/exports/9/retry", ADMIN, 409, "export 9 is done");
    expect_audit(e, "POST /api/v1/exports/{id}/retry", "id=9", 409);
    e->retried_id = 0;
    expect(e, "POST", "/api/v1/exports/0/retry", ADMIN, 400, "id must be an export id");
    expect(e, "POST", "/api/v1/exports/x/retry", ADMIN, 400, "id must be a decimal id");
    expect(e, "POST", "/api/v1/exports/5/retry?now=1", ADMIN, 400, "not supported");
    expect(e, "POST", "/api/v1/exports/5/retry", "-H 'Authorization: Bearer admin-token' -d x", 400, "takes no request body");
    expect(e, "GET", "/api/v1/exports/5/retry", ADMIN, 405, NULL);
    assert_int_equal(e->retried_id, 0);
    /* without the services: 501 */
    samda_api_stop(e->api);
    e->svc.exports_list = NULL;
    e->svc.export_retry = NULL;
    samda_api_params p;
    samda_api_params_init(&p);
    p.tmp_dir = e->tmp;
    e->api = test_server_start(&p, &e->svc);
    e->port = samda_api_port(e->api);
    expect(e, "GET", "/api/v1/exports", ADMIN, 501, "not available in this build");
    expect(e, "POST", "/api/v1/exports/5/retry", ADMIN, 501, "not available in this build");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(json_bodies, setup, teardown),
        cmocka_unit_test_setup_teardown(roles_and_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(uploads, setup, teardown),
        cmocka_unit_test_setup_teardown(exports, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
