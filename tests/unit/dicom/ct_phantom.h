/* tests/unit/dicom: a small synthetic CT series on an oblique plane with two masks over it (a ball,
 * and a shell with a hole), shared by the tests of the result writers (test_rtstruct, test_sr).
 * Needs dicom.h and dicom_test_util.h before it, and a `scratch` directory. */
#ifndef SAMDA_TEST_CT_PHANTOM_H
#define SAMDA_TEST_CT_PHANTOM_H

#include <math.h>
#include <string.h>
#include <sys/stat.h>

/* rows x cols a multiple of 8: dcmseg 3.6.7 misplaces the bits of frames that are not whole bytes
 * (each frame after the first starts early), which pydicom then reads elsewhere */
enum { N = 10, ROWS = 32, COLS = 28 };

typedef struct phantom {
    char dir[4200];
    char paths[N][4300];
    const char *ptrs[N];
    samda_volume *vol;
} phantom;

static void phantom_make(phantom *ph, const char *tag)
{
    memset(ph, 0, sizeof *ph);
    snprintf(ph->dir, sizeof ph->dir, "%s/%s", scratch, tag);
    mkdir(ph->dir, 0700);
    static int16_t hu[N * ROWS * COLS];
    for (size_t i = 0; i < sizeof hu / sizeof *hu; i++) hu[i] = (int16_t)((i * 37) % 400 - 100);
    samda_ct_series_params p;
    samda_ct_series_params_init(&p);
    p.dir = ph->dir;
    p.hu = hu;
    p.n_slices = N;
    p.rows = ROWS;
    p.cols = COLS;
    p.pixel_spacing[0] = 0.75;
    p.pixel_spacing[1] = 0.8;
    p.slice_spacing = 2.5;
    p.origin[0] = -12.5;
    p.origin[2] = -40;
    /* an oblique plane: points must follow both direction cosines */
    double a = 0.3;
    double o[6] = {cos(a), sin(a), 0, 0, 0, -1};
    memcpy(p.orientation, o, sizeof o);
    p.patient_name = "Rt^Phantom";
    p.patient_id = "RT-1";
    samda_error e = {0};
    if (samda_dicom_write_ct_series(&p, NULL, &e) != SAMDA_OK) fail_msg("%s", e.message);
    for (size_t i = 0; i < N; i++) {
        snprintf(ph->paths[i], sizeof ph->paths[i], "%s/IMG%05zu.dcm", ph->dir, i + 1);
        ph->ptrs[i] = ph->paths[i];
    }
    if (samda_dicom_volume_load(ph->ptrs, N, NULL, &ph->vol, &e) != SAMDA_OK) fail_msg("%s", e.message);
}

/* A ball, and a thick shell with a hole (so contours with holes are exercised). */
static void make_masks(uint8_t *ball, uint8_t *shell)
{
    for (int s = 0; s < N; s++)
        for (int r = 0; r < ROWS; r++)
            for (int c = 0; c < COLS; c++) {
                double d1 = (s - 4.0) * (s - 4.0) + (r - 10.0) * (r - 10.0) + (c - 9.0) * (c - 9.0);
                double d2 = (r - 22.0) * (r - 22.0) + (c - 17.0) * (c - 17.0);
                size_t i = ((size_t)s * ROWS + r) * COLS + c;
                ball[i] = d1 <= 20.0;
                shell[i] = s >= 2 && s <= 7 && d2 <= 49.0 && d2 >= 9.0;
            }
}

/* dciodvfy reports no Error line (skipped without dciodvfy). */
static void assert_dciodvfy_clean(const char *path)
{
    if (!tool_available("dciodvfy")) return;
    char cmd[4400];
    static char out[65536];
    snprintf(cmd, sizeof cmd, "dciodvfy '%s'", path);
    run_capture(cmd, out, sizeof out);
    for (char *line = out; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        if (strncmp(line, "Error", 5) == 0) fail_msg("dciodvfy %s: %s", path, line);
        line = nl ? nl + 1 : NULL;
    }
}

#endif
