/* Tests of phantom/npy_write.c: the exact v1.0 header, dtypes and shapes, readability by NumPy
 * (skipped when /usr/bin/python3 lacks numpy), argument errors, crash-safe replacement. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "npy_write.h"
#include "test_util.h"

static char *g_dir;

static int setup(void **state)
{
    (void)state;
    g_dir = make_tmpdir("npy");
    return g_dir ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    remove_tree(g_dir);
    free(g_dir);
    return 0;
}

static void path_in(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", g_dir, name);
}

/* Check magic, version, header dict and padding; returns the header length (data offset). */
static size_t check_header(const char *buf, size_t len, const char *dict)
{
    assert_true(len >= 64);
    assert_memory_equal(buf, "\x93NUMPY\x01\x00", 8);
    size_t hlen = (unsigned char)buf[8] | ((size_t)(unsigned char)buf[9] << 8);
    size_t total = 10 + hlen;
    assert_int_equal(total % 64, 0);
    assert_true(total <= len);
    assert_memory_equal(buf + 10, dict, strlen(dict));
    for (size_t i = 10 + strlen(dict); i < total - 1; i++)
        assert_int_equal(buf[i], ' ');
    assert_int_equal(buf[total - 1], '\n');
    return total;
}

static void test_header_and_data_int16_2d(void **state)
{
    (void)state;
    char path[512];
    path_in(path, sizeof path, "a.npy");
    int16_t data[3][5];
    for (int i = 0; i < 15; i++)
        data[i / 5][i % 5] = (int16_t)(i * 100 - 1024);
    size_t shape[2] = {3, 5};
    samda_error err;
    assert_int_equal(samda_npy_write(path, "<i2", 2, shape, data, &err), SAMDA_OK);
    size_t len = 0;
    char *buf = read_all(path, &len);
    assert_non_null(buf);
    size_t off = check_header(buf, len, "{'descr': '<i2', 'fortran_order': False, 'shape': (3, 5), }");
    assert_int_equal(len, off + sizeof data);
    const unsigned char *d = (const unsigned char *)buf + off;
    for (int i = 0; i < 15; i++) { /* little-endian on disk whatever the host */
        int16_t v = (int16_t)(d[2 * i] | (d[2 * i + 1] << 8));
        assert_int_equal(v, i * 100 - 1024);
    }
    free(buf);
    assert_int_equal(count_entries(g_dir, ".tmp."), 0);
}

static void test_shapes_and_dtypes(void **state)
{
    (void)state;
    char path[512];
    samda_error err;
    size_t len = 0;
    char *buf;

    uint8_t u8[7] = {0, 1, 2, 3, 4, 5, 255};
    size_t s1[1] = {7};
    path_in(path, sizeof path, "v.npy");
    assert_int_equal(samda_npy_write(path, "|u1", 1, s1, u8, &err), SAMDA_OK);
    buf = read_all(path, &len);
    size_t off = check_header(buf, len, "{'descr': '|u1', 'fortran_order': False, 'shape': (7,), }");
    assert_int_equal(len, off + 7);
    assert_memory_equal(buf + off, u8, 7);
    free(buf);

    float f = 1.5f;
    path_in(path, sizeof path, "s.npy");
    assert_int_equal(samda_npy_write(path, "<f4", 0, NULL, &f, &err), SAMDA_OK);
    buf = read_all(path, &len);
    off = check_header(buf, len, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }");
    assert_int_equal(len, off + 4);
    free(buf);

    size_t s3[3] = {2, 0, 4}; /* empty array: no data needed */
    path_in(path, sizeof path, "e.npy");
    assert_int_equal(samda_npy_write(path, "<f8", 3, s3, NULL, &err), SAMDA_OK);
    buf = read_all(path, &len);
    off = check_header(buf, len, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 0, 4), }");
    assert_int_equal(len, off);
    free(buf);

    size_t s8[8] = {1, 1, 1, 1, 1, 1, 1, 2};
    int32_t i32[2] = {-5, 70000};
    path_in(path, sizeof path, "m.npy");
    assert_int_equal(samda_npy_write(path, "<i4", 8, s8, i32, &err), SAMDA_OK);
    buf = read_all(path, &len);
    check_header(buf, len, "{'descr': '<i4', 'fortran_order': False, 'shape': (1, 1, 1, 1, 1, 1, 1, 2), }");
    free(buf);
}

static void test_errors(void **state)
{
    (void)state;
    char path[512];
    samda_error err;
    int16_t d[4] = {0};
    size_t shape[2] = {2, 2};
    path_in(path, sizeof path, "bad.npy");
    assert_int_equal(samda_npy_write(NULL, "<i2", 2, shape, d, &err), SAMDA_EINVAL);
    assert_int_equal(samda_npy_write("", "<i2", 2, shape, d, &err), SAMDA_EINVAL);
    assert_int_equal(samda_npy_write(path, NULL, 2, shape, d, &err), SAMDA_EINVAL);
    assert_int_equal(samda_npy_write(path, ">i2", 2, shape, d, &err), SAMDA_EINVAL);
    assert_non_null(strstr(err.message, "dtype"));
    assert_int_equal(samda_npy_write(path, "<i2", -1, shape, d, &err), SAMDA_EINVAL);
    assert_int_equal(samda_npy_write(path, "<i2", SAMDA_NPY_MAX_DIMS + 1, shape, d, &err), SAMDA_EINVAL);
    assert_int_equal(samda_npy_write(path, "<i2", 2, NULL, d, &err), SAMDA_EINVAL);
    assert_int_equal(samda_npy_write(path, "<i2", 2, shape, NULL, &err), SAMDA_EINVAL);
    size_t huge[2] = {SIZE_MAX / 2, 3};
    assert_int_equal(samda_npy_write(path, "<i2", 2, huge, d, &err), SAMDA_EINVAL);
    assert_non_null(strstr(err.message, "overflow"));
    assert_int_equal(samda_npy_write(path, "<i2", 2, shape, d, NULL), SAMDA_OK); /* err may be NULL */
    /* a missing directory is refused naming the path; nothing is left behind */
    char missing[600];
    snprintf(missing, sizeof missing, "%s/no/such/dir/x.npy", g_dir);
    samda_error_clear(&err);
    assert_int_equal(samda_npy_write(missing, "<i2", 2, shape, d, &err), SAMDA_ENOENT);
    assert_non_null(strstr(err.message, "x.npy"));
    assert_int_equal(count_entries(g_dir, ".tmp."), 0);
    /* a directory in the way of the rename: EIO, temp file removed, directory untouched */
    char subdir[600];
    snprintf(subdir, sizeof subdir, "%s/adir.npy", g_dir);
    assert_int_equal(mkdir(subdir, 0755), 0);
    assert_int_equal(samda_npy_write(subdir, "<i2", 2, shape, d, &err), SAMDA_EIO);
    assert_int_equal(count_entries(g_dir, ".tmp."), 0);
    struct stat st;
    assert_int_equal(stat(subdir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
}

static void test_replaces_existing_file(void **state)
{
    (void)state;
    char path[512];
    path_in(path, sizeof path, "replace_me.npy");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("old content that is longer than the new file will be ........................................"
          "......................................................................................",
          f);
    fclose(f);
    uint8_t d[2] = {9, 8};
    size_t shape[1] = {2};
    assert_int_equal(samda_npy_write(path, "|u1", 1, shape, d, NULL), SAMDA_OK);
    size_t len = 0;
    char *buf = read_all(path, &len);
    assert_int_equal(len, 128 + 2); /* this dict needs two 64-byte blocks */
    assert_int_equal((unsigned char)buf[128], 9);
    free(buf);
    assert_int_equal(count_entries(g_dir, "replace_me"), 1);
    assert_int_equal(count_entries(g_dir, ".tmp."), 0);
}

static void test_numpy_reads_it(void **state)
{
    (void)state;
    if (!have_numpy()) {
        print_message("skipped: /usr/bin/python3 has no numpy (apt-get install python3-numpy)\n");
        skip();
    }
    char p1[512], p2[512], p3[512], cmd[2048];
    path_in(p1, sizeof p1, "np_i2.npy");
    path_in(p2, sizeof p2, "np_u1.npy");
    path_in(p3, sizeof p3, "np_f4.npy");
    int16_t a[4][6];
    uint8_t b[2][3][4];
    float c[5];
    long sum_a = 0;
    for (int i = 0; i < 24; i++) {
        a[i / 6][i % 6] = (int16_t)(i * 37 - 500);
        sum_a += a[i / 6][i % 6];
        b[i / 12][(i / 4) % 3][i % 4] = (uint8_t)(i % 6);
    }
    for (int i = 0; i < 5; i++)
        c[i] = 0.25f * (float)i;
    size_t sa[2] = {4, 6}, sb[3] = {2, 3, 4}, sc[1] = {5};
    assert_int_equal(samda_npy_write(p1, "<i2", 2, sa, a, NULL), SAMDA_OK);
    assert_int_equal(samda_npy_write(p2, "|u1", 3, sb, b, NULL), SAMDA_OK);
    assert_int_equal(samda_npy_write(p3, "<f4", 1, sc, c, NULL), SAMDA_OK);
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import numpy, sys; "
             "a=numpy.load(sys.argv[1]); b=numpy.load(sys.argv[2]); c=numpy.load(sys.argv[3]); "
             "print(a.shape, a.dtype, int(a.sum()), int(a[1,2]), b.shape, b.dtype, int(b[1,2,3]), c.shape, c.dtype, "
             "float(c[4]), a.flags.c_contiguous)\" '%s' '%s' '%s'",
             p1, p2, p3);
    char *out = run_capture(cmd);
    assert_non_null(out);
    char expect[256];
    snprintf(expect, sizeof expect, "(4, 6) int16 %ld %d (2, 3, 4) uint8 %d (5,) float32 1.0 True", sum_a,
             8 * 37 - 500, 23 % 6);
    assert_string_equal(out, expect);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_and_data_int16_2d),
        cmocka_unit_test(test_shapes_and_dtypes),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_replaces_existing_file),
        cmocka_unit_test(test_numpy_reads_it),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
