/* api/ui.c: the console's files under /ui/ through a real server (no token needed, the strict
 * Content-Security-Policy and the right Content-Type on each, 404/405/308, nothing audited), and
 * the embedded files themselves: every page the console has is there, and none of them has inline
 * script or style, an event-handler attribute, innerHTML, eval or an address of another origin, so
 * the policy holds without 'unsafe-inline' and the console works offline. */
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api_test_util.h"
#include "router.h"
#include "ui.h"

static void served_without_token(void **state)
{
    (void)state;
    fake_core fc;
    samda_api_services svc;
    fake_core_init(&fc, &svc);
    samda_api *a = test_server_start(NULL, &svc); /* auth required */
    unsigned port = samda_api_port(a);
    char h[512];

    http_result r = http_curl(port, "GET", "/ui/", "");
    assert_int_equal(r.status, 200);
    assert_true(http_header(&r, "Content-Type", h, sizeof h));
    assert_string_equal(h, "text/html; charset=utf-8");
    assert_true(http_header(&r, "Content-Security-Policy", h, sizeof h));
    assert_string_equal(h, API_UI_CSP);
    assert_non_null(strstr(h, "script-src 'self';"));
    assert_null(strstr(h, "unsafe"));
    assert_true(http_header(&r, "X-Content-Type-Options", h, sizeof h));
    assert_string_equal(h, "nosniff");
    assert_true(http_header(&r, "X-Frame-Options", h, sizeof h));
    assert_string_equal(h, "DENY");
    const api_ui_asset *index = api_ui_find("index.html");
    assert_non_null(index);
    assert_int_equal(r.body_len, index->size);
    assert_memory_equal(r.body, index->data, index->size);
    http_result_free(&r);

    static const struct { const char *path, *type; } files[] = {
        {"/ui/index.html", "text/html; charset=utf-8"},
        {"/ui/app.js", "text/javascript; charset=utf-8"},
        {"/ui/console.css", "text/css; charset=utf-8"},
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        r = http_curl(port, "GET", files[i].path, "");
        assert_int_equal(r.status, 200);
        assert_true(http_header(&r, "Content-Type", h, sizeof h));
        assert_string_equal(h, files[i].type);
        assert_true(http_header(&r, "Content-Security-Policy", h, sizeof h));
        http_result_free(&r);
    }
    r = http_curl(port, "HEAD", "/ui/app.js", "-I");
    assert_int_equal(r.status, 200);
    http_result_free(&r);

    r = http_curl(port, "GET", "/ui", "");
    assert_int_equal(r.status, 308);
    assert_true(http_header(&r, "Location", h, sizeof h));
    assert_string_equal(h, "/ui/");
    http_result_free(&r);

    r = http_curl(port, "GET", "/ui/nope.js", "");
    assert_int_equal(r.status, 404);
    assert_non_null(strstr(r.body, "no such console file: /ui/nope.js"));
    http_result_free(&r);
    /* only names of the table: nothing else is reachable, however the path is spelt */
    static const char *const outside[] = {"/ui/../metrics", "/ui/%2e%2e/metrics", "/ui/sub/index.html", "/ui/.", "/ui/ui.c"};
    for (size_t i = 0; i < sizeof outside / sizeof outside[0]; i++) {
        r = http_curl(port, "GET", outside[i], "--path-as-is");
        assert_int_equal(r.status, 404);
        http_result_free(&r);
    }

    r = http_curl(port, "POST", "/ui/index.html", "-d x=1");
    assert_int_equal(r.status, 405);
    assert_true(http_header(&r, "Allow", h, sizeof h));
    assert_string_equal(h, "GET, HEAD");
    http_result_free(&r);

    /* the API beside it still needs its token */
    r = http_curl(port, "GET", "/api/v1/jobs", "");
    assert_int_equal(r.status, 401);
    http_result_free(&r);
    pthread_mutex_lock(&fc.mu);
    int audits = fc.audits;
    pthread_mutex_unlock(&fc.mu);
    assert_int_equal(audits, 0); /* the console's files are not data: nothing to audit */
    samda_api_stop(a);
    fake_core_destroy(&fc);
}

static bool matches(const char *text, const char *pattern)
{
    regex_t re;
    assert_int_equal(regcomp(&re, pattern, REG_EXTENDED | REG_ICASE | REG_NOSUB), 0);
    bool hit = regexec(&re, text, 0, NULL, 0) == 0;
    regfree(&re);
    return hit;
}

static void every_page_present(void **state)
{
    (void)state;
    /* /ui/ is answered before the route table: no route may live under it */
    for (size_t i = 0; i < api_n_routes; i++)
        if (strcmp(api_routes[i].pattern, "/ui") == 0 || strncmp(api_routes[i].pattern, "/ui/", 4) == 0)
            fail_msg("route %s is shadowed by the console's files", api_routes[i].pattern);
    static const char *const needed[] = {"index.html", "console.css", "app.js", "overview.js", "jobs.js",
                                         "studies.js", "viewer.js", "exports.js", "adapters.js",
                                         "interactive.js", "audit.js", "rules.js"};
    for (size_t i = 0; i < sizeof needed / sizeof needed[0]; i++) {
        if (!api_ui_find(needed[i])) fail_msg("ui/%s is not embedded", needed[i]);
    }
    assert_ptr_equal(api_ui_find(""), api_ui_find("index.html"));
    assert_null(api_ui_find("index"));
}

/* What a strict policy (no 'unsafe-inline', no 'unsafe-eval', 'self' only) would block, or what
 * would make the console need the network or build HTML from data. */
static void nothing_inline(void **state)
{
    (void)state;
    for (size_t i = 0; i < api_ui_n_assets; i++) {
        const api_ui_asset *a = &api_ui_assets[i];
        const char *t = (const char *)a->data;
        assert_int_equal(strlen(t), a->size); /* text, NUL-terminated by the generator */
        if (matches(t, "https?://")) fail_msg("%s names another origin (the console works offline)", a->name);
        if (strstr(a->name, ".html")) {
            if (matches(t, "<script[^>]*>[^<]*[^<[:space:]][^<]*</script>")) fail_msg("%s: inline script", a->name);
            if (matches(t, "<script([^s>]|s[^r>]|sr[^c>])*>")) fail_msg("%s: a <script> without src", a->name);
            if (matches(t, "<style")) fail_msg("%s: a <style> element", a->name);
            if (matches(t, "[[:space:]]on[a-z]+[[:space:]]*=")) fail_msg("%s: an event-handler attribute", a->name);
            if (matches(t, "[[:space:]]style[[:space:]]*=")) fail_msg("%s: a style attribute", a->name);
            if (matches(t, "javascript:")) fail_msg("%s: a javascript: URL", a->name);
        }
        if (strstr(a->name, ".js")) {
            if (matches(t, "innerHTML|outerHTML|insertAdjacentHTML|document\\.write"))
                fail_msg("%s: HTML built from strings (use textContent and elements)", a->name);
            if (matches(t, "(^|[^A-Za-z_.])eval[[:space:]]*\\(|new[[:space:]]+Function")) fail_msg("%s: eval", a->name);
            if (matches(t, "localStorage")) fail_msg("%s: the token belongs in sessionStorage only", a->name);
            if (matches(t, "setAttribute\\([\"']style|style:[[:space:]]*[\"']"))
                fail_msg("%s: a style attribute (CSP style-src 'self' blocks it; use classes)", a->name);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(served_without_token),
        cmocka_unit_test(every_page_present),
        cmocka_unit_test(nothing_inline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
