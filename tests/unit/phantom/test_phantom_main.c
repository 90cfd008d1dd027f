/* Tests of phantom/phantom_main.c (`samda phantom`): every bad flag gives exit status 2 and a message
 * naming the flag; a small run writes the documented files, deterministically, readable by NumPy. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>

#include "phantom.h"
#include "test_util.h"

static char g_err[4096];

/* Run samda_phantom_main on a NULL-terminated list, capturing stderr into g_err. */
static int run_main(const char *first, ...)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = (char *)"phantom";
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && argc < 31; a = va_arg(ap, const char *))
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;

    char tmpl[] = "/tmp/samda_phantom_stderr_XXXXXX";
    int fd = mkstemp(tmpl);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    int rc = samda_phantom_main(argc, argv);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    lseek(fd, 0, SEEK_SET);
    ssize_t n = read(fd, g_err, sizeof g_err - 1);
    g_err[n > 0 ? n : 0] = '\0';
    close(fd);
    unlink(tmpl);
    return rc;
}

#define EXPECT_USAGE(word, ...)                                                                                         \
    do {                                                                                                                \
        int rc_ = run_main(__VA_ARGS__, (const char *)NULL);                                                            \
        if (rc_ != 2 || !strstr(g_err, word))                                                                           \
            fail_msg("expected exit 2 and a message with '%s', got %d: %s", word, rc_, g_err);                          \
    } while (0)

static void test_bad_flags(void **state)
{
    (void)state;
    const char *o = "/nonexistent-samda-dir";
    EXPECT_USAGE("--out is required", "--site", "A", "--count", "1", "--seed", "1");
    EXPECT_USAGE("--site is required", "--out", o, "--count", "1", "--seed", "1");
    EXPECT_USAGE("--count is required", "--out", o, "--site", "A", "--seed", "1");
    EXPECT_USAGE("--seed is required", "--out", o, "--site", "A", "--count", "1");
    EXPECT_USAGE("--count: 0 is outside 1..100000", "--out", o, "--site", "A", "--count", "0", "--seed", "1");
    EXPECT_USAGE("--count: 100001 is outside", "--out", o, "--site", "A", "--count", "100001", "--seed", "1");
    EXPECT_USAGE("--count: 'abc'", "--out", o, "--site", "A", "--count", "abc", "--seed", "1");
    EXPECT_USAGE("--count: '12x'", "--out", o, "--site", "A", "--count=12x", "--seed", "1");
    EXPECT_USAGE("--count: '99999999999999999999999'", "--out", o, "--site", "A", "--count",
                 "99999999999999999999999", "--seed", "1");
    EXPECT_USAGE("--size: 31 is outside 32..1024", "--out", o, "--site", "A", "--count", "1", "--seed", "1",
                 "--size", "31");
    EXPECT_USAGE("--size: 1025", "--out", o, "--site", "A", "--count", "1", "--seed", "1", "--size=1025");
    EXPECT_USAGE("--slices-per-body: 0", "--out", o, "--site", "A", "--count", "1", "--seed", "1",
                 "--slices-per-body", "0");
    EXPECT_USAGE("--slices-per-body: 1025", "--out", o, "--site", "A", "--count", "1", "--seed", "1",
                 "--slices-per-body", "1025");
    EXPECT_USAGE("--seed: '-1'", "--out", o, "--site", "A", "--count", "1", "--seed", "-1");
    EXPECT_USAGE("--seed: '0x1g'", "--out", o, "--site", "A", "--count", "1", "--seed", "0x1g");
    EXPECT_USAGE("--seed: '18446744073709551616'", "--out", o, "--site", "A", "--count", "1", "--seed",
                 "18446744073709551616");
    EXPECT_USAGE("--seed: '0x'", "--out", o, "--site", "A", "--count", "1", "--seed", "0x");
    EXPECT_USAGE("--seed: ' 5'", "--out", o, "--site", "A", "--count", "1", "--seed", " 5");
    EXPECT_USAGE("--site: '../x'", "--out", o, "--site", "../x", "--count", "1", "--seed", "1");
    EXPECT_USAGE("--site: ''", "--out", o, "--site", "", "--count", "1", "--seed", "1");
    EXPECT_USAGE("--dicom: needs the DICOM writer", "--out", o, "--site", "A", "--count", "1", "--seed", "1",
                 "--dicom");
    EXPECT_USAGE("--count given twice", "--out", o, "--site", "A", "--count", "1", "--count", "2", "--seed", "1");
    EXPECT_USAGE("--seed: missing value", "--out", o, "--site", "A", "--count", "1", "--seed");
    EXPECT_USAGE("unknown option '--colour'", "--out", o, "--colour", "red");
    EXPECT_USAGE("unexpected argument 'stray'", "stray");
    EXPECT_USAGE("--out: empty", "--out=", "--site", "A", "--count", "1", "--seed", "1");
}

static void test_help(void **state)
{
    (void)state;
    assert_int_equal(run_main("--help", (const char *)NULL), 0);
    assert_int_equal(run_main("--count", "0", "-h", (const char *)NULL), 2); /* flags are checked in order */
}

static void test_output_dir_problems(void **state)
{
    (void)state;
    char *dir = make_tmpdir("phmain");
    char sub[600], file[600];
    snprintf(sub, sizeof sub, "%s/a/b", dir); /* parent missing: one level only */
    assert_int_equal(run_main("--out", sub, "--site", "A", "--count", "1", "--seed", "1", (const char *)NULL), 1);
    assert_non_null(strstr(g_err, "creating output directory"));
    snprintf(file, sizeof file, "%s/plain", dir);
    FILE *f = fopen(file, "w");
    fclose(f);
    assert_int_equal(run_main("--out", file, "--site", "A", "--count", "1", "--seed", "1", (const char *)NULL), 1);
    assert_non_null(strstr(g_err, "not a directory"));
    remove_tree(dir);
    free(dir);
}

static void test_writes_dataset(void **state)
{
    (void)state;
    char *dir = make_tmpdir("phmain");
    char out1[600], out2[600], path1[700], path2[700];
    snprintf(out1, sizeof out1, "%s/one", dir);
    snprintf(out2, sizeof out2, "%s/two", dir);
    for (int run = 0; run < 2; run++)
        assert_int_equal(run_main("--out", run ? out2 : out1, "--site", "B", "--count", "5", "--seed", "0x2a",
                                  "--slices-per-body=3", "--size", "64", (const char *)NULL),
                         0);
    /* 5 slices of ceil(5/3) = 2 bodies: 3 + 2, each an image and a mask, plus the manifest */
    assert_int_equal(count_entries(out1, ""), 11);
    assert_int_equal(count_entries(out1, ".tmp."), 0);
    static const char *const names[] = {"B_00000_0000", "B_00000_0001", "B_00000_0002", "B_00001_0000",
                                        "B_00001_0001"};
    for (size_t i = 0; i < 5; i++)
        for (int kind = 0; kind < 2; kind++) {
            snprintf(path1, sizeof path1, "%s/%s.%s.npy", out1, names[i], kind ? "mask" : "image");
            snprintf(path2, sizeof path2, "%s/%s.%s.npy", out2, names[i], kind ? "mask" : "image");
            size_t l1, l2;
            char *a = read_all(path1, &l1), *b = read_all(path2, &l2);
            if (!a || !b)
                fail_msg("missing %s", path1);
            assert_int_equal(l1, l2); /* same seed: same bytes */
            assert_memory_equal(a, b, l1);
            assert_int_equal(l1, 128 + 64 * 64 * (kind ? 1 : 2));
            free(a);
            free(b);
        }
    snprintf(path1, sizeof path1, "%s/phantom.json", out1);
    snprintf(path2, sizeof path2, "%s/phantom.json", out2);
    char *j1 = read_all(path1, NULL), *j2 = read_all(path2, NULL);
    assert_non_null(j1);
    assert_string_equal(j1, j2);
    assert_non_null(strstr(j1, "\"seed\": 42"));
    assert_non_null(strstr(j1, "\"64033007\""));
    free(j1);
    free(j2);

    /* "010" is decimal ten, not octal eight */
    snprintf(out2, sizeof out2, "%s/dec", dir);
    assert_int_equal(run_main("--out", out2, "--site", "A", "--count", "1", "--seed", "010", "--size", "32",
                              (const char *)NULL),
                     0);
    snprintf(path2, sizeof path2, "%s/phantom.json", out2);
    j1 = read_all(path2, NULL);
    assert_non_null(strstr(j1, "\"seed\": 10,"));
    free(j1);

    /* another seed, other images */
    snprintf(out2, sizeof out2, "%s/three", dir);
    assert_int_equal(run_main("--out", out2, "--site", "B", "--count", "1", "--seed", "43", "--size", "64",
                              (const char *)NULL),
                     0);
    snprintf(path1, sizeof path1, "%s/B_00000_0000.mask.npy", out1);
    snprintf(path2, sizeof path2, "%s/B_00000_0000.mask.npy", out2);
    char *a = read_all(path1, NULL), *b = read_all(path2, NULL);
    assert_memory_not_equal(a, b, 128 + 64 * 64);
    free(a);
    free(b);

    if (have_numpy()) {
        char cmd[2048];
        snprintf(cmd, sizeof cmd,
                 "/usr/bin/python3 -c \"import numpy, json, glob, sys; d=sys.argv[1]; "
                 "m=json.load(open(d+'/phantom.json')); "
                 "ims=[numpy.load(d+'/'+c['image']) for c in m['cases']]; "
                 "mks=[numpy.load(d+'/'+c['mask']) for c in m['cases']]; "
                 "print(m['count'], m['bodies'], len(m['cases']), ims[0].shape, ims[0].dtype, mks[0].dtype, "
                 "int(max(k.max() for k in mks)) <= 5, len(m['labels']), m['labels'][4]['code'], "
                 "m['style']['noise_sigma_hu'], [c['slice'] for c in m['cases']], "
                 "bool(min(i.min() for i in ims) >= -1024))\" '%s'",
                 out1);
        char *outp = run_capture(cmd);
        assert_non_null(outp);
        assert_string_equal(outp, "5 2 5 (64, 64) int16 uint8 True 5 64131007 25 [0, 1, 2, 0, 1] True");
        free(outp);
    } else {
        print_message("numpy checks skipped: /usr/bin/python3 has no numpy\n");
    }
    remove_tree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_flags),
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_output_dir_problems),
        cmocka_unit_test(test_writes_dataset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
