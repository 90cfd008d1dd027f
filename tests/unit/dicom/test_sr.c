/* dicom/sr_write.cpp: TID 1500 Measurement Reports written over a synthetic CT series and a
 * DICOM-SEG of the same masks, validated with dicom3tools' dciodvfy and read back independently with
 * pydicom (rtstruct_tool.py sr): one group per segment referencing it and the source series,
 * volumes equal to the SEG's voxels x voxel volume, HU mean and deviation equal to the CT's. */
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
static char tool[4096];

#include "ct_phantom.h"

static int setup(void **state)
{
    (void)state;
    if (samda_dicom_init(NULL, NULL) != SAMDA_OK) return -1;
    const char *src = getenv("SAMDA_SOURCE_DIR");
    snprintf(tool, sizeof tool, "%s/tests/unit/dicom/rtstruct_tool.py", src ? src : ".");
    return scratch_make(scratch, sizeof scratch, "sr") ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    scratch_remove(scratch);
    samda_dicom_shutdown();
    return 0;
}

static void write_seg(const phantom *ph, uint8_t *const masks[2], const char *const names[2], const char *path,
                      unsigned numbers[2], samda_seg_save_result *res)
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
        assert_int_equal(samda_seg_writer_add_segment(w, &s, masks[i], &numbers[i], &e), SAMDA_OK);
    }
    assert_int_equal(samda_seg_writer_save(w, path, res, &e), SAMDA_OK);
    samda_seg_writer_free(w);
}

static void groups_match_the_seg(void **state)
{
    (void)state;
    phantom ph;
    phantom_make(&ph, "a");
    static uint8_t ball[N * ROWS * COLS], shell[N * ROWS * COLS];
    make_masks(ball, shell);
    uint8_t *masks[2] = {ball, shell};
    const char *names[2] = {"liver", "lesion"};
    char seg_path[4400], sr_path[4400];
    snprintf(seg_path, sizeof seg_path, "%s/seg.dcm", ph.dir);
    snprintf(sr_path, sizeof sr_path, "%s/sr.dcm", ph.dir);
    unsigned numbers[2];
    samda_seg_save_result segres;
    write_seg(&ph, masks, names, seg_path, numbers, &segres);

    samda_sr_group g[2];
    memset(g, 0, sizeof g);
    for (int i = 0; i < 2; i++) {
        g[i].name = names[i];
        g[i].type = (samda_seg_code){"10200004", "SCT", "Liver"};
        g[i].segment_number = numbers[i];
        g[i].mask = masks[i];
    }
    g[1].region = (samda_seg_code){"10200004", "SCT", "Liver"};
    samda_sr_params p;
    samda_sr_params_init(&p);
    p.seg_sop_instance_uid = segres.sop_instance_uid;
    p.seg_series_instance_uid = segres.series_instance_uid;
    samda_sr_result res;
    samda_error e = {0};
    if (samda_sr_write(ph.vol, &p, g, 2, sr_path, &res, &e) != SAMDA_OK) fail_msg("%s", e.message);
    assert_int_equal(res.n_groups, 2);
    assert_int_equal(res.n_measurements, 6); /* volume, mean, deviation for each */
    samda_dicom_header h;
    assert_int_equal(samda_dicom_read_header(sr_path, &h, &e), SAMDA_OK);
    assert_string_equal(h.sop_class_uid, "1.2.840.10008.5.1.4.1.1.88.34");
    assert_string_equal(h.modality, "SR");
    assert_string_equal(h.study_instance_uid, samda_volume_get_info(ph.vol)->study_instance_uid);
    assert_string_equal(h.sop_instance_uid, res.sop_instance_uid);
    assert_dciodvfy_clean(sr_path);

    if (system("/usr/bin/python3 -c 'import pydicom, numpy' >/dev/null 2>&1") != 0) {
        samda_volume_free(ph.vol);
        skip();
    }
    static char cmd[80000], out[65536];
    int k = snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' sr '%s' '%s'", tool, sr_path, seg_path);
    for (int i = 0; i < N; i++) k += snprintf(cmd + k, sizeof cmd - k, " '%s'", ph.paths[i]);
    if (run_capture(cmd, out, sizeof out) != 0) fail_msg("rtstruct_tool.py sr: %s", out);
    int groups = 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        char name[64];
        unsigned seg;
        double ml, seg_ml;
        if (sscanf(line, "group %63s segment %u volume_ml %lf seg_ml %lf", name, &seg, &ml, &seg_ml) != 4) continue;
        groups++;
        if (seg_ml <= 0 || fabs(ml - seg_ml) > 1e-6 * seg_ml + 1e-4) fail_msg("%s", line);
    }
    assert_int_equal(groups, 2);
    samda_volume_free(ph.vol);
}

static void refusals(void **state)
{
    (void)state;
    phantom ph;
    phantom_make(&ph, "b");
    static uint8_t ball[N * ROWS * COLS], shell[N * ROWS * COLS];
    make_masks(ball, shell);
    char path[4400];
    snprintf(path, sizeof path, "%s/sr.dcm", ph.dir);
    samda_sr_group g = {.name = "liver", .type = {"10200004", "SCT", "Liver"}, .segment_number = 1, .mask = ball};
    samda_sr_params p;
    samda_sr_params_init(&p);
    samda_sr_result res;
    samda_error e = {0};
    assert_int_equal(samda_sr_write(ph.vol, &p, &g, 1, path, &res, &e), SAMDA_EINVAL); /* no SEG named */
    assert_non_null(strstr(e.message, "DICOM-SEG"));
    p.seg_sop_instance_uid = "1.2.3.4";
    p.seg_series_instance_uid = "1.2.3";
    g.segment_number = 0;
    assert_int_equal(samda_sr_write(ph.vol, &p, &g, 1, path, &res, &e), SAMDA_EINVAL);
    g.segment_number = 1;
    g.type.scheme = "";
    assert_int_equal(samda_sr_write(ph.vol, &p, &g, 1, path, &res, &e), SAMDA_EINVAL);
    g.type.scheme = "SCT";
    assert_int_equal(samda_sr_write(ph.vol, &p, &g, 0, path, &res, &e), SAMDA_EINVAL);
    assert_int_equal(samda_sr_write(ph.vol, NULL, &g, 1, path, &res, &e), SAMDA_EINVAL);
    assert_false(path_exists(path));
    /* an empty mask: a volume of 0 ml and no HU statistics */
    static uint8_t none[N * ROWS * COLS];
    g.mask = none;
    assert_int_equal(samda_sr_write(ph.vol, &p, &g, 1, path, &res, &e), SAMDA_OK);
    assert_int_equal(res.n_measurements, 1);
    samda_volume_free(ph.vol);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(groups_match_the_seg),
        cmocka_unit_test(refusals),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
