/* Writes a small synthetic CT series and a DICOM-SEG over it, for the integration tests that read
 * samda's SEG with other toolkits (tests/integration/test_seg_dcmjs.sh).
 *
 *   make_seg_sample DIR     writes DIR/ct/IMG00001.dcm ... and DIR/seg.dcm, then prints
 *                             series SOURCE_SERIES_UID
 *                             instances N
 *                             frames N
 *                             segment NUMBER LABEL VOXELS     (one line per segment)
 *                             frame INDEX SEGMENT SOURCE_SOP_UID   (one line per frame, 0-based)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dicom.h"

#pragma GCC diagnostic ignored "-Wformat-truncation"

enum { S = 9, R = 33, C = 41 };

static int die(const char *what, const samda_error *e)
{
    fprintf(stderr, "make_seg_sample: %s: %s\n", what, e->message);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_seg_sample DIR\n");
        return 2;
    }
    samda_error e = {0};
    if (samda_dicom_init(NULL, &e) != SAMDA_OK) return die("init", &e);
    char ct[4096], seg[4096];
    snprintf(ct, sizeof ct, "%s/ct", argv[1]);
    snprintf(seg, sizeof seg, "%s/seg.dcm", argv[1]);
    mkdir(ct, 0700);
    static int16_t hu[S * R * C];
    for (size_t i = 0; i < S * R * C; i++) hu[i] = (int16_t)(i % 1000 - 700);
    samda_ct_series_params p;
    samda_ct_series_params_init(&p);
    p.dir = ct;
    p.hu = hu;
    p.n_slices = S;
    p.rows = R;
    p.cols = C;
    p.slice_spacing = 2;
    p.patient_id = "SAMPLE";
    p.patient_name = "Sample^Seg";
    if (samda_dicom_write_ct_series(&p, NULL, &e) != SAMDA_OK) return die("CT", &e);
    char paths[S][4200];
    const char *ptrs[S];
    for (int i = 0; i < S; i++) {
        snprintf(paths[i], sizeof paths[i], "%s/IMG%05d.dcm", ct, i + 1);
        ptrs[i] = paths[i];
    }
    samda_volume *v = NULL;
    if (samda_dicom_volume_load(ptrs, S, NULL, &v, &e) != SAMDA_OK) return die("volume", &e);
    static uint8_t m1[S * R * C], m2[S * R * C];
    size_t n1 = 0, n2 = 0;
    for (int s = 0; s < S; s++)
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++) {
                size_t i = ((size_t)s * R + r) * C + c;
                n1 += m1[i] = s >= 2 && s <= 6 && (r - 16) * (r - 16) + (c - 20) * (c - 20) < 64;
                n2 += m2[i] = s == 4 && r < 5 && c > 30;
            }
    samda_seg_writer *w = samda_seg_writer_new(v, NULL, &e);
    if (!w) return die("writer", &e);
    samda_seg_segment sg;
    samda_seg_segment_init(&sg);
    sg.label = "organ";
    sg.type.value = "10200004";
    sg.type.scheme = "SCT";
    sg.type.meaning = "Liver";
    sg.algorithm_name = "sample";
    sg.has_color = 1;
    sg.rgb[0] = 200;
    if (samda_seg_writer_add_segment(w, &sg, m1, NULL, &e) != SAMDA_OK) return die("segment 1", &e);
    sg.label = "corner";
    sg.type.value = "52988006";
    sg.type.meaning = "Lesion";
    if (samda_seg_writer_add_segment(w, &sg, m2, NULL, &e) != SAMDA_OK) return die("segment 2", &e);
    samda_seg_save_result res;
    if (samda_seg_writer_save(w, seg, &res, &e) != SAMDA_OK) return die("save", &e);
    printf("series %s\ninstances %d\nframes %zu\n", samda_volume_get_info(v)->series_instance_uid, S, res.n_frames);
    printf("segment 1 organ %zu\nsegment 2 corner %zu\n", n1, n2);
    samda_seg *rd = NULL;
    if (samda_seg_read(seg, &rd, &e) != SAMDA_OK) return die("read back", &e);
    for (size_t f = 0; f < samda_seg_get_info(rd)->n_frames; f++)
        printf("frame %zu %u %s\n", f, samda_seg_frame_get(rd, f)->segment_number,
               samda_seg_frame_get(rd, f)->referenced_sop_instance_uid);
    samda_seg_free(rd);
    samda_seg_writer_free(w);
    samda_volume_free(v);
    samda_dicom_shutdown();
    return 0;
}
