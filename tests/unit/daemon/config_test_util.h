/* Helpers shared by the configuration tests (test_config.c, test_site_outputs.c): a file written into
 * the test's scratch folder, and a load that must fail with exactly one message. Header-only (static
 * functions) so each test stays one executable; the including file defines `tmpdir`, the mkdtemp
 * template of its scratch folder, before including it. */
#ifndef SAMDA_CONFIG_TEST_UTIL_H
#define SAMDA_CONFIG_TEST_UTIL_H

#include <stdio.h>

#include "config.h"

/* tmpdir/name with text in it; the path is valid until the next call. */
static const char *write_conf(const char *name, const char *text)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* Load text, expect failure with exactly this message (after the file name). */
static void expect_error(const char *text, const char *suffix)
{
    const char *p = write_conf("bad.conf", text);
    samda_error err;
    samda_config *c = samda_config_load(p, NULL, &err);
    if (c) fail_msg("expected an error '%s' for:\n%s", suffix, text);
    assert_int_equal(err.code, SAMDA_ECONFIG);
    char want[600];
    snprintf(want, sizeof want, "%s%s", p, suffix);
    assert_string_equal(err.message, want);
}

#endif
