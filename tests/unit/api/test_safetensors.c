/* api/safetensors.c: valid files with and without metadata, and each way a file can be wrong
 * (the message must name the problem). Files are built in a temp directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "safetensors.h"

static char dir[] = "/tmp/samda-st-XXXXXX";

/* Write 8-byte length + header (padded to 8) + data_len bytes; returns the path (static). */
static const char *make(const char *header, size_t data_len, int64_t len_override)
{
    static char path[256];
    static int k;
    snprintf(path, sizeof path, "%s/f%d.safetensors", dir, k++);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    size_t h = strlen(header), padded = (h + 7) / 8 * 8;
    uint64_t n = len_override >= 0 ? (uint64_t)len_override : padded;
    unsigned char lb[8];
    for (int i = 0; i < 8; i++) lb[i] = (unsigned char)(n >> (8 * i));
    fwrite(lb, 1, 8, f);
    fwrite(header, 1, h, f);
    for (size_t i = h; i < padded; i++) fputc(' ', f);
    for (size_t i = 0; i < data_len; i++) fputc((int)(i & 0xff), f);
    fclose(f);
    return path;
}

static void valid(void **state)
{
    (void)state;
    samda_safetensors_info info;
    samda_error err;
    const char *p = make("{\"__metadata__\":{\"base_fingerprint\":\"sam-b\",\"labels\":\"liver\"},"
                         "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                         "\"b\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[24,32]},"
                         "\"empty\":{\"dtype\":\"I64\",\"shape\":[0,5],\"data_offsets\":[32,32]}}",
                         32, -1);
    assert_int_equal(samda_safetensors_check_file(p, NULL, &info, &err), SAMDA_OK);
    assert_int_equal(info.n_tensors, 3);
    assert_int_equal(info.data_bytes, 32);
    assert_int_equal(info.header_bytes % 8, 0);
    assert_string_equal(json_string_value(json_object_get(info.metadata, "base_fingerprint")), "sam-b");
    samda_safetensors_info_clear(&info);
    assert_null(info.metadata);
    /* without metadata; scalar (shape []) */
    p = make("{\"s\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[0,8]}}", 8, -1);
    assert_int_equal(samda_safetensors_check_file(p, NULL, &info, &err), SAMDA_OK);
    assert_null(info.metadata);
    assert_int_equal(info.n_tensors, 1);
    samda_safetensors_info_clear(&info);
}

static void invalid(void **state)
{
    (void)state;
    struct {
        const char *header;
        size_t data;
        int64_t len;
        samda_status st;
        const char *needle;
    } cases[] = {
        {"{}", 0, 1000, SAMDA_EINVAL, "larger than the file"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4, -1, SAMDA_EINVAL, "not JSON (line 1 column"},
        {"[1,2,3]", 0, -1, SAMDA_EINVAL, "does not start with '{'"},
        {"{}", 0, -1, SAMDA_EINVAL, "lists no tensor"},
        {"{\"a\":{\"dtype\":\"Q7\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, -1, SAMDA_EINVAL, "unknown dtype 'Q7'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4,4],\"data_offsets\":[0,96]}}", 96, -1, SAMDA_EINVAL, "do not match dtype F32 and shape [4, 4] (64 bytes)"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, -1, SAMDA_EINVAL, "outside the data section (8 bytes)"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[4,12]}}", 12, -1, SAMDA_EINVAL, "overlaps"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[8,12]}}", 12, -1, SAMDA_EINVAL, "hole in the data section before tensor 'b'"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 10, -1, SAMDA_EINVAL, "6 bytes after the last tensor"},
        {"{\"__metadata__\":{\"n\":3},\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, -1, SAMDA_EINVAL, "__metadata__ member 'n' is not a string"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,1]}}", 1, -1, SAMDA_EINVAL, "non-negative integers"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0]}}", 1, -1, SAMDA_EINVAL, "data_offsets must be [begin, end]"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"extra\":1}}", 1, -1, SAMDA_EINVAL, "unknown member 'extra'"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1, -1, SAMDA_ETOOBIG, "9 dimensions"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,1]}}", 1, -1, SAMDA_EINVAL, "overflows"},
        {"{\"a\":1}", 0, -1, SAMDA_EINVAL, "tensor 'a' is not an object"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},\"a\":{}}", 1, -1, SAMDA_EINVAL, "not JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        samda_safetensors_info info;
        samda_error err = {SAMDA_OK, ""};
        const char *p = make(cases[i].header, cases[i].data, cases[i].len);
        samda_status st = samda_safetensors_check_file(p, NULL, &info, &err);
        if (st != cases[i].st || !strstr(err.message, cases[i].needle))
            fail_msg("case %zu: %s '%s' (wanted %s '%s')", i, samda_status_name(st), err.message, samda_status_name(cases[i].st),
                     cases[i].needle);
        assert_null(info.metadata);
    }
    /* too short, missing file, bounds */
    samda_safetensors_info info;
    samda_error err;
    char path[256];
    snprintf(path, sizeof path, "%s/short", dir);
    FILE *f = fopen(path, "wb");
    fputs("abc", f);
    fclose(f);
    assert_int_equal(samda_safetensors_check_file(path, NULL, &info, &err), SAMDA_EINVAL);
    assert_non_null(strstr(err.message, "too short"));
    snprintf(path, sizeof path, "%s/none", dir);
    assert_int_equal(samda_safetensors_check_file(path, NULL, &info, &err), SAMDA_ENOENT);
    samda_safetensors_params p;
    samda_safetensors_params_init(&p);
    p.max_header_bytes = 16;
    const char *ok = make("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, -1);
    assert_int_equal(samda_safetensors_check_file(ok, &p, &info, &err), SAMDA_ETOOBIG);
    assert_non_null(strstr(err.message, "header of"));
    samda_safetensors_params_init(&p);
    p.max_file_bytes = 20;
    assert_int_equal(samda_safetensors_check_file(ok, &p, &info, &err), SAMDA_ETOOBIG);
    samda_safetensors_params_init(&p);
    p.max_tensors = 0;
    assert_int_equal(samda_safetensors_check_file(ok, &p, &info, &err), SAMDA_ETOOBIG);
}

int main(void)
{
    if (!mkdtemp(dir)) return 1;
    const struct CMUnitTest tests[] = {cmocka_unit_test(valid), cmocka_unit_test(invalid)};
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) rc = rc ? rc : 1;
    return rc;
}
