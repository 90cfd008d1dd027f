/* dicom/frame.cpp: frames of real single- and multi-frame files, native and compressed, compared
 * byte for byte with pydicom's pixel_array (frame_ref.py). Compressed inputs pydicom cannot decode
 * here (no Pillow/GDCM) are compared with their uncompressed source (lossless codecs, files made
 * with DCMTK's dcmcjpeg/dcmcjpls/dcmcrle at test time) or with DCMTK's own command-line decoders. */
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

static char scratch[4096];
static int have_python, have_tools;

static int setup(void **state)
{
    (void)state;
    samda_dicom_init(NULL, NULL);
    have_python = system("/usr/bin/python3 -c 'import pydicom, numpy' >/dev/null 2>&1") == 0;
    have_tools = tool_available("dcmcjpls") && tool_available("dcmcjpeg") && tool_available("dcmcrle") &&
                 tool_available("dcmdjpeg") && tool_available("dcmdjpls");
    if (!scratch_make(scratch, sizeof scratch, "frame")) return -1;
    if (have_python) {
        char cmd[8400], out[4096];
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/unit/dicom/make_json_cases.py' '%s'",
                 getenv("SAMDA_SOURCE_DIR"), scratch);
        if (run_capture(cmd, out, sizeof out) != 0) {
            fprintf(stderr, "make_json_cases.py failed: %s\n", out);
            return -1;
        }
        if (have_tools) {
            snprintf(cmd, sizeof cmd,
                     "cd '%s' && dcmcjpls multiframe.dcm mf_jls.dcm && dcmcjpeg +e1 multiframe.dcm mf_jpll.dcm && "
                     "dcmcrle multiframe.dcm mf_rle.dcm", scratch);
            if (run_capture(cmd, out, sizeof out) != 0) {
                fprintf(stderr, "compressing multiframe.dcm failed: %s\n", out);
                return -1;
            }
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

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(len > 0 ? (size_t)len : 1);
    *n = fread(b, 1, (size_t)len, f);
    fclose(f);
    return b;
}

/* Frame `frame` of `path` through samda must equal frame `frame` of `ref` through pydicom. */
static void expect_frame(const char *path, unsigned frame, const char *ref)
{
    void *data = NULL;
    size_t size = 0;
    samda_dicom_frame_info info;
    samda_error e;
    samda_status st = samda_dicom_frame_read(path, frame, &data, &size, &info, &e);
    if (st != SAMDA_OK) fail_msg("%s frame %u: %s", path, frame, e.message);
    char refbin[4300], cmd[9000], out[1024];
    snprintf(refbin, sizeof refbin, "%s/ref.bin", scratch);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/unit/dicom/frame_ref.py' '%s' %u '%s'",
             getenv("SAMDA_SOURCE_DIR"), ref, frame, refbin);
    if (run_capture(cmd, out, sizeof out) != 0) fail_msg("frame_ref.py %s: %s", ref, out);
    unsigned rows, cols, spp, bits, frames;
    assert_int_equal(sscanf(out, "%u %u %u %u %u", &rows, &cols, &spp, &bits, &frames), 5);
    assert_int_equal(info.rows, rows);
    assert_int_equal(info.columns, cols);
    assert_int_equal(info.samples_per_pixel, spp);
    assert_int_equal(info.bits_allocated, bits);
    assert_int_equal(info.number_of_frames, frames);
    assert_int_equal(info.planar_configuration, 0);
    size_t n = 0;
    unsigned char *want = slurp(refbin, &n);
    assert_non_null(want);
    if (n != size) fail_msg("%s frame %u: %zu bytes, pydicom %zu", path, frame, size, n);
    if (memcmp(want, data, n) != 0) {
        size_t i = 0;
        while (want[i] == ((unsigned char *)data)[i]) i++;
        fail_msg("%s frame %u: first difference at byte %zu (%u, pydicom %u)", path, frame, i,
                 ((unsigned char *)data)[i], want[i]);
    }
    free(want);
    free(data);
}

static void test_native_single_frame(void **state)
{
    (void)state;
    if (!have_python) skip();
    static const char *names[] = {"mr-brain-20/brain_001.dcm", "transfer-syntaxes/explicit_little.dcm",
                                  "transfer-syntaxes/implicit_little.dcm", "transfer-syntaxes/explicit_big.dcm",
                                  "transfer-syntaxes/deflated.dcm"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "dicom/%s", names[i]);
        const char *p = fixture(rel);
        if (!path_exists(p)) skip();
        expect_frame(p, 1, p);
    }
    static const char *py[] = {"CT_small.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm", "SC_rgb_small_odd.dcm",
                               "liver_1frame.dcm"};
    for (size_t i = 0; i < sizeof py / sizeof *py; i++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", PYDICOM_TEST_FILES, py[i]);
        if (path_exists(p)) expect_frame(p, 1, p);
    }
}

static void test_native_multi_frame(void **state)
{
    (void)state;
    if (!have_python) skip();
    char p[4300];
    snprintf(p, sizeof p, "%s/multiframe.dcm", scratch);
    for (unsigned f = 1; f <= 3; f++) expect_frame(p, f, p);
    snprintf(p, sizeof p, "%s/bits1.dcm", scratch); /* 35-pixel 1-bit frames: bit offsets 0, 35, 70 */
    for (unsigned f = 1; f <= 3; f++) expect_frame(p, f, p);
    static const char *py[] = {"rtdose.dcm", "rtdose_expb.dcm", "SC_rgb_2frame.dcm", "SC_rgb_16bit_2frame.dcm",
                               "SC_rgb_32bit_2frame.dcm", "emri_small.dcm"};
    for (size_t i = 0; i < sizeof py / sizeof *py; i++) {
        snprintf(p, sizeof p, "%s/%s", PYDICOM_TEST_FILES, py[i]);
        if (!path_exists(p)) continue;
        samda_dicom_header h;
        assert_int_equal(samda_dicom_read_header(p, &h, NULL), SAMDA_OK);
        expect_frame(p, 1, p);
        expect_frame(p, h.number_of_frames, p);
    }
}

/* RLE: pydicom decodes it itself (numpy), so the reference is independent of DCMTK. */
static void test_rle(void **state)
{
    (void)state;
    if (!have_python) skip();
    const char *p = fixture("dicom/transfer-syntaxes/rle.dcm");
    if (path_exists(p)) expect_frame(p, 1, p);
    static const char *py[] = {"MR_small_RLE.dcm", "SC_rgb_rle.dcm", "SC_rgb_rle_2frame.dcm", "SC_rgb_rle_16bit_2frame.dcm",
                               "SC_rgb_rle_32bit_2frame.dcm", "rtdose_rle.dcm"};
    char q[4096];
    for (size_t i = 0; i < sizeof py / sizeof *py; i++) {
        snprintf(q, sizeof q, "%s/%s", PYDICOM_TEST_FILES, py[i]);
        if (!path_exists(q)) continue;
        samda_dicom_header h;
        assert_int_equal(samda_dicom_read_header(q, &h, NULL), SAMDA_OK);
        expect_frame(q, 1, q);
        expect_frame(q, h.number_of_frames, q);
    }
}

/* Lossless JPEG, JPEG-LS and RLE of a 3-frame file against the uncompressed original. */
static void test_compressed_multi_frame(void **state)
{
    (void)state;
    if (!have_python || !have_tools) skip();
    char src[4300], p[4300];
    snprintf(src, sizeof src, "%s/multiframe.dcm", scratch);
    static const char *names[] = {"mf_jls.dcm", "mf_jpll.dcm", "mf_rle.dcm"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", scratch, names[i]);
        for (unsigned f = 3; f >= 1; f--) expect_frame(p, f, src); /* backwards: no reliance on order */
    }
}

/* Real compressed fixtures pydicom cannot decode here: against DCMTK's command-line decoders. */
static void test_compressed_fixtures(void **state)
{
    (void)state;
    if (!have_python || !have_tools) skip();
    static const struct { const char *name, *tool; } cases[] = {
        {"jpeg_lossless_sel1.dcm", "dcmdjpeg"}, {"jpeg_baseline_8bit.dcm", "dcmdjpeg"}, {"jpeg_ls.dcm", "dcmdjpls"}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char rel[256], dec[4300], cmd[9000], out[1024];
        snprintf(rel, sizeof rel, "dicom/transfer-syntaxes/%s", cases[i].name);
        const char *p = fixture(rel);
        if (!path_exists(p)) continue;
        snprintf(dec, sizeof dec, "%s/dec-%s", scratch, cases[i].name);
        snprintf(cmd, sizeof cmd, "%s '%s' '%s'", cases[i].tool, p, dec);
        if (run_capture(cmd, out, sizeof out) != 0) fail_msg("%s: %s", cmd, out);
        expect_frame(p, 1, dec);
    }
    /* pydicom's JPEG files: decoded colour comes back as RGB, interleaved */
    char p[4096];
    snprintf(p, sizeof p, "%s/SC_rgb_jpeg_dcmtk.dcm", PYDICOM_TEST_FILES);
    if (path_exists(p)) {
        void *d = NULL;
        size_t n = 0;
        samda_dicom_frame_info info;
        assert_int_equal(samda_dicom_frame_read(p, 1, &d, &n, &info, NULL), SAMDA_OK);
        assert_string_equal(info.photometric_interpretation, "RGB");
        assert_int_equal(n, (size_t)info.rows * info.columns * 3);
        free(d);
    }
}

static void test_errors(void **state)
{
    (void)state;
    void *d = (void *)1;
    size_t n = 7;
    samda_dicom_frame_info info;
    samda_error e;
    const char *p = fixture("dicom/mr-brain-20/brain_001.dcm");
    if (!path_exists(p)) skip();
    assert_int_equal(samda_dicom_frame_read(p, 0, &d, &n, &info, &e), SAMDA_ENOENT);
    assert_null(d);
    assert_int_equal(n, 0);
    assert_int_equal(samda_dicom_frame_read(p, 2, &d, &n, &info, &e), SAMDA_ENOENT);
    assert_non_null(strstr(e.message, "1 to 1"));
    const char *j2k = fixture("dicom/transfer-syntaxes/jpeg_2000.dcm");
    assert_int_equal(samda_dicom_frame_read(j2k, 1, &d, &n, &info, &e), SAMDA_ENOTSUP);
    assert_non_null(strstr(e.message, "JPEG 2000"));
    char q[4300];
    snprintf(q, sizeof q, "%s/rtstruct.dcm", PYDICOM_TEST_FILES);
    if (path_exists(q)) assert_int_equal(samda_dicom_frame_read(q, 1, &d, &n, &info, &e), SAMDA_ENOENT);
    snprintf(q, sizeof q, "%s/none.dcm", scratch);
    assert_int_equal(samda_dicom_frame_read(q, 1, &d, &n, &info, &e), SAMDA_ENOENT);
    assert_int_equal(samda_dicom_frame_read(NULL, 1, &d, &n, &info, &e), SAMDA_EINVAL);
    assert_int_equal(samda_dicom_frame_read(p, 1, NULL, &n, &info, &e), SAMDA_EINVAL);
    if (have_python) {
        snprintf(q, sizeof q, "%s/multiframe.dcm", scratch);
        assert_int_equal(samda_dicom_frame_read(q, 4, &d, &n, &info, &e), SAMDA_ENOENT);
        assert_non_null(strstr(e.message, "1 to 3"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_native_single_frame),
        cmocka_unit_test(test_native_multi_frame),
        cmocka_unit_test(test_rle),
        cmocka_unit_test(test_compressed_multi_frame),
        cmocka_unit_test(test_compressed_fixtures),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
