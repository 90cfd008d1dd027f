/* dicom/seg_write.cpp and dicom/seg_read.cpp: DICOM-SEGs written over real and synthetic series,
 * validated with dicom3tools' dciodvfy, read back independently with pydicom (seg_tool.py) and with
 * samda's reader; pydicom's real DICOM-SEG read by samda's reader. */
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
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dicom.h"
#include "dicom_test_util.h"

static char scratch[4096];
static char seg_tool[4096];

static int setup(void **state)
{
    (void)state;
    if (samda_dicom_init(NULL, NULL) != SAMDA_OK) return -1;
    const char *src = getenv("SAMDA_SOURCE_DIR");
    snprintf(seg_tool, sizeof seg_tool, "%s/tests/unit/dicom/seg_tool.py", src ? src : ".");
    return scratch_make(scratch, sizeof scratch, "seg") ? 0 : -1;
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

static int have_pydicom(void)
{
    static int known = -1;
    if (known < 0) known = system("/usr/bin/python3 -c 'import pydicom, numpy' >/dev/null 2>&1") == 0;
    return known;
}

/* dciodvfy reports no Error line, except lines containing ignore (NULL: none), for faults that the
 * SEG inherits from its source (the MR fixture's UIDs start with "0.0.0.0"). */
static void assert_dciodvfy_clean_but(const char *path, const char *ignore)
{
    if (!tool_available("dciodvfy")) return;
    char cmd[4400];
    static char out[65536];
    snprintf(cmd, sizeof cmd, "dciodvfy '%s'", path);
    run_capture(cmd, out, sizeof out);
    for (char *line = out; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        if (strncmp(line, "Error", 5) == 0 && !(ignore && strstr(line, ignore)))
            fail_msg("dciodvfy %s: %s", path, line);
        line = nl ? nl + 1 : NULL;
    }
}

static void assert_dciodvfy_clean(const char *path) { assert_dciodvfy_clean_but(path, NULL); }

/* A synthetic CT series in dir (n slices of rows x cols, odd sizes so frames are not whole bytes). */
typedef struct phantom {
    char dir[4200];
    size_t n;
    unsigned rows, cols;
    char (*paths)[4200];
    const char **ptrs;
    samda_volume *vol;
} phantom;

static void phantom_make_uids(phantom *ph, const char *tag, size_t n, unsigned rows, unsigned cols, const char *root);

static void phantom_make(phantom *ph, const char *tag, size_t n, unsigned rows, unsigned cols)
{
    phantom_make_uids(ph, tag, n, rows, cols, NULL);
}

/* As phantom_make, every UID made under root (NULL: "2.25." UUID UIDs); study, series and frame of
 * reference are root.1, root.2 and root.3. */
static void phantom_make_uids(phantom *ph, const char *tag, size_t n, unsigned rows, unsigned cols, const char *root)
{
    memset(ph, 0, sizeof *ph);
    ph->n = n;
    ph->rows = rows;
    ph->cols = cols;
    snprintf(ph->dir, sizeof ph->dir, "%s/%s", scratch, tag);
    mkdir(ph->dir, 0700);
    int16_t *hu = malloc(sizeof(int16_t) * n * rows * cols);
    assert_non_null(hu);
    for (size_t i = 0; i < n * rows * cols; i++) hu[i] = (int16_t)((i % 977) - 500);
    samda_ct_series_params p;
    samda_ct_series_params_init(&p);
    p.dir = ph->dir;
    p.hu = hu;
    p.n_slices = n;
    p.rows = rows;
    p.cols = cols;
    p.pixel_spacing[0] = 0.75;
    p.pixel_spacing[1] = 0.8;
    p.slice_spacing = 3;
    p.origin[2] = -40;
    p.patient_name = "Seg^Phantom";
    p.patient_id = "SEG-1";
    p.study_id = "1";
    char uids[3][64];
    if (root) {
        for (int i = 0; i < 3; i++) snprintf(uids[i], sizeof uids[i], "%s.%d", root, i + 1);
        p.study_instance_uid = uids[0];
        p.series_instance_uid = uids[1];
        p.frame_of_reference_uid = uids[2];
        p.uid_root = root;
    }
    samda_error e = {0};
    samda_status st = samda_dicom_write_ct_series(&p, NULL, &e);
    free(hu);
    if (st != SAMDA_OK) fail_msg("%s", e.message);
    ph->paths = calloc(n, 4200);
    ph->ptrs = calloc(n, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        snprintf(ph->paths[i], 4200, "%s/IMG%05zu.dcm", ph->dir, i + 1);
        ph->ptrs[i] = ph->paths[i];
    }
    st = samda_dicom_volume_load(ph->ptrs, n, NULL, &ph->vol, &e);
    if (st != SAMDA_OK) fail_msg("%s", e.message);
}

static void phantom_free(phantom *ph)
{
    samda_volume_free(ph->vol);
    free(ph->paths);
    free(ph->ptrs);
}

/* Ball of radius r (voxels) at (cs, cr, cc) into mask. Returns voxels set. */
static size_t ball(uint8_t *mask, size_t n, unsigned rows, unsigned cols, double cs, double cr, double cc, double r)
{
    size_t set = 0;
    for (size_t s = 0; s < n; s++)
        for (unsigned y = 0; y < rows; y++)
            for (unsigned x = 0; x < cols; x++) {
                double d = (s - cs) * (s - cs) + (y - cr) * (y - cr) + (x - cc) * (x - cc);
                uint8_t in = d <= r * r;
                mask[(s * rows + y) * cols + x] = in;
                set += in;
            }
    return set;
}

/* Run seg_tool.py check; returns the voxel count it reports for segment number, and the frames. */
static void pydicom_check(const char *seg_path, const phantom *ph, const char **ptrs, size_t n_src, size_t want_frames,
                          const size_t *want_voxels, size_t n_segments)
{
    if (!have_pydicom()) return;
    static char cmd[300000], out[65536];
    int k = snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' check '%s'", seg_tool, seg_path);
    for (size_t i = 0; i < n_src; i++) k += snprintf(cmd + k, sizeof cmd - k, " '%s'", ptrs[i]);
    (void)ph;
    if (run_capture(cmd, out, sizeof out) != 0) fail_msg("seg_tool.py: %s", out);
    size_t frames = 0, seen = 0;
    char *save = NULL;
    for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        unsigned num;
        char label[128];
        size_t vox;
        if (sscanf(line, "frames %zu", &frames) == 1) continue;
        if (sscanf(line, "segment %u %127s %zu", &num, label, &vox) == 3) {
            assert_true(num >= 1 && num <= n_segments);
            if (vox != want_voxels[num - 1]) fail_msg("segment %u: pydicom counts %zu voxels, written %zu", num, vox,
                                                      want_voxels[num - 1]);
            seen++;
        }
    }
    assert_int_equal(frames, want_frames);
    assert_int_equal(seen, n_segments);
}

static void segment_defaults(samda_seg_segment *s, const char *label)
{
    samda_seg_segment_init(s);
    s->label = label;
    s->type.value = "10200004";
    s->type.scheme = "SCT";
    s->type.meaning = "Liver";
    s->category.value = "123037004";
    s->category.scheme = "SCT";
    s->category.meaning = "Anatomical Structure";
    s->algorithm_name = "samda-sam";
    s->algorithm_version = "vit_b+adapter-3";
    s->has_color = true;
    s->rgb[0] = 221;
    s->rgb[1] = 130;
    s->rgb[2] = 101;
}

/* Slices where a mask has a voxel. */
static size_t nonempty_slices(const uint8_t *mask, size_t n, size_t plane)
{
    size_t k = 0;
    for (size_t s = 0; s < n; s++)
        for (size_t i = 0; i < plane; i++)
            if (mask[s * plane + i]) {
                k++;
                break;
            }
    return k;
}

static void test_write_phantom(void **state)
{
    (void)state;
    phantom ph;
    phantom_make(&ph, "ph", 12, 37, 45);
    size_t plane = (size_t)ph.rows * ph.cols, total = plane * ph.n;
    uint8_t *m1 = malloc(total), *m2 = malloc(total), *m3 = calloc(total, 1);
    size_t v1 = ball(m1, ph.n, ph.rows, ph.cols, 5, 18, 22, 4.5);
    size_t v2 = ball(m2, ph.n, ph.rows, ph.cols, 8, 10, 30, 2.2);
    samda_seg_params sp;
    samda_seg_params_init(&sp);
    sp.series_description = "samda test segmentation";
    sp.series_number = 501;
    samda_error e = {0};
    samda_seg_writer *w = samda_seg_writer_new(ph.vol, &sp, &e);
    if (!w) fail_msg("%s", e.message);
    samda_seg_segment s;
    unsigned num = 99;
    segment_defaults(&s, "liver");
    if (samda_seg_writer_add_segment(w, &s, m1, &num, &e) != SAMDA_OK) fail_msg("%s", e.message);
    assert_int_equal(num, 1);
    segment_defaults(&s, "lesion 1");
    s.type.value = "52988006";
    s.type.meaning = "Lesion";
    s.category.value = "49755003";
    s.category.meaning = "Morphologically Altered Structure";
    s.description = "small ball";
    s.algorithm_type = SAMDA_SEG_ALGORITHM_SEMIAUTOMATIC;
    s.type_modifier = (samda_seg_code){"7771000", "SCT", "Left"}; /* inside the type's item */
    if (samda_seg_writer_add_segment(w, &s, m2, &num, &e) != SAMDA_OK) fail_msg("%s", e.message);
    assert_int_equal(num, 2);
    segment_defaults(&s, "empty");
    if (samda_seg_writer_add_segment(w, &s, m3, &num, &e) != SAMDA_OK) fail_msg("%s", e.message);
    assert_int_equal(num, 3); /* default policy keeps it with one empty frame */

    char path[4300];
    snprintf(path, sizeof path, "%s/seg.dcm", scratch);
    samda_seg_save_result r;
    if (samda_seg_writer_save(w, path, &r, &e) != SAMDA_OK) fail_msg("%s", e.message);
    size_t want_frames = nonempty_slices(m1, ph.n, plane) + nonempty_slices(m2, ph.n, plane) + 1;
    assert_int_equal(r.n_frames, want_frames);
    assert_int_equal(r.n_segments, 3);
    assert_int_equal(r.n_empty_kept, 1);
    assert_int_equal(r.n_empty_skipped, 0);
    assert_true(samda_dicom_uid_is_valid(r.sop_instance_uid));
    assert_string_not_equal(r.series_instance_uid, samda_volume_get_info(ph.vol)->series_instance_uid);
    assert_int_equal(count_files(scratch) - 1, 1); /* seg.dcm beside ph/, no temporary file */

    samda_dicom_header h;
    assert_int_equal(samda_dicom_read_header(path, &h, &e), SAMDA_OK);
    assert_string_equal(h.sop_class_uid, "1.2.840.10008.5.1.4.1.1.66.4");
    assert_string_equal(h.modality, "SEG");
    assert_string_equal(h.study_instance_uid, samda_volume_get_info(ph.vol)->study_instance_uid);
    assert_string_equal(h.frame_of_reference_uid, samda_volume_get_info(ph.vol)->frame_of_reference_uid);
    assert_string_equal(h.patient_id, "SEG-1");
    assert_string_equal(h.series_description, "samda test segmentation");
    assert_int_equal(h.series_number, 501);
    assert_int_equal(h.number_of_frames, want_frames);
    assert_dciodvfy_clean(path);
    size_t want_vox[3] = {v1, v2, 0};
    pydicom_check(path, &ph, ph.ptrs, ph.n, want_frames, want_vox, 3);

    /* samda's reader: the same segments, frames and masks. */
    samda_seg *rd = NULL;
    if (samda_seg_read(path, &rd, &e) != SAMDA_OK) fail_msg("%s", e.message);
    const samda_seg_info *si = samda_seg_get_info(rd);
    assert_int_equal(si->rows, ph.rows);
    assert_int_equal(si->cols, ph.cols);
    assert_int_equal(si->n_frames, want_frames);
    assert_int_equal(si->n_segments, 3);
    assert_false(si->is_fractional);
    assert_string_equal(si->sop_instance_uid, r.sop_instance_uid);
    assert_string_equal(si->series_instance_uid, r.series_instance_uid);
    assert_string_equal(si->referenced_series_instance_uid, samda_volume_get_info(ph.vol)->series_instance_uid);
    assert_true(si->has_orientation && fabs(si->orientation[0] - 1) < 1e-9);
    const samda_seg_segment_info *sg = samda_seg_segment_get(rd, 1);
    assert_int_equal(sg->number, 2);
    assert_string_equal(sg->label, "lesion 1");
    assert_string_equal(sg->description, "small ball");
    assert_string_equal(sg->type_value, "52988006");
    assert_string_equal(sg->type_scheme, "SCT");
    assert_string_equal(sg->type_modifier_value, "7771000");
    assert_string_equal(sg->type_modifier_scheme, "SCT");
    assert_string_equal(sg->type_modifier_meaning, "Left");
    assert_string_equal(samda_seg_segment_get(rd, 0)->type_modifier_value, "");
    assert_string_equal(sg->category_meaning, "Morphologically Altered Structure");
    assert_string_equal(sg->algorithm_type, "SEMIAUTOMATIC");
    assert_string_equal(sg->algorithm_name, "samda-sam");
    assert_true(sg->has_cielab);
    assert_null(samda_seg_segment_get(rd, 3));
    size_t on_frames = 0;
    for (size_t f = 0; f < si->n_frames; f++) {
        const samda_seg_frame_info *fi = samda_seg_frame_get(rd, f);
        const uint8_t *fm = samda_seg_frame_mask(rd, f);
        int found = 0;
        for (size_t k = 0; k < ph.n; k++) {
            const samda_volume_slice *sl = samda_volume_slice_get(ph.vol, k);
            if (strcmp(sl->sop_instance_uid, fi->referenced_sop_instance_uid)) continue;
            found = 1;
            assert_true(fi->has_position);
            for (int j = 0; j < 3; j++) assert_true(fabs(fi->position[j] - sl->position[j]) < 1e-6);
            const uint8_t *src = fi->segment_number == 1 ? m1 : fi->segment_number == 2 ? m2 : m3;
            assert_memory_equal(fm, src + k * plane, plane);
        }
        assert_true(found);
        for (size_t i = 0; i < plane; i++) on_frames += fm[i];
    }
    assert_int_equal(on_frames, v1 + v2);
    uint8_t *labels = malloc(total);
    size_t mapped = 0;
    if (samda_seg_to_label_volume(rd, ph.vol, labels, &mapped, &e) != SAMDA_OK) fail_msg("%s", e.message);
    assert_int_equal(mapped, want_frames);
    for (size_t i = 0; i < total; i++) {
        uint8_t want = m2[i] ? 2 : m1[i] ? 1 : 0;
        if (labels[i] != want) fail_msg("label %zu: %u, want %u", i, labels[i], want);
    }
    samda_seg_free(rd);

    /* Without source references (removed with pydicom), frames map by position. */
    if (have_pydicom()) {
        char stripped[4300], cmd[9000], out[2048];
        snprintf(stripped, sizeof stripped, "%s/stripped.dcm", scratch);
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' strip-refs '%s' '%s'", seg_tool, path, stripped);
        if (run_capture(cmd, out, sizeof out) != 0) fail_msg("%s", out);
        assert_int_equal(samda_seg_read(stripped, &rd, &e), SAMDA_OK);
        assert_string_equal(samda_seg_frame_get(rd, 0)->referenced_sop_instance_uid, "");
        uint8_t *labels2 = malloc(total);
        assert_int_equal(samda_seg_to_label_volume(rd, ph.vol, labels2, &mapped, &e), SAMDA_OK);
        assert_memory_equal(labels, labels2, total);
        free(labels2);
        samda_seg_free(rd);
        unlink(stripped);
    }
    free(labels);

    /* Saving again gives the same instance. */
    char path2[4300];
    snprintf(path2, sizeof path2, "%s/seg-again.dcm", scratch);
    samda_seg_save_result r2;
    assert_int_equal(samda_seg_writer_save(w, path2, &r2, &e), SAMDA_OK);
    assert_string_equal(r.sop_instance_uid, r2.sop_instance_uid);
    unlink(path2);
    samda_seg_writer_free(w);
    free(m1);
    free(m2);
    free(m3);
    phantom_free(&ph);
}

/* Real archives hold UIDs with leading zeros in a component ("1.2.040.5", forbidden by PS3.5 9.1 but
 * accepted at intake): the SEG references them exactly as they are (a corrected UID would reference
 * an instance the PACS does not have) and joins that study, instead of failing on DCMTK's check. */
static void test_write_leading_zero_uids(void **state)
{
    (void)state;
    phantom ph;
    phantom_make_uids(&ph, "lz", 4, 16, 16, "1.2.040.05");
    assert_string_equal(samda_volume_get_info(ph.vol)->study_instance_uid, "1.2.040.05.1");
    size_t total = (size_t)ph.n * ph.rows * ph.cols;
    uint8_t *m = malloc(total);
    ball(m, ph.n, ph.rows, ph.cols, 2, 8, 8, 3);
    samda_seg_params sp;
    samda_seg_params_init(&sp);
    samda_error e = {0};
    samda_seg_writer *w = samda_seg_writer_new(ph.vol, &sp, &e);
    if (!w) fail_msg("%s", e.message);
    samda_seg_segment s;
    segment_defaults(&s, "liver");
    if (samda_seg_writer_add_segment(w, &s, m, NULL, &e) != SAMDA_OK) fail_msg("%s", e.message);
    char path[4300];
    snprintf(path, sizeof path, "%s/seg-lz.dcm", scratch);
    samda_seg_save_result r;
    if (samda_seg_writer_save(w, path, &r, &e) != SAMDA_OK) fail_msg("%s", e.message);
    samda_seg_writer_free(w);
    /* Its own UIDs are new and conformant; the references are the source's, unchanged. */
    assert_true(strncmp(r.sop_instance_uid, "1.2.040", 7) != 0);
    samda_dicom_header h;
    assert_int_equal(samda_dicom_read_header(path, &h, &e), SAMDA_OK);
    assert_string_equal(h.study_instance_uid, "1.2.040.05.1");
    assert_string_equal(h.frame_of_reference_uid, "1.2.040.05.3");
    samda_seg *seg = NULL;
    if (samda_seg_read(path, &seg, &e) != SAMDA_OK) fail_msg("%s", e.message);
    uint8_t *labels = calloc(total, 1);
    size_t mapped = 0;
    if (samda_seg_to_label_volume(seg, ph.vol, labels, &mapped, &e) != SAMDA_OK) fail_msg("%s", e.message);
    assert_true(mapped > 0);
    assert_int_equal(memcmp(labels, m, total), 0);
    samda_seg_free(seg);
    free(labels);
    free(m);
    phantom_free(&ph);
}

static void test_write_mr_oblique(void **state)
{
    (void)state;
    const char *dir = fixture("dicom/mr-brain-20");
    if (!path_exists(dir)) skip();
    char paths[20][4200];
    const char *ptrs[20];
    for (int i = 0; i < 20; i++) {
        snprintf(paths[i], sizeof paths[i], "%s/brain_%03d.dcm", dir, i + 1);
        ptrs[i] = paths[i];
    }
    samda_volume *v = NULL;
    samda_error e = {0};
    assert_int_equal(samda_dicom_volume_load(ptrs, 20, NULL, &v, &e), SAMDA_OK);
    const samda_volume_info *in = samda_volume_get_info(v);
    size_t plane = (size_t)in->rows * in->cols, total = plane * in->n_slices;
    /* Bright tissue on the middle slices only. */
    uint8_t *m = calloc(total, 1);
    const float *vox = samda_volume_voxels(v);
    size_t set = 0;
    for (size_t i = 6 * plane; i < 14 * plane; i++) set += (m[i] = vox[i] > 400);
    assert_true(set > 1000);
    samda_seg_writer *w = samda_seg_writer_new(v, NULL, &e);
    if (!w) fail_msg("%s", e.message);
    samda_seg_segment s;
    segment_defaults(&s, "bright");
    s.type.value = "12738006";
    s.type.meaning = "Brain";
    assert_int_equal(samda_seg_writer_add_segment(w, &s, m, NULL, &e), SAMDA_OK);
    char path[4300];
    snprintf(path, sizeof path, "%s/mr-seg.dcm", scratch);
    samda_seg_save_result r;
    if (samda_seg_writer_save(w, path, &r, &e) != SAMDA_OK) fail_msg("%s", e.message);
    assert_int_equal(r.n_frames, 8);
    assert_dciodvfy_clean_but(path, "Illegal root for UID - \"0.0.0.0.");
    size_t want[1] = {set};
    pydicom_check(path, NULL, ptrs, 20, 8, want, 1);
    samda_seg_writer_free(w);
    free(m);
    samda_volume_free(v);
}

static void test_empty_policy_and_errors(void **state)
{
    (void)state;
    phantom ph;
    phantom_make(&ph, "empty", 3, 8, 8);
    uint8_t mask[3 * 64] = {0};
    samda_seg_params sp;
    samda_seg_params_init(&sp);
    sp.empty_segment = SAMDA_SEG_EMPTY_SKIP;
    samda_error e = {0};
    samda_seg_writer *w = samda_seg_writer_new(ph.vol, &sp, &e);
    assert_non_null(w);
    samda_seg_segment s;
    segment_defaults(&s, "nothing");
    unsigned num = 7;
    assert_int_equal(samda_seg_writer_add_segment(w, &s, mask, &num, &e), SAMDA_OK);
    assert_int_equal(num, 0);
    char path[4300];
    snprintf(path, sizeof path, "%s/none.dcm", scratch);
    assert_int_equal(samda_seg_writer_save(w, path, NULL, &e), SAMDA_EINVAL);
    assert_non_null(strstr(e.message, "1 skipped"));
    assert_false(path_exists(path));
    /* Bad segments leave the writer usable. */
    segment_defaults(&s, NULL);
    assert_int_equal(samda_seg_writer_add_segment(w, &s, mask, NULL, &e), SAMDA_EINVAL);
    segment_defaults(&s, "x");
    s.type.value = NULL;
    assert_int_equal(samda_seg_writer_add_segment(w, &s, mask, NULL, &e), SAMDA_EINVAL);
    segment_defaults(&s, "x");
    s.algorithm_name = NULL;
    assert_int_equal(samda_seg_writer_add_segment(w, &s, mask, NULL, &e), SAMDA_EINVAL);
    s.algorithm_type = SAMDA_SEG_ALGORITHM_MANUAL; /* manual needs no algorithm name */
    mask[70] = 1;
    assert_int_equal(samda_seg_writer_add_segment(w, &s, mask, &num, &e), SAMDA_OK);
    assert_int_equal(num, 1);
    samda_seg_save_result r;
    assert_int_equal(samda_seg_writer_save(w, path, &r, &e), SAMDA_OK);
    assert_int_equal(r.n_frames, 1);
    assert_int_equal(r.n_empty_skipped, 1);
    assert_dciodvfy_clean(path);
    samda_seg_writer_free(w);
    samda_seg_writer_free(NULL);

    sp.content_label = "lower case";
    assert_null(samda_seg_writer_new(ph.vol, &sp, &e));
    assert_int_equal(e.code, SAMDA_EINVAL);
    sp.content_label = NULL;
    sp.series_instance_uid = "1..2";
    assert_null(samda_seg_writer_new(ph.vol, &sp, &e));
    assert_int_equal(e.code, SAMDA_EBADUID);
    assert_null(samda_seg_writer_new(NULL, NULL, &e));
    assert_int_equal(e.code, SAMDA_EINVAL);
    /* A missing directory: nothing written. */
    sp.series_instance_uid = NULL;
    w = samda_seg_writer_new(ph.vol, &sp, &e);
    assert_non_null(w);
    assert_int_equal(samda_seg_writer_add_segment(w, &s, mask, NULL, &e), SAMDA_OK);
    assert_int_equal(samda_seg_writer_save(w, "/nonexistent-dir/seg.dcm", NULL, &e), SAMDA_ENOENT);
    samda_seg_writer_free(w);
    /* A source without geometry (a 16-frame cine without positions) cannot carry a SEG. */
    const char *cine = fixture("dicom/transfer-syntaxes/explicit_little.dcm");
    if (path_exists(cine)) {
        samda_volume *cv = NULL;
        assert_int_equal(samda_dicom_volume_load(&cine, 1, NULL, &cv, &e), SAMDA_OK);
        assert_false(samda_volume_get_info(cv)->has_geometry);
        assert_null(samda_seg_writer_new(cv, NULL, &e));
        assert_int_equal(e.code, SAMDA_EINVAL);
        assert_non_null(strstr(e.message, "no geometry"));
        samda_volume_free(cv);
    }
    phantom_free(&ph);
}

/* A SEG over an enhanced (multi-frame) source references source frames and maps back onto them. */
static void test_enhanced_source(void **state)
{
    (void)state;
    const char *dir = fixture("dicom/mr-brain-20");
    if (!path_exists(dir) || !have_pydicom()) skip();
    char enh[4300], cmd[20000], out[4096];
    snprintf(enh, sizeof enh, "%s/enhanced-src.dcm", scratch);
    const char *src = getenv("SAMDA_SOURCE_DIR");
    int k = snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/unit/dicom/volume_tool.py' enhanced '%s'",
                     src ? src : ".", enh);
    for (int i = 4; i >= 0; i--) k += snprintf(cmd + k, sizeof cmd - k, " '%s/brain_%03d.dcm'", dir, i + 1);
    if (run_capture(cmd, out, sizeof out) != 0) fail_msg("%s", out);
    const char *pp = enh;
    samda_volume *v = NULL;
    samda_error e = {0};
    if (samda_dicom_volume_load(&pp, 1, NULL, &v, &e) != SAMDA_OK) fail_msg("%s", e.message);
    const samda_volume_info *in = samda_volume_get_info(v);
    assert_int_equal(in->n_slices, 5);
    size_t plane = (size_t)in->rows * in->cols;
    uint8_t *m = calloc(plane * 5, 1);
    for (size_t s = 1; s < 4; s++) memset(m + s * plane + 100 * in->cols, 1, 20 * in->cols);
    samda_seg_writer *w = samda_seg_writer_new(v, NULL, &e);
    assert_non_null(w);
    samda_seg_segment sg;
    segment_defaults(&sg, "band");
    if (samda_seg_writer_add_segment(w, &sg, m, NULL, &e) != SAMDA_OK) fail_msg("%s", e.message);
    char path[4300];
    snprintf(path, sizeof path, "%s/enh-seg.dcm", scratch);
    if (samda_seg_writer_save(w, path, NULL, &e) != SAMDA_OK) fail_msg("%s", e.message);
    assert_dciodvfy_clean_but(path, "Illegal root for UID - \"0.0.0.0.");
    samda_seg *rd = NULL;
    assert_int_equal(samda_seg_read(path, &rd, &e), SAMDA_OK);
    assert_int_equal(samda_seg_get_info(rd)->n_frames, 3);
    for (size_t f = 0; f < 3; f++) {
        const samda_seg_frame_info *fi = samda_seg_frame_get(rd, f);
        assert_string_equal(fi->referenced_sop_instance_uid, samda_volume_slice_get(v, 0)->sop_instance_uid);
        assert_int_equal(fi->referenced_frame_number, samda_volume_slice_get(v, f + 1)->frame_number);
    }
    uint8_t *labels = malloc(plane * 5);
    assert_int_equal(samda_seg_to_label_volume(rd, v, labels, NULL, &e), SAMDA_OK);
    assert_memory_equal(labels, m, plane * 5);
    free(labels);
    samda_seg_free(rd);
    samda_seg_writer_free(w);
    free(m);
    samda_volume_free(v);
}

/* pydicom's real DICOM-SEG (written by dcmqi), little and big endian. */
static void test_read_pydicom_liver(void **state)
{
    (void)state;
    static const char *const files[] = {PYDICOM_TEST_FILES "/liver_1frame.dcm",
                                        PYDICOM_TEST_FILES "/liver_expb_1frame.dcm"};
    if (!path_exists(files[0])) skip();
    size_t want = 0;
    if (have_pydicom()) {
        char cmd[512], out[256];
        snprintf(cmd, sizeof cmd,
                 "/usr/bin/python3 -c \"import pydicom, numpy; print(numpy.count_nonzero(pydicom.dcmread('%s')"
                 ".pixel_array))\"", files[0]);
        assert_int_equal(run_capture(cmd, out, sizeof out), 0);
        want = strtoul(out, NULL, 10);
        assert_true(want > 0);
    }
    uint8_t *first = NULL;
    for (size_t k = 0; k < 2; k++) {
        samda_seg *rd = NULL;
        samda_error e = {0};
        if (samda_seg_read(files[k], &rd, &e) != SAMDA_OK) fail_msg("%s", e.message);
        const samda_seg_info *si = samda_seg_get_info(rd);
        assert_int_equal(si->rows, 512);
        assert_int_equal(si->cols, 512);
        assert_int_equal(si->n_frames, 1); /* NumberOfFrames absent; 3 per-frame items, 1 frame of pixels */
        assert_int_equal(si->n_segments, 1);
        assert_string_equal(si->referenced_series_instance_uid,
                            "1.2.392.200103.20080913.113635.1.2009.6.22.21.43.10.23430.1");
        const samda_seg_segment_info *sg = samda_seg_segment_get(rd, 0);
        assert_int_equal(sg->number, 1);
        assert_string_equal(sg->label, "Liver");
        assert_string_equal(sg->type_value, "T-62000");
        assert_string_equal(sg->type_scheme, "SRT");
        assert_string_equal(sg->category_value, "T-D0050");
        assert_string_equal(sg->algorithm_type, "SEMIAUTOMATIC");
        assert_string_equal(sg->algorithm_name, "SlicerEditor");
        assert_true(sg->has_cielab);
        assert_int_equal(sg->cielab[0], 41661);
        const samda_seg_frame_info *fi = samda_seg_frame_get(rd, 0);
        assert_int_equal(fi->segment_number, 1);
        assert_string_equal(fi->referenced_sop_instance_uid,
                            "1.2.392.200103.20080913.113635.2.2009.6.22.21.43.10.23433.1");
        assert_true(fi->has_position && fabs(fi->position[0] + 235.2) < 1e-6 && fabs(fi->position[2] + 128.69) < 1e-6);
        const uint8_t *m = samda_seg_frame_mask(rd, 0);
        size_t set = 0;
        for (size_t i = 0; i < 512 * 512; i++) set += m[i];
        if (want) assert_int_equal(set, want);
        if (k == 0) {
            first = malloc(512 * 512);
            memcpy(first, m, 512 * 512);
        } else {
            assert_memory_equal(first, m, 512 * 512);
        }
        samda_seg_free(rd);
    }
    free(first);
    /* Not a SEG, and missing. */
    samda_seg *rd = NULL;
    samda_error e = {0};
    assert_int_equal(samda_seg_read(PYDICOM_TEST_FILES "/CT_small.dcm", &rd, &e), SAMDA_EBADDICOM);
    assert_null(rd);
    assert_int_equal(samda_seg_read("/nonexistent.dcm", &rd, &e), SAMDA_ENOENT);
    samda_seg_free(NULL);
}

/* Figures: a SEG over 100 slices of 512x512 (printed, never gated). */
static void test_bench_seg_100x512(void **state)
{
    (void)state;
    phantom ph;
    double t0 = now_s();
    phantom_make(&ph, "bench", 100, 512, 512);
    double t1 = now_s();
    size_t total = (size_t)100 * 512 * 512;
    uint8_t *m1 = malloc(total), *m2 = malloc(total);
    ball(m1, 100, 512, 512, 50, 256, 256, 45);
    ball(m2, 100, 512, 512, 30, 150, 300, 20);
    samda_error e = {0};
    double t2 = now_s();
    samda_seg_writer *w = samda_seg_writer_new(ph.vol, NULL, &e);
    assert_non_null(w);
    samda_seg_segment s;
    segment_defaults(&s, "big");
    assert_int_equal(samda_seg_writer_add_segment(w, &s, m1, NULL, &e), SAMDA_OK);
    segment_defaults(&s, "small");
    assert_int_equal(samda_seg_writer_add_segment(w, &s, m2, NULL, &e), SAMDA_OK);
    char path[4300];
    snprintf(path, sizeof path, "%s/bench-seg.dcm", scratch);
    samda_seg_save_result r;
    if (samda_seg_writer_save(w, path, &r, &e) != SAMDA_OK) fail_msg("%s", e.message);
    double t3 = now_s();
    samda_seg *rd = NULL;
    double t4 = now_s();
    assert_int_equal(samda_seg_read(path, &rd, &e), SAMDA_OK);
    uint8_t *labels = malloc(total);
    assert_int_equal(samda_seg_to_label_volume(rd, ph.vol, labels, NULL, &e), SAMDA_OK);
    double t5 = now_s();
    printf("bench: CT 100x512x512 written + loaded %.2f s; SEG 2 segments %zu frames written in %.3f s, read + "
           "mapped in %.3f s\n", t1 - t0, r.n_frames, t3 - t2, t5 - t4);
    samda_seg_free(rd);
    free(labels);
    samda_seg_writer_free(w);
    free(m1);
    free(m2);
    phantom_free(&ph);
}

/* tests/fuzz/corpus/seg/oom_deflated_ut_4026531840.dcm: a deflated data set of 297 bytes whose
 * StudyDescription (UT) claims 4026531840 bytes. The reader must refuse it before allocating
 * that much: checked in a child under a 1 GiB address-space cap, where DCMTK's allocation would
 * fail ("Virtual Memory exhausted"). */
static const unsigned char deflated_overlong[] = {
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x44, 0x49, 0x43, 0x4d, 0x02, 0x00, 0x00, 0x00, 0x55, 0x4c, 0x04, 0x00, 0x60, 0x00, 0x00, 0x00,
    0x02, 0x00, 0x01, 0x00, 0x4f, 0x42, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00,
    0x02, 0x00, 0x55, 0x49, 0x1a, 0x00, 0x31, 0x2e, 0x32, 0x2e, 0x38, 0x34, 0x30, 0x2e, 0x31, 0x30,
    0x30, 0x30, 0x38, 0x2e, 0x35, 0x2e, 0x31, 0x2e, 0x34, 0x2e, 0x31, 0x2e, 0x31, 0x2e, 0x32, 0x00,
    0x02, 0x00, 0x03, 0x00, 0x55, 0x49, 0x0a, 0x00, 0x31, 0x2e, 0x32, 0x2e, 0x33, 0x2e, 0x34, 0x2e,
    0x35, 0x00, 0x02, 0x00, 0x10, 0x00, 0x55, 0x49, 0x16, 0x00, 0x31, 0x2e, 0x32, 0x2e, 0x38, 0x34,
    0x30, 0x2e, 0x31, 0x30, 0x30, 0x30, 0x38, 0x2e, 0x31, 0x2e, 0x32, 0x2e, 0x31, 0x2e, 0x39, 0x39,
    0xe3, 0x60, 0x10, 0x63, 0x08, 0xf5, 0x94, 0x62, 0x30, 0xd4, 0x33, 0xd2, 0xb3, 0x30, 0x31, 0xd0,
    0x33, 0x34, 0x30, 0x30, 0xb0, 0xd0, 0x33, 0xd5, 0x33, 0xd4, 0x33, 0x01, 0x62, 0xa0, 0x28, 0x03,
    0x07, 0x83, 0x04, 0x50, 0x05, 0x17, 0x58, 0x85, 0x31, 0x50, 0xd4, 0x14, 0x28, 0x62, 0x20, 0x10,
    0x1a, 0xc2, 0x00, 0x02, 0x1f, 0x1c, 0xe9, 0x00, 0x00
};

static void test_read_refuses_overlong_deflated(void **state)
{
    (void)state;
    char path[] = "/tmp/samda-test-seg-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, deflated_overlong, sizeof deflated_overlong), (ssize_t)sizeof deflated_overlong);
    close(fd);
    samda_seg *seg = NULL;
    samda_error e = {SAMDA_OK, ""};
    assert_int_equal(samda_seg_read(path, &seg, &e), SAMDA_EBADDICOM);
    assert_null(seg);
#if !defined(__SANITIZE_ADDRESS__)
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        cap_address_space((rlim_t)1 << 30);
        samda_error ce = {SAMDA_OK, ""};
        samda_seg *s = NULL;
        samda_status st = samda_seg_read(path, &s, &ce);
        _exit(st == SAMDA_EBADDICOM && !strstr(ce.message, "emory") ? 0 : 1);
    }
    assert_int_equal(child_exit_status(pid), 0);
#endif
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_phantom),
        cmocka_unit_test(test_write_leading_zero_uids),
        cmocka_unit_test(test_write_mr_oblique),
        cmocka_unit_test(test_empty_policy_and_errors),
        cmocka_unit_test(test_enhanced_source),
        cmocka_unit_test(test_read_pydicom_liver),
        cmocka_unit_test(test_read_refuses_overlong_deflated),
        cmocka_unit_test(test_bench_seg_100x512),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
