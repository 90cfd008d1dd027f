/* api/rest.c over HTTP: /health, /metrics (format checked line by line), and the /api/v1 routes
 * (changes, jobs, segment with its JSON body rules, results). */
#include <ctype.h>
#include <setjmp.h>
#include <signal.h>
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
    fake_core fc;
    samda_api_services svc;
    samda_api *api;
    unsigned port;
} env;

static int setup(void **state)
{
    env *e = calloc(1, sizeof *e);
    fake_core_init(&e->fc, &e->svc);
    e->api = test_server_start(NULL, &e->svc);
    e->port = samda_api_port(e->api);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    env *e = *state;
    samda_api_stop(e->api);
    fake_core_destroy(&e->fc);
    free(e);
    return 0;
}

static const char *USER = "-H 'Authorization: Bearer user-token'";

static void health(void **state)
{
    env *e = *state;
    http_result r = http_curl(e->port, "GET", "/health", "");
    assert_int_equal(r.status, 200);
    json_t *j = json_loads(r.body, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "ok");
    assert_string_equal(json_string_value(json_object_get(json_object_get(json_object_get(j, "checks"), "database"), "status")), "ok");
    assert_string_equal(json_string_value(json_object_get(json_object_get(json_object_get(j, "checks"), "http"), "status")), "ok");
    json_decref(j);
    http_result_free(&r);
    e->fc.healthy = false;
    r = http_curl(e->port, "GET", "/health", "");
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body, "\"status\":\"fail\""));
    http_result_free(&r);
}

/* One sample line: name{labels} value, with a known family; false if malformed. */
static bool sample_ok(const char *line)
{
    const char *p = line;
    if (!isalpha((unsigned char)*p) && *p != '_') return false;
    while (isalnum((unsigned char)*p) || *p == '_' || *p == ':') p++;
    if (*p == '{') {
        p++;
        while (*p && *p != '}') {
            while (isalnum((unsigned char)*p) || *p == '_') p++;
            if (*p++ != '=' || *p++ != '"') return false;
            while (*p && *p != '"') {
                if (*p == '\\') p++;
                p++;
            }
            if (*p++ != '"') return false;
            if (*p == ',') p++;
        }
        if (*p++ != '}') return false;
    }
    if (*p++ != ' ') return false;
    char *end;
    strtod(p, &end);
    return end != p && *end == '\0';
}

static unsigned long long metric(const char *text, const char *prefix)
{
    const char *s = strstr(text, prefix);
    if (!s) return 0;
    return strtoull(s + strlen(prefix), NULL, 10);
}

static void metrics(void **state)
{
    env *e = *state;
    for (int i = 0; i < 3; i++) {
        http_result r = http_curl(e->port, "GET", "/health", "");
        http_result_free(&r);
    }
    http_result r = http_curl(e->port, "GET", "/nope", "");
    http_result_free(&r);
    r = http_curl(e->port, "GET", "/dicomweb/studies", "");
    http_result_free(&r);
    r = http_curl(e->port, "GET", "/metrics", "");
    assert_int_equal(r.status, 200);
    char ct[128];
    assert_true(http_header(&r, "Content-Type", ct, sizeof ct));
    assert_non_null(strstr(ct, "text/plain; version=0.0.4"));
    /* every line is a comment (# HELP / # TYPE) or a well-formed sample */
    char *save = NULL, *copy = strdup(r.body);
    int samples = 0;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#') {
            assert_true(strncmp(line, "# HELP ", 7) == 0 || strncmp(line, "# TYPE ", 7) == 0);
            continue;
        }
        if (!sample_ok(line)) fail_msg("malformed metrics line: %s", line);
        samples++;
    }
    free(copy);
    assert_true(samples > 10);
    assert_int_equal(metric(r.body, "samda_http_requests_total{method=\"GET\",route=\"/health\",code=\"2xx\"} "), 3);
    assert_int_equal(metric(r.body, "samda_http_requests_total{method=\"\",route=\"unmatched\",code=\"4xx\"} "), 1);
    assert_int_equal(metric(r.body, "samda_http_requests_total{method=\"GET\",route=\"/dicomweb/studies\",code=\"4xx\"} "), 1);
    assert_int_equal(metric(r.body, "samda_http_request_duration_seconds_count{method=\"GET\",route=\"/health\"} "), 3);
    assert_int_equal(metric(r.body, "samda_http_request_duration_seconds_bucket{method=\"GET\",route=\"/health\",le=\"+Inf\"} "), 3);
    assert_true(metric(r.body, "\nsamda_http_auth_failures_total ") >= 1);
    assert_non_null(strstr(r.body, "# TYPE samda_http_request_duration_seconds histogram"));
    assert_non_null(strstr(r.body, "samda_core_up 1"));
    /* buckets are cumulative */
    unsigned long long prev = 0;
    const char *s = r.body;
    while ((s = strstr(s, "samda_http_request_duration_seconds_bucket{method=\"GET\",route=\"/health\",le=\""))) {
        const char *v = strchr(s, '}') + 2;
        unsigned long long n = strtoull(v, NULL, 10);
        assert_true(n >= prev);
        prev = n;
        s = v;
    }
    http_result_free(&r);
}

/* GET /api/v1/me names the role of the token that asks, for every role; no token: 401. */
static void me(void **state)
{
    env *e = *state;
    static const struct { const char *auth, *role; } cases[] = {
        {"-H 'Authorization: Bearer admin-token'", "\"role\":\"admin\""},
        {"-H 'Authorization: Bearer user-token'", "\"role\":\"user\""},
        {"-H 'Authorization: Bearer ingest-token'", "\"role\":\"ingest\""},
    };
    for (size_t i = 0; i < 3; i++) {
        http_result r = http_curl(e->port, "GET", "/api/v1/me", cases[i].auth);
        assert_int_equal(r.status, 200);
        if (!strstr(r.body, cases[i].role)) fail_msg("%s: %s", cases[i].auth, r.body);
        http_result_free(&r);
    }
    http_result r = http_curl(e->port, "GET", "/api/v1/me", NULL);
    assert_int_equal(r.status, 401);
    http_result_free(&r);
    r = http_curl(e->port, "GET", "/api/v1/me?x=1", USER);
    assert_int_equal(r.status, 400);
    http_result_free(&r);
}

static void changes_and_jobs(void **state)
{
    env *e = *state;
    http_result r = http_curl(e->port, "GET", "/api/v1/changes?since=42&limit=7", USER);
    assert_int_equal(r.status, 200);
    json_t *j = json_loads(r.body, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(j, "last")), 42);
    assert_int_equal(json_integer_value(json_object_get(j, "limit")), 7);
    json_decref(j);
    http_result_free(&r);
    const char *bad[] = {"/api/v1/changes?since=-1", "/api/v1/changes?limit=0", "/api/v1/changes?limit=1001",
                         "/api/v1/changes?bogus=1", "/api/v1/changes?since=1&since=2", "/api/v1/jobs?state=a%20b",
                         "/api/v1/jobs?offset=x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r = http_curl(e->port, "GET", bad[i], USER);
        if (r.status != 400) fail_msg("%s: %d", bad[i], r.status);
        http_result_free(&r);
    }
    r = http_curl(e->port, "GET", "/api/v1/jobs?state=failed&limit=5&offset=2", USER);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"state\":\"failed\""));
    assert_non_null(strstr(r.body, "\"offset\":2"));
    http_result_free(&r);
    r = http_curl(e->port, "GET", "/api/v1/jobs/7", USER);
    assert_int_equal(r.status, 200);
    http_result_free(&r);
    r = http_curl(e->port, "GET", "/api/v1/jobs/8", USER);
    assert_int_equal(r.status, 404);
    assert_non_null(strstr(r.body, "unknown job 8"));
    http_result_free(&r);
    r = http_curl(e->port, "GET", "/api/v1/jobs/99999999999999999999", USER);
    assert_int_equal(r.status, 400);
    http_result_free(&r);
    r = http_curl(e->port, "POST", "/api/v1/jobs/7/cancel", USER);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "cancelled"));
    http_result_free(&r);
    r = http_curl(e->port, "POST", "/api/v1/jobs/8/cancel", USER);
    assert_int_equal(r.status, 409);
    assert_non_null(strstr(r.body, "job 8 already finished"));
    http_result_free(&r);
    r = http_curl(e->port, "POST", "/api/v1/jobs/8/retry", USER);
    assert_int_equal(r.status, 200);
    http_result_free(&r);
    /* ingest tokens cannot read jobs */
    r = http_curl(e->port, "GET", "/api/v1/jobs", "-H 'Authorization: Bearer ingest-token'");
    assert_int_equal(r.status, 403);
    http_result_free(&r);
}

static void segment(void **state)
{
    env *e = *state;
    char extra[2048];
    snprintf(extra, sizeof extra, "%s -H 'Content-Type: application/json; charset=utf-8' --data '{\"labels\":[\"liver\",\"spleen\"],\"tta\":\"episodic\",\"transaction_id\":\"tx-1\",\"adapter_version\":\"v3\"}'", USER);
    http_result r = http_curl(e->port, "POST", "/api/v1/studies/1.2.3/segment", extra);
    assert_int_equal(r.status, 202);
    char loc[128];
    assert_true(http_header(&r, "Location", loc, sizeof loc));
    assert_string_equal(loc, "/api/v1/jobs/42");
    http_result_free(&r);
    assert_string_equal(e->fc.last_segment, "study=1.2.3 labels=liver,spleen adapter=v3 tta=episodic tx=tx-1");

    /* no body at all: every default */
    r = http_curl(e->port, "POST", "/api/v1/studies/1.2.3/segment", USER);
    assert_int_equal(r.status, 202);
    http_result_free(&r);
    assert_string_equal(e->fc.last_segment, "study=1.2.3 labels= adapter=- tta=- tx=-");

    struct { const char *ct; const char *body; int status; const char *needle; } cases[] = {
        {"application/json", "{\"labels\": [1]}", 400, "labels must be an array of names"},
        {"application/json", "{\"labels\": [\"../x\"]}", 400, "labels must be"},
        {"application/json", "{\"tta\": \"always\"}", 400, "tta must be one of"},
        {"application/json", "{\"colour\": 1}", 400, "unknown body member colour"},
        {"application/json", "{\"labels\": [\"a\"],\n \"tta\": }", 400, "invalid JSON body at line 2 column"},
        {"application/json", "[1,2]", 400, "must be an object"},
        {"application/json", "{\"tta\":\"off\",\"tta\":\"on\"}", 400, "invalid JSON"},
        {"text/plain", "{}", 415, "application/json"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *f = write_temp("/tmp", cases[i].body, strlen(cases[i].body));
        snprintf(extra, sizeof extra, "%s -H 'Content-Type: %s' --data-binary @%s", USER, cases[i].ct, f);
        r = http_curl(e->port, "POST", "/api/v1/studies/1.2.3/segment", extra);
        unlink(f);
        free(f);
        if (r.status != cases[i].status || !strstr(r.body, cases[i].needle)) fail_msg("case %zu: %d %s", i, r.status, r.body);
        http_result_free(&r);
    }
    /* larger than 1 MiB: 413 from Content-Length, without reading it */
    size_t n = (1u << 20) + 10;
    char *big = malloc(n);
    memset(big, ' ', n);
    big[0] = '{';
    big[n - 1] = '}';
    char *f = write_temp("/tmp", big, n);
    free(big);
    snprintf(extra, sizeof extra, "%s -H 'Content-Type: application/json' --data-binary @%s", USER, f);
    r = http_curl(e->port, "POST", "/api/v1/studies/1.2.3/segment", extra);
    assert_int_equal(r.status, 413);
    assert_non_null(strstr(r.body, "JSON body larger than 1048576 bytes"));
    http_result_free(&r);
    unlink(f);
    free(f);
}

static void results(void **state)
{
    env *e = *state;
    http_result r = http_curl(e->port, "GET", "/api/v1/studies/1.2.3/results", USER);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "segmentations"));
    http_result_free(&r);
    r = http_curl(e->port, "GET", "/api/v1/studies/1.2.5/results", USER);
    assert_int_equal(r.status, 404);
    assert_non_null(strstr(r.body, "unknown study 1.2.5"));
    http_result_free(&r);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(health, setup, teardown),
        cmocka_unit_test_setup_teardown(metrics, setup, teardown),
        cmocka_unit_test_setup_teardown(changes_and_jobs, setup, teardown),
        cmocka_unit_test_setup_teardown(me, setup, teardown),
        cmocka_unit_test_setup_teardown(segment, setup, teardown),
        cmocka_unit_test_setup_teardown(results, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
