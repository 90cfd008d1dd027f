/* Tests of common/npy_format.c: round trips through memory and files for every dtype, the exact
 * header numpy writes, Fortran order and byte order, float conversion, and each malformed header
 * refused with a message naming its field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "npy_format.h"

/* A fresh directory under $TMPDIR or /tmp (free the string after remove_tree). */
static char *make_tmpdir(const char *tag)
{
    const char *base = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    size_t n = strlen(base) + strlen(tag) + 32;
    char *dir = malloc(n);
    if (dir)
        snprintf(dir, n, "%s/samda_%s_XXXXXX", base, tag);
    if (dir && !mkdtemp(dir)) {
        free(dir);
        dir = NULL;
    }
    return dir;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void remove_tree(const char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* The whole file in a malloc'ed buffer; NULL if unreadable. */
static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf)
        *len = (size_t)n;
    return buf;
}

/* Entries of dir whose name contains part. */
static int count_entries(const char *dir, const char *part)
{
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d)) != NULL;)
        n += strstr(e->d_name, part) != NULL;
    if (d)
        closedir(d);
    return n;
}

/* A .npy image: magic, version major, the header text as given (no padding), then data. */
static unsigned char *file_of(const char *header, const void *data, size_t n_data, int major, size_t *len)
{
    size_t h = strlen(header), pre = major == 1 ? 10 : 12;
    unsigned char *b = malloc(pre + h + n_data + 1);
    assert_non_null(b);
    memcpy(b, "\x93NUMPY", 6);
    b[6] = (unsigned char)major;
    b[7] = 0;
    b[8] = (unsigned char)h;
    b[9] = (unsigned char)(h >> 8);
    if (major > 1) {
        b[10] = (unsigned char)(h >> 16);
        b[11] = (unsigned char)(h >> 24);
    }
    memcpy(b + pre, header, h);
    if (n_data)
        memcpy(b + pre + h, data, n_data);
    *len = pre + h + n_data;
    return b;
}

/* Header + data check of an in-memory file, as a reader of a whole file does. */
static samda_status parse_all(const unsigned char *b, size_t n, samda_npy_header *h, samda_error *err)
{
    samda_status st = samda_npy_header_parse(b, n, n, h, err);
    return st == SAMDA_OK ? samda_npy_data_check(h, n - h->data_offset, err) : st;
}

static void test_dtypes(void **state)
{
    (void)state;
    static const struct {
        samda_npy_dtype dt;
        const char *descr;
        size_t size;
    } all[] = {{SAMDA_NPY_F16, "<f2", 2}, {SAMDA_NPY_F32, "<f4", 4}, {SAMDA_NPY_F64, "<f8", 8},
               {SAMDA_NPY_I8, "|i1", 1},  {SAMDA_NPY_I16, "<i2", 2}, {SAMDA_NPY_I32, "<i4", 4},
               {SAMDA_NPY_I64, "<i8", 8}, {SAMDA_NPY_U8, "|u1", 1},  {SAMDA_NPY_U16, "<u2", 2},
               {SAMDA_NPY_U32, "<u4", 4}, {SAMDA_NPY_U64, "<u8", 8}, {SAMDA_NPY_BOOL, "|b1", 1}};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        assert_string_equal(samda_npy_dtype_descr(all[i].dt), all[i].descr);
        assert_int_equal(samda_npy_dtype_size(all[i].dt), all[i].size);
        samda_npy_dtype dt = SAMDA_NPY_BOOL;
        assert_true(samda_npy_dtype_from_descr(all[i].descr, &dt));
        assert_int_equal(dt, all[i].dt);
    }
    samda_npy_dtype dt = SAMDA_NPY_F32;
    assert_false(samda_npy_dtype_from_descr(">i2", &dt));
    assert_false(samda_npy_dtype_from_descr("i2", &dt));
    assert_false(samda_npy_dtype_from_descr(NULL, &dt));
    assert_int_equal(dt, SAMDA_NPY_F32);
    assert_string_equal(samda_npy_dtype_descr((samda_npy_dtype)99), "?");
}

static void test_header_build_exact(void **state)
{
    (void)state;
    char buf[SAMDA_NPY_HEADER_BUILD_CAP];
    size_t len = 0;
    samda_error err;
    uint64_t s2[2] = {3, 5}, s1[1] = {7};
    assert_int_equal(samda_npy_header_build(SAMDA_NPY_I16, 2, s2, buf, sizeof buf, &len, &err), SAMDA_OK);
    assert_int_equal(len, 128); /* 10 + 60 + 1 bytes round up to two 64-byte blocks */
    assert_memory_equal(buf, "\x93NUMPY\x01\x00\x76\x00", 10);
    const char *dict = "{'descr': '<i2', 'fortran_order': False, 'shape': (3, 5), }";
    assert_memory_equal(buf + 10, dict, strlen(dict));
    for (size_t i = 10 + strlen(dict); i < len - 1; i++)
        assert_int_equal(buf[i], ' ');
    assert_int_equal(buf[len - 1], '\n');
    assert_int_equal(samda_npy_header_build(SAMDA_NPY_U8, 1, s1, buf, sizeof buf, &len, &err), SAMDA_OK);
    assert_memory_equal(buf + 10, "{'descr': '|u1', 'fortran_order': False, 'shape': (7,), }", 57);
    assert_int_equal(len, 128);
    assert_int_equal(samda_npy_header_build(SAMDA_NPY_F32, 0, NULL, buf, sizeof buf, &len, &err), SAMDA_OK);
    assert_memory_equal(buf + 10, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }", 55);
    assert_int_equal(len, 128);

    /* 64 dimensions of 20 digits still fit the documented capacity */
    uint64_t big[SAMDA_NPY_MAX_NDIM];
    for (int i = 0; i < SAMDA_NPY_MAX_NDIM; i++)
        big[i] = i ? 1 : 0; /* product 0: no overflow, long text only where it matters */
    big[1] = 10000000000000000000ull;
    assert_int_equal(samda_npy_header_build(SAMDA_NPY_U8, SAMDA_NPY_MAX_NDIM, big, buf, sizeof buf, &len, &err),
                     SAMDA_OK);
    assert_true(len <= SAMDA_NPY_HEADER_BUILD_CAP && len % 64 == 0);

    /* refusals name the problem */
    assert_int_equal(samda_npy_header_build(SAMDA_NPY_U8, SAMDA_NPY_MAX_NDIM + 1, big, buf, sizeof buf, &len, &err),
                     SAMDA_EINVAL);
    assert_non_null(strstr(err.message, "ndim 65 outside 0..64"));
    assert_int_equal(samda_npy_header_build(SAMDA_NPY_U8, 2, NULL, buf, sizeof buf, &len, &err), SAMDA_EINVAL);
    assert_non_null(strstr(err.message, "no shape"));
    uint64_t huge[2] = {UINT64_MAX / 2, 3};
    assert_int_equal(samda_npy_header_build(SAMDA_NPY_U8, 2, huge, buf, sizeof buf, &len, &err), SAMDA_EINVAL);
    assert_non_null(strstr(err.message, "shape overflows"));
    uint64_t half[1] = {(uint64_t)INT64_MAX / 2};
    assert_int_equal(samda_npy_header_build(SAMDA_NPY_F32, 1, half, buf, sizeof buf, &len, &err), SAMDA_EINVAL);
    assert_int_equal(samda_npy_header_build(SAMDA_NPY_I16, 2, s2, buf, 32, &len, &err), SAMDA_EINVAL);
    assert_non_null(strstr(err.message, "128 bytes needed, 32 available"));
    assert_int_equal(samda_npy_header_build((samda_npy_dtype)42, 2, s2, buf, sizeof buf, &len, &err), SAMDA_EINVAL);
    assert_non_null(strstr(err.message, "dtype 42"));
}

/* Every dtype and a few shapes through header_build + parse in memory, and save + load on disk. */
static void test_round_trip(void **state)
{
    (void)state;
    char *dir = make_tmpdir("npyfmt");
    assert_non_null(dir);
    char path[512];
    snprintf(path, sizeof path, "%s/a.npy", dir);
    static const uint64_t shapes[][3] = {{0, 0, 0}, {5, 0, 0}, {2, 3, 4}, {0, 3, 0}};
    static const int ndims[] = {0, 1, 3, 2};
    for (int dt = SAMDA_NPY_F16; dt <= SAMDA_NPY_BOOL; dt++) {
        for (size_t k = 0; k < 4; k++) {
            size_t es = samda_npy_dtype_size((samda_npy_dtype)dt), numel = 1;
            for (int d = 0; d < ndims[k]; d++)
                numel *= shapes[k][d];
            size_t nb = numel * es;
            unsigned char *data = malloc(nb + 1);
            for (size_t i = 0; i < nb; i++)
                data[i] = (unsigned char)(dt == SAMDA_NPY_BOOL ? i % 2 : i * 37 + 1);

            char head[SAMDA_NPY_HEADER_BUILD_CAP];
            size_t hlen;
            samda_error err;
            assert_int_equal(samda_npy_header_build((samda_npy_dtype)dt, ndims[k], shapes[k], head, sizeof head, &hlen,
                                                    &err),
                             SAMDA_OK);
            unsigned char *file = malloc(hlen + nb + 1);
            memcpy(file, head, hlen);
            memcpy(file + hlen, data, nb);
            samda_npy_header h;
            assert_int_equal(parse_all(file, hlen + nb, &h, &err), SAMDA_OK);
            assert_int_equal(h.major, 1);
            assert_int_equal(h.dtype, dt);
            assert_int_equal(h.ndim, ndims[k]);
            for (int d = 0; d < ndims[k]; d++)
                assert_int_equal(h.shape[d], shapes[k][d]);
            assert_int_equal(h.numel, numel);
            assert_int_equal(h.data_bytes, nb);
            assert_int_equal(h.data_offset, hlen);
            assert_false(h.fortran_order);
            free(file);

            assert_int_equal(samda_npy_save(path, (samda_npy_dtype)dt, ndims[k], shapes[k], data, &err), SAMDA_OK);
            void *back = NULL;
            assert_int_equal(samda_npy_load(path, UINT64_MAX, &h, &back, &err), SAMDA_OK);
            assert_non_null(back);
            assert_int_equal(h.data_bytes, nb);
            if (nb)
                assert_memory_equal(back, data, nb);
            free(back);
            free(data);
        }
    }
    assert_int_equal(count_entries(dir, ".tmp."), 0);
    remove_tree(dir);
    free(dir);
}

/* Files numpy writes that samda does not: versions 2.0/3.0, Fortran order, big-endian, '=' order,
 * Python 2 longs, double quotes, a scalar. */
static void test_variants(void **state)
{
    (void)state;
    samda_npy_header h;
    samda_error err;
    size_t n;
    /* np.arange(6, dtype='>i2').reshape(2, 3) in Fortran order */
    const unsigned char be_f[] = {0, 0, 0, 3, 0, 1, 0, 4, 0, 2, 0, 5};
    unsigned char *f = file_of("{'descr': '>i2', 'fortran_order': True, 'shape': (2, 3), }          \n", be_f,
                               sizeof be_f, 1, &n);
    assert_int_equal(parse_all(f, n, &h, &err), SAMDA_OK);
    assert_true(h.fortran_order);
    int16_t out[6];
    samda_npy_data_to_native(&h, f + h.data_offset, out);
    for (int i = 0; i < 6; i++)
        assert_int_equal(out[i], i);
    float fl[6];
    samda_npy_to_float(h.dtype, out, 6, fl);
    assert_true(fl[5] == 5.0f);
    free(f);

    /* Fortran order in 3-D: element (i,j,k) stored at i + 2j + 6k, version 2.0 */
    float d3[24], want[24];
    for (int k = 0; k < 4; k++)
        for (int j = 0; j < 3; j++)
            for (int i = 0; i < 2; i++)
                d3[i + 2 * j + 6 * k] = want[i * 12 + j * 4 + k] = (float)(100 * i + 10 * j + k);
    f = file_of("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3, 4), }\n", d3, sizeof d3, 2, &n);
    assert_int_equal(parse_all(f, n, &h, &err), SAMDA_OK);
    assert_int_equal(h.major, 2);
    float c3[24];
    samda_npy_data_to_native(&h, f + h.data_offset, c3);
    assert_memory_equal(c3, want, sizeof want);
    free(f);

    /* version 3.0, big-endian f8, double quotes, Python 2 long */
    const unsigned char be8[] = {0x3f, 0xf8, 0, 0, 0, 0, 0, 0};
    f = file_of("{\"descr\": \">f8\", \"fortran_order\": False, \"shape\": (1L,), }\n", be8, 8, 3, &n);
    assert_int_equal(parse_all(f, n, &h, &err), SAMDA_OK);
    double d;
    samda_npy_data_to_native(&h, f + h.data_offset, &d);
    assert_true(d == 1.5);
    free(f);

    /* '=' is native order; a scalar is shape () with one element */
    const unsigned char sc[] = {0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    f = file_of("{'descr': '<i8', 'fortran_order': False, 'shape': (), }\n", sc, 8, 1, &n);
    assert_int_equal(parse_all(f, n, &h, &err), SAMDA_OK);
    assert_int_equal(h.ndim, 0);
    assert_int_equal(h.numel, 1);
    int64_t v;
    samda_npy_data_to_native(&h, f + h.data_offset, &v);
    assert_int_equal(v, -2);
    free(f);
    f = file_of("{'descr': '=u2', 'fortran_order': False, 'shape': (2,)}\n", "\x01\x00\x00\x01", 4, 1, &n);
    assert_int_equal(parse_all(f, n, &h, &err), SAMDA_OK);
    assert_false(h.swap);
    free(f);
}

static void test_floats(void **state)
{
    (void)state;
    assert_int_equal(samda_npy_float_to_half(1.0f), 0x3c00);
    assert_int_equal(samda_npy_float_to_half(-2.0f), 0xc000);
    assert_int_equal(samda_npy_float_to_half(65504.0f), 0x7bff);
    assert_int_equal(samda_npy_float_to_half(1e6f), 0x7c00);
    assert_int_equal(samda_npy_float_to_half(1.00048828125f), 0x3c00); /* tie to even */
    assert_true(samda_npy_half_to_float(0x0001) == 5.960464477539063e-08f);
    int mismatches = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        if (((h >> 10) & 0x1f) == 0x1f && (h & 0x3ff))
            continue; /* NaN payloads */
        if (samda_npy_float_to_half(samda_npy_half_to_float((uint16_t)h)) != h)
            mismatches++;
    }
    assert_int_equal(mismatches, 0);

    uint16_t h2[2] = {0x3c00, 0xc000};
    uint64_t u8v[2] = {0, 1ull << 40};
    int8_t i1[2] = {-128, 127};
    unsigned char b1[2] = {0, 7};
    float out[2];
    samda_npy_to_float(SAMDA_NPY_F16, h2, 2, out);
    assert_true(out[0] == 1.0f && out[1] == -2.0f);
    samda_npy_to_float(SAMDA_NPY_U64, u8v, 2, out);
    assert_true(out[1] == 1099511627776.0f);
    samda_npy_to_float(SAMDA_NPY_I8, i1, 2, out);
    assert_true(out[0] == -128.0f && out[1] == 127.0f);
    samda_npy_to_float(SAMDA_NPY_BOOL, b1, 2, out);
    assert_true(out[0] == 0.0f && out[1] == 1.0f);
}

/* Each malformed header is refused with a message naming the field. */
static void test_bad_headers(void **state)
{
    (void)state;
    static const struct {
        const char *header;
        size_t n_data;
        const char *needle;
    } cases[] = {
        {"{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }\n", 8, "'descr' '<c8' is not supported"},
        {"{'descr': '<U1', 'fortran_order': False, 'shape': (1,), }\n", 4, "'descr' '<U1' is not supported"},
        {"{'descr': 'f4', 'fortran_order': False, 'shape': (1,), }\n", 4, "'descr' 'f4' is not a plain numeric dtype"},
        {"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }\n", 4, "'descr': structured"},
        {"{'descr': '*f4', 'fortran_order': False, 'shape': (1,), }\n", 4, "'descr' '*f4' has an unknown byte-order mark"},
        {"{'descr': 7, 'fortran_order': False, 'shape': (1,), }\n", 4, "'descr': expected a quoted string"},
        {"{'descr': '<f4', 'fortran_order': Maybe, 'shape': (1,), }\n", 4, "'fortran_order': expected True or False"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }\n", 4, "'shape': expected a non-negative integer"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': [1], }\n", 4, "'shape': expected a tuple of integers"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1; 2), }\n", 4, "'shape': expected ',' or ')'"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }\n", 4,
         "'shape': integer overflows 64 bits"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (9223372036854775808,), }\n", 4,
         "'shape': integer overflows 64 bits"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }\n", 4,
         "'shape' (4294967296, 4294967296, 4294967296) overflows"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (2305843009213693952,), }\n", 4, "'shape' (2305843009213693952,) overflows"},
        {"{'descr': '<f4', 'fortran_order': False}\n", 4, "'shape' missing"},
        {"{'descr': '<f4', 'shape': (1,)}\n", 4, "'fortran_order' missing"},
        {"{'fortran_order': False, 'shape': (1,)}\n", 4, "'descr' missing"},
        {"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}\n", 4, "'descr' given twice"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}\n", 4, "unexpected key 'x'"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,)} junk\n", 4, "unexpected text after the dict"},
        {"{'descr: '<f4'", 4, "'descr: ': expected ':'"},
        {"('descr', '<f4')", 4, "expected a dict literal"},
        {"{'descr': '<f4' 'fortran_order': False}", 4, "expected ',' or '}'"},
        {"{'descr': '<f\\x34'}", 4, "'descr': escapes are not supported"},
        {"{'descr': '<f4", 4, "'descr': unterminated string"},
        {"{descr: '<f4'}", 4, "key: expected a quoted string"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n", 4,
         "data: shape (2,) of <f4 needs 8 bytes but 4 follow the header (truncated?)"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }\n", 5, "data: 1 unexpected bytes after the array"},
    };
    unsigned char zeros[16] = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n;
        unsigned char *f = file_of(cases[i].header, zeros, cases[i].n_data, 1, &n);
        samda_npy_header h;
        samda_error err = {SAMDA_OK, ""};
        samda_status st = parse_all(f, n, &h, &err);
        if (st != SAMDA_EINVAL || !strstr(err.message, cases[i].needle))
            fail_msg("case %zu: %s '%s' (wanted '%s')", i, samda_status_name(st), err.message, cases[i].needle);
        free(f);
    }
    /* 65 dimensions */
    char many[512] = "{'descr': '|u1', 'fortran_order': False, 'shape': (";
    for (int i = 0; i < 65; i++)
        strcat(many, "1,");
    strcat(many, "), }\n");
    size_t n;
    unsigned char *f = file_of(many, zeros, 1, 1, &n);
    samda_npy_header h;
    samda_error err;
    assert_int_equal(parse_all(f, n, &h, &err), SAMDA_EINVAL);
    assert_non_null(strstr(err.message, "'shape': more than 64 dimensions"));
    free(f);

    /* the prefix: magic, version, length */
    const unsigned char nope[] = "nope.......";
    assert_int_equal(samda_npy_header_parse(nope, 10, 10, &h, &err), SAMDA_EINVAL);
    assert_non_null(strstr(err.message, "not a .npy file (magic"));
    assert_int_equal(samda_npy_header_parse(NULL, 0, 0, &h, &err), SAMDA_EINVAL);
    const unsigned char v9[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 9, 1, 0, 0};
    assert_int_equal(samda_npy_header_parse(v9, 10, 10, &h, &err), SAMDA_EINVAL);
    assert_non_null(strstr(err.message, "format version 9.1 is not supported"));
    const unsigned char v2short[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 2, 0, 0, 0};
    assert_int_equal(samda_npy_header_parse(v2short, 10, 10, &h, &err), SAMDA_EINVAL);
    assert_non_null(strstr(err.message, "truncated header length"));
    const unsigned char past[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0xff, 0};
    assert_int_equal(samda_npy_header_parse(past, 10, 10, &h, &err), SAMDA_EINVAL);
    assert_non_null(strstr(err.message, "header: length 255 runs past the end of the file (10 bytes)"));
    const unsigned char big[12] = {0x93, 'N', 'U', 'M', 'P', 'Y', 2, 0, 0, 0, 0x20, 0};
    size_t total;
    assert_int_equal(samda_npy_header_size(big, 12, 1ull << 30, &total, &err), SAMDA_EINVAL);
    assert_non_null(strstr(err.message, "header: length 2097152 is over the limit"));
    /* the header must lie within the bytes given */
    f = file_of("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }\n", zeros, 4, 1, &n);
    assert_int_equal(samda_npy_header_parse(f, 20, n, &h, &err), SAMDA_EINVAL);
    assert_non_null(strstr(err.message, "runs past the 20 bytes read"));
    assert_int_equal(samda_npy_header_size(f, 12, n, &total, &err), SAMDA_OK);
    assert_int_equal(total, n - 4);
    free(f);
}

static void test_files(void **state)
{
    (void)state;
    char *dir = make_tmpdir("npyfile");
    assert_non_null(dir);
    char path[512], missing[512], junk[512];
    snprintf(path, sizeof path, "%s/m.npy", dir);
    snprintf(missing, sizeof missing, "%s/absent.npy", dir);
    snprintf(junk, sizeof junk, "%s/junk.npy", dir);
    samda_error err;
    samda_npy_header h;
    void *data = (void *)1;

    assert_int_equal(samda_npy_load(missing, UINT64_MAX, &h, &data, &err), SAMDA_ENOENT);
    assert_null(data);
    assert_non_null(strstr(err.message, "absent.npy: cannot open"));
    assert_int_equal(samda_npy_load(dir, UINT64_MAX, &h, &data, &err), SAMDA_EIO);
    assert_non_null(strstr(err.message, "not a regular file"));
    static const char no_order[] = "\x93NUMPY\x01\x00\x10\x00{'descr': '<f4'}";
    FILE *f = fopen(junk, "wb");
    fwrite(no_order, 1, sizeof no_order - 1, f);
    fclose(f);
    assert_int_equal(samda_npy_load(junk, UINT64_MAX, &h, &data, &err), SAMDA_EINVAL);
    assert_non_null(strstr(err.message, "junk.npy: header: 'fortran_order' missing"));
    f = fopen(junk, "wb");
    fwrite("\x93NU", 1, 3, f);
    fclose(f);
    assert_int_equal(samda_npy_load(junk, UINT64_MAX, &h, &data, &err), SAMDA_EINVAL);
    assert_non_null(strstr(err.message, "junk.npy: not a .npy file"));

    uint16_t px[2][3] = {{1, 2, 3}, {4, 5, 6}};
    uint64_t shape[2] = {2, 3};
    assert_int_equal(samda_npy_save(path, SAMDA_NPY_U16, 2, shape, px, &err), SAMDA_OK);
    assert_int_equal(samda_npy_load(path, 11, &h, &data, &err), SAMDA_ETOOBIG);
    assert_non_null(strstr(err.message, "12 bytes is larger than 11"));
    assert_int_equal(samda_npy_load(path, 12, &h, &data, &err), SAMDA_OK);
    assert_memory_equal(data, px, sizeof px);
    free(data);
    /* a truncated copy: the data check names the shortfall */
    size_t len = 0;
    char *bytes = read_all(path, &len);
    f = fopen(junk, "wb");
    fwrite(bytes, 1, len - 2, f);
    fclose(f);
    free(bytes);
    assert_int_equal(samda_npy_load(junk, UINT64_MAX, &h, &data, &err), SAMDA_EINVAL);
    assert_non_null(strstr(err.message, "needs 12 bytes but 10 follow the header"));

    /* save: refusals leave nothing behind and name the path */
    assert_int_equal(samda_npy_save(path, SAMDA_NPY_U16, 2, shape, NULL, &err), SAMDA_EINVAL);
    assert_non_null(strstr(err.message, "m.npy: no data for 6 elements"));
    uint64_t huge[2] = {UINT64_MAX / 2, 3};
    assert_int_equal(samda_npy_save(path, SAMDA_NPY_U16, 2, huge, px, &err), SAMDA_EINVAL);
    assert_non_null(strstr(err.message, "writing .npy"));
    assert_non_null(strstr(err.message, "shape overflows"));
    assert_int_equal(samda_npy_save(NULL, SAMDA_NPY_U16, 2, shape, px, &err), SAMDA_EINVAL);
    char nodir[600];
    snprintf(nodir, sizeof nodir, "%s/no/x.npy", dir);
    assert_int_equal(samda_npy_save(nodir, SAMDA_NPY_U16, 2, shape, px, &err), SAMDA_ENOENT);
    assert_int_equal(samda_npy_save(path, SAMDA_NPY_U16, 0, NULL, px, NULL), SAMDA_OK); /* err may be NULL */
    assert_int_equal(count_entries(dir, ".tmp."), 0);
    remove_tree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dtypes),    cmocka_unit_test(test_header_build_exact), cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_variants),  cmocka_unit_test(test_floats),             cmocka_unit_test(test_bad_headers),
        cmocka_unit_test(test_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
