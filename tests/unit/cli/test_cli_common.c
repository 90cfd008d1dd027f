/* Tests of cli/cli_common.c: --config/--data-dir taken out of any position, ids, the store opened
 * from --data-dir alone, JSON printing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "storage.h"

static void test_take_data_opts(void **state)
{
    (void)state;
    char *argv[] = {"jobs", "--state", "done", "-d", "/srv/d", "--kind", "segment", "--config", "/etc/s.conf", NULL};
    int argc = 9;
    cli_data_opts o = {0};
    cli_take_data_opts(&argc, argv, &o);
    assert_int_equal(argc, 5);
    assert_string_equal(o.data_dir, "/srv/d");
    assert_string_equal(o.config, "/etc/s.conf");
    assert_string_equal(argv[0], "jobs");
    assert_string_equal(argv[1], "--state");
    assert_string_equal(argv[2], "done");
    assert_string_equal(argv[3], "--kind");
    assert_string_equal(argv[4], "segment");
    assert_null(argv[5]);

    /* without a value the option stays, for the command to refuse */
    char *argv2[] = {"series", "-c", "/a", "--data-dir", NULL};
    argc = 4;
    cli_data_opts o2 = {0};
    cli_take_data_opts(&argc, argv2, &o2);
    assert_int_equal(argc, 2);
    assert_string_equal(o2.config, "/a");
    assert_null(o2.data_dir);
    assert_string_equal(argv2[1], "--data-dir");
}

static void test_parse_id(void **state)
{
    (void)state;
    long long v = 0;
    assert_true(cli_parse_id("samda x", "an id", "42", &v));
    assert_int_equal(v, 42);
    assert_false(cli_parse_id("samda x", "an id", "0", &v));
    assert_false(cli_parse_id("samda x", "an id", "-3", &v));
    assert_false(cli_parse_id("samda x", "an id", "", &v));
    assert_false(cli_parse_id("samda x", "an id", "7x", &v));
    assert_false(cli_parse_id("samda x", "an id", "99999999999999999999", &v));
    assert_int_equal(v, 42);
}

static void test_open_store(void **state)
{
    (void)state;
    char dir[] = "/tmp/samda-test-cli-XXXXXX";
    assert_non_null(mkdtemp(dir));
    cli_data_opts o = {.data_dir = dir};
    samda_store *s = cli_open_store(&o);
    assert_non_null(s);
    samda_store_close(s);

    cli_data_opts bad = {.config = "/nonexistent/samdad.conf"};
    assert_null(cli_open_store(&bad));

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_print_json(void **state)
{
    (void)state;
    assert_int_equal(cli_print_json(json_pack("{s:i}", "a", 1), JSON_COMPACT), CLI_EXIT_OK);
    assert_int_equal(cli_print_json(NULL, 0), CLI_EXIT_FAIL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_take_data_opts),
        cmocka_unit_test(test_parse_id),
        cmocka_unit_test(test_open_store),
        cmocka_unit_test(test_print_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
