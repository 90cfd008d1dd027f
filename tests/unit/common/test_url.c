/* Tests of common/url.c: http(s) URLs with their default and explicit ports, IPv6 hosts and paths
 * (trailing '/' dropped); every refusal says why. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "url.h"

static void test_valid(void **state)
{
    (void)state;
    samda_url u;
    assert_true(samda_url_parse("https://pacs.example.org/dicom-web/", &u, NULL, 0));
    assert_true(u.https);
    assert_string_equal(u.host, "pacs.example.org");
    assert_int_equal(u.port, 443);
    assert_string_equal(u.path, "/dicom-web");
    assert_true(samda_url_parse("http://127.0.0.1:8042", &u, NULL, 0));
    assert_false(u.https);
    assert_int_equal(u.port, 8042);
    assert_string_equal(u.path, "");
    assert_true(samda_url_parse("http://[::1]:9000/a/b", &u, NULL, 0));
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 9000);
    assert_string_equal(u.path, "/a/b");
}

static void test_refused(void **state)
{
    (void)state;
    static const struct { const char *url, *why; } bad[] = {
        {"ftp://h/x", "http:// or https://"},
        {"http://user:pw@h/x", "user information"},
        {"http://h:0/", "1..65535"},
        {"http://h:99999/", "1..65535"},
        {"http://h:80x/", "1..65535"},
        {"http://h/x?a=1", "query"},
        {"http://h /x", "space"},
        {"http:///x", "host"},
        {"http://h_x/", "host"},
        {"http://[::1/", "IPv6"},
        {"", "empty"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        samda_url u;
        char why[128] = "";
        assert_false(samda_url_parse(bad[i].url, &u, why, sizeof why));
        if (!strstr(why, bad[i].why)) fail_msg("%s: '%s' does not say '%s'", bad[i].url, why, bad[i].why);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_valid), cmocka_unit_test(test_refused)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
