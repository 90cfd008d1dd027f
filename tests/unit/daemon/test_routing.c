/* daemon/routing.c without a store: the off-peak window the worker consults before it takes an
 * off-peak job, in local time, spanning midnight or not, and a rule's job parameters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "routing.h"

/* 2026-12-07 at hh:mm in the TZ set below, in ms. */
static int64_t at(int hh, int mm)
{
    struct tm tm = {.tm_year = 126, .tm_mon = 11, .tm_mday = 7, .tm_hour = hh, .tm_min = mm, .tm_isdst = -1};
    return (int64_t)mktime(&tm) * 1000;
}

static samda_config *with_window(const char *w)
{
    char set[64];
    snprintf(set, sizeof set, "routing.off_peak=%s", w);
    const char *ov[] = {set, NULL};
    samda_error err;
    samda_config *c = samda_config_load(NULL, ov, &err);
    if (!c) fail_msg("%s", err.message);
    return c;
}

static void off_peak_window(void **state)
{
    (void)state;
    setenv("TZ", "Europe/Berlin", 1);
    tzset();
    samda_config *c = with_window("20:00-06:00"); /* across midnight */
    assert_true(samdad_off_peak_open(c, at(23, 30)));
    assert_true(samdad_off_peak_open(c, at(20, 0)));
    assert_true(samdad_off_peak_open(c, at(5, 59)));
    assert_false(samdad_off_peak_open(c, at(6, 0)));
    assert_false(samdad_off_peak_open(c, at(12, 0)));
    samda_config_unref(c);
    c = with_window("12:15-13:45"); /* within a day */
    assert_true(samdad_off_peak_open(c, at(12, 15)));
    assert_true(samdad_off_peak_open(c, at(13, 44)));
    assert_false(samdad_off_peak_open(c, at(13, 45)));
    assert_false(samdad_off_peak_open(c, at(23, 0)));
    samda_config_unref(c);
    c = with_window("00:00-00:00"); /* always */
    assert_true(samdad_off_peak_open(c, at(9, 0)));
    samda_config_unref(c);
}

static void rule_params(void **state)
{
    (void)state;
    const char *ov[] = {"rule.r.match=Modality = CT", "rule.r.labels=liver,spleen", "rule.r.outputs=seg,sr",
                        "rule.r.priority=off-peak", NULL};
    samda_error err;
    samda_config *c = samda_config_load(NULL, ov, &err);
    if (!c) fail_msg("%s", err.message);
    samdad_route_action a = {.rule = samda_config_rule(c, "r"), .site = samda_config_site(c, "default")};
    char *p = samdad_route_params(&a);
    assert_string_equal(p, "{\"labels\":[\"liver\",\"spleen\"],\"outputs\":[\"seg\",\"sr\"],\"rule\":\"r\"}");
    free(p);
    a.rule = NULL; /* the site's own selection: no parameters */
    assert_null(samdad_route_params(&a));
    samda_config_unref(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(off_peak_window),
        cmocka_unit_test(rule_params),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
