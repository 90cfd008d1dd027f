/* dicom/ct_write.cpp: CT series written, validated with dicom3tools' dciodvfy, and read back with
 * samda_dicom_volume_load (exact values, geometry). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dicom.h"
#include "dicom_test_util.h"

static char scratch[4096];

static int setup(void **state)
{
    (void)state;
    if (samda_dicom_init(NULL, NULL) != SAMDA_OK) return -1;
    return scratch_make(scratch, sizeof scratch, "ct") ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    scratch_remove(scratch);
    samda_dicom_shutdown();
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* dciodvfy on one file: fails the test on any line starting with "Error". */
static void assert_dciodvfy_clean(const char *path)
{
    if (!tool_available("dciodvfy")) return;
    char cmd[4400], out[16384];
    snprintf(cmd, sizeof cmd, "dciodvfy '%s'", path);
    run_capture(cmd, out, sizeof out);
    for (char *line = out; line && *line;) {
        char *nl = strchr(line, '\n');
        if (strncmp(line, "Error", 5) == 0) fail_msg("dciodvfy %s:\n%s", path, out);
        line = nl ? nl + 1 : NULL;
    }
}

static size_t dir_paths(const char *dir, size_t n, char (*buf)[4200], const char **ptrs)
{
    for (size_t i = 0; i < n; i++) {
        snprintf(buf[i], 4200, "%s/IMG%05zu.dcm", dir, i + 1);
        ptrs[i] = buf[i];
    }
    return n;
}

/* Write, validate, read back: values exact, geometry as asked. */
static void roundtrip(const char *tag, int16_t offset, const double *orientation)
{
    enum { S = 7, R = 40, C = 56 };
    static int16_t hu[S * R * C];
    for (int s = 0; s < S; s++)
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++) hu[(s * R + r) * C + c] = (int16_t)(offset + s * 300 + r * 7 - c * 3);
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/%s", scratch, tag);
    mkdir(dir, 0700);
    samda_ct_series_params p;
    samda_ct_series_params_init(&p);
    p.dir = dir;
    p.hu = hu;
    p.n_slices = S;
    p.rows = R;
    p.cols = C;
    p.pixel_spacing[0] = 0.7;
    p.pixel_spacing[1] = 0.8;
    p.slice_spacing = 2.5;
    p.origin[0] = -20;
    p.origin[1] = -10.5;
    p.origin[2] = 100;
    if (orientation) memcpy(p.orientation, orientation, sizeof p.orientation);
    p.patient_name = "Phantom^Ct";
    p.patient_id = "PH-001";
    p.study_description = "synthetic";
    p.series_description = "phantom CT";
    samda_ct_series_result res;
    samda_error e = {0};
    samda_status st = samda_dicom_write_ct_series(&p, &res, &e);
    if (st != SAMDA_OK) fail_msg("%s", e.message);
    assert_int_equal(res.n_files, S);
    assert_true(samda_dicom_uid_is_valid(res.study_instance_uid));
    assert_true(samda_dicom_uid_is_valid(res.series_instance_uid));
    assert_int_equal(count_files(dir), S); /* no temporary file left */

    char buf[S][4200];
    const char *ptrs[S];
    dir_paths(dir, S, buf, ptrs);
    assert_dciodvfy_clean(ptrs[0]);
    assert_dciodvfy_clean(ptrs[S - 1]);
    samda_dicom_header h;
    assert_int_equal(samda_dicom_read_header(ptrs[1], &h, &e), SAMDA_OK);
    assert_string_equal(h.sop_class_uid, "1.2.840.10008.5.1.4.1.1.2");
    assert_string_equal(h.transfer_syntax_uid, "1.2.840.10008.1.2.1");
    assert_string_equal(h.series_instance_uid, res.series_instance_uid);
    assert_string_equal(h.frame_of_reference_uid, res.frame_of_reference_uid);
    assert_string_equal(h.patient_id, "PH-001");
    assert_int_equal(h.instance_number, 2);
    int is_unsigned = offset - 3 * (C - 1) >= -1024; /* the smallest value written */
    assert_int_equal(h.pixel_representation, is_unsigned ? 0 : 1);
    assert_true(fabs(h.rescale_intercept - (is_unsigned ? -1024 : 0)) < 1e-9);
    assert_true(h.has_window);

    /* Reversed order in, sorted volume out, every value exact. */
    const char *rev[S];
    for (int i = 0; i < S; i++) rev[i] = ptrs[S - 1 - i];
    samda_volume *v = NULL;
    st = samda_dicom_volume_load(rev, S, NULL, &v, &e);
    if (st != SAMDA_OK) fail_msg("%s", e.message);
    const samda_volume_info *in = samda_volume_get_info(v);
    assert_int_equal(in->n_slices, S);
    assert_int_equal(in->rows, R);
    assert_int_equal(in->cols, C);
    assert_true(fabs(in->slice_spacing - 2.5) < 1e-6);
    assert_true(in->is_uniform);
    assert_true(fabs(in->pixel_spacing[0] - 0.7) < 1e-9 && fabs(in->pixel_spacing[1] - 0.8) < 1e-9);
    const float *vox = samda_volume_voxels(v);
    for (size_t i = 0; i < (size_t)S * R * C; i++)
        if (vox[i] != (float)hu[i]) fail_msg("voxel %zu: %g, written %d", i, vox[i], hu[i]);
    for (int s = 0; s < S; s++) {
        const samda_volume_slice *sl = samda_volume_slice_get(v, s);
        assert_int_equal(sl->instance_number, s + 1);
        assert_true(fabs(sl->location_mm - (samda_volume_slice_get(v, 0)->location_mm + 2.5 * s)) < 1e-4);
    }
    assert_true(fabs(samda_volume_slice_get(v, 0)->position[0] + 20) < 1e-6);
    samda_volume_free(v);
}

static void test_axial_unsigned(void **state)
{
    (void)state;
    roundtrip("axial", -859, NULL); /* smallest value exactly -1024 */
}

static void test_signed_below_minus_1024(void **state)
{
    (void)state;
    roundtrip("signed", -3000, NULL);
}

static void test_oblique(void **state)
{
    (void)state;
    const double a = 0.3;
    const double o[6] = {1, 0, 0, 0, cos(a), sin(a)};
    roundtrip("oblique", -500, o);
}

/* MR: MR Image Storage, unsigned values without Rescale attributes; with a slope, signed values
 * whose physical values are value * slope; the file prefix names the files. */
static void test_mr_and_slope(void **state)
{
    (void)state;
    enum { S = 3, R = 4, C = 5 };
    int16_t v[S * R * C];
    for (int i = 0; i < S * R * C; i++) v[i] = (int16_t)(i * 11);
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/mr", scratch);
    mkdir(dir, 0700);
    samda_ct_series_params p;
    samda_ct_series_params_init(&p);
    p.dir = dir;
    p.hu = v;
    p.n_slices = S;
    p.rows = R;
    p.cols = C;
    p.modality = "MR";
    p.file_prefix = "sess-1-";
    samda_error e = {0};
    samda_status st = samda_dicom_write_ct_series(&p, NULL, &e);
    if (st != SAMDA_OK) fail_msg("%s", e.message);
    char path[4300];
    snprintf(path, sizeof path, "%s/sess-1-IMG00002.dcm", dir);
    assert_dciodvfy_clean(path);
    samda_dicom_header h;
    assert_int_equal(samda_dicom_read_header(path, &h, &e), SAMDA_OK);
    assert_string_equal(h.sop_class_uid, "1.2.840.10008.5.1.4.1.1.4");
    assert_string_equal(h.modality, "MR");
    assert_int_equal(h.pixel_representation, 0);
    /* scaled: physical = stored * 2.5 */
    p.rescale_slope = 2.5;
    p.file_prefix = "scaled-";
    assert_int_equal(samda_dicom_write_ct_series(&p, NULL, &e), SAMDA_OK);
    char buf[S][4300];
    const char *ptrs[S];
    for (int k = 0; k < S; k++) {
        snprintf(buf[k], sizeof buf[k], "%s/scaled-IMG%05d.dcm", dir, k + 1);
        ptrs[k] = buf[k];
    }
    samda_volume *vol = NULL;
    st = samda_dicom_volume_load(ptrs, S, NULL, &vol, &e);
    if (st != SAMDA_OK) fail_msg("%s", e.message);
    const float *vox = samda_volume_voxels(vol);
    for (int i = 0; i < S * R * C; i++)
        if (fabsf(vox[i] - 2.5f * v[i]) > 1e-3f) fail_msg("voxel %d: %g, want %g", i, vox[i], 2.5 * v[i]);
    samda_volume_free(vol);
    p.file_prefix = "../x";
    assert_int_equal(samda_dicom_write_ct_series(&p, NULL, &e), SAMDA_EINVAL);
    p.file_prefix = NULL;
    p.modality = "US";
    assert_int_equal(samda_dicom_write_ct_series(&p, NULL, &e), SAMDA_EINVAL);
}

static void test_bad_params(void **state)
{
    (void)state;
    int16_t hu[4] = {0};
    samda_ct_series_params p;
    samda_ct_series_params_init(&p);
    p.dir = scratch;
    p.hu = hu;
    p.n_slices = 1;
    p.rows = 2;
    p.cols = 2;
    samda_error e = {0};
    p.orientation[4] = 0.5;
    assert_int_equal(samda_dicom_write_ct_series(&p, NULL, &e), SAMDA_EINVAL);
    assert_non_null(strstr(e.message, "orthogonal"));
    p.orientation[4] = 1;
    p.series_instance_uid = "1.2.abc";
    assert_int_equal(samda_dicom_write_ct_series(&p, NULL, &e), SAMDA_EBADUID);
    p.series_instance_uid = NULL;
    p.dir = "/nonexistent/dir";
    assert_int_equal(samda_dicom_write_ct_series(&p, NULL, &e), SAMDA_ENOENT);
    p.dir = scratch;
    p.rows = 0;
    assert_int_equal(samda_dicom_write_ct_series(&p, NULL, &e), SAMDA_EINVAL);
    assert_int_equal(samda_dicom_write_ct_series(NULL, NULL, &e), SAMDA_EINVAL);
}

/* Figures: 100 slices of 512x512 written and loaded (printed, never gated). */
static void test_bench_100x512(void **state)
{
    (void)state;
    enum { S = 100, N = 512 };
    int16_t *hu = malloc(sizeof(int16_t) * S * N * N);
    assert_non_null(hu);
    for (size_t i = 0; i < (size_t)S * N * N; i++) hu[i] = (int16_t)((i * 2654435761u) % 3000) - 1024;
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/bench", scratch);
    mkdir(dir, 0700);
    samda_ct_series_params p;
    samda_ct_series_params_init(&p);
    p.dir = dir;
    p.hu = hu;
    p.n_slices = S;
    p.rows = N;
    p.cols = N;
    samda_error e = {0};
    double t0 = now_s();
    assert_int_equal(samda_dicom_write_ct_series(&p, NULL, &e), SAMDA_OK);
    double t1 = now_s();
    static char buf[S][4200];
    const char *ptrs[S];
    dir_paths(dir, S, buf, ptrs);
    samda_volume *v = NULL;
    double t2 = now_s();
    samda_status st = samda_dicom_volume_load(ptrs, S, NULL, &v, &e);
    double t3 = now_s();
    if (st != SAMDA_OK) fail_msg("%s", e.message);
    assert_memory_equal(samda_volume_voxels(v), samda_volume_voxels(v), 4); /* loaded */
    const float *vox = samda_volume_voxels(v);
    for (size_t i = 0; i < (size_t)S * N * N; i += 9973) assert_true(vox[i] == (float)hu[i]);
    printf("bench: CT write %d x %dx%d: %.2f s (fsync per file); volume load: %.3f s\n", S, N, N, t1 - t0, t3 - t2);
    /* The same series as lossless JPEG (what PACS often send): decoding dominates. */
    if (tool_available("dcmcjpeg")) {
        char jdir[4300], cmd[9000], out[2048];
        snprintf(jdir, sizeof jdir, "%s/bench-jpeg", scratch);
        mkdir(jdir, 0700);
        snprintf(cmd, sizeof cmd, "for f in '%s'/*.dcm; do dcmcjpeg +e1 \"$f\" '%s'/\"$(basename \"$f\")\" || exit 1; done",
                 dir, jdir);
        if (run_capture(cmd, out, sizeof out) != 0) fail_msg("%s", out);
        static char jbuf[S][4200];
        const char *jptrs[S];
        dir_paths(jdir, S, jbuf, jptrs);
        samda_volume *jv = NULL;
        double t4 = now_s();
        st = samda_dicom_volume_load(jptrs, S, NULL, &jv, &e);
        double t5 = now_s();
        if (st != SAMDA_OK) fail_msg("%s", e.message);
        assert_memory_equal(samda_volume_voxels(jv), samda_volume_voxels(v), sizeof(float) * S * N * N);
        printf("bench: volume load of the same series as lossless JPEG: %.3f s\n", t5 - t4);
        samda_volume_free(jv);
    }
    samda_volume_free(v);
    free(hu);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_axial_unsigned),
        cmocka_unit_test(test_signed_below_minus_1024),
        cmocka_unit_test(test_oblique),
        cmocka_unit_test(test_mr_and_slope),
        cmocka_unit_test(test_bad_params),
        cmocka_unit_test(test_bench_100x512),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
