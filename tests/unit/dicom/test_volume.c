/* dicom/volume.cpp: series -> volume on real series (the oblique MR fixture, pydicom's CT/MR files),
 * every transfer syntax the build decodes, and broken series made at test time with pydicom.
 * Reference values (positions projected on the normal, sums of rescaled pixels) come from
 * volume_tool.py, which uses pydicom + numpy and never DCMTK. */
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
static char tool[4096];

static int setup(void **state)
{
    (void)state;
    if (samda_dicom_init(NULL, NULL) != SAMDA_OK) return -1;
    if (!scratch_make(scratch, sizeof scratch, "vol")) return -1;
    const char *src = getenv("SAMDA_SOURCE_DIR");
    snprintf(tool, sizeof tool, "%s/tests/unit/dicom/volume_tool.py", src ? src : ".");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    scratch_remove(scratch);
    samda_dicom_shutdown();
    return 0;
}

static int have_pydicom(void)
{
    static int known = -1;
    if (known < 0) known = system("/usr/bin/python3 -c 'import pydicom, numpy' >/dev/null 2>&1") == 0;
    return known;
}

/* The 20 files of the MR fixture in the order given by perm (NULL: file order). */
static size_t mr_paths(char paths[20][4200], const char *ptrs[20], const int *perm)
{
    const char *dir = fixture("dicom/mr-brain-20");
    for (int i = 0; i < 20; i++) {
        snprintf(paths[i], sizeof paths[i], "%s/brain_%03d.dcm", dir, (perm ? perm[i] : i) + 1);
        ptrs[i] = paths[i];
    }
    return 20;
}

static double slice_sum(const samda_volume *v, size_t s)
{
    const samda_volume_info *in = samda_volume_get_info(v);
    const float *p = samda_volume_voxels(v) + s * in->rows * in->cols;
    double sum = 0;
    for (size_t i = 0; i < (size_t)in->rows * in->cols; i++) sum += p[i];
    return sum;
}

/* Compare every slice of v with pydicom's reading of the same files: same frames, same locations,
 * same sums. Returns the number of slices matched. */
static size_t check_against_pydicom(const char *const *paths, size_t n, const samda_volume *v)
{
    static char cmd[200000], out[200000];
    int k = snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' describe", tool);
    for (size_t i = 0; i < n; i++) k += snprintf(cmd + k, sizeof cmd - k, " '%s'", paths[i]);
    int rc = run_capture(cmd, out, sizeof out);
    if (rc != 0) fail_msg("volume_tool.py describe failed: %s", out);
    const samda_volume_info *in = samda_volume_get_info(v);
    size_t matched = 0;
    char *save = NULL;
    for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char uid[128];
        unsigned frame;
        double loc, sum;
        if (sscanf(line, "%127s %u %lf %lf", uid, &frame, &loc, &sum) != 4) fail_msg("bad line: %s", line);
        int found = 0;
        for (size_t s = 0; s < in->n_slices; s++) {
            const samda_volume_slice *sl = samda_volume_slice_get(v, s);
            if (strcmp(sl->sop_instance_uid, uid) || sl->frame_number != frame) continue;
            found = 1;
            if (in->has_geometry && fabs(sl->location_mm - loc) > 1e-3)
                fail_msg("%s frame %u: location %.6f, pydicom %.6f", uid, frame, sl->location_mm, loc);
            double mine = slice_sum(v, s);
            if (fabs(mine - sum) > 1e-6 * fmax(1.0, fabs(sum)) + 0.01)
                fail_msg("%s frame %u: sum %.3f, pydicom %.3f", uid, frame, mine, sum);
        }
        if (!found) fail_msg("%s frame %u missing from the volume", uid, frame);
        matched++;
    }
    assert_int_equal(matched, in->n_slices);
    return matched;
}

static void assert_sorted(const samda_volume *v)
{
    const samda_volume_info *in = samda_volume_get_info(v);
    for (size_t s = 1; s < in->n_slices; s++)
        assert_true(samda_volume_slice_get(v, s)->location_mm > samda_volume_slice_get(v, s - 1)->location_mm);
    /* location is the position projected on the normal, and the normal is row x column. */
    const double *o = in->orientation;
    double nrm[3] = {o[1] * o[5] - o[2] * o[4], o[2] * o[3] - o[0] * o[5], o[0] * o[4] - o[1] * o[3]};
    double len = sqrt(nrm[0] * nrm[0] + nrm[1] * nrm[1] + nrm[2] * nrm[2]);
    for (size_t s = 0; s < in->n_slices; s++) {
        const samda_volume_slice *sl = samda_volume_slice_get(v, s);
        double d = (sl->position[0] * nrm[0] + sl->position[1] * nrm[1] + sl->position[2] * nrm[2]) / len;
        assert_true(fabs(d - sl->location_mm) < 1e-9);
    }
}

static samda_volume *load_ok(const char *const *paths, size_t n, const samda_volume_params *p)
{
    samda_volume *v = NULL;
    samda_error e = {0};
    samda_status st = samda_dicom_volume_load(paths, n, p, &v, &e);
    if (st != SAMDA_OK) fail_msg("load of %s (+%zu): %s: %s", paths[0], n - 1, samda_status_name(st), e.message);
    assert_non_null(v);
    return v;
}

static void load_fails(const char *const *paths, size_t n, const samda_volume_params *p, samda_status want,
                       const char *must_contain)
{
    samda_volume *v = (samda_volume *)1;
    samda_error e = {0};
    samda_status st = samda_dicom_volume_load(paths, n, p, &v, &e);
    if (st != want) fail_msg("want %s, got %s: %s", samda_status_name(want), samda_status_name(st), e.message);
    assert_null(v);
    if (must_contain && !strstr(e.message, must_contain))
        fail_msg("message \"%s\" lacks \"%s\"", e.message, must_contain);
}

static void test_mr_oblique_series(void **state)
{
    (void)state;
    if (!path_exists(fixture("dicom/mr-brain-20"))) skip();
    char paths[20][4200];
    const char *ptrs[20];
    size_t n = mr_paths(paths, ptrs, NULL);
    samda_volume *v = load_ok(ptrs, n, NULL);
    const samda_volume_info *in = samda_volume_get_info(v);
    assert_int_equal(in->n_slices, 20);
    assert_int_equal(in->rows, 256);
    assert_int_equal(in->cols, 256);
    assert_true(in->has_geometry);
    assert_true(fabs(in->orientation[4] - 0.99096) < 1e-6);
    /* normal = (1,0,0) x (0, 0.99096, 0.134158) = (0, -0.134158, 0.99096) */
    assert_true(fabs(in->normal[0]) < 1e-9);
    assert_true(fabs(in->normal[1] + 0.134158 / sqrt(0.99096 * 0.99096 + 0.134158 * 0.134158)) < 1e-6);
    assert_true(in->normal[2] > 0.98);
    assert_true(fabs(in->pixel_spacing[0] - 0.859375) < 1e-9);
    assert_string_equal(in->modality, "MR");
    assert_sorted(v);
    printf("mr-brain-20: spacing %.4f mm, max deviation %.2g mm, uniform %d, in-plane offset %.3g mm\n",
           in->slice_spacing, in->max_spacing_deviation_mm, in->is_uniform, in->max_in_plane_offset_mm);
    assert_true(in->slice_spacing > 1.0 && in->slice_spacing < 20.0);
    assert_true(in->is_uniform);
    assert_true(in->max_in_plane_offset_mm < 0.2); /* positions are rounded DS values */
    if (have_pydicom()) check_against_pydicom(ptrs, n, v);
    /* The sorted order is not the instance number order of this series (it is not monotonic). */
    const samda_dicom_header *h = samda_volume_source_header(v);
    assert_string_equal(h->sop_instance_uid, samda_volume_slice_get(v, 0)->sop_instance_uid);

    /* A shuffled input order gives the same volume. */
    int perm[20];
    for (int i = 0; i < 20; i++) perm[i] = i;
    srand(12345);
    for (int i = 19; i > 0; i--) {
        int j = rand() % (i + 1), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    char paths2[20][4200];
    const char *ptrs2[20];
    mr_paths(paths2, ptrs2, perm);
    samda_volume *v2 = load_ok(ptrs2, n, NULL);
    assert_int_equal(samda_volume_get_info(v2)->n_slices, 20);
    assert_memory_equal(samda_volume_voxels(v), samda_volume_voxels(v2), sizeof(float) * 20 * 256 * 256);
    for (size_t s = 0; s < 20; s++) {
        assert_string_equal(samda_volume_slice_get(v, s)->sop_instance_uid,
                            samda_volume_slice_get(v2, s)->sop_instance_uid);
        assert_int_equal(perm[samda_volume_slice_get(v2, s)->path_index],
                         (int)samda_volume_slice_get(v, s)->path_index);
    }
    samda_volume_free(v2);

    /* A missing middle slice: loaded, reported as a gap of one spacing; refused when asked. */
    const char *gap[19];
    size_t k = 0;
    size_t middle = samda_volume_slice_get(v, 10)->path_index;
    for (size_t i = 0; i < 20; i++)
        if (i != middle) gap[k++] = ptrs[i];
    samda_volume *v3 = load_ok(gap, 19, NULL);
    const samda_volume_info *in3 = samda_volume_get_info(v3);
    assert_false(in3->is_uniform);
    assert_true(fabs(in3->max_spacing_deviation_mm - in->slice_spacing) < 0.25); /* gaps jitter ~0.1 mm */
    samda_volume_free(v3);
    samda_volume_params p;
    samda_volume_params_init(&p);
    p.refuse_non_uniform = true;
    load_fails(gap, 19, &p, SAMDA_EBADDICOM, "not evenly spaced");
    p.refuse_non_uniform = false;
    p.max_voxels = 19 * 256 * 256 - 1;
    load_fails(gap, 19, &p, SAMDA_ETOOBIG, "max_voxels");
    samda_volume_free(v);
}

static void test_pydicom_ct_mr(void **state)
{
    (void)state;
    if (!path_exists(PYDICOM_TEST_FILES)) skip();
    const char *ct = PYDICOM_TEST_FILES "/CT_small.dcm";
    samda_volume *v = load_ok(&ct, 1, NULL);
    const samda_volume_info *in = samda_volume_get_info(v);
    assert_int_equal(in->n_slices, 1);
    assert_int_equal(in->rows, 128);
    assert_true(in->has_geometry);
    assert_string_equal(in->modality, "CT");
    if (have_pydicom()) check_against_pydicom(&ct, 1, v);
    samda_volume_free(v);

    /* Small real series of pydicom's DICOMDIR tests: loadable ones, and the ones that are not one
     * volume (localisers in several orientations, several series in one folder). */
    static const struct {
        const char *dir;
        samda_status want;
        const char *why;
        size_t n;
    } cases[] = {
        {"dicomdirtests/77654033/CT2", SAMDA_OK, NULL, 4},
        {"dicomdirtests/98892001/CT5N", SAMDA_OK, NULL, 5},
        {"dicomdirtests/98892001/CT2N", SAMDA_EBADDICOM, "ImageOrientationPatient", 2},
        {"dicomdirtests/98892003/MR700", SAMDA_EBADDICOM, "ImageOrientationPatient", 7},
        {"dicomdirtests/98892003/MR1", SAMDA_EBADDICOM, "another series", 3},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/%s", PYDICOM_TEST_FILES, cases[c].dir);
        DIR *d = opendir(dir);
        if (!d) fail_msg("cannot open %s", dir);
        char files[16][4200];
        const char *ptrs[16];
        size_t n = 0;
        struct dirent *e;
        while ((e = readdir(d)) && n < 16) {
            if (e->d_name[0] == '.') continue;
            snprintf(files[n], sizeof files[n], "%s/%s", dir, e->d_name);
            ptrs[n] = files[n];
            n++;
        }
        closedir(d);
        assert_int_equal(n, cases[c].n);
        if (cases[c].want == SAMDA_OK) {
            samda_volume *sv = load_ok(ptrs, n, NULL);
            assert_int_equal(samda_volume_get_info(sv)->n_slices, n);
            assert_sorted(sv);
            if (have_pydicom()) check_against_pydicom(ptrs, n, sv);
            samda_volume_free(sv);
        } else {
            load_fails(ptrs, n, NULL, cases[c].want, cases[c].why);
        }
    }
}

/* The same image in several encodings decodes to the same values. */
static void test_transfer_syntaxes_same_values(void **state)
{
    (void)state;
    if (!path_exists(PYDICOM_TEST_FILES)) skip();
    const char *ref = PYDICOM_TEST_FILES "/MR_small.dcm";
    samda_volume *r = load_ok(&ref, 1, NULL);
    const samda_volume_info *in = samda_volume_get_info(r);
    size_t nvox = (size_t)in->rows * in->cols;
    static const char *const same[] = {
        "MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm",
        "MR_small_expb.dcm", "MR_small_padded.dcm",
    };
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", PYDICOM_TEST_FILES, same[i]);
        const char *pp = path;
        samda_volume *v = load_ok(&pp, 1, NULL);
        assert_int_equal(samda_volume_get_info(v)->rows, in->rows);
        if (memcmp(samda_volume_voxels(v), samda_volume_voxels(r), nvox * sizeof(float)) != 0)
            fail_msg("%s decodes differently from MR_small.dcm", same[i]);
        samda_volume_free(v);
    }
    if (have_pydicom()) check_against_pydicom(&ref, 1, r);
    samda_volume_free(r);

    /* JPEG 2000: refused, naming the syntax and the instance (by number and UID, never by path). */
    static const char *const j2k[] = {PYDICOM_TEST_FILES "/MR_small_jp2klossless.dcm", NULL};
    load_fails(j2k, 1, NULL, SAMDA_ENOTSUP, "JPEG 2000");
    load_fails(j2k, 1, NULL, SAMDA_ENOTSUP, "(instance 1 (SOP Instance UID 1.3.6.1.4.1.5962.1.1.4.1.1.20040826185059.5457))");
    const char *fx = fixture("dicom/transfer-syntaxes/jpeg_2000.dcm");
    if (path_exists(fx)) load_fails(&fx, 1, NULL, SAMDA_ENOTSUP, "JPEG 2000");
    /* Colour: refused. */
    static const char *const rgb[] = {PYDICOM_TEST_FILES "/SC_rgb_rle.dcm"};
    load_fails(rgb, 1, NULL, SAMDA_ENOTSUP, "colour");
}

/* The fixture's compressed images against pydicom (RLE: pydicom's own numpy decoder) or against
 * DCMTK's command-line decompression read back by pydicom (JPEG, JPEG-LS). */
static void test_fixture_transfer_syntaxes(void **state)
{
    (void)state;
    if (!path_exists(fixture("dicom/transfer-syntaxes"))) skip();
    static const struct {
        const char *file;
        const char *decompress; /* NULL: pydicom reads it directly */
    } cases[] = {
        {"rle.dcm", NULL},
        {"explicit_big.dcm", NULL},
        {"implicit_little.dcm", NULL},
        {"explicit_little.dcm", NULL},
        {"deflated.dcm", NULL},
        {"jpeg_lossless_sel1.dcm", "dcmdjpeg"},
        {"jpeg_baseline_8bit.dcm", "dcmdjpeg"},
        {"jpeg_ls.dcm", "dcmdjpls"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[4200], plain[4200];
        snprintf(path, sizeof path, "%s", fixture("dicom/transfer-syntaxes"));
        snprintf(path + strlen(path), sizeof path - strlen(path), "/%s", cases[i].file);
        const char *pp = path;
        samda_volume *v = load_ok(&pp, 1, NULL);
        if (have_pydicom()) {
            const char *ref = path;
            if (cases[i].decompress) {
                if (!tool_available(cases[i].decompress)) {
                    samda_volume_free(v);
                    continue;
                }
                snprintf(plain, sizeof plain, "%s/plain-%zu.dcm", scratch, i);
                char cmd[9000], out[2048];
                snprintf(cmd, sizeof cmd, "%s '%s' '%s'", cases[i].decompress, path, plain);
                if (run_capture(cmd, out, sizeof out) != 0) fail_msg("%s: %s", cmd, out);
                ref = plain;
            }
            /* describe matches slices by UID, so a decompressed copy (same UID) is a fair reference. */
            check_against_pydicom(&ref, 1, v);
        }
        samda_volume_free(v);
    }
}

static void test_refusals(void **state)
{
    (void)state;
    if (!path_exists(fixture("dicom/mr-brain-20")) || !have_pydicom()) skip();
    char paths[21][4200];
    const char *ptrs[21];
    mr_paths(paths, ptrs, NULL);
    char cmd[9000], out[4096];
    /* One slice tilted by 1e-3 (over the 1e-4 tolerance): refused naming the attribute and that
     * instance (its number; the path of a stored copy means nothing to a PACS administrator). */
    char tilted[4200];
    snprintf(tilted, sizeof tilted, "%s/tilted.dcm", scratch);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' retilt '%s' '%s' 0.001", tool, paths[7], tilted);
    if (run_capture(cmd, out, sizeof out) != 0) fail_msg("%s", out);
    ptrs[7] = tilted;
    load_fails(ptrs, 20, NULL, SAMDA_EBADDICOM, "(0020,0037) ImageOrientationPatient differs");
    load_fails(ptrs, 20, NULL, SAMDA_EBADDICOM, "between instance 8 (SOP Instance UID");
    /* Within tolerance (1e-5): accepted. */
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' retilt '%s' '%s' 0.00001", tool, paths[7], tilted);
    if (run_capture(cmd, out, sizeof out) != 0) fail_msg("%s", out);
    samda_volume *v = load_ok(ptrs, 20, NULL);
    samda_volume_free(v);
    ptrs[7] = paths[7];

    /* A duplicate position (another instance, same place): refused naming both, with the instance
     * number of the copy. */
    snprintf(paths[20], sizeof paths[20], "%s/dup.dcm", scratch);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' duplicate '%s' '%s'", tool, paths[3], paths[20]);
    if (run_capture(cmd, out, sizeof out) != 0) fail_msg("%s", out);
    ptrs[20] = paths[20];
    load_fails(ptrs, 21, NULL, SAMDA_EBADDICOM, "instance 99");
    load_fails(ptrs, 21, NULL, SAMDA_EBADDICOM, "same position");
    /* The same file twice is a duplicate too. */
    ptrs[20] = paths[3];
    load_fails(ptrs, 21, NULL, SAMDA_EBADDICOM, "duplicate");

    /* Another series. */
    const char *mixed[2] = {paths[0], PYDICOM_TEST_FILES "/CT_small.dcm"};
    load_fails(mixed, 2, NULL, SAMDA_EBADDICOM, "another series");
    /* Another size in the same series: refused naming the attribute and the instance number. */
    char cropped[4200];
    snprintf(cropped, sizeof cropped, "%s/cropped.dcm", scratch);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' crop '%s' '%s'", tool, paths[5], cropped);
    if (run_capture(cmd, out, sizeof out) != 0) fail_msg("%s", out);
    ptrs[20] = cropped;
    load_fails(ptrs, 21, NULL, SAMDA_EBADDICOM, "(0028,0010) Rows and (0028,0011) Columns differ: instance 77 (SOP");
    load_fails(ptrs, 21, NULL, SAMDA_EBADDICOM, ") is 128x256");
    /* Arguments. */
    samda_volume *nv = NULL;
    assert_int_equal(samda_dicom_volume_load(NULL, 1, NULL, &nv, NULL), SAMDA_EINVAL);
    assert_int_equal(samda_dicom_volume_load(ptrs, 0, NULL, &nv, NULL), SAMDA_EINVAL);
    const char *missing = "/nonexistent/x.dcm";
    load_fails(&missing, 1, NULL, SAMDA_ENOENT, "x.dcm");
    samda_volume_free(NULL);
}

/* An enhanced (multi-frame) instance is split into frames with their own positions and rescale. */
static void test_enhanced_multiframe(void **state)
{
    (void)state;
    if (!path_exists(fixture("dicom/mr-brain-20")) || !have_pydicom()) skip();
    char paths[20][4200];
    const char *ptrs[20];
    mr_paths(paths, ptrs, NULL);
    char enh[4200], cmd[30000], out[4096];
    snprintf(enh, sizeof enh, "%s/enhanced.dcm", scratch);
    /* Frames deliberately out of order. */
    static const int pick[6] = {5, 0, 3, 1, 4, 2};
    int k = snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' enhanced '%s'", tool, enh);
    for (int i = 0; i < 6; i++) k += snprintf(cmd + k, sizeof cmd - k, " '%s'", paths[pick[i]]);
    if (run_capture(cmd, out, sizeof out) != 0) fail_msg("%s", out);
    const char *pp = enh;
    samda_volume *v = load_ok(&pp, 1, NULL);
    const samda_volume_info *in = samda_volume_get_info(v);
    assert_int_equal(in->n_slices, 6);
    assert_sorted(v);
    for (size_t s = 0; s < 6; s++) assert_true(samda_volume_slice_get(v, s)->frame_number >= 1);
    check_against_pydicom(&pp, 1, v);
    /* Same geometry as the six single-frame files. */
    const char *six[6];
    for (int i = 0; i < 6; i++) six[i] = paths[pick[i]];
    samda_volume *w = load_ok(six, 6, NULL);
    for (size_t s = 0; s < 6; s++)
        assert_true(fabs(samda_volume_slice_get(v, s)->location_mm - samda_volume_slice_get(w, s)->location_mm) <
                    1e-9);
    assert_true(fabs(in->slice_spacing - samda_volume_get_info(w)->slice_spacing) < 1e-9);
    samda_volume_free(w);
    samda_volume_free(v);
}

/* The MR series recompressed with DCMTK's tools (lossless JPEG, JPEG-LS, RLE) loads to the very same
 * volume: decoding runs on several threads at once over the files. */
static void test_compressed_series_equal(void **state)
{
    (void)state;
    if (!path_exists(fixture("dicom/mr-brain-20"))) skip();
    static const struct {
        const char *tool, *args, *tag;
    } codecs[] = {
        {"dcmcjpeg", "+e1", "jpegll"}, /* lossless, first-order prediction (SV1) */
        {"dcmcjpls", "+el", "jpegls"},  /* JPEG-LS lossless */
        {"dcmcrle", "", "rle"},
    };
    char paths[20][4200];
    const char *ptrs[20];
    mr_paths(paths, ptrs, NULL);
    samda_volume *ref = load_ok(ptrs, 20, NULL);
    for (size_t c = 0; c < sizeof codecs / sizeof codecs[0]; c++) {
        if (!tool_available(codecs[c].tool)) continue;
        char out_paths[20][4200];
        const char *optrs[20];
        for (int i = 0; i < 20; i++) {
            snprintf(out_paths[i], sizeof out_paths[i], "%s/%s-%02d.dcm", scratch, codecs[c].tag, i);
            char cmd[9000], out[2048];
            snprintf(cmd, sizeof cmd, "%s %s '%s' '%s'", codecs[c].tool, codecs[c].args, paths[i], out_paths[i]);
            if (run_capture(cmd, out, sizeof out) != 0) fail_msg("%s: %s", cmd, out);
            optrs[i] = out_paths[i];
        }
        samda_dicom_header h;
        assert_int_equal(samda_dicom_read_header(optrs[0], &h, NULL), SAMDA_OK);
        assert_string_not_equal(h.transfer_syntax_uid, "1.2.840.10008.1.2.1");
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        samda_volume *v = load_ok(optrs, 20, NULL);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        printf("mr-brain-20 as %s: loaded in %.3f s\n", codecs[c].tag,
               (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
        if (memcmp(samda_volume_voxels(v), samda_volume_voxels(ref), sizeof(float) * 20 * 256 * 256) != 0)
            fail_msg("%s series decodes differently from the uncompressed one", codecs[c].tag);
        samda_volume_free(v);
    }
    samda_volume_free(ref);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mr_oblique_series),
        cmocka_unit_test(test_pydicom_ct_mr),
        cmocka_unit_test(test_transfer_syntaxes_same_values),
        cmocka_unit_test(test_fixture_transfer_syntaxes),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_enhanced_multiframe),
        cmocka_unit_test(test_compressed_series_equal),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
