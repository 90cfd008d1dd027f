/* api/server.c: a real server on an ephemeral port, driven with curl and raw sockets: start
 * parameters, 404/405, path traversal, auth 401/403/ok, audit, limits (413, 431, 415, 400 on a bad
 * boundary), 501 for missing services, CORS, concurrency, slow-loris, idle timeout, TLS and a
 * graceful stop. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "api_test_util.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int fake_active(fake_core *fc)
{
    pthread_mutex_lock(&fc->mu);
    int n = fc->qido_active;
    pthread_mutex_unlock(&fc->mu);
    return n;
}

static void start_parameters(void **state)
{
    (void)state;
    fake_core fc;
    samda_api_services svc;
    fake_core_init(&fc, &svc);
    samda_api_params p;
    samda_error err;

    samda_api_stop(NULL); /* NULL-safe */
    assert_int_equal(samda_api_port(NULL), 0);

    samda_api_params_init(&p);
    assert_string_equal(p.bind_address, "127.0.0.1");
    assert_int_equal(p.port, 8080);
    assert_true(p.auth_required);

    p.port = 0;
    p.bind_address = "localhost";
    assert_null(samda_api_start(&p, &svc, &err));
    assert_int_equal(err.code, SAMDA_EINVAL);
    assert_non_null(strstr(err.message, "not an IPv4 or IPv6 literal"));

    samda_api_params_init(&p);
    p.port = 0;
    p.threads = 0;
    assert_null(samda_api_start(&p, &svc, &err));
    assert_int_equal(err.code, SAMDA_EINVAL);

    samda_api_params_init(&p);
    p.port = 0;
    samda_api_services none = {0};
    assert_null(samda_api_start(&p, &none, &err));
    assert_int_equal(err.code, SAMDA_ECONFIG);
    assert_non_null(strstr(err.message, "auth_check"));

    p.tls_cert_path = "/nonexistent.pem";
    assert_null(samda_api_start(&p, &svc, &err));
    assert_int_equal(err.code, SAMDA_ECONFIG);

    samda_api_params_init(&p);
    p.port = 0;
    p.public_url = "javascript:alert(1)";
    assert_null(samda_api_start(&p, &svc, &err));
    assert_int_equal(err.code, SAMDA_EINVAL);
    assert_non_null(strstr(err.message, "public_url"));

    samda_api_params_init(&p);
    p.port = 0;
    p.tmp_dir = "/nonexistent-dir";
    assert_null(samda_api_start(&p, &svc, &err));
    assert_int_equal(err.code, SAMDA_EIO);

    /* port in use */
    samda_api *a = test_server_start(NULL, &svc);
    samda_api_params_init(&p);
    p.port = samda_api_port(a);
    assert_null(samda_api_start(&p, &svc, &err));
    assert_int_equal(err.code, SAMDA_ENETWORK);
    samda_api_stop(a);

    /* IPv6 loopback, where the machine has it */
    samda_api_params_init(&p);
    p.port = 0;
    p.bind_address = "::1";
    samda_api *a6 = samda_api_start(&p, &svc, &err);
    if (a6) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "curl -s -g -o /dev/null -w '%%{http_code}' 'http://[::1]:%u/health'", samda_api_port(a6));
        FILE *f = popen(cmd, "r");
        char code[8] = "";
        assert_non_null(fgets(code, sizeof code, f));
        pclose(f);
        assert_string_equal(code, "200");
        samda_api_stop(a6);
    } else {
        print_message("IPv6 loopback unavailable here: %s\n", err.message);
    }
    fake_core_destroy(&fc);
}

static void not_found_and_method(void **state)
{
    (void)state;
    fake_core fc;
    samda_api_services svc;
    fake_core_init(&fc, &svc);
    samda_api *a = test_server_start(NULL, &svc);
    unsigned port = samda_api_port(a);

    http_result r = http_curl(port, "GET", "/nope?x=1", "");
    assert_int_equal(r.status, 404);
    char ct[128];
    assert_true(http_header(&r, "Content-Type", ct, sizeof ct));
    assert_string_equal(ct, "application/problem+json");
    json_error_t je;
    json_t *j = json_loads(r.body, 0, &je);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "type")), "urn:samda:status:SAMDA_ENOENT");
    assert_int_equal(json_integer_value(json_object_get(j, "status")), 404);
    assert_string_equal(json_string_value(json_object_get(j, "instance")), "/nope"); /* no query */
    assert_non_null(strstr(json_string_value(json_object_get(j, "title")), "no such route: GET /nope"));
    assert_string_equal(json_string_value(json_object_get(j, "detail")), "not found");
    json_decref(j);
    http_result_free(&r);

    /* bytes that are not UTF-8 in the path still give a valid JSON document */
    const char raw[] = "GET /caf\xe9\x01%FF HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    int st;
    char *resp = raw_http(port, raw, sizeof raw - 1, 3000, &st);
    assert_int_equal(st, 404);
    char *body = strstr(resp, "\r\n\r\n");
    assert_non_null(body);
    j = json_loads(body + 4, JSON_DISABLE_EOF_CHECK, &je);
    if (!j) fail_msg("not JSON: %s", body + 4);
    assert_non_null(strstr(json_string_value(json_object_get(j, "title")), "/caf?"));
    json_decref(j);
    free(resp);

    r = http_curl(port, "DELETE", "/dicomweb/studies/1.2.3", "-H 'Authorization: Bearer admin-token'");
    assert_int_equal(r.status, 405);
    char allow[128];
    assert_true(http_header(&r, "Allow", allow, sizeof allow));
    assert_string_equal(allow, "GET, POST, OPTIONS, HEAD");
    http_result_free(&r);

    r = http_curl(port, "POST", "/health", "");
    assert_int_equal(r.status, 405);
    assert_true(http_header(&r, "Allow", allow, sizeof allow));
    assert_string_equal(allow, "GET, OPTIONS, HEAD");
    http_result_free(&r);

    r = http_curl(port, "HEAD", "/health", "-I");
    assert_int_equal(r.status, 200);
    http_result_free(&r);
    samda_api_stop(a);
    fake_core_destroy(&fc);
}

static void traversal_refused(void **state)
{
    (void)state;
    fake_core fc;
    samda_api_services svc;
    fake_core_init(&fc, &svc);
    samda_api *a = test_server_start(NULL, &svc);
    unsigned port = samda_api_port(a);
    const char *paths[] = {
        "/dicomweb/studies/..%2F..%2Fetc/series",
        "/dicomweb/studies/%2e%2e/series",
        "/dicomweb/studies/1.2.3/series/..%2f1/instances",
        "/dicomweb/studies/1.2%00.3/metadata",
        "/dicomweb/studies/1.2.3%2Fmetadata",
    };
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        http_result r = http_curl(port, "GET", paths[i], "--path-as-is -H 'Authorization: Bearer admin-token'");
        if (r.status != 400) fail_msg("%s: status %d", paths[i], r.status);
        http_result_free(&r);
    }
    /* raw "../" that curl would normalise away */
    const char req[] = "GET /dicomweb/studies/../../etc/passwd HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer admin-token\r\nConnection: close\r\n\r\n";
    int st;
    char *resp = raw_http(port, req, sizeof req - 1, 3000, &st);
    assert_int_equal(st, 400);
    free(resp);
    assert_int_equal(fc.qido_calls, 0); /* nothing reached the core */
    samda_api_stop(a);
    fake_core_destroy(&fc);
}

/* An access that cannot be audited is refused: 503 instead of the data, the core's answer never
 * sent; a refusal (401) still goes out; once the audit log works again, so does the access. */
static void unaudited_access_refused(void **state)
{
    (void)state;
    fake_core fc;
    samda_api_services svc;
    fake_core_init(&fc, &svc);
    samda_api *a = test_server_start(NULL, &svc);
    unsigned port = samda_api_port(a);
    fc.audit_fails = true;
    http_result r = http_curl(port, "GET", "/dicomweb/studies/1.2.3/series", "-H 'Authorization: Bearer user-token'");
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body, "access not audited, so refused"));
    assert_null(strstr(r.body, "00100010")); /* no patient attribute of the QIDO answer */
    http_result_free(&r);
    r = http_curl(port, "GET", "/dicomweb/studies", "");
    assert_int_equal(r.status, 401);
    http_result_free(&r);
    fc.audit_fails = false;
    r = http_curl(port, "GET", "/dicomweb/studies/1.2.3/series", "-H 'Authorization: Bearer user-token'");
    assert_int_equal(r.status, 200);
    http_result_free(&r);
    samda_api_stop(a);
    assert_int_equal(fc.last_audit_status, 200);
    fake_core_destroy(&fc);
}

/* The core's messages reach the client without samda's own paths (params.private_dir). */
static void private_paths_hidden(void **state)
{
    (void)state;
    fake_core fc;
    samda_api_services svc;
    fake_core_init(&fc, &svc);
    samda_api_params p;
    samda_api_params_init(&p);
    p.private_dir = "/var/lib/samda-test/";
    samda_api *a = test_server_start(&p, &svc);
    http_result r = http_curl(samda_api_port(a), "GET", "/api/v1/jobs/9", "-H 'Authorization: Bearer user-token'");
    assert_int_equal(r.status, 500);
    if (strstr(r.body, "/var/lib")) fail_msg("%s", r.body);
    assert_non_null(strstr(r.body, "object [file]: cannot read it: I/O error (also [file])"));
    http_result_free(&r);
    samda_api_stop(a);
    fake_core_destroy(&fc);
}

static void auth_roles_and_audit(void **state)
{
    (void)state;
    fake_core fc;
    samda_api_services svc;
    fake_core_init(&fc, &svc);
    samda_api *a = test_server_start(NULL, &svc);
    unsigned port = samda_api_port(a);
    char h[256];

    http_result r = http_curl(port, "GET", "/dicomweb/studies", "");
    assert_int_equal(r.status, 401);
    assert_true(http_header(&r, "WWW-Authenticate", h, sizeof h));
    assert_string_equal(h, "Bearer realm=\"samda\"");
    http_result_free(&r);

    r = http_curl(port, "GET", "/dicomweb/studies", "-H 'Authorization: Bearer wrong-token'");
    assert_int_equal(r.status, 401);
    assert_true(http_header(&r, "WWW-Authenticate", h, sizeof h));
    assert_non_null(strstr(h, "invalid_token"));
    http_result_free(&r);

    r = http_curl(port, "GET", "/dicomweb/studies", "-H 'Authorization: Basic dXNlcjpwYXNz'");
    assert_int_equal(r.status, 401);
    http_result_free(&r);
    r = http_curl(port, "GET", "/dicomweb/studies", "-H 'Authorization: Bearer a b'");
    assert_int_equal(r.status, 401);
    http_result_free(&r);

    /* ingest may only STOW */
    r = http_curl(port, "GET", "/dicomweb/studies", "-H 'Authorization: Bearer ingest-token'");
    assert_int_equal(r.status, 403);
    assert_non_null(strstr(r.body, "needs role user or admin (token has role ingest)"));
    http_result_free(&r);
    /* user may not STOW */
    r = http_curl(port, "POST", "/dicomweb/studies", "-H 'Authorization: Bearer user-token' -H 'Content-Type: multipart/related; type=\"application/dicom\"; boundary=b' --data-binary 'x'");
    assert_int_equal(r.status, 403);
    assert_non_null(strstr(r.body, "needs role ingest or admin (token has role user)"));
    http_result_free(&r);

    /* the refused requests above are audited after their responses: let those records land */
    usleep(300 * 1000);
    pthread_mutex_lock(&fc.mu);
    int audits = fc.audits;
    pthread_mutex_unlock(&fc.mu);
    r = http_curl(port, "GET", "/dicomweb/studies/1.2.3/series", "-H 'Authorization: bearer user-token'");
    assert_int_equal(r.status, 200);
    http_result_free(&r);
    /* public routes need nothing */
    r = http_curl(port, "GET", "/health", "");
    assert_int_equal(r.status, 200);
    http_result_free(&r);
    samda_api_stop(a); /* audit happens before the response is sent */
    assert_int_equal(fc.audits, audits + 1); /* the QIDO; /health is not audited */
    assert_string_equal(fc.last_audit_route, "GET /dicomweb/studies/{study}/series");
    assert_string_equal(fc.last_audit_param, "study=1.2.3");
    assert_int_equal(fc.last_audit_status, 200);
    assert_int_equal(fc.last_audit_token, 2);

    /* auth disabled: everything is open */
    samda_api_params p;
    samda_api_params_init(&p);
    p.auth_required = false;
    a = test_server_start(&p, &svc);
    r = http_curl(samda_api_port(a), "GET", "/dicomweb/studies", "");
    assert_int_equal(r.status, 200);
    http_result_free(&r);
    samda_api_stop(a);
    fake_core_destroy(&fc);
}

static void body_limits(void **state)
{
    (void)state;
    fake_core fc;
    samda_api_services svc;
    fake_core_init(&fc, &svc);
    char *tmp = make_temp_dir();
    samda_api_params p;
    samda_api_params_init(&p);
    p.max_body_bytes = 1024 * 1024;
    p.tmp_dir = tmp;
    samda_api *a = test_server_start(&p, &svc);
    unsigned port = samda_api_port(a);

    /* Declared too large: answered from the headers, the body is never read. */
    const char req[] = "POST /dicomweb/studies HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ingest-token\r\n"
                       "Content-Type: multipart/related; type=\"application/dicom\"; boundary=b\r\n"
                       "Content-Length: 10737418240\r\n\r\n--b\r\n\r\nsome bytes";
    int st;
    double t0 = now_s();
    char *resp = raw_http(port, req, sizeof req - 1, 5000, &st);
    assert_int_equal(st, 413);
    assert_non_null(strstr(resp, "body larger than http.max_body (1048576 bytes)"));
    assert_true(now_s() - t0 < 4.0); /* answered, not waited out */
    free(resp);

    /* Chunked and growing past the limit: refused (413 or closed) without reading it all. */
    char big[] = "/tmp/samda-test-big-XXXXXX";
    int fd = mkstemp(big);
    char block[65536];
    memset(block, 'x', sizeof block);
    memcpy(block, "--b\r\n\r\n", 7);
    for (int i = 0; i < 64; i++) assert_int_equal(write(fd, block, sizeof block), (ssize_t)sizeof block); /* 4 MiB */
    close(fd);
    char extra[512];
    snprintf(extra, sizeof extra, "-H 'Authorization: Bearer ingest-token' -H 'Transfer-Encoding: chunked' "
                                  "-H 'Content-Type: multipart/related; type=application/dicom; boundary=b' --data-binary @%s", big);
    http_result r = http_curl(port, "POST", "/dicomweb/studies", extra);
    /* libmicrohttpd 0.9.75 cannot queue a response while a body is arriving, so the server
     * closes the connection: curl then reports 0, or 100 after "Expect: 100-continue". */
    assert_true(r.status == 413 || r.status == 0 || r.status == 100);
    print_message("chunked overflow answered with %d\n", r.status);
    http_result_free(&r);
    unlink(big);

    /* Header block larger than the connection's memory: refused by libmicrohttpd. */
    size_t hn = 100 * 1024;
    char *hreq = malloc(hn + 256);
    size_t o = (size_t)sprintf(hreq, "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(hreq + o, 'a', hn);
    o += hn;
    o += (size_t)sprintf(hreq + o, "\r\n\r\n");
    resp = raw_http(port, hreq, o, 5000, &st);
    assert_true(st == 431 || st == 413 || st == 0);
    print_message("100 KiB header answered with %d\n", st);
    free(resp);
    free(hreq);

    /* The limit is live */
    samda_api_set_max_body(a, 100);
    resp = raw_http(port, req, sizeof req - 1, 5000, &st);
    assert_non_null(strstr(resp, "body larger than http.max_body (100 bytes)"));
    free(resp);
    samda_api_set_max_body(a, 1024 * 1024);
    samda_api_set_max_body(NULL, 1);

    /* A body on a route that takes none */
    r = http_curl(port, "POST", "/api/v1/jobs/7/cancel", "-H 'Authorization: Bearer user-token' -H 'Content-Type: application/json' --data '{}'");
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.body, "takes no request body"));
    http_result_free(&r);

    samda_api_stop(a);
    /* no temp file left behind */
    char cmd[300];
    snprintf(cmd, sizeof cmd, "ls -A %s | wc -l", tmp);
    FILE *f = popen(cmd, "r");
    char n[16] = "";
    assert_non_null(fgets(n, sizeof n, f));
    pclose(f);
    assert_int_equal(atoi(n), 0);
    rmdir(tmp);
    free(tmp);
    fake_core_destroy(&fc);
}

static void content_types(void **state)
{
    (void)state;
    fake_core fc;
    samda_api_services svc;
    fake_core_init(&fc, &svc);
    samda_api *a = test_server_start(NULL, &svc);
    unsigned port = samda_api_port(a);
    struct { const char *ct; int status; const char *needle; } cases[] = {
        {"application/json", 415, "multipart/related"},
        {"multipart/related; boundary=b", 415, "only multipart/related; type"},
        {"multipart/related; type=\\\"application/dicom+xml\\\"; boundary=b", 415, "only multipart/related; type"},
        {"multipart/related; type=\\\"application/dicom\\\"", 400, "boundary missing"},
        {"multipart/related; type=\\\"application/dicom\\\"; boundary=\\\"\\\"", 400, "1 to 70"},
        {"multipart/related; type=\\\"application/dicom\\\"; boundary=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 400, "1 to 70"},
        {"multipart/related; type=\\\"application/dicom\\\"; boundary=\\\"semi;colon\\\"", 400, "bchars"},
        {"multipart/related; type=\\\"application/dicom; boundary=b", 400, "unterminated"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char extra[512];
        snprintf(extra, sizeof extra, "-H 'Authorization: Bearer ingest-token' -H \"Content-Type: %s\" --data-binary 'x'", cases[i].ct);
        http_result r = http_curl(port, "POST", "/dicomweb/studies", extra);
        if (r.status != cases[i].status && !(cases[i].status == 400 && r.status == 415))
            fail_msg("case %zu: status %d body %s", i, r.status, r.body);
        if (r.status == cases[i].status && !strstr(r.body, cases[i].needle)) fail_msg("case %zu: body %s", i, r.body);
        http_result_free(&r);
    }
    /* missing Content-Type entirely */
    http_result r = http_curl(port, "POST", "/dicomweb/studies", "-H 'Authorization: Bearer ingest-token' -H 'Content-Type:' --data-binary 'x'");
    assert_int_equal(r.status, 415);
    http_result_free(&r);
    samda_api_stop(a);
    fake_core_destroy(&fc);
}

static void missing_services_are_501(void **state)
{
    (void)state;
    samda_api_services none = {0};
    samda_api_params p;
    samda_api_params_init(&p);
    p.auth_required = false;
    samda_api *a = test_server_start(&p, &none);
    unsigned port = samda_api_port(a);
    const char *gets[] = {"/health", "/dicomweb/studies", "/dicomweb/studies/1.2/metadata", "/api/v1/jobs", "/api/v1/changes",
                          "/api/v1/studies/1.2/results", "/dicomweb/studies/1/series/2/instances/3/frames/1"};
    for (size_t i = 0; i < sizeof gets / sizeof gets[0]; i++) {
        http_result r = http_curl(port, "GET", gets[i], "");
        if (r.status != 501 || !strstr(r.body, "not available in this build")) fail_msg("%s: %d %s", gets[i], r.status, r.body);
        http_result_free(&r);
    }
    http_result r = http_curl(port, "POST", "/dicomweb/studies", "-H 'Content-Type: multipart/related; type=application/dicom; boundary=b' --data-binary 'x'");
    assert_int_equal(r.status, 501);
    http_result_free(&r);
    /* /metrics works without the core */
    r = http_curl(port, "GET", "/metrics", "");
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "samda_http_requests_total{method=\"GET\",route=\"/health\",code=\"5xx\"} 1"));
    http_result_free(&r);
    samda_api_stop(a);
}

static void cors(void **state)
{
    (void)state;
    fake_core fc;
    samda_api_services svc;
    fake_core_init(&fc, &svc);
    samda_api_params p;
    samda_api_params_init(&p);
    p.cors_origin = "https://viewer.example";
    samda_api *a = test_server_start(&p, &svc);
    unsigned port = samda_api_port(a);
    char h[256];
    http_result r = http_curl(port, "OPTIONS", "/dicomweb/studies/1.2.3/series", "-H 'Origin: https://viewer.example' -H 'Access-Control-Request-Method: GET'");
    assert_int_equal(r.status, 204);
    assert_true(http_header(&r, "Access-Control-Allow-Origin", h, sizeof h));
    assert_string_equal(h, "https://viewer.example");
    assert_true(http_header(&r, "Access-Control-Allow-Methods", h, sizeof h));
    assert_string_equal(h, "GET, OPTIONS, HEAD");
    assert_true(http_header(&r, "Access-Control-Allow-Headers", h, sizeof h));
    assert_non_null(strstr(h, "Authorization"));
    http_result_free(&r);
    r = http_curl(port, "GET", "/dicomweb/studies", "-H 'Authorization: Bearer user-token' -H 'Origin: https://viewer.example'");
    assert_int_equal(r.status, 200);
    assert_true(http_header(&r, "Access-Control-Allow-Origin", h, sizeof h));
    http_result_free(&r);
    r = http_curl(port, "OPTIONS", "/nope", "");
    assert_int_equal(r.status, 404);
    http_result_free(&r);
    samda_api_stop(a);

    /* without a CORS origin there are no CORS headers */
    a = test_server_start(NULL, &svc);
    r = http_curl(samda_api_port(a), "OPTIONS", "/health", "");
    assert_int_equal(r.status, 204);
    assert_false(http_header(&r, "Access-Control-Allow-Origin", h, sizeof h));
    assert_true(http_header(&r, "Allow", h, sizeof h));
    http_result_free(&r);
    samda_api_stop(a);
    fake_core_destroy(&fc);
}

static void concurrent_requests(void **state)
{
    (void)state;
    fake_core fc;
    samda_api_services svc;
    fake_core_init(&fc, &svc);
    fc.slow_ms = 300;
    samda_api_params p;
    samda_api_params_init(&p);
    p.threads = 4;
    samda_api *a = test_server_start(&p, &svc);
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "for i in 1 2 3 4 5 6 7 8; do curl -s -o /dev/null -w '%%{http_code}\\n' -H 'Authorization: Bearer user-token' "
             "'http://127.0.0.1:%u/dicomweb/studies?PatientID=P'$i & done; wait", samda_api_port(a));
    double t0 = now_s();
    FILE *f = popen(cmd, "r");
    char line[16];
    int ok = 0;
    while (fgets(line, sizeof line, f)) ok += atoi(line) == 200;
    pclose(f);
    double el = now_s() - t0;
    assert_int_equal(ok, 8);
    assert_int_equal(fc.qido_calls, 8);
    print_message("8 requests of 300 ms (4 network, 8 handler threads): %.2f s (serial would be 2.4 s)\n", el);
    /* They ran in parallel on the handler threads (8 by default). */
    print_message("most requests inside the core at once: %d\n", fc.qido_max_active);
    assert_true(fc.qido_max_active >= 4);
    samda_api_stop(a);
    fake_core_destroy(&fc);
}

typedef struct loris {
    unsigned port;
    double seconds;
    int bytes_sent;
} loris;

static void *slow_loris(void *arg)
{
    loris *l = arg;
    int fd = raw_connect(l->port);
    const char *req = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
    double t0 = now_s();
    for (size_t i = 0; now_s() - t0 < l->seconds; i++) {
        char c = i < strlen(req) ? req[i] : 'a';
        if (send(fd, &c, 1, MSG_NOSIGNAL) != 1) break;
        l->bytes_sent++;
        struct timespec ts = {0, 250 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    close(fd);
    return NULL;
}

static void slow_loris_does_not_block(void **state)
{
    (void)state;
    fake_core fc;
    samda_api_services svc;
    fake_core_init(&fc, &svc);
    samda_api_params p;
    samda_api_params_init(&p);
    p.threads = 1; /* one event loop: a blocking read would starve everybody */
    samda_api *a = test_server_start(&p, &svc);
    loris l = {samda_api_port(a), 3.0, 0};
    pthread_t th;
    pthread_create(&th, NULL, slow_loris, &l);
    struct timespec ts = {0, 300 * 1000 * 1000};
    nanosleep(&ts, NULL);
    double worst = 0;
    for (int i = 0; i < 10; i++) {
        double t0 = now_s();
        http_result r = http_curl(l.port, "GET", "/health", "");
        double el = now_s() - t0;
        if (el > worst) worst = el;
        assert_int_equal(r.status, 200);
        http_result_free(&r);
    }
    print_message("slow-loris: 10 requests while a client sends 4 bytes/s; slowest %.3f s\n", worst);
    assert_true(worst < 1.0);
    pthread_join(th, NULL);
    assert_true(l.bytes_sent >= 8);
    samda_api_stop(a);
    fake_core_destroy(&fc);
}

static void idle_connection_times_out(void **state)
{
    (void)state;
    fake_core fc;
    samda_api_services svc;
    fake_core_init(&fc, &svc);
    samda_api_params p;
    samda_api_params_init(&p);
    p.connection_timeout_s = 1;
    samda_api *a = test_server_start(&p, &svc);
    int fd = raw_connect(samda_api_port(a));
    assert_int_equal(send(fd, "GET /hea", 8, MSG_NOSIGNAL), 8);
    double t0 = now_s();
    char buf[256];
    ssize_t n = recv(fd, buf, sizeof buf, 0); /* blocks until the server gives up on us */
    double el = now_s() - t0;
    assert_true(n <= 0 || strncmp(buf, "HTTP/1.1 4", 10) == 0);
    print_message("idle connection closed after %.2f s (timeout 1 s)\n", el);
    assert_true(el < 5.0);
    close(fd);
    samda_api_stop(a);
    fake_core_destroy(&fc);
}

/* Whether the server closed fd (read returns end of file or an error other than "nothing yet"). */
static bool server_closed(int fd)
{
    char b[64];
    ssize_t n = recv(fd, b, sizeof b, MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

/* /metrics (admin token) holds the line want. */
static void assert_metric(unsigned port, const char *want)
{
    http_result r = http_curl(port, "GET", "/metrics", "-H 'Authorization: Bearer admin-token'");
    assert_int_equal(r.status, 200);
    if (!strstr(r.body, want)) fail_msg("/metrics lacks \"%s\"", want);
    http_result_free(&r);
}

/* Clients that trickle their request head hold every slot (max_connections) until header_timeout
 * cuts them: then they are closed (within a second of the deadline), counted in /metrics, and a
 * normal client gets through again. A kept-alive connection that answers in time is not cut. */
static void late_request_head_is_cut(void **state)
{
    (void)state;
    fake_core fc;
    samda_api_services svc;
    fake_core_init(&fc, &svc);
    samda_api_params p;
    samda_api_params_init(&p);
    p.max_connections = 4;
    p.header_timeout_s = 1;
    p.connection_timeout_s = 60;
    samda_api *a = test_server_start(&p, &svc);
    const unsigned port = samda_api_port(a);
    enum { N = 4 };
    int fds[N];
    double closed_at[N];
    const char *head = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
    double t0 = now_s();
    for (int i = 0; i < N; i++) {
        fds[i] = raw_connect(port);
        assert_int_equal(send(fds[i], head, strlen(head), MSG_NOSIGNAL), (ssize_t)strlen(head));
        closed_at[i] = -1;
    }
    int open = N;
    while (open > 0 && now_s() - t0 < 5.0) {
        for (int i = 0; i < N; i++) {
            if (closed_at[i] >= 0) continue;
            bool gone = server_closed(fds[i]);
            if (!gone && send(fds[i], "a", 1, MSG_NOSIGNAL) != 1) gone = true;
            if (gone) {
                closed_at[i] = now_s() - t0;
                open--;
            }
        }
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    for (int i = 0; i < N; i++) {
        print_message("trickling client %d closed after %.2f s (header_timeout 1 s)\n", i, closed_at[i]);
        assert_true(closed_at[i] >= 0.9 && closed_at[i] < 3.0);
        close(fds[i]);
    }
    http_result r = http_curl(port, "GET", "/health", "");
    assert_int_equal(r.status, 200);
    http_result_free(&r);
    assert_metric(port, "samda_http_header_timeouts_total 4");

    /* a prompt client on a kept-alive connection: two requests 0.5 s apart on one connection */
    int fd = raw_connect(port);
    const char *req = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    for (int k = 0; k < 2; k++) {
        if (k) {
            struct timespec ts = {0, 500 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        assert_int_equal(send(fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
        char b[512];
        ssize_t n = recv(fd, b, sizeof b - 1, 0);
        assert_true(n > 12);
        b[n] = '\0';
        assert_non_null(strstr(b, "200"));
    }
    close(fd);
    samda_api_stop(a);
    fake_core_destroy(&fc);
}

/* A client that sends its request head in time and then trickles its body is cut once the body is
 * later than body_timeout plus one second per body_min_rate bytes; one that uploads at a fair rate is
 * not, however long it takes. */
static void trickled_body_is_cut(void **state)
{
    (void)state;
    fake_core fc;
    samda_api_services svc;
    fake_core_init(&fc, &svc);
    samda_api_params p;
    samda_api_params_init(&p);
    p.body_timeout_s = 1;
    p.body_min_rate = 1000;
    samda_api *a = test_server_start(&p, &svc);
    const unsigned port = samda_api_port(a);
    const char *head = "POST /api/v1/studies/1.2.3/segment HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer user-token\r\n"
                       "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n";
    char h[512];
    /* slow: 10 bytes every 100 ms (100 B/s) of a 100000-byte body */
    int slow = raw_connect(port);
    snprintf(h, sizeof h, head, 100000);
    assert_int_equal(send(slow, h, strlen(h), MSG_NOSIGNAL), (ssize_t)strlen(h));
    /* fair: 3000 bytes ("{}" and spaces) in 100-byte pieces over 2 s (1500 B/s), longer than body_timeout */
    int fair = raw_connect(port);
    snprintf(h, sizeof h, head, 3000);
    assert_int_equal(send(fair, h, strlen(h), MSG_NOSIGNAL), (ssize_t)strlen(h));
    char piece[100];
    memset(piece, ' ', sizeof piece);
    const double t0 = now_s();
    double slow_closed = -1, slow_last = 0;
    int fair_sent = 0;
    while (now_s() - t0 < 4.0 && (slow_closed < 0 || fair_sent < 3000)) {
        if (slow_closed < 0) {
            bool gone = server_closed(slow);
            if (!gone && now_s() - slow_last >= 0.1) {
                if (send(slow, piece, 10, MSG_NOSIGNAL) != 10) gone = true;
                slow_last = now_s();
            }
            if (gone) slow_closed = now_s() - t0;
        }
        if (fair_sent < 3000 && now_s() - t0 >= fair_sent / 1500.0) {
            if (fair_sent == 0) piece[0] = '{', piece[1] = '}';
            if (send(fair, piece, sizeof piece, MSG_NOSIGNAL) != (ssize_t)sizeof piece)
                fail_msg("fair upload cut after %d bytes, %.2f s: %s", fair_sent, now_s() - t0, strerror(errno));
            piece[0] = piece[1] = ' ';
            fair_sent += (int)sizeof piece;
        }
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    const double fair_done = now_s() - t0;
    print_message("trickled body closed after %.2f s (body_timeout 1 s, 1000 B/s); fair upload sent in %.2f s\n",
                  slow_closed, fair_done);
    assert_true(slow_closed >= 1.0 && slow_closed < 3.0); /* due at 1.1 s: 1 s + 100 bytes / 1000 B/s */
    assert_true(fair_done > 1.5); /* it did take longer than body_timeout */
    char resp[1024];
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fair, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ssize_t n = recv(fair, resp, sizeof resp - 1, 0);
    assert_true(n > 12);
    resp[n] = '\0';
    assert_non_null(strstr(resp, "HTTP/1.1 "));
    close(fair);
    close(slow);
    assert_metric(port, "samda_http_body_timeouts_total 1");
    samda_api_stop(a);
    fake_core_destroy(&fc);
}

typedef struct bg_req {
    unsigned port;
    int status;
} bg_req;

static void *bg_qido(void *arg)
{
    bg_req *b = arg;
    http_result r = http_curl(b->port, "GET", "/dicomweb/studies", "-H 'Authorization: Bearer user-token'");
    b->status = r.status;
    http_result_free(&r);
    return NULL;
}

static void stop_lets_inflight_finish(void **state)
{
    (void)state;
    fake_core fc;
    samda_api_services svc;
    fake_core_init(&fc, &svc);
    fc.slow_ms = 800;
    samda_api *a = test_server_start(NULL, &svc);
    bg_req b = {samda_api_port(a), -1};
    pthread_t th;
    pthread_create(&th, NULL, bg_qido, &b);
    for (int spins = 0; spins < 500; spins++) { /* wait (at most 10 s) until the request is inside the core */
        pthread_mutex_lock(&fc.mu);
        int active = fc.qido_active;
        pthread_mutex_unlock(&fc.mu);
        if (active) break;
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(fc.qido_active, 1);
    samda_api_stop(a);
    pthread_join(th, NULL);
    assert_int_equal(b.status, 200);
    fake_core_destroy(&fc);
}

/* A service call that takes a second does not hold up other requests, even with a single
 * network thread. */
static void slow_core_does_not_block_health(void **state)
{
    (void)state;
    fake_core fc;
    samda_api_services svc;
    fake_core_init(&fc, &svc);
    fc.slow_ms = 1000;
    samda_api_params p;
    samda_api_params_init(&p);
    p.threads = 1;
    p.handler_threads = 2;
    samda_api *a = test_server_start(&p, &svc);
    bg_req b = {samda_api_port(a), -1};
    pthread_t th;
    pthread_create(&th, NULL, bg_qido, &b);
    for (int spins = 0; spins < 500 && !fake_active(&fc); spins++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    double t0 = now_s();
    http_result r = http_curl(b.port, "GET", "/health", "");
    double el = now_s() - t0;
    assert_int_equal(r.status, 200);
    http_result_free(&r);
    print_message("/health during a 1 s service call: %.3f s\n", el);
    assert_true(el < 0.8);
    pthread_join(th, NULL);
    assert_int_equal(b.status, 200);
    samda_api_stop(a);
    fake_core_destroy(&fc);
}

/* Stopping with a request in the core and one queued behind it: the first finishes, the queued
 * one is answered 503, and no service is called after samda_api_stop returns. */
typedef struct stopper {
    samda_api *api;
    fake_core *fc;
} stopper;

static void *bg_stop(void *arg)
{
    stopper *st = arg;
    samda_api_stop(st->api);
    return NULL;
}

/* Stopping with a request in the core and one queued behind it: the first finishes, the queued
 * one is answered 503, and no service is called after samda_api_stop returns. The first call is
 * held in the core until the stop is under way, so the outcome does not depend on timing. */
static void stop_answers_queued_with_503(void **state)
{
    (void)state;
    fake_core fc;
    samda_api_services svc;
    fake_core_init(&fc, &svc);
    fc.hold = true;
    samda_api_params p;
    samda_api_params_init(&p);
    p.handler_threads = 1;
    p.shutdown_timeout_ms = 100;
    samda_api *a = test_server_start(&p, &svc);
    bg_req b1 = {samda_api_port(a), -1}, b2 = {samda_api_port(a), -1};
    pthread_t t1, t2, ts_;
    pthread_create(&t1, NULL, bg_qido, &b1);
    for (int spins = 0; spins < 3000 && !fake_active(&fc); spins++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(fake_active(&fc), 1);
    pthread_create(&t2, NULL, bg_qido, &b2);
    /* wait until the second one is in the queue (curl may start slowly under load) */
    for (int spins = 0; spins < 3000 && samda_api_queued(a) < 1; spins++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(samda_api_queued(a), 1);
    stopper st = {a, &fc};
    pthread_create(&ts_, NULL, bg_stop, &st);
    /* the stop waits 100 ms for in-flight work, then marks the queue stopped; give it ample time */
    struct timespec ts = {1, 0};
    nanosleep(&ts, NULL);
    fake_core_release(&fc);
    pthread_join(ts_, NULL);
    int calls = fc.qido_calls;
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    assert_int_equal(b1.status, 200);
    assert_int_equal(b2.status, 503);
    assert_int_equal(calls, 1);
    assert_int_equal(fc.qido_calls, 1);
    fake_core_destroy(&fc);
}

/* How many HTTP responses a raw reply holds. */
static int count_responses(const char *resp)
{
    int n = 0;
    for (const char *p = resp; (p = strstr(p, "HTTP/1.1 ")) != NULL; p++) n++;
    return n;
}

/* Issue 14: a request whose body length is ambiguous (differing Content-Length headers, or
 * Transfer-Encoding together with Content-Length, or a Transfer-Encoding other than chunked) is
 * answered 400 (501 for an unknown coding) and its connection closed, so that a request smuggled
 * after it (which a proxy framing the body the other way would have passed as body) is never
 * read. Identical repeated Content-Length values are one value (RFC 9110 8.6). */
static void ambiguous_framing_refused(void **state)
{
    (void)state;
    fake_core fc;
    samda_api_services svc;
    fake_core_init(&fc, &svc);
    samda_api *a = test_server_start(NULL, &svc);
    const unsigned port = samda_api_port(a);
    const char *smuggled = "GET /dicomweb/studies HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer user-token\r\n\r\n";
    struct {
        const char *headers, *body;
        int status;
        const char *needle;
    } cases[] = {
        {"Content-Length: 2\r\nContent-Length: 84\r\n", "{}", 400, "differing Content-Length"},
        {"Content-Length: 84\r\nContent-Length: 2\r\n", "{}", 400, "differing Content-Length"},
        {"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n", "2\r\n{}\r\n0\r\n\r\n", 400, "both Transfer-Encoding and Content-Length"},
        {"Transfer-Encoding: chunked\r\nContent-Length: 88\r\n", "2\r\n{}\r\n0\r\n\r\n", 400, "both Transfer-Encoding and Content-Length"},
        {"Transfer-Encoding: gzip\r\n", "{}", 400, "must end with chunked"},
        {"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", "2\r\n{}\r\n0\r\n\r\n", 400, "must end with chunked"},
        {"Transfer-Encoding: gzip, chunked\r\n", "2\r\n{}\r\n0\r\n\r\n", 501, "other than chunked"},
        {"Content-Length: 2\r\nContent-Length: x\r\n", "{}", 400, "not a number"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char req[1024];
        int n = snprintf(req, sizeof req,
                         "POST /api/v1/studies/1.2.3/segment HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer user-token\r\n"
                         "Content-Type: application/json\r\n%s\r\n%s%s",
                         cases[i].headers, cases[i].body, smuggled);
        int st;
        double t0 = now_s();
        char *resp = raw_http(port, req, (size_t)n, 4000, &st);
        double el = now_s() - t0;
        if (st != cases[i].status || !strstr(resp, cases[i].needle)) fail_msg("case %zu: status %d: %s", i, st, resp);
        if (count_responses(resp) != 1) fail_msg("case %zu: the smuggled request was answered: %s", i, resp);
        if (!strstr(resp, "Connection: close")) fail_msg("case %zu: no Connection: close: %s", i, resp);
        if (el > 3.0) fail_msg("case %zu: connection left open (%.1f s)", i, el);
        free(resp);
    }
    pthread_mutex_lock(&fc.mu);
    assert_int_equal(fc.qido_calls, 0);           /* the smuggled request never ran */
    assert_string_equal(fc.last_segment, "");     /* nor the ambiguous one */
    pthread_mutex_unlock(&fc.mu);

    /* Identical repeats are one value; the request is served and the connection kept. */
    const char same[] = "GET /dicomweb/studies HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer user-token\r\n"
                        "Content-Length: 0\r\nContent-Length: 0\r\n\r\n";
    int st;
    char *resp = raw_http(port, same, sizeof same - 1, 1000, &st);
    assert_int_equal(st, 200);
    assert_null(strstr(resp, "Connection: close"));
    free(resp);
    /* Plain chunked still works. */
    const char chunked[] = "POST /api/v1/studies/1.2.3/segment HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer user-token\r\n"
                           "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
    resp = raw_http(port, chunked, sizeof chunked - 1, 3000, &st);
    assert_int_equal(st, 202);
    free(resp);
    samda_api_stop(a);
    fake_core_destroy(&fc);
}

/* Issue 14: path parameters are checked only after authentication and authorisation, so an
 * anonymous client (401) or one with the wrong role (403) learns nothing of their rules; the
 * authorised client gets the 400 naming the rule. OPTIONS (public) does not validate them. */
static void path_params_checked_after_auth(void **state)
{
    (void)state;
    fake_core fc;
    samda_api_services svc;
    fake_core_init(&fc, &svc);
    samda_api *a = test_server_start(NULL, &svc);
    const unsigned port = samda_api_port(a);
    struct {
        const char *method, *path, *wrong_role, *right_role, *needle;
    } cases[] = {
        {"GET", "/dicomweb/studies/1.2.3%27%20OR%201=1/series", "ingest-token", "user-token", "study must be a DICOM UID"},
        {"GET", "/dicomweb/studies/..%2F..%2Fetc/series", "ingest-token", "user-token", "'/' or '..'"},
        {"GET", "/dicomweb/studies/1.2%00.3/metadata", "ingest-token", "user-token", "NUL byte"},
        {"GET", "/dicomweb/studies/1.2%zz/metadata", "ingest-token", "user-token", "percent-encoding"},
        {"GET", "/api/v1/jobs/12a", "ingest-token", "user-token", "id must be a decimal id"},
        {"DELETE", "/api/v1/sites/liver/adapters/007", "user-token", "admin-token", "version must be a version number"},
        {"GET", "/api/v1/destinations/a%2F..%2Fb", "user-token", "admin-token", "'/' or '..'"},
        {"POST", "/dicomweb/sites/bad%20name/studies", "user-token", "ingest-token", "site must be a name"},
        {"GET", "/dicomweb/studies/1/series/2/instances/3/frames/1,,2", "ingest-token", "user-token", "frames must be"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *who[3] = {NULL, cases[i].wrong_role, cases[i].right_role};
        const int want[3] = {401, 403, 400};
        for (int k = 0; k < 3; k++) {
            char extra[256] = "--path-as-is";
            if (who[k]) snprintf(extra, sizeof extra, "--path-as-is -H 'Authorization: Bearer %s'", who[k]);
            http_result r = http_curl(port, cases[i].method, cases[i].path, extra);
            if (r.status != want[k]) fail_msg("%s %s as %s: status %d: %s", cases[i].method, cases[i].path, who[k] ? who[k] : "anonymous",
                                              r.status, r.body);
            bool told = strstr(r.body, cases[i].needle) || strstr(r.body, "must be") || strstr(r.body, "path segment");
            if (k < 2 && told) fail_msg("%s %s as %s: the refusal tells the rule: %s", cases[i].method, cases[i].path, who[k] ? who[k] : "anonymous", r.body);
            if (k == 2 && !strstr(r.body, cases[i].needle)) fail_msg("%s %s: 400 without the rule: %s", cases[i].method, cases[i].path, r.body);
            http_result_free(&r);
        }
    }
    /* a raw "../" (curl would normalise it) in a route's parameter */
    const char raw[] = "GET /dicomweb/studies/../series HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    int st;
    char *resp = raw_http(port, raw, sizeof raw - 1, 3000, &st);
    assert_int_equal(st, 401);
    assert_null(strstr(resp, "'..'"));
    free(resp);
    /* where no route has that shape, the path is refused as such: no route, so no rule to learn */
    const char raw2[] = "GET /dicomweb/studies/../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    resp = raw_http(port, raw2, sizeof raw2 - 1, 3000, &st);
    assert_int_equal(st, 400);
    free(resp);
    /* OPTIONS is public and says only which methods the path has */
    http_result r = http_curl(port, "OPTIONS", "/dicomweb/studies/not-a-uid/series", "");
    assert_int_equal(r.status, 204);
    http_result_free(&r);
    /* a malformed segment where no route has a parameter is a plain 400 (no route, no rules) */
    r = http_curl(port, "GET", "/dicomweb/stud%zzies", "");
    assert_int_equal(r.status, 400);
    http_result_free(&r);
    /* nothing reached the core */
    assert_int_equal(fc.qido_calls, 0);
    assert_int_equal(fc.stow_parts, 0);
    samda_api_stop(a);
    fake_core_destroy(&fc);
}

/* Handshake with openssl s_client args against 127.0.0.1:port: 1 = a session was set up, 0 = the
 * server refused (the client did offer it: a client-side refusal fails the test), -1 = no s_client. */
static int s_client_handshake(unsigned port, const char *args)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "openssl s_client -connect 127.0.0.1:%u %s </dev/null 2>&1", port, args);
    FILE *f = popen(cmd, "r");
    if (!f) return -1;
    char line[512];
    bool session = false, client_side = false;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "New, TLSv1", 10) == 0) session = true;
        if (strstr(line, "no protocols available") || strstr(line, "no ciphers available") || strstr(line, "no cipher match"))
            client_side = true;
    }
    int rc = pclose(f);
    if (rc == -1 || WEXITSTATUS(rc) == 127) return -1;
    if (client_side) fail_msg("s_client %s refused to offer it (not the server's refusal)", args);
    return session && WEXITSTATUS(rc) == 0 ? 1 : 0;
}

static void tls(void **state)
{
    (void)state;
    if (!samda_api_tls_supported()) {
        print_message("libmicrohttpd without TLS: skipped\n");
        skip();
    }
    char *dir = make_temp_dir();
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey rsa:2048 -nodes -keyout %s/key.pem -out %s/cert.pem -days 1 -subj /CN=127.0.0.1 "
             ">/dev/null 2>&1", dir, dir);
    if (system(cmd) != 0) {
        print_message("openssl CLI missing: skipped\n");
        skip();
    }
    char cert[512], key[512];
    snprintf(cert, sizeof cert, "%s/cert.pem", dir);
    snprintf(key, sizeof key, "%s/key.pem", dir);
    fake_core fc;
    samda_api_services svc;
    fake_core_init(&fc, &svc);
    samda_api_params p;
    samda_api_params_init(&p);
    p.tls_cert_path = cert;
    p.tls_key_path = key;
    samda_api *a = test_server_start(&p, &svc);
    snprintf(cmd, sizeof cmd, "curl -s -k -o /dev/null -w '%%{http_code}' https://127.0.0.1:%u/health", samda_api_port(a));
    FILE *f = popen(cmd, "r");
    char code[8] = "";
    assert_non_null(fgets(code, sizeof code, f));
    pclose(f);
    assert_string_equal(code, "200");
    /* plain HTTP on the TLS port does not get an answer */
    snprintf(cmd, sizeof cmd, "curl -s -o /dev/null --max-time 3 -w '%%{http_code}' http://127.0.0.1:%u/health", samda_api_port(a));
    f = popen(cmd, "r");
    code[0] = '\0';
    if (!fgets(code, sizeof code, f)) code[0] = '\0';
    pclose(f);
    assert_string_not_equal(code, "200");
    /* Issue 14: BCP 195. Debian's OpenSSL offers TLS 1.0/1.1 and static-RSA or CBC suites only at
     * security level 0, so the client asks for it: each refusal below is the server's. */
    const unsigned port = samda_api_port(a);
    if (s_client_handshake(port, "-tls1_3") < 0) {
        print_message("openssl s_client missing: protocol checks skipped\n");
    } else {
        struct { const char *args; int want; } hs[] = {
            {"-tls1 -cipher 'DEFAULT:@SECLEVEL=0'", 0},
            {"-tls1_1 -cipher 'DEFAULT:@SECLEVEL=0'", 0},
            {"-tls1_2 -cipher 'AES128-GCM-SHA256:@SECLEVEL=0'", 0},         /* static RSA: no forward secrecy */
            {"-tls1_2 -cipher 'AES256-GCM-SHA384:@SECLEVEL=0'", 0},
            {"-tls1_2 -cipher 'AES128-SHA256:@SECLEVEL=0'", 0},
            {"-tls1_2 -cipher 'ECDHE-RSA-AES128-SHA:@SECLEVEL=0'", 0},     /* CBC, not AEAD */
            {"-tls1_2 -cipher 'ECDHE-RSA-AES128-SHA256:@SECLEVEL=0'", 0},
            {"-tls1_2 -cipher ECDHE-RSA-AES128-GCM-SHA256", 1},
            {"-tls1_2 -cipher ECDHE-RSA-AES256-GCM-SHA384", 1},
            {"-tls1_2 -cipher ECDHE-RSA-CHACHA20-POLY1305", 1},
            {"-tls1_3", 1},
        };
        for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++) {
            int got = s_client_handshake(port, hs[i].args);
            if (got != hs[i].want) fail_msg("s_client %s: %s", hs[i].args, got ? "accepted" : "refused");
        }
    }
    samda_api_stop(a);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    free(dir);
    fake_core_destroy(&fc);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(start_parameters),     cmocka_unit_test(not_found_and_method),
        cmocka_unit_test(traversal_refused),    cmocka_unit_test(auth_roles_and_audit),
        cmocka_unit_test(unaudited_access_refused), cmocka_unit_test(private_paths_hidden),
        cmocka_unit_test(body_limits),          cmocka_unit_test(content_types),
        cmocka_unit_test(missing_services_are_501), cmocka_unit_test(cors),
        cmocka_unit_test(concurrent_requests),  cmocka_unit_test(slow_loris_does_not_block),
        cmocka_unit_test(idle_connection_times_out), cmocka_unit_test(late_request_head_is_cut),
        cmocka_unit_test(trickled_body_is_cut),
        cmocka_unit_test(stop_lets_inflight_finish),
        cmocka_unit_test(slow_core_does_not_block_health), cmocka_unit_test(stop_answers_queued_with_503),
        cmocka_unit_test(ambiguous_framing_refused), cmocka_unit_test(path_params_checked_after_auth),
        cmocka_unit_test(tls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
