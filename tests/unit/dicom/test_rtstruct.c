/* dicom/rtstruct_write.cpp: RT Structure Sets written over a synthetic CT series, validated with
 * dicom3tools' dciodvfy and read back independently with pydicom (rtstruct_tool.py): contours
 * filled back onto the CT grid equal the masks (compared with a DICOM-SEG of the same masks). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dicom.h"
#include "dicom_test_util.h"

static char scratch[4096];
static char tool[4096];

static int setup(void **state)
{
    (void)state;
    if (samda_dicom_init(NULL, NULL) != SAMDA_OK) return -1;
    const char *src = getenv("SAMDA_SOURCE_DIR");
    snprintf(tool, sizeof tool, "%s/tests/unit/dicom/rtstruct_tool.py", src ? src : ".");
    return scratch_make(scratch, sizeof scratch, "rtstruct") ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    scratch_remove(scratch);
    samda_dicom_shutdown();
    return 0;
}

#include "ct_phantom.h"

static void write_seg(const phantom *ph, uint8_t *const masks[2], const char *const names[2], const char *path)
{
    samda_error e = {0};
    samda_seg_writer *w = samda_seg_writer_new(ph->vol, NULL, &e);
    assert_non_null(w);
    for (int i = 0; i < 2; i++) {
        samda_seg_segment s;
        samda_seg_segment_init(&s);
        s.label = names[i];
        s.type = (samda_seg_code){"10200004", "SCT", "Liver"};
        s.algorithm_name = "test";
        assert_int_equal(samda_seg_writer_add_segment(w, &s, masks[i], NULL, &e), SAMDA_OK);
    }
    assert_int_equal(samda_seg_writer_save(w, path, NULL, &e), SAMDA_OK);
    samda_seg_writer_free(w);
}

static void contours_give_back_the_masks(void **state)
{
    (void)state;
    phantom ph;
    phantom_make(&ph, "a");
    static uint8_t ball[N * ROWS * COLS], shell[N * ROWS * COLS];
    make_masks(ball, shell);
    uint8_t *masks[2] = {ball, shell};
    const char *names[2] = {"liver", "lesion ring"};
    char seg_path[4400], rt_path[4400];
    snprintf(seg_path, sizeof seg_path, "%s/seg.dcm", ph.dir);
    snprintf(rt_path, sizeof rt_path, "%s/rt.dcm", ph.dir);
    write_seg(&ph, masks, names, seg_path);

    samda_rtstruct_roi rois[2];
    for (int i = 0; i < 2; i++) {
        samda_rtstruct_roi_init(&rois[i]);
        rois[i].name = names[i];
        rois[i].type = (samda_seg_code){"10200004", "SCT", "Liver"};
        rois[i].mask = masks[i];
    }
    rois[1].type_modifier = (samda_seg_code){"24028007", "SCT", "Right"};
    rois[1].has_color = true;
    rois[1].rgb[1] = 200;
    samda_rtstruct_result res;
    samda_error e = {0};
    assert_int_equal(samda_rtstruct_write(ph.vol, NULL, rois, 2, rt_path, &res, &e), SAMDA_OK);
    assert_int_equal(res.n_rois, 2);
    assert_true(res.n_contours >= 9 + 6 * 2); /* ball on 9 slices; the shell's outer and inner per slice */
    assert_true(samda_dicom_uid_is_valid(res.sop_instance_uid));
    samda_dicom_header h;
    assert_int_equal(samda_dicom_read_header(rt_path, &h, &e), SAMDA_OK);
    assert_string_equal(h.sop_class_uid, "1.2.840.10008.5.1.4.1.1.481.3");
    assert_string_equal(h.modality, "RTSTRUCT");
    assert_string_equal(h.study_instance_uid, samda_volume_get_info(ph.vol)->study_instance_uid);
    assert_dciodvfy_clean(rt_path);

    if (system("/usr/bin/python3 -c 'import pydicom, numpy' >/dev/null 2>&1") != 0) {
        samda_volume_free(ph.vol);
        skip();
    }
    static char cmd[80000], out[65536];
    int k = snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' rtstruct '%s' '%s'", tool, rt_path, seg_path);
    for (int i = 0; i < N; i++) k += snprintf(cmd + k, sizeof cmd - k, " '%s'", ph.paths[i]);
    if (run_capture(cmd, out, sizeof out) != 0) fail_msg("rtstruct_tool.py: %s", out);
    int rois_seen = 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        char name[64];
        int nc;
        long a, b;
        double dice;
        if (sscanf(line, "roi %63s contours %d voxels_rt %ld voxels_seg %ld dice %lf", name, &nc, &a, &b, &dice) != 5)
            continue;
        rois_seen++;
        if (a != b || dice < 0.999999 || a == 0) fail_msg("%s", line);
    }
    assert_int_equal(rois_seen, 2);
    samda_volume_free(ph.vol);
}

static void empty_roi_and_refusals(void **state)
{
    (void)state;
    phantom ph;
    phantom_make(&ph, "b");
    static uint8_t none[N * ROWS * COLS];
    char rt_path[4400];
    snprintf(rt_path, sizeof rt_path, "%s/rt.dcm", ph.dir);
    samda_rtstruct_roi roi;
    samda_rtstruct_roi_init(&roi);
    roi.name = "nothing";
    roi.type = (samda_seg_code){"10200004", "SCT", "Liver"};
    roi.mask = none;
    samda_rtstruct_result res;
    samda_error e = {0};
    assert_int_equal(samda_rtstruct_write(ph.vol, NULL, &roi, 1, rt_path, &res, &e), SAMDA_OK);
    assert_int_equal(res.n_contours, 0);
    assert_dciodvfy_clean(rt_path);

    char other[4400];
    snprintf(other, sizeof other, "%s/refused.dcm", ph.dir);
    assert_int_equal(samda_rtstruct_write(ph.vol, NULL, &roi, 0, other, &res, &e), SAMDA_EINVAL);
    roi.type.meaning = NULL;
    assert_int_equal(samda_rtstruct_write(ph.vol, NULL, &roi, 1, other, &res, &e), SAMDA_EINVAL);
    assert_non_null(strstr(e.message, "type code"));
    roi.type.meaning = "Liver";
    samda_rtstruct_params p;
    samda_rtstruct_params_init(&p);
    p.label = "A LABEL LONGER THAN SIXTEEN";
    assert_int_equal(samda_rtstruct_write(ph.vol, &p, &roi, 1, other, &res, &e), SAMDA_EINVAL);
    p.label = NULL;
    p.sop_instance_uid = "1.2.abc";
    assert_int_equal(samda_rtstruct_write(ph.vol, &p, &roi, 1, other, &res, &e), SAMDA_EBADUID);
    assert_false(path_exists(other));
    assert_int_equal(samda_rtstruct_write(NULL, NULL, &roi, 1, other, &res, &e), SAMDA_EINVAL);
    samda_volume_free(ph.vol);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(contours_give_back_the_masks),
        cmocka_unit_test(empty_roi_and_refusals),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
