/* Tests of common/safetensors_format.c: the dtype table, header build then parse (metadata with
 * escapes and non-ASCII text, scalars, empty tensors), files written by the Python library's layout,
 * and each malformed file refused with a message naming the field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "safetensors_format.h"

/* A file image: 8-byte length, header (padded with spaces to 8 unless len_override >= 0 gives
 * the length field), n_data bytes of data. */
static unsigned char *file_of(const char *header, size_t n_data, int64_t len_override, size_t *len)
{
    size_t h = strlen(header), padded = (h + 7) / 8 * 8;
    unsigned char *b = malloc(8 + padded + n_data + 1);
    assert_non_null(b);
    uint64_t n = len_override >= 0 ? (uint64_t)len_override : padded;
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(n >> (8 * i));
    memcpy(b + 8, header, h);
    memset(b + 8 + h, ' ', padded - h);
    for (size_t i = 0; i < n_data; i++)
        b[8 + padded + i] = (unsigned char)i;
    *len = 8 + padded + n_data;
    return b;
}

static void test_dtypes(void **state)
{
    (void)state;
    static const char *names[] = {"BOOL", "U8",  "I8",  "F8_E5M2", "F8_E4M3", "I16", "U16", "F16",
                                  "BF16", "I32", "U32", "F32",     "I64",     "U64", "F64"};
    static const size_t sizes[] = {1, 1, 1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 8, 8, 8};
    for (int i = 0; i < 15; i++) {
        samda_safetensors_dtype dt = SAMDA_SAFETENSORS_BOOL;
        assert_true(samda_safetensors_dtype_from_name(names[i], &dt));
        assert_int_equal(dt, i);
        assert_string_equal(samda_safetensors_dtype_name(dt), names[i]);
        assert_int_equal(samda_safetensors_dtype_size(dt), sizes[i]);
    }
    samda_safetensors_dtype dt = SAMDA_SAFETENSORS_F32;
    assert_false(samda_safetensors_dtype_from_name("f32", &dt));
    assert_false(samda_safetensors_dtype_from_name(NULL, &dt));
    assert_int_equal(dt, SAMDA_SAFETENSORS_F32);
    assert_string_equal(samda_safetensors_dtype_name((samda_safetensors_dtype)40), "?");
    assert_int_equal(samda_safetensors_dtype_size((samda_safetensors_dtype)40), 0);
}

static void test_round_trip(void **state)
{
    (void)state;
    const samda_safetensors_entry meta[] = {
        {"format", "samda-adapter"},
        {"labels", "[{\"name\":\"liver \\\"x\\\"\"}]\n\ttab\x01"},
        {"caf\xc3\xa9", "\xf0\x9f\x98\x80 \xe6\x97\xa5"},
    };
    const uint64_t s_w[2] = {2, 3}, s_e[2] = {0, 5};
    const samda_safetensors_out ts[] = {
        {"z.weight", SAMDA_SAFETENSORS_F32, 2, s_w, 24},
        {"a.bias", SAMDA_SAFETENSORS_BF16, 0, NULL, 2},
        {"empty", SAMDA_SAFETENSORS_I64, 2, s_e, 0},
    };
    char *head = NULL;
    size_t hlen = 0;
    samda_error err;
    assert_int_equal(samda_safetensors_header_build(meta, 3, ts, 3, &head, &hlen, &err), SAMDA_OK);
    assert_int_equal(hlen % 8, 0);
    assert_int_equal(hlen - 8, (uint64_t)head[0] | ((uint64_t)(unsigned char)head[1] << 8));
    assert_memory_equal(head + 8, "{\"__metadata__\":{\"format\":\"samda-adapter\",", 42);
    assert_non_null(strstr(head + 8, "\"z.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}"));
    assert_non_null(strstr(head + 8, "\\n\\t"));
    assert_non_null(strstr(head + 8, "\\u0001"));
    unsigned char *file = malloc(hlen + 26);
    memcpy(file, head, hlen);
    for (int i = 0; i < 26; i++)
        file[hlen + i] = (unsigned char)i;
    free(head);

    samda_safetensors_header h;
    assert_int_equal(samda_safetensors_parse(file, hlen + 26, NULL, &h, &err), SAMDA_OK);
    assert_int_equal(h.header_bytes, hlen - 8);
    assert_int_equal(h.data_bytes, 26);
    assert_true(h.has_metadata);
    assert_int_equal(h.n_metadata, 3);
    for (int i = 0; i < 3; i++) {
        assert_string_equal(h.metadata[i].key, meta[i].key);
        assert_string_equal(h.metadata[i].value, meta[i].value);
    }
    assert_int_equal(h.n_tensors, 3);
    /* packed in the given order: z.weight [0,24], a.bias [24,26], empty [26,26] */
    assert_string_equal(h.tensors[0].name, "z.weight");
    assert_int_equal(h.tensors[0].dtype, SAMDA_SAFETENSORS_F32);
    assert_int_equal(h.tensors[0].ndim, 2);
    assert_int_equal(h.tensors[0].shape[0], 2);
    assert_int_equal(h.tensors[0].shape[1], 3);
    assert_string_equal(h.tensors[1].name, "a.bias");
    assert_int_equal(h.tensors[1].ndim, 0);
    assert_int_equal(h.tensors[1].begin, 24);
    assert_int_equal(h.tensors[1].end, 26);
    assert_string_equal(h.tensors[2].name, "empty");
    assert_int_equal(h.tensors[2].begin, 26);
    assert_int_equal(h.tensors[2].end, 26);
    assert_int_equal(h.tensors[2].shape[1], 5);
    samda_safetensors_header_free(&h);
    samda_safetensors_header_free(&h); /* twice is harmless */
    free(file);

    /* no metadata and no tensor: "{}" padded, a valid (empty) file */
    assert_int_equal(samda_safetensors_header_build(NULL, 0, NULL, 0, &head, &hlen, &err), SAMDA_OK);
    assert_int_equal(hlen, 16);
    assert_memory_equal(head + 8, "{}      ", 8);
    assert_int_equal(samda_safetensors_parse(head, hlen, NULL, &h, &err), SAMDA_OK);
    assert_false(h.has_metadata);
    assert_int_equal(h.n_tensors, 0);
    samda_safetensors_header_free(&h);
    free(head);
}

/* The layout of Python's json.dumps (spaces after ':' and ','), escapes the writer never makes, and
 * an empty "__metadata__". */
static void test_other_writers(void **state)
{
    (void)state;
    size_t n;
    unsigned char *f = file_of("{\"__metadata__\": {}, \"lora.A\": {\"dtype\": \"F32\", \"shape\": [4, 2], "
                               "\"data_offsets\": [0, 32]},\r\n \"\\u00e9\\ud83d\\ude00\\/\": {\"data_offsets\": "
                               "[32, 48], \"shape\": [2, 4], \"dtype\": \"F16\"}}",
                               48, -1, &n);
    samda_safetensors_header h;
    samda_error err;
    assert_int_equal(samda_safetensors_parse(f, n, NULL, &h, &err), SAMDA_OK);
    assert_true(h.has_metadata);
    assert_int_equal(h.n_metadata, 0);
    assert_int_equal(h.n_tensors, 2);
    assert_string_equal(h.tensors[1].name, "\xc3\xa9\xf0\x9f\x98\x80/");
    assert_int_equal(h.tensors[1].dtype, SAMDA_SAFETENSORS_F16);
    samda_safetensors_header_free(&h);
    free(f);
    /* equal ranges come in name order */
    f = file_of("{\"b\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]},"
                "\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}",
                0, -1, &n);
    assert_int_equal(samda_safetensors_parse(f, n, NULL, &h, &err), SAMDA_OK);
    assert_string_equal(h.tensors[0].name, "a");
    assert_string_equal(h.tensors[1].name, "b");
    samda_safetensors_header_free(&h);
    free(f);
    /* the header alone, from a reader that has not loaded the data */
    const char *text = "{\"t\":{\"dtype\":\"U8\",\"shape\":[1000000],\"data_offsets\":[0,1000000]}}";
    assert_int_equal(samda_safetensors_header_parse(text, strlen(text), 1000000, NULL, &h, &err), SAMDA_OK);
    assert_int_equal(h.tensors[0].shape[0], 1000000);
    samda_safetensors_header_free(&h);
}

/* Each malformed header refused with its status and a message naming the field. */
static void test_refusals(void **state)
{
    (void)state;
    const struct {
        const char *header;
        size_t data;
        int64_t len;
        samda_status st;
        const char *needle;
    } cases[] = {
        {"{}", 0, 1000, SAMDA_EINVAL, "not a safetensors file: header length 1000 runs past the end of the file (larger than the file"},
        {"{}", 0, 1, SAMDA_EINVAL, "header length 1 is too short"},
        {"[1,2]", 0, -1, SAMDA_EINVAL, "the header is not a JSON object: it does not start with '{'"},
        {" {}", 0, -1, SAMDA_EINVAL, "does not start with '{'"},
        {"{\"t\":", 0, -1, SAMDA_EINVAL, "not JSON (line 1 column 9: unexpected end of text, expected a value; not valid JSON)"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}", 1, -1, SAMDA_EINVAL, "not JSON (line 1 column"},
        {"{}\n\nx", 0, -1, SAMDA_EINVAL, "not JSON (line 3 column 1: text after the header object"},
        {"{\"a\" 1}", 0, -1, SAMDA_EINVAL, "expected ':' after \"a\""},
        {"{a:1}", 0, -1, SAMDA_EINVAL, "expected a member name in double quotes"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},\"a\":{}}", 1, -1, SAMDA_EINVAL,
         "duplicate header key 'a'; not valid JSON"},
        {"{\"__metadata__\":{},\"__metadata__\":{}}", 0, -1, SAMDA_EINVAL, "duplicate header key '__metadata__'"},
        {"{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, -1, SAMDA_EINVAL, "duplicate metadata key 'k'"},
        {"{\"a\":{\"dtype\":\"U8\",\"dtype\":\"U8\"}}", 0, -1, SAMDA_EINVAL, "duplicate member 'dtype' in tensor 'a'"},
        {"{\"__metadata__\":[]}", 0, -1, SAMDA_EINVAL, "safetensors header: __metadata__ is not an object"},
        {"{\"__metadata__\":{\"n\":3}}", 0, -1, SAMDA_EINVAL, "__metadata__ member 'n' is not a string"},
        {"{\"__metadata__\":{\"n\":\"a\\u0000b\"}}", 0, -1, SAMDA_EINVAL, "\\u0000 is not allowed"},
        {"{\"__metadata__\":{\"n\":\"\xc3\"}}", 0, -1, SAMDA_EINVAL, "invalid UTF-8"},
        {"{\"__metadata__\":{\"n\":\"\xed\xa0\x80\"}}", 0, -1, SAMDA_EINVAL, "invalid UTF-8"},
        {"{\"__metadata__\":{\"n\":\"\\ud800x\"}}", 0, -1, SAMDA_EINVAL, "unpaired surrogate \\ud800"},
        {"{\"__metadata__\":{\"n\":\"\\q\"}}", 0, -1, SAMDA_EINVAL, "invalid escape '\\q'"},
        {"{\"__metadata__\":{\"n\":\"a\tb\"}}", 0, -1, SAMDA_EINVAL, "control character 0x09"},
        {"{\"\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, -1, SAMDA_EINVAL, "a tensor has an empty name"},
        {"{\"a\":1}", 0, -1, SAMDA_EINVAL, "safetensors header: tensor 'a' is not an object"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"extra\":1}}", 1, -1, SAMDA_EINVAL,
         "tensor 'a' has unknown member 'extra'"},
        {"{\"a\":{\"shape\":[1],\"data_offsets\":[0,1]}}", 1, -1, SAMDA_EINVAL, "tensor 'a' has no dtype string"},
        {"{\"a\":{\"dtype\":5,\"shape\":[1],\"data_offsets\":[0,1]}}", 1, -1, SAMDA_EINVAL, "tensor 'a' has no dtype string"},
        {"{\"a\":{\"dtype\":\"Q7\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, -1, SAMDA_EINVAL,
         "tensor 'a' has unknown dtype 'Q7' (unsupported dtype"},
        {"{\"a\":{\"dtype\":\"U8\",\"data_offsets\":[0,1]}}", 1, -1, SAMDA_EINVAL, "tensor 'a' has no shape array"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,1]}}", 1, -1, SAMDA_EINVAL,
         "tensor 'a': shape must hold non-negative integers"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1.5],\"data_offsets\":[0,1]}}", 1, -1, SAMDA_EINVAL, "shape must hold non-negative integers"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1e0],\"data_offsets\":[0,1]}}", 1, -1, SAMDA_EINVAL, "shape must hold non-negative integers"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[\"1\"],\"data_offsets\":[0,1]}}", 1, -1, SAMDA_EINVAL, "shape must hold non-negative integers"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[18446744073709551616],\"data_offsets\":[0,1]}}", 1, -1, SAMDA_EINVAL,
         "shape must hold non-negative integers"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[01],\"data_offsets\":[0,1]}}", 1, -1, SAMDA_EINVAL, "leading zero"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1,],\"data_offsets\":[0,1]}}", 1, -1, SAMDA_EINVAL, "expected a value"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1, -1,
         SAMDA_ETOOBIG, "tensor 'a' has 17 dimensions (at most 16)"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,1]}}", 1, -1,
         SAMDA_EINVAL, "shape [4294967296, 4294967296, 4294967296] overflows (impossibly large"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1]}}", 1, -1, SAMDA_EINVAL, "tensor 'a': data_offsets must be [begin, end]"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0]}}", 1, -1, SAMDA_EINVAL, "data_offsets must be [begin, end]"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,2]}}", 1, -1, SAMDA_EINVAL, "data_offsets must be [begin, end]"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":{}}}", 1, -1, SAMDA_EINVAL, "data_offsets must be [begin, end]"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,0]}}", 1, -1, SAMDA_EINVAL,
         "data_offsets [1, 0] are reversed (end 0 < begin 1)"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, -1, SAMDA_EINVAL,
         "data_offsets [0, 16] outside the data section (8 bytes): end 16 is past the payload"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4,4],\"data_offsets\":[0,96]}}", 96, -1, SAMDA_EINVAL,
         "data_offsets [0, 96] do not match dtype F32 and shape [4, 4] (64 bytes): 96 bytes given, dtype and shape need 64"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[4,12]}}",
         12, -1, SAMDA_EINVAL, "tensor 'b' overlaps another tensor (offset 4)"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[8,12]}}",
         12, -1, SAMDA_EINVAL, "hole in the data section before tensor 'b': bytes 4..8 belong to no tensor"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 10, -1, SAMDA_EINVAL,
         "6 bytes after the last tensor (data section 10 bytes): trailing bytes"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n;
        unsigned char *f = file_of(cases[i].header, cases[i].data, cases[i].len, &n);
        samda_safetensors_header h;
        samda_error err = {SAMDA_OK, ""};
        samda_status st = samda_safetensors_parse(f, n, NULL, &h, &err);
        if (st != cases[i].st || !strstr(err.message, cases[i].needle))
            fail_msg("case %zu: %s '%s' (wanted %s '%s')", i, samda_status_name(st), err.message,
                     samda_status_name(cases[i].st), cases[i].needle);
        assert_int_equal(h.n_tensors, 0); /* zeroed on failure */
        assert_null(h.tensors);
        free(f);
    }

    /* the length field and the limits */
    samda_safetensors_header h;
    samda_error err;
    assert_int_equal(samda_safetensors_parse(NULL, 0, NULL, &h, &err), SAMDA_EINVAL);
    assert_non_null(strstr(err.message, "file of 0 bytes is too short for a header (shorter than"));
    size_t n;
    unsigned char *f = file_of("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, -1, &n);
    assert_int_equal(samda_safetensors_parse(f, 9, NULL, &h, &err), SAMDA_EINVAL);
    samda_safetensors_limits lim;
    samda_safetensors_limits_init(&lim);
    assert_int_equal(lim.max_dims, 16);
    lim.max_header_bytes = 16;
    assert_int_equal(samda_safetensors_parse(f, n, &lim, &h, &err), SAMDA_ETOOBIG);
    assert_non_null(strstr(err.message, "header of 56 bytes is larger than 16 bytes"));
    samda_safetensors_limits_init(&lim);
    lim.max_tensors = 0;
    assert_int_equal(samda_safetensors_parse(f, n, &lim, &h, &err), SAMDA_ETOOBIG);
    assert_non_null(strstr(err.message, "more than 0 tensors"));
    samda_safetensors_limits_init(&lim);
    lim.max_dims = 0;
    assert_int_equal(samda_safetensors_parse(f, n, &lim, &h, &err), SAMDA_ETOOBIG);
    assert_non_null(strstr(err.message, "1 dimensions (at most 0)"));
    uint64_t hl = 0;
    assert_int_equal(samda_safetensors_header_length(f, 8, 1ull << 40, NULL, &hl, &err), SAMDA_OK);
    assert_int_equal(hl, 56);
    free(f);
}

static void test_build_refusals(void **state)
{
    (void)state;
    const uint64_t s2[1] = {2};
    char *out = (char *)1;
    size_t len = 1;
    samda_error err;
    const struct {
        samda_safetensors_out t[2];
        size_t n;
        const char *needle;
    } cases[] = {
        {{{"", SAMDA_SAFETENSORS_U8, 1, s2, 2}}, 1, "tensor name '' is empty or starts with \"__\""},
        {{{"__metadata__", SAMDA_SAFETENSORS_U8, 1, s2, 2}}, 1, "starts with \"__\""},
        {{{"a", SAMDA_SAFETENSORS_U8, 1, s2, 2}, {"a", SAMDA_SAFETENSORS_U8, 1, s2, 2}}, 2, "duplicate tensor name 'a'"},
        {{{"a", SAMDA_SAFETENSORS_F32, 1, s2, 20}}, 1, "tensor 'a' has 20 bytes for its dtype and shape (F32 [2])"},
        {{{"a\xff", SAMDA_SAFETENSORS_U8, 1, s2, 2}}, 1, "is not UTF-8"},
        {{{"a", (samda_safetensors_dtype)77, 1, s2, 2}}, 1, "dtype 77"},
        {{{"a", SAMDA_SAFETENSORS_U8, 1, NULL, 2}}, 1, "tensor 'a'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        samda_status st = samda_safetensors_header_build(NULL, 0, cases[i].t, cases[i].n, &out, &len, &err);
        if (st != SAMDA_EINVAL || !strstr(err.message, cases[i].needle))
            fail_msg("case %zu: %s '%s' (wanted '%s')", i, samda_status_name(st), err.message, cases[i].needle);
        assert_null(out);
        assert_int_equal(len, 0);
    }
    const samda_safetensors_entry dup[] = {{"k", "1"}, {"k", "2"}};
    assert_int_equal(samda_safetensors_header_build(dup, 2, NULL, 0, &out, &len, &err), SAMDA_EINVAL);
    assert_non_null(strstr(err.message, "duplicate metadata key 'k'"));
    const samda_safetensors_entry bad[] = {{"k", "\xc3"}};
    assert_int_equal(samda_safetensors_header_build(bad, 1, NULL, 0, &out, &len, &err), SAMDA_EINVAL);
    assert_non_null(strstr(err.message, "metadata 'k' is not UTF-8"));
}

/* Many tensors: the name set grows, the data order is kept, shapes follow their tensors. */
static void test_many(void **state)
{
    (void)state;
    enum { N = 3000 };
    samda_safetensors_out *ts = calloc(N, sizeof *ts);
    char (*names)[16] = calloc(N, sizeof *names);
    uint64_t (*shapes)[2] = calloc(N, sizeof *shapes);
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "t%04d", N - i); /* names in the reverse of data order */
        shapes[i][0] = (uint64_t)(i % 7);
        shapes[i][1] = 2;
        ts[i] = (samda_safetensors_out){names[i], SAMDA_SAFETENSORS_I16, 2, shapes[i], (uint64_t)(i % 7) * 4};
    }
    char *head;
    size_t hlen, data = 0;
    samda_error err;
    assert_int_equal(samda_safetensors_header_build(NULL, 0, ts, N, &head, &hlen, &err), SAMDA_OK);
    for (int i = 0; i < N; i++)
        data += (size_t)ts[i].nbytes;
    samda_safetensors_header h;
    assert_int_equal(samda_safetensors_header_parse(head + 8, hlen - 8, data, NULL, &h, &err), SAMDA_OK);
    assert_int_equal(h.n_tensors, N);
    uint64_t at = 0;
    for (size_t i = 0; i < h.n_tensors; i++) {
        const samda_safetensors_tensor *t = &h.tensors[i];
        assert_true(t->begin == at);
        int k = N - atoi(t->name + 1);
        assert_int_equal(t->shape[0], (uint64_t)(k % 7));
        assert_int_equal(t->shape[1], 2);
        at = t->end;
    }
    samda_safetensors_header_free(&h);
    free(head);
    free(ts);
    free(names);
    free(shapes);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dtypes),   cmocka_unit_test(test_round_trip),     cmocka_unit_test(test_other_writers),
        cmocka_unit_test(test_refusals), cmocka_unit_test(test_build_refusals), cmocka_unit_test(test_many),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
