/* daemon/log.c: line format, levels, quoting, one line per event. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static char *capture(samda_logger *lg, int fds[2])
{
    static char buf[8192];
    close(fds[1]);
    ssize_t n = read(fds[0], buf, sizeof buf - 1);
    close(fds[0]);
    buf[n > 0 ? n : 0] = 0;
    (void)lg;
    return buf;
}

static void test_format_and_levels(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    unsetenv("JOURNAL_STREAM");
    samda_logger lg;
    samda_logger_init(&lg, fds[1], SAMDA_LOG_INFO);
    char q[64];
    samda_log(&lg, SAMDA_LOG_INFO, "dicom", "association \"rejected\"", "calling_ae=%s peer=%s",
              samda_log_quote(q, sizeof q, "EVIL\nAE"), "127.0.0.1");
    samda_log(&lg, SAMDA_LOG_DEBUG, "dicom", "not shown", NULL);
    samda_logger_set_level(&lg, SAMDA_LOG_DEBUG);
    samda_log(&lg, SAMDA_LOG_DEBUG, "x", "now shown", NULL);
    char *out = capture(&lg, fds);
    char *nl = strchr(out, '\n');
    assert_non_null(nl);
    assert_non_null(strstr(out, "level=info mod=dicom msg=\"association \\\"rejected\\\"\" calling_ae=\"EVIL AE\" "
                                "peer=127.0.0.1\n"));
    assert_null(strstr(out, "not shown"));
    assert_non_null(strstr(nl + 1, "level=debug mod=x msg=\"now shown\"\n"));
    assert_true(out[4] == '-' && strchr(out, 'Z') < nl); /* ISO-8601 UTC timestamp first */
}

/* Every line, whoever formats it, loses its UIDs unless log_uids is on. */
static void test_lines_without_uids(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    samda_logger lg;
    samda_logger_init(&lg, fds[1], SAMDA_LOG_INFO);
    samda_log(&lg, SAMDA_LOG_ERROR, "dcmtk", "bad value in 1.2.840.113619.2.55.3.604688119", "error=%s",
              "\"object /data/objects/1.2.3.4.5/6.7.8.9.10/11.12.13.14.15.dcm missing\" peer=10.1.2.3");
    lg.log_uids = 1;
    samda_log(&lg, SAMDA_LOG_INFO, "dicom", "stored", "sop_uid=%s", "1.2.840.113619.2.55.3.604688119");
    char *out = capture(&lg, fds);
    assert_non_null(strstr(out, "msg=\"bad value in [uid]\" error=\"object /data/objects/[uid]/[uid]/[uid].dcm "
                                "missing\" peer=10.1.2.3\n"));
    assert_non_null(strstr(out, "sop_uid=1.2.840.113619.2.55.3.604688119\n"));
}

static void test_journal_prefix_and_truncation(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    setenv("JOURNAL_STREAM", "8:123", 1);
    samda_logger lg;
    samda_logger_init(&lg, fds[1], SAMDA_LOG_INFO);
    char big[4000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    samda_log(&lg, SAMDA_LOG_WARN, "m", "long", "v=%s", big);
    char *out = capture(&lg, fds);
    assert_int_equal(strncmp(out, "<4>level=warn mod=m", 19), 0);
    size_t n = strlen(out);
    assert_true(n <= 2048);
    assert_int_equal(strcmp(out + n - 4, "...\n"), 0);
    assert_int_equal(samda_log_level_parse("warning"), SAMDA_LOG_WARN);
    assert_int_equal(samda_log_level_parse("loud"), -1);
}

/* Without log_uids: UIDs and object paths out, IPv4 addresses, versions and numbers kept. */
static void test_scrub(void **state)
{
    (void)state;
    char buf[512];
    const char *in = "series 1.2.826.0.1.3680043.10.1077.042.2.7 failed: object /var/lib/samda/objects/1.2.3/"
                     "4.5.6/7.8.9.dcm: (0028,0030) PixelSpacing 0.5\\0.5 from 10.0.0.15:104, samda 0.1.0.";
    const char *out = samda_log_scrub(in, false, "/var/lib/samda", buf, sizeof buf);
    assert_string_equal(out, "series [uid] failed: object [object]: (0028,0030) PixelSpacing 0.5\\0.5 from "
                             "10.0.0.15:104, samda 0.1.0.");
    assert_ptr_equal(samda_log_scrub(in, true, "/var/lib/samda", buf, sizeof buf), in);
    const char *plain = "nothing to hide: 255.255.255.255 and 1.2.3";
    assert_ptr_equal(samda_log_scrub(plain, false, NULL, buf, sizeof buf), plain);
    /* a long UID with few components, glued to text, at the end */
    assert_string_equal(samda_log_scrub("uid=2.25.329800735698586629295641978511506172918", false, NULL, buf, sizeof buf),
                        "uid=[uid]");
    assert_string_equal(samda_log_scrub("v1.2.3.4.5.6 x", false, NULL, buf, sizeof buf), "v1.2.3.4.5.6 x");
}

/* The gate lets the first line through, then one per interval, counting the rest. */
static void test_gate(void **state)
{
    (void)state;
    samda_log_gate g = {0};
    unsigned held = 99;
    assert_true(samda_log_gate_pass(&g, 1000, 60000, &held));
    assert_int_equal(held, 0);
    assert_false(samda_log_gate_pass(&g, 1001, 60000, &held));
    assert_false(samda_log_gate_pass(&g, 60999, 60000, &held));
    assert_true(samda_log_gate_pass(&g, 61000, 60000, &held));
    assert_int_equal(held, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_and_levels),
        cmocka_unit_test(test_journal_prefix_and_truncation),
        cmocka_unit_test(test_scrub),
        cmocka_unit_test(test_lines_without_uids),
        cmocka_unit_test(test_gate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
