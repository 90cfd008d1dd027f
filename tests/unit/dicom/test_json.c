/* dicom/json.cpp: DICOM JSON of real files checked against pydicom's own reading of the same files
 * (json_check.py: strict JSON parse, Dataset.from_json, element-by-element comparison), plus the
 * encoder's edge cases on a file made at test time (make_json_cases.py). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dicom.h"
#include "dicom_test_util.h"

#define BULK "http://samda.test/dicomweb/studies/1.2/series/3.4/instances/5.6"

static char scratch[4096];
static int have_python;

static int setup(void **state)
{
    (void)state;
    samda_dicom_init(NULL, NULL);
    have_python = system("/usr/bin/python3 -c 'import pydicom, numpy' >/dev/null 2>&1") == 0;
    if (!scratch_make(scratch, sizeof scratch, "json")) return -1;
    if (have_python) {
        char cmd[8400], out[4096];
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/unit/dicom/make_json_cases.py' '%s'",
                 getenv("SAMDA_SOURCE_DIR"), scratch);
        if (run_capture(cmd, out, sizeof out) != 0) {
            fprintf(stderr, "make_json_cases.py failed: %s\n", out);
            return -1;
        }
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    scratch_remove(scratch);
    samda_dicom_shutdown();
    return 0;
}

static char *to_json(const char *path, const char *bulk)
{
    char *j = NULL;
    samda_error e;
    samda_status st = samda_dicom_file_to_json(path, bulk, &j, &e);
    if (st != SAMDA_OK) fail_msg("%s: %s", path, e.message);
    assert_non_null(j);
    return j;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

/* Convert, then let pydicom judge; returns the checker's exit status (its output on failure). */
static int check_with_pydicom(const char *path, const char *bulk)
{
    char *j = to_json(path, bulk);
    char jpath[4300], cmd[9000], out[8192];
    snprintf(jpath, sizeof jpath, "%s/out.json", scratch);
    write_file(jpath, j);
    free(j);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 -W ignore '%s/tests/unit/dicom/json_check.py' '%s' '%s' %s%s%s",
             getenv("SAMDA_SOURCE_DIR"), path, jpath, bulk ? "'" : "", bulk ? bulk : "", bulk ? "'" : "");
    int rc = run_capture(cmd, out, sizeof out);
    if (rc != 0) fprintf(stderr, "%s:\n%s\n", path, out);
    return rc;
}

/* Real files: every transfer syntax fixture, the MR series, and pydicom's files with sequences
 * (SEG, SR, RT), private blocks, UN, big endian, waveforms and character sets. */
static void test_real_files_match_pydicom(void **state)
{
    (void)state;
    if (!have_python) skip();
    static const char *fixtures[] = {
        "dicom/mr-brain-20/brain_001.dcm", "dicom/mr-brain-20/brain_020.dcm",
        "dicom/transfer-syntaxes/implicit_little.dcm", "dicom/transfer-syntaxes/explicit_little.dcm",
        "dicom/transfer-syntaxes/explicit_big.dcm", "dicom/transfer-syntaxes/deflated.dcm",
        "dicom/transfer-syntaxes/jpeg_baseline_8bit.dcm", "dicom/transfer-syntaxes/jpeg_lossless_sel1.dcm",
        "dicom/transfer-syntaxes/jpeg_ls.dcm", "dicom/transfer-syntaxes/rle.dcm", "dicom/transfer-syntaxes/jpeg_2000.dcm",
    };
    static const char *pyfiles[] = {
        "liver_1frame.dcm", "liver_expb_1frame.dcm", "CT_small.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm",
        "ExplVR_BigEnd.dcm", "rtplan.dcm", "rtstruct.dcm", "rtdose.dcm", "rtdose_rle.dcm", "test-SR.dcm", "reportsi.dcm",
        "reportsi_with_empty_number_tags.dcm", "waveform_ecg.dcm", "nested_priv_SQ.dcm", "priv_SQ.dcm",
        "UN_sequence.dcm", "badVR.dcm", "J2K_pixelrep_mismatch.dcm", "SC_rgb_rle_2frame.dcm", "image_dfl.dcm",
        "emri_small.dcm", "emri_small_big_endian.dcm",
    };
    static const char *charsets[] = {"chrArab.dcm", "chrFren.dcm", "chrFrenMulti.dcm", "chrGerm.dcm", "chrGreek.dcm",
                                     "chrHbrw.dcm", "chrI2.dcm", "chrRuss.dcm", "chrX1.dcm", "chrX2.dcm",
                                     "chrJapOneByte.dcm"};
    /* Not listed: the ISO 2022 multi-byte sets (chrH31, chrH32, chrJapMulti, chrKoreanMulti...):
     * glibc's iconv behind DCMTK 3.6.7 cannot convert them; their JSON stays valid (U+FFFD, \u001b)
     * but the text is not the right one (see test_iso2022_stays_valid). */
    int n = 0, bad = 0;
    for (size_t i = 0; i < sizeof fixtures / sizeof *fixtures; i++) {
        const char *p = fixture(fixtures[i]);
        if (!path_exists(p)) continue;
        bad += check_with_pydicom(p, BULK) != 0;
        n++;
    }
    char p[4096];
    for (size_t i = 0; i < sizeof pyfiles / sizeof *pyfiles; i++) {
        snprintf(p, sizeof p, "%s/%s", PYDICOM_TEST_FILES, pyfiles[i]);
        if (!path_exists(p)) continue;
        bad += check_with_pydicom(p, i % 2 ? NULL : BULK) != 0; /* half of them without bulk URIs */
        n++;
    }
    for (size_t i = 0; i < sizeof charsets / sizeof *charsets; i++) {
        snprintf(p, sizeof p, "%s/../charset_files/%s", PYDICOM_TEST_FILES, charsets[i]);
        if (!path_exists(p)) continue;
        bad += check_with_pydicom(p, BULK) != 0;
        n++;
    }
    print_message("%d files checked against pydicom, %d mismatched\n", n, bad);
    assert_true(n >= 30);
    assert_int_equal(bad, 0);
}

static void test_whole_series(void **state)
{
    (void)state;
    if (!have_python || !path_exists(fixture("dicom/mr-brain-20/brain_010.dcm"))) skip();
    char p[4300];
    int bad = 0;
    for (int i = 1; i <= 20; i += 3) {
        snprintf(p, sizeof p, "%s/dicom/mr-brain-20/brain_%03d.dcm", fixtures_dir(), i);
        bad += check_with_pydicom(p, BULK) != 0;
    }
    assert_int_equal(bad, 0);
}

static void test_pixel_data_and_meta(void **state)
{
    (void)state;
    const char *p = fixture("dicom/mr-brain-20/brain_001.dcm"); /* 16-bit native: OW */
    if (!path_exists(p)) skip();
    char *j = to_json(p, BULK);
    /* No file meta information, pixel data by reference to the instance's pixeldata resource. */
    assert_null(strstr(j, "\"00020010\""));
    assert_null(strstr(j, "\"00020000\""));
    assert_non_null(strstr(j, "\"7FE00010\":{\"vr\":\"OW\",\"BulkDataURI\":\"" BULK "/pixeldata\"}"));
    assert_int_equal(j[0], '{');
    assert_int_equal(j[strlen(j) - 1], '}');
    free(j);
    j = to_json(p, NULL); /* no bulk base: the value is left out, the attribute stays */
    assert_non_null(strstr(j, "\"7FE00010\":{\"vr\":\"OW\"}"));
    assert_null(strstr(j, "BulkDataURI"));
    free(j);
    p = fixture("dicom/transfer-syntaxes/jpeg_ls.dcm");
    j = to_json(p, BULK); /* encapsulated: OB whatever the file says */
    assert_non_null(strstr(j, "\"7FE00010\":{\"vr\":\"OB\",\"BulkDataURI\":\"" BULK "/pixeldata\"}"));
    free(j);
}

/* Exact spellings for the edge cases the standard leaves to the encoder. */
static void test_edge_values(void **state)
{
    (void)state;
    if (!have_python) skip();
    char p[4300];
    snprintf(p, sizeof p, "%s/edge.dcm", scratch);
    char *j = to_json(p, BULK);
    static const char *expect[] = {
        "\"00200013\":{\"vr\":\"IS\",\"Value\":[12]}",                   /* "+12" */
        "\"00201041\":{\"vr\":\"DS\",\"Value\":[-0]}",
        "\"00280030\":{\"vr\":\"DS\",\"Value\":[1.50,0.5]}",             /* "+1.50", ".5": digits kept */
        "\"00281050\":{\"vr\":\"DS\",\"Value\":[1,7,1e3,null]}",          /* "1.", "007", "1e3", "abc" */
        "\"00281051\":{\"vr\":\"DS\",\"Value\":[null]}",                  /* "NaN" */
        "\"00200012\":{\"vr\":\"IS\",\"Value\":[null]}",                  /* "1A" */
        "\"00100010\":{\"vr\":\"PN\",\"Value\":[{\"Alphabetic\":\"Yamada^Tarou\",\"Ideographic\":\"山田^太郎\","
        "\"Phonetic\":\"やまだ^たろう\"}]}",
        "\"00081070\":{\"vr\":\"PN\",\"Value\":[{\"Alphabetic\":\"Doe^John\"},null,{\"Phonetic\":\"Phon^Etic\"}]}",
        "\"00080008\":{\"vr\":\"CS\",\"Value\":[\"ORIGINAL\",null,\"AXIAL\"]}",
        "\"00204000\":{\"vr\":\"LT\",\"Value\":[\"a\\\\b \\\"quoted\\\"\\r\\nline2\\ttab\\u0001end\"]}", /* LT: one value */
        "\"00189087\":{\"vr\":\"FD\",\"Value\":[null,1.5,null]}",          /* NaN, infinity */
        "\"00209165\":{\"vr\":\"AT\",\"Value\":[\"00100010\",\"7FE00010\"]}",
        "\"00720082\":{\"vr\":\"SV\",\"Value\":[-9007199254740993,5]}",
        "\"00720083\":{\"vr\":\"UV\",\"Value\":[18446744073709551615]}",
        "\"00640009\":{\"vr\":\"OF\",\"InlineBinary\":\"AACAPwAAIMA=\"}", /* 1.0f, -2.5f little endian */
        "\"00091010\":{\"vr\":\"LO\",\"Value\":[\"SAMDA TEST\"]}",
        "\"00091011\":{\"vr\":\"OB\",\"BulkDataURI\":\"" BULK "/bulkdata/00091011\"}",
        "\"00091011\":{\"vr\":\"OB\",\"BulkDataURI\":\"" BULK "/bulkdata/00081140/0/0040A043/0/00091011\"}",
        "\"00081115\":{\"vr\":\"SQ\"}", /* empty sequence */
        ",{}]}",                        /* empty item */
    };
    for (size_t i = 0; i < sizeof expect / sizeof *expect; i++)
        if (!strstr(j, expect[i])) fail_msg("missing %s in\n%s", expect[i], j);
    free(j);
    assert_int_equal(check_with_pydicom(p, BULK), 0);
    assert_int_equal(check_with_pydicom(p, NULL), 0);
}

static void test_attrs(void **state)
{
    (void)state;
    char p[4096];
    snprintf(p, sizeof p, "%s/liver_1frame.dcm", PYDICOM_TEST_FILES);
    if (!path_exists(p)) skip();
    const uint32_t tags[] = {0x00080060, 0x0020000D, 0x00081115, 0x00100020, 0x00431028 /* absent */};
    char *j = NULL;
    samda_error e;
    assert_int_equal(samda_dicom_dataset_json_attrs(p, tags, 5, &j, &e), SAMDA_OK);
    assert_non_null(strstr(j, "\"00080060\":{\"vr\":\"CS\",\"Value\":[\"SEG\"]}"));
    assert_non_null(strstr(j, "\"0020000D\":{\"vr\":\"UI\""));
    assert_non_null(strstr(j, "\"00081115\":{\"vr\":\"SQ\",\"Value\":[{\"0008114A\""));
    assert_non_null(strstr(j, "\"00100020\""));
    assert_null(strstr(j, "\"00431028\""));
    assert_null(strstr(j, "\"00080016\"")); /* not asked for */
    assert_null(strstr(j, "\"7FE00010\""));
    /* four top-level keys exactly: count keys at depth 1 */
    int depth = 0, keys = 0;
    for (const char *c = j; *c; c++) {
        if (*c == '{' || *c == '[') depth++;
        else if (*c == '}' || *c == ']') depth--;
        else if (*c == '"' && depth == 1 && c[9] == '"' && c[10] == ':') keys++;
        if (*c == '"' ) { /* skip string bodies */
            for (c++; *c && *c != '"'; c++)
                if (*c == '\\') c++;
        }
    }
    assert_int_equal(keys, 4);
    free(j);
    assert_int_equal(samda_dicom_dataset_json_attrs(p, tags, 0, &j, &e), SAMDA_OK);
    assert_string_equal(j, "{}");
    free(j);
    assert_int_equal(samda_dicom_dataset_json_attrs(p, NULL, 2, &j, &e), SAMDA_EINVAL);
    assert_null(j);
}

/* Character sets DCMTK cannot convert here: still one valid JSON object, nothing from group 0002. */
static void test_iso2022_stays_valid(void **state)
{
    (void)state;
    if (!have_python) skip();
    static const char *files[] = {"chrH31.dcm", "chrH32.dcm", "chrJapMulti.dcm", "chrSQEncoding.dcm"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char p[4096], jpath[4300], cmd[9000], out[2048];
        snprintf(p, sizeof p, "%s/../charset_files/%s", PYDICOM_TEST_FILES, files[i]);
        if (!path_exists(p)) continue;
        char *j = to_json(p, NULL);
        snprintf(jpath, sizeof jpath, "%s/iso2022.json", scratch);
        write_file(jpath, j);
        free(j);
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 -c 'import json,sys; o=json.loads(open(sys.argv[1],encoding=\"utf-8\").read()); "
                 "assert isinstance(o, dict) and \"00080005\" in o' '%s'", jpath);
        if (run_capture(cmd, out, sizeof out) != 0) fail_msg("%s: %s", files[i], out);
    }
}

/* Damaged input: truncated at many points and with bytes flipped. Every call must end in SAMDA_OK
 * with valid JSON or in a clean failure (no crash, no leak under ASan); frames likewise. */
static void test_damaged_files(void **state)
{
    (void)state;
    char src[4096];
    snprintf(src, sizeof src, "%s/CT_small.dcm", PYDICOM_TEST_FILES);
    if (!have_python || !path_exists(src)) skip();
    FILE *f = fopen(src, "rb");
    assert_non_null(f);
    static unsigned char data[1 << 16];
    size_t n = fread(data, 1, sizeof data, f);
    fclose(f);
    assert_true(n > 1000 && n < sizeof data);
    char dir[4300], p[4400], cmd[9000], out[4096];
    snprintf(dir, sizeof dir, "%s/damaged", scratch);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
    assert_int_equal(system(cmd), 0);
    unsigned seed = 12345, n_ok = 0, n_bad = 0;
    for (int k = 0; k < 120; k++) {
        static unsigned char buf[1 << 16];
        memcpy(buf, data, n);
        size_t len = n;
        if (k < 60) {
            len = 132 + (n - 132) * (size_t)k / 60; /* truncated */
        } else {
            for (int flips = 0; flips < 4; flips++) { /* bytes changed in the first 2 KiB (the header) */
                seed = seed * 1103515245u + 12345u;
                size_t at = 132 + (seed >> 8) % 2000;
                buf[at] = (unsigned char)(seed >> 3);
            }
        }
        snprintf(p, sizeof p, "%s/in%03d.dcm", dir, k);
        FILE *w = fopen(p, "wb");
        assert_non_null(w);
        assert_int_equal(fwrite(buf, 1, len, w), len);
        fclose(w);
        char *j = NULL;
        samda_error e;
        samda_status st = samda_dicom_file_to_json(p, BULK, &j, &e);
        if (st == SAMDA_OK) {
            snprintf(p, sizeof p, "%s/out%03d.json", dir, k);
            write_file(p, j);
            free(j);
            n_ok++;
        } else {
            if (st != SAMDA_EBADDICOM) fail_msg("damaged file %d: %s", k, e.message);
            assert_null(j);
            n_bad++;
        }
        void *d = NULL;
        size_t dn = 0;
        snprintf(p, sizeof p, "%s/in%03d.dcm", dir, k);
        st = samda_dicom_frame_read(p, 1, &d, &dn, NULL, &e);
        if (st != SAMDA_OK && st != SAMDA_EBADDICOM && st != SAMDA_ENOENT && st != SAMDA_ENOTSUP)
            fail_msg("frame of damaged file %d: %s", k, e.message);
        free(d);
    }
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 -c 'import json,glob,sys; fs=glob.glob(sys.argv[1]+\"/out*.json\"); "
             "[json.loads(open(f,encoding=\"utf-8\").read(), parse_constant=lambda c: 1/0) for f in fs]; print(len(fs))' '%s'",
             dir);
    if (run_capture(cmd, out, sizeof out) != 0) fail_msg("invalid JSON from a damaged file: %s", out);
    print_message("damaged files: %u converted (valid JSON), %u refused\n", n_ok, n_bad);
    assert_true(n_ok > 0 && n_bad > 0);
}

static void test_errors(void **state)
{
    (void)state;
    char *j = (char *)1;
    samda_error e;
    char p[4300];
    snprintf(p, sizeof p, "%s/missing.dcm", scratch);
    assert_int_equal(samda_dicom_file_to_json(p, NULL, &j, &e), SAMDA_ENOENT);
    assert_null(j);
    snprintf(p, sizeof p, "%s/text.dcm", scratch);
    write_file(p, "this is not DICOM at all, just some text that is long enough to be read\n");
    assert_int_equal(samda_dicom_file_to_json(p, NULL, &j, &e), SAMDA_EBADDICOM);
    assert_null(j);
    assert_int_equal(samda_dicom_file_to_json(NULL, NULL, &j, &e), SAMDA_EINVAL);
    assert_int_equal(samda_dicom_file_to_json(p, NULL, NULL, &e), SAMDA_EINVAL);
    assert_int_equal(samda_dicom_file_to_json(scratch, NULL, &j, NULL), SAMDA_EIO); /* a directory */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_files_match_pydicom),
        cmocka_unit_test(test_whole_series),
        cmocka_unit_test(test_pixel_data_and_meta),
        cmocka_unit_test(test_edge_values),
        cmocka_unit_test(test_attrs),
        cmocka_unit_test(test_iso2022_stays_valid),
        cmocka_unit_test(test_damaged_files),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
