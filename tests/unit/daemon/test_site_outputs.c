/* daemon/config.c: a site's `outputs` (seg, rtstruct, sr): the default, the bits the worker reads,
 * and the errors (file:line, the value, the rule) for unknown, repeated and incomplete lists. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

static char tmpdir[] = "/tmp/samda-test-outputs-XXXXXX";

#include "config_test_util.h"

static void default_is_seg(void **state)
{
    (void)state;
    samda_error err;
    samda_config *c = samda_config_load(NULL, NULL, &err);
    assert_non_null(c);
    assert_int_equal(samda_site_outputs(samda_config_site(c, "default")), SAMDA_OUTPUT_SEG);
    assert_int_equal(samda_site_outputs(NULL), SAMDA_OUTPUT_SEG);
    samda_config_unref(c);
}

static void lists_become_bits(void **state)
{
    (void)state;
    samda_error err;
    const char *p = write_conf("samdad.conf", "[site a]\ncalled_ae = A\noutputs = seg, RTSTRUCT,sr\n"
                               "[site b]\ncalled_ae = B\noutputs = rtstruct\n");
    const char *const ov[] = {"site.c.outputs=seg,rtstruct", "site.c.called_ae=C", NULL};
    samda_config *c = samda_config_load(p, ov, &err);
    if (!c) fail_msg("%s", err.message);
    assert_int_equal(samda_site_outputs(samda_config_site(c, "a")),
                     SAMDA_OUTPUT_SEG | SAMDA_OUTPUT_RTSTRUCT | SAMDA_OUTPUT_SR);
    assert_int_equal(samda_site_outputs(samda_config_site(c, "b")), SAMDA_OUTPUT_RTSTRUCT);
    assert_int_equal(samda_site_outputs(samda_config_site(c, "c")), SAMDA_OUTPUT_SEG | SAMDA_OUTPUT_RTSTRUCT);
    samda_config_unref(c);
}

static void errors_name_line_and_rule(void **state)
{
    (void)state;
    expect_error("[site a]\ncalled_ae = A\noutputs = seg,pdf\n",
                 ":3: [site a] outputs = pdf: must be among seg|rtstruct|sr");
    expect_error("[site a]\n\noutputs = seg,rtstruct,seg\n", ":3: [site a] outputs: seg is listed twice");
    expect_error("[site a]\noutputs = \n", ":2: [site a] outputs is empty: at least one value is required");
    expect_error("[site a]\ncalled_ae = A\n\noutputs = rtstruct,sr\n",
                 ":4: [site a] outputs: sr references the DICOM-SEG's segments, so it needs seg too "
                 "(outputs = seg,sr)");
}

static int setup(void **state)
{
    (void)state;
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char path[600];
    snprintf(path, sizeof path, "%s/samdad.conf", tmpdir);
    unlink(path);
    rmdir(tmpdir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(default_is_seg),
        cmocka_unit_test(lists_become_bits),
        cmocka_unit_test(errors_name_line_and_rule),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
